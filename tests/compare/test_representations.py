"""Representational similarity measures against brute-force references written differently.

The references here avoid the module's tricks on purpose: explicit n × n kernels and the
centring matrix H, the HSIC U-statistic as literal sums over distinct index tuples, CCA by
whitening covariances with an explicit inverse square root, principal angles from
``scipy.linalg.subspace_angles``, Procrustes by ``scipy.linalg.orthogonal_procrustes``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.linalg as sla
from scipy.spatial.distance import cdist

from embedforensics.compare import (
    MinibatchCKA,
    linear_cka,
    minibatch_linear_cka,
    procrustes_distance,
    pwcca,
    rbf_bandwidth,
    rbf_cka,
    svcca,
)
from embedforensics.compare import representations as rep

# ----------------------------------------------------------------------------- helpers


def _related(rng, n=120, p1=12, p2=9, noise=0.7):
    """Two representations sharing a latent factor, p1 ≠ p2, with non-zero means."""
    Z = rng.normal(size=(n, 5))
    X = Z @ rng.normal(size=(5, p1)) + 0.5 * rng.normal(size=(n, p1)) + 3.0
    Y = Z @ rng.normal(size=(5, p2)) + noise * rng.normal(size=(n, p2)) - 1.0
    return X, Y


def _orthogonal(rng, p):
    Q, R = np.linalg.qr(rng.normal(size=(p, p)))
    return Q * np.sign(np.diag(R))


def _hsic_biased(K, L):
    n = K.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    return np.trace(K @ H @ L @ H) / (n - 1) ** 2


def _hsic_ustat_loops(K, L):
    """Unbiased HSIC as the literal U-statistic (Gretton et al. / Song et al. 2012).

    E[k_ij l_ij] + E[k_ij] E[l_qr] − 2 E[k_ij l_iq], each expectation estimated by the mean
    over tuples of *distinct* indices.
    """
    n = K.shape[0]
    t1 = np.mean([K[i, j] * L[i, j] for i, j in itertools.permutations(range(n), 2)])
    t2 = np.mean([K[i, j] * L[q, r] for i, j, q, r in itertools.permutations(range(n), 4)])
    t3 = np.mean([K[i, j] * L[i, q] for i, j, q in itertools.permutations(range(n), 3)])
    return t1 + t2 - 2 * t3


def _hsic_song(K, L):
    """Song et al. 2012's closed form on raw (uncentred) kernels, diagonals zeroed."""
    n = K.shape[0]
    Kt, Lt = K - np.diag(np.diag(K)), L - np.diag(np.diag(L))
    one = np.ones(n)
    return (
        np.trace(Kt @ Lt)
        + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
        - 2 / (n - 2) * (one @ Kt @ Lt @ one)
    ) / (n * (n - 3))


def _cka_from(hsic, K, L):
    return hsic(K, L) / math.sqrt(hsic(K, K) * hsic(L, L))


def _rbf_kernel_ref(X, threshold):
    D = cdist(X, X, "sqeuclidean")
    sigma2 = threshold**2 * np.median(D)  # all n² entries, diagonal zeros included
    K = np.empty_like(D)
    for i in range(len(X)):
        for j in range(len(X)):
            K[i, j] = math.exp(-D[i, j] / (2 * sigma2))
    return K


def _pca_reduce(X, keep):
    """Centred X projected on its leading principal directions (explicit loop over k)."""
    Xc = X - X.mean(0)
    _, s, Vt = np.linalg.svd(Xc, full_matrices=False)
    var = s**2
    var = var[var > 1e-10 * var[0]]
    if isinstance(keep, int):
        k = min(keep, len(var))
    else:
        k, acc = 0, 0.0
        while acc < keep * var.sum() - 1e-12 * var.sum() and k < len(var):
            acc += var[k]
            k += 1
    return Xc @ Vt[:k].T


def _inv_sqrt(C):
    w, V = np.linalg.eigh(C)
    return V @ np.diag(1 / np.sqrt(w)) @ V.T


def _cca_ref(Xr, Yr):
    """CCA of full-rank reduced data: whitened cross-covariance, explicit inverse roots."""
    Sxx, Syy, Sxy = Xr.T @ Xr, Yr.T @ Yr, Xr.T @ Yr
    Wx, Wy = _inv_sqrt(Sxx), _inv_sqrt(Syy)
    U, rho, Vt = sla.svd(Wx @ Sxy @ Wy)
    return rho, Wx @ U, Wy @ Vt.T


