"""Two-sample statistics that scale to 100,000+ rows per side with bounded memory.

The exact MMD and energy statistics of :mod:`embedforensics.probes.two_sample` need the
``n × n`` kernel / distance matrix (``n = n_a + n_b``), so they stop at a few thousand rows.
Above that size the probe switches to the estimators here, whose memory grows linearly in
``n``:

* **random-Fourier-feature MMD** (Rahimi & Recht 2007): ``φ(x) = √(2/D) cos(Wx + b)`` with
  ``W ~ N(0, σ⁻² I)``, ``b ~ U(0, 2π)`` approximates the Gaussian kernel of bandwidth ``σ``,
  and ``MMD² ≈ ‖mean φ(A) − mean φ(B)‖²``. With the features centred on their pooled mean
  (``Φ_c``) the difference of means is ``(1/n_a + 1/n_b) Φ_cᵀ a`` for the indicator ``a``
  of the rows labelled 'a', so a block of labelings is one ``k × n`` by ``n × D`` product
  (float64, no cancellation). Memory ``n × D`` float64.
* **sliced energy distance**: energy distance is rotation invariant, and
  ``E|X − Y| = E_θ |θ·(X − Y)| / c_d`` for ``θ`` uniform on the sphere with
  ``c_d = Γ(d/2) / (√π Γ((d+1)/2))``. In one dimension the (V-statistic) energy distance is
  ``2 ∫ (F_A − F_B)²`` over the pooled sorted values, O(n log n). Averaging over ``m``
  random directions and dividing by ``c_d`` estimates the d-dimensional energy distance
  (unbiased for the exact V-statistic as ``m → ∞``). Each direction is sorted once: on the
  gap ``g_i`` after the i-th smallest projection ``F_A − F_B = (1/n_a + 1/n_b) d_i`` with
  ``d_i = c_i − (n_a/n)(i+1)`` and ``c_i`` the running count of 'a' rows in sorted order, so
  a labeling costs one integer cumulative count per direction and ``Σ g_i d_i²`` (a block
  of labelings at once, in cache-sized column chunks). Memory ``n × m``.
* **ridge classifier two-sample test**: out-of-fold accuracy of a least-squares
  (ridge) discriminant on standardised features. Its fitted weights are linear in the
  coded labels, so refitting every fold on a block of permuted label vectors is two
  ``k × n`` by ``n × d`` products (the folds' Gram matrices are factorised once) — an
  exact permutation test *with refits* at any ``n``.

Every statistic is computed by one function of (data, labelings), applied to the observed
labeling and to the permuted ones alike, so the permutation p-value
``(1 + #{T_perm ≥ T_obs}) / (1 + B)`` is valid at any sample size whatever the approximation
error of the statistic; with ``stop_after = h`` the test stops sequentially (Besag & Clifford
1991, :func:`embedforensics.probes.permutation.sequential_p`) once ``h`` permuted statistics
reach the observed one and reports ``h / l`` after ``l`` permutations, also valid.
Permutation ``b`` is drawn from a generator seeded with ``(seed, b)`` (a uniformly random
set of ``n_a`` rows labelled 'a'), so it does not depend on the block size or on where a
sequential test stopped. All other randomness comes from ``seed`` too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.special import gammaln

from embedforensics.probes.permutation import PermutationResult, sequential_p

BLOCK = 64
"""Permutations evaluated per block (bounds the ``BLOCK × n`` label matrices)."""

ROW_CHUNK = 65_536
"""Rows per chunk when features or projections are computed, bounding temporaries."""

BLOCK_BLAS_THREADS: int | None = 1
"""BLAS threads for the permutation blocks' products (None: no limit). A block's products
are ``k × n`` by ``n × D`` with ``k ≤`` :data:`BLOCK` columns, too thin to share between
threads: on the shared 2-core machine two threads cost several times the CPU of one
(benchmarks/results/two_sample_scale.md)."""

SORTED_CHUNK = 2048
"""Sorted positions per chunk of the sliced-energy sums (``BLOCK × chunk`` float64 ≈ 1 MB,
in cache)."""


def permutation_p(observed: float, null: np.ndarray) -> float:
    """``(1 + #{null ≥ observed}) / (1 + B)`` with a tolerance for rounding ties."""
    tol = 1e-12 * max(1.0, abs(observed))
    return (1 + int(np.sum(null >= observed - tol))) / (1 + len(null))


def observed_labels(n: int, n_a: int) -> np.ndarray:
    """The observed labeling as a ``(1, n)`` bool block: the first ``n_a`` rows are 'a'."""
    out = np.zeros((1, n), dtype=bool)
    out[0, :n_a] = True
    return out


def label_block(n: int, n_a: int, seed: int, idx: np.ndarray) -> np.ndarray:
    """Permuted labelings number ``idx`` as a ``(len(idx), n)`` bool block.

    Row ``j`` marks ``n_a`` rows drawn without replacement by a generator seeded with
    ``(seed, idx[j])``: every labeling with ``n_a`` rows of 'a' is equally likely, and
    permutation ``b`` is the same whatever block it is computed in.
    """
    out = np.zeros((len(idx), n), dtype=bool)
    for j, b in enumerate(idx):
        rng = np.random.default_rng([int(seed), int(b)])
        out[j, rng.choice(n, n_a, replace=False, shuffle=False)] = True
    return out


def permutation_test(statistic: Callable[[np.ndarray], np.ndarray], n: int, n_a: int, *,
                     n_permutations: int, seed: int, stop_after: int | None = None,
                     progress: Any = None) -> PermutationResult:
    """Permutation p-value of ``statistic`` (``(k, n)`` bool labelings -> ``k`` values).

    The observed value is ``statistic`` of :func:`observed_labels`; the permuted values are
    the same function of :func:`label_block` blocks, evaluated in blocks of :data:`BLOCK`
    and stopped sequentially after ``stop_after`` exceedances (None: every permutation).
    """
    from contextlib import nullcontext

    from threadpoolctl import threadpool_limits

    with (nullcontext() if BLOCK_BLAS_THREADS is None
          else threadpool_limits(limits=BLOCK_BLAS_THREADS)):
        observed = float(statistic(observed_labels(n, n_a))[0])
        return sequential_p(observed,
                            lambda idx: statistic(label_block(n, n_a, seed, idx)),
                            n_permutations, stop_after=stop_after, batch=BLOCK,
                            progress=progress)


def describe_permutations(test: PermutationResult) -> str:
    """How many permutations a test ran, for a method string or a table cell."""
    if test.stopped_early:
        return (f"{test.n_evaluated} of {test.n_permutations} permutations (stopped "
                f"sequentially at {test.stop_after} exceedances)")
    return f"{test.n_permutations} permutations"


def test_fields(prefix: str, test: PermutationResult) -> dict[str, Any]:
    return {f"{prefix}_p": float(test.p), f"{prefix}_permutations_run": test.n_evaluated,
            f"{prefix}_stopped_early": bool(test.stopped_early)}


def median_bandwidth(Z: np.ndarray, rng: np.random.Generator, max_rows: int = 1000) -> float:
    """Median pairwise Euclidean distance of at most ``max_rows`` seeded pooled rows."""
    from scipy.spatial.distance import pdist

    rows = Z if len(Z) <= max_rows else Z[np.sort(rng.choice(len(Z), max_rows, replace=False))]
    d = pdist(np.asarray(rows, dtype=np.float64))
    h = float(np.median(d)) if d.size else 1.0
    return h if h > 0 else 1.0


def rff_features(Z: np.ndarray, bandwidth: float, n_features: int,
                 rng: np.random.Generator, dtype: Any = np.float32) -> np.ndarray:
    """Random Fourier features (``n × n_features``, ``dtype``) of a Gaussian kernel."""
    d = Z.shape[1]
    W = rng.normal(scale=1.0 / bandwidth, size=(d, n_features))
    b = rng.uniform(0, 2 * np.pi, size=n_features)
    out = np.empty((len(Z), n_features), dtype=dtype)
    scale = math.sqrt(2.0 / n_features)
    for s in range(0, len(Z), ROW_CHUNK):
        chunk = np.asarray(Z[s:s + ROW_CHUNK], dtype=np.float64)
        out[s:s + ROW_CHUNK] = scale * np.cos(chunk @ W + b)
    return out


class RFFMMD:
    """MMD² with random Fourier features for blocks of labelings of the rows of ``Z``."""

    def __init__(self, Z: np.ndarray, n_a: int, n_features: int, rng: np.random.Generator):
        self.n, self.n_a = len(Z), n_a
        self.bandwidth = median_bandwidth(Z, rng)
        Phi = rff_features(Z, self.bandwidth, n_features, rng, dtype=np.float64)
        Phi -= Phi.mean(axis=0)
        self.Phi = Phi
        self.scale = (1.0 / n_a + 1.0 / (self.n - n_a)) ** 2

    def __call__(self, labels: np.ndarray) -> np.ndarray:
        """``‖mean φ(a rows) − mean φ(b rows)‖²`` per labeling (``(k, n)`` bool)."""
        sums = labels.astype(np.float64) @ self.Phi  # k × D: centred feature sums over 'a'
        return self.scale * np.einsum("ij,ij->i", sums, sums)


def rff_mmd_test(A: np.ndarray, B: np.ndarray, *, n_permutations: int, seed: int,
                 n_features: int = 512, stop_after: int | None = None,
                 progress: Any = None) -> dict[str, Any]:
    """MMD² with random Fourier features and a permutation p-value; linear in n."""
    rng = np.random.default_rng(seed)
    mmd = RFFMMD(np.concatenate([A, B]), len(A), n_features, rng)
    test = permutation_test(mmd, mmd.n, len(A), n_permutations=n_permutations, seed=seed,
                            stop_after=stop_after, progress=progress)
    return {"mmd2": test.observed, **test_fields("mmd", test), "bandwidth": mmd.bandwidth,
            "mmd_method": f"random Fourier features (D={n_features})"}


def sphere_mean_abs(d: int) -> float:
    """``c_d = E|θ₁|`` for ``θ`` uniform on the unit sphere in ``R^d``."""
    return math.exp(gammaln(d / 2) - gammaln((d + 1) / 2)) / math.sqrt(math.pi)


class SlicedEnergy:
    """Sliced energy distance between the 'a' and 'b' rows of ``A ∪ B`` for blocks of
    labelings; each random direction is sorted once."""

    def __init__(self, A: np.ndarray, B: np.ndarray, n_directions: int,
                 rng: np.random.Generator):
        n_a, n_b = len(A), len(B)
        self.n, self.n_a, self.m = n_a + n_b, n_a, n_directions
        d = A.shape[1]
        theta = rng.normal(size=(d, n_directions))
        theta /= np.linalg.norm(theta, axis=0, keepdims=True)
        self.theta = theta
        proj = np.empty((self.n, n_directions), dtype=np.float64)
        for offset, part in ((0, A), (n_a, B)):
            for s in range(0, len(part), ROW_CHUNK):
                chunk = np.asarray(part[s:s + ROW_CHUNK], dtype=np.float64)
                proj[offset + s:offset + s + len(chunk)] = chunk @ theta
        order = np.argsort(proj, axis=0, kind="stable")
        sorted_proj = np.take_along_axis(proj, order, axis=0)
        del proj
        # per direction, contiguous: the rows in sorted order (all but the largest) and the
        # gaps after them
        self.order = np.ascontiguousarray(order[:-1].T)               # m × (n-1)
        self.gaps = np.ascontiguousarray(np.diff(sorted_proj, axis=0).T)  # m × (n-1)
        self.expected = (n_a / self.n) * np.arange(1, self.n)          # (n_a/n)(i+1)
        alpha = 1.0 / n_a + 1.0 / n_b
        self.scale = 2.0 * alpha ** 2 / n_directions / sphere_mean_abs(d)

    def __call__(self, labels: np.ndarray) -> np.ndarray:
        """Sliced energy per labeling (``(k, n)`` bool): ``2 ∫ (F_A − F_B)²`` averaged over
        the directions, divided by ``c_d``.

        The labelings are bit-packed per row (``n × ⌈k/8⌉`` bytes), so gathering them in a
        direction's sorted order reads a few bytes per row from a small array instead of
        ``k`` scattered bytes; each chunk is unpacked by shifts into ``k × chunk`` 0/1 values.
        """
        labels = np.asarray(labels, dtype=bool)
        k, width = labels.shape[0], SORTED_CHUNK
        packed = np.ascontiguousarray(np.packbits(labels, axis=0).T)  # n × ⌈k/8⌉, bit 7 first
        n_bytes = packed.shape[1]
        shifts = np.arange(7, -1, -1, dtype=np.uint8)[None, :, None]
        bits = np.empty((n_bytes, 8, width), dtype=np.uint8)
        acc = np.zeros(k)
        counts = np.empty((k, width), dtype=np.int32)
        diff = np.empty((k, width))
        carry = np.empty((k, 1), dtype=np.int32)
        for j in range(self.m):
            order, gaps = self.order[j], self.gaps[j]
            carry[:] = 0
            for s in range(0, self.n - 1, width):
                e = min(self.n - 1, s + width)
                c, f, b = counts[:, :e - s], diff[:, :e - s], bits[:, :, :e - s]
                gathered = np.ascontiguousarray(packed[order[s:e]].T)[:, None, :]
                np.right_shift(gathered, shifts, out=b)
                np.bitwise_and(b, 1, out=b)                 # row 8q + r: bit 7 − r of byte q
                np.cumsum(b.reshape(8 * n_bytes, -1)[:k], axis=1, dtype=np.int32, out=c)
                c += carry
                carry[:, 0] = c[:, -1]
                np.subtract(c, self.expected[s:e], out=f)   # d_i, exact integers minus n_a p/n
                np.square(f, out=f)
                acc += f @ gaps[s:e]
        return acc * self.scale


def sliced_energy_test(A: np.ndarray, B: np.ndarray, *, n_permutations: int, seed: int,
                       n_directions: int = 64, stop_after: int | None = None,
                       progress: Any = None) -> dict[str, Any]:
    """Energy distance from random 1-D projections, with a permutation p-value."""
    energy = SlicedEnergy(A, B, n_directions, np.random.default_rng(seed))
    test = permutation_test(energy, energy.n, len(A), n_permutations=n_permutations,
                            seed=seed, stop_after=stop_after, progress=progress)
    return {"energy": test.observed, **test_fields("energy", test),
            "energy_method": f"sliced energy distance ({n_directions} random directions)"}


class RidgeC2ST:
    """Out-of-fold accuracy of a ridge discriminant for blocks of labelings of ``X``'s rows.

    Folds are a seeded ``KFold`` of the rows (label-free, so the statistic is a fixed
    function of the labels, as the permutation test needs). In each fold the features are
    standardised with the training rows' mean and sd, the labels coded ``+1`` ('a') and
    ``−1``, and ``w = (ZᵀZ + λI)⁻¹ Zᵀ(t − t̄)`` with ``λ = ridge × n_train``; a test row is
    called 'a' when ``t̄ + z·w > 0``. For two labels the least-squares direction is Fisher's
    discriminant, so this is a ridge-regularised LDA.

    The rows are held grouped by fold; each fold's Gram matrix and sum are computed once,
    a training set's are sums of the other folds'. For a block of labelings ``Xᵀt`` per
    fold is one product and the held-out scores another, for all folds and labelings.
    """

    def __init__(self, X: np.ndarray, n_folds: int, seed: int, ridge: float = 1.0,
                 label_rows: np.ndarray | None = None):
        """``label_rows[i]`` is the row of ``X`` that column ``i`` of a labeling labels
        (None: column ``i`` labels row ``i``)."""
        from scipy.linalg import cho_factor
        from sklearn.model_selection import KFold

        X = np.asarray(X)
        self.n, d = X.shape
        folds = [test for _, test in
                 KFold(n_splits=n_folds, shuffle=True, random_state=seed % 2**32).split(X)]
        self.rows = np.concatenate(folds)            # row order grouped by test fold
        bounds = np.cumsum([0] + [len(f) for f in folds])
        self.slices = [slice(int(a), int(b)) for a, b in zip(bounds, bounds[1:], strict=False)]
        self.X = np.empty((self.n, d))
        for s in range(0, self.n, ROW_CHUNK):
            self.X[s:s + ROW_CHUNK] = X[self.rows[s:s + ROW_CHUNK]]
        # labeling column of each row in fold order
        self.columns = (self.rows if label_rows is None
                        else np.argsort(np.asarray(label_rows))[self.rows])
        grams = [self.X[sl].T @ self.X[sl] for sl in self.slices]
        sums = [self.X[sl].sum(axis=0) for sl in self.slices]
        self.folds = []
        for f, sl in enumerate(self.slices):
            n_train = self.n - (sl.stop - sl.start)
            total = sum(sums[h] for h in range(n_folds) if h != f)
            mean = total / n_train
            gram = sum(grams[h] for h in range(n_folds) if h != f)
            gram = gram - n_train * np.outer(mean, mean)    # centred scatter
            sd = np.sqrt(np.maximum(np.diag(gram) / n_train, 0.0))
            sd[sd == 0] = 1.0
            gram /= np.outer(sd, sd)                        # scatter of standardised features
            gram[np.diag_indices_from(gram)] += ridge * n_train
            self.folds.append((n_train, total, mean, sd, cho_factor(gram, lower=True)))

    def __call__(self, labels: np.ndarray) -> np.ndarray:
        """Out-of-fold accuracy per labeling (``(k, n)`` bool)."""
        from scipy.linalg import cho_solve

        grouped = np.take(labels, self.columns, axis=1)           # k × n, fold order
        t = np.where(grouped, 1.0, -1.0)
        xt = [t[:, sl] @ self.X[sl] for sl in self.slices]        # per fold: k × d
        tsum = [t[:, sl].sum(axis=1) for sl in self.slices]
        xt_all, tsum_all = sum(xt), sum(tsum)
        correct = np.zeros(labels.shape[0])
        for f, (sl, (n_train, total, mean, sd, chol)) in enumerate(
                zip(self.slices, self.folds, strict=True)):
            tbar = (tsum_all - tsum[f]) / n_train                 # k
            # Zᵀ(t − t̄) = diag(1/sd) (X_trᵀt − t̄ Σ_tr x): the mean term vanishes as
            # Σ(t − t̄) = 0.
            rhs = (xt_all - xt[f]) - tbar[:, None] * total[None, :]  # k × d
            w = cho_solve(chol, (rhs / sd).T).T / sd                 # k × d
            score = (self.X[sl] @ w.T).T + (tbar - w @ mean)[:, None]
            correct += np.sum((score > 0) == grouped[:, sl], axis=1)
        return correct / self.n


def ridge_c2st(X: np.ndarray, is_a: np.ndarray, *, n_folds: int, n_permutations: int,
               seed: int, ridge: float = 1.0, stop_after: int | None = None,
               progress: Any = None) -> dict[str, Any]:
    """Classifier two-sample test: out-of-fold accuracy of a ridge discriminant
    (:class:`RidgeC2ST`) with an exact permutation p-value (the folds are refitted for
    every permuted labeling)."""
    is_a = np.asarray(is_a, dtype=bool)
    # permutation_test's observed labeling marks the first n_a columns 'a': list the
    # observed 'a' rows first
    c2st = RidgeC2ST(X, n_folds, seed, ridge,
                     label_rows=np.r_[np.flatnonzero(is_a), np.flatnonzero(~is_a)])
    n_a = int(is_a.sum())
    test = permutation_test(c2st, c2st.n, n_a, n_permutations=n_permutations, seed=seed,
                            stop_after=stop_after, progress=progress)
    return {"c2st_accuracy": test.observed, **test_fields("c2st", test),
            "c2st_null_mean": float(test.null.mean()) if len(test.null) else float("nan"),
            "c2st_n": c2st.n}
