"""TwoSampleProbe: statistics equal brute-force formulas, p-values are calibrated under a
true null, real shifts are found, and BH adjustment is applied across pairs."""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist
from scipy.stats import false_discovery_control

from embedforensics.probes.scalable import label_block, permutation_test
from embedforensics.probes.two_sample import (
    QuadraticForm,
    TwoSampleProbe,
    mmd_energy_tests,
)


def test_observed_statistics_equal_brute_force_formulas():
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(7, 3)), rng.normal(1.0, size=(5, 3))
    out = mmd_energy_tests(A, B, n_permutations=19, seed=0)
    Z = np.concatenate([A, B])
    D = cdist(Z, Z)
    h = np.median(D[np.triu_indices(12, 1)])
    K = np.exp(-D ** 2 / (2 * h ** 2))
    mmd = K[:7, :7].mean() + K[7:, 7:].mean() - 2 * K[:7, 7:].mean()
    energy = 2 * D[:7, 7:].mean() - D[:7, :7].mean() - D[7:, 7:].mean()
    assert np.isclose(out["mmd2"], mmd, rtol=1e-12) and np.isclose(out["energy"], energy)
    assert np.isclose(out["bandwidth"], h)


def test_permuted_statistics_are_the_statistic_of_relabelings():
    rng = np.random.default_rng(1)
    M = rng.normal(size=(6, 6))
    M = M + M.T
    # brute force over all 15 splits of 6 rows into 2 + 4
    from itertools import combinations

    values = []
    for pick in combinations(range(6), 2):
        s = np.full(6, -1 / 4)
        s[list(pick)] = 1 / 2
        values.append(s @ M @ s)
    test = permutation_test(QuadraticForm(M, 2), 6, 2, n_permutations=200, seed=2)
    assert np.isclose(test.observed, values[0], rtol=1e-12)
    assert len(test.null) == 200
    assert all(np.isclose(v, values, rtol=1e-12).any() for v in test.null)
    block = label_block(6, 2, 2, np.arange(200))
    expected = [values[list(combinations(range(6), 2)).index(tuple(np.flatnonzero(row)))]
                for row in block]
    np.testing.assert_allclose(test.null, expected, rtol=1e-12)


def test_false_positive_rate_under_a_true_null_is_at_most_the_level():
    rejections = {"mmd": 0, "energy": 0}
    reps = 120
    for seed in range(reps):
        rng = np.random.default_rng(seed)
        A, B = rng.normal(size=(15, 4)), rng.normal(size=(15, 4))
        out = mmd_energy_tests(A, B, n_permutations=99, seed=seed)
        rejections["mmd"] += out["mmd_p"] <= 0.05
        rejections["energy"] += out["energy_p"] <= 0.05
    # binomial(120, 0.05): mean 6, sd 2.4; allow 2.5 sd above the level
    for test, count in rejections.items():
        assert count <= 12, (test, count)


def test_shift_is_detected_and_bh_is_applied_across_pairs():
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(size=(40, 5)), rng.normal(size=(40, 5)),
                        rng.normal(size=(40, 5)) + np.array([1.5, 0, 0, 0, 0])])
    y = np.array(["a"] * 40 + ["b"] * 40 + ["c"] * 40)
    result = TwoSampleProbe(n_permutations=199, n_folds=4).fit(X, y).result_
    rows = {(r[0], r[1]): r for r in result.tables["pairs"]["rows"]}
    assert rows[("a", "c")][5] < 0.05 and rows[("b", "c")][5] < 0.05     # MMD, adjusted
    assert rows[("a", "b")][5] > 0.05
    assert rows[("a", "c")][8] > 0.75                                     # C2ST accuracy
    assert result.metrics["mmd_pairs_significant"].value == 2
    # the probe stops each test sequentially after 10 exceedances by default
    raw = [mmd_energy_tests(X[y == a], X[y == b], n_permutations=199, stop_after=10,
                            seed=0 + 7919 * (i + 1))["mmd_p"]
           for i, (a, b) in enumerate([("a", "b"), ("a", "c"), ("b", "c")])]
    expected = false_discovery_control(raw, method="bh")
    got = [rows[p][5] for p in [("a", "b"), ("a", "c"), ("b", "c")]]
    np.testing.assert_allclose(got, expected)


def test_large_labels_are_subsampled_deterministically():
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(300, 3)), np.array(["a", "b"] * 150)
    r1 = TwoSampleProbe(n_permutations=19, max_per_label=50).fit(X, y).result_.to_dict()
    r2 = TwoSampleProbe(n_permutations=19, max_per_label=50).fit(X, y).result_.to_dict()
    assert r1 == r2 and r1["tables"]["pairs"]["rows"][0][2:4] == [50, 50]


def test_sequential_stopping_is_recorded_and_can_be_turned_off():
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(80, 3)), np.array(["a", "b"] * 40)  # a true null
    stopped = TwoSampleProbe(n_permutations=199, stop_after=5, n_folds=4).fit(X, y).result_
    full = TwoSampleProbe(n_permutations=199, stop_after=None, n_folds=4).fit(X, y).result_
    columns = stopped.tables["pairs"]["columns"]
    runs = [columns.index(f"{t} permutations run") for t in ("MMD", "energy", "C2ST")]
    assert [full.tables["pairs"]["rows"][0][i] for i in runs] == [199] * 3
    row = stopped.tables["pairs"]["rows"][0]
    assert min(row[i] for i in runs) < 199
    assert stopped.params["permutations_run"]["a|b"]["mmd"] == row[runs[0]]
    assert "stopped sequentially once 5" in stopped.metrics["mmd_pairs_significant"].method
    # a stopped test reports stop_after / permutations run, and its permutations are the
    # first ones of the full test
    raw = mmd_energy_tests(X[y == "a"], X[y == "b"], n_permutations=199, stop_after=5,
                           seed=7919)
    assert raw["mmd_stopped_early"] and raw["mmd_p"] == 5 / raw["mmd_permutations_run"]
    assert raw["mmd_permutations_run"] == row[runs[0]]
