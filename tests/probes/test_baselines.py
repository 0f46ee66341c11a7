"""SurfaceBaselineProbe: catches length and lexical confounds, credits real embedding signal."""

from __future__ import annotations

import numpy as np
import pytest

from embedforensics.probes.base import ProbeParameterError
from embedforensics.probes.baselines import SurfaceBaselineProbe

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


def _texts(rng, n, n_words):
    return [" ".join(rng.choice(WORDS, size=n_words)) for _ in range(n)]


def test_length_confound_is_reported_when_embeddings_carry_nothing():
    rng = np.random.default_rng(0)
    texts = _texts(rng, 60, 3) + _texts(rng, 60, 30)
    y = np.array(["short"] * 60 + ["long"] * 60)
    X = rng.normal(size=(120, 8))  # no signal at all
    result = SurfaceBaselineProbe(n_folds=3).fit(X, y, texts=texts).result_
    m = result.metrics
    assert m["length_accuracy"].value > 0.95
    assert m["embedding_accuracy"].ci[0] < 0.5 < m["embedding_accuracy"].ci[1] or \
        m["embedding_accuracy"].value < 0.65
    assert m["mcnemar_p_value"].value < 1e-6
    assert "baseline beats the embedding" in result.summary
    assert result.params["best_baseline"] == "length"
    # the chance test's p-value rests on ridge read-outs, reported beside the logistic ones
    assert m["ridge_accuracy_length"].value > 0.95
    assert m["ridge_accuracy_length"].n == m["best_baseline_p_value"].n == 120
    method = m["best_baseline_p_value"].method
    assert "ridge discriminants" in method and "not on the reported logistic" in method
    # the report's caveat reads every '*_accuracy' metric as a feature set's: the ridge
    # statistics must not end in '_accuracy'
    assert sorted(k for k in m if k.endswith("_accuracy")) == [
        "chance_accuracy", "embedding_accuracy", "length_accuracy", "lexical_accuracy"]


def test_embedding_signal_beyond_surface_features_is_credited():
    rng = np.random.default_rng(1)
    texts = _texts(rng, 120, 10)  # same distribution for both labels
    y = np.array(["a", "b"] * 60)
    X = rng.normal(size=(120, 8))
    X[:, 0] += np.where(y == "a", 4.0, -4.0)
    result = SurfaceBaselineProbe(n_folds=3).fit(X, y, texts=texts).result_
    m = result.metrics
    assert m["embedding_accuracy"].value > 0.95
    assert m["lexical_accuracy"].value < 0.75 and m["length_accuracy"].value < 0.75
    assert m["embedding_minus_best_baseline"].value > 0.2
    assert "the embedding beats the best surface baseline" in result.summary


def test_mcnemar_counts_match_a_hand_computation():
    rng = np.random.default_rng(2)
    texts = _texts(rng, 40, 3) + _texts(rng, 40, 12)
    y = np.array(["s"] * 40 + ["l"] * 40)
    X = rng.normal(size=(80, 4))
    X[:, 0] += np.where(y == "s", 1.0, -1.0)
    result = SurfaceBaselineProbe(n_folds=4, seed=3).fit(X, y, texts=texts).result_
    from scipy.stats import binomtest

    n_disc = result.metrics["mcnemar_p_value"].n
    p = result.metrics["mcnemar_p_value"].value
    assert n_disc > 0
    # the p-value must be the two-sided binomial p of some split of the discordant rows
    assert any(abs(binomtest(k, n_disc, 0.5).pvalue - p) < 1e-12 for k in range(n_disc + 1))


def test_needs_texts():
    X = np.zeros((10, 2))
    y = np.array(["a", "b"] * 5)
    with pytest.raises(ProbeParameterError, match="needs the texts"):
        SurfaceBaselineProbe(n_folds=2).fit(X, y)
