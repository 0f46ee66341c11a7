"""Scale: PCA, LDA and a linear probe on 1,000,000 × 1,024 float32 embeddings (4 GB), and
the scalable two-sample tests on 100,000 rows per side, with time and peak memory.

The matrix is synthetic (seeded Gaussian with a low-rank structure and a small label
shift), written once to a raw float32 file and read back in row chunks with
``np.fromfile`` — so resident memory stays bounded instead of growing with the page cache
of a memory map. Exactness against scikit-learn is a test (tests/probes/test_streaming.py);
here the streamed linear probe is also compared with scikit-learn's exact pipeline fitted
on a 20,000-row subsample, as a sanity check at scale.

    nice -n 10 .venv/bin/python benchmarks/bench_scale.py --output benchmarks/results/scale.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from embedforensics.probes.scalable import rff_mmd_test, ridge_c2st, sliced_energy_test
from embedforensics.probes.streaming import (
    streaming_lda,
    streaming_logistic,
    streaming_moments,
    streaming_pca,
)
from embedforensics.runner import package_versions


class FileRows:
    """Row-sliceable view of a raw float32 ``n × d`` file, read on demand."""

    dtype = np.dtype(np.float32)  # lets the streaming code pick float32 products

    def __init__(self, path: Path, n: int, d: int):
        self.path, self.shape = path, (n, d)

    def __getitem__(self, rows: slice) -> np.ndarray:
        start, stop, _ = rows.indices(self.shape[0])
        d = self.shape[1]
        out = np.fromfile(self.path, dtype=np.float32, count=(stop - start) * d,
                          offset=start * d * 4)
        return out.reshape(stop - start, d)


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def make_data(path: Path, n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(np.int8)
    basis = rng.normal(size=(8, d)) * np.geomspace(3.0, 0.5, 8)[:, None]
    direction = rng.normal(size=d)
    direction *= 0.08 / np.linalg.norm(direction) * np.sqrt(d)
    with open(path, "wb") as fh:
        for start in range(0, n, 65_536):
            m = min(65_536, n - start)
            block = rng.standard_normal((m, d), dtype=np.float32)
            block += (rng.standard_normal((m, 8), dtype=np.float32) @ basis).astype(np.float32)
            block += np.outer(y[start:start + m], direction).astype(np.float32)
            block.tofile(fh)
    return y


def labels(n: int, seed: int) -> np.ndarray:
    """The labels ``make_data`` draws first from the same seed."""
    return np.random.default_rng(seed).integers(0, 2, n).astype(np.int8)


def record(log: Path, label: str, seconds: float, **extra: object) -> None:
    entry = {"step": label, "seconds": seconds, "peak_rss_gib": peak_rss_gib(),
             "load": os.getloadavg()[0], **extra}
    print(json.dumps(entry), flush=True)
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=1024)
    parser.add_argument("--path", default="/tmp/embedforensics_scale.f32")
    parser.add_argument("--steps", default="write,pca,lda,logistic,two_sample",
                        help="comma list; each step can run in its own process (its peak "
                             "RSS is then its own)")
    parser.add_argument("--log", default="/tmp/embedforensics_scale.jsonl",
                        help="JSON lines, one per step, appended")
    parser.add_argument("--render", action="store_true", help="write the table from --log")
    parser.add_argument("--logistic-iter", type=int, default=30)
    parser.add_argument("--two-sample-n", type=int, default=100_000)
    parser.add_argument("--two-sample-d", type=int, default=384)
    parser.add_argument("--permutations", type=int, default=199)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output")
    args = parser.parse_args()
    if args.render:
        text = render(args)
        print(text)
        if args.output:
            Path(args.output).write_text(text, encoding="utf-8")
        return
    with threadpool_limits(args.threads):
        for step in args.steps.split(","):
            STEPS[step](args)


def step_write(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    make_data(Path(args.path), args.n, args.d, seed=0)
    record(Path(args.log), f"write synthetic {args.n:,} × {args.d} float32 "
           f"({args.n * args.d * 4 / 2**30:.1f} GiB)", time.perf_counter() - t0)


def _test_rows(args: argparse.Namespace, X: FileRows, y: np.ndarray):
    m = min(100_000, args.n // 10)
    return X[args.n - m:args.n], y[args.n - m:], m


def step_pca(args: argparse.Namespace) -> None:
    X = FileRows(Path(args.path), args.n, args.d)
    t0 = time.perf_counter()
    pca = streaming_pca(X, 10)
    record(Path(args.log), "PCA, 10 components (streamed covariance + eigh)",
           time.perf_counter() - t0,
           result="explained-variance ratios of PC1–PC3: "
                  + ", ".join(f"{v:.4f}" for v in pca.explained_variance_ratio_[:3]))


def step_lda(args: argparse.Namespace) -> None:
    X = FileRows(Path(args.path), args.n, args.d)
    y = labels(args.n, 0)
    t0 = time.perf_counter()
    lda = streaming_lda(X, y, shrinkage=0.1)
    seconds = time.perf_counter() - t0
    test, yt, m = _test_rows(args, X, y)
    record(Path(args.log), "LDA (streamed scatter matrices, shrinkage 0.1)", seconds,
           result=f"accuracy on the last {m:,} rows (training rows): "
                  f"{np.mean(lda.predict(test) == yt):.4f}")


def step_logistic(args: argparse.Namespace) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = FileRows(Path(args.path), args.n, args.d)
    y = labels(args.n, 0)
    t0 = time.perf_counter()
    moments = streaming_moments(X)
    fit = streaming_logistic(X, y, max_iter=args.logistic_iter, moments=moments)
    seconds = time.perf_counter() - t0
    test, yt, m = _test_rows(args, X, y)
    acc = float(np.mean(fit.predict(test) == yt))
    sub = X[0:20_000]
    ref = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(sub, y[:20_000])
    ref_acc = float(np.mean(ref.predict(test) == yt))
    cos = float(ref[-1].coef_[0] @ fit.coef_
                / np.linalg.norm(ref[-1].coef_[0]) / np.linalg.norm(fit.coef_))
    record(Path(args.log), f"logistic regression (standardisation pass + L-BFGS, "
                           f"≤{args.logistic_iter} iterations)", seconds,
           result=f"{fit.n_iter_} iterations, {fit.passes_} passes, converged="
                  f"{fit.converged_}; accuracy on the last {m:,} rows {acc:.4f}; "
                  f"scikit-learn's exact pipeline on a 20,000-row subsample {ref_acc:.4f}; "
                  f"cosine between coefficient vectors {cos:.3f}")


def step_two_sample(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(1)
    m, dd, perms = args.two_sample_n, args.two_sample_d, args.permutations
    A = rng.standard_normal((m, dd), dtype=np.float32)
    B = rng.standard_normal((m, dd), dtype=np.float32)
    B[:, 0] += 0.03  # a small real shift
    log = Path(args.log)
    t0 = time.perf_counter()
    mmd = rff_mmd_test(A, B, n_permutations=perms, seed=0)
    record(log, f"two-sample: MMD, random Fourier features (D=512), {m:,} per side × {dd}, "
                f"{perms} permutations", time.perf_counter() - t0,
           result=f"p = {mmd['mmd_p']:.3f} (shift 0.03 sd on one axis)")
    t0 = time.perf_counter()
    energy = sliced_energy_test(A, B, n_permutations=perms, seed=0)
    record(log, f"two-sample: sliced energy (64 directions), {m:,} per side × {dd}, "
                f"{perms} permutations", time.perf_counter() - t0,
           result=f"p = {energy['energy_p']:.3f}")
    t0 = time.perf_counter()
    is_a = np.r_[np.ones(m, bool), np.zeros(m, bool)]
    c2st = ridge_c2st(np.concatenate([A, B]), is_a, n_folds=5, n_permutations=perms, seed=0)
    record(log, f"two-sample: ridge classifier test, 5 folds, {m:,} per side × {dd}, "
                f"{perms} permutations with refits", time.perf_counter() - t0,
           result=f"accuracy {c2st['c2st_accuracy']:.4f}, p = {c2st['c2st_p']:.3f}")


STEPS = {"write": step_write, "pca": step_pca, "lda": step_lda, "logistic": step_logistic,
         "two_sample": step_two_sample}


def render(args: argparse.Namespace) -> str:
    entries = [json.loads(line) for line in Path(args.log).read_text().splitlines() if line]
    out = [
        "# Scale: out-of-core PCA / LDA / linear probe and scalable two-sample tests", "",
        f"- command (table): `{' '.join([os.path.relpath(sys.executable), *sys.argv])}`",
        f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM, "
        f"shared with other jobs (load average per step below); BLAS threads {args.threads}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in package_versions().items() if v),
        f"- data: synthetic {args.n:,} × {args.d} float32 in a raw file read in 65,536-row "
        f"chunks; labels 50/50 with a small mean shift; seed 0",
        "- peak RSS: the maximum resident set size of the step's process at the end of the "
        "step (steps run with one --steps list share a process, so a later step's peak "
        "includes the earlier ones')", "",
        "| step | wall s | peak RSS (GiB) | load avg | result |", "|---|---|---|---|---|"]
    out += [f"| {e['step']} | {e['seconds']:.1f} | {e['peak_rss_gib']:.2f} | {e['load']:.1f} "
            f"| {e.get('result', '')} |" for e in entries]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
