r"""α̂: the robust (trimmed) Kolmogorov–Smirnov distance of Banerjee et al. (arXiv 2406.08307).

Question answered: *is a candidate model meaningfully different from models trained the same
way?* Every model is summarised by its **soft outputs** ``m(x)`` (a logit, or a logit gap) on
one fixed test set. The **null** is a reference ensemble of ``M`` models trained with the same
recipe and different seeds; its pooled outputs (``m = M × n_test`` values) have empirical CDF
``F̂0``. The **candidate** has ``n`` outputs with empirical CDF ``F``. α̂ is the smallest
fraction of the candidate's outputs that must be trimmed away before a KS test no longer tells
it apart from the reference: 0 means "indistinguishable", 0.3 means "30 % of its behaviour
differs", 1 means "no trimming below 100 % suffices".

Definitions (implemented exactly)
---------------------------------
*α-trimming.* For ``α ∈ [0, 1)`` an α-trimming of ``F`` is any distribution ``F̃`` with
``dF̃/dF ≤ 1/(1−α)``. For the empirical ``F`` this means sample weights
``w_i ∈ [0, u]``, ``u = 1/(n(1−α))``, ``Σ w_i = 1``; at a value shared by ``k`` tied candidate
outputs the pooled mass may be anything in ``[0, k·u]``. ``α = 0`` leaves only ``F̃ = F``.

*Trimmed distance.* ``d(α) = min_{F̃} sup_x |F̂0(x) − F̃(x)|`` over α-trimmings ``F̃``.
``d(0)`` is the two-sample KS statistic ``max|F̂0 − F|``, computed as the correctly rounded
rational ``h/lcm(n, m)``: bit for bit ``scipy.stats.ks_2samp(candidate, reference).statistic``
in scipy's exact mode (``max(n, m) ≤ 10,000``), within an ulp of its float difference above.
``d`` is non-increasing in α.

*α̂.* With ``c = c(level)`` a critical value for the scaled statistic
``√(nm/(n+m))·D`` and ``τ = c / √(nm/(n+m))``::

    α̂ = min { α ∈ [0, 1) : d(α) ≤ τ }      (= 1.0, "not attainable", if the set is empty)

Three critical values are offered (``method=``), all on the ``√(nm/(n+m))·D`` scale:

* ``"asymptotic"`` — ``scipy.stats.kstwobign.ppf(1 − level)``, the Kolmogorov quantile. It
  treats the ``m`` pooled outputs and the candidate as independent samples, which they are
  not: every model scores the *same* test points (making it conservative when models agree
  point by point) and seeds shift whole output distributions (making it reject fresh seeds
  of the same recipe when ``n_test`` is large).
* ``"bootstrap"`` — a seed × test-point bootstrap of the ``M × n_test`` reference (a fresh
  pseudo-candidate seed vs. the other seeds, on resampled shared test points); it keeps both
  effects but counts the seed×point noise twice, so it is conservative
  (:func:`bootstrap_critical_value` gives the design and its calibration).
* ``"leave-one-out"`` — the rank of the candidate among leave-one-seed-out statistics
  (conformal); exact under exchangeable seeds, but needs ``M ≥ ⌈1/level⌉ − 1``
  (:func:`leave_one_out_critical_value`).

Closed form for d(α)
--------------------
Both CDFs are right-continuous step functions whose jumps lie on the pooled sorted grid of
distinct values ``z_1 < … < z_K``, so the supremum is a maximum over the values at grid points
(the left limit at ``z_k`` is the value at ``z_{k−1}``; below ``z_1`` both CDFs are 0). Write
``a_k = F̂0(z_k)``, ``F_k = F(z_k)``, ``t = 1/(1−α) ≥ 1`` and ``G_k = F̃(z_k)``. A trimming is a
path ``0 = G_0 ≤ G_1 ≤ … ≤ G_K = 1`` with increments ``G_k − G_{k−1} ∈ [0, t(F_k − F_{k−1})]``;
distance ``≤ d`` means ``|G_k − a_k| ≤ d``. The set of values reachable at step ``k`` is an
interval ``[L_k, H_k]`` (forward recursion ``L_k = max(L_{k−1}, a_k − d)``,
``H_k = min(H_{k−1} + t ΔF_k, a_k + d)``); because ``a`` is non-decreasing, unrolling it shows
that a trimming within ``d`` exists iff ``d ≥ 0`` and

* (left tail)   ``a_k − t F_k ≤ d`` for every k,
* (right tail)  ``(1 − a_k) − t(1 − F_k) ≤ d`` for every k,
* (gaps)        ``(a_k − a_j) − t(F_k − F_j) ≤ 2d`` for every ``j < k``.

Hence, **exactly**::

    d(α) = max(0, D1(t), D2(t)/2, D3(t)),  D1 = max_k (a_k − tF_k),
    D3 = max_k ((1−a_k) − t(1−F_k)),       D2 = max_k [h_k − min_{j≤k} h_j],  h = a − tF,

computed in O(K) after sorting (a running minimum gives D2). The tail terms say the trimmed
candidate can carry at most ``t·F`` mass below any point (``t(1−F)`` above it); the gap term
says that over any interval it can rise by at most ``t`` times the candidate mass there, while
the reference rises by ``a_k − a_j``, and the error can swing from ``−d`` to ``+d``. At α = 0,
``D2/2 ≤ max(D1, D3)`` so ``d(0) = max|a − F|``, the KS statistic.

Edge cases. ``d`` is a maximum of affine functions of ``t`` with non-positive slopes: convex,
piecewise linear and non-increasing in ``t`` (so non-increasing, continuous in α). As α → 1 it
does **not** in general go to 0; its limit is::

    d(1⁻) = max( F̂0-mass strictly below min(candidate),
                 F̂0-mass strictly above max(candidate),
                 ½ · max F̂0-mass strictly between two consecutive distinct candidate values )

because trimming can only *re-weight* the candidate's atoms, never move them. ``d(1⁻) = 0``
only if every reference value coincides with a candidate value (e.g. discrete outputs whose
support the candidate covers); with continuous outputs ``d(1⁻) > 0`` and, if ``d(1⁻) > τ``, no
α < 1 makes the test accept: α̂ is then reported as ``1.0`` with ``attainable=False``. A
candidate with one distinct value cannot be re-weighted at all (``d`` is constant). ``d(α) = 0``
can occur at α < 1 for discrete outputs.

Exact α̂
--------
``d(t) ≤ τ`` iff every affine piece is ``≤ τ`` (pieces of D2 against ``2τ``), so the feasible
``t`` form a ray ``[t*, ∞)`` and ``t* = max(1, max_pieces (p − sτ)/q)`` over pieces
``(p − tq)/s`` with ``q > 0`` (pieces with ``q = 0`` are the ``d(1⁻)`` terms and only decide
attainability). That maximum over O(K²) gap pieces is found by Newton's method on the convex
piecewise-linear ``d(t) − τ`` (Dinkelbach's algorithm): from ``t = 1``, take the piece that is
active at the current ``t``, jump to where *that piece* equals ``τ``. A supporting piece never
overshoots ``t*``, each step strictly increases ``t`` and activates a new piece, so the
iteration ends after finitely many O(K) steps (a handful in practice) at the exact root
``t* = (p − sτ)/q`` of the binding piece, with ``p, q`` computed from integer counts.
``α̂ = (t* − 1)/t*``, then nudged up by a few ulps if needed so that both
``d(α̂) ≤ τ`` and ``√(nm/(n+m))·d(α̂) ≤ c`` hold in floating point (the reported
α̂ always accepts; ``d`` strictly decreases through α̂ because the binding piece has
``q > 0``, so any visibly smaller α rejects). A bisection fallback (to
1e-13 in α) exists for pathological float stalls and is not used in practice.

Optimal trimming. The feasible paths at ``d = d(α)`` form a lattice; the lowest one is
``G^lo_k = max(a_k − d, S_k + max_{i≥k}(L_i − S_i))`` and the highest is
``G^hi_k = min(1, H_k)`` (``S_k = tF_k``). :func:`optimal_trimming` returns their midpoint
(also optimal, by convexity): a smooth-looking trimmed CDF for plots, and per-output weights.

Cost: sorting (``O((n+m) log(n+m))``) plus O(n+m) per Newton step; 10,000 candidate outputs
against 45 × 10,000 reference outputs takes ~0.1 s (``benchmarks/bench_alpha_hat.py``).

Precision: exact in real arithmetic; in floating point the distance carries an absolute error
of about ``t · 1e-16`` (``t = 1/(1−α)``), i.e. ≤ 1e-13 for α ≤ 0.999.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import stats

__all__ = [
    "AlphaHatResult",
    "TrimmedFit",
    "alpha_hat",
    "asymptotic_critical_value",
    "bootstrap_critical_value",
    "leave_one_out_critical_value",
    "optimal_trimming",
    "trimmed_ks_curve",
    "trimmed_ks_distance",
]

Method = Literal["asymptotic", "bootstrap", "leave-one-out"]
_MAX_NEWTON = 10_000
_MAX_NUDGE = 64


# --------------------------------------------------------------------------- validation


def _as_finite_array(x: Any, name: str, *, ndims: tuple[int, ...]) -> np.ndarray:
    """Convert ``x`` to a float64 array, checking dimensionality, emptiness and finiteness."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an array of real numbers ({exc})") from exc
    if arr.ndim not in ndims:
        want = " or ".join(f"{d}-D" for d in ndims)
        raise ValueError(f"{name} must be {want}, got an array of shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty; need at least one output")
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")
    return arr


