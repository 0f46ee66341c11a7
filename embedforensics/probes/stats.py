"""Shared statistics for the probes: intervals, tests, fold checks and plot-size helpers.

Every number a probe reports carries its uncertainty and the n behind it. The helpers here
keep that uniform across probes: accuracy always comes with an exact Clopper–Pearson
interval, the majority-class rate beside it and a one-sided binomial p-value against that
rate; bootstrap intervals are stratified percentile intervals; spreads over seeds are
mean, sample sd and range. The maths is delegated to scipy / scikit-learn; this module only
fixes the conventions (confidence level, wording of methods, rounding for plots).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.stats import binomtest

from embedforensics.probes.base import Metric, ProbeParameterError

CI_LEVEL = 0.95
"""Confidence level of every interval the probes report."""

PLOT_SIG_DIGITS = 5
"""Significant digits kept for plot coordinates (keeps reports small; plots need no more)."""

TEXT_CHARS = 200
"""Example texts in tables are cut to this many characters."""


# ---- binomial intervals and tests ----------------------------------------------------------
def clopper_pearson(k: int, n: int, level: float = CI_LEVEL) -> tuple[float, float]:
    """Exact (Clopper–Pearson) interval for a binomial proportion ``k / n``.

    Exact rather than Wald/Wilson because probes are often run on a few hundred rows and
    accuracies near 0 or 1, where normal approximations under-cover.
    """
    if n <= 0:
        raise ValueError("clopper_pearson needs n >= 1")
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def binomial_p_greater(k: int, n: int, p0: float) -> float:
    """One-sided exact binomial p-value for ``P(K >= k)`` when each trial succeeds with ``p0``.

    Used to ask "is this accuracy above the chance rate ``p0``?". A chance rate of 1 (a
    single class) has no room above it, so the p-value is 1.
    """
    if p0 >= 1.0:
        return 1.0
    return float(binomtest(int(k), int(n), p=float(p0), alternative="greater").pvalue)


def majority_rate(y: np.ndarray) -> tuple[float, str]:
    """Share of the most frequent label and that label: the accuracy of always guessing it."""
    labels, counts = np.unique(y, return_counts=True)
    i = int(np.argmax(counts))
    return float(counts[i] / counts.sum()), str(labels[i])


def accuracy_metrics(y_true: np.ndarray, y_pred: np.ndarray, *, how: str,
                     permutation: tuple[float, int] | None = None) -> dict[str, Metric]:
    """``accuracy`` (Clopper–Pearson CI), ``chance_accuracy`` and ``p_value`` for predictions.

    ``permutation`` is ``(p, n_permutations)`` from :func:`cv_permutation_p`; when given, it
    is the reported ``p_value`` (calibrated); otherwise the one-sided binomial p-value is
    reported with a warning in its description that it is anti-conservative.

    ``how`` names where the predictions come from (e.g. "5-fold stratified cross-validated
    logistic regression") and goes into the metric descriptions. The interval treats the n
    out-of-fold predictions as independent Bernoulli trials; cross-validation folds share
    training data, so it is a good but slightly optimistic description of the uncertainty.
    """
    y_true = np.asarray(y_true)
    n = len(y_true)
    k = int(np.sum(y_true == np.asarray(y_pred)))
    chance, majority = majority_rate(y_true)
    if permutation is not None:
        perm_p, n_perm = permutation
        p_metric = Metric(
            value=perm_p, n=n,
            method=f"label-permutation test with refits ({n_perm} permutations, same "
                   f"fold scheme): (1 + #{{permuted accuracy >= observed}}) / (1 + {n_perm})",
            description="Probability, if the labels carried no information about the "
                        "embeddings, of a cross-validated accuracy at least this high; valid "
                        f"at any sample size, but cannot go below 1/{n_perm + 1}.")
    else:
        p_metric = Metric(
            value=binomial_p_greater(k, n, chance), n=n,
            method="one-sided exact binomial test against the chance rate",
            description="Probability of at least this many correct predictions if each "
                        "prediction were right only with the chance rate. Treats "
                        "out-of-fold predictions as independent, which they are not: on "
                        "real embeddings under a true null it rejected 7-11.5% of the time "
                        "at 0.05 (benchmarks/README.md); set n_permutations > 0 for a "
                        "calibrated permutation p-value.")
    return {
        "accuracy": Metric(
            value=k / n, n=n, ci=clopper_pearson(k, n), ci_level=CI_LEVEL,
            method="Clopper-Pearson exact binomial interval over out-of-fold predictions",
            description=f"Share of rows whose label is predicted correctly by {how} "
                        f"({k} of {n}).",
        ),
        "chance_accuracy": Metric(
            value=chance, n=n, method="majority-class rate",
            description=f"Accuracy of always predicting the most frequent label "
                        f"('{majority}'); the baseline the accuracy must beat.",
        ),
        "p_value": p_metric,
    }


def cv_permutation_p(estimator: Any, X: np.ndarray, y: np.ndarray, cv: Any, observed: float,
                     n_permutations: int, seed: int) -> float:
    """Permutation p-value of a cross-validated accuracy, refitting for every permutation.

    The labels are permuted ``n_permutations`` times (seeded); each time the same
    cross-validation scheme ``cv`` is rerun on the permuted labels with a fresh clone of
    ``estimator`` and the pooled out-of-fold accuracy recorded, as scikit-learn's
    ``permutation_test_score`` does (which averages fold scores instead of pooling).
    Returns ``(1 + #{permuted ≥ observed}) / (1 + n_permutations)``: valid at any n because
    the statistic is recomputed exactly as for the observed labels.
    """
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_predict

    rng = np.random.default_rng(seed)
    null = np.empty(n_permutations)
    for b in range(n_permutations):
        permuted = rng.permutation(y)
        pred = cross_val_predict(clone(estimator), X, permuted, cv=cv)
        null[b] = np.mean(pred == permuted)
    return (1 + int(np.sum(null >= observed - 1e-12))) / (1 + n_permutations)


def fmt_perm_p(test: Any) -> str:
    """A permutation p-value for a sentence: 'p ≤ 0.01 (floor with 99 permutations)' at
    its floor (never an exact-looking 'p=0.010'), 'p=0.31 (stopped after 32 of 99
    permutations)' after sequential stopping, else :func:`fmt_p`.

    ``test`` is a :class:`embedforensics.probes.permutation.PermutationResult`.
    """
    if test.at_floor:
        return f"p ≤ {1 / (1 + test.n_permutations):.2g} (floor with {test.n_permutations} " \
               "permutations)"
    if test.stopped_early:
        return f"{fmt_p(test.p)} (stopped after {test.n_evaluated} of {test.n_permutations} " \
               "permutations)"
    return fmt_p(test.p)


def permutation_p_metric(test: Any, n: int, *, statistic: str, reported: str) -> Metric:
    """The ``p_value`` metric of an exact permutation test of a cross-validated accuracy.

    ``statistic`` names the accuracy whose permutation distribution gives the p-value
    (e.g. "out-of-fold accuracy of a nested-CV ridge discriminant"); ``reported`` says how
    it relates to the probe's reported classifier. The metric carries ``display`` (the text
    of :func:`fmt_perm_p`), ``at_floor``, ``n_permutations`` and ``n_evaluated``.
    """
    floor = 1 / (1 + test.n_permutations)
    at_floor = (f" This p-value is at its floor: p ≤ {floor:.2g} with {test.n_permutations} "
                "permutations; more permutations are needed to say how much smaller it is."
                if test.at_floor else "")
    return Metric(
        value=test.p, n=n,
        method=f"exact label-permutation test of the {statistic}: labels permuted within "
               f"the fixed stratified folds and every fold refitted for every permutation "
               f"({test.n_permutations} permutations); {test.describe()}. {reported}",
        description="Probability, if the labels carried no information about the "
                    "embeddings, of a cross-validated accuracy at least this high; valid at "
                    f"any sample size, but cannot go below 1/{test.n_permutations + 1}."
                    + at_floor,
        display=fmt_perm_p(test), at_floor=test.at_floor,
        n_permutations=test.n_permutations, n_evaluated=test.n_evaluated)


def per_label_recall_table(y_true: np.ndarray, y_pred: np.ndarray,
                           labels: Sequence[str]) -> dict[str, Any]:
    """Table of recall per true label, each with its n and Clopper–Pearson interval."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    rows = []
    for label in labels:
        mask = y_true == label
        n = int(mask.sum())
        k = int(np.sum(y_pred[mask] == label))
        low, high = clopper_pearson(k, n)
        rows.append([str(label), n, k, k / n, low, high])
    return {"columns": ["label", "n", "correct", "recall", "ci_low", "ci_high"], "rows": rows}


