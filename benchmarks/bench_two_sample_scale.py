"""The two_sample probe at 20,000-100,000 rows (issue 20): cost of two code versions in the
same run, and the false-positive rate of its scalable tests under a true null.

``timing`` fits ``TwoSampleProbe()`` (default parameters) on ``benchmarks/bench_probes.py``'s
synthetic 384-d data, each fit in its own subprocess through ``bench_probes.py --one``,
alternating the code trees given (e.g. the previous commit unpacked into /tmp and this
checkout), and reports the median process CPU s, wall s and peak RSS per tree and size with
the load average at each start::

    git archive HEAD~1 embedforensics benchmarks | tar -x -C /tmp/old
    OMP_NUM_THREADS=2 heavy .venv/bin/python benchmarks/bench_two_sample_scale.py timing \\
        --tree old=/tmp/old --tree new=. --sizes 20000 100000 --repeats 3

``profile`` runs the three tests directly (cProfile, top functions) on the same data with
``n_permutations`` permutations, optionally without the one-thread limit on the
permutation blocks' products (``--block-threads none``)::

    OMP_NUM_THREADS=2 heavy .venv/bin/python benchmarks/bench_two_sample_scale.py profile \
        --n 100000 --block-threads 1

``null`` draws two labels from one distribution (heavy-tailed, anisotropic, unit-length
rows, 384-d) at a size above ``exact_max_rows``, so the probe uses random-Fourier-feature
MMD, sliced energy and the ridge classifier test, and counts p ≤ 0.05 per test with a
Clopper-Pearson 95% interval, for each ``stop_after`` given (``none``: every permutation)::

    OMP_NUM_THREADS=1 heavy .venv/bin/python benchmarks/bench_two_sample_scale.py null \\
        --reps 200 --n 5000 --stop-after 10 none
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

HERE = Path(__file__).resolve().parent


def load() -> float:
    return os.getloadavg()[0]


def timing(args: argparse.Namespace) -> None:
    trees = dict(t.split("=", 1) for t in args.tree)
    rows = []
    for n in args.sizes:
        for rep in range(args.repeats):
            for name, tree in trees.items():
                root = Path(tree).resolve()
                env = {**os.environ, "PYTHONPATH": str(root)}
                cmd = [sys.executable, str(root / "benchmarks" / "bench_probes.py"), "--one",
                       "two_sample", str(n), "--dim", str(args.dim)]
                row = {"tree": name, "n": n, "repeat": rep, "load_start": load()}
                t0 = time.perf_counter()
                try:
                    out = subprocess.run(cmd, capture_output=True, text=True, env=env,
                                         timeout=args.timeout, check=True, cwd=root)
                    row.update(json.loads(out.stdout.strip().splitlines()[-1]))
                except subprocess.TimeoutExpired:
                    row.update({"cpu_s": None, "timeout": args.timeout})
                except subprocess.CalledProcessError as exc:
                    row.update({"cpu_s": None,
                                "error": (exc.stderr or "").strip().splitlines()[-3:]})
                row["subprocess_wall_s"] = time.perf_counter() - t0
                row["load_end"] = load()
                rows.append(row)
                print(json.dumps(row), flush=True)
                if args.json:
                    with open(args.json, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps(row) + "\n")
    print(f"\nmedians over repeats (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"{os.cpu_count()} CPUs)\n")
    print("| tree | rows | CPU s | wall s | peak MB | load avg at starts | runs |")
    print("|---|---|---|---|---|---|---|")
    med = {}
    for n in args.sizes:
        for name in trees:
            mine = [r for r in rows if r["n"] == n and r["tree"] == name]
            done = [r for r in mine if r.get("cpu_s") is not None]
            loads = ", ".join(f"{r['load_start']:.1f}" for r in mine)
            if not done:
                print(f"| {name} | {n:,} | not finished (timeout {args.timeout:.0f} s) | | | "
                      f"{loads} | {len(mine)} |")
                continue
            cpu = float(np.median([r["cpu_s"] for r in done]))
            med[(name, n)] = cpu
            print(f"| {name} | {n:,} | {cpu:.1f} | "
                  f"{np.median([r['wall_s'] for r in done]):.1f} | "
                  f"{np.median([r['peak_rss_mb'] for r in done]):.0f} | {loads} | "
                  f"{len(done)} of {len(mine)} |")
    names = list(trees)
    if len(names) == 2:
        for n in args.sizes:
            if (names[0], n) in med and (names[1], n) in med:
                print(f"\n{n:,} rows: median CPU {names[0]} / {names[1]} = "
                      f"{med[(names[0], n)] / med[(names[1], n)]:.1f}")


def profile(args: argparse.Namespace) -> None:
    import cProfile
    import pstats
    import resource

    sys.path.insert(0, str(HERE))
    from bench_probes import data

    from embedforensics.probes import scalable

    scalable.BLOCK_BLAS_THREADS = None if args.block_threads == "none" else int(
        args.block_threads)
    X, y = data(args.n, args.dim)
    A, B = X[y == "a"], X[y == "b"]
    is_a = np.r_[np.ones(len(A), bool), np.zeros(len(B), bool)]
    print(f"n={args.n} OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')} "
          f"BLOCK_BLAS_THREADS={scalable.BLOCK_BLAS_THREADS} load {load():.2f}")
    perms = {"n_permutations": args.permutations}
    tests = {"rff MMD": lambda: scalable.rff_mmd_test(A, B, seed=1, **perms),
             "sliced energy": lambda: scalable.sliced_energy_test(A, B, seed=2, **perms),
             "ridge C2ST": lambda: scalable.ridge_c2st(np.concatenate([A, B]), is_a,
                                                       n_folds=5, seed=3, **perms)}
    for name, run in tests.items():
        prof = cProfile.Profile()
        c0, t0 = time.process_time(), time.perf_counter()
        prof.enable()
        out = run()
        prof.disable()
        print(f"{name}: CPU {time.process_time() - c0:.1f} s, wall "
              f"{time.perf_counter() - t0:.1f} s, "
              f"{ {k: v for k, v in out.items() if isinstance(v, float)} }", flush=True)
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.top)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB, "
          f"load {load():.2f}")


def null_data(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two labels from one heavy-tailed, anisotropic distribution, rows of unit length."""
    rng = np.random.default_rng(seed)
    scales = 1.0 / np.sqrt(np.arange(1, d + 1))
    X = (rng.standard_t(5, size=(n, d)) * scales).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = rng.permutation(np.array(["a", "b"])[np.arange(n) % 2])
    return X, y