# ----------------------------------------------------------------------------- linear CKA


def test_linear_cka_matches_nxn_gram_hsic():
    rng = np.random.default_rng(0)
    X, Y = _related(rng)
    K, L = X @ X.T, Y @ Y.T
    assert linear_cka(X, Y) == pytest.approx(_cka_from(_hsic_biased, K, L), abs=1e-12)


def test_debiased_linear_cka_matches_the_u_statistic_by_loops():
    rng = np.random.default_rng(1)
    X, Y = _related(rng, n=9, p1=4, p2=3)  # uncentred: the estimator must not care
    K, L = X @ X.T, Y @ Y.T
    ref = _cka_from(_hsic_ustat_loops, K, L)
    assert linear_cka(X, Y, debiased=True) == pytest.approx(ref, abs=1e-10)
    assert _cka_from(_hsic_song, K, L) == pytest.approx(ref, abs=1e-10)


def test_debiased_linear_cka_matches_song_formula_both_paths():
    rng = np.random.default_rng(2)
    for n, p1, p2 in [(300, 20, 7), (30, 80, 50)]:  # feature space, then sample space
        X, Y = _related(rng, n=n, p1=p1, p2=p2)
        ref = _cka_from(_hsic_song, X @ X.T, Y @ Y.T)
        assert linear_cka(X, Y, debiased=True) == pytest.approx(ref, abs=1e-10)
        Xc, Yc = X - X.mean(0), Y - Y.mean(0)
        for debiased in (False, True):
            a = rep._linear_hsic_terms(Xc, Yc, debiased=debiased, sample_space=True)
            b = rep._linear_hsic_terms(Xc, Yc, debiased=debiased, sample_space=False)
            np.testing.assert_allclose(a, b, rtol=1e-9)


def test_cka_invariances_and_identity():
    rng = np.random.default_rng(3)
    X, Y = _related(rng, n=80, p1=10, p2=6)
    Q = _orthogonal(rng, 10)
    for debiased in (False, True):
        base = linear_cka(X, Y, debiased=debiased)
        assert linear_cka(X @ Q * 4.2 + 7.0, Y, debiased=debiased) == pytest.approx(base, 1e-10)
        assert linear_cka(X, -0.3 * Y, debiased=debiased) == pytest.approx(base, 1e-10)
        assert linear_cka(X, X, debiased=debiased) == pytest.approx(1.0, abs=1e-12)
        assert linear_cka(Y, X, debiased=debiased) == pytest.approx(base, 1e-12)
    base = rbf_cka(X, Y)
    assert rbf_cka(X @ Q * 4.2 + 7.0, Y) == pytest.approx(base, abs=1e-10)
    assert rbf_cka(X, X) == pytest.approx(1.0, abs=1e-12)
    assert rbf_cka(X, X, debiased=True) == pytest.approx(1.0, abs=1e-12)
    # not invariant to a general invertible map (that is CCA's property, not CKA's)
    A = rng.normal(size=(10, 10)) + np.diag(np.linspace(0.1, 5, 10))
    assert abs(linear_cka(X @ A, Y) - linear_cka(X, Y)) > 1e-3


def test_debiased_cka_of_independent_gaussians_is_near_zero():
    rng = np.random.default_rng(4)
    pairs = [(rng.normal(size=(50, 500)), rng.normal(size=(50, 500))) for _ in range(5)]
    biased = [linear_cka(X, Y) for X, Y in pairs]
    debiased = [linear_cka(X, Y, debiased=True) for X, Y in pairs]
    assert min(biased) > 0.85  # ≈ 0.91: the biased estimator sees dependence that is not there
    assert abs(np.mean(debiased)) < 0.03 and max(map(abs, debiased)) < 0.1
    X, Y = rng.normal(size=(32, 16)), rng.normal(size=(32, 16))
    assert linear_cka(X, Y) > 0.1 and abs(linear_cka(X, Y, debiased=True)) < 0.1


# ----------------------------------------------------------------------------- RBF CKA


