"""The default study's probe stage on its real (cached) embeddings, probe by probe (issue 20).

    OMP_NUM_THREADS=2 heavy .venv/bin/python benchmarks/bench_probes_default.py

Embeds ``recipes/default.yaml`` through the cache (run the study once first, or this embeds
800 texts), then fits each recipe probe with the recipe's parameters and the recipe's seed,
timing wall and process CPU seconds. ``--skip`` leaves probes out (e.g. ``baselines``,
which needs the texts and is another module's). ``--refit`` also times the linear and LDA
probes with ``permutation_test="refit"``, no sequential stopping, one worker, and the
linear probe's former fixed C = 1 — the cost of refitting the probes' own classifiers for
every permutation, as before issue 20 — in the same run, for a same-run ratio. The load
average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from embedforensics.recipe import load_recipe
from embedforensics.registry import PROBES
from embedforensics.runner import embed

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipe", default=str(ROOT / "recipes" / "default.yaml"))
    parser.add_argument("--skip", nargs="*", default=[])
    parser.add_argument("--refit", action="store_true")
    args = parser.parse_args()
    loaded = load_recipe(args.recipe)
    es = embed(loaded, progress=False)
    X, y = es.X, es.labels.astype(str)
    texts = list(es.texts) if es.texts is not None else None
    print(f"{len(y)} rows × {X.shape[1]}; load average {os.getloadavg()[0]:.1f} before")
    print("| probe | wall s | CPU s | headline |")
    print("|---|---|---|---|")
    total_wall = total_cpu = 0.0
    runs = [(spec.name, dict(spec.params), "") for spec in loaded.recipe.probes
            if spec.name not in args.skip]
    if args.refit:  # the former probes' classifiers (linear: C = 1), refitted per permutation
        refit = {"permutation_test": "refit", "stop_after": None, "n_jobs": 1}
        runs += [("linear", {**refit, "C": 1.0}, " (C=1, refit test, no stopping, 1 worker)"),
                 ("lda", refit, " (refit test, no stopping, 1 worker)")]
    for name, params, note in runs:
        cls = PROBES.get(name)
        if "seed" in cls._get_param_names():
            params.setdefault("seed", loaded.recipe.seed)
        c0, t0 = time.process_time(), time.perf_counter()
        probe = cls(**params).fit(X, y, texts=texts, ids=list(es.ids), meta={})
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if not note:
            total_wall += wall
            total_cpu += cpu
        m = probe.result_.metrics
        head = cls.headline
        value = m[head].value if head in m else None
        extra = (f"; p = {m['p_value'].value:.3g}" if "p_value" in m else "")
        print(f"| {name}{note} | {wall:.1f} | {cpu:.1f} | {head} = {value:.4g}{extra} |",
              flush=True)
    print(f"| all of the recipe's probes above | {total_wall:.1f} | {total_cpu:.1f} | |")
    print(f"load average {os.getloadavg()[0]:.1f} after")


if __name__ == "__main__":
    main()