def _check_alpha(alpha: float) -> float:
    a = float(alpha)
    if not (0.0 <= a < 1.0):
        raise ValueError(f"alpha must lie in [0, 1), got {alpha!r}")
    return a


def _check_level(level: float) -> float:
    lv = float(level)
    if not (0.0 < lv < 1.0):
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    return lv


def _scale(n: int, m: int) -> float:
    """The KS scaling √(nm/(n+m))."""
    return math.sqrt(n * m / (n + m))


# --------------------------------------------------------------------------- core


@dataclass(frozen=True)
class _Prepared:
    """Candidate and pooled reference on their common sorted grid of distinct values."""

    candidate: np.ndarray  # original order, 1-D
    grid: np.ndarray  # distinct pooled values z_1 < ... < z_K
    C: np.ndarray  # int64, #candidate <= z_k
    A: np.ndarray  # int64, #reference <= z_k
    n: int
    m: int
    F: np.ndarray  # C / n
    a: np.ndarray  # A / m
    rF: np.ndarray  # (n − C) / n, exact upper-tail mass of the candidate
    ra: np.ndarray  # (m − A) / m
    n_models: int | None
    n_test: int | None


def _prepare(candidate: Any, reference: Any) -> _Prepared:
    cand = _as_finite_array(candidate, "candidate", ndims=(1,))
    ref = _as_finite_array(reference, "reference", ndims=(1, 2))
    n_models, n_test = (ref.shape[0], ref.shape[1]) if ref.ndim == 2 else (None, None)
    n, m = cand.size, ref.size
    # merge the two sorted samples (a stable sort of two sorted runs is a linear merge)
    merged = np.concatenate([np.sort(cand), np.sort(ref, axis=None)])
    order = np.argsort(merged, kind="stable")
    vals = merged[order]
    ends = np.flatnonzero(np.r_[vals[1:] != vals[:-1], True])  # last index of each tie run
    C = np.cumsum(order < n)[ends].astype(np.int64)
    A = ends.astype(np.int64) + 1 - C
    return _Prepared(
        cand, vals[ends], C, A, n, m, C / n, A / m, (n - C) / n, (m - A) / m, n_models, n_test
    )