def test_rbf_bandwidth_convention_by_hand():
    # squared distances of 0, 1, 3 on a line: {1, 4, 9}; the full 3 × 3 matrix holds
    # {0,0,0,1,1,4,4,9,9}: median 1 (the distinct-pair median would be 4)
    X = np.array([[0.0], [1.0], [3.0]])
    assert rbf_bandwidth(X) == pytest.approx(1.0)
    assert rbf_bandwidth(X, threshold=0.5) == pytest.approx(0.5)
    # 0, 1, 3, 7: sorted 4 × 4 entries 0,0,0,0,1,1,4,4,9,9,16,16,36,36,49,49 → (4 + 9)/2
    X4 = np.array([[0.0], [1.0], [3.0], [7.0]])
    assert rbf_bandwidth(X4) == pytest.approx(math.sqrt(6.5))
    # the kernel by hand: K_ij = exp(−d²_ij / (2σ²)) with σ² = 6.5, and Y's own σ² = 6.5·4
    Y4 = 2.0 * X4[::-1]
    d2 = (X4 - X4.T) ** 2
    K = np.exp(-d2 / 13.0)
    L = np.exp(-((Y4 - Y4.T) ** 2) / (2 * 26.0))
    assert np.allclose(K, L[::-1, ::-1])
    assert rbf_cka(X4, Y4) == pytest.approx(_cka_from(_hsic_biased, K, L), abs=1e-12)


def test_median_of_full_matrix_matches_numpy():
    rng = np.random.default_rng(5)
    for n in (2, 3, 4, 7, 10, 31):
        Xc = rng.normal(size=(n, 3))
        D = rep._sq_distances(Xc)
        assert rep._median_full_sq_distances(D) == pytest.approx(np.median(D), rel=1e-12)
        np.testing.assert_allclose(D, cdist(Xc, Xc, "sqeuclidean"), atol=1e-12)


@pytest.mark.parametrize("threshold", [0.5, 1.0, 2.0])
def test_rbf_cka_matches_explicit_kernels(threshold):
    rng = np.random.default_rng(6)
    X, Y = _related(rng, n=40, p1=6, p2=4)
    K, L = _rbf_kernel_ref(X, threshold), _rbf_kernel_ref(Y, threshold)
    assert rbf_cka(X, Y, threshold) == pytest.approx(_cka_from(_hsic_biased, K, L), abs=1e-12)
    got = rbf_cka(X, Y, threshold, debiased=True)
    assert got == pytest.approx(_cka_from(_hsic_song, K, L), abs=1e-10)


def test_rbf_cka_refuses_too_many_rows():
    X = np.zeros((50, 3))
    with pytest.raises(ValueError, match=r"n × n.*max_rows = 40.*linear_cka"):
        rbf_cka(X, X, max_rows=40)
    rng = np.random.default_rng(7)
    X, Y = rng.normal(size=(50, 3)), rng.normal(size=(50, 2))
    assert 0 <= rbf_cka(X, Y, max_rows=50) <= 1


# ----------------------------------------------------------------------------- CCA family


@pytest.mark.parametrize("keep", [0.99, 0.8, 1.0, 3, 5])
def test_svcca_matches_whitened_covariance_cca(keep):
    rng = np.random.default_rng(8)
    X, Y = _related(rng, n=200, p1=12, p2=7)
    Xr, Yr = _pca_reduce(X, keep), _pca_reduce(Y, keep)
    rho, _, _ = _cca_ref(Xr, Yr)
    assert svcca(X, Y, keep=keep) == pytest.approx(rho.mean(), abs=1e-10)
    # canonical correlations are the cosines of the principal angles between the subspaces
    angles = sla.subspace_angles(Xr, Yr)
    assert svcca(X, Y, keep=keep) == pytest.approx(np.cos(angles).mean(), abs=1e-10)


def test_svcca_different_kept_counts_and_both_paths():
    rng = np.random.default_rng(9)
    X, Y = _related(rng, n=60, p1=40, p2=25)
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    for kx, ky in [(0.9, 0.99), (4, 11), (11, 4), (1.0, 1.0)]:
        a, wa = rep._cca(Xc, Yc, kx, ky, weights=True, sample_space=True)
        b, wb = rep._cca(Xc, Yc, kx, ky, weights=True, sample_space=False)
        np.testing.assert_allclose(a, b, atol=1e-7)
        if kx != 1.0:  # at keep=1.0, n < p1 + p2: ρ = 1 repeated, variates not unique
            np.testing.assert_allclose(wa / wa.sum(), wb / wb.sum(), atol=1e-7)
        Xr, Yr = _pca_reduce(X, kx), _pca_reduce(Y, ky)
        assert len(a) == min(Xr.shape[1], Yr.shape[1])
        np.testing.assert_allclose(a, np.sort(np.cos(sla.subspace_angles(Xr, Yr)))[::-1], atol=1e-7)


