"""Scalable two-sample statistics: equal (within their approximation) to the exact ones on
small data, exact refits for the ridge classifier test, calibrated under a true null, and
chosen by ``method="auto"`` above the size threshold."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from embedforensics.probes import scalable
from embedforensics.probes.scalable import (
    RFFMMD,
    RidgeC2ST,
    SlicedEnergy,
    label_block,
    median_bandwidth,
    permutation_p,
    permutation_test,
    rff_features,
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


def _labelings(n: int, n_a: int, k: int, seed: int) -> np.ndarray:
    """The observed labeling (first n_a rows) and k - 1 random ones with n_a rows of 'a'."""
    out = np.zeros((k, n), bool)
    out[0, :n_a] = True
    rng = np.random.default_rng(seed)
    for j in range(1, k):
        out[j, rng.choice(n, n_a, replace=False)] = True
    return out


@pytest.mark.parametrize("n_a", [80, 23])
def test_rff_block_statistic_equals_brute_force_per_labeling(monkeypatch, n_a) -> None:
    monkeypatch.setattr(scalable, "ROW_CHUNK", 37)  # features computed in several chunks
    A, B = _pair(7, n_a=n_a, n_b=60)
    Z = np.concatenate([A, B])
    labels = _labelings(len(Z), n_a, 9, seed=1)
    got = RFFMMD(Z, n_a, 50, np.random.default_rng(3))(labels)
    rng = np.random.default_rng(3)
    Phi = rff_features(Z, median_bandwidth(Z, rng), 50, rng, dtype=np.float64)
    for row, value in zip(labels, got, strict=True):
        diff = Phi[row].mean(axis=0) - Phi[~row].mean(axis=0)
        assert value == pytest.approx(diff @ diff, rel=1e-10)


@pytest.mark.parametrize("n_a", [80, 23])
def test_sliced_energy_block_statistic_equals_pairwise_brute_force(monkeypatch, n_a) -> None:
    # chunks of 7 sorted positions: the running counts carry across chunks
    monkeypatch.setattr(scalable, "SORTED_CHUNK", 7)
    A, B = _pair(8, n_a=n_a, n_b=60, d=5)
    Z = np.concatenate([A, B])
    labels = _labelings(len(Z), n_a, 9, seed=2)
    energy = SlicedEnergy(A, B, 6, np.random.default_rng(4))
    got = energy(labels)
    proj = Z @ energy.theta
    for row, value in zip(labels, got, strict=True):
        per_direction = [2 * cdist(p[row, None], p[~row, None]).mean()
                         - cdist(p[row, None], p[row, None]).mean()
                         - cdist(p[~row, None], p[~row, None]).mean() for p in proj.T]
        expected = np.mean(per_direction) / sphere_mean_abs(5)
        assert value == pytest.approx(expected, rel=1e-10)


def test_ridge_c2st_block_equals_sklearn_refits_per_labeling(monkeypatch) -> None:
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold
    from sklearn.preprocessing import StandardScaler

    monkeypatch.setattr(scalable, "ROW_CHUNK", 29)
    A, B = _pair(9, shift=0.3, n_a=70, n_b=50, d=8)
    X = np.concatenate([A, B])
    labels = _labelings(len(X), 70, 6, seed=3)
    got = RidgeC2ST(X, 4, seed=5, ridge=0.2)(labels)
    for row, value in zip(labels, got, strict=True):
        t = np.where(row, 1.0, -1.0)
        correct = 0
        for train, test in KFold(4, shuffle=True, random_state=5).split(X):
            sc = StandardScaler().fit(X[train])
            model = Ridge(alpha=0.2 * len(train)).fit(sc.transform(X[train]), t[train])
            correct += np.sum((model.predict(sc.transform(X[test])) > 0) == row[test])
        assert value == correct / len(X)


def test_ridge_c2st_labels_rows_wherever_they_are() -> None:
    A, B = _pair(10, shift=0.5, n_a=40, n_b=40, d=4)
    X = np.concatenate([A, B])
    is_a = np.r_[np.ones(40, bool), np.zeros(40, bool)]
    mixed = np.random.default_rng(0).permutation(80)
    first = ridge_c2st(X, is_a, n_folds=4, n_permutations=19, seed=1)
    # the same rows in another order, with the folds drawn on the new order
    other = ridge_c2st(X[mixed], is_a[mixed], n_folds=4, n_permutations=19, seed=1)
    expected = RidgeC2ST(X[mixed], 4, seed=1)(is_a[mixed][None, :])[0]
    assert other["c2st_accuracy"] == expected
    assert 0.5 < first["c2st_accuracy"] and 0.5 < other["c2st_accuracy"]


def test_permutations_do_not_depend_on_the_block_or_on_stopping() -> None:
    whole = label_block(50, 20, 7, np.arange(10))
    assert whole.sum(axis=1).tolist() == [20] * 10
    parts = np.concatenate([label_block(50, 20, 7, np.arange(4)),
                            label_block(50, 20, 7, np.arange(4, 10))])
    assert np.array_equal(whole, parts)
    assert len({row.tobytes() for row in whole}) == 10
    A, B = _pair(11, shift=0.0, n_a=30, n_b=30)
    energy = SlicedEnergy(A, B, 4, np.random.default_rng(0))
    full = permutation_test(energy, 60, 30, n_permutations=99, seed=3)
    stopped = permutation_test(energy, 60, 30, n_permutations=99, seed=3, stop_after=3)
    assert stopped.stopped_early and stopped.p == 3 / stopped.n_evaluated
    np.testing.assert_array_equal(stopped.null, full.null[:stopped.n_evaluated])
    assert full.p == permutation_p(full.observed, full.null)


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


def test_sequentially_stopped_tests_are_calibrated_under_a_true_null() -> None:
    reps, rejections, run = 100, {"mmd": 0, "energy": 0, "c2st": 0}, 0
    for seed in range(reps):
        rng = np.random.default_rng(300 + seed)
        A, B = rng.normal(size=(25, 4)), rng.normal(size=(25, 4))
        out = {**rff_mmd_test(A, B, n_permutations=99, seed=seed, n_features=64,
                              stop_after=5),
               **sliced_energy_test(A, B, n_permutations=99, seed=seed, n_directions=8,
                                    stop_after=5),
               **ridge_c2st(np.concatenate([A, B]), np.r_[np.ones(25, bool),
                                                            np.zeros(25, bool)],
                            n_folds=5, n_permutations=99, seed=seed, stop_after=5)}
        for test in rejections:
            rejections[test] += out[f"{test}_p"] <= 0.05
            run += out[f"{test}_permutations_run"]
    assert all(count <= 11 for count in rejections.values()), rejections
    assert run < 0.5 * 3 * reps * 99  # under the null most tests stop early


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