def _ks_statistic(p: _Prepared) -> float:
    """max_k |A_k/m − C_k/n|, correctly rounded from integers (scipy's exact-mode value)."""
    lcm = p.n // math.gcd(p.n, p.m) * p.m
    if lcm < 2**62:
        h = int(np.max(np.abs(p.A * (lcm // p.m) - p.C * (lcm // p.n))))
        return h / lcm
    return float(np.max(np.abs(p.a - p.F)))  # pragma: no cover - astronomically large n·m


class _Workspace:
    """Scratch buffers for evaluating the three families of affine pieces at one ``t``."""

    def __init__(self, p: _Prepared) -> None:
        self.h = np.empty_like(p.a)  # left tail / gap base: a − tF
        self.r = np.empty_like(p.a)  # right tail: (1 − a) − t(1 − F)
        self.g = np.empty_like(p.a)  # gap: h_k − min(0, min_{j≤k} h_j)

    def fill(self, p: _Prepared, t: float) -> None:
        np.multiply(p.F, -t, out=self.h)
        self.h += p.a
        np.multiply(p.rF, -t, out=self.r)
        self.r += p.ra
        np.minimum.accumulate(self.h, out=self.g)
        np.minimum(self.g, 0.0, out=self.g)  # j = 0 is the origin (A, C) = (0, 0)
        np.subtract(self.h, self.g, out=self.g)


def _distance_t(p: _Prepared, t: float, ws: _Workspace | None = None) -> float:
    """d at t = 1/(1−α) via the closed form (see module docstring)."""
    if t == 1.0:  # only F itself: the KS statistic
        return _ks_statistic(p)
    ws = ws or _Workspace(p)
    ws.fill(p, t)
    return max(0.0, float(ws.h.max()), 0.5 * float(ws.g.max()), float(ws.r.max()))


def _active_piece(p: _Prepared, t: float, ws: _Workspace) -> tuple[float, float, float, float]:
    """Value of d at t and the active affine piece (p0, q, s): value = (p0 − t q)/s."""
    ws.fill(p, t)
    k1, k3, k2 = int(np.argmax(ws.h)), int(np.argmax(ws.r)), int(np.argmax(ws.g))
    j = int(np.argmin(ws.h[: k2 + 1]))
    aj, cj = (int(p.A[j]), int(p.C[j])) if ws.h[j] < 0.0 else (0, 0)
    cands = [
        (float(ws.h[k1]), int(p.A[k1]) / p.m, int(p.C[k1]) / p.n, 1.0),
        (float(ws.r[k3]), (p.m - int(p.A[k3])) / p.m, (p.n - int(p.C[k3])) / p.n, 1.0),
        (0.5 * float(ws.g[k2]), (int(p.A[k2]) - aj) / p.m, (int(p.C[k2]) - cj) / p.n, 2.0),
    ]
    # the largest value; among (near-)ties prefer the flattest piece (largest Newton step)
    top = max(c[0] for c in cands)
    close = [c for c in cands if c[0] >= top - 1e-15]
    _, p0, q, s = min(close, key=lambda c: c[2] / c[3])
    return max(top, 0.0), p0, q, s


def _limit_distance(p: _Prepared) -> float:
    """d(1⁻) = lim_{α→1} d(α), from integer counts (see module docstring)."""
    C, A, K = p.C, p.A, p.C.size
    kz = int(np.searchsorted(C, 0, side="right"))  # grid points below min(candidate)
    below = int(A[kz - 1]) if kz > 0 else 0
    kn = int(np.searchsorted(C, p.n, side="left"))  # first grid point with all candidates
    above = p.m - int(A[kn])
    starts = np.flatnonzero(np.r_[True, C[1:] != C[:-1]])
    ends = np.r_[starts[1:] - 1, K - 1]
    gap = int(np.max(A[ends] - A[starts]))
    return max(below / p.m, above / p.m, 0.5 * gap / p.m)


def _alpha_from_t(t: float) -> float:
    return (t - 1.0) / t


def _t_from_alpha(alpha: float) -> float:
    return 1.0 / (1.0 - alpha)


def _solve_alpha(p: _Prepared, crit: float) -> tuple[float, bool, int]:
    """Smallest α in [0, 1) with √(nm/(n+m))·d(α) ≤ c: (α̂, attainable, Newton steps)."""
    scale = _scale(p.n, p.m)
    tau = crit / scale

    def accepts(d: float) -> bool:  # both forms, so either check holds in floating point
        return d <= tau and scale * d <= crit

    if accepts(_distance_t(p, 1.0)):
        return 0.0, True, 0
    if _limit_distance(p) > tau:
        return 1.0, False, 0
    ws = _Workspace(p)
    t, steps = 1.0, 0
    stalled = False
    while steps < _MAX_NEWTON:
        val, p0, q, s = _active_piece(p, t, ws)
        if val <= tau:
            break
        steps += 1
        if q <= 0.0:  # pragma: no cover - excluded by the attainability check
            stalled = True
            break
        t_new = (p0 - s * tau) / q
        if not t_new > t:  # at the root up to rounding; the ulp nudge below finishes
            break
        t = t_new
    else:  # pragma: no cover - finite termination is guaranteed in exact arithmetic
        stalled = True
    alpha = max(0.0, _alpha_from_t(t))
    if stalled:  # pragma: no cover - defensive
        alpha = _bisect_alpha(p, tau, alpha)
    # make the reported α̂ accept in the arithmetic of trimmed_ks_distance
    for _ in range(_MAX_NUDGE):
        if alpha >= 1.0:  # pragma: no cover - defensive
            break
        if accepts(_distance_t(p, _t_from_alpha(alpha), ws)):
            return alpha, True, steps
        alpha = float(np.nextafter(alpha, 1.0))
    return _bisect_alpha(p, tau, alpha), True, steps  # pragma: no cover - defensive


def _bisect_alpha(p: _Prepared, tau: float, lo: float) -> float:  # pragma: no cover
    """Fallback: bisection on α to 1e-13 (returns an accepting α, or 1.0 if none is found)."""
    lo = max(0.0, min(lo, 1.0 - 2.0**-50))
    if _distance_t(p, _t_from_alpha(lo)) <= tau:
        return lo
    for k in range(1, 51):
        hi = 1.0 - 2.0**-k
        if hi > lo and _distance_t(p, _t_from_alpha(hi)) <= tau:
            break
    else:
        return 1.0
    while hi - lo > 1e-13:
        mid = 0.5 * (lo + hi)
        if _distance_t(p, _t_from_alpha(mid)) <= tau:
            hi = mid
        else:
            lo = mid
    return hi


# --------------------------------------------------------------------------- public API


def trimmed_ks_distance(candidate: Any, reference: Any, alpha: float) -> float:
    """The α-trimmed KS distance ``d(α) = min_{F̃ α-trimming of F} sup_x |F̂0(x) − F̃(x)|``.

    ``candidate`` is a 1-D array of soft outputs; ``reference`` is 1-D or ``M × n_test``
    (pooled). ``alpha ∈ [0, 1)``; ``alpha = 0`` gives the two-sample KS statistic. Exact
    closed form, O(n + m) after sorting (module docstring).
    """
    a = _check_alpha(alpha)
    return _distance_t(_prepare(candidate, reference), _t_from_alpha(a))


def trimmed_ks_curve(candidate: Any, reference: Any, alphas: Any) -> np.ndarray:
    """``d(α)`` for each α in ``alphas`` (sorting done once); for plotting the α-curve."""
    al = np.atleast_1d(np.asarray(alphas, dtype=np.float64))
    for a in al:
        _check_alpha(float(a))
    p = _prepare(candidate, reference)
    ws = _Workspace(p)
    return np.array([_distance_t(p, _t_from_alpha(float(a)), ws) for a in al])


@dataclass(frozen=True)
class TrimmedFit:
    """An optimal α-trimming of the candidate, for plotting and inspection.

    Optimal trimmings are generally not unique; this one is the midpoint of the lowest and
    highest optimal trimmed CDFs (module docstring), which keeps it away from both edges of
    the band ``|F̃ − F̂0| ≤ d(α)``. It need not zero out the outliers it could zero out.

    ``grid`` holds the distinct pooled values; ``reference_cdf``, ``candidate_cdf`` and
    ``trimmed_cdf`` are the three CDFs evaluated there (right-continuous steps).
    ``weights[i]`` is the mass the trimming gives to ``candidate[i]`` (input order); it lies
    in ``[0, 1/(n(1−α))]`` and the weights sum to 1. ``distance`` is ``d(α)``; ``achieved``
    is ``sup|F̂0 − trimmed_cdf|`` of the returned trimming (equal up to rounding).
    """

    alpha: float
    distance: float
    achieved: float
    grid: np.ndarray
    reference_cdf: np.ndarray
    candidate_cdf: np.ndarray
    trimmed_cdf: np.ndarray
    weights: np.ndarray

    @property
    def trimmed_fraction(self) -> float:
        """Candidate mass removed, ``Σ_i max(0, 1/n − w_i)`` (at most α)."""
        n = self.weights.size
        return float(np.sum(np.maximum(0.0, 1.0 / n - self.weights)))


def _optimal_trimming(p: _Prepared, alpha: float) -> TrimmedFit:
    t = _t_from_alpha(alpha)
    d = _distance_t(p, t)
    a, S = p.a, t * p.F
    # highest feasible path: min(1, H_k), H_k = S_k + min(0, d + min_{j<=k}(a_j − S_j))
    hi = np.minimum(1.0, S + np.minimum(0.0, d + np.minimum.accumulate(a - S)))
    # lowest feasible path: max(L_k, S_k + max_{i>=k}(L_i − S_i)), L_K := 1
    L = np.maximum(a - d, 0.0)
    L[-1] = 1.0
    back = np.maximum.accumulate((L - S)[::-1])[::-1]
    lo = np.maximum(L, S + back)
    G = np.clip(0.5 * (lo + hi), 0.0, 1.0)
    G[-1] = 1.0
    G = np.maximum.accumulate(G)
    mass = np.diff(np.r_[0.0, G])
    cap = t * np.diff(np.r_[0, p.C]) / p.n
    mass = np.clip(mass, 0.0, cap)
    mass /= mass.sum()
    G = np.cumsum(mass)
    counts = np.diff(np.r_[0, p.C])
    per_point = np.divide(mass, counts, out=np.zeros_like(mass), where=counts > 0)
    idx = np.searchsorted(p.grid, p.candidate)
    weights = per_point[idx]
    achieved = float(np.max(np.abs(a - G)))
    return TrimmedFit(alpha, d, achieved, p.grid, a, p.F, G, weights)


def optimal_trimming(candidate: Any, reference: Any, alpha: float) -> TrimmedFit:
    """An α-trimming attaining ``d(α)`` (the midpoint of the lowest and highest optimal paths)."""
    a = _check_alpha(alpha)
    return _optimal_trimming(_prepare(candidate, reference), a)


def asymptotic_critical_value(level: float) -> float:
    """``kstwobign.ppf(1 − level)``: the Kolmogorov distribution quantile for √(nm/(n+m))·D."""
    return float(stats.kstwobign.ppf(1.0 - _check_level(level)))


class _SortedEnsemble:
    """The ``M × T`` reference flattened and sorted once, with model/point ids per value."""

    def __init__(self, ref: np.ndarray) -> None:
        self.M, self.T = ref.shape
        flat = ref.ravel()
        order = np.argsort(flat, kind="stable")
        vals = flat[order]
        self.model_id = order // self.T
        self.point_id = order % self.T
        self.ends = np.r_[vals[1:] != vals[:-1], True]  # last index of each run of ties
        self.scale = _scale(self.T, (self.M - 1) * self.T)

    def _stat(self, cum_c: np.ndarray, cum_all: np.ndarray) -> float:
        n_b, m_b = self.T, (self.M - 1) * self.T
        return self.scale * float(np.max(np.abs(cum_c / n_b - (cum_all - cum_c) / m_b)))

    def bootstrap(self, n_bootstrap: int, seed: int) -> np.ndarray:
        """Seed × test-point bootstrap replicates of the scaled statistic."""
        rng = np.random.default_rng(seed)
        out = np.empty(n_bootstrap)
        for b in range(n_bootstrap):
            j = int(rng.integers(self.M))
            w = np.bincount(rng.integers(0, self.T, size=self.T), minlength=self.T)
            wv = w.astype(np.float64)[self.point_id]
            cum_all = np.cumsum(wv)[self.ends]
            cum_c = np.cumsum(np.where(self.model_id == j, wv, 0.0))[self.ends]
            out[b] = self._stat(cum_c, cum_all)
        return out

    def leave_one_out(self) -> np.ndarray:
        """Scaled statistic of each reference model against the other ``M − 1``."""
        cum_all = np.flatnonzero(self.ends).astype(np.float64) + 1.0
        out = np.empty(self.M)
        for j in range(self.M):
            cum_c = np.cumsum(self.model_id == j)[self.ends].astype(np.float64)
            out[j] = self._stat(cum_c, cum_all)
        return out


def _check_ensemble(ref: np.ndarray, method: str) -> None:
    if ref.ndim != 2:
        raise ValueError(
            f"method={method!r} needs the reference as a 2-D array (models × test points)"
        )
    if ref.shape[0] < 2:
        raise ValueError(f"method={method!r} needs at least 2 reference models")


def _check_n_bootstrap(n_bootstrap: int) -> int:
    if isinstance(n_bootstrap, bool) or int(n_bootstrap) != n_bootstrap or n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be a positive integer, got {n_bootstrap!r}")
    return int(n_bootstrap)


def _loo_rank(M: int, level: float, *, allow_infinite: bool = False) -> int:
    """1-based order statistic k = ⌈(1 − level)(M + 1)⌉ of the M leave-one-out statistics."""
    k = math.ceil((1.0 - level) * (M + 1) - 1e-12)
    if k > M and not allow_infinite:
        need = math.ceil(1.0 / level - 1.0 - 1e-12)
        raise ValueError(
            f"method='leave-one-out' at level {level} needs at least {need} reference models "
            f"(got {M}): with fewer, no statistic can be significant"
        )
    return k


def bootstrap_critical_value(
    reference: Any, level: float = 0.05, n_bootstrap: int = 1000, seed: int = 0
) -> float:
    """Critical value for √(nm/(n+m))·D from a seed × test-point bootstrap of the reference.

    ``reference`` is ``M × n_test`` (``M ≥ 2`` models scoring the same ``n_test`` points).
    The asymptotic Kolmogorov quantile assumes two independent samples, but every model
    scores the *same* points, so the pooled outputs are dependent (strongly so when models
    agree: the per-point effect is shared and cancels in the candidate-vs-reference
    difference) while seed-to-seed shifts of the whole output distribution add variance that
    the independent-sample theory ignores. Each replicate mimics the real comparison "a
    fresh seed vs. the ensemble, all on one test set":

    1. resample ``n_test`` test-point indices ``I`` with replacement (one draw shared by the
       pseudo-candidate and the pseudo-reference, preserving the per-point pairing);
    2. pick one reference model ``j`` uniformly as the pseudo-candidate, ``R[j, I]``;
    3. use the other ``M − 1`` models on the same points, ``R[−j, I]``, as the pseudo-
       reference (not resampled with replacement: duplicating whole models would make it
       noisier than a real ensemble of distinct seeds; excluding ``j`` keeps the pseudo-
       candidate independent of it, like a fresh seed);
    4. record ``√(n m'/(n+m'))·D`` with ``n = n_test``, ``m' = (M−1)·n_test``.

    The critical value is the ``(1 − level)`` empirical quantile (``method="higher"``, an order
    statistic) of the ``n_bootstrap`` replicates. Seeded (``numpy.random.default_rng(seed)``).
    Cost: one sort, then O(M·n_test) per replicate.

    Calibration (derivation: write the per-point indicator as seed effect + point effect +
    seed×point noise). The point effect cancels, as in the real statistic; the seed effect is
    reproduced through the choice of ``j``; but the seed×point noise is counted twice (once in
    model ``j``'s own outputs, once more by resampling them), so the test is **conservative**:
    when outputs are pure noise (no seed or point structure) the critical value is about
    ``√2 ×`` the Kolmogorov quantile (1.86 vs 1.36 at level 0.05), and its size is near the
    level only when seed-to-seed shifts dominate. Centring the replicates
    (``sup|Δ* − Δ_j|``) removes the double count but also the seed variance, i.e. it tests
    "same output distribution" and rejects fresh seeds far too often once seeds matter; it is
    deliberately not used. :func:`leave_one_out_critical_value` is exact under
    exchangeability of seeds but has only ``M`` draws.
    """
    lv = _check_level(level)
    ref = _as_finite_array(reference, "reference", ndims=(2,))
    _check_ensemble(ref, "bootstrap")
    sims = _SortedEnsemble(ref).bootstrap(_check_n_bootstrap(n_bootstrap), int(seed))
    return float(np.quantile(sims, 1.0 - lv, method="higher"))


def leave_one_out_critical_value(reference: Any, level: float = 0.05) -> float:
    """Rank-based (conformal) critical value from leave-one-seed-out statistics.

    For each reference model ``j`` compute ``S_j = √(n m'/(n+m'))·D(R[j], R[−j])`` with the
    other ``M − 1`` models as the pool (test points kept as they are, so all dependence is
    exactly that of the real comparison). If the candidate is one more seed of the same
    recipe, its statistic is exchangeable with the ``S_j``, so rejecting when it exceeds the
    ``k``-th smallest ``S_j``, ``k = ⌈(1 − level)(M + 1)⌉``, has size ``≤ level`` (exact up to the
    pool holding ``M − 1`` rather than ``M`` models). Needs ``M ≥ ⌈1/level⌉ − 1``
    (19 at level 0.05).
    """
    lv = _check_level(level)
    ref = _as_finite_array(reference, "reference", ndims=(2,))
    _check_ensemble(ref, "leave-one-out")
    k = _loo_rank(ref.shape[0], lv)
    return float(np.sort(_SortedEnsemble(ref).leave_one_out())[k - 1])


@dataclass(frozen=True)
class AlphaHatResult:
    """Result of :func:`alpha_hat`.

    Fields: ``alpha_hat`` (smallest trimming at which the KS test accepts; 1.0 when none
    below 1 does, then ``attainable`` is False), ``distance_at_zero`` (the KS statistic
    ``d(0)``), ``statistic_at_zero`` (``√(nm/(n+m))·d(0)``), ``p_value_at_zero`` (asymptotic
    Kolmogorov tail; for the bootstrap / leave-one-out methods ``(1 + #{S_b ≥ S})/(B + 1)``
    over the ``B`` replicates / ``B = M`` leave-one-out statistics), ``critical_value``
    ``c`` on the scaled axis, ``threshold`` ``τ = c/√(nm/(n+m))`` on the distance axis,
    ``distance_at_alpha_hat`` (``d(1⁻)`` if not attainable), ``limit_distance`` ``d(1⁻)``,
    ``level``, ``method``, ``n``, ``m``,
    ``n_models`` (M when the reference was 2-D), ``n_bootstrap``, ``seed``, ``newton_steps``.
    :meth:`trimming` gives the optimal trimmed CDF / weights at α̂ (or any α) for plots.
    """

    alpha_hat: float
    attainable: bool
    distance_at_zero: float
    statistic_at_zero: float
    p_value_at_zero: float
    critical_value: float
    threshold: float
    distance_at_alpha_hat: float
    limit_distance: float
    level: float
    method: str
    n: int
    m: int
    n_models: int | None = None
    n_bootstrap: int | None = None
    seed: int | None = None
    newton_steps: int = 0
    _prepared: _Prepared | None = field(default=None, repr=False, compare=False)

    @property
    def rejects_at_zero(self) -> bool:
        """Whether the untrimmed KS test rejects (``statistic_at_zero > critical_value``)."""
        return self.statistic_at_zero > self.critical_value

    def trimming(self, alpha: float | None = None) -> TrimmedFit:
        """The optimal trimming at ``alpha`` (default: α̂) — trimmed CDF and weights."""
        if self._prepared is None:  # pragma: no cover - only if constructed by hand
            raise ValueError("this result carries no data; use optimal_trimming()")
        if alpha is None:
            if not self.attainable:
                raise ValueError(
                    "α̂ is not attainable (no trimming below 1 makes the test accept); "
                    "pass an explicit alpha < 1"
                )
            alpha = self.alpha_hat
        return _optimal_trimming(self._prepared, _check_alpha(alpha))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dictionary of the scalar fields."""
        keys = [
            "alpha_hat", "attainable", "distance_at_zero", "statistic_at_zero",
            "p_value_at_zero", "critical_value", "threshold", "distance_at_alpha_hat",
            "limit_distance", "level", "method", "n", "m", "n_models", "n_bootstrap", "seed",
            "newton_steps",
        ]  # fmt: skip
        return {k: getattr(self, k) for k in keys}


def alpha_hat(
    candidate: Any,
    reference: Any,
    level: float = 0.05,
    method: Method = "asymptotic",
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> AlphaHatResult:
    """α̂ = min{α ∈ [0,1): √(nm/(n+m))·d(α) ≤ c(level)}, computed exactly (Newton/Dinkelbach).

    ``candidate``: 1-D soft outputs (n). ``reference``: 1-D pooled outputs or ``M × n_test``
    (pooled for the distance; ``m`` counts all values). The critical value ``c`` comes from
    ``method``:

    * ``"asymptotic"`` — :func:`asymptotic_critical_value` (Kolmogorov quantile; assumes
      independent samples);
    * ``"bootstrap"`` — :func:`bootstrap_critical_value` (seed × test-point bootstrap with
      ``n_bootstrap`` replicates and ``seed``; conservative);
    * ``"leave-one-out"`` — :func:`leave_one_out_critical_value` (rank of the candidate among
      leave-one-seed-out statistics; exact under exchangeable seeds, needs
      ``M ≥ ⌈1/level⌉ − 1``).

    The last two need a 2-D reference (``M ≥ 2``) and a candidate scored on the same
    ``n_test`` points. ``p_value_at_zero`` is the matching p-value of the untrimmed test.
    See the module docstring for definitions, the exact algorithm and edge cases.
    """
    lv = _check_level(level)
    if method not in ("asymptotic", "bootstrap", "leave-one-out"):
        raise ValueError(
            f"method must be 'asymptotic', 'bootstrap' or 'leave-one-out', got {method!r}"
        )
    p = _prepare(candidate, reference)
    scale = _scale(p.n, p.m)
    d0 = _distance_t(p, 1.0)
    stat0 = scale * d0
    nb: int | None = None
    sd: int | None = None
    if method == "asymptotic":
        crit = asymptotic_critical_value(lv)
        pval = float(stats.kstwobign.sf(stat0))
    else:
        ref = np.asarray(reference, dtype=np.float64)
        _check_ensemble(ref, method)
        if p.n != ref.shape[1]:
            raise ValueError(
                f"method={method!r} needs the candidate scored on the reference's test points: "
                f"candidate has {p.n} outputs, reference has {ref.shape[1]} test points"
            )
        ens = _SortedEnsemble(ref)
        if method == "bootstrap":
            nb, sd = _check_n_bootstrap(n_bootstrap), int(seed)
            sims = ens.bootstrap(nb, sd)
            crit = float(np.quantile(sims, 1.0 - lv, method="higher"))
        else:
            k = _loo_rank(ref.shape[0], lv)
            sims = ens.leave_one_out()
            crit = float(np.sort(sims)[k - 1])
        pval = float((1 + np.count_nonzero(sims >= stat0)) / (sims.size + 1))
    tau = crit / scale
    ah, ok, steps = _solve_alpha(p, crit)
    d_at = _distance_t(p, _t_from_alpha(ah)) if ok else _limit_distance(p)
    return AlphaHatResult(
        alpha_hat=float(ah),
        attainable=ok,
        distance_at_zero=d0,
        statistic_at_zero=stat0,
        p_value_at_zero=pval,
        critical_value=crit,
        threshold=tau,
        distance_at_alpha_hat=d_at,
        limit_distance=_limit_distance(p),
        level=lv,
        method=method,
        n=p.n,
        m=p.m,
        n_models=p.n_models,
        n_bootstrap=nb,
        seed=sd,
        newton_steps=steps,
        _prepared=p,
    )
