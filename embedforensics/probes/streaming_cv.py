"""Cross-validated LDA and logistic regression on every row of a matrix too big for memory.

The LDA and linear probes report stratified K-fold out-of-fold predictions. On memory-mapped
embeddings (``Probe.streams``) these functions compute exactly those predictions from a few
sequential passes over row chunks, never holding ``X``: memory is
``O(chunk × d + folds × labels × d²)`` for LDA and ``O(chunk × d + folds × labels × d)``
for the logistic regression, whatever the number of rows.

* :func:`streamed_cv_lda` — scikit-learn's ``LinearDiscriminantAnalysis(solver="lsqr",
  shrinkage="auto")`` refitted on every training fold, exactly. Pass 1 accumulates per
  (fold, label) counts, sums and scatter blocks (shifted by the first chunk's mean); a
  training fold's statistics are the totals minus its own fold's. Ledoit–Wolf shrinkage is
  per label, on that label's standardised rows, and its intensity needs
  ``Σ_i ‖z_i‖⁴`` of the standardised rows (``z = (x − μ) / σ``, μ and σ of the training
  fold's label): pass 2 computes it for every training set at once with one product of
  ``[c², c]`` with a small matrix of ``1/σ²`` and ``−2μ/σ²`` columns. Pass 3 scores the
  held-out rows. The full-data fit (for the projection plot) comes with it: the "training
  set" of all rows, plus the label-free Ledoit–Wolf total covariance of the ``eigen``
  solver. ``shrinkage="none"`` is the unshrunk rule of the ``svd`` solver (the pooled
  within-label scatter over ``n``, full rank assumed) and needs no pass 2.
* :func:`streamed_cv_logistic` — the K outer folds' L2 logistic regressions (binary, or
  multinomial for more labels: scikit-learn's ``lbfgs`` objective behind a
  ``StandardScaler`` fitted on the training fold) as ONE L-BFGS over the concatenated
  parameters. The sum of K independent fold objectives is separable, so its minimiser is
  every fold's own minimiser, and each function/gradient evaluation is one pass over the
  chunks: ``C @ V`` for all folds' weights at once, each row's own test fold masked out.
  Standardisation is folded into the weights (``z·w = c·(w/σ) − ((μ − shift)/σ)·w``), so
  a chunk is never standardised K times.

Both read ``X`` with :func:`embedforensics.probes.streaming.row_chunks` (a prefetching
reader) in chunks of :func:`chunk_rows_for` rows, and hand the pages of every consumed chunk
back to the kernel (:func:`chunks`): without that, a memory-mapped file's pages stay
mapped into the process and its resident size grows to the file's (5.4 GB peak RSS for a
4.1 GB file, 1.2 GB of it the process's own arrays; benchmarks/results/out_of_core_probes.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embedforensics.probes.streaming import (
    BLOCK_ROWS,
    CHUNK_ROWS,
    FLOAT32_CELLS,
    page_releaser,
    row_chunks,
    symmetrised,
    syrk_into,
)

CHUNK_BYTES = 64 << 20
"""Bytes of one float64 chunk: bounds the per-chunk temporaries whatever ``d`` is."""

def chunk_rows_for(d: int) -> int:
    """Rows per chunk so one float64 chunk of ``d`` columns is at most ``CHUNK_BYTES``."""
    return int(max(256, min(CHUNK_ROWS, CHUNK_BYTES // (8 * max(d, 1)))))


def chunks(X: Any, rows: int, dtype: Any) -> Iterator[tuple[int, np.ndarray]]:
    """:func:`~embedforensics.probes.streaming.row_chunks` of ``X`` (``(start, in-memory
    copy)``); each chunk's pages of a memory map are released once copied."""
    return row_chunks(X, rows, dtype)


