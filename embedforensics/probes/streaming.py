"""Out-of-core PCA, LDA and logistic regression for embeddings larger than memory.

The probes hand scikit-learn the whole matrix. For 1,000,000 × 1,024 float32 embeddings
(4 GB, often a memory-mapped file) these functions read it in row chunks and keep only
``d × d`` accumulators, so memory is ``O(chunk × d + d²)`` whatever ``n`` is:

* :func:`streaming_pca` — exact PCA from the streamed covariance (float64 sums of
  ``xᵀx`` per block, shifted by the first chunk's mean for numerical stability), then
  ``eigh``; equal to ``sklearn.decomposition.PCA(svd_solver="covariance_eigh")``. The block
  products are BLAS ``syrk`` (half the flops of a general product); float32 inputs of at
  least ``FLOAT32_CELLS`` cells are multiplied in float32 on ``BLOCK_ROWS``-row blocks and
  summed in float64 (on 200,000 × 1,024 real-scale data: largest covariance error 5e-8 of
  its largest entry, eigenvalues to 2e-10 relative), which runs at the machine's float32
  rate instead of converting every chunk to float64 (benchmarks/README.md, scale section).
* :func:`streaming_lda` — per-label counts, sums and the pooled scatter in one pass; the
  within-label scatter is the total scatter minus the between-label part; the discriminant
  directions solve the generalised eigenproblem ``S_b v = λ S_w v`` (optionally with a
  fixed shrinkage of ``S_w`` toward a scaled identity). Its decision rule equals
  ``LinearDiscriminantAnalysis(solver="lsqr", shrinkage=s)`` for a fixed ``s``.
* :func:`streaming_logistic` — L2-regularised binary logistic regression on standardised
  features with scipy's L-BFGS, each function/gradient evaluation one pass over the
  chunks; the same objective as ``LogisticRegression(C=C)`` behind a ``StandardScaler``.

``X`` is anything with ``shape`` and row slicing (numpy array, ``np.memmap``, or a reader
that returns a chunk for ``X[start:stop]``). :func:`row_chunks` reads the next chunk in a
background thread while the caller computes on the current one (file reads and numpy
copies release the GIL), and advises a memory map that it will be read sequentially.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

CHUNK_ROWS = 65_536
"""Rows read from the input at a time."""

BLOCK_ROWS = 16_384
"""Rows per float32 ``syrk`` product before its sum joins the float64 accumulator."""

TRANSFORM_CHUNK_BYTES = 64 << 20
"""Bytes of one float64 chunk when projecting rows (bounds the float64 temporaries)."""

FLOAT32_CELLS = 1 << 24
"""Float32 inputs with at least this many cells (16,384 × 1,024) get float32 products."""


def _advise_sequential(X: Any) -> None:
    """Tell the kernel a memory-mapped ``X`` will be read front to back (more read-ahead);
    a no-op for anything else."""
    import mmap

    base, seen = X, 0
    while base is not None and seen < 32:
        if isinstance(base, mmap.mmap):
            with contextlib.suppress(AttributeError, OSError, ValueError):
                base.madvise(mmap.MADV_SEQUENTIAL)
            return
        base = getattr(base, "_mmap", None) or getattr(base, "base", None)
        seen += 1


def page_releaser(X: Any) -> Callable[[int, int], None]:
    """``release(start, stop)``: drop rows ``start:stop`` of a memory-mapped, C-contiguous
    ``X`` from this process's mapping (``madvise(MADV_DONTNEED)``; the file's pages stay in
    the page cache and a later read faults them back in). A no-op for anything else and for
    copy-on-write maps (``mode="c"``, whose private changes it would discard)."""
    import contextlib
    import mmap

    def nothing(start: int, stop: int) -> None:
        return None

    if not hasattr(mmap, "MADV_DONTNEED") or not getattr(X, "flags", None) \
            or not X.flags.c_contiguous or X.ndim != 2:
        return nothing
    base, seen, mode = X, 0, None
    while base is not None and seen < 32 and not isinstance(base, mmap.mmap):
        mode = getattr(base, "mode", mode)
        base = getattr(base, "_mmap", None) or getattr(base, "base", None)
        seen += 1
    if not isinstance(base, mmap.mmap) or mode not in ("r", "r+", "w+", "readonly",
                                                       "readwrite", "write"):
        return nothing
    mm = base
    try:
        origin = np.frombuffer(mm, dtype=np.uint8).ctypes.data
    except (TypeError, ValueError):
        return nothing
    page = mmap.PAGESIZE
    first = X.ctypes.data - origin
    row_bytes = X.strides[0]

    def release(start: int, stop: int) -> None:
        lo = (first + start * row_bytes) // page * page
        hi = min(len(mm), -(-(first + stop * row_bytes) // page) * page)
        if hi > lo >= 0:
            with contextlib.suppress(OSError, ValueError):
                mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)

    return release


def row_chunks(X: Any, chunk_rows: int = CHUNK_ROWS, dtype: Any = np.float64,
               prefetch: bool = True) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, rows)`` chunks of ``X`` as in-memory arrays of ``dtype`` (``None``: keep a
    float32 or float64 input's own type, else float64).

    With ``prefetch`` the next chunk is read by a worker thread while the caller computes
    on the current one, so reading a file from disk overlaps the matrix products. Once a
    chunk of a memory map is copied its pages are released (:func:`page_releaser`), so the
    process's resident size does not grow to the file's.
    """
    from concurrent.futures import ThreadPoolExecutor

    n = X.shape[0]
    _advise_sequential(X)

    release = page_releaser(X)

    def read(start: int) -> np.ndarray:
        stop = min(n, start + chunk_rows)
        chunk = X[start:stop]
        want = dtype
        if want is None:
            want = chunk.dtype if chunk.dtype in (np.float32, np.float64) else np.float64
        out = np.array(chunk, dtype=want)  # a copy: the read happens here, not later
        release(start, stop)  # the copy is all we need: hand the map's pages back
        return out

    starts = range(0, n, chunk_rows)
    if not prefetch or len(starts) < 2:
        for start in starts:
            yield start, read(start)
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(read, starts[0])
        for i, start in enumerate(starts):
            chunk = pending.result()
            if i + 1 < len(starts):
                pending = pool.submit(read, starts[i + 1])
            yield start, chunk


