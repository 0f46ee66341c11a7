"""Streamed K-fold LDA and logistic regression on memory-mapped embeddings: equal to
scikit-learn's cross-validated models on the same folds, and taken by the probes."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from embedforensics.probes.lda import LDAProbe
from embedforensics.probes.linear import LinearProbe
from embedforensics.probes.permutation import fold_ids
from embedforensics.probes.streaming_cv import (
    chunks,
    permutation_rows,
    streamed_cv_lda,
    streamed_cv_logistic,
)


def _memmap(tmp_path, X, name="X.npy"):
    m = np.lib.format.open_memmap(tmp_path / name, mode="w+", dtype=X.dtype, shape=X.shape)
    m[:] = X
    m.flush()
    return np.load(tmp_path / name, mmap_mode="r")


def _data(n, d, k, seed=0, dtype=np.float64):
    """Labelled Gaussians with a shifted mean per label, uneven feature scales, an offset
    feature and a constant one (standardisation and zero-variance handling matter)."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, k, n)
    X = rng.normal(size=(n, d)) + 0.4 * codes[:, None] * rng.normal(size=d)
    X[:, 1] *= 40.0
    X[:, 2] += 100.0
    X[:, 3] = 5.0
    return X.astype(dtype), codes


def _folds(codes, n_folds=5, seed=1):
    cv = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    return cv, fold_ids(list(cv.split(np.zeros((len(codes), 1)), codes)), len(codes))


