"""TwoSampleProbe: statistics equal brute-force formulas, p-values are calibrated under a
true null, real shifts are found, and BH adjustment is applied across pairs."""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist
from scipy.stats import false_discovery_control

from embedforensics.probes.two_sample import (
    TwoSampleProbe,
    mmd_energy_tests,
    permutation_statistics,
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


def test_permutation_statistics_are_permutations_of_the_labels():
    rng = np.random.default_rng(1)
    M = rng.normal(size=(6, 6))
    M = M + M.T
    obs, null = permutation_statistics(M, 2, 200, np.random.default_rng(2))
    # brute force over all 15 splits of 6 rows into 2 + 4: every null value is one of them
    from itertools import combinations

    values = []
    for pick in combinations(range(6), 2):
        s = np.full(6, -1 / 4)
        s[list(pick)] = 1 / 2
        values.append(s @ M @ s)
    assert np.isclose(obs, values[0])
    assert all(np.isclose(v, values).any() for v in null)


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
    raw = [mmd_energy_tests(X[y == a], X[y == b], n_permutations=199,
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
