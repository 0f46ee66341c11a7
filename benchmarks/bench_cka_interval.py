"""Coverage of confidence intervals for CKA over test inputs (issue 16's CI defect).

Simulated paired representations (tanh features of a shared Gaussian latent plus noise) with
a known population CKA (computed on 40,000 rows); for each of ``--studies`` simulated studies
of ``n`` inputs, the share of 95 % intervals that cover the population value:

- ``percentile``: percentile bootstrap of linear CKA over inputs (what the representations
  comparator did before): resamples repeat rows, which raises CKA;
- ``jackknife_debiased``: delete-one jackknife of the debiased CKA, normal approximation
  (what it does now);
- and the mean bias of the biased and debiased point estimates.

    .venv/bin/python benchmarks/bench_cka_interval.py --n 200 --studies 100
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from embedforensics.compare.representations import (
    debiased_cka_leave_one_out,
    jackknife_interval,
    linear_cka,
)


def simulate(n: int, rng: np.random.Generator, A: np.ndarray, B: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    d = A.shape[0]
    Z = rng.normal(size=(n, d)) * np.linspace(2, 0.2, d)
    X = np.tanh(Z @ A) + 0.3 * rng.normal(size=(n, A.shape[1]))
    Y = np.tanh(Z @ B) + 0.3 * rng.normal(size=(n, B.shape[1]))
    return X, Y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--studies", type=int, default=100)
    ap.add_argument("--resamples", type=int, default=200)
    ap.add_argument("--mix", type=float, default=0.6, help="shared part of the two maps")
    ap.add_argument("--features", type=int, default=64)
    args = ap.parse_args()
    rng0 = np.random.default_rng(0)
    A = rng0.normal(size=(20, args.features))
    B = args.mix * A + 0.8 * rng0.normal(size=(20, args.features))
    truth = linear_cka(*simulate(40_000, np.random.default_rng(1), A, B))
    hits = {"percentile": 0, "jackknife_debiased": 0}
    bias_biased, bias_debiased = [], []
    started = time.perf_counter()
    for s in range(args.studies):
        rng = np.random.default_rng(100 + s)
        X, Y = simulate(args.n, rng, A, B)
        boot = [linear_cka(X[i], Y[i])
                for i in (rng.integers(0, args.n, args.n) for _ in range(args.resamples))]
        lo, hi = np.quantile(boot, [0.025, 0.975])
        hits["percentile"] += bool(lo <= truth <= hi)
        est = linear_cka(X, Y, debiased=True)
        lo, hi = jackknife_interval(est, debiased_cka_leave_one_out(X, Y))
        hits["jackknife_debiased"] += bool(lo <= truth <= hi)
        bias_biased.append(linear_cka(X, Y) - truth)
        bias_debiased.append(est - truth)
    print(f"n={args.n} studies={args.studies} mix={args.mix} features={args.features} "
          f"population CKA={truth:.4f} ({time.perf_counter() - started:.1f} s)")
    for name, k in hits.items():
        print(f"  coverage of 95% {name}: {k / args.studies:.2f} ({k}/{args.studies})")
    print(f"  mean bias: biased CKA {np.mean(bias_biased):+.4f}, "
          f"debiased CKA {np.mean(bias_debiased):+.4f}")


if __name__ == "__main__":
    main()
