"""LinearProbe: known answers on separable, identical and imbalanced data; explicit errors."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from embedforensics.probes.base import ProbeParameterError
from embedforensics.probes.linear import LinearProbe
from tests.probes.data import gaussians


def test_well_separated_two_labels() -> None:
    X, y = gaussians(150, 16, shift=5.0)
    result = LinearProbe(n_bootstrap=200, n_permutations=19).fit(X, y).result_
    m = result.metrics
    assert m["accuracy"].value >= 0.95
    assert m["accuracy"].ci[0] > m["chance_accuracy"].value == 0.5
    assert m["p_value"].value == 1 / 20  # the smallest a 19-permutation test can give
    assert "permutation" in m["p_value"].method
    assert m["auroc"].value >= 0.99 and m["auroc"].ci[0] > 0.95
    assert m["balanced_accuracy"].value >= 0.95
    assert result.summary.startswith("A linear probe tells the 2 labels apart with ")
    assert "n=300" in result.summary and "chance 50.0%" in result.summary


def test_matches_a_hand_built_sklearn_pipeline_three_labels() -> None:
    X, y = gaussians(40, 8, shift=1.0, labels=("x", "y", "z"), seed=4)
    result = LinearProbe(n_folds=4, C=0.5, seed=9, n_bootstrap=100,
                         n_permutations=0).fit(X, y).result_
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=1000))
    cv = StratifiedKFold(n_splits=4, shuffle=True, random_state=9)
    proba = cross_val_predict(model, X, y, cv=cv, method="predict_proba")
    pred = cross_val_predict(model, X, y, cv=cv)
    assert result.metrics["accuracy"].value == np.mean(pred == y)
    assert result.metrics["auroc"].value == pytest.approx(
        roc_auc_score(y, proba, multi_class="ovr", average="macro"), abs=1e-12)
    values = np.array(result.plots[0].data["values"])
    assert result.plots[0].kind == "matrix" and values.shape == (3, 3)
    assert values.sum() == 120 and np.trace(values) == np.sum(pred == y)
    table = result.tables["confusion_matrix"]
    assert table["columns"] == ["true \\ predicted", "x", "y", "z"]
    assert [row[1:] for row in table["rows"]] == values.tolist()
    recall = {row[0]: row for row in result.tables["per_label_recall"]["rows"]}
    for i, lab in enumerate(("x", "y", "z")):
        assert recall[lab][1] == 40 and recall[lab][3] == values[i, i] / 40
        assert recall[lab][4] <= recall[lab][3] <= recall[lab][5]


def test_chance_is_the_majority_rate_for_imbalanced_labels() -> None:
    X, y = gaussians([90, 10], 4, shift=0.0)
    m = LinearProbe(n_bootstrap=0, n_permutations=19).fit(X, y).result_.metrics
    assert m["chance_accuracy"].value == 0.9
    assert m["auroc"].ci is None and m["balanced_accuracy"].ci is None
    assert m["p_value"].value > 0.05


def test_identical_distributions_are_not_called_separable() -> None:
    """Calibration: with no signal the accuracy and AUROC intervals cover chance."""
    covered, auroc_covered, small_p = 0, 0, 0
    p_values: list[float] = []
    n_seeds = 50
    for seed in range(n_seeds):
        X, y = gaussians(20, 5, shift=0.0, seed=seed)
        m = LinearProbe(seed=seed, n_bootstrap=100, n_permutations=0).fit(X, y).result_.metrics
        covered += m["accuracy"].ci[0] <= 0.5 <= m["accuracy"].ci[1]
        auroc_covered += m["auroc"].ci[0] <= 0.5 <= m["auroc"].ci[1]
        small_p += m["p_value"].value < 0.05
        p_values.append(m["p_value"].value)
    assert covered >= 0.9 * n_seeds
    # The out-of-fold AUROC bootstrap does not refit the folds and under-covers at n=40:
    # 41 of 50 here.
    assert auroc_covered >= 0.7 * n_seeds
    assert small_p <= 0.15 * n_seeds


def test_parameter_validation_names_the_parameter() -> None:
    X, y = gaussians(10, 3, shift=1.0)
    with pytest.raises(ProbeParameterError, match=r"The 'n_folds' parameter of LinearProbe must "
                                                  r"be an int in \[2, inf\)\. Got 1 instead\."):
        LinearProbe(n_folds=1).fit(X, y)
    with pytest.raises(ProbeParameterError, match=r"'C' parameter of LinearProbe must be a float "
                                                  r"in \(0, inf\)\. Got 0 instead"):
        LinearProbe(C=0).fit(X, y)
    with pytest.raises(ProbeParameterError, match=r"'C'.*Got -1\.0 instead"):
        LinearProbe(C=-1.0).fit(X, y)
    with pytest.raises(ProbeParameterError, match="'max_iter'"):
        LinearProbe(max_iter=0).fit(X, y)
    with pytest.raises(ProbeParameterError, match="'n_bootstrap'"):
        LinearProbe(n_bootstrap=-5).fit(X, y)
    LinearProbe(C=2, n_bootstrap=0, n_permutations=0).fit(X, y)  # an int C is a valid float


def test_too_few_rows_per_label() -> None:
    X, y = gaussians([20, 4], 3, shift=1.0)
    with pytest.raises(ProbeParameterError, match=r"label 'b' has only 4 row\(s\).*lower n_folds "
                                                  r"to 4"):
        LinearProbe().fit(X, y)


def test_unconverged_solver_is_reported() -> None:
    X, y = gaussians(30, 10, shift=1.0)
    result = LinearProbe(max_iter=1, n_bootstrap=0, n_permutations=0).fit(X, y).result_
    assert result.params["unconverged_folds"] == 5
    assert "max_iter=1 in 5 of 5 folds" in result.summary
    assert result.summary.endswith(".")


def test_binomial_p_value_when_permutations_are_off() -> None:
    X, y = gaussians(150, 16, shift=5.0)
    m = LinearProbe(n_bootstrap=0, n_permutations=0).fit(X, y).result_.metrics
    assert m["p_value"].value < 1e-50 and "binomial" in m["p_value"].method


def test_permutation_p_values_hold_their_level_under_a_true_null() -> None:
    """20 null data sets, 19 permutations each: P(p <= 0.05) is exactly 1/20 at most, so
    more than 4 rejections has probability 0.016 for a valid test."""
    rejections = 0
    for seed in range(20):
        X, y = gaussians(12, 3, shift=0.0, seed=1000 + seed)
        m = LinearProbe(n_folds=3, seed=seed, n_bootstrap=0,
                        n_permutations=19).fit(X, y).result_.metrics
        assert 1 / 20 <= m["p_value"].value <= 1
        rejections += m["p_value"].value <= 0.05
    assert rejections <= 4
