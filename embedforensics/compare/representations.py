r"""Representational similarity of two models (or layers) on the same inputs.

Every measure takes ``X: [n, p1]`` and ``Y: [n, p2]`` — the hidden representations of the
*same* ``n`` inputs, row ``i`` of ``X`` paired with row ``i`` of ``Y``; ``p1 ≠ p2`` is
allowed — and returns a Python float. Inputs may be any array-like (numpy of any real
dtype, torch tensors, lists); everything is computed in float64 on column-centred data
(``Xc = X − 1 x̄ᵀ``), so every measure is invariant to translating either side. Where the
feature-space formulas apply (``n`` large next to the widths), the centred cross-products
are accumulated over chunks of 4,096 rows converted one at a time, so no float64 copy of a
float32 input is ever made; otherwise (few rows, and for RBF CKA) the inputs are copied. All are
deterministic (no random projections, no random restarts). Inputs are checked: 2-D, the same
number of rows, finite, at least 2 rows (4 for the debiased estimators), and not constant
(a representation with no variance has no similarity to anything: ``ValueError``).

Linear CKA (Kornblith et al. 2019, "Similarity of Neural Network Representations
Revisited")
    ``CKA(X, Y) = HSIC(K, L) / sqrt(HSIC(K, K) · HSIC(L, L))`` with ``K = Xc Xcᵀ`` and
    ``L = Yc Ycᵀ``. The biased estimator ``HSIC₀ ∝ tr(K L)`` gives the closed form::

        linear_cka(X, Y) = ‖Ycᵀ Xc‖²_F / (‖Xcᵀ Xc‖_F · ‖Ycᵀ Yc‖_F)

    The **debiased** estimator (``debiased=True``) replaces ``HSIC₀`` by the unbiased
    U-statistic of Song et al. 2012 (used for CKA by Nguyen et al. 2021), with ``K̃``, ``L̃``
    the kernels with their diagonals set to zero::

        HSIC₁(K, L) = [ tr(K̃ L̃) + (1ᵀK̃1)(1ᵀL̃1) / ((n−1)(n−2)) − 2/(n−2) · 1ᵀK̃L̃1 ] / (n(n−3))

    For centred data (``K1 = 0``), with ``dᵢ = ‖xcᵢ‖²`` and ``eᵢ = ‖ycᵢ‖²`` (the kernels'
    diagonals), this is, up to the factor ``1/(n(n−3))`` that cancels in CKA::

        tr(KL) − n/(n−2) · dᵀe + (Σd)(Σe) / ((n−1)(n−2))

    which needs only ``‖XcᵀYc‖²_F`` and row norms — a ``p1 × p2`` cross-covariance, never an
    ``n × n`` matrix when ``n`` is large. The biased estimator is positive for independent
    representations at small ``n`` (for independent Gaussians ≈ 0.19 at n = 32, p = 8 and
    ≈ 0.91 at n = 50, p = 500); the debiased one averages ≈ 0 there (± 0.04 at n = 50).

    Cost: in feature space ``O(n (p1² + p2² + p1 p2))`` time and ``O(p1² + p2² + p1 p2)``
    extra memory; when ``n < (p1² + p2² + p1 p2) / (p1 + p2)`` (wide representations, few
    inputs) the same numbers are computed from the ``n × n`` Gram matrices instead, which
    is then both cheaper and smaller.

RBF CKA
    The same ratio with Gaussian kernels ``K_ij = exp(−‖xᵢ − xⱼ‖² / (2σ_X²))``. The
    bandwidth follows Kornblith et al.'s reference code (``gram_rbf`` in
    google-research/representation_similarity) **exactly**::

        σ_X² = threshold² · median{ ‖xᵢ − xⱼ‖² : all n² ordered pairs (i, j), i = j included }

    i.e. the median is taken over the full ``n × n`` squared-distance matrix, *including its
    n zero diagonal entries* and counting each off-diagonal pair twice (so for 3 points at
    0, 1 and 3 on a line, the median of {0,0,0,1,1,4,4,9,9} is 1, whereas the median over
    distinct pairs {1, 4, 9} would be 4). ``σ`` is therefore ``threshold`` times the square
    root of the median *squared* distance (not the median distance, not divided by √2),
    computed separately for X and for Y. Libraries differ on each of these choices and give
    values from 0.58 to 0.99 for the same inputs; :func:`rbf_bandwidth` returns the σ used
    here. Centring is ``H K H`` (biased) or the U-centring of the reference code
    (``debiased=True``); CKA is then ``⟨K', L'⟩_F / (‖K'‖_F ‖L'‖_F)``. RBF CKA is ``n × n``
    by nature (about 2 · 8n² bytes at the peak): it refuses ``n > max_rows`` (default
    10,000, ≈ 1.6 GB) with a message rather than exhausting memory.

SVCCA (Raghu et al. 2017) and PWCCA (Morcos et al. 2018)
    Each centred side is reduced to its leading principal directions (singular value
    decomposition): ``keep`` a float in (0, 1] keeps the fewest directions whose variances
    (squared singular values) sum to at least that fraction of the total; an int keeps that
    many. Directions with variance below ``1e-10`` of the largest are numerically null and
    never kept (so rank-deficient inputs are handled, and ``keep`` is capped at the numerical
    rank). CCA of the two reduced representations is computed from orthonormal bases
    ``Qx`` (n × kx), ``Qy`` (n × ky) of the kept subspaces: the canonical correlations are
    the singular values of ``Qxᵀ Qy`` (Björck & Golub 1973), ``min(kx, ky)`` of them, clipped
    to [0, 1]. ``kx ≠ ky`` is fine, and no covariance matrix is ever inverted or square-rooted
    with tiny negative eigenvalues (the public code's NaNs). In feature space the bases are
    never formed: ``Qx = Xc Vx Λx^{-1/2}`` from the eigen-decomposition of ``XcᵀXc``, so
    ``Qxᵀ Qy = Λx^{-1/2} Vxᵀ (XcᵀYc) Vy Λy^{-1/2}`` (used unless ``2n < p1 + p2``, where thin
    SVDs of the inputs are cheaper).

    ``svcca`` returns the mean of the ``min(kx, ky)`` canonical correlations (all of them:
    no trailing-zero trimming as in google/svcca's ``threshold=0.98``).

    ``pwcca`` (default ``keep=1.0``: no reduction beyond numerical rank, as in the paper)
    returns ``Σ αᵢ ρᵢ / Σ αᵢ`` with projection weights ``αᵢ = Σⱼ |⟨hᵢ, zⱼ⟩|``, where ``hᵢ``
    are the unit-norm canonical variates and ``zⱼ`` the centred columns (neurons) of the
    weighting side. As in google/svcca's ``pwcca.py``, the weighting side is the one with
    fewer (kept) directions, X on a tie — so ``pwcca`` is not symmetric in general. Unlike
    that code it uses the canonical variates themselves (it projects with ``uᵀ`` only,
    skipping ``Σ^{-1/2}``), and the Y side's own activations (it uses ``acts1`` in both
    branches).

Procrustes distance (Ding et al. 2021; Williams et al. 2021)
    After centring and scaling each side to unit Frobenius norm, the orthogonal Procrustes
    problem ``min_Q ‖X − Y Q‖_F`` (``Q`` with orthonormal columns, zero-padding the narrower
    side) has the solution::

        d² = ‖X‖² + ‖Y‖² − 2 ‖Xᵀ Y‖_* = 2 − 2 ‖Xᵀ Y‖_*      (‖·‖_*: nuclear norm)

    ``procrustes_distance`` returns ``d`` in [0, √2] (``squared=True``: ``d²``), clipped at 0
    against rounding. Cost: the ``p1 × p2`` cross-covariance (streamed over row chunks) and its
    singular values.

Minibatch CKA
    :class:`MinibatchCKA` (and :func:`minibatch_linear_cka`) accumulate linear CKA over
    batches of paired rows in ``O(p1² + p2² + p1 p2)`` memory, for representations that do not
    fit at once. ``mode="exact"`` (default) accumulates the sufficient statistics of the
    *full-data* estimator (sums, cross-products and row-norm moments, shifted by the first
    batch's means against cancellation) and returns the same number as
    :func:`linear_cka` on the concatenated rows, biased or debiased, up to rounding.
    ``mode="batch_mean"`` is Nguyen et al. 2021's estimator: the unbiased ``HSIC₁`` of each
    batch, averaged over batches, ``mean_b HSIC₁(X_b, Y_b) / sqrt(mean_b HSIC₁(X_b, X_b) ·
    mean_b HSIC₁(Y_b, Y_b))``; it equals the full debiased CKA for one batch and estimates
    the same population quantity otherwise.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_RBF_MAX_ROWS",
    "MinibatchCKA",
    "linear_cka",
    "minibatch_linear_cka",
    "procrustes_distance",
    "pwcca",
    "rbf_bandwidth",
    "rbf_cka",
    "svcca",
]

DEFAULT_RBF_MAX_ROWS = 10_000
"""Largest ``n`` :func:`rbf_cka` accepts unless told otherwise (two n × n float64 kernels)."""

_NULL_RTOL = 1e-10
"""Principal directions with variance below this fraction of the largest are numerically null."""


# --------------------------------------------------------------------------- validation


def _as_matrix(A: Any, name: str) -> np.ndarray:
    """A float64, C-contiguous copy of ``A`` (ours to modify), checked 2-D and finite."""
    arr = np.array(_as_view(A, name), dtype=np.float64, order="C", copy=True)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _as_view(A: Any, name: str) -> np.ndarray:
    """``A`` as a 2-D numeric numpy array, without copying numpy input (finiteness unchecked)."""
    if hasattr(A, "detach"):  # torch tensors (any device, bf16/fp16 included)
        A = A.detach().cpu().double().numpy()
    arr = np.asarray(A)
    if arr.dtype.kind not in "fiu":
        arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (examples × features), got shape {arr.shape}"
        )
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has no features (shape {arr.shape})")
    return arr


def _views(X: Any, Y: Any, *, min_rows: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Validated views of a paired ``(X, Y)``: 2-D, the same rows, at least ``min_rows``."""
    Xa = _as_view(X, "X")
    Ya = _as_view(Y, "Y")
    if Xa.shape[0] != Ya.shape[0]:
        raise ValueError(
            f"X and Y must hold the same inputs row for row: X has {Xa.shape[0]} rows, "
            f"Y has {Ya.shape[0]}"
        )
    n = Xa.shape[0]
    if n < min_rows:
        raise ValueError(f"{what} needs at least {min_rows} rows (examples), got {n}")
    return Xa, Ya


