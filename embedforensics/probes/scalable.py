"""Two-sample statistics that scale to 100,000+ rows per side with bounded memory.

The exact MMD and energy statistics of :mod:`embedforensics.probes.two_sample` need the
``n × n`` kernel / distance matrix (``n = n_a + n_b``), so they stop at a few thousand rows.
Above that size the probe switches to the estimators here, whose memory grows linearly in
``n``:

* **random-Fourier-feature MMD** (Rahimi & Recht 2007): ``φ(x) = √(2/D) cos(Wx + b)`` with
  ``W ~ N(0, σ⁻² I)``, ``b ~ U(0, 2π)`` approximates the Gaussian kernel of bandwidth ``σ``,
  and ``MMD² ≈ ‖mean φ(A) − mean φ(B)‖²``. A relabelling ``s`` gives ``‖Φᵀs‖²``, so a block
  of permutations is one ``D × n`` by ``n × k`` product. Memory ``n × D`` float32.
* **sliced energy distance**: energy distance is rotation invariant, and
  ``E|X − Y| = E_θ |θ·(X − Y)| / c_d`` for ``θ`` uniform on the sphere with
  ``c_d = Γ(d/2) / (√π Γ((d+1)/2))``. In one dimension the (V-statistic) energy distance is
  ``2 ∫ (F_A − F_B)²`` over the pooled sorted values, O(n log n). Averaging over ``m``
  random directions and dividing by ``c_d`` estimates the d-dimensional energy distance
  (unbiased for the exact V-statistic as ``m → ∞``). Permutations reuse each direction's
  sort order: only the cumulative label counts change. Memory ``n × m``.
* **ridge classifier two-sample test**: out-of-fold accuracy of a least-squares
  (ridge) discriminant on standardised features. Its fitted weights are linear in the
  coded labels, so refitting on a block of permuted label vectors is a few matrix products
  per fold — an exact permutation test *with refits* at any ``n``.

Every p-value is ``(1 + #{T_perm ≥ T_obs}) / (1 + B)``: the statistic is a fixed function of
the data and the labels, so the test is valid at any sample size whatever the
approximation error of the statistic. All randomness comes from the ``seed``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import gammaln

BLOCK = 64
"""Permutations evaluated per block (bounds the ``n × BLOCK`` label matrix)."""

ROW_CHUNK = 65_536
"""Rows per chunk when features or projections are computed, bounding temporaries."""


def permutation_p(observed: float, null: np.ndarray) -> float:
    """``(1 + #{null ≥ observed}) / (1 + B)`` with a tolerance for rounding ties."""
    tol = 1e-12 * max(1.0, abs(observed))
    return (1 + int(np.sum(null >= observed - tol))) / (1 + len(null))


def _label_blocks(n: int, n_a: int, n_permutations: int, rng: np.random.Generator):
    """Yield boolean ``(n, k)`` blocks: column j marks the rows of 'a' in permutation j."""
    for start in range(0, n_permutations, BLOCK):
        k = min(BLOCK, n_permutations - start)
        block = np.zeros((n, k), dtype=bool)
        for j in range(k):
            block[rng.permutation(n)[:n_a], j] = True
        yield block


def median_bandwidth(Z: np.ndarray, rng: np.random.Generator, max_rows: int = 1000) -> float:
    """Median pairwise Euclidean distance of at most ``max_rows`` seeded pooled rows."""
    from scipy.spatial.distance import pdist

    rows = Z if len(Z) <= max_rows else Z[np.sort(rng.choice(len(Z), max_rows, replace=False))]
    d = pdist(np.asarray(rows, dtype=np.float64))
    h = float(np.median(d)) if d.size else 1.0
    return h if h > 0 else 1.0


def rff_features(Z: np.ndarray, bandwidth: float, n_features: int,
                 rng: np.random.Generator) -> np.ndarray:
    """Random Fourier features (float32, ``n × n_features``) of a Gaussian kernel."""
    d = Z.shape[1]
    W = rng.normal(scale=1.0 / bandwidth, size=(d, n_features))
    b = rng.uniform(0, 2 * np.pi, size=n_features)
    out = np.empty((len(Z), n_features), dtype=np.float32)
    scale = math.sqrt(2.0 / n_features)
    for s in range(0, len(Z), ROW_CHUNK):
        chunk = np.asarray(Z[s:s + ROW_CHUNK], dtype=np.float64)
        out[s:s + ROW_CHUNK] = scale * np.cos(chunk @ W + b)
    return out


def rff_mmd_test(A: np.ndarray, B: np.ndarray, *, n_permutations: int, seed: int,
                 n_features: int = 512) -> dict[str, float]:
    """MMD² with random Fourier features and a permutation p-value; linear in n."""
    rng = np.random.default_rng(seed)
    n_a, n_b = len(A), len(B)
    n = n_a + n_b
    Z = np.concatenate([A, B])
    bandwidth = median_bandwidth(Z, rng)
    Phi = rff_features(Z, bandwidth, n_features, rng)
    del Z
    w_a, w_b = 1.0 / n_a, 1.0 / n_b
    diff = Phi[:n_a].mean(axis=0, dtype=np.float64) - Phi[n_a:].mean(axis=0, dtype=np.float64)
    observed = float(diff @ diff)
    total = Phi.sum(axis=0, dtype=np.float64)
    null = np.empty(n_permutations)
    for i, block in enumerate(_label_blocks(n, n_a, n_permutations, rng)):
        sum_a = (Phi.T @ block.astype(np.float32)).astype(np.float64)  # D × k
        t = sum_a * w_a - (total[:, None] - sum_a) * w_b
        null[i * BLOCK:i * BLOCK + block.shape[1]] = np.einsum("ij,ij->j", t, t)
    return {"mmd2": observed, "mmd_p": permutation_p(observed, null), "bandwidth": bandwidth,
            "mmd_method": f"random Fourier features (D={n_features})"}


def sphere_mean_abs(d: int) -> float:
    """``c_d = E|θ₁|`` for ``θ`` uniform on the unit sphere in ``R^d``."""
    return math.exp(gammaln(d / 2) - gammaln((d + 1) / 2)) / math.sqrt(math.pi)


def sliced_energy_test(A: np.ndarray, B: np.ndarray, *, n_permutations: int, seed: int,
                       n_directions: int = 64) -> dict[str, float]:
    """Energy distance from random 1-D projections, with a permutation p-value."""
    rng = np.random.default_rng(seed)
    n_a, n_b = len(A), len(B)
    n = n_a + n_b
    d = A.shape[1]
    theta = rng.normal(size=(d, n_directions))
    theta /= np.linalg.norm(theta, axis=0, keepdims=True)
    proj = np.empty((n, n_directions), dtype=np.float64)
    for offset, part in ((0, A), (n_a, B)):
        for s in range(0, len(part), ROW_CHUNK):
            chunk = np.asarray(part[s:s + ROW_CHUNK], dtype=np.float64)
            proj[offset + s:offset + s + len(chunk)] = chunk @ theta
    order = np.argsort(proj, axis=0, kind="stable")
    sorted_proj = np.take_along_axis(proj, order, axis=0)
    gaps = np.diff(sorted_proj, axis=0)  # (n-1) × m
    del proj, sorted_proj
    c_d = sphere_mean_abs(d)

    def energy_of(is_a: np.ndarray) -> np.ndarray:
        """Sliced energy for label columns ``is_a`` (n × k bool) -> k values."""
        k = is_a.shape[1]
        acc = np.zeros(k)
        # labelings as contiguous rows and integer running counts: the cumulative sums,
        # the bulk of the work, run about 10x faster than float64 sums down columns
        rows_a = np.ascontiguousarray(is_a.T)
        position = np.arange(1, n)[None, :]
        for j in range(n_directions):
            cum = np.cumsum(rows_a[:, order[:-1, j]], axis=1, dtype=np.int32)
            fa = cum / n_a
            fb = (position - cum) / n_b
            acc += 2.0 * (((fa - fb) ** 2) @ gaps[:, j])
        return acc / n_directions / c_d

    observed_mask = np.zeros((n, 1), dtype=bool)
    observed_mask[:n_a] = True
    observed = float(energy_of(observed_mask)[0])
    null = np.empty(n_permutations)
    for i, block in enumerate(_label_blocks(n, n_a, n_permutations, rng)):
        null[i * BLOCK:i * BLOCK + block.shape[1]] = energy_of(block)
    return {"energy": observed, "energy_p": permutation_p(observed, null),
            "energy_method": f"sliced energy distance ({n_directions} random directions)"}


def ridge_c2st(X: np.ndarray, is_a: np.ndarray, *, n_folds: int, n_permutations: int,
               seed: int, ridge: float = 1.0) -> dict[str, float]:
    """Classifier two-sample test: out-of-fold accuracy of a ridge discriminant with an
    exact permutation p-value (the folds are refitted for every permuted labelling).

    Folds are a seeded ``KFold`` of the rows (label-free, so the statistic is a fixed
    function of the labels, as the permutation test needs). In each fold the features are
    standardised with the training rows' mean and sd, the labels coded ``+1`` ('a') and
    ``−1``, and ``w = (ZᵀZ + λI)⁻¹ Zᵀ(t − t̄)`` with ``λ = ridge × n_train``; a test row is
    called 'a' when ``t̄ + z·w > 0``. For two labels the least-squares direction is Fisher's
    discriminant, so this is a ridge-regularised LDA.
    """
    from sklearn.model_selection import KFold

    X = np.asarray(X)
    n = len(X)
    n_a = int(is_a.sum())
    rng = np.random.default_rng(seed)
    folds = list(KFold(n_splits=n_folds, shuffle=True, random_state=seed % 2**32).split(X))
    from scipy.linalg import cho_solve

    prepared = []
    for train, test in folds:
        mean = np.zeros(X.shape[1])
        gram = np.zeros((X.shape[1], X.shape[1]))
        for s in range(0, len(train), ROW_CHUNK):
            chunk = np.asarray(X[train[s:s + ROW_CHUNK]], dtype=np.float64)
            mean += chunk.sum(axis=0)
            gram += chunk.T @ chunk
        mean /= len(train)
        gram -= len(train) * np.outer(mean, mean)  # centred scatter
        sd = np.sqrt(np.maximum(np.diag(gram) / len(train), 0.0))
        sd[sd == 0] = 1.0
        gram /= np.outer(sd, sd)  # scatter of the standardised features
        gram[np.diag_indices_from(gram)] += ridge * len(train)
        prepared.append((train, test, mean, sd, np.linalg.cholesky(gram)))

    def project(rows: np.ndarray, right: np.ndarray) -> np.ndarray:
        """``X[rows] @ right`` in row chunks."""
        out = np.empty((len(rows), right.shape[1]))
        for s in range(0, len(rows), ROW_CHUNK):
            out[s:s + ROW_CHUNK] = np.asarray(X[rows[s:s + ROW_CHUNK]], dtype=np.float64) @ right
        return out

    def accuracy(labels: np.ndarray) -> np.ndarray:
        """Out-of-fold accuracy for label columns (n × k bool) -> k values."""
        t = np.where(labels, 1.0, -1.0)
        correct = np.zeros(labels.shape[1])
        for train, test, mean, sd, chol in prepared:
            ttr = t[train]
            tbar = ttr.mean(axis=0)
            # Zᵀ(t − t̄) = diag(1/sd) Xᵀ(t − t̄): the mean term vanishes as Σ(t − t̄) = 0.
            rhs = np.zeros((X.shape[1], labels.shape[1]))
            for s in range(0, len(train), ROW_CHUNK):
                rows = train[s:s + ROW_CHUNK]
                rhs += np.asarray(X[rows], dtype=np.float64).T @ (ttr[s:s + ROW_CHUNK] - tbar)
            w = cho_solve((chol, True), rhs / sd[:, None]) / sd[:, None]
            score = tbar + project(test, w) - mean @ w
            correct += np.sum((score > 0) == labels[test], axis=0)
        return correct / n

    observed = float(accuracy(is_a.reshape(-1, 1))[0])
    null = np.empty(n_permutations)
    for i, block in enumerate(_label_blocks(n, n_a, n_permutations, rng)):
        null[i * BLOCK:i * BLOCK + block.shape[1]] = accuracy(block)
    return {"c2st_accuracy": observed, "c2st_p": permutation_p(observed, null),
            "c2st_null_mean": float(null.mean()), "c2st_n": n}
