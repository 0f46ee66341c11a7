"""The LDA and linear probes on memory-mapped float32 embeddings, out of core (issue 20).

    OMP_NUM_THREADS=1 heavy .venv/bin/python benchmarks/bench_out_of_core_probes.py \
        --rows 200000 --dim 384 --data /work/tmp/ooc_200k_384.npy

Writes (once, in chunks, seeded) an ``n × d`` float32 ``.npy`` file: two labels (balanced,
shuffled), Gaussian rows with 16 shared latent factors (correlated features) whose label-1
mean is shifted along one random direction so the labels are separable but not trivially
(see the accuracy column), plus a per-feature offset and scale so standardisation
matters. Then each probe runs with its default parameters in a fresh child process on
``np.load(path, mmap_mode="r")`` (so ``Probe.fit`` takes the streaming path), and the
child reports its wall time, its process CPU time (user + system,
all threads) and its peak resident memory: ``VmHWM`` (which counts the pages of the
memory-mapped file the process has touched, reclaimable page cache) and the peak of
anonymous memory (``RssAnon`` of /proc/self/status sampled every 20 ms: the process's own
arrays), with the probe's headline
numbers and ``params.streaming``. The file's pages are in the page cache after it is
written (warm reads). ``--delete`` removes the file afterwards.

``--compare`` adds, per probe, the same probe without its permutation test and bootstrap
(``n_permutations=0``, and ``n_bootstrap=0`` for linear) out of core and then in memory
(``np.array`` of the whole matrix), each in its own child: the cost of the cross-validated
fit alone in both routes, and whether they report the same accuracy and confusion matrix.

Prints a JSON line per probe and a Markdown table; the load average is printed before and
after, since the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CHUNK = 65_536
FACTORS = 16
"""Latent factors shared by all features (so the within-label covariance is not a multiple
of the identity and the Ledoit-Wolf intensities are not trivially 1)."""


def write_matrix(path: Path, n: int, d: int, seed: int = 0) -> np.ndarray:
    """Write the synthetic matrix in chunks; return its labels (also saved beside it)."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 2)
    loadings = rng.normal(size=(FACTORS, d)) * 0.5         # correlated features, as embeddings
    direction = rng.normal(size=d)
    direction *= 1.2 / np.linalg.norm(direction)
    offset = rng.normal(size=d) * 3.0
    scale = np.exp(rng.normal(size=d) * 0.5)
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        rows = (rng.normal(size=(stop - start, d))
                + rng.normal(size=(stop - start, FACTORS)) @ loadings
                + y[start:stop, None] * direction)
        X[start:stop] = (rows * scale + offset).astype(np.float32)
    X.flush()
    del X
    np.save(path.with_suffix(".labels.npy"), y)
    return y


BARE = {"lda": {"n_permutations": 0}, "linear": {"n_permutations": 0, "n_bootstrap": 0}}
"""Parameters of the ``--compare`` runs: the cross-validated fit without the extras."""


class AnonPeak:
    """Samples ``RssAnon`` (bytes) of this process in a thread; ``peak`` is the largest."""

    def __init__(self, every: float = 0.02):
        import threading

        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._thread.start()

    @staticmethod
    def now() -> int:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
        return 0

    def _run(self, every: float) -> None:
        while not self._stop.wait(every):
            self.peak = max(self.peak, self.now())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, self.now())


def vm_hwm_bytes() -> int:
    """This process's peak resident size (``VmHWM``). Not ``ru_maxrss``: Linux carries the
    pre-``exec`` high-water mark of the forked parent into it (the parent that wrote the
    4 GB file), so every child reported the same 5.43 GB."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def child(probe: str, path: Path, mode: str) -> None:
    """Run one probe (``mode``: default | bare | bare-in-memory) and print one JSON line."""
    from embedforensics.registry import PROBES

    X = np.load(path, mmap_mode="r")
    y = np.load(path.with_suffix(".labels.npy")).astype(str)
    params = {} if mode == "default" else BARE[probe]
    anon = AnonPeak()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    if mode == "bare-in-memory":
        X = np.array(X)  # loading counts in the time
    result = PROBES.get(probe)(**params).fit(X, y).result_
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    peak = vm_hwm_bytes()
    peak_anon = anon.stop()
    p = result.metrics.get("p_value")
    print(json.dumps({
        "probe": probe, "mode": mode, "rows": int(X.shape[0]), "dim": int(X.shape[1]),
        "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "peak_rss_bytes": int(peak),
        "peak_anon_bytes": int(peak_anon),
        "accuracy": (result.metrics["accuracy"].value if "accuracy" in result.metrics
                     else None),
        "headline": {k: m.value for k, m in result.metrics.items()
                     if k == getattr(PROBES.get(probe), "headline", None)},
        "p_value": None if p is None else p.value, "p_value_n": None if p is None else p.n,
        "out_of_core": result.params.get("out_of_core"),
        "streaming": result.params.get("streaming"),
        "C_per_fold": result.params.get("C_per_fold"),
        "confusion_matrix": (result.tables["confusion_matrix"]["rows"]
                             if "confusion_matrix" in result.tables else None),
    }))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--data", type=Path, required=True, help="the .npy file (written once)")
    ap.add_argument("--probes", nargs="+", default=["lda", "linear"])
    ap.add_argument("--delete", action="store_true", help="delete the data file afterwards")
    ap.add_argument("--compare", action="store_true",
                    help="also each probe without permutations/bootstrap, out of core and "
                         "in memory")
    ap.add_argument("--modes", nargs="+", choices=["default", "bare", "bare-in-memory"],
                    help="runs per probe (default: default, or all three with --compare)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="default", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.data, args.mode)
        return
    print(f"load average before: {os.getloadavg()}", flush=True)
    if not args.data.exists():
        t0 = time.perf_counter()
        write_matrix(args.data, args.rows, args.dim)
        print(f"wrote {args.data} ({args.rows:,} x {args.dim} float32, "
              f"{args.data.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t0:.1f} s",
              flush=True)
    rows = []
    modes = args.modes or (["default", "bare", "bare-in-memory"] if args.compare
                           else ["default"])
    for probe in args.probes:
        for mode in modes:
            out = subprocess.run([sys.executable, __file__, "--data", str(args.data),
                                  "--child", probe, "--mode", mode], check=True,
                                 capture_output=True, text=True)
            line = [s for s in out.stdout.splitlines() if s.startswith("{")][-1]
            print(line, flush=True)
            rows.append(json.loads(line))
            print(f"load average after {probe} ({mode}): {os.getloadavg()}", flush=True)
    print("\n| probe | run | rows × dim | wall s | process CPU s | peak RSS GB | "
          "peak anon GB | accuracy | p-value (n) | passes |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        passes = (r["streaming"] or {}).get("passes")
        p = "—" if r["p_value_n"] is None or r["mode"] != "default" else \
            f"{r['p_value']} ({r['p_value_n']:,})"
        run = {"default": "defaults, out of core", "bare": "no perm./bootstrap, out of core",
               "bare-in-memory": "no perm./bootstrap, in memory"}[r["mode"]]
        print(f"| {r['probe']} | {run} | {r['rows']:,} × {r['dim']} | {r['wall_s']:.1f} | "
              f"{r['cpu_s']:.1f} | {r['peak_rss_bytes'] / 1e9:.2f} | "
              f"{r['peak_anon_bytes'] / 1e9:.2f} | "
              f"{'—' if r['accuracy'] is None else format(r['accuracy'], '.4f')} | "
              f"{p} | {passes} |")
    if args.delete:
        args.data.unlink(missing_ok=True)
        args.data.with_suffix(".labels.npy").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