def test_pwcca_matches_explicit_projection_weights():
    rng = np.random.default_rng(10)
    X, Y = _related(rng, n=300, p1=6, p2=9)
    for A, B in [(X, Y), (Y, X)]:  # X narrower, then Y narrower: weights on the narrower
        Ac, Bc = A - A.mean(0), B - B.mean(0)
        rho, Wa, Wb = _cca_ref(Ac, Bc)
        narrow_c, W = (Ac, Wa) if Ac.shape[1] <= Bc.shape[1] else (Bc, Wb)
        m = len(rho)
        H = narrow_c @ W[:, :m]  # canonical variates, unit norm
        np.testing.assert_allclose(np.linalg.norm(H, axis=0), 1.0, atol=1e-10)
        alpha = np.zeros(m)
        for i in range(m):
            for j in range(narrow_c.shape[1]):
                alpha[i] += abs(H[:, i] @ narrow_c[:, j])
        ref = float((alpha / alpha.sum()) @ rho)
        assert pwcca(A, B) == pytest.approx(ref, abs=1e-10)


def test_cca_invariant_to_invertible_linear_maps():
    rng = np.random.default_rng(11)
    X, Y = _related(rng, n=150, p1=8, p2=5)
    A = rng.normal(size=(8, 8)) + 3 * np.eye(8)
    B = rng.normal(size=(5, 5)) + 3 * np.eye(5)
    assert svcca(X @ A + 2.0, Y @ B, keep=1.0) == pytest.approx(svcca(X, Y, keep=1.0), abs=1e-9)
    Q = _orthogonal(rng, 8)
    for keep in (0.99, 0.9, 3):
        assert svcca(5 * X @ Q, Y, keep=keep) == pytest.approx(svcca(X, Y, keep=keep), abs=1e-9)
    assert pwcca(5 * X @ Q, Y) == pytest.approx(pwcca(X, Y), abs=1e-9)
    assert svcca(X, X, keep=1.0) == pytest.approx(1.0, abs=1e-12)
    assert pwcca(X, X @ A) == pytest.approx(1.0, abs=1e-9)


def test_rank_deficient_inputs_give_no_nan():
    rng = np.random.default_rng(12)
    Z = rng.normal(size=(100, 3))
    X = np.hstack([Z, Z, Z @ rng.normal(size=(3, 6)), np.zeros((100, 2))])  # rank 3 of 14
    Y = Z @ rng.normal(size=(3, 20)) + 1e-3 * rng.normal(size=(100, 20))
    Y[:, 5] = Y[:, 4]
    for fn in (linear_cka, rbf_cka, svcca, pwcca, procrustes_distance):
        v = fn(X, Y)
        assert math.isfinite(v)
    assert linear_cka(X, Y, debiased=True) == pytest.approx(linear_cka(X, Y, True))
    assert svcca(X, Z, keep=1.0) == pytest.approx(1.0, abs=1e-9)
    assert pwcca(X, Z) == pytest.approx(1.0, abs=1e-9)
    assert svcca(X, X, keep=14) == pytest.approx(1.0, abs=1e-9)  # keep capped at rank 3
    Xc = X - X.mean(0)
    rho_s, _ = rep._cca(Xc, Xc, 1.0, 1.0, weights=False, sample_space=True)
    rho_f, _ = rep._cca(Xc, Xc, 1.0, 1.0, weights=False, sample_space=False)
    assert len(rho_s) == len(rho_f) == 3


# ----------------------------------------------------------------------------- Procrustes