def null(args: argparse.Namespace) -> None:
    from embedforensics.compare.metrics import clopper_pearson
    from embedforensics.probes.two_sample import TwoSampleProbe

    settings = [None if s == "none" else int(s) for s in args.stop_after]
    counts = {s: {t: 0 for t in ("mmd", "energy", "c2st")} for s in settings}
    runs = {s: {t: 0 for t in ("mmd", "energy", "c2st")} for s in settings}
    cpu = {s: 0.0 for s in settings}
    load0, t0 = load(), time.perf_counter()
    methods = set()
    for rep in range(args.reps):
        X, y = null_data(args.n, args.dim, 1000 + rep)
        for s in settings:
            c0 = time.process_time()
            result = TwoSampleProbe(stop_after=s, seed=rep).fit(X, y).result_
            cpu[s] += time.process_time() - c0
            columns = result.tables["pairs"]["columns"]
            row = dict(zip(columns, result.tables["pairs"]["rows"][0], strict=True))
            methods.add(f"{row['MMD method']}; {row['energy method']}")
            for t, col in (("mmd", "MMD"), ("energy", "energy"), ("c2st", "C2ST")):
                counts[s][t] += row[f"{col} p (BH)"] <= args.level   # one pair: BH = raw
                runs[s][t] += row[f"{col} permutations run"]
        if (rep + 1) % 20 == 0:
            print(f"{rep + 1} reps, {time.perf_counter() - t0:.0f} s, "
                  f"{json.dumps({str(s): counts[s] for s in settings})}", flush=True)
    print(f"\nnull: {args.reps} repetitions, n = {args.n} ({args.n // 2} per label), "
          f"{args.dim}-d, level {args.level}; methods: {sorted(methods)}; "
          f"{time.perf_counter() - t0:.0f} s wall; load average {load0:.1f} before, "
          f"{load():.1f} after; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}\n")
    print("| stop_after | test | p ≤ 0.05 | rate (95% CI) | mean permutations run | "
          "CPU s per fit |")
    print("|---|---|---|---|---|---|")
    for s in settings:
        for t in ("mmd", "energy", "c2st"):
            k = counts[s][t]
            lo, hi = clopper_pearson(k, args.reps)
            print(f"| {s} | {t} | {k}/{args.reps} | {k / args.reps:.3f} ({lo:.3f}–{hi:.3f}) | "
                  f"{runs[s][t] / args.reps:.0f} | {cpu[s] / args.reps:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    t = sub.add_parser("timing")
    t.add_argument("--tree", action="append", required=True, help="NAME=PATH, repeatable")
    t.add_argument("--sizes", type=int, nargs="+", default=[20000, 100000])
    t.add_argument("--repeats", type=int, default=3)
    t.add_argument("--dim", type=int, default=384)
    t.add_argument("--timeout", type=float, default=900)
    t.add_argument("--json", help="append the raw rows to this JSON-lines file")
    pr = sub.add_parser("profile")
    pr.add_argument("--n", type=int, default=100000)
    pr.add_argument("--dim", type=int, default=384)
    pr.add_argument("--permutations", type=int, default=999)
    pr.add_argument("--block-threads", default="1", help="an int, or none")
    pr.add_argument("--top", type=int, default=8)
    nl = sub.add_parser("null")
    nl.add_argument("--reps", type=int, default=200)
    nl.add_argument("--n", type=int, default=5000)
    nl.add_argument("--dim", type=int, default=384)
    nl.add_argument("--level", type=float, default=0.05)
    nl.add_argument("--stop-after", nargs="+", default=["10", "none"])
    args = parser.parse_args()
    {"timing": timing, "profile": profile, "null": null}[args.mode](args)


if __name__ == "__main__":
    main()
