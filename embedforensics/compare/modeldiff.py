r"""ModelDiff on attribution matrices: what two training procedures learn differently.

Shah, Park, Ilyas and Madry (arXiv 2211.12491) compare two *learning algorithms* A and B
through how their models use the training data. Given, for each algorithm, an attribution
matrix ``θ`` of shape ``[test points × training points]`` (how much each training point
drives each test prediction, averaged over the algorithm's models):

1. **Row normalisation.** Each test point's attribution vector is scaled to unit L2 norm
   (a row of zeros stays zero), so that only the *pattern* of attribution counts.
2. **Residuals.** Per test point, the part of A's vector not explained by B's:
   ``r_A = θ_A − (⟨θ_A, θ_B⟩ / ⟨θ_B, θ_B⟩) θ_B``, and the same with A and B swapped.
3. **Distinguishing directions.** PCA (column-centred, scikit-learn) of the residual matrix;
   each component is a unit direction ``v`` over training points. For each: the *variance
   under A* — the share of the total variance of A's (normalised, centred) attributions that
   lies along ``v``, ``Var_i(θ_A[i]·v) / tr Cov(θ_A)`` — and the same under B. A
   distinguishing direction has a high share under A and a low one under B. Its
   *subpopulation* is the test points with the largest residual projections ``r_A[i]·v``,
   and its top/bottom training points are the largest positive/negative entries of ``v``.
   The sign of each direction is chosen so that its largest-magnitude projection is
   positive.
4. **A seed null** (not in the original method or package): the same computation between two
   random halves of one algorithm's own models (A's and B's in turn). For each direction the
   *gap* ``variance_a − variance_b`` is ranked among the null's largest gaps (the maximum
   over components of each split, so the test holds for all components at once):
   ``p = (1 + #{null max gap ≥ gap}) / (n_splits + 1)``. Halves average fewer models than
   the full groups, so their noise — and the null — is larger: the test is conservative.

:func:`treatment_effect` and :func:`effect_difference` verify a candidate transformation
(ModelDiff §4): the change in a class probability when the test texts are transformed,
averaged over a group's models and test points with a two-way bootstrap CI (models and test
points resampled independently), and the A-minus-B difference of the per-model mean effects
with a permutation p-value over model labels (exact when the relabellings are few).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from math import comb
from pathlib import Path
from typing import Any

import numpy as np

# --------------------------------------------------------------------------- inputs


def load_attribution_matrix(path: str | Path, key: str | None = None) -> np.ndarray:
    """A precomputed attribution matrix (``[test × train]``, or a stack ``[models × test ×
    train]``) from a ``.npy`` file or a ``.safetensors`` file (tensor ``key``; without it the
    file must hold exactly one tensor), as float64.

    Matrices from other tools (e.g. TRAK scores, which are ``[train × test]``: transpose
    them first) enter :func:`modeldiff` this way.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"attribution matrix file '{p}' does not exist")
    if p.suffix == ".npy":
        arr = np.load(p, allow_pickle=False)
    elif p.suffix == ".safetensors":
        from safetensors.numpy import load_file

        tensors = load_file(str(p))
        if key is None:
            if len(tensors) != 1:
                raise ValueError(f"'{p}' holds {len(tensors)} tensors "
                                 f"({', '.join(sorted(tensors))}); name one as key")
            (arr,) = tensors.values()
        elif key not in tensors:
            raise ValueError(f"'{p}' has no tensor '{key}'; it has "
                             f"{', '.join(sorted(tensors))}")
        else:
            arr = tensors[key]
    else:
        raise ValueError(f"attribution matrix file '{p}' must end in .npy or .safetensors")
    return np.asarray(arr, dtype=np.float64)


def _as_stack(name: str, theta: Any) -> np.ndarray:
    """``[models × test × train]`` float64 from a matrix, a stack, a list or a file path."""
    if isinstance(theta, (str, Path)):
        theta = load_attribution_matrix(theta)
    if isinstance(theta, (list, tuple)):
        theta = np.stack([np.asarray(t, dtype=np.float64) for t in theta])
    arr = np.asarray(theta, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"{name} must be a [test × train] matrix or a [models × test × "
                         f"train] stack, got shape {arr.shape}")
    if arr.shape[1] < 2 or arr.shape[2] < 2:
        raise ValueError(f"{name} needs at least 2 test and 2 training points, got "
                         f"{arr.shape[1:]}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has non-finite entries")
    return arr


