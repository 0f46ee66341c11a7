"""Exact label-permutation tests of cross-validated accuracy, computed without slow refits.

A permutation p-value is exact when the statistic under permuted labels is computed by the
same function as the observed one. This module fixes that function for the linear and LDA
probes and makes it cheap:

* **Fixed folds, permutations within folds.** The folds are drawn once (stratified on the
  observed labels, as the probe's own cross-validation does) and every permutation shuffles
  the labels *within* each test fold. Stratified k-fold assigns rows of each label to folds
  uniformly at random given the label counts, so under the null (labels exchangeable with
  respect to the embeddings) the observed labelling and every within-fold relabelling are
  equally likely given the folds: the test is exact, and each fold keeps its label mix.
  Because the folds never move, every quantity that depends only on the features (Gram
  matrices, eigenvectors) is computed once.
* **Closed-form refits.** A ridge (regularised least-squares) discriminant's out-of-fold
  scores are linear in the coded labels given the training rows: with the centred training
  features ``C`` and ``C'C = V diag(e) V'``, the scores of held-out rows ``R`` are
  ``(Z_R - m) V diag(1/(e+λ)) (CV)' Y + ȳ`` for every penalty ``λ`` at once. A block of
  permuted label matrices ``Y`` is therefore a few matrix products per fold — a refit of
  every fold for every permutation, not an approximation. The penalty is chosen by nested
  cross-validation (the inner folds are the other outer folds, so the within-fold
  permutations leave the inner folds' label mixes fixed too) and the choice is recomputed
  for every permutation, so the p-value is exact under the tuning as well.
* **Refits of any estimator** (:func:`refit_null`) for the probe's own classifier, spread
  over joblib workers; permutation ``b`` is generated from ``(seed, b)`` alone, so the
  result does not depend on the number of workers or on the batch size.
* **Sequential stopping** (Besag & Clifford 1991, :func:`sequential_p`): stop after ``h``
  permuted statistics at least as large as the observed one; the p-value is then ``h / l``
  after ``l`` permutations, which is valid, and saves most of the work when the p-value is
  clearly large. Otherwise ``(1 + #{T_b ≥ T_obs}) / (1 + B)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

BATCH = 64
"""Permutations evaluated together (bounds the ``n × BATCH`` label matrices)."""

TOLERANCE = 1e-12
"""Permuted statistics this close below the observed one count as ties (rounding)."""

PENALTY_GRID = tuple(10.0 ** np.arange(3, -4, -1))
"""Ridge penalties per training row tried by the nested CV, strongest first (ties go to
the stronger penalty): 1000, 100, ..., 0.001 times the training rows."""


# ---- folds and permutations ----------------------------------------------------------------
def fold_ids(splits: Sequence[tuple[np.ndarray, np.ndarray]], n: int) -> np.ndarray:
    """The test-fold number of every row, from ``(train, test)`` index pairs."""
    fold = np.full(n, -1, dtype=int)
    for i, (_, test) in enumerate(splits):
        fold[test] = i
    if np.any(fold < 0):
        raise ValueError("the folds do not cover every row")
    return fold


def within_fold_permutation(fold: np.ndarray, seed: int, index: int) -> np.ndarray:
    """Row order of permutation number ``index``: the permuted labels are ``y[order]``.

    Rows are shuffled only among rows of the same fold. The generator is seeded with
    ``(seed, index)``, so permutation ``index`` is the same whichever worker computes it
    and whatever else is computed.
    """
    rng = np.random.default_rng([int(seed), int(index)])
    order = np.arange(len(fold))
    for f in np.unique(fold):
        rows = np.flatnonzero(fold == f)
        order[rows] = rows[rng.permutation(len(rows))]
    return order


# ---- the p-value ---------------------------------------------------------------------------
@dataclass
class PermutationResult:
    """A permutation p-value with what it took.

    ``null`` holds the permuted statistics actually evaluated, in permutation order;
    ``stopped_early`` says sequential stopping ended the test after ``len(null)`` of the
    ``n_permutations`` permutations (the p-value is then ``stop_after / len(null)``).
    """

    observed: float
    p: float
    null: np.ndarray
    n_permutations: int
    stopped_early: bool
    stop_after: int | None

    @property
    def n_evaluated(self) -> int:
        return len(self.null)

    @property
    def at_floor(self) -> bool:
        """True when the p-value is the smallest the test can give, ``1 / (1 + B)``."""
        return not self.stopped_early and self.p <= 1.0 / (1 + self.n_permutations) + 1e-15

    def describe(self) -> str:
        """How the p-value was formed, for a metric's method."""
        if self.stopped_early:
            return (f"stopped sequentially (Besag-Clifford) after {self.n_evaluated} of "
                    f"{self.n_permutations} permutations, when {self.stop_after} permuted "
                    f"accuracies reached the observed one: p = {self.stop_after} / "
                    f"{self.n_evaluated}")
        stop = ("" if self.stop_after is None else
                f"; sequential stopping after {self.stop_after} exceedances was not reached")
        return (f"(1 + #{{permuted accuracy >= observed}}) / (1 + {self.n_permutations})"
                f"{stop}")


