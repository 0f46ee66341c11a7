"""The baselines probe's tests hold their level (issue 23): the corrected repeated-CV t-test
against references computed another way, its false-positive rate under a true null, the
selection-proof combination over baselines, and the max-statistic permutation test."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import StratifiedKFold

from embedforensics.probes.baselines import (
    SurfaceBaselineProbe,
    baseline_comparison,
    corrected_resampled_t,
    max_accuracy_permutation_p,
)

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


class _Centroid(ClassifierMixin, BaseEstimator):
    """Nearest class mean: a fast stand-in classifier (the tests are about the statistics)."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.means_ = np.stack([X[y == c].mean(0) for c in self.classes_])
        return self

    def predict(self, X):
        d = ((X[:, None, :] - self.means_[None]) ** 2).sum(-1)
        return self.classes_[np.argmin(d, 1)]


def _centroid_fold_acc(F: np.ndarray, y: np.ndarray, folds) -> np.ndarray:
    """Per-fold accuracy of the nearest class mean, vectorised for speed."""
    out = np.empty(len(folds))
    for j, (tr, te) in enumerate(folds):
        m0, m1 = F[tr][y[tr] == 0].mean(0), F[tr][y[tr] == 1].mean(0)
        pred = (((F[te] - m1) ** 2).sum(1) < ((F[te] - m0) ** 2).sum(1)).astype(int)
        out[j] = np.mean(pred == y[te])
    return out


def test_corrected_t_matches_a_rescaled_one_sample_t_test():
    rng = np.random.default_rng(0)
    d = rng.normal(0.01, 0.05, size=25)
    t, p = corrected_resampled_t(d, 0.25)
    plain = stats.ttest_1samp(d, 0.0)  # t = mean / (s / sqrt(J))
    # corrected t = plain t * sqrt((1/J) / (1/J + ratio))
    expected = plain.statistic * np.sqrt((1 / 25) / (1 / 25 + 0.25))
    assert t == pytest.approx(expected, rel=1e-12)
    assert p == pytest.approx(stats.t.sf(expected, 24), rel=1e-12)
    # ratio 0 is the plain (uncorrected) one-sample t-test
    t0, p0 = corrected_resampled_t(d, 0.0)
    assert t0 == pytest.approx(plain.statistic)
    assert p0 == pytest.approx(stats.ttest_1samp(d, 0.0, alternative="greater").pvalue)


def test_corrected_t_degenerate_variance():
    assert corrected_resampled_t([0.0, 0.0, 0.0], 0.25) == (0.0, 0.5)
    t, p = corrected_resampled_t([0.1, 0.1], 0.25)
    assert t == np.inf and p == 0.0
    with pytest.raises(ValueError):
        corrected_resampled_t([0.1], 0.25)


def test_comparison_needs_every_baseline_beaten_and_corrects_for_the_best():
    rng = np.random.default_rng(1)
    base = rng.normal(0.6, 0.03, size=25)
    emb_better = base + 0.2 + rng.normal(0, 0.01, 25)
    # beats one baseline, ties the other: "embedding beats the baselines" must not hold
    out = baseline_comparison(emb_better, {"a": base, "b": emb_better + rng.normal(0, .01, 25)},
                              0.25)
    per = out["per_baseline"]
    assert out["p_embedding"] == pytest.approx(
        min(1.0, 2 * max(v["p_embedding_greater"] for v in per.values())))
    assert out["p_embedding"] > 0.05
    # a baseline beating the embedding: Bonferroni x2 baselines, x2 sides
    out = baseline_comparison(base, {"a": emb_better, "b": base}, 0.25)
    assert out["direction"] == "baseline"
    assert out["p_baseline"] == pytest.approx(
        min(1.0, 4 * min(v["p_baseline_greater"] for v in out["per_baseline"].values())))
    assert out["p_value"] == min(out["p_embedding"], out["p_baseline"])