def _chunks(X: Any, chunk_rows: int) -> Iterator[tuple[int, np.ndarray]]:
    return row_chunks(X, chunk_rows, np.float64)


def syrk_into(acc: np.ndarray, c: np.ndarray, block_rows: int) -> None:
    """``acc += cᵀc`` (upper triangle only) with BLAS ``syrk`` in ``c``'s precision, in
    blocks of ``block_rows`` rows each summed into the float64 ``acc``."""
    from scipy.linalg.blas import get_blas_funcs

    syrk = get_blas_funcs("syrk", dtype=c.dtype)
    for start in range(0, len(c), block_rows):
        block = c[start:start + block_rows]
        acc += syrk(1.0, block.T, trans=0)  # block.T is Fortran-ordered: no copy


def symmetrised(upper: np.ndarray) -> np.ndarray:
    return np.triu(upper) + np.triu(upper, 1).T


@dataclass
class Moments:
    """Row count, mean and centred scatter ``Σ (x − mean)(x − mean)ᵀ`` of streamed rows."""

    n: int
    mean: np.ndarray
    scatter: np.ndarray


def streaming_moments(X: Any, chunk_rows: int = CHUNK_ROWS, precision: str = "auto"
                      ) -> Moments:
    """Mean and scatter in one pass (sums shifted by the first chunk's mean).

    ``precision``: ``"float64"`` multiplies in double precision; ``"float32"`` multiplies
    float32 rows in single precision on ``BLOCK_ROWS`` blocks summed in float64; ``"auto"``
    takes float32 for float32 inputs of at least ``FLOAT32_CELLS`` cells.
    """
    if precision not in ("auto", "float32", "float64"):
        raise ValueError(f"precision must be 'auto', 'float32' or 'float64'; got {precision!r}")
    n_all, d = X.shape
    native = getattr(X, "dtype", None)
    single = precision == "float32" or (
        precision == "auto" and native == np.float32 and n_all * d >= FLOAT32_CELLS)
    work = np.float32 if single else np.float64
    shift = None
    total = np.zeros(d)
    cross = np.zeros((d, d))
    n = 0
    for _, chunk in row_chunks(X, chunk_rows, work):
        if shift is None:
            shift = chunk.mean(axis=0, dtype=np.float64).astype(work)
        c = np.subtract(chunk, shift, out=chunk)
        total += c.sum(axis=0, dtype=np.float64)
        syrk_into(cross, c, BLOCK_ROWS if single else len(c))
        n += len(c)
    if shift is None:
        raise ValueError("streaming_moments needs at least one row")
    mean_c = total / n
    scatter = symmetrised(cross) - n * np.outer(mean_c, mean_c)
    return Moments(n=n, mean=shift.astype(np.float64) + mean_c, scatter=scatter)


