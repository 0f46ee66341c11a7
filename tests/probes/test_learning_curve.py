"""LearningCurveProbe: the curve rises with training size where there is signal, stays at
chance where there is none, matches a hand-built fit, and says when data are too few."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from embedforensics.probes.base import ProbeParameterError
from embedforensics.probes.learning_curve import LearningCurveProbe, mean_t_interval
from embedforensics.probes.stats import child_seeds
from tests.probes.data import gaussians


def test_curve_rises_with_more_training_rows() -> None:
    X, y = gaussians(200, 30, shift=1.2)
    result = LearningCurveProbe(n_sizes=5, n_repeats=4).fit(X, y).result_
    rows = result.tables["curve"]["rows"]
    sizes = [r[0] for r in rows]
    assert sizes == sorted(sizes) and sizes[0] == 5 and sizes[-1] == 149
    assert rows[-1][1] > rows[0][1] + 0.05            # accuracy grows
    assert rows[-1][5] > 0.75                         # AUROC at the largest size
    m = result.metrics
    assert m["accuracy_at_largest"].ci[0] <= m["accuracy_at_largest"].value
    assert "accuracy_gain_last_step" in m
    assert result.plots[0].kind == "lines"


def test_no_signal_stays_at_chance() -> None:
    X, y = gaussians(80, 5, shift=0.0, seed=3)
    m = LearningCurveProbe(n_sizes=3, n_repeats=6, seed=2).fit(X, y).result_.metrics
    low, high = m["auroc_at_largest"].ci
    assert low - 0.05 <= 0.5 <= high + 0.05


def test_point_equals_a_hand_built_fit() -> None:
    X, y = gaussians(40, 4, shift=1.0, seed=1)
    result = LearningCurveProbe(n_sizes=2, n_repeats=1, seed=7).fit(X, y).result_
    largest = result.params["sizes"][-1]
    seed = child_seeds(7, 1)[0]
    train, test = next(StratifiedShuffleSplit(1, test_size=0.25,
                                              random_state=seed).split(X, y))
    rng = np.random.default_rng(seed)
    order = {lab: rng.permutation(train[y[train] == lab]) for lab in ("a", "b")}
    rows = np.concatenate([order[lab][:largest] for lab in ("a", "b")])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X[rows],
                                                                                  y[rows])
    expected = np.mean(model.predict(X[test]) == y[test])
    assert result.metrics["accuracy_at_largest"].value == pytest.approx(expected)
    assert result.metrics["accuracy_at_largest"].ci is None  # one repeat: no interval


def test_t_interval_known_value() -> None:
    mean, sd, ci = mean_t_interval(np.array([1.0, 2.0, 3.0]))
    assert mean == 2.0 and sd == 1.0
    assert ci == pytest.approx((2 - 4.302653 / np.sqrt(3), 2 + 4.302653 / np.sqrt(3)), rel=1e-5)


def test_too_few_rows_is_a_clear_error() -> None:
    X, y = gaussians([40, 6], 3, shift=1.0)
    with pytest.raises(ProbeParameterError, match="label 'b' has only 6 rows"):
        LearningCurveProbe(min_per_label=5).fit(X, y)