def normalize_rows(theta: np.ndarray) -> np.ndarray:
    """Each row scaled to unit L2 norm; rows of zeros stay zero."""
    norm = np.linalg.norm(theta, axis=1, keepdims=True)
    return np.divide(theta, norm, out=np.zeros_like(theta), where=norm > 0)


def residuals(theta_a: np.ndarray, theta_b: np.ndarray) -> np.ndarray:
    """Row-wise part of ``theta_a`` orthogonal to ``theta_b``:
    ``a − (⟨a, b⟩/⟨b, b⟩) b`` (a zero row of ``b`` leaves ``a`` unchanged)."""
    ab = np.einsum("ij,ij->i", theta_a, theta_b)
    bb = np.einsum("ij,ij->i", theta_b, theta_b)
    coef = np.divide(ab, bb, out=np.zeros_like(ab), where=bb > 0)
    return theta_a - coef[:, None] * theta_b


def variance_share(theta: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Per direction (rows of ``directions``, unit norm), the share of the total variance of
    ``theta``'s rows (centred over test points) that lies along it."""
    centred = theta - theta.mean(0, keepdims=True)
    total = float(np.sum(centred ** 2))
    if total <= 0:
        return np.zeros(directions.shape[0])
    return np.sum((centred @ directions.T) ** 2, axis=0) / total


# --------------------------------------------------------------------------- the method


@dataclass
class SplitNull:
    """Half-split seed null of the variance gaps (see the module docstring, step 4)."""

    gaps: np.ndarray  # [n_splits, k] variance_a − variance_b per component of each split
    max_gaps: np.ndarray  # [n_splits] the largest gap of each split
    p_values: np.ndarray  # [k] rank p of each observed direction's gap among max_gaps
    n_splits: int
    groups: list[str]  # which group each split halved ("a" or "b")

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for JSON reports."""
        return {"n_splits": self.n_splits, "p_values": self.p_values.tolist(),
                "max_gaps": self.max_gaps.tolist(), "groups": list(self.groups),
                "max_gap_quantiles": {q: float(np.quantile(self.max_gaps, float(q)))
                                      for q in ("0.5", "0.9", "0.95")}}


@dataclass
class ModelDiffResult:
    """Distinguishing directions of A with respect to B (``reverse``: of B w.r.t. A)."""

    directions: np.ndarray  # [k, n_train], unit norm
    projections: np.ndarray  # [n_test, k] residual (A − B part) projections
    variance_a: np.ndarray  # [k] share of A's attribution variance along each direction
    variance_b: np.ndarray  # [k] the same under B
    explained_variance_ratio: np.ndarray  # [k] of the residual PCA
    residual_a_minus_b: np.ndarray = field(repr=False)  # [n_test, n_train]
    residual_b_minus_a: np.ndarray = field(repr=False)  # [n_test, n_train]
    null: SplitNull | None = None
    reverse: ModelDiffResult | None = field(default=None, repr=False)
    n_models_a: int = 1
    n_models_b: int = 1

    @property
    def gaps(self) -> np.ndarray:
        """``variance_a − variance_b`` per direction."""
        return self.variance_a - self.variance_b

    def subpopulation(self, component: int, n: int = 10) -> np.ndarray:
        """Indices of the ``n`` test points with the largest projections, largest first."""
        return np.argsort(-self.projections[:, component], kind="stable")[:n]

    def training_points(self, component: int, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the ``n`` training points with the largest and the ``n`` with the
        smallest (most negative) weights of a direction, most extreme first."""
        order = np.argsort(-self.directions[component], kind="stable")
        return order[:n], order[::-1][:n]

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict summary (no residual matrices)."""
        return {"variance_a": self.variance_a.tolist(), "variance_b": self.variance_b.tolist(),
                "explained_variance_ratio": self.explained_variance_ratio.tolist(),
                "n_models_a": self.n_models_a, "n_models_b": self.n_models_b,
                "null": self.null.to_dict() if self.null is not None else None}


def _directions(a: np.ndarray, b: np.ndarray, k: int, seed: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Directions, residual projections, explained-variance ratio and residual of A vs B
    (rows already normalised)."""
    from sklearn.decomposition import PCA

    r = residuals(a, b)
    if not np.any(r - r.mean(0)):
        dirs = np.zeros((k, a.shape[1]))
        return dirs, np.zeros((a.shape[0], k)), np.zeros(k), r
    pca = PCA(n_components=k, svd_solver="full", random_state=seed).fit(r)
    dirs = pca.components_.copy()
    proj = r @ dirs.T
    # sign: the largest-magnitude projection is positive
    sign = np.sign(proj[np.argmax(np.abs(proj), axis=0), np.arange(k)])
    sign[sign == 0] = 1.0
    dirs *= sign[:, None]
    return dirs, proj * sign, pca.explained_variance_ratio_.copy(), r


def _gaps(a: np.ndarray, b: np.ndarray, k: int, seed: int) -> np.ndarray:
    dirs = _directions(a, b, k, seed)[0]
    return variance_share(a, dirs) - variance_share(b, dirs)


def _split_null(stack_a: np.ndarray, stack_b: np.ndarray, k: int, n_splits: int,
                seed: int, observed: np.ndarray) -> SplitNull | None:
    usable = [(g, s) for g, s in (("a", stack_a), ("b", stack_b)) if s.shape[0] >= 2]
    if not usable or n_splits < 1:
        return None
    rng = np.random.default_rng([int(seed), 0x5D1F])
    gaps = np.empty((n_splits, k))
    groups: list[str] = []
    for s in range(n_splits):
        name, stack = usable[s % len(usable)]
        m = stack.shape[0]
        order = rng.permutation(m)
        half = m // 2
        first, second = order[:half], order[half:2 * half]
        h1 = normalize_rows(stack[first].mean(0))
        h2 = normalize_rows(stack[second].mean(0))
        gaps[s] = _gaps(h1, h2, k, seed)
        groups.append(name)
    max_gaps = gaps.max(1)
    p = np.array([(1 + np.sum(max_gaps >= g - 1e-12)) / (n_splits + 1) for g in observed])
    return SplitNull(gaps, max_gaps, p, n_splits, groups)


def modeldiff(theta_a: Any, theta_b: Any, n_components: int = 5, seed: int = 0, *,
              n_splits: int = 100, reverse: bool = True) -> ModelDiffResult:
    """ModelDiff of algorithm A against algorithm B from their attribution matrices.

    ``theta_a`` / ``theta_b``: ``[test × train]`` matrices (one per algorithm, already
    averaged over its models), or ``[models × test × train]`` stacks (or lists) of one matrix
    per model — then the group means are compared and the half-split null is computed from
    the models (``n_splits`` random splits); or a path to a ``.npy``/``.safetensors`` file
    (:func:`load_attribution_matrix`). Returns the ``n_components`` directions of A w.r.t.
    B (``result.reverse``: of B w.r.t. A) with their variances under A and B, the residual
    projections, both residual matrices and, from stacks, the null's rank p per direction.
    Deterministic for a given ``seed``; CPU only.
    """
    from threadpoolctl import threadpool_limits

    stack_a, stack_b = _as_stack("theta_a", theta_a), _as_stack("theta_b", theta_b)
    # many small SVDs: one BLAS thread each is far faster than threads fighting over cores
    small = stack_a.shape[1] * stack_a.shape[2] <= 1_000_000
    with threadpool_limits(limits=1 if small else None):
        return _modeldiff(stack_a, stack_b, n_components, seed, n_splits, reverse)


def _modeldiff(stack_a: np.ndarray, stack_b: np.ndarray, n_components: int, seed: int,
               n_splits: int, reverse: bool) -> ModelDiffResult:
    if stack_a.shape[1:] != stack_b.shape[1:]:
        raise ValueError(f"theta_a {stack_a.shape[1:]} and theta_b {stack_b.shape[1:]} must "
                         "cover the same test and training points")
    n_test, n_train = stack_a.shape[1:]
    k = int(n_components)
    if not 1 <= k <= min(n_test, n_train):
        raise ValueError(f"n_components must be in [1, {min(n_test, n_train)}], got "
                         f"{n_components}")
    a = normalize_rows(stack_a.mean(0))
    b = normalize_rows(stack_b.mean(0))
    dirs, proj, evr, r_ab = _directions(a, b, k, seed)
    r_ba = residuals(b, a)
    va, vb = variance_share(a, dirs), variance_share(b, dirs)
    null = _split_null(stack_a, stack_b, k, n_splits, seed, va - vb)
    back = None
    if reverse:
        back = _modeldiff(stack_b, stack_a, k, seed, 0, False)
        if null is not None:  # the null is symmetric in A and B: rank B's gaps in it too
            p = np.array([(1 + np.sum(null.max_gaps >= g - 1e-12)) / (null.n_splits + 1)
                          for g in back.gaps])
            back.null = SplitNull(null.gaps, null.max_gaps, p, null.n_splits, null.groups)
    return ModelDiffResult(dirs, proj, va, vb, evr, r_ab, r_ba, null, back,
                           n_models_a=stack_a.shape[0], n_models_b=stack_b.shape[0])


# --------------------------------------------------------------------------- verification


@dataclass
class TreatmentEffect:
    """Mean change of a class probability under a transformation, over a group's models and
    test points, with a two-way bootstrap CI."""

    mean: float
    ci: tuple[float, float]
    level: float
    per_model: np.ndarray  # [n_models] mean effect of each model
    n_models: int
    n_test: int
    n_bootstrap: int

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for JSON reports."""
        return {"mean": self.mean, "ci": list(self.ci), "level": self.level,
                "per_model": self.per_model.tolist(), "n_models": self.n_models,
                "n_test": self.n_test, "n_bootstrap": self.n_bootstrap}


def treatment_effect(p_original: Any, p_transformed: Any, *, n_bootstrap: int = 2000,
                     level: float = 0.95, seed: int = 0) -> TreatmentEffect:
    """Effect ``p_transformed − p_original`` (each ``[models × test points]``, the
    probability of one class), averaged; percentile CI from resampling models and test
    points independently (test points only when there is one model)."""
    p0 = np.asarray(p_original, dtype=np.float64)
    p1 = np.asarray(p_transformed, dtype=np.float64)
    if p0.ndim == 1:
        p0, p1 = p0[None], p1[None]
    if p0.shape != p1.shape or p0.ndim != 2 or p0.shape[1] < 2:
        raise ValueError(f"p_original {p0.shape} and p_transformed {p1.shape} must both be "
                         "[models × test points] with at least 2 test points")
    if not (0 < level < 1):
        raise ValueError(f"level must be in (0, 1), got {level}")
    d = p1 - p0
    m, n = d.shape
    rng = np.random.default_rng([int(seed), 0x7E1])
    boot = np.empty(int(n_bootstrap))
    for i in range(boot.size):
        rows = rng.integers(0, m, m) if m > 1 else np.zeros(1, dtype=int)
        cols = rng.integers(0, n, n)
        boot[i] = d[np.ix_(rows, cols)].mean()
    alpha = (1 - level) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha]) if boot.size else (np.nan, np.nan)
    return TreatmentEffect(float(d.mean()), (float(lo), float(hi)), float(level),
                           d.mean(1), m, n, int(n_bootstrap))


@dataclass
class EffectDifference:
    """A-minus-B difference of per-model mean effects with a two-sided permutation p over
    model labels."""

    difference: float
    p_value: float
    n_permutations: int
    exact: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for JSON reports."""
        return {"difference": self.difference, "p_value": self.p_value,
                "n_permutations": self.n_permutations, "exact": self.exact}


def effect_difference(per_model_a: Any, per_model_b: Any, *, n_permutations: int = 10000,
                      seed: int = 0) -> EffectDifference:
    """``mean(A) − mean(B)`` of per-model mean effects; p = share of relabellings of the
    pooled models with ``|difference| ≥`` the observed one (all relabellings when there are
    at most ``n_permutations``, else that many random ones plus the observed)."""
    a = np.asarray(per_model_a, dtype=np.float64).ravel()
    b = np.asarray(per_model_b, dtype=np.float64).ravel()
    if a.size < 1 or b.size < 1:
        raise ValueError("each group needs at least one model")
    pooled = np.concatenate([a, b])
    total, na = pooled.sum(), a.size
    obs = a.mean() - b.mean()
    tol = 1e-12 * max(1.0, float(np.abs(pooled).max()))

    def stat(sum_a: np.ndarray) -> np.ndarray:
        return sum_a / na - (total - sum_a) / b.size

    n_all = comb(pooled.size, na)
    if n_all <= n_permutations:
        sums = np.array([pooled[list(c)].sum() for c in combinations(range(pooled.size), na)])
        hits = np.abs(stat(sums)) >= abs(obs) - tol
        return EffectDifference(float(obs), float(hits.mean()), int(n_all), True)
    rng = np.random.default_rng([int(seed), 0x9E2])
    sums = np.array([pooled[rng.permutation(pooled.size)[:na]].sum()
                     for _ in range(int(n_permutations))])
    hits = int(np.sum(np.abs(stat(sums)) >= abs(obs) - tol))
    return EffectDifference(float(obs), (1 + hits) / (n_permutations + 1),
                            int(n_permutations), False)