@dataclass
class StreamingPCA:
    mean_: np.ndarray
    components_: np.ndarray          # k × d, rows are unit vectors, sign-fixed
    explained_variance_: np.ndarray
    explained_variance_ratio_: np.ndarray

    def transform(self, X: Any, chunk_rows: int | None = None) -> np.ndarray:
        """Scores (n × k) of the rows of ``X``, read in float64 row chunks of at most
        ``TRANSFORM_CHUNK_BYTES`` (a memory map is never held whole)."""
        d = X.shape[1]
        rows = chunk_rows or max(256, TRANSFORM_CHUNK_BYTES // (8 * max(d, 1)))
        out = np.empty((X.shape[0], len(self.components_)))
        for start, chunk in row_chunks(X, rows, np.float64):
            out[start:start + len(chunk)] = (chunk - self.mean_) @ self.components_.T
        return out


def streaming_pca(X: Any, n_components: int, chunk_rows: int = CHUNK_ROWS,
                  precision: str = "auto") -> StreamingPCA:
    """Exact PCA from the streamed covariance; component signs follow scikit-learn's
    ``svd_flip`` convention (largest-magnitude loading of each component positive).
    ``precision`` as in :func:`streaming_moments`."""
    m = streaming_moments(X, chunk_rows, precision)
    cov = m.scatter / (m.n - 1)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1][:n_components]
    comps = vectors[:, order].T
    signs = np.sign(comps[np.arange(len(comps)), np.argmax(np.abs(comps), axis=1)])
    comps *= signs[:, None]
    total = float(np.trace(cov))
    return StreamingPCA(mean_=m.mean, components_=comps, explained_variance_=values[order],
                        explained_variance_ratio_=values[order] / total)


@dataclass
class StreamingLDA:
    classes_: np.ndarray
    means_: np.ndarray               # k × d
    priors_: np.ndarray
    covariance_: np.ndarray          # pooled within-label covariance (after shrinkage)
    coef_: np.ndarray                # k × d (or 1 × d for two labels), as sklearn
    intercept_: np.ndarray
    scalings_: np.ndarray            # d × (k − 1) discriminant directions

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        scores = np.asarray(X, dtype=np.float64) @ self.coef_.T + self.intercept_
        return scores[:, 0] if scores.shape[1] == 1 else scores

    def predict(self, X: np.ndarray) -> np.ndarray:
        s = self.decision_function(X)
        idx = (s > 0).astype(int) if s.ndim == 1 else np.argmax(s, axis=1)
        return self.classes_[idx]


