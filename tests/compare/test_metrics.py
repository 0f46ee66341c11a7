"""Known-answer tests for embedforensics.compare.metrics (accuracy CI, churn, ECE)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedforensics.compare import (
    accuracy,
    churn,
    churn_against_ensemble,
    clopper_pearson,
    expected_calibration_error,
    majority_vote,
    reliability_bins,
)

# --------------------------------------------------------------------------- accuracy


def test_clopper_pearson_closed_forms_at_the_boundary():
    # k = 0: upper = 1 − (γ/2)^(1/n); k = n: lower = (γ/2)^(1/n)
    assert clopper_pearson(0, 10) == pytest.approx((0.0, 1 - 0.025 ** (1 / 10)))
    assert clopper_pearson(10, 10) == pytest.approx((0.025 ** (1 / 10), 1.0))
    lo, hi = clopper_pearson(0, 20, confidence=0.9)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.05 ** (1 / 20))


def test_clopper_pearson_textbook_value():
    # 3 successes out of 4 at 95 %: beta quantiles, and the tail definition they invert
    lo, hi = clopper_pearson(3, 4)
    assert lo == pytest.approx(0.19412044, abs=1e-7)
    assert hi == pytest.approx(0.975**0.25, abs=1e-12)
    # P(X ≥ 3 | p = lo) = 0.025 and P(X ≤ 3 | p = hi) = 0.025
    assert 4 * lo**3 * (1 - lo) + lo**4 == pytest.approx(0.025, abs=1e-9)
    assert 1 - hi**4 == pytest.approx(0.025, abs=1e-9)


def test_accuracy_with_labels_and_scores():
    res = accuracy([0, 1, 1, 0], [0, 1, 0, 0])
    assert res.accuracy == 0.75 and res.n_correct == 3 and res.n == 4
    assert (res.ci_low, res.ci_high) == pytest.approx(clopper_pearson(3, 4))
    scores = np.array([[2.0, 1.0], [0.1, 0.3], [5.0, -1.0], [0.0, -2.0]])
    assert accuracy([0, 1, 1, 0], scores).accuracy == 0.75
    json.dumps(res.to_dict())


def test_accuracy_validation():
    with pytest.raises(ValueError, match="points"):
        accuracy([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="integer class labels"):
        accuracy([0, 1], [0.5, 1.0])
    with pytest.raises(ValueError, match="empty"):
        accuracy([], [])
    with pytest.raises(ValueError, match="confidence"):
        accuracy([0], [0], confidence=1.0)
    with pytest.raises(ValueError, match="k <= n"):
        clopper_pearson(5, 4)


# --------------------------------------------------------------------------- churn


def test_churn_pairwise():
    assert churn([0, 1, 2, 3], [0, 1, 0, 0]) == 0.5
    assert churn([1, 1], [1, 1]) == 0.0
    with pytest.raises(ValueError, match="points"):
        churn([0, 1], [0])


def test_churn_against_ensemble_known_answer():
    ref = np.array([[0, 1, 1, 0], [0, 1, 0, 0], [1, 1, 1, 0]])
    cand = np.array([0, 0, 1, 1])
    res = churn_against_ensemble(cand, ref)
    np.testing.assert_allclose(res.per_model, [0.5, 0.75, 0.75])
    assert res.mean == pytest.approx(2 / 3)
    assert (res.min, res.max) == (0.5, 0.75)
    np.testing.assert_array_equal(majority_vote(ref), [0, 1, 1, 0])
    assert res.against_majority == 0.5
    # pairs: (1,2) 0.25, (1,3) 0.25, (2,3) 0.5
    assert res.reference_pairwise_mean == pytest.approx(1 / 3)
    assert res.n == 4 and res.n_models == 3
    json.dumps(res.to_dict())


def test_churn_from_scores_and_single_model():
    ref_scores = np.zeros((1, 3, 2))
    ref_scores[0, :, 1] = [1.0, -1.0, 1.0]  # labels 1, 0, 1
    res = churn_against_ensemble([1, 1, 1], ref_scores)
    assert res.per_model.tolist() == [pytest.approx(1 / 3)]
    assert res.reference_pairwise_mean is None


def test_majority_vote_ties_go_to_smallest_label():
    ref = np.array([[2, 5, 7], [1, 5, 3], [2, 4, 3], [1, 4, 7]])
    np.testing.assert_array_equal(majority_vote(ref), [1, 4, 3])


def test_churn_validation():
    with pytest.raises(ValueError, match="points"):
        churn_against_ensemble([0, 1], np.zeros((2, 3), dtype=int))
    with pytest.raises(ValueError, match="2-D labels or 3-D scores"):
        churn_against_ensemble([0, 1], [0, 1])


# --------------------------------------------------------------------------- calibration


def test_reliability_bins_known_answer():
    conf = np.array([0.9, 0.9, 0.65, 0.65])
    correct = np.array([1, 0, 1, 1])
    res = reliability_bins(conf, correct)
    # 0.9 → bin 13 = (13/15, 14/15]; 0.65 → bin 9 = (9/15, 10/15]
    assert res.n_bins == 15 and res.bin_edges.size == 16
    assert res.bin_count.tolist() == [0] * 9 + [2, 0, 0, 0, 2, 0]
    assert res.bin_confidence[13] == pytest.approx(0.9)
    assert res.bin_accuracy[13] == 0.5
    assert res.bin_confidence[9] == pytest.approx(0.65)
    assert res.bin_accuracy[9] == 1.0
    assert res.ece == pytest.approx(0.5 * 0.4 + 0.5 * 0.35)
    assert res.mce == pytest.approx(0.4)
    assert np.isnan(res.bin_confidence[0])
    d = res.to_dict()
    json.dumps(d)
    assert d["bin_confidence"][0] is None


def test_perfectly_calibrated_has_zero_ece():
    conf = np.full(10, 0.8)
    correct = np.array([1] * 8 + [0] * 2)
    assert reliability_bins(conf, correct).ece == pytest.approx(0.0, abs=1e-15)


def test_bin_boundaries():
    res = reliability_bins([0.0, 1.0, 1 / 15, 1 / 15 + 1e-9], [1, 1, 1, 1])
    assert res.bin_count[0] == 2  # 0 and 1/15 (right-closed bins, 0 in the first)
    assert res.bin_count[1] == 1
    assert res.bin_count[14] == 1


def test_expected_calibration_error_from_probabilities():
    probs = np.array([[0.9, 0.1], [0.1, 0.9], [0.35, 0.65], [0.65, 0.35]])
    y = np.array([0, 0, 1, 0])
    # top-label confidences 0.9, 0.9, 0.65, 0.65 with correctness 1, 0, 1, 1
    res = expected_calibration_error(probs, y)
    assert res.ece == pytest.approx(0.375)
    res5 = expected_calibration_error(probs, y, n_bins=5)
    assert res5.bin_edges.size == 6


def test_calibration_validation():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error(np.array([[2.0, -1.0]]), [0])
    with pytest.raises(ValueError, match="rows"):
        expected_calibration_error(np.array([[0.5, 0.5]]), [0, 1])
    with pytest.raises(ValueError, match="labels must lie"):
        expected_calibration_error(np.array([[0.5, 0.5]]), [2])
    with pytest.raises(ValueError, match="n_bins"):
        reliability_bins([0.5], [1], n_bins=0)
    with pytest.raises(ValueError, match="same shape"):
        reliability_bins([0.5, 0.2], [1])