# ---- streamed LDA ---------------------------------------------------------------------------
@pytest.mark.parametrize("k", [2, 3])
def test_streamed_lda_equals_sklearn_shrunk_lda_out_of_fold(tmp_path, k):
    X, codes = _data(400, 24, k)
    cv, fold = _folds(codes)
    expected = cross_val_predict(LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"),
                                 X, codes, cv=cv)
    got = streamed_cv_lda(_memmap(tmp_path, X), codes, fold, k, chunk_rows=53)
    assert np.array_equal(got.pred, expected)
    assert got.passes == 3
    # every fold's rule is scikit-learn's on its training rows (per-label Ledoit-Wolf)
    for f, rule in enumerate(got.rules):
        ref = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(
            X[fold != f], codes[fold != f])
        np.testing.assert_allclose(rule.coef, ref.coef_, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(rule.intercept, ref.intercept_, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(rule.covariance, ref.covariance_, rtol=1e-9, atol=1e-12)
    assert np.all((got.full.shrinkage > 0) & (got.full.shrinkage < 1))


def test_streamed_lda_without_shrinkage_equals_the_svd_solver(tmp_path):
    X, codes = _data(500, 10, 3, seed=2)
    X[:, 3] += np.random.default_rng(3).normal(size=len(X))  # full-rank within scatter
    cv, fold = _folds(codes)
    expected = cross_val_predict(LinearDiscriminantAnalysis(solver="svd"), X, codes, cv=cv)
    got = streamed_cv_lda(_memmap(tmp_path, X), codes, fold, 3, shrinkage="none",
                          chunk_rows=64)
    assert np.array_equal(got.pred, expected)
    assert got.passes == 2
    ref = LinearDiscriminantAnalysis(solver="svd").fit(X, codes)
    np.testing.assert_allclose(got.projection.explained_variance_ratio,
                               ref.explained_variance_ratio_, rtol=1e-8)


def test_streamed_lda_projection_is_the_eigen_solvers_up_to_sign(tmp_path):
    X, codes = _data(300, 12, 3, seed=4)
    got = streamed_cv_lda(_memmap(tmp_path, X), codes, _folds(codes)[1], 3)
    ref = LinearDiscriminantAnalysis(solver="eigen", shrinkage="auto").fit(X, codes)
    a, b = ref.transform(X[:40]), got.projection.transform(X[:40])
    np.testing.assert_allclose(np.abs(a), np.abs(b), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(got.projection.explained_variance_ratio,
                               ref.explained_variance_ratio_, rtol=1e-8)


def test_streamed_lda_float32_products_agree(tmp_path):
    X, codes = _data(600, 16, 2, seed=5, dtype=np.float32)
    _, fold = _folds(codes)
    exact = streamed_cv_lda(X, codes, fold, 2, precision="float64")
    single = streamed_cv_lda(_memmap(tmp_path, X), codes, fold, 2, precision="float32",
                             chunk_rows=100)
    assert single.precision == "float32"
    assert np.mean(single.pred == exact.pred) >= 0.99
    np.testing.assert_allclose(single.rules[0].coef, exact.rules[0].coef, rtol=1e-3,
                               atol=1e-4 * np.abs(exact.rules[0].coef).max())


# ---- the LDA probe out of core -------------------------------------------------------------
def _labels(codes):
    return np.array(["alpha", "beta", "gamma"])[codes]


@pytest.mark.parametrize("shrinkage", ["auto", "none"])
def test_lda_probe_streams_memory_mapped_rows_with_in_memory_results(tmp_path, shrinkage):
    X, codes = _data(450, 8, 3, seed=6, dtype=np.float32)
    X[:, 3] += np.random.default_rng(7).normal(size=len(X)).astype(np.float32)
    y = _labels(codes)
    kw = {"shrinkage": shrinkage, "n_permutations": 19, "max_points": 100}
    mem = LDAProbe(**kw).fit(X, y)
    ooc = LDAProbe(**kw).fit(_memmap(tmp_path, X), y)
    assert ooc.out_of_core_ and not mem.out_of_core_
    a, b = mem.result_, ooc.result_
    assert b.params["out_of_core"]["rows"] == 450 and b.params["streaming"]["passes"] >= 2
    assert set(a.metrics) == set(b.metrics) and set(a.tables) == set(b.tables)
    assert b.metrics["accuracy"].value == a.metrics["accuracy"].value
    assert b.tables == a.tables
    # all 450 rows fit the permutation cap, so the test is the in-memory one exactly
    assert b.metrics["p_value"].value == a.metrics["p_value"].value
    assert b.params["permutation"]["rows"] == 450
    assert a.plots[0].data["labels"] == b.plots[0].data["labels"]
    np.testing.assert_allclose(np.abs(a.plots[0].data["x"]), np.abs(b.plots[0].data["x"]),
                               rtol=1e-3, atol=1e-3)
    assert "memory-mapped rows read in chunks" in b.summary


def test_lda_probe_permutation_test_runs_on_a_bounded_subsample(tmp_path, monkeypatch):
    import embedforensics.probes.streaming_cv as scv

    X, codes = _data(400, 6, 2, seed=8, dtype=np.float32)
    y = _labels(codes)
    monkeypatch.setattr(scv, "PERMUTATION_MAX_ROWS", 120)
    probe = LDAProbe(n_permutations=9).fit(_memmap(tmp_path, X), y)
    res = probe.result_
    assert res.params["permutation"]["rows"] == 120
    assert res.params["permutation"]["rows_total"] == 400
    assert res.metrics["p_value"].n == 120 and res.metrics["accuracy"].n == 400
    assert "subsample of 120 of the 400" in res.metrics["p_value"].method
    # the p-value is the in-memory probe's on exactly those rows
    rows = permutation_rows(y, X.shape[1], 0, 5)
    sub = LDAProbe(n_permutations=9).fit(X[rows], y[rows]).result_
    assert res.metrics["p_value"].value == sub.metrics["p_value"].value
    assert res.metrics["permutation_statistic"].value == \
        sub.metrics["permutation_statistic"].value


def test_permutation_rows_keep_enough_rows_of_a_rare_label(monkeypatch):
    import embedforensics.probes.streaming_cv as scv

    monkeypatch.setattr(scv, "PERMUTATION_MAX_ROWS", 50)
    y = np.array(["a"] * 995 + ["b"] * 5)
    rows = permutation_rows(y, 4, 0, 5)
    assert np.sum(y[rows] == "b") == 5 and np.all(np.diff(rows) > 0)


# ---- streamed logistic regression -----------------------------------------------------------
@pytest.mark.parametrize(("k", "C"), [(2, 1.0), (3, 0.1)])
def test_streamed_logistic_equals_sklearn_pipeline_out_of_fold(tmp_path, k, C):
    X, codes = _data(400, 12, k, seed=9)
    cv, fold = _folds(codes)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, tol=1e-10,
                                                               max_iter=10_000))
    expected = cross_val_predict(model, X, codes, cv=cv, method="predict_proba")
    got = streamed_cv_logistic(_memmap(tmp_path, X), codes, fold, k, [C] * 5, tol=1e-8,
                               chunk_rows=57)
    assert got.converged and all(got.converged_folds)
    assert got.passes >= got.n_iter + 2
    np.testing.assert_allclose(got.proba, expected, atol=1e-5)
    assert np.array_equal(got.proba.argmax(axis=1), expected.argmax(axis=1))


def test_streamed_logistic_fits_each_fold_with_its_own_C(tmp_path):
    X, codes = _data(300, 6, 2, seed=10)
    _, fold = _folds(codes, n_folds=3)
    Cs = [0.01, 1.0, 100.0]
    got = streamed_cv_logistic(_memmap(tmp_path, X), codes, fold, 2, Cs, tol=1e-8)
    for f, C in enumerate(Cs):
        train = fold != f
        ref = make_pipeline(StandardScaler(), LogisticRegression(C=C, tol=1e-10,
                                                                 max_iter=10_000))
        ref.fit(X[train], codes[train])
        np.testing.assert_allclose(got.coef[f][:, 0], ref[-1].coef_[0], rtol=1e-5,
                                   atol=1e-6)
        np.testing.assert_allclose(got.intercept[f], ref[-1].intercept_, atol=1e-6)


def test_streamed_logistic_reports_an_iteration_cap(tmp_path):
    X, codes = _data(200, 6, 2, seed=11)
    got = streamed_cv_logistic(_memmap(tmp_path, X), codes, _folds(codes)[1], 2, [1e4] * 5,
                               max_iter=2)
    assert got.n_iter == 2 and not got.converged and not any(got.converged_folds)


# ---- the linear probe out of core -----------------------------------------------------------
@pytest.mark.parametrize("C", [None, 1.0])
def test_linear_probe_streams_memory_mapped_rows_with_in_memory_results(tmp_path, C):
    X, codes = _data(450, 8, 2, seed=12, dtype=np.float32)
    y = _labels(codes)
    kw = {"C": C, "n_permutations": 19, "n_bootstrap": 50}
    mem = LinearProbe(**kw).fit(X, y)
    ooc = LinearProbe(**kw).fit(_memmap(tmp_path, X), y)
    assert ooc.out_of_core_ and not mem.out_of_core_
    a, b = mem.result_, ooc.result_
    assert b.params["out_of_core"]["rows"] == 450
    stream = b.params["streaming"]
    assert stream["converged"] and stream["passes"] >= stream["iterations"] + 2
    assert set(a.metrics) == set(b.metrics) and set(a.tables) == set(b.tables)
    assert b.params["C_per_fold"] == a.params["C_per_fold"]
    assert b.params.get("C_tuned_on_rows") == a.params.get("C_tuned_on_rows")
    # the same objective and stopping rule: at most a boundary row apart
    assert abs(b.metrics["accuracy"].value - a.metrics["accuracy"].value) <= 1 / 450 + 1e-12
    assert abs(b.metrics["auroc"].value - a.metrics["auroc"].value) < 1e-3
    assert b.metrics["p_value"].value == a.metrics["p_value"].value  # all rows fit the cap
    assert b.params["unconverged_folds"] == 0
    assert "memory-mapped rows read in chunks" in b.summary


def test_linear_probe_permutation_test_runs_on_a_bounded_subsample(tmp_path, monkeypatch):
    import embedforensics.probes.streaming_cv as scv

    X, codes = _data(400, 6, 2, seed=13, dtype=np.float32)
    y = _labels(codes)
    monkeypatch.setattr(scv, "PERMUTATION_MAX_ROWS", 150)
    res = LinearProbe(C=1.0, n_permutations=9, n_bootstrap=0).fit(
        _memmap(tmp_path, X), y).result_
    assert res.params["permutation"]["rows"] == 150
    assert res.metrics["p_value"].n == 150 and res.metrics["accuracy"].n == 400
    rows = permutation_rows(y, X.shape[1], 0, 5)
    sub = LinearProbe(C=1.0, n_permutations=9, n_bootstrap=0).fit(X[rows], y[rows]).result_
    assert res.metrics["p_value"].value == sub.metrics["p_value"].value
    assert res.metrics["permutation_statistic"].value == \
        sub.metrics["permutation_statistic"].value


def test_linear_probe_tunes_C_on_a_subsample_out_of_core(tmp_path):
    X, codes = _data(600, 6, 2, seed=14, dtype=np.float32)
    y = _labels(codes)
    kw = {"n_permutations": 0, "n_bootstrap": 0, "tune_max_rows": 200}
    mem = LinearProbe(**kw).fit(X, y).result_
    ooc = LinearProbe(**kw).fit(_memmap(tmp_path, X), y).result_
    assert ooc.params["C_tuned_on_rows"] == 200 == mem.params["C_tuned_on_rows"]
    assert ooc.params["C_per_fold"] == mem.params["C_per_fold"]


@pytest.mark.parametrize("probe", [LDAProbe(n_permutations=0),
                                   LinearProbe(C=1.0, n_permutations=0, n_bootstrap=0)])
def test_probes_out_of_core_without_permutations_report_the_binomial_p(tmp_path, probe):
    X, codes = _data(300, 5, 3, seed=15, dtype=np.float32)
    res = probe.fit(_memmap(tmp_path, X), _labels(codes)).result_
    assert probe.out_of_core_ and "permutation" not in res.params
    assert res.metrics["p_value"].n == 300 and res.params["streaming"]["passes"] >= 2


# ---- page release of consumed chunks --------------------------------------------------------
def test_chunks_release_pages_without_losing_data(tmp_path):
    X = np.arange(3000 * 7, dtype=np.float32).reshape(3000, 7)
    m = _memmap(tmp_path, X)
    got = np.concatenate([c for _, c in chunks(m, 256, None)])
    assert np.array_equal(got, X)
    again = np.concatenate([c for _, c in chunks(m, 256, None)])  # pages fault back in
    assert np.array_equal(again, X)
    # a writable map keeps what was written through it
    w = np.load(tmp_path / "X.npy", mmap_mode="r+")
    w[:10] = -1.0
    list(chunks(w, 256, None))
    assert np.all(w[:10] == -1.0)
    # copy-on-write changes would be discarded by the release: it is a no-op there
    c = np.load(tmp_path / "X.npy", mmap_mode="c")
    c[20:30] = 7.0
    list(chunks(c, 256, None))
    assert np.all(c[20:30] == 7.0)


def test_lda_probe_without_shrinkage_survives_a_constant_feature_out_of_core(tmp_path):
    X, codes = _data(300, 6, 2, seed=16, dtype=np.float32)  # feature 3 is constant
    y = _labels(codes)
    mem = LDAProbe(shrinkage="none", n_permutations=0).fit(X, y).result_
    ooc = LDAProbe(shrinkage="none", n_permutations=0).fit(_memmap(tmp_path, X), y).result_
    assert ooc.metrics["accuracy"].value == mem.metrics["accuracy"].value
    assert np.all(np.isfinite(ooc.plots[0].data["x"]))
