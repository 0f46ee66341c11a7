"""Scalable two-sample statistics: equal (within their approximation) to the exact ones on
small data, exact refits for the ridge classifier test, calibrated under a true null, and
chosen by ``method="auto"`` above the size threshold."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from embedforensics.probes.scalable import (
    permutation_p,
    rff_mmd_test,
    ridge_c2st,
    sliced_energy_test,
    sphere_mean_abs,
)
from embedforensics.probes.two_sample import TwoSampleProbe, mmd_energy_tests


def _pair(seed: int = 0, shift: float = 0.4, n_a: int = 80, n_b: int = 60, d: int = 6):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n_a, d)), rng.normal(size=(n_b, d)) + shift


def test_rff_mmd_approaches_the_exact_statistic() -> None:
    A, B = _pair()
    exact = mmd_energy_tests(A, B, n_permutations=19, seed=0)
    approx = rff_mmd_test(A, B, n_permutations=19, seed=0, n_features=40_000)
    assert approx["bandwidth"] == pytest.approx(exact["bandwidth"])  # all rows < 1000
    assert approx["mmd2"] == pytest.approx(exact["mmd2"], rel=0.05)


def test_sphere_constant_and_sliced_energy_approach_the_exact_statistic() -> None:
    theta = np.random.default_rng(0).normal(size=(200_000, 5))
    theta /= np.linalg.norm(theta, axis=1, keepdims=True)
    assert sphere_mean_abs(5) == pytest.approx(np.abs(theta[:, 0]).mean(), rel=0.01)
    assert sphere_mean_abs(1) == pytest.approx(1.0)
    A, B = _pair(1)
    exact = mmd_energy_tests(A, B, n_permutations=19, seed=0)["energy"]
    sliced = sliced_energy_test(A, B, n_permutations=1, seed=0,
                                n_directions=20_000)["energy"]
    assert sliced == pytest.approx(exact, rel=0.02)  # Monte Carlo over directions


def test_sliced_energy_in_one_dimension_is_exact() -> None:
    A, B = _pair(2, d=1)
    exact = 2 * cdist(A, B).mean() - cdist(A, A).mean() - cdist(B, B).mean()
    assert sliced_energy_test(A, B, n_permutations=19, seed=0,
                              n_directions=3)["energy"] == pytest.approx(exact, rel=1e-10)


def test_ridge_c2st_equals_sklearn_ridge_on_the_same_folds() -> None:
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold
    from sklearn.preprocessing import StandardScaler

    A, B = _pair(3, shift=0.3, d=10)
    X = np.concatenate([A, B])
    t = np.r_[np.ones(len(A)), -np.ones(len(B))]
    correct = 0
    for train, test in KFold(4, shuffle=True, random_state=11).split(X):
        sc = StandardScaler().fit(X[train])
        model = Ridge(alpha=0.5 * len(train)).fit(sc.transform(X[train]), t[train])
        correct += np.sum((model.predict(sc.transform(X[test])) > 0) == (t[test] > 0))
    out = ridge_c2st(X, t > 0, n_folds=4, n_permutations=19, seed=11, ridge=0.5)
    assert out["c2st_accuracy"] == pytest.approx(correct / len(X))


def test_permutation_p_counts_ties_against_rejection() -> None:
    assert permutation_p(0.5, np.array([0.5, 0.1, 0.2])) == 2 / 4
    assert permutation_p(0.9, np.array([0.5, 0.1, 0.2])) == 1 / 4


def test_scalable_tests_are_calibrated_under_a_true_null() -> None:
    reps, rejections = 100, {"mmd": 0, "energy": 0, "c2st": 0}
    for seed in range(reps):
        rng = np.random.default_rng(100 + seed)
        A, B = rng.normal(size=(25, 4)), rng.normal(size=(25, 4))
        rejections["mmd"] += rff_mmd_test(A, B, n_permutations=39, seed=seed,
                                          n_features=64)["mmd_p"] <= 0.05
        rejections["energy"] += sliced_energy_test(A, B, n_permutations=39, seed=seed,
                                                   n_directions=8)["energy_p"] <= 0.05
        is_a = np.r_[np.ones(25, bool), np.zeros(25, bool)]
        rejections["c2st"] += ridge_c2st(np.concatenate([A, B]), is_a, n_folds=5,
                                         n_permutations=39, seed=seed)["c2st_p"] <= 0.05
    # binomial(100, 0.05): mean 5, sd 2.2; 11 is 2.7 sd above the level
    assert all(count <= 11 for count in rejections.values()), rejections


def test_scalable_tests_detect_a_shift() -> None:
    A, B = _pair(4, shift=0.8, n_a=100, n_b=100)
    assert rff_mmd_test(A, B, n_permutations=99, seed=0)["mmd_p"] == 0.01
    assert sliced_energy_test(A, B, n_permutations=99, seed=0)["energy_p"] == 0.01
    is_a = np.r_[np.ones(100, bool), np.zeros(100, bool)]
    assert ridge_c2st(np.concatenate([A, B]), is_a, n_folds=5, n_permutations=99,
                      seed=0)["c2st_p"] == 0.01


def test_auto_switches_to_the_scalable_estimators_above_the_threshold() -> None:
    A, B = _pair(5, shift=1.0, n_a=30, n_b=30)
    X, y = np.concatenate([A, B]), np.array(["a"] * 30 + ["b"] * 30)
    small = TwoSampleProbe(n_permutations=19, exact_max_rows=60).fit(X, y).result_
    big = TwoSampleProbe(n_permutations=19, exact_max_rows=59).fit(X, y).result_
    assert small.tables["pairs"]["rows"][0][11].startswith("exact")
    assert big.tables["pairs"]["rows"][0][11].startswith("random Fourier")
    assert big.tables["pairs"]["rows"][0][12].startswith("sliced")
    assert big.params["methods_used"] != small.params["methods_used"]
    forced = TwoSampleProbe(n_permutations=19, method="scalable").fit(X, y).result_
    assert forced.params["methods_used"] == big.params["methods_used"]


def test_exact_on_a_huge_pair_is_refused_clearly(monkeypatch) -> None:
    from embedforensics.probes import two_sample
    from embedforensics.probes.base import ProbeParameterError

    monkeypatch.setattr(two_sample, "EXACT_LIMIT", 50)
    A, B = _pair(6, n_a=30, n_b=30)
    X, y = np.concatenate([A, B]), np.array(["a"] * 30 + ["b"] * 30)
    with pytest.raises(ProbeParameterError, match="method='exact' needs 60 × 60 matrices"):
        TwoSampleProbe(n_permutations=19, method="exact").fit(X, y)