def _use_float32(X: Any, precision: str) -> bool:
    if precision not in ("auto", "float32", "float64"):
        raise ValueError(f"precision must be 'auto', 'float32' or 'float64'; got {precision!r}")
    return precision == "float32" or (
        precision == "auto" and getattr(X, "dtype", None) == np.float32
        and X.shape[0] * X.shape[1] >= FLOAT32_CELLS)


# ---- LDA ----------------------------------------------------------------------------------
@dataclass
class LDARule:
    """One fitted LDA (a training fold's, or all rows'), as scikit-learn's after ``fit``."""

    means: np.ndarray            # k × d (unshifted)
    priors: np.ndarray           # k
    covariance: np.ndarray       # d × d, the prior-weighted (shrunk) within-label covariance
    coef: np.ndarray             # 1 × d for two labels, else k × d
    intercept: np.ndarray        # 1 or k
    shrinkage: np.ndarray        # Ledoit–Wolf intensity per label (0 without shrinkage)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        scores = np.asarray(X, dtype=np.float64) @ self.coef.T + self.intercept
        return scores[:, 0] if scores.shape[1] == 1 else scores

    def predict_codes(self, X: np.ndarray) -> np.ndarray:
        s = self.decision_function(X)
        return (s > 0).astype(int) if s.ndim == 1 else np.argmax(s, axis=1)


@dataclass
class LDAProjection:
    """The full-data discriminant axes (``eigen`` solver with shrinkage, else the ``svd``
    solver's generalised eigenvectors): ``transform`` as scikit-learn's, up to the sign
    (and, without shrinkage, the scale) of each axis."""

    scalings: np.ndarray         # d × (k − 1)
    explained_variance_ratio: np.ndarray
    xbar: np.ndarray | None      # centring of the svd solver; None for eigen

    def transform(self, X: np.ndarray) -> np.ndarray:
        Z = np.asarray(X, dtype=np.float64)
        if self.xbar is not None:
            Z = Z - self.xbar
        return Z @ self.scalings


@dataclass
class StreamedLDACV:
    """Out-of-fold predictions of K-fold LDA on all rows, the fold rules and the full fit."""

    pred: np.ndarray             # n, predicted label codes (out of fold)
    rules: list[LDARule]         # per outer fold
    full: LDARule                # fitted on all rows
    projection: LDAProjection
    passes: int
    precision: str
    chunk_rows: int


@dataclass
class _Set:
    """Count, shifted mean and centred scatter of the rows of one label in one training set."""

    n: float
    mean_c: np.ndarray
    scatter: np.ndarray
    scale: np.ndarray = field(default_factory=lambda: np.empty(0))

    def __post_init__(self) -> None:
        var = np.diag(self.scatter) / self.n if self.n else np.zeros(len(self.mean_c))
        scale = np.sqrt(np.maximum(var, 0.0))
        scale[scale == 0] = 1.0   # StandardScaler: a constant feature keeps scale 1
        self.scale = scale


def _set_of(counts: np.ndarray, sums: np.ndarray, cross: np.ndarray) -> _Set:
    n = float(counts)
    mean_c = sums / n
    return _Set(n, mean_c, symmetrised(cross) - n * np.outer(mean_c, mean_c))


def _ledoit_wolf_cov(s: _Set, quartic: float) -> tuple[np.ndarray, float]:
    """scikit-learn's ``_cov(X, shrinkage="auto")`` from streamed statistics: Ledoit–Wolf
    on the standardised rows (``sklearn.covariance.ledoit_wolf_shrinkage``'s formula, with
    ``quartic = Σ_i ‖z_i‖⁴``), rescaled to the features' scale."""
    d = len(s.mean_c)
    emp = s.scatter / s.n / np.outer(s.scale, s.scale)     # covariance of standardised rows
    if d == 1:
        shrink = 0.0
    else:
        trace = np.diag(emp)
        mu = float(np.sum(trace)) / d
        delta_ = float(np.sum(emp ** 2))
        beta = (quartic / s.n - delta_) / (d * s.n)
        delta = (delta_ - 2.0 * mu * float(np.sum(trace)) + d * mu ** 2) / d
        beta = min(beta, delta)
        shrink = 0.0 if beta == 0 else beta / delta
    mu = float(np.trace(emp)) / d
    shrunk = (1.0 - shrink) * emp
    shrunk.flat[::d + 1] += shrink * mu
    return s.scale[:, None] * shrunk * s.scale[None, :], shrink


