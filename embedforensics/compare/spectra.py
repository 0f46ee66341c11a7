r"""Spectral forensics: eigenvalue spectra of weights and kernels, and their statistics.

Question answered: *which training procedure made this network?* Wang et al. (NeurIPS 2023,
arXiv 2211.06506) find that the optimiser leaves a signature in the spectra of a network's
weights, conjugate kernel (CK) and neural tangent kernel (NTK): small-step GD/SGD keep the
initial Marchenko–Pastur (MP) bulk, large-step SGD adds outlier eigenvalues ("bulk +
spike"), Adam produces heavy tails. This module measures those spectra and their statistics,
each with an uncertainty:

- :func:`esd` — eigenvalues of ``XᵀX / N`` of a matrix oriented as ``X`` (``N × M``,
  ``N ≥ M``), from its singular values (more accurate than forming ``XᵀX``);
- :func:`mp_fit` — the MP bulk fitted to a spectrum: the scale ``σ²`` by matching the
  spectrum's median to the MP median (robust to a few outliers), or given (the scale implied
  by the initialisation), the bulk edge ``σ²(1 + 1/√Q)²``, and the outliers: eigenvalues
  above the finite-size Tracy–Widom centre of ``λ_max`` plus a TW quantile times the TW scale
  (Johnstone 2001). ``Q = N / M`` is the aspect ratio;
- :func:`powerlaw_fit` — the Clauset–Shalizi–Newman (2009) continuous power-law fit of the
  tail: ``α = 1 + n / Σ ln(x / x_min)`` with ``x_min`` minimising the KS distance between
  the tail and the fit (empirical CDF ``(0..n−1)/n``, the convention of the ``powerlaw``
  package and WeightWatcher), with a bootstrap CI over the values (``x_min`` re-chosen in
  every resample) and ``power_law=False`` when the fit is meaningless (α above
  ``max_alpha``: a bounded, bulk-only spectrum has no tail);
- :func:`stable_rank` (``Σλ / λ_max``), :func:`alignment` (squared cosines of top
  eigenvectors with a direction);
- :func:`spike_location` / :func:`spike_overlap` — the BBP prediction for a planted spike;
- :func:`layer_spectra` — every ``nn.Linear`` weight of a module (and ``ΔW = W − W₀`` given
  initial weights), the CK of each such layer's inputs and the empirical NTK on a set of
  inputs (through :func:`embedforensics.compare.trntk.trntk_kernel`).

**BBP prediction** (Baik–Ben Arous–Péché 2005; Baik–Silverstein 2006). Rows of ``X``
(``N × M``) i.i.d. ``N(0, Σ)`` with ``Σ = σ²(I + ℓ vvᵀ)``, ``‖v‖ = 1``, and ``y = M / N =
1/Q``. The eigenvalues of ``XᵀX/N`` follow MP on ``σ²[(1−√y)², (1+√y)²]`` except, when
``ℓ > √y``, one outlier at ``σ² ψ(1 + ℓ)`` with ``ψ(a) = a + y a / (a − 1)``, i.e. ::

    λ_out → σ² (1 + ℓ)(1 + y / ℓ)          (ℓ > √y; at ℓ = √y it meets the edge σ²(1+√y)²)

(the population spike ``a = 1 + ℓ`` solves ``1/m(λ) = −a`` for the companion Stieltjes
transform outside the support; solving for λ gives ψ). Its eigenvector's squared overlap
with ``v`` tends to ``(1 − y/ℓ²) / (1 + y/ℓ)``. Below the threshold the top eigenvalue sticks
to the edge and the overlap tends to 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: quantiles of the Tracy–Widom β=1 law (Tracy & Widom 1996 tables; a 1,500-draw
#: 800×200 Wishart simulation gives 0.957 / 1.335 / 2.035)
TW1_QUANTILES = {0.90: 0.4501, 0.95: 0.9793, 0.975: 1.4537, 0.99: 2.0234}
#: mean and standard deviation of Tracy–Widom β=1
TW1_MEAN, TW1_SD = -1.2065, 1.2680


# --------------------------------------------------------------------------- spectra


def oriented(W: np.ndarray) -> np.ndarray:
    """``W`` or ``Wᵀ``, whichever has at least as many rows as columns (``N ≥ M``)."""
    W = np.asarray(W)
    if W.ndim != 2:
        raise ValueError(f"a matrix is needed, got shape {W.shape}")
    return W if W.shape[0] >= W.shape[1] else W.T


def esd(W: np.ndarray) -> np.ndarray:
    """Eigenvalues of ``XᵀX / N`` (descending, ``M`` of them) for ``X = oriented(W)``
    (``N × M``, ``N ≥ M``): the empirical spectral density WeightWatcher and the MP law
    describe. Computed as squared singular values / N in float64."""
    from scipy.linalg import svdvals

    X = oriented(np.asarray(W, dtype=np.float64))
    if not np.all(np.isfinite(X)):
        raise ValueError("the matrix has non-finite entries (NaN or inf)")
    s = svdvals(X, check_finite=False)
    return np.sort(s * s / X.shape[0])[::-1]


def stable_rank(eigenvalues: np.ndarray) -> float:
    """``Σλ / λ_max`` = ``‖W‖_F² / ‖W‖₂²``: how many directions carry the energy."""
    lam = np.asarray(eigenvalues, dtype=np.float64)
    top = float(lam.max()) if lam.size else 0.0
    return float(lam.sum() / top) if top > 0 else 0.0


def alignment(vectors: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Squared cosine of each column of ``vectors`` (``d × k``, e.g. top eigenvectors) with
    ``direction`` (``d``): 1 = aligned, ≈ 1/d for a random direction."""
    V = np.asarray(vectors, dtype=np.float64)
    d = np.asarray(direction, dtype=np.float64).ravel()
    if V.ndim == 1:
        V = V[:, None]
    if V.shape[0] != d.size:
        raise ValueError(f"vectors have {V.shape[0]} rows but the direction has {d.size} "
                         "entries")
    nd = float(np.linalg.norm(d))
    if nd == 0:
        raise ValueError("the direction is zero")
    nv = np.linalg.norm(V, axis=0)
    nv[nv == 0] = 1.0
    return ((d @ V) / (nd * nv)) ** 2


