"""The baselines probe's speed before and after the closed-form chance test (issue 20).

    OMP_NUM_THREADS=1 heavy .venv/bin/python benchmarks/bench_baselines_speed.py default
    OMP_NUM_THREADS=1 heavy .venv/bin/python benchmarks/bench_baselines_speed.py scale
    OMP_NUM_THREADS=1 heavy .venv/bin/python benchmarks/bench_baselines_speed.py power

``default``: the default study's cached embeddings and texts (``recipes/default.yaml``;
run the study once first), the probe at its defaults, alternating in the same process the
current module and the module at ``--old`` (a git revision; its file is read with
``git show``): with the chance test and without it (``n_permutations=0``), ``--rounds``
times each; prints every run and the medians. ``scale``: the chance test alone
(:func:`max_ridge_permutation_test`, 99 permutations, features included) on seeded
stratified subsamples of real review snippets (the calibration pool: Rotten Tomatoes
'fresh' and 'rotten', MiniLM) at ``--rows``, then the whole probe on the whole pool with
its default ``chance_max_rows``. ``power``: the chance test's power, old and new on the
same data, against a surface marker (" !" appended to ``--marker-rate`` of one side's
texts, two halves of 'fresh'; the generator of ``bench_calibration.py``'s surface-marker
mode, other seeds). BLAS is limited to one thread; the load average is printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from embedforensics.probes.baselines import (
    SurfaceBaselineProbe,
    chance_features,
    max_ridge_permutation_test,
)
from embedforensics.probes.permutation import fold_ids
from embedforensics.probes.stats import stratified_subsample

ROOT = Path(__file__).resolve().parents[1]


def _timed(fn):
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def _old_module(rev: str):
    source = subprocess.run(["git", "show", f"{rev}:embedforensics/probes/baselines.py"],
                            cwd=ROOT, check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "old_baselines.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("old_baselines", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def default(args: argparse.Namespace) -> None:
    from embedforensics.recipe import load_recipe
    from embedforensics.runner import embed

    es = embed(load_recipe(ROOT / "recipes" / "default.yaml"), progress=False)
    X, y, texts = es.X, es.labels.astype(str), list(es.texts)
    old = _old_module(args.old).SurfaceBaselineProbe
    runs = {f"old ({args.old})": (old, {}), "new": (SurfaceBaselineProbe, {}),
            f"old ({args.old}), n_permutations=0": (old, {"n_permutations": 0}),
            "new, n_permutations=0": (SurfaceBaselineProbe, {"n_permutations": 0})}
    print(f"{len(y)} rows × {X.shape[1]}; load average {os.getloadavg()[0]:.2f} before",
          flush=True)
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in runs}
    for r in range(args.rounds):
        for name, (cls, kw) in runs.items():
            res, wall, cpu = _timed(lambda cls=cls, kw=kw: cls(seed=0, **kw).fit(
                X, y, texts=texts).result_)
            times[name].append((wall, cpu))
            p = res.metrics.get("best_baseline_p_value")
            print(f"round {r}, {name}: wall {wall:.1f} s, CPU {cpu:.1f} s, "
                  f"p = {None if p is None else p.value}, "
                  f"load {os.getloadavg()[0]:.2f}", flush=True)
    print("| probe | median wall s | median CPU s |\n|---|---|---|")
    for name, v in times.items():
        print(f"| {name} | {np.median([w for w, _ in v]):.1f} | "
              f"{np.median([c for _, c in v]):.1f} |")
    print(f"load average {os.getloadavg()[0]:.2f} after")


def scale(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_calibration import embeddings_and_texts

    X, y, texts = embeddings_and_texts(pool=2400)
    print(f"pool {len(y)} rows; load average {os.getloadavg()[0]:.2f} before", flush=True)
    from sklearn.feature_extraction.text import TfidfVectorizer

    lexical = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True,
                              max_features=50000, lowercase=False).fit_transform(texts).tocsr()
    labels = np.unique(y)
    print("| rows | chance test wall s | CPU s | lexical rank | p |\n|---|---|---|---|---|")
    for m in args.rows:
        rows = stratified_subsample(y, m, 0)
        codes = np.searchsorted(labels, y[rows])
        cv = StratifiedKFold(5, shuffle=True, random_state=0)
        fold = fold_ids(list(cv.split(codes, codes)), len(rows))

        def run(rows=rows, codes=codes, fold=fold):
            feats = chance_features(texts[rows], lexical[rows])
            return feats, max_ridge_permutation_test(feats, codes, fold, len(labels), 99, 0)

        (feats, (test, _, _)), wall, cpu = _timed(run)
        print(f"| {len(rows)} | {wall:.1f} | {cpu:.1f} | {feats['lexical'].shape[1]} | "
              f"{test.p:.3g} |", flush=True)
    for kw in ({}, {"n_permutations": 0}):
        res, wall, cpu = _timed(lambda kw=kw: SurfaceBaselineProbe(**kw).fit(
            X, y, texts=list(texts)).result_)
        p = res.metrics.get("best_baseline_p_value")
        print(f"whole probe, {len(y)} rows, {kw or 'defaults'}: wall {wall:.1f} s, "
              f"CPU {cpu:.1f} s" + ("" if p is None else f", chance test on n = {p.n}"),
              flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} after")


def power(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_calibration import embeddings_and_texts

    X, y, texts = embeddings_and_texts(pool=2400)
    fresh, t_fresh = X[y == "fresh"], texts[y == "fresh"]
    old = _old_module(args.old).SurfaceBaselineProbe
    m, reps = args.power_n, args.power_reps
    print(f"surface marker ' !' on {args.marker_rate:g} of one side's texts, {m} vs {m} "
          f"'fresh' snippets, {reps} repetitions; load average {os.getloadavg()[0]:.2f}",
          flush=True)
    tests = {f"old ({args.old}): refit logistic regressions, 19 permutations": (old, 19),
             "new: closed-form ridge read-outs, 19 permutations": (SurfaceBaselineProbe, 19),
             "new: closed-form ridge read-outs, 99 permutations": (SurfaceBaselineProbe, 99)}
    p = {k: [] for k in tests}
    acc: dict[str, list[float]] = {}
    for rep in range(reps):
        rng = np.random.default_rng(20_000 + rep)
        idx = rng.permutation(len(fresh))[: 2 * m]
        tb = t_fresh[idx[m:]].copy()
        marked = rng.random(m) < args.marker_rate
        tb[marked] = [t + " !" for t in tb[marked]]
        Xr = fresh[idx]
        yr = np.array(["a"] * m + ["b"] * m)
        T = list(np.concatenate([t_fresh[idx[:m]], tb]))
        for name, (cls, B) in tests.items():
            met = cls(seed=rep, n_permutations=B).fit(Xr, yr, texts=T).result_.metrics
            p[name].append(met["best_baseline_p_value"].value)
            for key in ("length_accuracy", "lexical_accuracy", "ridge_accuracy_length",
                        "ridge_accuracy_lexical"):
                if key in met and name.startswith("new") and B == 99:
                    acc.setdefault(key, []).append(met[key].value)
    print("| chance test | rejections at 0.05 |\n|---|---|")
    for name, v in p.items():
        print(f"| {name} | {int(np.sum(np.asarray(v) <= 0.05))}/{reps} |")
    print("mean accuracies: " + ", ".join(f"{k} {np.mean(v):.3f}" for k, v in acc.items()))
    print(f"load average {os.getloadavg()[0]:.2f} after")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=("default", "scale", "power"))
    parser.add_argument("--old", default="f808573",
                        help="revision with the former refit chance test")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, nargs="+", default=[500, 1000, 2000, 3000])
    parser.add_argument("--marker-rate", type=float, default=0.3)
    parser.add_argument("--power-n", type=int, default=300)
    parser.add_argument("--power-reps", type=int, default=40)
    args = parser.parse_args()
    with threadpool_limits(1):
        {"default": default, "scale": scale, "power": power}[args.what](args)


if __name__ == "__main__":
    main()