def _rule(sets: list[_Set], shift: np.ndarray, shrinkage: str,
          quartics: np.ndarray | None) -> LDARule:
    """The lsqr LDA of one training set from its per-label statistics."""
    from scipy import linalg

    counts = np.array([s.n for s in sets])
    n, k = counts.sum(), len(sets)
    priors = counts / n
    d = len(shift)
    cov = np.zeros((d, d))
    shrink = np.zeros(k)
    for g, s in enumerate(sets):
        if shrinkage == "auto":
            cov_g, shrink[g] = _ledoit_wolf_cov(s, float(quartics[g]))
            cov += priors[g] * cov_g
        else:                      # the svd solver's pooled covariance (over n, sklearn 1.9)
            cov += s.scatter / n
    means = np.stack([s.mean_c for s in sets]) + shift
    coef = linalg.lstsq(cov, means.T)[0].T
    intercept = -0.5 * np.einsum("kd,kd->k", means, coef) + np.log(priors)
    if k == 2:
        coef = coef[1:] - coef[:1]
        intercept = intercept[1:] - intercept[:1]
    return LDARule(means, priors, cov, coef, intercept, shrink)


def _projection(full: LDARule, total: _Set, total_quartic: float | None, shift: np.ndarray,
                shrinkage: str) -> LDAProjection:
    """Discriminant axes of the full-data fit: ``eigh(S_b, S_w)`` with ``S_b = S_t − S_w``,
    ``S_t`` the total covariance (Ledoit–Wolf-shrunk like the eigen solver's, or empirical)."""
    from scipy import linalg

    k = len(full.priors)
    if shrinkage == "auto":
        total_cov, _ = _ledoit_wolf_cov(total, float(total_quartic))
        within = full.covariance
        xbar = None
    else:
        within = full.covariance
        total_cov = total.scatter / total.n
        xbar = full.priors @ full.means
    try:
        evals, evecs = linalg.eigh(total_cov - within, within)
    except linalg.LinAlgError:  # singular within scatter (constant features, d > n): the
        # svd solver drops those directions; a ridge of 1e-9 of the mean variance does too
        ridge = 1e-9 * max(float(np.mean(np.diag(within))), np.finfo(float).tiny)
        evals, evecs = linalg.eigh(total_cov - within, within + ridge * np.eye(len(within)))
    order = np.argsort(evals)[::-1]
    keep = min(k - 1, len(shift))
    ratio = np.sort(evals / np.sum(evals))[::-1][:keep]
    return LDAProjection(evecs[:, order][:, :keep], ratio, xbar)