# --------------------------------------------------------------------------- MP and TW


def _mp_support(ratio: float) -> tuple[float, float]:
    return (1 - math.sqrt(ratio)) ** 2, (1 + math.sqrt(ratio)) ** 2


def mp_density(x: np.ndarray, sigma2: float, aspect_ratio: float) -> np.ndarray:
    """The MP density of the eigenvalues of ``XᵀX/N`` (``X``: ``N × M`` i.i.d. entries of
    variance ``sigma2``, ``Q = N/M ≥ 1``) at ``x``."""
    y = 1.0 / float(aspect_ratio)
    a, b = _mp_support(y)
    t = np.asarray(x, dtype=np.float64) / sigma2
    inside = (t > a) & (t < b)
    out = np.zeros_like(t)
    out[inside] = np.sqrt((b - t[inside]) * (t[inside] - a)) / (2 * np.pi * y * t[inside])
    return out / sigma2


def mp_quantile(q: float, aspect_ratio: float) -> float:
    """Quantile ``q`` of the unit-variance MP law with aspect ratio ``Q = N/M ≥ 1``."""
    from scipy.integrate import quad
    from scipy.optimize import brentq

    y = 1.0 / float(aspect_ratio)
    a, b = _mp_support(y)

    def cdf(t: float) -> float:
        return quad(lambda s: math.sqrt(max((b - s) * (s - a), 0.0)) / (2 * math.pi * y * s),
                    a, t, limit=200)[0]

    return float(brentq(lambda t: cdf(t) - q, a, b, xtol=1e-12))


@dataclass
class MPFit:
    """The MP bulk fitted to a spectrum and the eigenvalues beyond it.

    ``edge`` is the asymptotic bulk edge ``σ²(1 + 1/√Q)²``; ``tw_center`` / ``tw_scale`` the
    finite-size centre and scale of ``λ_max`` for a pure-noise ``N × M`` matrix (Johnstone
    2001, rescaled by ``σ²/N``); ``threshold = tw_center + q·tw_scale`` with ``q`` the TW₁
    quantile at ``level``; ``n_outliers`` counts eigenvalues above it. ``tw_z`` is
    ``(λ_max − tw_center) / tw_scale`` (≈ TW₁ for noise: mean −1.21, sd 1.27).
    """

    sigma2: float
    aspect_ratio: float
    edge: float
    lambda_max: float
    tw_center: float
    tw_scale: float
    threshold: float
    n_outliers: int
    level: float
    fitted: bool
    n: int
    m: int

    @property
    def lambda_max_over_edge(self) -> float:
        return self.lambda_max / self.edge if self.edge > 0 else float("inf")

    @property
    def tw_z(self) -> float:
        return (self.lambda_max - self.tw_center) / self.tw_scale if self.tw_scale > 0 \
            else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {"sigma2": self.sigma2, "aspect_ratio": self.aspect_ratio, "edge": self.edge,
                "lambda_max": self.lambda_max, "lambda_max_over_edge":
                    self.lambda_max_over_edge, "tw_center": self.tw_center,
                "tw_scale": self.tw_scale, "tw_z": self.tw_z, "threshold": self.threshold,
                "n_outliers": self.n_outliers, "level": self.level, "fitted": self.fitted}


