"""The baselines probe's tests hold their level (issue 23): the corrected repeated-CV t-test
against references computed another way, its false-positive rate under a true null, the
selection-proof combination over baselines, and the max-statistic permutation test of the
ridge read-outs (issue 20): exact against brute-force refits, calibrated under a true null,
small on a planted surface signal, bounded by a recorded subsample at scale."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import Ridge
from sklearn.model_selection import StratifiedKFold

from embedforensics.probes.baselines import (
    SurfaceBaselineProbe,
    baseline_comparison,
    chance_features,
    chance_rows,
    corrected_resampled_t,
    max_ridge_permutation_test,
    row_space,
    scale_to_rank,
)
from embedforensics.probes.permutation import (
    PENALTY_GRID,
    RidgeCV,
    fold_ids,
    within_fold_permutation,
)

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


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


def _texts(rng, n, n_words):
    return [" ".join(rng.choice(WORDS, size=n_words)) for _ in range(n)]


def _lexical(texts):
    """The probe's n-gram features (sparse), vocabulary from all texts."""
    return TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True,
                           lowercase=False).fit_transform(texts).tocsr()


def _folds(codes, n_folds, seed=0):
    return fold_ids(list(StratifiedKFold(n_folds, shuffle=True, random_state=seed)
                         .split(codes, codes)), len(codes))


def _brute_nested_ridge(X, codes, fold, k):
    """Out-of-fold accuracy and chosen penalty per row per fold of a nested-CV ridge
    discriminant, by scikit-learn Ridge refits on ``X`` (sparse) for every inner and outer
    fold and every penalty: the reference the closed form must reproduce."""
    T = codes.astype(float) if k == 2 else np.eye(k)[codes]

    def fit_predict(train, test, c):
        model = Ridge(alpha=c * len(train), solver="sparse_cg", tol=1e-13, max_iter=100_000)
        s = model.fit(X[train], T[train]).predict(X[test])
        return (s > 0.5).astype(int) if k == 2 else np.argmax(s, axis=1)

    folds = np.unique(fold)
    correct, chosen = 0, []
    for f in folds:
        others = [g for g in folds if g != f]
        inner = np.zeros(len(PENALTY_GRID))
        for g in others:
            train = np.flatnonzero(np.isin(fold, [h for h in others if h != g]))
            test = np.flatnonzero(fold == g)
            for j, c in enumerate(PENALTY_GRID):
                inner[j] += np.sum(fit_predict(train, test, c) == codes[test])
        c = PENALTY_GRID[int(np.argmax(inner))]  # first maximum: the stronger penalty
        test = np.flatnonzero(fold == f)
        correct += np.sum(fit_predict(np.flatnonzero(fold != f), test, c) == codes[test])
        chosen.append(c)
    return correct / len(codes), chosen


def test_row_space_keeps_every_inner_product_and_never_densifies():
    rng = np.random.default_rng(0)
    X = _lexical(_texts(rng, 30, 6))
    Z = row_space(X)
    assert Z.shape[0] == 30 and Z.shape[1] <= 30 < X.shape[1]
    np.testing.assert_allclose(Z @ Z.T, (X @ X.T).toarray(), atol=1e-12)
    # rank-deficient input: duplicated rows add no dimension
    Zd = row_space(X[np.r_[0:30, 0:10]])
    assert Zd.shape == (40, Z.shape[1])
    # scale_to_rank is one scalar factor: total variance = number of columns
    S = scale_to_rank(Z)
    ratio = S / Z
    assert np.allclose(ratio, ratio.flat[0])
    C = S - S.mean(axis=0)
    assert np.sum(C * C) / len(S) == pytest.approx(S.shape[1])


@pytest.mark.parametrize("k", [2, 3])
def test_row_space_ridge_equals_refits_on_the_sparse_features(k):
    """The closed-form nested-CV ridge on the row-space coordinates gives the same
    out-of-fold accuracy and the same penalty choice per fold as scikit-learn Ridge refitted
    on the sparse n-gram matrix itself, for the observed and for permuted labelings."""
    rng = np.random.default_rng(k)
    n = 60
    codes = np.arange(n) % k
    texts = [" ".join(rng.choice(WORDS[: 6 + 2 * c], size=rng.integers(3, 9)))
             for c in codes]  # labels shift the vocabulary a little
    X = _lexical(texts)
    Z = row_space(X)
    Zs = scale_to_rank(Z)
    Xs = X * float(np.linalg.norm(Zs) / np.linalg.norm(Z))  # the same scalar, on X
    fold = _folds(codes, 4, seed=k)
    ridge = RidgeCV(Zs, fold, k)
    labelings = [codes] + [codes[within_fold_permutation(fold, 7, b)] for b in range(3)]
    acc, chosen = ridge.accuracy(np.stack(labelings, axis=1))
    assert len(set(np.ravel(chosen))) > 1  # the nested choice is exercised
    for j, labels in enumerate(labelings):
        ref_acc, ref_chosen = _brute_nested_ridge(Xs, labels, fold, k)
        assert acc[j] == pytest.approx(ref_acc, abs=1e-12)
        assert list(chosen[:, j]) == pytest.approx(ref_chosen)
    # and the same as the closed form on the densified matrix (exactly the same procedure)
    dense_acc, dense_chosen = RidgeCV(Xs.toarray(), fold, k).accuracy(
        np.stack(labelings, axis=1))
    np.testing.assert_allclose(acc, dense_acc, atol=1e-12)
    np.testing.assert_allclose(chosen, dense_chosen)


