"""Benchmark the representation measures (embedforensics.compare.representations).

For n paired inputs with ``--p1``/``--p2`` features (default 384 and 768: a MiniLM-sized
and a BERT-base-sized model), time and peak memory of each measure, next to the same number
computed naively, in the same run:

* linear CKA, biased and debiased — naive: the n × n Gram matrices of Kornblith et al.'s
  reference ``cka(gram_linear(X), gram_linear(Y))`` (with its ``center_gram``, unbiased for
  the debiased estimator); only for n ≤ ``--naive-max`` (it is n × n).
* RBF CKA — naive: the reference ``gram_rbf`` (``np.median`` of the full squared-distance
  matrix) and ``center_gram``; ours is n × n too, so both only for n ≤ ``--rbf-max``.
* SVCCA (keep 0.99) and PWCCA — naive: the google/svcca recipe (full SVD of each side for
  SVCCA; ``np.cov`` of the stacked activations, ``pinv``, matrix square roots by ``eigh``,
  SVD; PWCCA's canonical variates formed as n × k arrays, QR, projections), with the
  weighting-side and variate fixes so that the numbers agree.
* Procrustes — naive: ``scipy.linalg.orthogonal_procrustes`` on zero-padded inputs, then
  ``‖X − YR‖``.
* Minibatch CKA (exact mode, ``--batch`` rows per batch) against our full ``linear_cka``.
* Peer library, if installed: ``pytorch-cka``'s ``cka_from_features`` (debiased linear CKA
  from n × n Gram matrices in torch, float64), for n ≤ ``--naive-max``.

Time: median of ``--repeats`` calls. Memory: peak resident memory above the resident size
just before the call (Linux ``VmHWM`` after resetting it through ``/proc/self/clear_refs``),
so it counts numpy, LAPACK and torch allocations alike; the float32 → float64 input copies
the measures make are included. Inputs are float32 (as embeddings are) with a shared
64-dimensional latent factor.

    MALLOC_MMAP_THRESHOLD_=131072 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 \
        python benchmarks/bench_representations.py --output benchmarks/results/representations.md

``MALLOC_MMAP_THRESHOLD_`` pins glibc's mmap threshold, so that every large array is mapped
and unmapped (otherwise freed arrays stay resident in the heap and later calls show no
growth); one BLAS thread keeps the timings steady on a machine shared with other jobs.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy
import scipy.linalg as sla

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_alpha_hat import cpu_model  # noqa: E402

from embedforensics.compare import (  # noqa: E402
    MinibatchCKA,
    linear_cka,
    procrustes_distance,
    pwcca,
    rbf_cka,
    svcca,
)

# ----------------------------------------------------------------------------- measuring


def _status_kb(key: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"{key}:\s+(\d+)", text).group(1))


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure(fn: Callable[[], float], repeats: int) -> tuple[float, float, float]:
    """(median seconds, peak MB above the pre-call resident size, value) over ``repeats``."""
    times, peak_mb, value = [], 0.0, float("nan")
    for _ in range(repeats):
        ok = _reset_peak()
        base = _status_kb("VmRSS")
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
        if ok:
            peak_mb = max(peak_mb, (_status_kb("VmHWM") - base) / 1024.0)
    return statistics.median(times), peak_mb, float(value)


# ----------------------------------------------------------------------------- naive versions


def _gram_linear(x):
    return x @ x.T


def _gram_rbf(x, threshold=1.0):
    dot = x @ x.T
    sq = np.diag(dot)
    d2 = -2 * dot + sq[:, None] + sq[None, :]
    return np.exp(-d2 / (2 * threshold**2 * np.median(d2)))


def _center_gram(gram, unbiased=False):
    gram = gram.copy()
    if unbiased:
        n = gram.shape[0]
        np.fill_diagonal(gram, 0)
        means = np.sum(gram, 0) / (n - 2)
        means -= np.sum(means) / (2 * (n - 1))
        gram -= means[:, None]
        gram -= means[None, :]
        np.fill_diagonal(gram, 0)
    else:
        means = np.mean(gram, 0)
        means -= np.mean(means) / 2
        gram -= means[:, None]
        gram -= means[None, :]
    return gram


def naive_cka(gx, gy, debiased=False):
    gx, gy = _center_gram(gx, debiased), _center_gram(gy, debiased)
    return gx.ravel() @ gy.ravel() / (np.linalg.norm(gx) * np.linalg.norm(gy))


def _sqrtm_psd(a):
    w, v = np.linalg.eigh(a)
    return v @ np.diag(np.sqrt(w)) @ v.T


def _naive_cca_core(a1, a2):
    """google/svcca cca_core style on (neurons × n) activations: cov, pinv, sqrt, svd."""
    n1 = a1.shape[0]
    cov = np.cov(a1, a2)
    sxx, sxy, syy = cov[:n1, :n1], cov[:n1, n1:], cov[n1:, n1:]
    ixx, iyy = _sqrtm_psd(np.linalg.pinv(sxx)), _sqrtm_psd(np.linalg.pinv(syy))
    u, s, vt = np.linalg.svd(ixx @ sxy @ iyy)
    return u, np.abs(s), vt, ixx, iyy


def naive_svcca(X, Y, keep=0.99):
    reduced = []
    for A in (X, Y):
        Ac = np.asarray(A, dtype=np.float64)
        Ac = Ac - Ac.mean(0)
        _, s, vt = np.linalg.svd(Ac, full_matrices=False)
        frac = np.cumsum(s**2) / np.sum(s**2)
        k = int(np.searchsorted(frac, keep)) + 1
        reduced.append((Ac @ vt[:k].T).T)
    _, s, _, _, _ = _naive_cca_core(*reduced)
    return float(np.mean(s[: min(len(reduced[0]), len(reduced[1]))]))


def naive_pwcca(X, Y):
    a1 = np.asarray(X, dtype=np.float64).T
    a2 = np.asarray(Y, dtype=np.float64).T
    u, s, vt, ixx, iyy = _naive_cca_core(a1, a2)
    if a1.shape[0] <= a2.shape[0]:
        acts, coef = a1 - a1.mean(1, keepdims=True), ixx @ u
    else:
        acts, coef = a2 - a2.mean(1, keepdims=True), iyy @ vt.T
    m = len(s)
    dirns = coef[:, :m].T @ acts  # k × n canonical variates
    q, _ = np.linalg.qr(dirns.T)
    w = np.sum(np.abs(q.T @ acts.T), axis=1)
    return float(np.sum(w / w.sum() * s))


def naive_procrustes(X, Y):
    Xc = np.asarray(X, dtype=np.float64)
    Yc = np.asarray(Y, dtype=np.float64)
    Xc, Yc = Xc - Xc.mean(0), Yc - Yc.mean(0)
    Xc, Yc = Xc / np.linalg.norm(Xc), Yc / np.linalg.norm(Yc)
    p = max(Xc.shape[1], Yc.shape[1])
    Xp = np.hstack([Xc, np.zeros((len(Xc), p - Xc.shape[1]))])
    Yp = np.hstack([Yc, np.zeros((len(Yc), p - Yc.shape[1]))])
    r, _ = sla.orthogonal_procrustes(Yp, Xp)
    return float(np.linalg.norm(Xp - Yp @ r))


def minibatch(X, Y, batch):
    acc = MinibatchCKA(debiased=True)
    for i in range(0, len(X), batch):
        acc.update(X[i : i + batch], Y[i : i + batch])
    return acc.value()


# ----------------------------------------------------------------------------- report


def make_data(n: int, p1: int, p2: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, 64), dtype=np.float32)
    X = Z @ rng.standard_normal((64, p1), dtype=np.float32)
    X += rng.standard_normal((n, p1), dtype=np.float32)
    Y = Z @ rng.standard_normal((64, p2), dtype=np.float32)
    Y += 2.0 * rng.standard_normal((n, p2), dtype=np.float32)
    return X, Y


Case = tuple[str, Callable[[], float], "Callable[[], float] | None", str]


def build_cases(X: np.ndarray, Y: np.ndarray, n: int, args: argparse.Namespace) -> list[Case]:
    """(measure, ours, naive or None, naive's name) for one size."""

    def x64() -> np.ndarray:
        return X.astype(np.float64)

    def y64() -> np.ndarray:
        return Y.astype(np.float64)

    small = n <= args.naive_max
    cases: list[Case] = [
        ("linear CKA", lambda: linear_cka(X, Y),
         (lambda: naive_cka(_gram_linear(x64()), _gram_linear(y64()))) if small else None,
         "n×n Gram"),
        ("linear CKA, debiased", lambda: linear_cka(X, Y, debiased=True),
         (lambda: naive_cka(_gram_linear(x64()), _gram_linear(y64()), True)) if small else None,
         "n×n Gram"),
        (f"minibatch CKA, debiased ({args.batch:,}/batch)", lambda: minibatch(X, Y, args.batch),
         lambda: linear_cka(X, Y, debiased=True), "our full linear_cka"),
    ]
    if n <= args.rbf_max:
        cases.append(("RBF CKA", lambda: rbf_cka(X, Y, max_rows=args.rbf_max),
                      lambda: naive_cka(_gram_rbf(x64()), _gram_rbf(y64())),
                      "reference gram_rbf"))
    cases += [
        ("SVCCA (keep 0.99)", lambda: svcca(X, Y), lambda: naive_svcca(X, Y),
         "SVD + cov/pinv/sqrtm"),
        ("PWCCA", lambda: pwcca(X, Y), lambda: naive_pwcca(X, Y), "cov/pinv/sqrtm + QR"),
        ("Procrustes", lambda: procrustes_distance(X, Y), lambda: naive_procrustes(X, Y),
         "orthogonal_procrustes"),
    ]
    return cases


def peer_row(peer: tuple, X: np.ndarray, Y: np.ndarray, n: int, rep: int) -> tuple:
    """Debiased linear CKA: ours against pytorch-cka's ``cka_from_features`` (float64)."""
    torch, cff, _ = peer
    tx, ty = torch.from_numpy(X.astype(np.float64)), torch.from_numpy(Y.astype(np.float64))
    t, m, v = measure(lambda: linear_cka(X, Y, debiased=True), rep)
    tn, mn, vn = measure(lambda: float(cff(tx, ty).item()), rep)
    return (n, "linear CKA, debiased", t, m, "pytorch-cka", tn, mn, abs(v - vn), v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--p1", type=int, default=384)
    ap.add_argument("--p2", type=int, default=768)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--naive-max", type=int, default=10_000, help="largest n for n × n paths")
    ap.add_argument("--rbf-max", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=2_000)
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--output", type=Path)
    args = ap.parse_args()

    peer = None
    if not args.skip_peer:
        try:
            import importlib.metadata as md

            import torch
            from cka import cka_from_features

            peer = (torch, cka_from_features, md.version("pytorch-cka"))
        except Exception:  # noqa: BLE001 - optional
            peer = None

    load_before = os.getloadavg()
    rows: list[tuple] = []
    for n in [int(s) for s in args.sizes.split(",")]:
        X, Y = make_data(n, args.p1, args.p2)
        rep = args.repeats
        small = n <= args.naive_max
        cases = build_cases(X, Y, n, args)
        for name, ours, naive, naive_name in cases:
            t, m, v = measure(ours, rep)
            if naive is not None:
                tn, mn, vn = measure(naive, rep)
                rows.append((n, name, t, m, naive_name, tn, mn, abs(v - vn), v))
            else:
                rows.append((n, name, t, m, "(skipped: n×n)", None, None, None, v))
            print(rows[-1], flush=True)
        if peer is not None and small:
            rows.append(peer_row(peer, X, Y, n, rep))
            print(rows[-1], flush=True)
        del X, Y

    load_after = os.getloadavg()
    cmd = "python benchmarks/bench_representations.py " + shlex.join(sys.argv[1:])
    threads_env = "".join(
        f"{k}={os.environ[k]} "
        for k in ("MALLOC_MMAP_THRESHOLD_", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
        if k in os.environ
    )
    lines = [
        "# Representation measures: ours vs naive (and a peer library), same run",
        "",
        f"- Machine: {cpu_model()}, {os.cpu_count()} cores; load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after (machine shared with other jobs)",
        f"- Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}"
        + (f", torch {peer[0].__version__}, pytorch-cka {peer[2]}" if peer else ""),
        f"- Command: `{threads_env}{cmd}`; BLAS threads "
        f"{os.environ.get('OPENBLAS_NUM_THREADS', 'default')}"
        + (f", torch threads {peer[0].get_num_threads()}" if peer else ""),
        f"- Inputs: float32, X {args.p1} and Y {args.p2} features, shared 64-d latent; "
        f"median of {args.repeats} calls; memory = peak RSS above the pre-call RSS.",
        "",
        "| n | measure | ours s | ours MB | baseline | baseline s | baseline MB | "
        "speed-up | memory ratio | value | abs diff |",
        "|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for n, name, t, m, bname, tn, mn, diff, v in rows:
        if tn is None:
            lines.append(f"| {n:,} | {name} | {t:.3f} | {m:,.0f} | {bname} | – | – | – | – | "
                         f"{v:.4f} | – |")
        else:
            mem_ratio = f"{mn / m:.1f}×" if m > 1 else "–"
            lines.append(
                f"| {n:,} | {name} | {t:.3f} | {m:,.0f} | {bname} | {tn:.3f} | {mn:,.0f} | "
                f"{tn / t:.1f}× | {mem_ratio} | {v:.4f} | {diff:.1e} |"
            )
    lines += [
        "",
        "PWCCA's weights are unique only when the canonical correlations are distinct; with",
        f"n ≤ p1 + p2 = {args.p1 + args.p2} the two column spaces intersect, several ρ are",
        "exactly 1, and the naive and our canonical variates may differ by a rotation within",
        "that tie (so may the value, at the 1e-3 level). Every other difference is rounding.",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.output:
        args.output.write_text(report)


if __name__ == "__main__":
    main()