def streaming_lda(X: Any, y: np.ndarray, shrinkage: float = 0.0,
                  chunk_rows: int = CHUNK_ROWS) -> StreamingLDA:
    """LDA from streamed per-label sums and the pooled scatter (one pass over ``X``).

    The within-label covariance is ``S_w / n``, the prior-weighted mean of the per-label
    maximum-likelihood covariances that scikit-learn's ``lsqr``/``eigen`` solvers use;
    ``shrinkage`` in [0, 1] mixes it with ``mean(diag) × I`` exactly as their float
    ``shrinkage`` does (``sklearn.covariance.shrunk_covariance`` is linear in the matrix).
    """
    y = np.asarray(y)
    classes, codes = np.unique(y, return_inverse=True)
    k, d = len(classes), X.shape[1]
    counts = np.bincount(codes, minlength=k).astype(float)
    sums = np.zeros((k, d))
    shift = None
    cross = np.zeros((d, d))
    for start, chunk in _chunks(X, chunk_rows):
        if shift is None:
            shift = chunk.mean(axis=0)
        c = chunk - shift
        cross += c.T @ c
        onehot = np.eye(k)[codes[start:start + len(c)]]  # rows × k
        sums += onehot.T @ c
    n = counts.sum()
    means_c = sums / counts[:, None]
    within = cross - (means_c.T * counts) @ means_c     # Σ_k Σ_i (x − μ_k)(x − μ_k)ᵀ
    cov = within / n
    if shrinkage:
        cov = (1 - shrinkage) * cov + shrinkage * np.trace(cov) / d * np.eye(d)
    means = means_c + shift
    priors = counts / n
    coef = np.linalg.solve(cov, means.T).T                # k × d
    intercept = -0.5 * np.einsum("kd,kd->k", means, coef) + np.log(priors)
    if k == 2:
        coef = coef[1:] - coef[:1]
        intercept = intercept[1:] - intercept[:1]
    grand = (counts @ means) / n
    between = ((means - grand).T * counts) @ (means - grand)
    from scipy.linalg import eigh

    values, vectors = eigh(between, cov)
    scalings = vectors[:, np.argsort(values)[::-1][:k - 1]]
    return StreamingLDA(classes_=classes, means_=means, priors_=priors, covariance_=cov,
                        coef_=coef, intercept_=intercept, scalings_=scalings)


@dataclass
class StreamingLogistic:
    classes_: np.ndarray
    mean_: np.ndarray
    scale_: np.ndarray
    coef_: np.ndarray                # on standardised features, like the sklearn pipeline
    intercept_: float
    n_iter_: int
    converged_: bool
    passes_: int

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        Z = (np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_
        return Z @ self.coef_ + self.intercept_

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[(self.decision_function(X) > 0).astype(int)]


def streaming_logistic(X: Any, y: np.ndarray, C: float = 1.0, max_iter: int = 100,
                       tol: float = 1e-6, chunk_rows: int = CHUNK_ROWS,
                       moments: Moments | None = None) -> StreamingLogistic:
    """Binary logistic regression on standardised features, out of core.

    Minimises ``Σ log(1 + exp(−t·(zᵀw + b))) + ‖w‖² / (2C)`` (``t = ±1``), the objective of
    ``LogisticRegression(C=C)`` (intercept unpenalised), with L-BFGS-B; each evaluation is
    one pass over the chunks. ``moments`` (from :func:`streaming_moments`) saves the
    standardisation pass when already computed.
    """
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit

    y = np.asarray(y)
    classes, codes = np.unique(y, return_inverse=True)
    if len(classes) != 2:
        raise ValueError("streaming_logistic handles two labels")
    t = np.where(codes == 1, 1.0, -1.0)
    m = moments if moments is not None else streaming_moments(X, chunk_rows)
    mean = m.mean
    scale = np.sqrt(np.diag(m.scatter) / m.n)  # StandardScaler: population sd
    scale[scale == 0] = 1.0
    d = X.shape[1]
    passes = 0

    def fun(params: np.ndarray) -> tuple[float, np.ndarray]:
        nonlocal passes
        passes += 1
        w, b = params[:d], params[d]
        loss, grad_w, grad_b = 0.0, np.zeros(d), 0.0
        for start, chunk in _chunks(X, chunk_rows):
            Z = (chunk - mean) / scale
            tt = t[start:start + len(Z)]
            margin = tt * (Z @ w + b)
            loss -= float(np.sum(log_expit(margin)))
            r = -tt * expit(-margin)
            grad_w += Z.T @ r
            grad_b += float(r.sum())
        loss += 0.5 * float(w @ w) / C
        grad_w += w / C
        return loss, np.append(grad_w, grad_b)

    res = minimize(fun, np.zeros(d + 1), jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter, "gtol": tol, "ftol": 1e-15})
    return StreamingLogistic(classes_=classes, mean_=mean, scale_=scale, coef_=res.x[:d],
                             intercept_=float(res.x[d]), n_iter_=int(res.nit),
                             converged_=bool(res.success), passes_=passes)