def mp_fit(eigenvalues: np.ndarray, aspect_ratio: float, *, sigma2: float | None = None,
           level: float = 0.99, n_rows: int | None = None) -> MPFit:
    """Fit the MP bulk to ``eigenvalues`` of ``XᵀX/N`` (``X``: ``N × M``; ``aspect_ratio =
    Q = N/M ≥ 1``) and count the outliers beyond its Tracy–Widom margin.

    ``sigma2`` fixes the scale (e.g. the initialisation variance; the edge "implied by the
    initialisation scale"); otherwise it is fitted as ``median(λ) / median(MP₁)``, which a
    few outliers barely move. ``n_rows`` is ``N`` (default ``round(Q·M)``). ``level`` is the
    one-sided TW₁ level of the outlier threshold (0.90, 0.95, 0.975 or 0.99).
    """
    lam = np.sort(np.asarray(eigenvalues, dtype=np.float64).ravel())[::-1]
    Q = float(aspect_ratio)
    if not Q >= 1 or not math.isfinite(Q):
        raise ValueError(f"aspect_ratio = rows / columns must be ≥ 1 (orient the matrix so "
                         f"rows ≥ columns), got {aspect_ratio!r}")
    if lam.size < 2 or not np.all(np.isfinite(lam)):
        raise ValueError("mp_fit needs at least 2 finite eigenvalues")
    if level not in TW1_QUANTILES:
        raise ValueError(f"level must be one of {sorted(TW1_QUANTILES)}, got {level!r}")
    M = lam.size
    N = int(n_rows) if n_rows is not None else max(M, int(round(Q * M)))
    fitted = sigma2 is None
    if sigma2 is None:
        med = float(np.median(lam))
        sigma2 = med / mp_quantile(0.5, Q) if med > 0 else float(lam.mean())
    sigma2 = float(sigma2)
    edge = sigma2 * (1 + 1 / math.sqrt(Q)) ** 2
    rn, rp = math.sqrt(max(N - 1, 1)), math.sqrt(M)
    center = sigma2 * (rn + rp) ** 2 / N
    scale = sigma2 * (rn + rp) * (1 / rn + 1 / rp) ** (1 / 3) / N
    threshold = center + TW1_QUANTILES[level] * scale
    return MPFit(sigma2=sigma2, aspect_ratio=Q, edge=edge, lambda_max=float(lam[0]),
                 tw_center=center, tw_scale=scale, threshold=threshold,
                 n_outliers=int(np.sum(lam > threshold)), level=level, fitted=fitted, n=N,
                 m=M)


def spike_location(ell: float, aspect_ratio: float, sigma2: float = 1.0) -> float:
    """BBP: where the outlier of a spiked covariance ``σ²(I + ℓvvᵀ)`` sits in the spectrum
    of ``XᵀX/N`` (``Q = N/M``): ``σ²(1+ℓ)(1+y/ℓ)`` with ``y = 1/Q`` when ``ℓ > √y``, else
    the bulk edge ``σ²(1+√y)²``. See the module docstring for the derivation."""
    y = 1.0 / float(aspect_ratio)
    if ell <= math.sqrt(y):
        return sigma2 * (1 + math.sqrt(y)) ** 2
    return sigma2 * (1 + ell) * (1 + y / ell)


def spike_overlap(ell: float, aspect_ratio: float) -> float:
    """BBP: limiting squared overlap of the outlier eigenvector with the spike direction,
    ``(1 − y/ℓ²) / (1 + y/ℓ)`` above the threshold, 0 below."""
    y = 1.0 / float(aspect_ratio)
    if ell <= math.sqrt(y):
        return 0.0
    return (1 - y / ell ** 2) / (1 + y / ell)