def test_false_positive_rate_under_a_true_null_is_at_most_the_level():
    """200 seeded null data sets (labels independent of every feature set), the probe's
    5x5-fold scheme and decision rule: the rejection rate at 0.05 must lie below the
    binomial 99.9% bound for a 5% test; the single-baseline corrected t (no selection
    correction) must not be far below the level either (it is the calibrated building
    block), while the uncorrected t (ratio 0) over-rejects, as McNemar did."""
    level, reps, n = 0.05, 200, 60
    y = np.repeat([0, 1], n // 2)
    rej, rej_single, rej_plain = 0, 0, 0
    for rep in range(reps):
        rng = np.random.default_rng(rep)
        feats = [rng.normal(size=(n, 3)), rng.normal(size=(n, 2)), rng.normal(size=(n, 4))]
        seeds = np.random.default_rng(10_000 + rep).integers(0, 2**31, 5)
        folds = [f for s in seeds for f in StratifiedKFold(5, shuffle=True,
                                                            random_state=int(s)).split(y, y)]
        acc = [_centroid_fold_acc(F, y, folds) for F in feats]
        out = baseline_comparison(acc[0], {"length": acc[1], "lexical": acc[2]}, 0.25)
        rej += out["p_value"] <= level
        t, _ = corrected_resampled_t(acc[0] - acc[2], 0.25)
        rej_single += 2 * stats.t.sf(abs(t), 24) <= level
        t0, _ = corrected_resampled_t(acc[0] - acc[2], 0.0)
        rej_plain += 2 * stats.t.sf(abs(t0), 24) <= level
    bound = stats.binom.ppf(0.999, reps, level)
    assert rej <= bound, (rej, bound)
    assert rej_single <= bound, (rej_single, bound)
    assert rej_plain > bound, (rej_plain, bound)  # why the correction is needed


def test_max_permutation_p_is_exact_under_the_null_and_floors_on_a_signal():
    n, B, reps = 40, 19, 200
    y = np.repeat(np.array(["a", "b"]), n // 2)
    folds = list(StratifiedKFold(4, shuffle=True, random_state=0).split(y, y))
    hits = 0
    for rep in range(reps):
        rng = np.random.default_rng(rep)
        models = {"one": (_Centroid(), rng.normal(size=(n, 2))),
                  "two": (_Centroid(), rng.normal(size=(n, 3)))}
        observed = 0.0
        for _model, F in models.values():
            pred = np.empty(n, dtype=y.dtype)
            for tr, te in folds:
                pred[te] = _Centroid().fit(F[tr], y[tr]).predict(F[te])
            observed = max(observed, float(np.mean(pred == y)))
        p = max_accuracy_permutation_p(models, y, folds, observed, B, seed=rep)
        hits += p <= 0.05  # p = 1/20: the observed max beat every permuted max
    assert hits <= stats.binom.ppf(0.999, reps, 0.05)
    assert hits >= stats.binom.ppf(0.001, reps, 0.05) // 2  # not degenerate
    F = np.where(y == "a", 3.0, -3.0)[:, None] + np.random.default_rng(0).normal(size=(n, 1))
    p = max_accuracy_permutation_p({"s": (_Centroid(), F)}, y, folds, 1.0, B, seed=0)
    assert p == pytest.approx(1 / (B + 1))


def _texts(rng, n, n_words):
    return [" ".join(rng.choice(WORDS, size=n_words)) for _ in range(n)]


def test_no_surface_claim_without_a_chance_test():
    rng = np.random.default_rng(0)
    texts = _texts(rng, 60, 3) + _texts(rng, 60, 30)
    y = np.array(["short"] * 60 + ["long"] * 60)
    X = rng.normal(size=(120, 8))
    res = SurfaceBaselineProbe(n_folds=3, n_permutations=0).fit(X, y, texts=texts).result_
    assert "baseline beats the embedding" in res.summary
    assert "surface statistics the embedding" not in res.summary
    assert "best_baseline_p_value" not in res.metrics
    res = SurfaceBaselineProbe(n_folds=3, n_permutations=19).fit(X, y, texts=texts).result_
    assert "surface statistics the embedding does not need" in res.summary
    assert res.metrics["best_baseline_p_value"].value == pytest.approx(1 / 20)
    assert res.metrics["comparison_p_value"].value < 1e-4
    assert "Nadeau-Bengio" in res.metrics["comparison_p_value"].method


def test_null_data_make_no_surface_claim():
    """Labels independent of texts and embeddings: whatever the comparison says (here the
    embedding's cross-validated accuracy falls far below chance, as CV accuracy on pure
    noise can), the baselines are not above chance, so no surface-statistics claim."""
    rng = np.random.default_rng(3)
    texts = _texts(rng, 80, 8)
    y = np.array(["a", "b"] * 40)
    X = rng.normal(size=(80, 6))
    res = SurfaceBaselineProbe(n_folds=4, n_permutations=19).fit(X, y, texts=texts).result_
    assert res.metrics["best_baseline_p_value"].value > 0.05
    assert "surface statistics the embedding" not in res.summary
    assert "says nothing about surface statistics" in res.summary \
        or "does not detectably beat" in res.summary