def matrix_table(values: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str],
                 corner: str) -> dict[str, Any]:
    """A 2-D count matrix as a table whose first column holds the row labels."""
    return {
        "columns": [corner, *map(str, col_labels)],
        "rows": [[str(r), *(int(v) for v in row)]
                 for r, row in zip(row_labels, values, strict=True)],
    }


# ---- bootstrap and spreads over seeds ------------------------------------------------------
def stratified_bootstrap_ci(
    statistic: Callable[[np.ndarray], np.ndarray],
    y: np.ndarray,
    n_bootstrap: int,
    seed: int,
    level: float = CI_LEVEL,
    max_cells: int = 20_000_000,
) -> tuple[float, float]:
    """Percentile bootstrap interval of a statistic over resamples stratified by ``y``.

    Each resample draws, within every label, as many rows as that label has (with
    replacement), so every resample contains every label in its original count and
    statistics such as AUROC stay defined even for small classes (the convention of pROC's
    ``ci.auc``). scipy's ``bootstrap`` cannot stratify, hence this short function.

    ``statistic`` is vectorised: it receives a batch of resamples as an int array of row
    indices with shape ``(batch, n)`` and returns one value per resample. Batches hold at
    most ``max_cells`` indices, bounding memory for large n.
    """
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(y == label) for label in np.unique(y)]
    n = len(y)
    batch = max(1, min(n_bootstrap, max_cells // max(n, 1)))
    values = []
    for start in range(0, n_bootstrap, batch):
        b = min(batch, n_bootstrap - start)
        idx = np.concatenate([g[rng.integers(0, len(g), (b, len(g)))] for g in groups], axis=1)
        values.append(np.asarray(statistic(idx), dtype=float))
    alpha = 1.0 - level
    low, high = np.quantile(np.concatenate(values), [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def auroc_batch(codes: np.ndarray, scores: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """AUROC of each resample in ``idx`` (shape ``(batch, n)``), vectorised over the batch.

    ``codes`` are label indices 0..k-1 and ``scores`` the matching per-label probability
    columns ``(n, k)``. For two labels this is the AUROC of ``scores[:, 1]`` for label 1;
    for more it is the unweighted mean of the one-vs-rest AUROCs, i.e. scikit-learn's
    ``roc_auc_score(..., multi_class="ovr", average="macro")``. Each AUROC is the
    Mann–Whitney U of the positives' scores against the others' divided by
    ``n_pos * n_neg`` (ties count one half).

    A resample is a multiset of rows, so its U depends only on how often it drew each row:
    with the rows sorted by score once and grouped into ties, ``U = Σ_g P_g (N_<g + N_g/2)``
    where ``P_g`` / ``N_g`` count the resample's positive / negative draws in tie group
    ``g`` and ``N_<g`` its negative draws below it — ``O(n)`` per resample instead of a
    rank sort each (the same numbers as ranking every resample; tests compare them).
    """
    b, n = idx.shape
    k = scores.shape[1]
    counts = np.bincount((np.arange(b)[:, None] * n + idx).ravel(),
                         minlength=b * n).reshape(b, n).astype(np.int32)
    positives = [1] if k == 2 else range(k)
    aucs = []
    for c in positives:
        order = np.argsort(scores[:, c], kind="stable")
        sorted_scores = scores[order, c]
        starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
        is_pos = codes[order] == c
        drawn = counts[:, order]
        P = np.add.reduceat(drawn * is_pos, starts, axis=1).astype(np.float64)
        N = np.add.reduceat(drawn * ~is_pos, starts, axis=1).astype(np.float64)
        below = np.cumsum(N, axis=1) - N
        u = np.sum(P * (below + 0.5 * N), axis=1)
        n_pos = P.sum(axis=1)
        aucs.append(u / (n_pos * (n - n_pos)))
    return np.mean(aucs, axis=0)


def balanced_accuracy_batch(codes: np.ndarray, pred: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Balanced accuracy (mean per-label recall) of each resample in ``idx``, vectorised.

    Equals scikit-learn's ``balanced_accuracy_score`` on each resample.
    """
    resampled_codes = codes[idx]
    correct = (pred[idx] == resampled_codes)
    recalls = [np.sum(correct & (resampled_codes == c), axis=1)
               / np.sum(resampled_codes == c, axis=1) for c in np.unique(codes)]
    return np.mean(recalls, axis=0)


def seed_spread(values: Sequence[float]) -> tuple[float, float | None, tuple[float, float]]:
    """Mean, sample sd (None for a single value) and (min, max) of per-seed results."""
    arr = np.asarray(values, dtype=float)
    sd = float(np.std(arr, ddof=1)) if len(arr) > 1 else None
    return float(arr.mean()), sd, (float(arr.min()), float(arr.max()))


def child_seeds(seed: int, n: int) -> list[int]:
    """``n`` reproducible, well-spread child seeds derived from one ``seed``."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(n)]


# ---- input checks --------------------------------------------------------------------------
def check_folds(owner: str, y: np.ndarray, n_folds: int) -> None:
    """Raise ProbeParameterError when a label has fewer rows than ``n_folds``.

    Stratified k-fold wants at least one row of every label in every test fold; with fewer
    rows than folds some folds test none of that label, and a single-row label is missing
    from one training fold entirely.
    """
    labels, counts = np.unique(y, return_counts=True)
    i = int(np.argmin(counts))
    label, count = labels[i], int(counts[i])
    if count < n_folds:
        remedy = (f"lower n_folds to {count} or add rows for that label" if count >= 2
                  else "a label with a single row cannot be cross-validated; add rows for it "
                       "or leave it out")
        raise ProbeParameterError(
            f"The 'n_folds' parameter of {owner} is {n_folds}, but label '{label}' has only "
            f"{count} row(s); stratified cross-validation needs at least n_folds rows of "
            f"every label, so {remedy}."
        )


# ---- plot and table helpers ----------------------------------------------------------------
def stratified_subsample(y: np.ndarray, max_points: int, seed: int) -> np.ndarray:
    """Sorted row indices of a seeded subsample of at most ``max_points`` rows, per label.

    Labels keep their proportions (largest-remainder rounding) and every label keeps at
    least one row, so a small source never vanishes from a plot; with many tiny labels the
    sample can exceed ``max_points`` by at most the number of labels. Returns all rows when
    there are at most ``max_points``.
    """
    n = len(y)
    if n <= max_points:
        return np.arange(n)
    labels, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    exact = max_points * counts / n
    quota = np.minimum(np.maximum(np.floor(exact).astype(int), 1), counts)
    order = np.argsort(-(exact - np.floor(exact)), kind="stable")
    for i in order:
        if quota.sum() >= max_points:
            break
        if quota[i] < counts[i]:
            quota[i] += 1
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(inverse == i), size=int(q), replace=False)
              for i, q in enumerate(quota)]
    return np.sort(np.concatenate(picked))


def plot_floats(values: np.ndarray) -> list[float]:
    """Plot coordinates as plain floats rounded to ``PLOT_SIG_DIGITS`` significant digits."""
    return [float(f"{v:.{PLOT_SIG_DIGITS}g}") for v in np.asarray(values, dtype=float)]


def truncate_text(text: Any, limit: int = TEXT_CHARS) -> str:
    """One-line text cut to ``limit`` characters (with an ellipsis) for example tables."""
    s = " ".join(str("" if text is None else text).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def fmt_pct(x: float) -> str:
    """0.9712 -> '97.1%'."""
    return f"{100 * x:.1f}%"


def fmt_p(p: float) -> str:
    """A p-value for a sentence: 'p=0.032', 'p=3.1e-05', 'p<1e-300'."""
    if p < 1e-300:
        return "p<1e-300"
    return f"p={p:.2g}" if p < 0.001 else f"p={p:.3f}"