def streamed_cv_lda(X: Any, codes: np.ndarray, fold: np.ndarray, k: int, *,
                    shrinkage: str = "auto", precision: str = "auto",
                    chunk_rows: int | None = None, progress: Any = None) -> StreamedLDACV:
    """Out-of-fold LDA predictions for the folds ``fold`` (fold number per row) on all rows
    of ``X`` (read in row chunks), equal to ``cross_val_predict`` of scikit-learn's
    ``LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")`` (``shrinkage="auto"``)
    or of its ``svd`` solver (``"none"``) on those folds.

    ``codes`` are label codes ``0..k-1``; every training fold must hold every label.
    ``precision``: ``"float64"`` scatter products, or float32 products summed in float64
    (``"float32"``; ``"auto"`` for float32 inputs of at least ``FLOAT32_CELLS`` cells).
    ``progress``: an optional tqdm-like bar advanced once per pass.
    """
    codes = np.asarray(codes, dtype=np.int64)
    fold = np.asarray(fold, dtype=np.int64)
    n, d = X.shape
    F = int(fold.max()) + 1
    rows = chunk_rows or chunk_rows_for(d)
    single = _use_float32(X, precision)
    work = np.float32 if single else np.float64
    block = fold * k + codes                      # (fold, label) block of every row
    counts = np.bincount(block, minlength=F * k).astype(float)
    sums = np.zeros((F * k, d))
    cross = np.zeros((F * k, d, d))
    shift = None
    for start, chunk in chunks(X, rows, None):
        if shift is None:
            shift = chunk.mean(axis=0, dtype=np.float64)
        c = np.asarray(chunk, dtype=work) - shift.astype(work)
        b = block[start:start + len(c)]
        order = np.argsort(b, kind="stable")
        c = c[order]
        bounds = np.searchsorted(b[order], np.arange(F * k + 1))
        for j in range(F * k):
            part = c[bounds[j]:bounds[j + 1]]
            if len(part):
                sums[j] += part.sum(axis=0, dtype=np.float64)
                syrk_into(cross[j], part, BLOCK_ROWS if single else len(part))
    if shift is None:
        raise ValueError("streamed_cv_lda needs at least one row")
    passes = 1
    _tick(progress)

    # training sets: t < F is "every fold but t", t = F is all rows
    counts = counts.reshape(F, k)
    sums = sums.reshape(F, k, d)
    cross = cross.reshape(F, k, d, d)
    tot_counts, tot_sums, tot_cross = counts.sum(0), sums.sum(0), cross.sum(0)
    sets = [[_set_of(tot_counts[g] - (counts[t, g] if t < F else 0),
                     tot_sums[g] - (sums[t, g] if t < F else 0),
                     tot_cross[g] - (cross[t, g] if t < F else 0)) for g in range(k)]
            for t in range(F + 1)]
    del cross
    total = _set_of(tot_counts.sum(), tot_sums.sum(0), tot_cross.sum(0))
    del tot_cross

    quartic = None
    total_quartic = None
    if shrinkage == "auto":
        quartic, total_quartic = _quartics(X, rows, codes, fold, sets, total, shift)
        passes += 1
        _tick(progress)
    rules = [_rule(sets[t], shift, shrinkage, None if quartic is None else quartic[t])
             for t in range(F + 1)]
    full = rules.pop()
    projection = _projection(full, total, total_quartic, shift, shrinkage)

    # pass 3: every row scored by its own fold's rule
    W = np.concatenate([r.coef for r in rules]).T            # d × F·c
    b0 = np.concatenate([r.intercept for r in rules])
    c_out = rules[0].coef.shape[0]
    pred = np.empty(n, dtype=np.int64)
    for start, chunk in chunks(X, rows, np.float64):
        s = (chunk @ W + b0).reshape(len(chunk), F, c_out)
        own = s[np.arange(len(chunk)), fold[start:start + len(chunk)]]
        pred[start:start + len(chunk)] = (own[:, 0] > 0).astype(int) if c_out == 1 \
            else np.argmax(own, axis=1)
    passes += 1
    _tick(progress)
    return StreamedLDACV(pred=pred, rules=rules, full=full, projection=projection,
                         passes=passes, precision="float32" if single else "float64",
                         chunk_rows=rows)


def _tick(progress: Any) -> None:
    if progress is not None:
        progress.update(1)