def _centred(Xa: np.ndarray, Ya: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column-centred float64 copies, checked finite and non-constant."""
    out = []
    for A, name in ((Xa, "X"), (Ya, "Y")):
        Ac = _as_matrix(A, name)
        Ac -= Ac.mean(axis=0)
        _check_variance(Ac, name)
        out.append(Ac)
    return out[0], out[1]


def _check_pair(
    X: Any, Y: Any, *, min_rows: int, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Validated, column-centred float64 copies of a paired ``(X, Y)``."""
    return _centred(*_views(X, Y, min_rows=min_rows, what=what))


_CHUNK_ROWS = 4096
"""Rows converted to float64 at a time when streaming feature-space moments."""


class _Moments:
    """Centred second moments of a pair, streamed over row chunks.

    ``xx = XcᵀXc``, ``yy = YcᵀYc``, ``xy = XcᵀYc`` and (``rows=True``) the centred rows'
    squared norms ``d``, ``e``. Two passes (column means, then products of exactly centred
    float64 chunks), so the memory is ``O(p1² + p2² + p1 p2 + chunk · (p1 + p2))`` instead of
    float64 copies of the inputs, and the numbers are those of the full centred products.
    """

    def __init__(self, Xa: np.ndarray, Ya: np.ndarray, *, rows: bool) -> None:
        n, p1 = Xa.shape
        p2 = Ya.shape[1]
        self.n = n
        mx, my = np.zeros(p1), np.zeros(p2)
        for start in range(0, n, _CHUNK_ROWS):
            for A, m, name in ((Xa, mx, "X"), (Ya, my, "Y")):
                block = np.asarray(A[start : start + _CHUNK_ROWS], dtype=np.float64)
                if not np.isfinite(block).all():
                    raise ValueError(f"{name} contains NaN or infinite values")
                m += block.sum(axis=0)
        mx /= n
        my /= n
        self.xx, self.yy, self.xy = np.zeros((p1, p1)), np.zeros((p2, p2)), np.zeros((p1, p2))
        self.d = np.empty(n) if rows else None
        self.e = np.empty(n) if rows else None
        for start in range(0, n, _CHUNK_ROWS):
            xb = np.array(Xa[start : start + _CHUNK_ROWS], dtype=np.float64)
            yb = np.array(Ya[start : start + _CHUNK_ROWS], dtype=np.float64)
            xb -= mx
            yb -= my
            self.xx += xb.T @ xb
            self.yy += yb.T @ yb
            self.xy += xb.T @ yb
            if rows:
                self.d[start : start + len(xb)] = _row_sq_norms(xb)
                self.e[start : start + len(yb)] = _row_sq_norms(yb)
        for C, name in ((self.xx, "X"), (self.yy, "Y")):
            if not np.any(np.diag(C) > 0):
                raise ValueError(
                    f"{name} is constant across examples (no variance after centring): "
                    "its similarity to anything is undefined"
                )


def _check_variance(Ac: np.ndarray, name: str) -> None:
    if not np.any(Ac):
        raise ValueError(
            f"{name} is constant across examples (no variance after centring): "
            "its similarity to anything is undefined"
        )


def _row_sq_norms(A: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", A, A)


def _sample_space(n: int, p1: int, p2: int) -> bool:
    """Whether n × n Gram matrices are cheaper than feature-space products for this shape."""
    return n * (p1 + p2) < p1 * p1 + p2 * p2 + p1 * p2


# --------------------------------------------------------------------------- linear CKA


def _debias(kl: float, d: np.ndarray, e: np.ndarray, n: int) -> float:
    """``n(n−3) · HSIC₁`` for centred data from ``tr(KL)`` and the kernels' diagonals."""
    cross = float(d.sum()) * float(e.sum()) / ((n - 1.0) * (n - 2.0))
    return float(kl - n / (n - 2.0) * float(d @ e) + cross)


def _cka_ratio(hxy: float, hxx: float, hyy: float, what: str) -> float:
    if hxx <= 0.0 or hyy <= 0.0:
        side = "X" if hxx <= 0.0 else "Y"
        raise ValueError(
            f"{what}: the HSIC estimate of {side} with itself is not positive "
            f"({min(hxx, hyy):.3g}); with the debiased estimator this happens only for "
            "tiny n or near-constant representations"
        )
    return float(hxy / math.sqrt(hxx * hyy))


def _linear_hsic_terms(
    Xc: np.ndarray, Yc: np.ndarray, *, debiased: bool, sample_space: bool | None = None
) -> tuple[float, float, float]:
    """(HSIC(X,Y), HSIC(X,X), HSIC(Y,Y)) for centred inputs, each times a common factor."""
    n, p1 = Xc.shape
    p2 = Yc.shape[1]
    if sample_space is None:
        sample_space = _sample_space(n, p1, p2)
    if sample_space:
        K = Xc @ Xc.T
        L = Yc @ Yc.T
        kl, kk, ll = float(np.vdot(K, L)), float(np.vdot(K, K)), float(np.vdot(L, L))
        d, e = np.diag(K).copy(), np.diag(L).copy()
    else:
        mo = _Moments(Xc, Yc, rows=debiased)
        return _linear_hsic_from_moments(mo, debiased=debiased)
    if not debiased:
        return kl, kk, ll
    return _debias(kl, d, e, n), _debias(kk, d, d, n), _debias(ll, e, e, n)


def _linear_hsic_from_moments(mo: _Moments, *, debiased: bool) -> tuple[float, float, float]:
    kl = float(np.vdot(mo.xy, mo.xy))
    kk = float(np.vdot(mo.xx, mo.xx))
    ll = float(np.vdot(mo.yy, mo.yy))
    if not debiased:
        return kl, kk, ll
    d, e, n = mo.d, mo.e, mo.n
    return _debias(kl, d, e, n), _debias(kk, d, d, n), _debias(ll, e, e, n)


def linear_cka(X: Any, Y: Any, debiased: bool = False) -> float:
    """Linear centred kernel alignment between paired representations ``X`` and ``Y``.

    ``‖YcᵀXc‖²_F / (‖XcᵀXc‖_F ‖YcᵀYc‖_F)`` on column-centred inputs, in [0, 1]; with
    ``debiased=True`` the unbiased HSIC estimator (Song et al. 2012) replaces the biased one
    (see the module docstring for the formula), so that independent representations score
    ≈ 0 even when ``n`` is small relative to the number of features (it can then be slightly
    negative). Invariant to orthogonal transforms and isotropic scaling of either side, not to
    general invertible linear maps. Memory: ``p × p`` products accumulated over row chunks for
    ``n ≫ p`` (no float64 copy of the inputs), never ``n × n``.

    Raises ``ValueError`` for mismatched rows, non-2-D or non-finite input, constant input,
    or fewer than 2 rows (4 when debiased).
    """
    Xa, Ya = _views(X, Y, min_rows=4 if debiased else 2, what="linear_cka")
    n, p1, p2 = Xa.shape[0], Xa.shape[1], Ya.shape[1]
    if _sample_space(n, p1, p2):
        Xc, Yc = _centred(Xa, Ya)
        terms = _linear_hsic_terms(Xc, Yc, debiased=debiased, sample_space=True)
    else:
        terms = _linear_hsic_from_moments(_Moments(Xa, Ya, rows=debiased), debiased=debiased)
    return _cka_ratio(*terms, what="linear_cka")


def _hsic1_leave_one_out(K: np.ndarray, L: np.ndarray) -> np.ndarray:
    """``m(m−3)·HSIC₁`` of ``K`` and ``L`` with each row/column ``i`` left out, for all ``i``
    at once (``m = n − 1``), from the zero-diagonal kernels in O(n²).

    With ``K̃`` the kernel without its diagonal, ``HSIC₁ ∝ tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1 / ((m−1)(m−2))
    − 2/(m−2) · 1ᵀK̃L̃1`` (Song et al. 2012); leaving out ``i`` removes row and column ``i``
    from every sum, which row sums ``r`` and the products ``K̃r`` update in closed form.
    """
    n = K.shape[0]
    m = n - 1.0
    Kt = K - np.diag(np.diag(K))
    Lt = L - np.diag(np.diag(L))
    rk, rl = Kt.sum(1), Lt.sum(1)
    v = np.einsum("ij,ij->j", Kt, Lt)  # Σ_a K̃ai L̃ai
    trace = float(np.vdot(Kt, Lt)) - 2.0 * v
    sk, sl = rk.sum() - 2.0 * rk, rl.sum() - 2.0 * rl
    klsum = float(rk @ rl) - Kt @ rl - Lt @ rk + v - rk * rl
    return trace + sk * sl / ((m - 1.0) * (m - 2.0)) - 2.0 / (m - 2.0) * klsum


def debiased_cka_leave_one_out(X: Any, Y: Any) -> np.ndarray:
    """Debiased linear CKA of ``X`` and ``Y`` with each input (row) left out in turn: the
    ``n`` delete-one jackknife values, in O(n²(p₁ + p₂)) instead of ``n`` full computations.

    The unbiased HSIC estimator is invariant to translating either representation, so the
    Gram matrices of the full-sample-centred inputs serve every leave-one-out sample. Used
    for jackknife confidence intervals: unlike bootstrap resamples, a delete-one sample has
    no duplicated rows, which inflate CKA (a percentile bootstrap of linear CKA covered the
    population value in 0–1 of 100 simulated studies; see ``jackknife_interval``).
    """
    Xa, Ya = _views(X, Y, min_rows=6, what="debiased_cka_leave_one_out")
    Xc, Yc = _centred(Xa, Ya)
    K, L = Xc @ Xc.T, Yc @ Yc.T
    hxy = _hsic1_leave_one_out(K, L)
    hxx = _hsic1_leave_one_out(K, K)
    hyy = _hsic1_leave_one_out(L, L)
    if np.any(hxx <= 0) or np.any(hyy <= 0):
        raise ValueError("debiased_cka_leave_one_out: a leave-one-out HSIC of a "
                         "representation with itself is not positive (tiny n or "
                         "near-constant representations)")
    return hxy / np.sqrt(hxx * hyy)


def jackknife_interval(estimate: float, leave_one_out: np.ndarray,
                       level: float = 0.95) -> tuple[float, float]:
    """Normal-approximation delete-one jackknife interval around ``estimate``.

    ``SE² = (n−1)/n · Σ (θ₍ᵢ₎ − θ̄)²`` (Efron & Tibshirani 1993, ch. 11); the interval is
    ``estimate ± z · SE`` with no bias correction: for the (nearly unbiased) debiased CKA the
    jackknife bias estimate is noise. In simulation (tanh features of a shared Gaussian latent,
    100 studies each) this interval covered the population debiased CKA in 94–98 % of studies
    at n = 60–200 for a nominal 95 %.
    """
    from scipy.stats import norm

    theta = np.asarray(leave_one_out, dtype=np.float64)
    n = theta.size
    se = math.sqrt((n - 1.0) / n * float(np.sum((theta - theta.mean()) ** 2)))
    z = float(norm.ppf(0.5 + level / 2.0))
    return float(estimate - z * se), float(estimate + z * se)


def similarity(measure: str, X: Any, Y: Any) -> float:
    """One named similarity of paired representations, higher = more alike: ``linear_cka``,
    ``debiased_cka``, ``svcca``, ``pwcca`` (the mean of both weighting orders, as PWCCA is
    not symmetric) or ``procrustes`` (``1 − d²/2``, the nuclear norm of the normalised
    cross-covariance, in [0, 1])."""
    if measure == "linear_cka":
        return linear_cka(X, Y)
    if measure == "debiased_cka":
        return linear_cka(X, Y, debiased=True)
    if measure == "svcca":
        return svcca(X, Y)
    if measure == "pwcca":
        return 0.5 * (pwcca(X, Y) + pwcca(Y, X))
    if measure == "procrustes":
        return 1.0 - 0.5 * procrustes_distance(X, Y, squared=True)
    raise ValueError(f"unknown measure {measure!r}")


# --------------------------------------------------------------------------- RBF CKA


def _median_full_sq_distances(D: np.ndarray) -> float:
    """``np.median(D)`` for a symmetric, zero-diagonal, non-negative ``D``, in half the memory.

    The full matrix's sorted entries are the ``n`` zeros of the diagonal followed by each
    upper-triangle value twice, so its median is read off a partition of the upper triangle.
    """
    n = D.shape[0]
    upper = np.empty(n * (n - 1) // 2, dtype=np.float64)
    pos = 0
    for i in range(n - 1):
        m = n - 1 - i
        upper[pos : pos + m] = D[i, i + 1 :]
        pos += m
    total = n * n
    ks = [total // 2] if total % 2 else [total // 2 - 1, total // 2]
    # full-sorted index k ≥ n maps to upper-sorted index (k − n) // 2; k < n is a zero
    idx = sorted({(k - n) // 2 for k in ks if k >= n})
    if idx:
        upper.partition(idx)
    vals = [0.0 if k < n else float(upper[(k - n) // 2]) for k in ks]
    return float(sum(vals) / len(vals))


def _sq_distances(Xc: np.ndarray) -> np.ndarray:
    """The n × n matrix of squared Euclidean distances between rows, built in place."""
    D = Xc @ Xc.T
    sq = np.diag(D).copy()
    D *= -2.0
    D += sq[:, None]
    D += sq[None, :]
    np.maximum(D, 0.0, out=D)
    np.fill_diagonal(D, 0.0)
    return D


def _check_threshold(threshold: float) -> float:
    t = float(threshold)
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"threshold must be a positive number, got {threshold!r}")
    return t


def _rbf_gram(Xc: np.ndarray, threshold: float, name: str) -> np.ndarray:
    D = _sq_distances(Xc)
    med = _median_full_sq_distances(D)
    if med <= 0.0:
        raise ValueError(
            f"{name}: the median squared distance over all n² pairs is 0 (more than half "
            "of the pairs coincide), so the RBF bandwidth is 0"
        )
    D *= -1.0 / (2.0 * threshold * threshold * med)
    np.exp(D, out=D)
    return D


def _center_gram_inplace(K: np.ndarray, *, unbiased: bool) -> None:
    """Kornblith et al.'s ``center_gram``: ``HKH``, or the U-centring for the unbiased HSIC."""
    n = K.shape[0]
    if unbiased:
        np.fill_diagonal(K, 0.0)
        means = K.sum(axis=0) / (n - 2.0)
        means -= means.sum() / (2.0 * (n - 1.0))
    else:
        means = K.mean(axis=0)
        means -= means.mean() / 2.0
    K -= means[:, None]
    K -= means[None, :]
    if unbiased:
        np.fill_diagonal(K, 0.0)


def rbf_bandwidth(X: Any, threshold: float = 1.0) -> float:
    """The Gaussian-kernel σ that :func:`rbf_cka` uses for ``X``.

    ``σ = threshold · sqrt(median of the n × n squared-distance matrix)``, the median taken
    over all ``n²`` entries *including the zero diagonal* (Kornblith et al. 2019's reference
    ``gram_rbf``); the kernel is ``exp(−‖xᵢ − xⱼ‖² / (2σ²))``.
    """
    t = _check_threshold(threshold)
    Xc = _as_matrix(X, "X")
    Xc -= Xc.mean(axis=0)
    med = _median_full_sq_distances(_sq_distances(Xc))
    return t * math.sqrt(med)


def rbf_cka(
    X: Any,
    Y: Any,
    threshold: float = 1.0,
    debiased: bool = False,
    *,
    max_rows: int = DEFAULT_RBF_MAX_ROWS,
) -> float:
    """CKA with Gaussian (RBF) kernels, bandwidth as in Kornblith et al. 2019's code.

    ``K_ij = exp(−‖xᵢ − xⱼ‖² / (2σ_X²))`` with ``σ_X² = threshold² ·`` the median of all
    ``n²`` entries of X's squared-distance matrix (zero diagonal included; see the module
    docstring and :func:`rbf_bandwidth`), likewise for Y; then
    ``⟨K', L'⟩ / (‖K'‖ ‖L'‖)`` with ``K' = HKH`` (or the U-centred kernel when
    ``debiased=True``). Smaller ``threshold`` makes the kernel more local.

    Builds ``n × n`` matrices (peak ≈ 2.5 · 8n² bytes); refuses ``n > max_rows`` with a
    ``ValueError`` — raise ``max_rows`` deliberately, or use :func:`linear_cka` /
    :class:`MinibatchCKA`, which never need ``n × n`` memory.
    """
    t = _check_threshold(threshold)
    n_rows = _n_rows_hint(X)
    if n_rows is not None and n_rows > max_rows:
        raise _too_many_rows(n_rows, max_rows)
    Xc, Yc = _check_pair(X, Y, min_rows=4 if debiased else 2, what="rbf_cka")
    n = Xc.shape[0]
    if n > max_rows:
        raise _too_many_rows(n, max_rows)
    K = _rbf_gram(Xc, t, "X")
    del Xc
    _center_gram_inplace(K, unbiased=debiased)
    L = _rbf_gram(Yc, t, "Y")
    del Yc
    _center_gram_inplace(L, unbiased=debiased)
    kl = float(np.vdot(K, L))
    kk = float(np.vdot(K, K))
    ll = float(np.vdot(L, L))
    return _cka_ratio(kl, kk, ll, what="rbf_cka")


def _n_rows_hint(X: Any) -> int | None:
    shape = getattr(X, "shape", None)
    if shape is not None and len(shape) >= 1:
        return int(shape[0])
    return None


def _too_many_rows(n: int, max_rows: int) -> ValueError:
    gb = 2.5 * 8.0 * n * n / 1e9
    return ValueError(
        f"rbf_cka builds n × n kernel matrices: n = {n:,} rows needs about {gb:,.1f} GB, "
        f"above max_rows = {max_rows:,}. Subsample the rows, pass a larger max_rows if the "
        "memory is there, or use linear_cka / MinibatchCKA (feature-space, no n × n matrix)"
    )


# --------------------------------------------------------------------------- CCA family


def _n_kept(var: np.ndarray, keep: float | int, p: int, n: int, name: str) -> int:
    """How many leading directions to keep, given their variances in decreasing order."""
    top = float(var[0]) if var.size else 0.0
    rank = int(np.count_nonzero(var > _NULL_RTOL * top)) if top > 0 else 0
    if rank == 0:
        raise ValueError(f"{name} has no variance after centring")
    if isinstance(keep, numbers.Integral):
        k = int(keep)
        return min(k, rank)
    frac = np.cumsum(var[:rank]) / float(np.sum(var[:rank]))
    return min(int(np.searchsorted(frac, float(keep), side="left")) + 1, rank)


def _check_keep(keep: Any, p: int, n: int, name: str) -> float | int:
    if isinstance(keep, bool) or not isinstance(keep, numbers.Real):
        raise ValueError(f"keep must be a variance fraction in (0, 1] or an int, got {keep!r}")
    if isinstance(keep, numbers.Integral):
        limit = min(p, n - 1)
        if not 1 <= int(keep) <= limit:
            raise ValueError(
                f"keep = {int(keep)} directions is impossible for {name} with {p} features "
                f"and {n} rows (1 ≤ keep ≤ min(features, rows − 1) = {limit})"
            )
        return int(keep)
    k = float(keep)
    if not 0.0 < k <= 1.0:
        raise ValueError(f"keep as a variance fraction must be in (0, 1], got {keep!r}")
    return k


def _cca(
    Xa: np.ndarray,
    Ya: np.ndarray,
    keep_x: float | int,
    keep_y: float | int,
    *,
    weights: bool,
    sample_space: bool | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Canonical correlations (decreasing) of the kept subspaces, and PWCCA's weights."""
    import scipy.linalg as sla

    n, p1 = Xa.shape
    p2 = Ya.shape[1]
    if sample_space is None:
        # thin SVDs of the n × p inputs cost O(n p min(n, p)), the feature path's
        # eigen-decompositions O(p³) after O(n p²) products: measured crossover n ≈ (p1+p2)/2
        sample_space = 2 * n < p1 + p2
    if sample_space:
        Xc, Yc = _centred(Xa, Ya)
        Ux, sx, _ = sla.svd(Xc, full_matrices=False, lapack_driver="gesdd")
        Uy, sy, _ = sla.svd(Yc, full_matrices=False, lapack_driver="gesdd")
        kx = _n_kept(sx * sx, keep_x, p1, n, "X")
        ky = _n_kept(sy * sy, keep_y, p2, n, "Y")
        Qx, Qy = Ux[:, :kx], Uy[:, :ky]
        A, rho, Bt = sla.svd(Qx.T @ Qy, full_matrices=False)
        alpha = None
        if weights:
            H, Z = (Qx @ A, Xc) if kx <= ky else (Qy @ Bt.T, Yc)
            alpha = np.abs(H.T @ Z).sum(axis=1)
    else:
        mo = _Moments(Xa, Ya, rows=False)
        Cxx, Cyy, Cxy = mo.xx, mo.yy, mo.xy
        lx, Vx = sla.eigh(Cxx)
        ly, Vy = sla.eigh(Cyy)
        lx, Vx = np.clip(lx[::-1], 0.0, None), Vx[:, ::-1]
        ly, Vy = np.clip(ly[::-1], 0.0, None), Vy[:, ::-1]
        kx = _n_kept(lx, keep_x, p1, n, "X")
        ky = _n_kept(ly, keep_y, p2, n, "Y")
        Wx = Vx[:, :kx] / np.sqrt(lx[:kx])
        Wy = Vy[:, :ky] / np.sqrt(ly[:ky])
        A, rho, Bt = sla.svd(Wx.T @ Cxy @ Wy, full_matrices=False)
        alpha = None
        if weights:
            # hᵢ = Zc wᵢ is a unit-norm canonical variate, so hᵢᵀZc = wᵢᵀ (ZcᵀZc)
            W, C = (Wx @ A, Cxx) if kx <= ky else (Wy @ Bt.T, Cyy)
            alpha = np.abs(W.T @ C).sum(axis=1)
    return np.clip(rho, 0.0, 1.0), alpha


def svcca(X: Any, Y: Any, keep: float | int = 0.99) -> float:
    """SVCCA (Raghu et al. 2017): mean canonical correlation of the leading principal subspaces.

    Each side keeps its leading principal directions — ``keep`` a float in (0, 1]: the fewest
    explaining that fraction of the variance; an int: that many — then CCA of the two kept
    subspaces; returns the mean of the ``min(kx, ky)`` canonical correlations, in [0, 1].
    Different kept counts on the two sides are fine. Invariant to invertible linear maps of
    either side when nothing is truncated (``keep=1.0``); with truncation, to orthogonal maps
    and isotropic scaling (the principal directions move with them). See the module docstring
    for the numerics (no covariance inverses, so no NaN from rank deficiency).
    """
    Xa, Ya = _views(X, Y, min_rows=2, what="svcca")
    n = Xa.shape[0]
    kx = _check_keep(keep, Xa.shape[1], n, "X")
    ky = _check_keep(keep, Ya.shape[1], n, "Y")
    rho, _ = _cca(Xa, Ya, kx, ky, weights=False)
    return float(np.mean(rho))


def pwcca(X: Any, Y: Any, keep: float | int = 1.0) -> float:
    """Projection-weighted CCA (Morcos et al. 2018): ``Σ αᵢ ρᵢ / Σ αᵢ``.

    ``ρᵢ`` are the canonical correlations of the (by default unreduced, ``keep=1.0``)
    centred representations; ``αᵢ = Σⱼ |⟨hᵢ, zⱼ⟩|`` weights each by how much of the
    weighting side's neurons ``zⱼ`` (centred columns) its unit-norm canonical variate ``hᵢ``
    accounts for. The weighting side is the one with fewer kept directions (X on a tie), as
    in google/svcca's ``pwcca.py``, so the measure is not symmetric in general. In [0, 1].

    Tied canonical correlations leave their canonical variates defined only up to a rotation,
    and the weights with them; the common case is ``n ≤ p1 + p2`` without reduction, where
    the two subspaces intersect and several correlations are exactly 1 (CCA over-fits: use
    more rows than the two widths together, or a ``keep`` below 1).
    """
    Xa, Ya = _views(X, Y, min_rows=2, what="pwcca")
    n = Xa.shape[0]
    kx = _check_keep(keep, Xa.shape[1], n, "X")
    ky = _check_keep(keep, Ya.shape[1], n, "Y")
    rho, alpha = _cca(Xa, Ya, kx, ky, weights=True)
    if alpha is None:  # _cca returns weights whenever weights=True
        raise RuntimeError("pwcca: the CCA returned no projection weights")
    total = float(alpha.sum())
    if total <= 0.0:  # cannot happen for non-constant input; guard against 0/0 anyway
        return float(np.mean(rho))
    return float(np.dot(alpha, rho) / total)


# --------------------------------------------------------------------------- Procrustes


def procrustes_distance(X: Any, Y: Any, squared: bool = False) -> float:
    """Orthogonal Procrustes distance between centred, unit-Frobenius-norm representations.

    ``d² = 2 − 2 ‖Xᵀ Y‖_*`` after ``X ← Xc / ‖Xc‖_F``, ``Y ← Yc / ‖Yc‖_F`` (the nuclear norm
    ``‖·‖_*`` is the sum of singular values); this is ``min_Q ‖X − YQ‖²_F`` over orthogonal
    ``Q``. Returns ``d`` in [0, √2] (0: identical up to rotation, translation and scale), or
    ``d²`` with ``squared=True``. A distance, not a similarity: larger means farther apart.
    """
    import scipy.linalg as sla

    Xa, Ya = _views(X, Y, min_rows=2, what="procrustes_distance")
    mo = _Moments(Xa, Ya, rows=False)
    nx = math.sqrt(float(np.trace(mo.xx)))
    ny = math.sqrt(float(np.trace(mo.yy)))
    nuclear = float(sla.svdvals(mo.xy).sum()) / (nx * ny)
    d2 = max(2.0 - 2.0 * min(nuclear, 1.0), 0.0)
    return d2 if squared else math.sqrt(d2)


# --------------------------------------------------------------------------- minibatch CKA


class MinibatchCKA:
    """Linear CKA accumulated over batches of paired rows, in feature-space memory.

    Feed batches with :meth:`update` (``X_b: [m, p1]``, ``Y_b: [m, p2]``, the same inputs
    row for row; batch sizes may differ) and read :meth:`value`. ``mode="exact"``
    (default) keeps the full-data sufficient statistics — ``n``, column sums, ``ZxᵀZx``,
    ``ZyᵀZy``, ``ZxᵀZy`` and the row-norm moments ``Σaᵢbᵢ``, ``Σaᵢ zᵢ`` … of the rows shifted
    by the first batch's means — so :meth:`value` equals :func:`linear_cka` on all rows at
    once (biased or debiased) up to rounding, whatever the batching. ``mode="batch_mean"``
    is Nguyen et al. 2021's minibatch estimator: per-batch HSIC (unbiased ``HSIC₁`` when
    debiased, else ``HSIC₀ = tr(KcLc)/(m−1)²``) averaged over batches; every batch then needs
    ``m ≥ 4`` rows when debiased. Memory: ``O(p1² + p2² + p1 p2)`` in both modes.
    """

    def __init__(self, *, debiased: bool = True, mode: str = "exact") -> None:
        if mode not in ("exact", "batch_mean"):
            raise ValueError(f"mode must be 'exact' or 'batch_mean', got {mode!r}")
        self.debiased = bool(debiased)
        self.mode = mode
        self.n = 0
        self._p: tuple[int, int] | None = None
        self._s: dict[str, Any] = {}
        self._batches = 0

    def update(self, X: Any, Y: Any) -> MinibatchCKA:
        """Add one batch of paired rows; returns ``self``."""
        Xb = _as_matrix(X, "X")
        Yb = _as_matrix(Y, "Y")
        if Xb.shape[0] != Yb.shape[0]:
            raise ValueError(
                f"X and Y batches must hold the same inputs row for row: {Xb.shape[0]} vs "
                f"{Yb.shape[0]} rows"
            )
        p = (Xb.shape[1], Yb.shape[1])
        if self._p is None:
            self._p = p
        elif p != self._p:
            raise ValueError(f"feature counts changed between batches: {self._p} then {p}")
        m = Xb.shape[0]
        if m == 0:
            return self
        if self.mode == "batch_mean":
            self._update_batch_mean(Xb, Yb)
        else:
            self._update_exact(Xb, Yb)
        self.n += m
        self._batches += 1
        return self

    def _update_batch_mean(self, Xb: np.ndarray, Yb: np.ndarray) -> None:
        m = Xb.shape[0]
        if m < (4 if self.debiased else 2):
            raise ValueError(
                f"batch_mean mode needs at least {4 if self.debiased else 2} rows per batch, "
                f"got {m}"
            )
        Xb -= Xb.mean(axis=0)
        Yb -= Yb.mean(axis=0)
        hxy, hxx, hyy = _linear_hsic_terms(Xb, Yb, debiased=self.debiased)
        scale = 1.0 / (m * (m - 3.0)) if self.debiased else 1.0 / ((m - 1.0) ** 2)
        s = self._s
        for key, val in (("hxy", hxy), ("hxx", hxx), ("hyy", hyy)):
            s[key] = s.get(key, 0.0) + val * scale

    def _update_exact(self, Xb: np.ndarray, Yb: np.ndarray) -> None:
        s = self._s
        if not s:
            s["cx"], s["cy"] = Xb.mean(axis=0), Yb.mean(axis=0)
            p1, p2 = Xb.shape[1], Yb.shape[1]
            s.update(
                sx=np.zeros(p1), sy=np.zeros(p2),
                xx=np.zeros((p1, p1)), yy=np.zeros((p2, p2)), xy=np.zeros((p1, p2)),
                a=0.0, b=0.0, aa=0.0, bb=0.0, ab=0.0,
                a_x=np.zeros(p1), b_y=np.zeros(p2), a_y=np.zeros(p2), b_x=np.zeros(p1),
            )
        Xb -= s["cx"]
        Yb -= s["cy"]
        a = _row_sq_norms(Xb)
        b = _row_sq_norms(Yb)
        s["sx"] += Xb.sum(axis=0)
        s["sy"] += Yb.sum(axis=0)
        s["xx"] += Xb.T @ Xb
        s["yy"] += Yb.T @ Yb
        s["xy"] += Xb.T @ Yb
        s["a"] += float(a.sum())
        s["b"] += float(b.sum())
        s["aa"] += float(a @ a)
        s["bb"] += float(b @ b)
        s["ab"] += float(a @ b)
        s["a_x"] += a @ Xb
        s["b_y"] += b @ Yb
        s["a_y"] += a @ Yb
        s["b_x"] += b @ Xb

    def value(self) -> float:
        """The CKA of all rows fed so far (see the class docstring for the two modes)."""
        if self._batches == 0:
            raise ValueError("MinibatchCKA.value() called before any update()")
        s = self._s
        if self.mode == "batch_mean":
            return _cka_ratio(s["hxy"], s["hxx"], s["hyy"], what="MinibatchCKA")
        n = self.n
        if n < (4 if self.debiased else 2):
            raise ValueError(
                f"MinibatchCKA needs at least {4 if self.debiased else 2} rows in all, got {n}"
            )
        mx, my = s["sx"] / n, s["sy"] / n
        # centred cross-products: ZcᵀWc = ZᵀW − n m_z m_wᵀ
        cxy = s["xy"] - n * np.outer(mx, my)
        cxx = s["xx"] - n * np.outer(mx, mx)
        cyy = s["yy"] - n * np.outer(my, my)
        if not np.any(np.diag(cxx) > 0) or not np.any(np.diag(cyy) > 0):
            raise ValueError("MinibatchCKA: a representation is constant across all rows")
        kl, kk, ll = float(np.vdot(cxy, cxy)), float(np.vdot(cxx, cxx)), float(np.vdot(cyy, cyy))
        if not self.debiased:
            return _cka_ratio(kl, kk, ll, what="MinibatchCKA")
        cu, cv = float(mx @ mx), float(my @ my)
        sum_d = s["a"] - n * cu  # Σ‖xᵢ − m‖²
        sum_e = s["b"] - n * cv

        def dot_de(ab, a_v, b_u, suv, mu, mv, sa, sb, cu_, cv_):
            # Σᵢ ‖uᵢ − mu‖² ‖vᵢ − mv‖² from uncentred moments (see the module docstring)
            return (
                ab - 2.0 * float(mv @ a_v) - 2.0 * float(mu @ b_u)
                + 4.0 * float(mu @ suv @ mv) + cv_ * sa + cu_ * sb - 3.0 * n * cu_ * cv_
            )

        de = dot_de(s["ab"], s["a_y"], s["b_x"], s["xy"], mx, my, s["a"], s["b"], cu, cv)
        dd = dot_de(s["aa"], s["a_x"], s["a_x"], s["xx"], mx, mx, s["a"], s["a"], cu, cu)
        ee = dot_de(s["bb"], s["b_y"], s["b_y"], s["yy"], my, my, s["b"], s["b"], cv, cv)
        c = (n - 1.0) * (n - 2.0)
        r = n / (n - 2.0)
        hxy = kl - r * de + sum_d * sum_e / c
        hxx = kk - r * dd + sum_d * sum_d / c
        hyy = ll - r * ee + sum_e * sum_e / c
        return _cka_ratio(hxy, hxx, hyy, what="MinibatchCKA")


def minibatch_linear_cka(
    batches: Iterable[tuple[Any, Any]], *, debiased: bool = True, mode: str = "exact"
) -> float:
    """Linear CKA over an iterable of ``(X_b, Y_b)`` batches; see :class:`MinibatchCKA`."""
    acc = MinibatchCKA(debiased=debiased, mode=mode)
    for Xb, Yb in batches:
        acc.update(Xb, Yb)
    return acc.value()
