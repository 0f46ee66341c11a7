"""Linear and LDA probes: nested-CV C per fold, exact permutation tests (fast and refit),
the floor wording, and probe progress switches (issues 20 and 23)."""

from __future__ import annotations

import numpy as np
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from embedforensics.probes import progress
from embedforensics.probes.lda import LDAProbe
from embedforensics.probes.linear import CS_GRID, LinearProbe
from embedforensics.probes.permutation import fold_ids, within_fold_permutation
from tests.probes.data import gaussians


def test_linear_defaults_record_c_per_fold_and_both_accuracies() -> None:
    X, y = gaussians(60, 8, shift=3.0)
    result = LinearProbe(n_bootstrap=0).fit(X, y).result_
    m = result.metrics
    assert len(result.params["C_per_fold"]) == 5
    assert set(result.params["C_per_fold"]) <= set(CS_GRID)
    assert m["p_value"].value == 0.01 and m["p_value"].at_floor
    assert m["p_value"].display == "p ≤ 0.01 (floor with 99 permutations)"
    assert "p ≤ 0.01 (floor with 99 permutations)" in result.summary
    assert "p=0.010" not in result.summary
    assert "ridge" in m["p_value"].method and "logistic regression" in m["p_value"].method
    assert m["permutation_statistic"].value >= 0.95 and m["accuracy"].value >= 0.95
    assert result.params["permutation"]["n_evaluated"] == 99


def _nested_c(X, codes, fold, f):
    """C chosen for outer fold f, written out: scaler on the outer training rows, one fresh
    LogisticRegression per C and inner fold, mean inner accuracy, first best C."""
    train = fold != f
    scaler = StandardScaler().fit(X[train])
    Z, sub, c = scaler.transform(X[train]), fold[train], codes[train]
    scores = []
    for C in CS_GRID:
        accs = []
        for g in np.unique(sub):
            clf = LogisticRegression(C=C, max_iter=5000, tol=1e-8)
            clf.fit(Z[sub != g], c[sub != g])
            accs.append(np.mean(clf.predict(Z[sub == g]) == c[sub == g]))
        scores.append(np.mean(accs))
    return CS_GRID[int(np.argmax(scores))]


def test_nested_c_matches_a_loop_of_plain_logistic_regressions() -> None:
    X, y = gaussians(40, 4, shift=0.8, seed=3)
    result = LinearProbe(n_bootstrap=0, n_permutations=0, max_iter=5000, seed=2).fit(X, y)
    cv = StratifiedKFold(5, shuffle=True, random_state=2)
    fold = fold_ids(list(cv.split(X, y)), len(y))
    codes = np.searchsorted(np.unique(y), y)
    expected = [_nested_c(X, codes, fold, f) for f in range(5)]
    assert result.result_.params["C_per_fold"] == expected


def test_linear_refit_test_is_the_brute_force_loop() -> None:
    """permutation_test='refit' with C fixed: p from refits of the pipeline per permutation."""
    X, y = gaussians(15, 3, shift=0.4, seed=8)
    result = LinearProbe(C=1.0, n_folds=3, seed=4, n_bootstrap=0, n_permutations=9,
                         permutation_test="refit", n_jobs=1, stop_after=None).fit(X, y)
    cv = StratifiedKFold(3, shuffle=True, random_state=4)
    fold = fold_ids(list(cv.split(X, y)), len(y))

    def accuracy(labels):
        hits = 0
        for f in range(3):
            tr, te = fold != f, fold == f
            sc = StandardScaler().fit(X[tr])
            clf = LogisticRegression(C=1.0, max_iter=1000, random_state=4)
            clf.fit(sc.transform(X[tr]), labels[tr])
            hits += np.sum(clf.predict(sc.transform(X[te])) == labels[te])
        return hits / len(labels)

    observed = accuracy(y)
    null = [accuracy(y[within_fold_permutation(fold, 4, b)]) for b in range(9)]
    p = result.result_.metrics["p_value"]
    assert p.value == (1 + sum(v >= observed - 1e-12 for v in null)) / 10
    assert "reported logistic regression" in p.method


def test_lda_refit_and_fast_tests() -> None:
    X, y = gaussians(16, 3, shift=0.5, seed=6)
    refit = LDAProbe(n_folds=4, seed=1, n_permutations=9, permutation_test="refit",
                     n_jobs=1, stop_after=None).fit(X, y).result_
    cv = StratifiedKFold(4, shuffle=True, random_state=1)
    fold = fold_ids(list(cv.split(X, y)), len(y))
    est = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")

    def accuracy(labels):
        hits = 0
        for f in range(4):
            tr, te = fold != f, fold == f
            hits += np.sum(est.fit(X[tr], labels[tr]).predict(X[te]) == labels[te])
        return hits / len(labels)

    observed = accuracy(y)
    null = [accuracy(y[within_fold_permutation(fold, 1, b)]) for b in range(9)]
    assert refit.metrics["p_value"].value == (1 + sum(v >= observed - 1e-12 for v in null)) / 10
    fast = LDAProbe(n_folds=4, seed=1, n_permutations=9).fit(X, y).result_
    assert "Ledoit-Wolf" in fast.metrics["p_value"].method
    assert 0 <= fast.metrics["permutation_statistic"].value <= 1


def test_sequential_stopping_of_the_refit_test_on_null_data() -> None:
    X, y = gaussians(12, 3, shift=0.0, seed=2)
    m = LDAProbe(n_folds=3, n_permutations=99, permutation_test="refit", n_jobs=1,
                 stop_after=3).fit(X, y).result_
    perm = m.params["permutation"]
    assert perm["stopped_early"] and perm["n_evaluated"] < 99
    assert m.metrics["p_value"].value == 3 / perm["n_evaluated"]
    assert "Besag-Clifford" in m.metrics["p_value"].method


def test_probe_progress_is_off_unless_the_study_turns_it_on() -> None:
    assert not progress.enabled()
    with progress.bar(3, "x") as bar:
        assert bar.disable
    with progress.probe_progress(True):
        assert progress.enabled()
        with progress.probe_progress(False):
            assert not progress.enabled()
        assert progress.enabled()
    assert not progress.enabled()


def test_c_is_tuned_on_a_bounded_subsample_above_tune_max_rows() -> None:
    X, y = gaussians(60, 6, shift=1.5, seed=4)
    result = LinearProbe(n_bootstrap=0, n_permutations=0, tune_max_rows=30).fit(X, y).result_
    assert result.params["C_tuned_on_rows"] == 30
    assert set(result.params["C_per_fold"]) <= set(CS_GRID)
    assert result.metrics["accuracy"].value >= 0.8  # shift 1.5 in 6-d: about 0.85-0.9
    full = LinearProbe(n_bootstrap=0, n_permutations=0).fit(X, y).result_
    assert full.params["C_tuned_on_rows"] == 96


def test_two_sample_summary_shows_the_floor_not_an_exact_p() -> None:
    from embedforensics.probes.two_sample import TwoSampleProbe

    X, y = gaussians(30, 4, shift=4.0, seed=1)
    summary = TwoSampleProbe(n_permutations=99, n_folds=3).fit(X, y).result_.summary
    assert "smallest MMD p ≤ 0.01 (floor with 99 permutations)" in summary