def _quartics(X: Any, rows: int, codes: np.ndarray, fold: np.ndarray,
              sets: list[list[_Set]], total: _Set, shift: np.ndarray
              ) -> tuple[np.ndarray, float]:
    """Pass 2: ``Σ_i ‖(x_i − μ)/σ‖⁴`` over the rows of every (training set, label) and over
    all rows (label-free). ``‖(c − m)/σ‖² = [c², c] · [1/σ², −2m/σ²] + Σ m²/σ²`` for the
    shifted rows ``c``: one product per chunk gives every set's squared norms."""
    T, k = len(sets), len(sets[0])
    columns = [s for per in sets for s in per] + [total]
    inv = np.stack([1.0 / s.scale ** 2 for s in columns], axis=1)        # d × S
    M = np.concatenate([inv, -2.0 * np.stack([s.mean_c for s in columns], axis=1) * inv])
    const = np.array([float(np.sum(s.mean_c ** 2 / s.scale ** 2)) for s in columns])
    acc = np.zeros(len(columns))
    for start, chunk in chunks(X, rows, np.float64):
        c = chunk - shift
        q = np.concatenate([c * c, c], axis=1) @ M + const                # chunk × S
        q *= q
        g = codes[start:start + len(c)]
        f = fold[start:start + len(c)]
        member = np.zeros((len(c), T, k))
        member[:, :, :] = (g[:, None] == np.arange(k))[:, None, :]
        member[np.arange(len(c)), f] = 0.0                               # own fold: held out
        acc[:-1] += np.einsum("is,is->s", member.reshape(len(c), T * k), q[:, :-1])
        acc[-1] += q[:, -1].sum()
    return acc[:-1].reshape(T, k), float(acc[-1])


# ---- logistic regression ------------------------------------------------------------------
@dataclass
class StreamedLogisticCV:
    """Out-of-fold probabilities of K-fold logistic regression on all rows."""

    proba: np.ndarray            # n × k
    coef: np.ndarray             # F × d × c on standardised features (c = 1 for two labels)
    intercept: np.ndarray        # F × c
    converged_folds: list[bool]
    n_iter: int
    passes: int
    converged: bool
    message: str
    chunk_rows: int