def sequential_p(observed: float, null_of: Callable[[np.ndarray], np.ndarray],
                 n_permutations: int, *, stop_after: int | None = None, batch: int = BATCH,
                 progress: Any = None) -> PermutationResult:
    """Permutation p-value from ``null_of(indices) -> statistics`` evaluated in batches.

    ``null_of`` receives permutation numbers (``0..B-1``) and returns their statistics.
    With ``stop_after = h`` the test stops at the first permutation ``l`` at which ``h``
    statistics have reached the observed one and reports ``h / l`` (Besag & Clifford
    1991); the stopping point is found in permutation order, so the batch size does not
    change the result. ``progress`` is an optional tqdm-like bar advanced per permutation.
    """
    tol = TOLERANCE * max(1.0, abs(observed))
    values: list[np.ndarray] = []
    exceed = 0
    for start in range(0, n_permutations, batch):
        idx = np.arange(start, min(n_permutations, start + batch))
        vals = np.asarray(null_of(idx), dtype=float)
        hits = vals >= observed - tol
        if stop_after is not None and exceed + int(hits.sum()) >= stop_after:
            cut = int(np.flatnonzero(np.cumsum(hits) + exceed >= stop_after)[0]) + 1
            values.append(vals[:cut])
            if progress is not None:
                progress.update(cut)
            null = np.concatenate(values)
            return PermutationResult(observed, stop_after / len(null), null, n_permutations,
                                     True, stop_after)
        exceed += int(hits.sum())
        values.append(vals)
        if progress is not None:
            progress.update(len(idx))
    null = np.concatenate(values) if values else np.empty(0)
    return PermutationResult(observed, (1 + exceed) / (1 + n_permutations), null,
                             n_permutations, False, stop_after)