def test_procrustes_matches_orthogonal_procrustes_solution():
    rng = np.random.default_rng(13)
    X, Y = _related(rng, n=90, p1=7, p2=4)
    Xn = (X - X.mean(0)) / np.linalg.norm(X - X.mean(0))
    Yn = (Y - Y.mean(0)) / np.linalg.norm(Y - Y.mean(0))
    Yp = np.hstack([Yn, np.zeros((90, 3))])  # zero-pad the narrower side
    R, _ = sla.orthogonal_procrustes(Yp, Xn)
    d2 = np.linalg.norm(Xn - Yp @ R) ** 2
    assert procrustes_distance(X, Y, squared=True) == pytest.approx(d2, abs=1e-12)
    assert procrustes_distance(X, Y) == pytest.approx(math.sqrt(d2), abs=1e-12)
    Q = _orthogonal(rng, 7)
    assert procrustes_distance(0.01 * X @ Q - 4, Y) == pytest.approx(math.sqrt(d2), abs=1e-10)
    assert procrustes_distance(X, 3 * X @ Q) == pytest.approx(0.0, abs=1e-6)
    assert 0 <= procrustes_distance(rng.normal(size=(90, 7)), Y) <= math.sqrt(2)


# ----------------------------------------------------------------------------- minibatch


@pytest.mark.parametrize("debiased", [True, False])
def test_minibatch_exact_equals_full(debiased):
    rng = np.random.default_rng(14)
    X, Y = _related(rng, n=257, p1=15, p2=11)
    X += 1e3  # large offsets: the shifted accumulators must avoid cancellation
    full = linear_cka(X, Y, debiased=debiased)
    for cuts in ([64, 128, 192], [1, 2, 250], [100]):
        bounds = [0, *cuts, len(X)]
        batches = [(X[a:b], Y[a:b]) for a, b in itertools.pairwise(bounds)]
        got = minibatch_linear_cka(batches, debiased=debiased)
        assert got == pytest.approx(full, abs=1e-10)
    X32 = X.astype(np.float32)  # float32 batches are accepted (and computed in float64)
    acc = MinibatchCKA(debiased=debiased)
    for i in range(0, len(X), 50):
        acc.update(X32[i : i + 50], Y[i : i + 50])
    assert acc.n == len(X)
    assert acc.value() == pytest.approx(linear_cka(X32, Y, debiased=debiased), abs=1e-10)


def test_minibatch_batch_mean_mode():
    rng = np.random.default_rng(15)
    X, Y = _related(rng, n=120, p1=9, p2=5)
    one = minibatch_linear_cka([(X, Y)], mode="batch_mean")
    assert one == pytest.approx(linear_cka(X, Y, debiased=True), abs=1e-12)
    batches = [(X[i : i + 40], Y[i : i + 40]) for i in range(0, 120, 40)]
    ref = [[_hsic_song(a @ a.T, b @ b.T) for a, b in [(xb, yb), (xb, xb), (yb, yb)]]
           for xb, yb in batches]
    hxy, hxx, hyy = np.mean(ref, axis=0)
    got = minibatch_linear_cka(batches, mode="batch_mean")
    assert got == pytest.approx(hxy / math.sqrt(hxx * hyy), abs=1e-10)
    with pytest.raises(ValueError, match="at least 4 rows per batch"):
        minibatch_linear_cka([(X[:3], Y[:3])], mode="batch_mean")


# ----------------------------------------------------------------------------- validation


def test_inputs_are_validated_with_clear_errors():
    rng = np.random.default_rng(16)
    X, Y = rng.normal(size=(10, 3)), rng.normal(size=(10, 2))
    with pytest.raises(ValueError, match="same inputs row for row"):
        linear_cka(X, Y[:9])
    with pytest.raises(ValueError, match="2-D"):
        svcca(X[:, 0], Y)
    bad = X.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        pwcca(bad, Y)
    with pytest.raises(ValueError, match="at least 4 rows"):
        linear_cka(X[:3], Y[:3], debiased=True)
    with pytest.raises(ValueError, match="constant"):
        procrustes_distance(np.ones((10, 3)), Y)
    for keep in (0, 1.5, 11, True, "all"):
        with pytest.raises(ValueError, match="keep"):
            svcca(X, Y, keep=keep)
    with pytest.raises(ValueError, match="threshold"):
        rbf_cka(X, Y, threshold=0)
    with pytest.raises(ValueError, match="median squared distance"):
        rbf_cka(np.r_[np.zeros((8, 2)), np.ones((2, 2))], Y)
    with pytest.raises(ValueError, match="mode"):
        MinibatchCKA(mode="fast")
    with pytest.raises(ValueError, match="before any update"):
        MinibatchCKA().value()
    with pytest.raises(ValueError, match="feature counts changed"):
        MinibatchCKA().update(X, Y).update(X[:, :2], Y)


