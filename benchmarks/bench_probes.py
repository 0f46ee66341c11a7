"""Probe cost against rows (issue 20): process CPU seconds, wall seconds and peak memory of
each probe with its default parameters on synthetic 384-d embeddings, at several sizes, with
the growth exponent between sizes (slope of log CPU time against log rows).

    OMP_NUM_THREADS=2 heavy .venv/bin/python benchmarks/bench_probes.py \\
        --sizes 1000 5000 20000 --output benchmarks/results/probes.md

Each (probe, size) runs in its own subprocess (so peak RSS is that probe's, and a run over
``--timeout`` is stopped and reported as such). Data: two labels of equal size, rows drawn
from N(0, I) with the label shifting 8 coordinates by 0.15, scaled to unit length like
normalised sentence embeddings, float32. The load average before and after is printed:
on a shared machine compare probes within one run, not across runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

PROBES = ("linear", "lda", "two_sample", "cluster", "pca", "learning_curve")


def data(n: int, d: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    y = np.array(["a", "b"])[np.arange(n) % 2]
    X = rng.normal(size=(n, d)).astype(np.float32)
    X[y == "b", :8] += 0.15 * math.sqrt(d) / math.sqrt(8) / 4
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X, y


def one(probe: str, n: int, d: int) -> dict:
    """Fit one probe once (defaults) and report its CPU, wall and peak RSS."""
    from embedforensics.registry import PROBES as REGISTRY

    X, y = data(n, d)
    cls = REGISTRY.get(probe)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    c0, t0 = time.process_time(), time.perf_counter()
    result = cls().fit(X, y).result_
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    headline = getattr(cls, "headline", None)
    value = result.metrics[headline].value if headline in result.metrics else None
    return {"probe": probe, "n": n, "cpu_s": cpu, "wall_s": wall,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_before_mb": rss_before / 1024, "headline": value}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000])
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--probes", nargs="+", default=list(PROBES))
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--output")
    parser.add_argument("--json", help="append the raw rows to this JSON-lines file")
    parser.add_argument("--one", nargs=2, metavar=("PROBE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.dim)))
        return
    load0 = os.getloadavg()
    rows = []
    for n in args.sizes:  # size-major: a run cut short still has every probe's small sizes
        for probe in args.probes:
            cmd = [sys.executable, __file__, "--one", probe, str(n), "--dim", str(args.dim)]
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout,
                                     check=True).stdout.strip().splitlines()[-1]
                row = json.loads(out)
            except subprocess.TimeoutExpired:
                row = {"probe": probe, "n": n, "cpu_s": None, "timeout": args.timeout}
            except subprocess.CalledProcessError as exc:
                row = {"probe": probe, "n": n, "cpu_s": None,
                       "error": (exc.stderr or "").strip().splitlines()[-1:]}
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.json:
                with open(args.json, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row) + "\n")
    load1 = os.getloadavg()
    lines = [f"Probe cost, {args.dim}-d synthetic embeddings, default parameters "
             f"({platform.node()}, {os.cpu_count()} CPUs, OMP_NUM_THREADS="
             f"{os.environ.get('OMP_NUM_THREADS')}; load average {load0[0]:.1f} before, "
             f"{load1[0]:.1f} after)", "",
             "| probe | " + " | ".join(f"{n:,} rows: CPU s (wall s, peak MB)" for n in args.sizes)
             + " | growth exponent |",
             "|---|" + "---|" * (len(args.sizes) + 1)]
    for probe in args.probes:
        mine = sorted((r for r in rows if r["probe"] == probe), key=lambda r: r["n"])
        cells, pts = [], []
        for r in mine:
            if r.get("cpu_s") is None:
                cells.append(f"> {r['timeout']:.0f} s wall" if "timeout" in r else "error")
            else:
                cells.append(f"{r['cpu_s']:.1f} ({r['wall_s']:.1f}, {r['peak_rss_mb']:.0f})")
                pts.append((r["n"], r["cpu_s"]))
        slopes = [math.log(b[1] / a[1]) / math.log(b[0] / a[0])
                  for a, b in zip(pts, pts[1:], strict=False) if a[1] > 0 and b[1] > 0]
        lines.append(f"| {probe} | " + " | ".join(cells) + " | "
                     + ", ".join(f"{s:.2f}" for s in slopes) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