def refit_null(statistic: Callable[[np.ndarray], float], fold: np.ndarray, seed: int,
               n_jobs: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """``null_of`` for :func:`sequential_p` that recomputes ``statistic(order)`` for each
    permutation number (``order`` from :func:`within_fold_permutation`), in joblib workers.

    ``statistic`` must be picklable for process workers (a module-level function or a
    ``functools.partial`` of one). Results come back in permutation order, so they do not
    depend on ``n_jobs``.
    """
    from joblib import Parallel, delayed

    def null_of(idx: np.ndarray) -> np.ndarray:
        orders = [within_fold_permutation(fold, seed, int(b)) for b in idx]
        if n_jobs in (None, 1) or len(idx) == 1:
            return np.array([statistic(o) for o in orders])
        return np.array(Parallel(n_jobs=n_jobs)(delayed(statistic)(o) for o in orders))

    return null_of


# ---- closed-form ridge discriminant --------------------------------------------------------
@dataclass
class _Solved:
    """Ridge solutions on one training set, ready for any penalty and label block.

    Primal (``d ≤`` training rows): only the eigenvectors ``V`` (d × d) are kept and the
    label side ``C'Y`` is assembled from per-fold sums, so memory does not grow with the
    rows. Dual (more dimensions than rows): the small ``n_train × n_train`` problem keeps
    its projections.
    """

    rows: np.ndarray          # training rows
    folds: tuple[int, ...]    # the folds they make up
    mean: np.ndarray          # their mean (the intercept's centring)
    evals: np.ndarray         # eigenvalues of the centred training Gram (r,)
    V: np.ndarray | None      # primal: eigenvectors (d × d)
    project: np.ndarray | None = None  # dual: U' (n_train × n_train)
    held_proj: dict[int, np.ndarray] | None = None  # dual: fold -> (Z_R - mean) C' U


def _solve(Z: np.ndarray, fold: np.ndarray, folds: tuple[int, ...],
           held: dict[int, np.ndarray]) -> _Solved:
    """Eigen-decompose the centred Gram of the rows of ``folds`` (primal if d ≤ rows, else
    the dual kernel, which has the same nonzero spectrum)."""
    train = np.flatnonzero(np.isin(fold, folds))
    Zt = Z[train]
    mean = Zt.mean(axis=0)
    n_t, d = Zt.shape
    if d <= n_t:
        gram = Zt.T @ Zt - n_t * np.outer(mean, mean)
        evals, V = np.linalg.eigh(gram)
        return _Solved(train, folds, mean, np.maximum(evals, 0.0), V)
    C = Zt - mean
    evals, U = np.linalg.eigh(C @ C.T)
    CU = C.T @ U
    return _Solved(train, folds, mean, np.maximum(evals, 0.0), None, U.T,
                   {f: (Z[rows] - mean) @ CU for f, rows in held.items()})


def _targets(codes: np.ndarray, k: int) -> np.ndarray:
    """Coded labels of a block (n × B) as regression targets (n × B·c): one indicator
    column (label 1) for two labels, one-hot columns otherwise."""
    if k == 2:
        return codes.astype(np.float64)
    n, B = codes.shape
    out = np.zeros((n, B, k))
    np.put_along_axis(out, codes[:, :, None], 1.0, axis=2)
    return out.reshape(n, B * k)


def _decide(scores: np.ndarray, k: int) -> np.ndarray:
    """Predicted codes from scores (rows × B·c): label 1 above 0.5 for two labels (the
    argmax of the two one-hot scores, which sum to 1), else the argmax per permutation."""
    if k == 2:
        return (scores > 0.5).astype(int)
    n = scores.shape[0]
    return np.argmax(scores.reshape(n, -1, k), axis=2)


def _scores(Z: np.ndarray, solved: _Solved, Y: np.ndarray, sums: dict[int, tuple],
            rows: np.ndarray, fold: int, penalties: np.ndarray) -> np.ndarray:
    """Scores of held-out rows ``rows`` (fold ``fold``) for every penalty: (L, rows, B·c).

    ``sums[h] = (Z_h'Y_h, 1'Y_h)`` per fold: the training set's ``C'Y`` and label means
    are sums of these, so no training-set-sized product is formed per solve.
    """
    n_t = len(solved.rows)
    ysum = sum(sums[h][1] for h in solved.folds)
    ybar = ysum / n_t
    L = len(penalties)
    if solved.V is not None:
        cy = sum(sums[h][0] for h in solved.folds) - np.outer(solved.mean, ysum)
        q = solved.V.T @ cy                                   # d × B·c
        scaled = q[None] / (solved.evals[None, :, None] + penalties[:, None, None])
        # W = V (q / (e + λ)) for all penalties at once: d × L·B·c
        W = solved.V @ np.moveaxis(scaled, 0, 1).reshape(q.shape[0], -1)
        flat = Z[rows] @ W - solved.mean @ W
    else:
        q = solved.project @ Y[solved.rows]
        scaled = q[None] / (solved.evals[None, :, None] + penalties[:, None, None])
        P = solved.held_proj[fold]
        flat = P @ np.moveaxis(scaled, 0, 1).reshape(P.shape[1], -1)
    return np.moveaxis(flat.reshape(len(rows), L, -1), 1, 0) + ybar


def standardise(X: np.ndarray) -> np.ndarray:
    """Float64 features centred and scaled to unit sd over all rows (label-free)."""
    Z = np.asarray(X, dtype=np.float64)
    mean = Z.mean(axis=0)
    sd = Z.std(axis=0)
    sd[sd == 0] = 1.0
    return (Z - mean) / sd


def ledoit_wolf_penalty(Z: np.ndarray, rows: np.ndarray) -> float:
    """Ridge penalty equivalent to Ledoit–Wolf shrinkage of the covariance of ``Z[rows]``.

    ``(1 − a) S + a μ I ∝ C'C + λ I`` with ``λ = a μ n / (1 − a)`` (``S = C'C / n``), using
    scikit-learn's Ledoit–Wolf intensity ``a`` (label-free, so fixed under permutations).
    """
    from sklearn.covariance import ledoit_wolf_shrinkage

    C = Z[rows] - Z[rows].mean(axis=0)
    a = float(ledoit_wolf_shrinkage(C, assume_centered=True))
    mu = float(np.sum(C * C) / C.size)
    a = min(a, 0.999)
    return max(a * mu * len(rows) / (1.0 - a), 1e-12 * max(mu, 1e-300) * len(rows))


@dataclass
class RidgeCV:
    """Out-of-fold accuracy of a ridge discriminant for many labelings at once.

    ``fold`` fixes the outer folds. With ``penalties`` given per row (``nested=True``) the
    penalty of each outer fold is chosen by an inner cross-validation over the other outer
    folds (highest pooled inner accuracy; ties to the stronger penalty); with
    ``fixed_penalty`` (a function of the training rows, e.g. :func:`ledoit_wolf_penalty`)
    each outer fold uses its own label-free penalty and no inner loop runs.
    """

    Z: np.ndarray
    fold: np.ndarray
    k: int
    penalties: tuple[float, ...] = PENALTY_GRID
    nested: bool = True
    fixed_penalty: Callable[[np.ndarray, np.ndarray], float] | None = None

    def __post_init__(self) -> None:
        folds = [int(f) for f in np.unique(self.fold)]
        if self.nested and len(folds) < 3:
            # two outer folds leave no other fold to tune on: use the label-free
            # Ledoit-Wolf penalty instead (the same for every labeling, so still exact)
            self.nested = False
            self.fixed_penalty = self.fixed_penalty or ledoit_wolf_penalty
        rows = {f: np.flatnonzero(self.fold == f) for f in folds}
        self._outer: dict[int, _Solved] = {}
        self._inner: dict[int, list[_Solved]] = {}
        self._fixed: dict[int, float] = {}
        for f in folds:
            others = tuple(h for h in folds if h != f)
            self._outer[f] = _solve(self.Z, self.fold, others, {f: rows[f]})
            if self.nested:
                self._inner[f] = [
                    _solve(self.Z, self.fold, tuple(h for h in others if h != g),
                           {g: rows[g]}) for g in others]
            elif self.fixed_penalty is not None:
                self._fixed[f] = float(self.fixed_penalty(self.Z, self._outer[f].rows))
        self._folds = folds
        self._rows = rows
        self.chosen_: dict[int, float] = {}

    def _lambdas(self, n_train: int) -> np.ndarray:
        return np.asarray(self.penalties, dtype=float) * n_train

    def accuracy(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Out-of-fold accuracy and chosen penalty per outer fold, for coded labelings
        ``codes`` (n × B ints): returns ``(accuracy (B,), chosen per-row penalty (folds, B))``.
        """
        n, B = codes.shape
        Y = _targets(codes, self.k)
        sums = {h: (self.Z[r].T @ Y[r], Y[r].sum(axis=0)) for h, r in self._rows.items()}
        correct = np.zeros(B)
        chosen = np.zeros((len(self._folds), B))
        for i, f in enumerate(self._folds):
            outer = self._outer[f]
            if self.nested:
                lam_rows = np.asarray(self.penalties, dtype=float)
                inner_correct = np.zeros((len(lam_rows), B))
                for solved in self._inner[f]:
                    (g,) = set(self._folds) - set(solved.folds) - {f}
                    s = _scores(self.Z, solved, Y, sums, self._rows[g], g,
                                self._lambdas(len(solved.rows)))
                    truth = codes[self._rows[g]]
                    inner_correct += np.stack([np.sum(_decide(s[j], self.k) == truth, axis=0)
                                               for j in range(len(lam_rows))])
                best = np.argmax(inner_correct, axis=0)  # first max: the stronger penalty
                s = _scores(self.Z, outer, Y, sums, self._rows[f], f,
                            self._lambdas(len(outer.rows)))
                pred = np.stack([_decide(s[j], self.k) for j in range(len(lam_rows))])
                pred = np.take_along_axis(pred, best[None, None, :], axis=0)[0]
                chosen[i] = lam_rows[best]
            else:
                lam = self._fixed.get(f, float(self.penalties[0]) * len(outer.rows))
                s = _scores(self.Z, outer, Y, sums, self._rows[f], f, np.array([lam]))
                pred = _decide(s[0], self.k)
                chosen[i] = lam / len(outer.rows)
            correct += np.sum(pred == codes[self._rows[f]], axis=0)
        return correct / n, chosen

    def permutation_test(self, codes: np.ndarray, n_permutations: int, seed: int, *,
                         stop_after: int | None = None, progress: Any = None
                         ) -> PermutationResult:
        """Exact within-fold permutation p-value of the out-of-fold accuracy of ``codes``.

        The observed accuracy is computed by the same call as the permuted ones (as
        column 0 of the first block). Records the observed choice in ``chosen_``.
        """
        acc, chosen = self.accuracy(codes[:, None])
        self.chosen_ = {f: float(chosen[i, 0]) for i, f in enumerate(self._folds)}
        observed = float(acc[0])

        def null_of(idx: np.ndarray) -> np.ndarray:
            block = np.stack([codes[within_fold_permutation(self.fold, seed, int(b))]
                              for b in idx], axis=1)
            return self.accuracy(block)[0]

        return sequential_p(observed, null_of, n_permutations, stop_after=stop_after,
                            progress=progress)