# --------------------------------------------------------------------------- power law


@dataclass
class PowerLawFit:
    """A Clauset–Shalizi–Newman continuous power-law fit of a tail.

    ``alpha`` is the density exponent (``p(x) ∝ x^−α`` for ``x ≥ xmin``), ``ks_distance``
    the KS distance of the tail to the fit, ``n_tail`` the values ``≥ xmin``, ``alpha_se``
    the analytical standard error ``(α − 1)/√n_tail``, ``ci`` the percentile bootstrap CI
    (``x_min`` re-chosen in every resample; the Wald interval from ``alpha_se`` when
    ``n_bootstrap=0``). ``power_law`` is False when the fit is meaningless (``reason``).
    """

    alpha: float
    xmin: float
    ks_distance: float
    n_tail: int
    n: int
    alpha_se: float
    ci: tuple[float, float] | None
    ci_level: float
    ci_method: str
    power_law: bool
    reason: str = ""
    bootstrap: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "xmin": self.xmin, "ks_distance": self.ks_distance,
                "n_tail": self.n_tail, "n": self.n, "alpha_se": self.alpha_se,
                "ci": list(self.ci) if self.ci is not None else None,
                "ci_level": self.ci_level, "ci_method": self.ci_method,
                "power_law": self.power_law, "reason": self.reason}


