"""Known answers for the shared interval, test and sampling helpers in probes.stats."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from embedforensics.probes.base import ProbeParameterError
from embedforensics.probes.stats import (
    auroc_batch,
    balanced_accuracy_batch,
    binomial_p_greater,
    check_folds,
    child_seeds,
    clopper_pearson,
    fmt_p,
    majority_rate,
    plot_floats,
    seed_spread,
    stratified_bootstrap_ci,
    stratified_subsample,
    truncate_text,
)


def test_clopper_pearson_matches_tabulated_value() -> None:
    # 7 successes in 10 trials: the exact 95% interval is (0.3475, 0.9333) in every table.
    low, high = clopper_pearson(7, 10)
    assert low == pytest.approx(0.347547, abs=1e-6)
    assert high == pytest.approx(0.933260, abs=1e-6)


@pytest.mark.parametrize("n", [1, 10, 250])
def test_clopper_pearson_closed_form_at_the_edges(n: int) -> None:
    # With 0 (or n) successes the exact interval has a closed form: 1 - (alpha/2)^(1/n).
    assert clopper_pearson(0, n) == pytest.approx((0.0, 1 - 0.025 ** (1 / n)))
    assert clopper_pearson(n, n) == pytest.approx((0.025 ** (1 / n), 1.0))


def test_clopper_pearson_rejects_empty() -> None:
    with pytest.raises(ValueError):
        clopper_pearson(0, 0)


def test_binomial_p_greater_known_values() -> None:
    assert binomial_p_greater(10, 10, 0.5) == pytest.approx(0.5**10)
    assert binomial_p_greater(0, 10, 0.5) == pytest.approx(1.0)
    # P(K >= 8 | n=10, p=0.5) = (45 + 10 + 1) / 1024
    assert binomial_p_greater(8, 10, 0.5) == pytest.approx(56 / 1024)
    assert binomial_p_greater(3, 3, 1.0) == 1.0


def test_majority_rate() -> None:
    assert majority_rate(np.array(["a", "b", "b", "c"])) == (0.5, "b")


def test_check_folds_names_label_and_count() -> None:
    y = np.array(["big"] * 10 + ["tiny"] * 3)
    check_folds("SomeProbe", y, 3)  # exactly enough
    with pytest.raises(ProbeParameterError, match=r"'n_folds'.*SomeProbe.*'tiny' has only 3"):
        check_folds("SomeProbe", y, 4)
    with pytest.raises(ProbeParameterError, match=r"'solo' has only 1 row.*single row"):
        check_folds("SomeProbe", np.array(["a"] * 5 + ["solo"]), 2)


def test_stratified_subsample_keeps_proportions_and_rare_labels() -> None:
    y = np.array(["a"] * 900 + ["b"] * 97 + ["rare"] * 3)
    idx = stratified_subsample(y, 100, seed=0)
    assert len(idx) == 100
    assert np.all(np.diff(idx) > 0)  # sorted, no repeats
    counts = {lab: int(np.sum(y[idx] == lab)) for lab in ("a", "b", "rare")}
    assert counts == {"a": 90, "b": 9, "rare": 1}
    assert np.array_equal(idx, stratified_subsample(y, 100, seed=0))
    assert not np.array_equal(idx, stratified_subsample(y, 100, seed=1))
    assert np.array_equal(stratified_subsample(y[:50], 100, seed=0), np.arange(50))


def _resamples(codes: np.ndarray, seed: int, b: int = 20) -> np.ndarray:
    """Stratified resamples built the same way as the bootstrap builds them."""
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(codes == c) for c in np.unique(codes)]
    return np.concatenate([g[rng.integers(0, len(g), (b, len(g)))] for g in groups], axis=1)


@pytest.mark.parametrize("k", [2, 4])
def test_auroc_batch_equals_sklearn(k: int) -> None:
    rng = np.random.default_rng(k)
    codes = rng.integers(0, k, 120)
    proba = rng.dirichlet(np.ones(k), 120)
    proba[:40] = np.round(proba[:40], 1)  # ties must count one half, as in sklearn
    proba /= proba.sum(axis=1, keepdims=True)
    idx = _resamples(codes, seed=1)
    got = auroc_batch(codes, proba, idx)
    for row, value in zip(idx, got, strict=True):
        if k == 2:
            want = roc_auc_score(codes[row], proba[row, 1])
        else:
            want = roc_auc_score(codes[row], proba[row], multi_class="ovr", average="macro",
                                 labels=np.arange(k))
        assert value == pytest.approx(want, abs=1e-12)


def test_balanced_accuracy_batch_equals_sklearn() -> None:
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 3, 90)
    pred = np.where(rng.random(90) < 0.6, codes, rng.integers(0, 3, 90))
    idx = _resamples(codes, seed=2)
    got = balanced_accuracy_batch(codes, pred, idx)
    want = [balanced_accuracy_score(codes[row], pred[row]) for row in idx]
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_stratified_bootstrap_keeps_label_counts_and_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    y = np.array([0] * 30 + [1] * 70)

    def counts(idx: np.ndarray) -> np.ndarray:
        ones = np.sum(y[idx] == 1, axis=1)
        assert np.all(ones == 70)  # every resample keeps every label's count
        return ones.astype(float)

    assert stratified_bootstrap_ci(counts, y, 50, seed=0) == (70.0, 70.0)

    # With a single label it is the ordinary percentile bootstrap: compare with scipy's.
    x = rng.normal(size=400)
    ours = stratified_bootstrap_ci(lambda idx: x[idx].mean(axis=1), np.zeros(400), 4000, seed=0,
                                   max_cells=100_000)  # small batches exercise batching
    ref = sps.bootstrap((x,), np.mean, n_resamples=4000, method="percentile",
                        random_state=0).confidence_interval
    assert ours == pytest.approx((ref.low, ref.high), abs=0.01)
    se = x.std(ddof=1) / np.sqrt(len(x))
    assert ours[1] - ours[0] == pytest.approx(2 * 1.96 * se, rel=0.1)


def test_seed_spread_and_child_seeds() -> None:
    mean, sd, span = seed_spread([1.0, 2.0, 3.0])
    assert (mean, sd, span) == (2.0, 1.0, (1.0, 3.0))
    assert seed_spread([0.5])[1] is None
    assert child_seeds(0, 3) == child_seeds(0, 3)
    assert len(set(child_seeds(0, 5))) == 5
    assert child_seeds(0, 3) != child_seeds(1, 3)


def test_formatting_helpers() -> None:
    assert plot_floats(np.array([0.123456789, 12345.678])) == [0.12346, 12346.0]
    assert truncate_text("a  b\nc") == "a b c"
    long = truncate_text("x" * 500)
    assert len(long) == 200 and long.endswith("…")
    assert truncate_text(None) == ""
    assert fmt_p(0.0) == "p<1e-300"
    assert fmt_p(0.0312) == "p=0.031"
    assert fmt_p(3.1e-5) == "p=3.1e-05"


def test_cv_permutation_p_equals_a_brute_force_loop() -> None:
    from sklearn.base import clone
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from embedforensics.probes.stats import cv_permutation_p

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = np.repeat(["a", "b"], 20)
    X[y == "b", 0] += 0.8
    est = LinearDiscriminantAnalysis()
    cv = StratifiedKFold(4, shuffle=True, random_state=0)
    observed = float(np.mean(cross_val_predict(est, X, y, cv=cv) == y))
    p = cv_permutation_p(est, X, y, cv, observed, 29, seed=5)
    perm_rng = np.random.default_rng(5)
    null = []
    for _ in range(29):
        yp = perm_rng.permutation(y)
        null.append(np.mean(cross_val_predict(clone(est), X, yp, cv=cv) == yp))
    assert p == (1 + sum(v >= observed for v in null)) / 30
    assert 1 / 30 <= p <= 1
