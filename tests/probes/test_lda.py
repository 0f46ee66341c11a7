"""LDAProbe: separable data is separated, identical data is not, errors are explicit."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from embedforensics.probes.base import ProbeParameterError
from embedforensics.probes.lda import LDAProbe
from embedforensics.probes.stats import clopper_pearson
from tests.probes.data import gaussians


@pytest.mark.parametrize("shrinkage", ["auto", "none"])
def test_well_separated_gaussians(shrinkage: str) -> None:
    X, y = gaussians(100, 20, shift=6.0, labels=("a", "b", "c"))
    result = LDAProbe(shrinkage=shrinkage, n_permutations=19).fit(X, y).result_
    acc = result.metrics["accuracy"]
    chance = result.metrics["chance_accuracy"].value
    assert chance == pytest.approx(1 / 3)
    assert acc.value >= 0.95 and acc.ci[0] > chance
    assert acc.n == 300 and acc.ci == clopper_pearson(round(acc.value * 300), 300)
    assert result.metrics["p_value"].value == 1 / 20  # the floor with 19 permutations
    assert "3 labels" in result.summary and "n=300" in result.summary
    recall = result.tables["per_label_recall"]["rows"]
    assert [r[0] for r in recall] == ["a", "b", "c"] and all(r[3] >= 0.9 for r in recall)
    confusion = np.array([r[1:] for r in result.tables["confusion_matrix"]["rows"]])
    assert confusion.sum() == 300 and np.trace(confusion) == round(acc.value * 300)
    plot = result.plots[0]  # three labels: two discriminant axes
    assert plot.kind == "scatter" and plot.xlabel.startswith("LD1")
    assert plot.ylabel.startswith("LD2")


def test_accuracy_is_the_out_of_fold_accuracy_of_sklearn_lda() -> None:
    X, y = gaussians(40, 10, shift=1.0, seed=3)
    result = LDAProbe(n_folds=4, seed=11, n_permutations=0).fit(X, y).result_
    cv = StratifiedKFold(n_splits=4, shuffle=True, random_state=11)
    pred = cross_val_predict(LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"), X, y,
                             cv=cv)
    assert result.metrics["accuracy"].value == np.mean(pred == y)


def test_two_labels_give_a_jittered_strip_plot() -> None:
    X, y = gaussians(50, 5, shift=4.0)
    plot = LDAProbe(max_points=60, n_permutations=0).fit(X, y).result_.plots[0]
    labels = np.array(plot.data["labels"])
    ys = np.array(plot.data["y"])
    assert len(labels) == 60
    assert np.all(np.abs(ys[labels == "a"]) <= 0.3)
    assert np.all(np.abs(ys[labels == "b"] - 1) <= 0.3)
    xs = np.array(plot.data["x"])
    assert abs(xs[labels == "a"].mean() - xs[labels == "b"].mean()) > 3


def test_too_many_folds_for_the_smallest_label() -> None:
    X, y = gaussians(10, 3, shift=1.0)
    y[:7] = "rare"  # 'rare' 7 rows, 'a' 3 rows, 'b' 10 rows
    with pytest.raises(ProbeParameterError, match=r"'n_folds' parameter of LDAProbe is 5, but "
                                                  r"label 'a' has only 3 row"):
        LDAProbe().fit(X, y)
    LDAProbe(n_folds=3, n_permutations=0).fit(X, y)


def test_parameter_validation() -> None:
    X, y = gaussians(10, 3, shift=1.0)
    with pytest.raises(ProbeParameterError, match=r"'shrinkage' parameter of LDAProbe must be "
                                                  r"one of 'auto', 'none'. Got 'ledoit'"):
        LDAProbe(shrinkage="ledoit").fit(X, y)
    with pytest.raises(ProbeParameterError, match=r"'n_folds'.*\[2, inf\)\. Got 1 instead"):
        LDAProbe(n_folds=1).fit(X, y)


def test_identical_distributions_are_not_called_separable() -> None:
    """Calibration: with no signal the CI covers 0.5 and (binomial) p-values are rarely
    small; the permutation p-value's calibration is tested in test_linear and measured on
    real embeddings in benchmarks/bench_calibration.py."""
    covered, small_p = 0, 0
    p_values: list[float] = []
    n_seeds = 50
    for seed in range(n_seeds):
        X, y = gaussians(20, 5, shift=0.0, seed=seed)
        metrics = LDAProbe(seed=seed, n_permutations=0).fit(X, y).result_.metrics
        low, high = metrics["accuracy"].ci
        covered += low <= 0.5 <= high
        small_p += metrics["p_value"].value < 0.05
        p_values.append(metrics["p_value"].value)
    # Scoring in-sample instead of out-of-fold drops coverage to ~35 and gives ~22 small p.
    assert covered >= 0.8 * n_seeds
    assert small_p <= 0.16 * n_seeds
    assert np.median(p_values) > 0.2
