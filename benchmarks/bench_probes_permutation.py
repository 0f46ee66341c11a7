"""Permutation tests of the linear and LDA probes: old refit loop against the closed-form
exact tests (issue 20), same run, default-study shape (800 rows × 384, two labels).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_probes_permutation.py --old-perms 9

Reports process CPU seconds per permutation (median of ``--repeats`` runs): the old
``stats.cv_permutation_p`` (scikit-learn refits of every fold, serial) with the probes'
former classifiers (logistic regression C = 1; shrunk LDA), and the new
``permutation.RidgeCV`` tests (nested-CV ridge for linear, Ledoit–Wolf discriminant for
LDA) at the default 99 permutations; and the whole probe's fit at defaults. The old loop
runs only ``--old-perms`` permutations (it is linear in them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from bench_probes import data  # the same synthetic embeddings (run as a script)
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from embedforensics.probes.lda import LDAProbe
from embedforensics.probes.linear import LinearProbe
from embedforensics.probes.permutation import RidgeCV, fold_ids, ledoit_wolf_penalty, standardise
from embedforensics.probes.stats import cv_permutation_p


def cpu(fn) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=800)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--old-perms", type=int, default=9)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    X, y = data(args.n, args.dim)
    codes = np.searchsorted(np.unique(y), y)
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    fold = fold_ids(list(cv.split(X, y)), len(y))
    old_lin = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
    old_lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")
    load0 = os.getloadavg()[0]
    rows = {
        "linear, old refit loop (C=1)": (lambda: cv_permutation_p(
            old_lin, X, y, cv, 0.5, args.old_perms, 0), args.old_perms),
        "lda, old refit loop": (lambda: cv_permutation_p(
            old_lda, X, y, cv, 0.5, args.old_perms, 0), args.old_perms),
        "linear, nested ridge closed form": (lambda: RidgeCV(
            standardise(X), fold, 2).permutation_test(codes, 99, 0), 99),
        "lda, Ledoit-Wolf discriminant closed form": (lambda: RidgeCV(
            standardise(X), fold, 2, nested=False, fixed_penalty=ledoit_wolf_penalty
        ).permutation_test(codes, 99, 0), 99),
        "linear probe fit, defaults (n_bootstrap=1000)": (
            lambda: LinearProbe().fit(X, y), 1),
        "lda probe fit, defaults": (lambda: LDAProbe().fit(X, y), 1),
    }
    print(f"{args.n} rows × {args.dim}; load average {load0:.1f} before")
    print("| what | permutations | CPU s per call (median of "
          f"{args.repeats}) | CPU s per permutation |")
    print("|---|---|---|---|")
    for name, (fn, perms) in rows.items():
        times = [cpu(fn) for _ in range(args.repeats)]
        med = statistics.median(times)
        print(f"| {name} | {perms} | {med:.2f} | {med / perms:.4f} |", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} after")


if __name__ == "__main__":
    main()
