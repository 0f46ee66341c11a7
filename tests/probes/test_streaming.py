"""Out-of-core PCA, LDA and logistic regression equal scikit-learn's exact versions on data
small enough for both, read in chunks smaller than the data (including from a memmap)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from embedforensics.probes.streaming import (
    streaming_lda,
    streaming_logistic,
    streaming_moments,
    streaming_pca,
)


def _data(n: int = 900, d: int = 12, k: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    X = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + 5.0  # correlated, off-centre
    X[:, 0] += 1.5 * y
    return X.astype(np.float32), np.array(["a", "b", "c"])[y]


def test_moments_from_chunks_equal_numpy() -> None:
    X, _ = _data()
    m = streaming_moments(X, chunk_rows=100)
    Xd = X.astype(np.float64)
    assert m.n == 900
    np.testing.assert_allclose(m.mean, Xd.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(m.scatter / 899, np.cov(Xd.T), rtol=1e-10, atol=1e-10)


def test_pca_equals_sklearn(tmp_path) -> None:
    X, _ = _data()
    path = tmp_path / "x.f32"
    X.tofile(path)
    mm = np.memmap(path, dtype=np.float32, mode="r", shape=X.shape)
    ours = streaming_pca(mm, 5, chunk_rows=128)
    ref = PCA(n_components=5, svd_solver="full").fit(X.astype(np.float64))
    np.testing.assert_allclose(ours.explained_variance_, ref.explained_variance_, rtol=1e-9)
    np.testing.assert_allclose(ours.explained_variance_ratio_, ref.explained_variance_ratio_,
                               rtol=1e-9)
    np.testing.assert_allclose(np.abs(ours.components_ @ ref.components_.T), np.eye(5),
                               atol=1e-8)
    np.testing.assert_allclose(ours.components_, ref.components_, atol=1e-8)  # same signs
    np.testing.assert_allclose(ours.transform(X[:50]), ref.transform(X[:50]), atol=1e-6)


@pytest.mark.parametrize("k,shrinkage", [(2, 0.0), (3, 0.0), (3, 0.3)])
def test_lda_equals_sklearn(k: int, shrinkage: float) -> None:
    X, y = _data(k=k, seed=k)
    ours = streaming_lda(X, y, shrinkage=shrinkage, chunk_rows=97)
    ref = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=shrinkage or None).fit(
        X.astype(np.float64), y)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, rtol=1e-7, atol=1e-9)
    assert np.array_equal(ours.predict(X), ref.predict(X))
    if shrinkage == 0.0:
        eig = LinearDiscriminantAnalysis(solver="eigen").fit(X.astype(np.float64), y)
        # same discriminant subspace (directions up to scale and sign)
        a = ours.scalings_ / np.linalg.norm(ours.scalings_, axis=0)
        b = eig.scalings_[:, :k - 1] / np.linalg.norm(eig.scalings_[:, :k - 1], axis=0)
        np.testing.assert_allclose(np.abs(np.sum(a * b, axis=0)), 1.0, atol=1e-6)


def test_logistic_equals_sklearn_pipeline() -> None:
    X, y = _data(n=700, k=2, seed=5)
    ours = streaming_logistic(X, y, C=0.5, chunk_rows=64, tol=1e-10, max_iter=500)
    scaler = StandardScaler().fit(X.astype(np.float64))
    ref = LogisticRegression(C=0.5, tol=1e-10, max_iter=5000).fit(
        scaler.transform(X.astype(np.float64)), y)
    assert ours.converged_
    np.testing.assert_allclose(ours.coef_, ref.coef_[0], rtol=1e-4, atol=1e-6)
    assert ours.intercept_ == pytest.approx(ref.intercept_[0], rel=1e-4, abs=1e-6)
    assert np.array_equal(ours.predict(X), ref.predict(scaler.transform(X)))


def test_row_chunks_prefetch_yields_every_row_in_order(tmp_path) -> None:
    from embedforensics.probes.streaming import row_chunks

    X = np.arange(230 * 3, dtype=np.float32).reshape(230, 3)
    np.save(tmp_path / "x.npy", X)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    for prefetch in (True, False):
        parts = list(row_chunks(mm, 64, None, prefetch=prefetch))
        assert [s for s, _ in parts] == [0, 64, 128, 192]
        assert all(c.dtype == np.float32 for _, c in parts)
        np.testing.assert_array_equal(np.concatenate([c for _, c in parts]), X)


def test_float32_products_agree_with_float64_to_single_precision() -> None:
    rng = np.random.default_rng(5)
    X = (rng.normal(size=(5000, 40)) @ rng.normal(size=(40, 40)) + 3.0).astype(np.float32)
    single = streaming_moments(X, chunk_rows=1024, precision="float32")
    double = streaming_moments(X, chunk_rows=1024, precision="float64")
    scale = np.abs(double.scatter).max()
    assert np.abs(single.scatter - double.scatter).max() < 1e-6 * scale
    np.testing.assert_allclose(single.mean, double.mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(single.scatter, single.scatter.T)  # symmetric
    with pytest.raises(ValueError, match="precision"):
        streaming_moments(X, precision="half")