def fold_moments(X: Any, fold: np.ndarray, F: int, rows: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One pass: every training fold's row count, mean and ``StandardScaler`` scale (the
    population sd, 1 for a constant feature), from per-fold shifted sums and squares.
    Returns ``(n_train (F,), mean (F × d), scale (F × d), shift (d,))``."""
    d = X.shape[1]
    cnt = np.bincount(fold, minlength=F).astype(float)
    s1 = np.zeros((F, d))
    s2 = np.zeros((F, d))
    shift = None
    for start, chunk in chunks(X, rows, np.float64):
        if shift is None:
            shift = chunk.mean(axis=0)
        c = chunk - shift
        f = fold[start:start + len(c)]
        onehot = (f[:, None] == np.arange(F)).astype(float)
        s1 += onehot.T @ c
        s2 += onehot.T @ (c * c)
    if shift is None:
        raise ValueError("fold_moments needs at least one row")
    n_t = cnt.sum() - cnt
    m_c = (s1.sum(0) - s1) / n_t[:, None]
    var = (s2.sum(0) - s2) / n_t[:, None] - m_c ** 2
    scale = np.sqrt(np.maximum(var, 0.0))
    scale[scale == 0] = 1.0
    return n_t, m_c + shift, scale, shift


def streamed_cv_logistic(X: Any, codes: np.ndarray, fold: np.ndarray, k: int,
                         C: list[float], *, max_iter: int = 1000, tol: float = 1e-4,
                         chunk_rows: int | None = None, progress: Any = None
                         ) -> StreamedLogisticCV:
    """Out-of-fold probabilities of ``StandardScaler() + LogisticRegression(C=C[f])`` fitted
    on every outer training fold ``f`` (all its rows, read in chunks) — binary log-loss for
    two labels, multinomial otherwise, L2 on the standardised weights, intercept
    unpenalised: scikit-learn's ``lbfgs`` objective, mean loss plus ``‖w‖² / (2 C n)``.

    All folds are one L-BFGS-B over their concatenated parameters (the objective is a sum
    of the folds' independent objectives), with scikit-learn's stopping rule: ``tol``
    bounds every gradient component (its default, 1e-4, on the same mean-loss scale), the
    relative decrease ``64·eps``, ``max_iter`` the iterations. A fold counts as converged
    when the solver stopped on one of those tests or its own gradient is within ``tol``.
    The shift of the standardisation is folded into the offsets, so a chunk is used as read.
    ``progress``: an optional tqdm-like bar advanced once per pass.
    """
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit, logsumexp, softmax

    codes = np.asarray(codes, dtype=np.int64)
    fold = np.asarray(fold, dtype=np.int64)
    n, d = X.shape
    F = int(fold.max()) + 1
    c = 1 if k == 2 else k
    rows = chunk_rows or chunk_rows_for(d)
    n_t, mean, scale, shift = fold_moments(X, fold, F, rows)
    _tick(progress)
    a = (mean - shift) / scale                                   # F × d
    penalty = 1.0 / (np.asarray(C, dtype=float) * n_t)           # F
    passes = 1
    size = F * (d + 1) * c

    def unpack(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        W = theta[:F * d * c].reshape(F, d, c)
        b = theta[F * d * c:].reshape(F, c)
        return W, b

    def margins_of(W: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``V`` (d × F·c) and ``off`` with margins ``x @ V + off`` for unshifted rows."""
        V = W / scale[:, :, None]                                # F × d × c
        off = b - np.einsum("fd,fdc->fc", a, W)
        V = np.moveaxis(V, 0, 1).reshape(d, F * c)
        return V, off.reshape(F * c) - shift @ V

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        nonlocal passes
        passes += 1
        _tick(progress)
        W, b = unpack(theta)
        V, off = margins_of(W, b)
        loss = np.zeros(F)
        gV = np.zeros((d, F * c))
        goff = np.zeros(F * c)
        for start, chunk in chunks(X, rows, np.float64):
            cc = chunk
            m = (cc @ V + off).reshape(len(cc), F, c)
            g = codes[start:start + len(cc)]
            train = fold[start:start + len(cc)][:, None] != np.arange(F)   # rows × F
            if c == 1:
                t = np.where(g == 1, 1.0, -1.0)[:, None]
                margin = t * m[:, :, 0]
                loss += np.sum(np.where(train, -log_expit(margin), 0.0), axis=0)
                r = (np.where(train, -t * expit(-margin), 0.0) / n_t)[:, :, None]
            else:
                lse = logsumexp(m, axis=2)
                own = np.take_along_axis(m, g[:, None, None].repeat(F, 1), axis=2)[:, :, 0]
                loss += np.sum(np.where(train, lse - own, 0.0), axis=0)
                p = softmax(m, axis=2)
                p[np.arange(len(cc)), :, g] -= 1.0
                r = p * (train / n_t)[:, :, None]
            r = r.reshape(len(cc), F * c)
            gV += cc.T @ r
            goff += r.sum(axis=0)
        gV -= np.outer(shift, goff)                              # (x − shift)ᵀ r
        gV = np.moveaxis(gV.reshape(d, F, c), 1, 0)              # F × d × c
        goff = goff.reshape(F, c)
        gW = gV / scale[:, :, None] - a[:, :, None] * goff[:, None, :]
        gW += penalty[:, None, None] * W
        value = float(np.sum(loss / n_t) + 0.5 * np.sum(penalty * np.sum(W * W, axis=(1, 2))))
        return value, np.concatenate([gW.ravel(), goff.ravel()])

    res = minimize(fun, np.zeros(size), jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter, "gtol": tol, "ftol": 64 * np.finfo(float).eps,
                            "maxls": 50})
    W, b = unpack(res.x)
    gW, gb = unpack(np.asarray(res.jac))
    converged_folds = [res.status == 0 or bool(
        max(np.max(np.abs(gW[f])), np.max(np.abs(gb[f]))) <= tol) for f in range(F)]
    V, off = margins_of(W, b)
    proba = np.empty((n, k))
    for start, chunk in chunks(X, rows, np.float64):
        m = (chunk @ V + off).reshape(len(chunk), F, c)
        own = m[np.arange(len(chunk)), fold[start:start + len(chunk)]]
        if c == 1:
            p1 = expit(own[:, 0])
            proba[start:start + len(chunk)] = np.stack([1.0 - p1, p1], axis=1)
        else:
            proba[start:start + len(chunk)] = softmax(own, axis=1)
    passes += 1
    _tick(progress)
    return StreamedLogisticCV(proba=proba, coef=W, intercept=b,
                              converged_folds=converged_folds, n_iter=int(res.nit),
                              passes=passes, converged=all(converged_folds),
                              message=str(res.message), chunk_rows=rows)


