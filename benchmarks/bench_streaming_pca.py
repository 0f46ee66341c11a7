"""Streaming PCA of a large float32 matrix on disk against the machine's GEMM rate and
scikit-learn's ``IncrementalPCA``, in one run (issue 20).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_streaming_pca.py \
        --output benchmarks/results/streaming_pca.md

Writes (or reuses) a synthetic ``n × d`` float32 ``.npy`` file (low-rank structure plus
noise, seeded), then, in this order and in this process:

1. the float32 GEMM rate: the median time of ``Aᵀ B`` for two distinct 16,384 × d float32
   blocks (5 repetitions), so ``2·n·d²`` flops at that rate is the reference time;
2. ``streaming_pca`` cold: the file's pages are first evicted from the page cache
   (``posix_fadvise(DONTNEED)``), so it is read from disk;
3. ``streaming_pca`` warm (page cache), float32 products (the default for this size);
4. ``streaming_pca`` warm with ``precision="float64"`` (every chunk converted, double
   products: the former route);
5. scikit-learn ``IncrementalPCA(n_components)`` on the memory map with its default batch
   size (``--ipca-rows`` limits it to the first rows; the time is then also scaled).

Agreement: explained-variance ratios and the largest principal angle between the
subspaces of the float32 and float64 routes and IncrementalPCA.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info

from embedforensics.probes.streaming import streaming_pca
from embedforensics.runner import package_versions


def write_matrix(path: Path, n: int, d: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    basis = (rng.normal(size=(16, d)) * np.geomspace(4.0, 0.5, 16)[:, None]).astype(np.float32)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    for start in range(0, n, 65_536):
        m = min(65_536, n - start)
        block = rng.standard_normal((m, d), dtype=np.float32)
        block += rng.standard_normal((m, 16), dtype=np.float32) @ basis
        out[start:start + m] = block
    out.flush()
    del out


def evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def gemm_rate(d: int, rows: int = 16_384, repeats: int = 5) -> float:
    rng = np.random.default_rng(1)
    A = rng.standard_normal((rows, d), dtype=np.float32)
    B = rng.standard_normal((rows, d), dtype=np.float32)  # distinct: numpy would use syrk
    A.T @ B  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        A.T @ B
        times.append(time.perf_counter() - t0)
    return 2 * rows * d * d / float(np.median(times))


def max_angle_deg(P: np.ndarray, Q: np.ndarray) -> float:
    """Largest principal angle between the row spaces of two k × d orthonormal bases."""
    s = np.linalg.svd(P @ Q.T, compute_uv=False)
    return float(np.degrees(np.arccos(np.clip(s.min(), -1.0, 1.0))))


def memory_gib() -> dict[str, float]:
    """Peak RSS so far, and the current anonymous / file-backed resident memory (the
    memory map's pages are file-backed page cache: counted in RSS, but reclaimable)."""
    fields = {}
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "RssAnon", "RssFile"):
                fields[key] = int(value.split()[0]) / 2**20  # kB -> GiB
    return fields


def timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=1024)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--path", default="/tmp/embedforensics_streaming_pca.npy")
    parser.add_argument("--ipca-rows", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the data file")
    parser.add_argument("--output")
    args = parser.parse_args()
    path = Path(args.path)
    n, d, k = args.n, args.d, args.k
    load0 = os.getloadavg()[0]
    if not path.exists():
        _, t_write, _ = timed(lambda: write_matrix(path, n, d))
        print(f"wrote {path} in {t_write:.1f} s", flush=True)
    X = np.load(path, mmap_mode="r")
    assert X.shape == (n, d) and X.dtype == np.float32
    rate = gemm_rate(d)
    reference = 2 * n * d * d / rate
    print(f"float32 GEMM {rate / 1e9:.1f} GFLOP/s; 2·n·d² = {2 * n * d * d / 1e12:.2f} "
          f"TFLOP takes {reference:.1f} s at that rate", flush=True)
    rows = []

    evict(path)
    cold, t, c = timed(lambda: streaming_pca(X, k))
    rows.append(("streaming_pca, cold (read from disk), float32 products", t, c))
    print(rows[-1], flush=True)
    warm, t, c = timed(lambda: streaming_pca(X, k))
    rows.append(("streaming_pca, warm (page cache), float32 products", t, c))
    print(rows[-1], flush=True)
    f64, t, c = timed(lambda: streaming_pca(X, k, precision="float64"))
    rows.append(("streaming_pca, warm, float64 products (former route)", t, c))
    print(rows[-1], flush=True)

    streamed_memory = memory_gib()
    from sklearn.decomposition import IncrementalPCA

    m = args.ipca_rows or n
    ipca, t, c = timed(lambda: IncrementalPCA(n_components=k).fit(X[:m]))
    scale = n / m
    rows.append((f"scikit-learn IncrementalPCA, warm, default batch {ipca.batch_size_}"
                 + ("" if m == n else f", first {m:,} rows (times ×{scale:g})"),
                 t * scale, c * scale))
    print(rows[-1], flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    load1 = os.getloadavg()[0]

    blas = ", ".join(f"{i['internal_api']} {i['version']} ({i['num_threads']} threads)"
                     for i in threadpool_info() if i.get("user_api") == "blas")
    lines = [
        "# Streaming PCA against the GEMM rate and IncrementalPCA (issue 20)", "",
        f"- command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '?')} "
        f".venv/bin/python benchmarks/bench_streaming_pca.py --n {n} --d {d} --k {k}"
        + (f" --ipca-rows {m}" if m != n else "") + "`",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM; "
        f"BLAS: {blas}; load average {load0:.1f} before, {load1:.1f} after",
        "- versions: " + ", ".join(f"{a} {v}" for a, v in package_versions().items() if v),
        f"- data: {n:,} × {d} float32 .npy on local disk ({n * d * 4 / 2**30:.1f} GiB), "
        f"memory-mapped; {k} components",
        f"- float32 GEMM rate (median of 5 × 16,384 × {d} AᵀB): {rate / 1e9:.1f} GFLOP/s, so "
        f"2·n·d² = {2 * n * d * d / 1e12:.2f} TFLOP takes **{reference:.1f} s**",
        f"- memory after the three streamed runs: peak RSS {streamed_memory['VmHWM']:.2f} "
        f"GiB, of which the memory map's file-backed pages (page cache, reclaimable) "
        f"{streamed_memory['RssFile']:.2f} GiB resident now and anonymous memory "
        f"{streamed_memory['RssAnon']:.2f} GiB; peak RSS of the whole run, IncrementalPCA "
        f"included: {peak:.2f} GiB", "",
        "| route | wall s | CPU s | wall ÷ 2·n·d² at GEMM rate |", "|---|---|---|---|"]
    lines += [f"| {name} | {t:.1f} | {c:.1f} | {t / reference:.2f} |" for name, t, c in rows]
    ratio = [r for r in rows if "IncrementalPCA" in r[0]][0][1] / rows[1][1]
    lines += [
        "", f"IncrementalPCA ÷ streaming_pca (warm, float32): **{ratio:.1f}×**.", "",
        "Agreement (first three explained-variance ratios; largest principal angle between "
        "the component subspaces):", "",
        f"- float32 route: {', '.join(f'{v:.6f}' for v in warm.explained_variance_ratio_[:3])}",
        f"- float64 route: {', '.join(f'{v:.6f}' for v in f64.explained_variance_ratio_[:3])};"
        f" angle to float32 {max_angle_deg(warm.components_, f64.components_):.2e}°",
        f"- IncrementalPCA: "
        f"{', '.join(f'{v:.6f}' for v in ipca.explained_variance_ratio_[:3])}; angle to "
        f"float64 {max_angle_deg(ipca.components_, f64.components_):.2e}°"
        + ("" if m == n else f" (fitted on the first {m:,} rows only)"),
        f"- cold and warm float32 runs identical: "
        f"{bool(np.array_equal(cold.components_, warm.components_))}", ""]
    text = "\n".join(lines)
    print(text)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    if not args.keep:
        path.unlink()


if __name__ == "__main__":
    main()