def test_max_statistic_shares_one_permutation_and_computes_the_observed_alike():
    rng = np.random.default_rng(5)
    n, B = 48, 9
    codes = np.repeat([0, 1], n // 2)
    texts = _texts(rng, n, 5)
    features = chance_features(texts, _lexical(texts))
    fold = _folds(codes, 4)
    test, acc, chosen = max_ridge_permutation_test(features, codes, fold, 2, B, seed=3)
    ridges = {k: RidgeCV(Z, fold, 2) for k, Z in features.items()}
    for name, r in ridges.items():
        a, c = r.accuracy(codes[:, None])
        assert acc[name] == a[0] and chosen[name] == list(c[:, 0])
    assert test.observed == max(acc.values())
    for b in range(B):  # permutation b relabels the rows the same way for both baselines
        block = codes[within_fold_permutation(fold, 3, b)][:, None]
        assert test.null[b] == max(r.accuracy(block)[0][0] for r in ridges.values())
    assert test.p == (1 + np.sum(test.null >= test.observed - 1e-12)) / (1 + B)


def test_max_ridge_p_is_calibrated_under_the_null_and_floors_on_a_signal():
    """200 null data sets (texts drawn independently of the labels), 19 permutations:
    p ≤ 0.05 means the observed maximum beat all 19 permuted ones, which an exact test
    allows at most 5% of the time; a planted surface signal gives the floor 1/20."""
    n, B, reps = 40, 19, 200
    codes = np.repeat([0, 1], n // 2)
    fold = _folds(codes, 4)
    ps = []
    for rep in range(reps):
        rng = np.random.default_rng(rep)
        texts = [" ".join(rng.choice(WORDS, size=rng.integers(2, 12))) for _ in range(n)]
        test, _, _ = max_ridge_permutation_test(chance_features(texts, _lexical(texts)),
                                                codes, fold, 2, B, seed=rep)
        ps.append(test.p)
    hits = int(np.sum(np.asarray(ps) <= 0.05))
    assert hits <= stats.binom.ppf(0.999, reps, 0.05)
    assert hits >= stats.binom.ppf(0.001, reps, 0.05) // 2  # not degenerate
    # p-values of an exact test: P(p <= 0.5) <= 0.5 too, up to sampling noise
    assert np.mean(np.asarray(ps) <= 0.5) <= 0.5 + 3 * np.sqrt(0.25 / reps)
    # planted: one label's texts carry a marker word (lexical), lengths unchanged
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, size=6)) + (" omega" if c else " alpha")
             for c in codes]
    test, acc, _ = max_ridge_permutation_test(chance_features(texts, _lexical(texts)),
                                              codes, fold, 2, B, seed=0)
    assert acc["lexical"] > 0.9 and test.p == pytest.approx(1 / (B + 1))
    # planted: length only
    texts = _texts(rng, n // 2, 3) + _texts(rng, n // 2, 25)
    test, acc, _ = max_ridge_permutation_test(chance_features(texts, _lexical(texts)),
                                              codes, fold, 2, B, seed=0)
    assert acc["length"] > 0.9 and test.p == pytest.approx(1 / (B + 1))


def test_chance_rows_subsample_keeps_every_label_in_every_fold():
    y = np.array(["big"] * 990 + ["rare"] * 10)
    rows = chance_rows(y, 100, 5, seed=0)
    assert 100 <= len(rows) <= 105 and np.all(np.diff(rows) > 0)
    assert np.sum(y[rows] == "rare") >= 5
    assert np.array_equal(rows, chance_rows(y, 100, 5, seed=0))
    assert len(chance_rows(y, None, 5, 0)) == 1000 and len(chance_rows(y, 5000, 5, 0)) == 1000


def test_chance_test_on_a_subsample_records_its_n():
    rng = np.random.default_rng(0)
    texts = _texts(rng, 60, 3) + _texts(rng, 60, 30)
    y = np.array(["short"] * 60 + ["long"] * 60)
    X = rng.normal(size=(120, 8))
    res = SurfaceBaselineProbe(n_folds=3, n_permutations=19, chance_max_rows=50).fit(
        X, y, texts=texts).result_
    p = res.metrics["best_baseline_p_value"]
    assert p.n == 50 and res.params["chance_test"]["rows"] == 50
    assert res.params["chance_test"]["subsampled"] is True
    assert "subsample of 50 of the 120 rows" in p.method
    assert res.metrics["ridge_accuracy_length"].n == 50
    assert res.metrics["length_accuracy"].n == 120  # the reported accuracies use every row
    assert p.value == pytest.approx(1 / 20)
    assert "surface statistics the embedding does not need" in res.summary


def test_sequential_stopping_of_the_chance_test():
    rng = np.random.default_rng(3)
    texts = _texts(rng, 80, 8)
    y = np.array(["a", "b"] * 40)
    X = rng.normal(size=(80, 6))
    res = SurfaceBaselineProbe(n_folds=4, n_permutations=99, stop_after=3).fit(
        X, y, texts=texts).result_
    chance = res.params["chance_test"]
    assert chance["stopped_early"] and chance["n_evaluated"] < 99
    p = res.metrics["best_baseline_p_value"]
    assert p.value == pytest.approx(3 / chance["n_evaluated"])
    assert "Besag-Clifford" in p.method and p.n_evaluated == chance["n_evaluated"]


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