SCATTERED_PIECE_ROWS = 1024
"""Rows :func:`read_rows` reads before releasing the pages they mapped (bounds the
read-ahead the kernel maps around scattered rows to about this many × 64 KiB)."""


def read_rows(X: Any, rows: np.ndarray, dtype: Any = np.float64,
              chunk_rows: int = SCATTERED_PIECE_ROWS) -> np.ndarray:
    """``X[rows]`` (sorted row indices) in memory as ``dtype``, read in pieces; the pages of
    a memory map between each piece's first and last row are released afterwards (the
    kernel maps read-ahead around scattered rows: 2,000 rows of a 400 MB map left 370 MB
    of it resident, and a 20,000-row permutation subsample of a 4.1 GB map in one piece
    raised the LDA probe's peak resident size to 4.6 GB with 1.3 GB of its own)."""
    release = page_releaser(X)
    out = np.empty((len(rows), X.shape[1]), dtype=dtype)
    for start in range(0, len(rows), chunk_rows):
        part = rows[start:start + chunk_rows]
        out[start:start + len(part)] = X[part]
        if len(part):
            release(int(part[0]), int(part[-1]) + 1)
    return out


# ---- bounded in-memory parts of a streaming probe -------------------------------------------
PERMUTATION_MAX_ROWS = 20_000
"""Rows of the seeded stratified subsample on which a streaming probe runs its exact
in-memory permutation test (also bounded by the probe memory budget, as float64 rows)."""


def permutation_rows(y: np.ndarray, d: int, seed: int, min_per_label: int) -> np.ndarray:
    """Sorted rows of the permutation test's subsample of memory-mapped embeddings: at most
    ``PERMUTATION_MAX_ROWS`` and as many float64 rows of ``d`` columns as fit
    ``probe_memory_bytes()``, stratified by label (seeded); a label left with fewer than
    ``min_per_label`` rows (the folds need them) gets that many, or all it has."""
    from embedforensics.probes.base import probe_memory_bytes
    from embedforensics.probes.stats import stratified_subsample

    cap = max(1, min(PERMUTATION_MAX_ROWS, probe_memory_bytes() // (8 * max(d, 1))))
    rows = stratified_subsample(y, cap, seed)
    if len(rows) == len(y):
        return rows
    rng = np.random.default_rng([int(seed), 1])
    extra = []
    for label in np.unique(y):
        have = int(np.sum(y[rows] == label))
        if have < min_per_label:
            rest = np.setdiff1d(np.flatnonzero(y == label), rows)
            take = min(min_per_label - have, len(rest))
            extra.append(rng.choice(rest, size=take, replace=False))
    return np.sort(np.concatenate([rows, *extra])) if extra else rows


def note_subsampled_test(summary: str, permutation: dict[str, Any] | None, n: int,
                         n_test: int) -> str:
    """What a streaming probe adds to its result: the permutation test's rows (in
    ``permutation``, the result's ``params.permutation``, when a test ran) and a closing
    sentence on the summary saying all rows were read in chunks."""
    if permutation is not None:
        permutation.update(
            rows=n_test, rows_total=n,
            subsample="seeded stratified subsample (PERMUTATION_MAX_ROWS, within "
                      "the probe memory budget) with its own stratified folds")
    return (f"{summary[:-1]} [All {n:,} memory-mapped rows read in chunks"
            + (f"; p-value on a stratified subsample of {n_test:,}" if n_test < n else "")
            + ".]")
