"""Fast exact permutation tests (probes/permutation.py) against slow brute-force refits."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from joblib import parallel_config
from sklearn.covariance import ledoit_wolf_shrinkage
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import Ridge
from sklearn.model_selection import StratifiedKFold

from embedforensics.probes.permutation import (
    PENALTY_GRID,
    RidgeCV,
    fold_ids,
    ledoit_wolf_penalty,
    refit_null,
    sequential_p,
    standardise,
    within_fold_permutation,
)


def _data(n: int = 60, d: int = 5, k: int = 2, shift: float = 0.6, seed: int = 0):
    rng = np.random.default_rng(seed)
    codes = np.arange(n) % k
    X = rng.normal(size=(n, d))
    X[:, 0] += shift * codes
    return X, codes


def _ridge_predict(Z, codes, train, test, lam, k):
    """Slow reference: scikit-learn Ridge with an intercept on one-hot / indicator targets."""
    Y = (codes == 1).astype(float) if k == 2 else np.eye(k)[codes]
    model = Ridge(alpha=lam, fit_intercept=True, solver="svd").fit(Z[train], Y[train])
    s = model.predict(Z[test])
    return (s > 0.5).astype(int) if k == 2 else np.argmax(s, axis=1)


def _brute_nested(Z, codes, fold, k):
    """Nested CV written out loop by loop: inner folds are the other outer folds."""
    correct = 0
    for f in np.unique(fold):
        train = np.flatnonzero(fold != f)
        inner_acc = []
        for a in PENALTY_GRID:
            hits = 0
            for g in np.unique(fold):
                if g == f:
                    continue
                tr = np.flatnonzero((fold != f) & (fold != g))
                te = np.flatnonzero(fold == g)
                hits += np.sum(_ridge_predict(Z, codes, tr, te, a * len(tr), k) == codes[te])
            inner_acc.append(hits)
        a = PENALTY_GRID[int(np.argmax(inner_acc))]
        test = np.flatnonzero(fold == f)
        correct += np.sum(_ridge_predict(Z, codes, train, test, a * len(train), k)
                          == codes[test])
    return correct / len(codes)


@pytest.mark.parametrize(("k", "d"), [(2, 5), (3, 4), (2, 80)])
def test_nested_ridge_equals_brute_force_refits(k: int, d: int) -> None:
    """Closed-form nested CV (primal, and dual when d > rows) = Ridge refits per fold."""
    X, codes = _data(n=60, d=d, k=k, seed=k + d)
    Z = standardise(X)
    cv = StratifiedKFold(4, shuffle=True, random_state=1)
    fold = fold_ids(list(cv.split(X, codes)), len(codes))
    fast = RidgeCV(Z, fold, k)
    orders = [np.arange(60)] + [within_fold_permutation(fold, 7, b) for b in range(6)]
    block = np.stack([codes[o] for o in orders], axis=1)
    acc, _ = fast.accuracy(block)
    brute = [_brute_nested(Z, codes[o], fold, k) for o in orders]
    np.testing.assert_allclose(acc, brute, atol=1e-12)


def test_ledoit_wolf_ridge_equals_shrunk_covariance_refits() -> None:
    X, codes = _data(n=50, d=6, seed=3)
    X = X @ np.random.default_rng(4).normal(size=(6, 6))  # correlated: shrinkage below 1
    Z = standardise(X)
    fold = np.arange(50) % 5
    fast = RidgeCV(Z, fold, 2, nested=False, fixed_penalty=ledoit_wolf_penalty)
    orders = [np.arange(50)] + [within_fold_permutation(fold, 2, b) for b in range(5)]
    acc, chosen = fast.accuracy(np.stack([codes[o] for o in orders], axis=1))
    for j, o in enumerate(orders):
        c = codes[o]
        hits = 0
        for f in range(5):
            train, test = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
            C = Z[train] - Z[train].mean(axis=0)
            a = ledoit_wolf_shrinkage(C, assume_centered=True)
            mu = np.trace(C.T @ C / len(train)) / C.shape[1]
            assert 0 < a < 1
            lam = a * mu * len(train) / (1 - a)
            assert chosen[f, j] == pytest.approx(lam / len(train))
            hits += np.sum(_ridge_predict(Z, c, train, test, lam, 2) == c[test])
        assert acc[j] == pytest.approx(hits / 50, abs=1e-12)


def test_within_fold_permutations_stay_in_their_fold_and_are_reproducible() -> None:
    fold = np.repeat([0, 1, 2], [5, 7, 4])
    order = within_fold_permutation(fold, 11, 3)
    assert sorted(order) == list(range(16)) and np.all(fold[order] == fold)
    assert np.array_equal(order, within_fold_permutation(fold, 11, 3))
    assert not np.array_equal(order, within_fold_permutation(fold, 11, 4))


def test_sequential_p_independent_of_batch_and_besag_clifford_stop() -> None:
    rng = np.random.default_rng(0)
    null = rng.uniform(size=99)

    def null_of(idx):
        return null[idx]

    full = sequential_p(0.9, null_of, 99)
    assert full.p == (1 + np.sum(null >= 0.9)) / 100 and not full.stopped_early
    for batch in (1, 7, 64):
        r = sequential_p(0.5, null_of, 99, stop_after=10, batch=batch)
        first = int(np.flatnonzero(np.cumsum(null >= 0.5) >= 10)[0]) + 1
        assert r.stopped_early and r.n_evaluated == first and r.p == 10 / first
    r = sequential_p(0.999, null_of, 99, stop_after=10)
    assert not r.stopped_early and r.p == 0.01 and r.at_floor


def _lda_accuracy(X, codes, fold, order):
    y = codes[order]
    hits = 0
    for f in np.unique(fold):
        tr, te = fold != f, fold == f
        pred = LinearDiscriminantAnalysis().fit(X[tr], y[tr]).predict(X[te])
        hits += np.sum(pred == y[te])
    return hits / len(y)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_refit_null_is_a_brute_force_loop_for_any_worker_count(n_jobs: int) -> None:
    X, codes = _data(n=40, d=3, seed=5)
    fold = np.arange(40) % 4
    stat = partial(_lda_accuracy, X, codes, fold)
    observed = stat(np.arange(40))
    with parallel_config(backend="threading"):  # loky start-up alone takes seconds here
        r = sequential_p(observed, refit_null(stat, fold, 9, n_jobs=n_jobs), 19, batch=8)
    brute = [stat(within_fold_permutation(fold, 9, b)) for b in range(19)]
    np.testing.assert_array_equal(r.null, brute)
    assert r.p == (1 + sum(v >= observed for v in brute)) / 20


def test_ridge_permutation_p_holds_its_level_under_a_true_null() -> None:
    """200 null data sets, 19 permutations: P(p <= 0.05) <= 0.05 for an exact test; more
    than 19 rejections in 200 has probability < 0.01 for a valid test."""
    rejections = 0
    for seed in range(200):
        X, codes = _data(n=30, d=4, shift=0.0, seed=100 + seed)
        fold = np.arange(30) % 3
        r = RidgeCV(standardise(X), fold, 2).permutation_test(codes, 19, seed)
        rejections += r.p <= 0.05
    assert rejections <= 19


@pytest.mark.parametrize("probe", ["linear", "lda"])
def test_two_folds_run_and_the_p_value_stays_in_range(probe):
    """n_folds=2 leaves no other outer fold for the nested choice of C / the ridge penalty:
    the inner split and the label-free penalty take over instead of dividing by zero."""
    from embedforensics.registry import PROBES

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 8))
    y = np.array([0, 1] * 20)
    X[y == 1, 0] += 2.0
    est = PROBES.get(probe)(n_folds=2, n_permutations=19)
    est.fit(X, y)
    res = est.result_
    p = res.metrics["p_value"].value
    assert 0 < p <= 1 and res.metrics["accuracy"].value > 0.7