def test_deterministic_and_returns_python_floats():
    rng = np.random.default_rng(17)
    X, Y = _related(rng, n=70, p1=30, p2=20)
    for fn in (linear_cka, rbf_cka, svcca, pwcca, procrustes_distance):
        a, b = fn(X, Y), fn(X.copy(), Y.copy())
        assert type(a) is float and a == b


def test_accepts_torch_tensors_and_lists():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(18)
    X, Y = _related(rng, n=40, p1=6, p2=5)
    ref = linear_cka(X, Y)
    assert linear_cka(torch.from_numpy(X).to(torch.bfloat16), Y) == pytest.approx(ref, abs=0.02)
    assert linear_cka(torch.from_numpy(X), Y.tolist()) == pytest.approx(ref, abs=1e-12)


def test_streamed_moments_equal_one_shot(monkeypatch):
    rng = np.random.default_rng(19)
    X, Y = _related(rng, n=103, p1=8, p2=6)
    X32 = X.astype(np.float32)
    fns = [lambda a, b: linear_cka(a, b, debiased=True), linear_cka, svcca, pwcca,
           procrustes_distance]
    whole = [fn(X32, Y) for fn in fns]
    monkeypatch.setattr(rep, "_CHUNK_ROWS", 10)  # 11 chunks, the last one of 3 rows
    for fn, ref in zip(fns, whole, strict=True):
        assert fn(X32, Y) == pytest.approx(ref, abs=1e-12)
    Xc = X32.astype(np.float64) - X32.astype(np.float64).mean(0)
    mo = rep._Moments(X32, Y, rows=True)
    np.testing.assert_allclose(mo.xx, Xc.T @ Xc, rtol=1e-12)
    np.testing.assert_allclose(mo.d, (Xc**2).sum(1), rtol=1e-12)
    bad = X.copy()
    bad[97, 3] = np.inf  # in the last chunk
    with pytest.raises(ValueError, match="NaN or infinite"):
        linear_cka(bad, Y)


def test_debiased_cka_leave_one_out_equals_recomputing_without_each_row():
    from embedforensics.compare.representations import debiased_cka_leave_one_out

    rng = np.random.default_rng(5)
    X = rng.normal(size=(25, 6)) + 4.0  # not centred: each delete-one sample recentres
    Y = X @ rng.normal(size=(6, 9)) + rng.normal(size=(25, 9))
    brute = [linear_cka(np.delete(X, i, 0), np.delete(Y, i, 0), debiased=True)
             for i in range(25)]
    np.testing.assert_allclose(debiased_cka_leave_one_out(X, Y), brute, atol=1e-12)


def test_jackknife_interval_covers_the_population_cka_at_its_level():
    """The comparator's CI (jackknife of debiased CKA) holds its level where a percentile
    bootstrap of linear CKA does not (duplicated rows raise CKA)."""
    from embedforensics.compare.representations import (
        debiased_cka_leave_one_out,
        jackknife_interval,
    )

    def simulate(n, rng, A, B):  # tanh features of a shared latent (as the benchmark)
        Z = rng.normal(size=(n, 20)) * np.linspace(2, 0.2, 20)
        return (np.tanh(Z @ A) + 0.3 * rng.normal(size=(n, 32)),
                np.tanh(Z @ B) + 0.3 * rng.normal(size=(n, 32)))

    rng0 = np.random.default_rng(0)
    A = rng0.normal(size=(20, 32))
    B = 0.6 * A + 0.8 * rng0.normal(size=(20, 32))
    truth = linear_cka(*simulate(20_000, np.random.default_rng(1), A, B))
    jack = boot = 0
    studies = 60
    for s in range(studies):
        rng = np.random.default_rng(100 + s)
        X, Y = simulate(80, rng, A, B)
        lo, hi = jackknife_interval(linear_cka(X, Y, debiased=True),
                                    debiased_cka_leave_one_out(X, Y))
        jack += lo <= truth <= hi
        b = [linear_cka(X[i], Y[i]) for i in (rng.integers(0, 80, 80) for _ in range(50))]
        boot += np.quantile(b, 0.025) <= truth <= np.quantile(b, 0.975)
    assert jack >= 0.85 * studies  # nominal 0.95; binomial sd ≈ 2.8 studies
    assert boot <= 0.3 * studies