def _all_xmin(x: np.ndarray, min_tail: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For sorted positive ``x`` (ascending): candidate start indices (first index of each
    distinct value leaving ≥ ``min_tail`` values), their MLE α and KS distances."""
    n = x.size
    last = n - min_tail
    starts = np.flatnonzero(np.r_[True, x[1:] != x[:-1]])
    starts = starts[starts <= last]
    if starts.size == 0:
        return starts, np.empty(0), np.empty(0)
    logx = np.log(x)
    suffix = np.cumsum(logx[::-1])[::-1]  # Σ_{j ≥ i} ln x_j
    n_tail = (n - starts).astype(np.float64)
    denom = suffix[starts] - n_tail * logx[starts]
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where(denom > 0, 1 + n_tail / denom, np.inf)
    ks = np.full(starts.size, np.inf)
    # KS in row blocks of a (candidates × values) matrix: values before a candidate's start
    # are masked out
    block = max(1, int(4_000_000 // max(n, 1)))
    j = np.arange(n)
    for b0 in range(0, starts.size, block):
        s = starts[b0:b0 + block]
        a = alpha[b0:b0 + block]
        ok = np.isfinite(a)
        ratio = logx[None, :] - logx[s][:, None]  # ln(x_j / xmin)
        theo = 1 - np.exp(-(np.where(ok, a, 2.0)[:, None] - 1) * np.maximum(ratio, 0))
        emp = (j[None, :] - s[:, None]) / (n - s)[:, None]
        diff = np.abs(theo - emp)
        diff[j[None, :] < s[:, None]] = 0.0
        ks[b0:b0 + block] = np.where(ok, diff.max(axis=1), np.inf)
    return starts, alpha, ks


def _fit_once(x: np.ndarray, min_tail: int,
              xmin: float | None) -> tuple[float, float, float, int]:
    """(α, xmin, KS, n_tail) of sorted ascending positive ``x``."""
    if xmin is not None:
        tail = x[x >= xmin]
        if tail.size < 2:
            return float("nan"), float(xmin), float("nan"), int(tail.size)
        starts, alpha, ks = _all_xmin(tail, tail.size)
        return float(alpha[0]), float(tail[0]), float(ks[0]), int(tail.size)
    starts, alpha, ks = _all_xmin(x, min_tail)
    if starts.size == 0 or not np.any(np.isfinite(ks)):
        return float("nan"), float("nan"), float("nan"), 0
    best = int(np.argmin(ks))
    return float(alpha[best]), float(x[starts[best]]), float(ks[best]), int(x.size - starts[best])


def powerlaw_fit(values: Iterable[float], *, xmin: float | None = None, min_tail: int = 10,
                 n_bootstrap: int = 200, ci_level: float = 0.95, seed: int = 0,
                 max_alpha: float = 8.0) -> PowerLawFit:
    """Fit a continuous power law to the tail of ``values`` (e.g. a layer's eigenvalues).

    ``xmin=None`` chooses ``x_min`` among the distinct values (leaving at least ``min_tail``
    values in the tail) by the minimum KS distance; a given ``xmin`` is used as is.
    ``n_bootstrap`` resamples of the values (with replacement; ``x_min`` re-chosen each time)
    give the percentile CI; 0 gives the Wald interval ``α ± z·(α−1)/√n_tail``. Non-positive
    values are dropped (zero eigenvalues of a rank-deficient matrix). ``power_law`` is False
    when fewer than ``min_tail`` positive values exist or ``α > max_alpha`` (a spectrum
    without a heavy tail, e.g. a random matrix's bounded MP bulk, fits a steep, meaningless
    "tail" near its edge; WeightWatcher reads α > 6 as a layer that has barely trained).
    """
    from scipy.stats import norm

    x = np.asarray(list(values) if not isinstance(values, np.ndarray) else values,
                   dtype=np.float64).ravel()
    if not np.all(np.isfinite(x)):
        raise ValueError("powerlaw_fit needs finite values")
    x = np.sort(x[x > 0])
    n = x.size
    min_tail = max(2, int(min_tail))
    if n < min_tail:
        return PowerLawFit(float("nan"), float("nan"), float("nan"), 0, n, float("nan"),
                           None, ci_level, "none", False,
                           f"{n} positive values, fewer than min_tail={min_tail}")
    alpha, xm, ks, n_tail = _fit_once(x, min_tail, xmin)
    se = (alpha - 1) / math.sqrt(n_tail) if n_tail > 0 else float("nan")
    boot = None
    if n_bootstrap > 0 and math.isfinite(alpha):
        rng = np.random.default_rng([int(seed), 0x9A7E])
        boot = np.empty(int(n_bootstrap))
        for b in range(int(n_bootstrap)):
            sample = np.sort(x[rng.integers(0, n, n)])
            boot[b] = _fit_once(sample, min_tail, xmin)[0]
        finite = boot[np.isfinite(boot)]
        lo, hi = (1 - ci_level) / 2, 1 - (1 - ci_level) / 2
        ci = (float(np.quantile(finite, lo)), float(np.quantile(finite, hi))) \
            if finite.size else None
        method = f"percentile bootstrap over the values ({int(n_bootstrap)} resamples, " \
                 "x_min re-chosen)"
    elif math.isfinite(alpha):
        z = float(norm.ppf(1 - (1 - ci_level) / 2))
        ci = (alpha - z * se, alpha + z * se)
        method = "Wald, (α − 1)/√n_tail"
    else:
        ci, method = None, "none"
    ok, reason = True, ""
    if not math.isfinite(alpha):
        ok, reason = False, "no finite fit"
    elif alpha > max_alpha:
        ok, reason = False, (f"α = {alpha:.1f} > {max_alpha:g}: no heavy tail (a bounded, "
                             "bulk-only spectrum)")
    return PowerLawFit(alpha=alpha, xmin=xm, ks_distance=ks, n_tail=n_tail, n=n,
                       alpha_se=se, ci=ci, ci_level=ci_level, ci_method=method, power_law=ok,
                       reason=reason, bootstrap=boot)


# --------------------------------------------------------------------------- statistics


@dataclass
class SpectralStats:
    """The statistics of one spectrum (see :func:`spectral_stats`)."""

    mp: MPFit
    powerlaw: PowerLawFit
    stable_rank: float
    alignment: float | None = None

    def features(self) -> dict[str, float]:
        """Scalar features for tables and classifiers: log λ_max/edge, outliers, log stable
        rank, α (capped at 20; 20 when no finite fit) and log σ²."""
        a = self.powerlaw.alpha
        return {"log_lambda_max_over_edge": math.log(max(self.mp.lambda_max_over_edge,
                                                         1e-300)),
                "n_outliers": float(self.mp.n_outliers),
                "log_stable_rank": math.log(max(self.stable_rank, 1e-300)),
                "alpha": float(min(a, 20.0)) if math.isfinite(a) else 20.0,
                "log_sigma2": math.log(max(self.mp.sigma2, 1e-300))}

    def to_dict(self) -> dict[str, Any]:
        return {"mp": self.mp.to_dict(), "powerlaw": self.powerlaw.to_dict(),
                "stable_rank": self.stable_rank, "alignment": self.alignment}


def spectral_stats(eigenvalues: np.ndarray, aspect_ratio: float, *,
                   sigma2: float | None = None, level: float = 0.99, n_bootstrap: int = 0,
                   seed: int = 0, min_tail: int = 10, n_rows: int | None = None,
                   vectors: np.ndarray | None = None,
                   direction: np.ndarray | None = None) -> SpectralStats:
    """MP fit, outliers, power-law tail, stable rank and (with ``vectors`` and
    ``direction``) the top eigenvector's squared cosine with the direction.

    The power-law fit is marked meaningless (``power_law=False``) also when no eigenvalue
    lies beyond the MP bulk's Tracy–Widom margin: the fitted "tail" is then the bulk edge."""
    mp = mp_fit(eigenvalues, aspect_ratio, sigma2=sigma2, level=level, n_rows=n_rows)
    pl = powerlaw_fit(eigenvalues, min_tail=min_tail, n_bootstrap=n_bootstrap, seed=seed)
    if pl.power_law and mp.n_outliers == 0:
        # the "tail" is the edge of the MP bulk itself: no eigenvalue lies beyond the bulk's
        # Tracy–Widom margin, so an α describes the bulk's square-root edge, not a tail
        pl.power_law = False
        pl.reason = ("no eigenvalue beyond the MP bulk's Tracy–Widom margin: a bulk-only "
                     "spectrum")
    al = None
    if vectors is not None and direction is not None:
        al = float(alignment(np.asarray(vectors)[:, :1], direction)[0])
    return SpectralStats(mp=mp, powerlaw=pl, stable_rank=stable_rank(eigenvalues),
                         alignment=al)


# --------------------------------------------------------------------------- modules


@dataclass
class LayerSpectrum:
    """One spectrum of a module: ``kind`` is ``"weight"`` (``XᵀX/N`` of a weight),
    ``"delta"`` (of ``W − W₀``), ``"ck"`` (the conjugate kernel ``ΦΦᵀ/width`` of the layer's
    input activations on the inputs, ``n × n``) or ``"ntk"`` (the empirical NTK Gram matrix
    / its trace · n). ``shape`` is ``(N, M)`` of the oriented matrix whose ``XᵀX/N`` gave the
    eigenvalues (kernels: ``(width, n)`` or ``(features, n)``); ``vectors`` the top
    eigenvectors as columns (``M × k``)."""

    name: str
    kind: str
    shape: tuple[int, int]
    eigenvalues: np.ndarray
    vectors: np.ndarray | None = None

    @property
    def aspect_ratio(self) -> float:
        return self.shape[0] / self.shape[1]


def _top_vectors(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues of ``XᵀX/N`` (descending) and its top-``k`` eigenvectors."""
    from scipy.linalg import svd

    N = X.shape[0]
    _, s, vt = svd(X, full_matrices=False, check_finite=False)
    return s * s / N, vt[:k].T.copy()


def _linear_layers(module: Any, names: Sequence[str] | None, min_dim: int) -> list[tuple[str,
                                                                                       Any]]:
    from torch import nn

    out = []
    for name, m in module.named_modules():
        if not isinstance(m, nn.Linear):
            continue
        if names is not None and not any(name == e or name.startswith(e + ".")
                                         or name.endswith("." + e) or ("." + e + ".") in name
                                         for e in names):
            continue
        if min(m.weight.shape) < min_dim:
            continue
        out.append((name, m))
    return out


def _initial_weight(initial: Any, name: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """The initial weight of module ``name`` from a module or a state dict (keys matched
    exactly or by suffix, so a base model's ``encoder.…`` matches ``bert.encoder.…``)."""
    if initial is None:
        return None
    state = initial.state_dict() if hasattr(initial, "state_dict") else initial
    key = f"{name}.weight"
    cands = [k for k in state if k == key or key.endswith("." + k) or k.endswith("." + key)]
    for k in cands:
        v = state[k]
        v = v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
        if tuple(v.shape) == tuple(shape):
            return v.astype(np.float64)
    return None


def layer_spectra(module: Any, inputs: Any = None, initial: Any = None, *,
                  layers: Sequence[str] | None = None, kinds: Sequence[str] = ("weight",
                                                                                 "delta",
                                                                                 "ck"),
                  min_dim: int = 8, top_k: int = 3, ntk_params: Any = "all",
                  ntk_projection_dim: int | None = None, seed: int = 0,
                  batch_size: int = 64) -> list[LayerSpectrum]:
    """Spectra of every ``nn.Linear`` of ``module`` with both dimensions ≥ ``min_dim``
    (``layers``: names or name parts to keep, as in trNTK's ``params``).

    ``kinds``: ``"weight"`` (``W``), ``"delta"`` (``W − W₀``, when ``initial`` — a module or
    a state dict, e.g. the pre-trained base — has the layer; skipped when ``ΔW = 0``),
    ``"ck"`` (needs ``inputs``: a float tensor, or a mapping of token tensors, which is
    pooled by the attention-masked mean over tokens) and ``"ntk"`` (needs ``inputs`` and a
    ``module`` mapping them to logits; :func:`~embedforensics.compare.trntk.trntk_kernel`
    ``kind="trntk0"`` on ``ntk_params``, projected to ``ntk_projection_dim`` when given).
    """
    import torch

    unknown = set(kinds) - {"weight", "delta", "ck", "ntk"}
    if unknown:
        raise ValueError(f"unknown spectrum kinds {sorted(unknown)}; use weight, delta, ck, "
                         "ntk")
    chosen = _linear_layers(module, layers, min_dim)
    out: list[LayerSpectrum] = []
    for name, m in chosen:
        W = m.weight.detach().cpu().to(torch.float64).numpy()
        if "weight" in kinds:
            X = oriented(W)
            lam, vec = _top_vectors(X, top_k)
            out.append(LayerSpectrum(name, "weight", X.shape, lam, vec))
        if "delta" in kinds:
            W0 = _initial_weight(initial, name, W.shape)
            if W0 is not None and np.any(W != W0):
                X = oriented(W - W0)
                lam, vec = _top_vectors(X, top_k)
                out.append(LayerSpectrum(name, "delta", X.shape, lam, vec))
    if inputs is not None and "ck" in kinds:
        out.extend(_ck_spectra(module, inputs, chosen, top_k, batch_size))
    if inputs is not None and "ntk" in kinds:
        from embedforensics.compare.trntk import trntk_kernel

        K = trntk_kernel(module, inputs, kind="trntk0", params=ntk_params,
                         projection_dim=ntk_projection_dim, seed=seed, batch_size=batch_size)
        n = K.shape[0]
        w, v = np.linalg.eigh(K)
        order = np.argsort(w)[::-1]
        w = np.clip(w[order], 0, None)
        tr = float(w.sum())
        lam = w / tr * n if tr > 0 else w
        out.append(LayerSpectrum("ntk", "ntk", (n, n), lam, v[:, order[:top_k]]))
    return out


def _ck_spectra(module: Any, inputs: Any, chosen: list[tuple[str, Any]], top_k: int,
                batch_size: int) -> list[LayerSpectrum]:
    import torch

    from embedforensics.compare.trntk import _n_inputs, _slice

    store: dict[str, list[torch.Tensor]] = {name: [] for name, _ in chosen}
    mask_holder: list[torch.Tensor | None] = [None]

    def hook(name: str):
        def f(_m: Any, args: tuple[Any, ...]) -> None:
            a = args[0].detach().to(torch.float64)
            if a.dim() == 3:  # tokens: attention-masked mean
                mask = mask_holder[0]
                if mask is not None and mask.shape[:2] == a.shape[:2]:
                    w = mask.to(a.dtype).unsqueeze(-1)
                    a = (a * w).sum(1) / w.sum(1).clamp(min=1)
                else:
                    a = a.mean(1)
            store[name].append(a.reshape(a.shape[0], -1))
        return f

    handles = [m.register_forward_pre_hook(hook(name)) for name, m in chosen]
    was = module.training
    module.eval()
    try:
        n = _n_inputs(inputs)
        with torch.no_grad():
            for start in range(0, n, batch_size):
                x = _slice(inputs, start, min(n, start + batch_size))
                if isinstance(x, Mapping):
                    mask_holder[0] = x.get("attention_mask")
                    module(**x)
                else:
                    module(x)
    finally:
        for h in handles:
            h.remove()
        module.train(was)
    out = []
    for name, _ in chosen:
        if not store[name]:
            continue
        Phi = torch.cat(store[name]).numpy()  # n × width
        n, width = Phi.shape
        # the CK ΦΦᵀ/width keeps its own scale (an MP fit with a fitted σ² is
        # scale-free); its eigenvectors live in sample space (n)
        from scipy.linalg import svd

        u, s, _vt = svd(Phi, full_matrices=False, check_finite=False)
        lam = s * s / width
        vec = u[:, :top_k].copy()
        out.append(LayerSpectrum(name, "ck", (max(n, width), min(n, width)), lam, vec))
    return out
