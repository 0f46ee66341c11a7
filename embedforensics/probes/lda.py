"""LDA probe: can a linear discriminant tell the labels apart on held-out rows?

Linear discriminant analysis with a Ledoit–Wolf shrunk covariance (default) is a fast,
nearly tuning-free linear classifier, well suited to embeddings with more dimensions than
rows per label. The probe reports stratified k-fold cross-validated accuracy with an exact
interval, the chance (majority-class) rate and a one-sided binomial p-value against it,
plus a projection on the discriminant axes for a picture.

The p-value against chance is an exact label-permutation test
(:mod:`embedforensics.probes.permutation`): labels permuted within fixed stratified folds,
every fold refitted for every permutation. By default (``permutation_test="ledoit_wolf"``)
the tested classifier is the least-squares discriminant with a Ledoit–Wolf-shrunk *total*
covariance — for two labels Fisher's direction, the same model family as the reported
shrunk LDA, whose refits are closed-form matrix products for all permutations at once;
its accuracy is reported beside LDA's (``permutation_statistic``).
``permutation_test="refit"`` refits scikit-learn's LDA itself for every permutation (joblib
workers, Besag–Clifford sequential stopping).

Memory-mapped embeddings (``streams``) are never loaded: the cross-validated accuracy is
computed on every row by :func:`embedforensics.probes.streaming_cv.streamed_cv_lda` (three
chunked passes, the same folds and the same shrunk LDA per fold, exactly), the projection
comes from the streamed all-row fit applied to the plotted rows only, and the permutation
test runs in memory on a seeded stratified subsample (``PERMUTATION_MAX_ROWS``, within the
probe memory budget), its n stated in the metric and ``params.permutation``.
"""

from __future__ import annotations

from functools import partial
from typing import Any, ClassVar

import numpy as np
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.metrics import confusion_matrix
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from embedforensics.probes import progress
from embedforensics.probes.base import Metric, Plot, Probe, ProbeResult
from embedforensics.probes.permutation import (
    RidgeCV,
    fold_ids,
    ledoit_wolf_penalty,
    refit_null,
    sequential_p,
    standardise,
)
from embedforensics.probes.stats import (
    accuracy_metrics,
    check_folds,
    fmt_p,
    fmt_pct,
    fmt_perm_p,
    matrix_table,
    per_label_recall_table,
    permutation_p_metric,
    plot_floats,
    stratified_subsample,
)
from embedforensics.probes.streaming_cv import (
    note_subsampled_test,
    permutation_rows,
    read_rows,
    streamed_cv_lda,
)

JITTER = 0.3
"""Half-width of the vertical jitter in the two-label strip plot (labels sit 1 apart)."""


def lda_oof_accuracy(estimator: Any, X: np.ndarray, y: np.ndarray, fold: np.ndarray,
                     order: np.ndarray) -> float:
    """Out-of-fold accuracy of a fresh clone of ``estimator`` per fold for the labels
    ``y[order]`` (the refit permutation test's statistic; module-level for joblib)."""
    from sklearn.base import clone

    permuted = y[order]
    correct = 0
    for f in np.unique(fold):
        train, test = fold != f, fold == f
        pred = clone(estimator).fit(X[train], permuted[train]).predict(X[test])
        correct += int(np.sum(pred == permuted[test]))
    return correct / len(y)


class LDAProbe(Probe):
    """Linear discriminant analysis: cross-validated accuracy with a CI; projection plot.

    Parameters
    ----------
    n_folds : int, default 5
        Folds of stratified cross-validation; must not exceed the rows of the rarest label.
    seed : int, default 0
        Seeds the fold shuffle and the plot subsample / jitter.
    shrinkage : {"auto", "none"}, default "auto"
        "auto" shrinks the within-class covariance with the Ledoit–Wolf estimate (solver
        lsqr for classification, eigen for the projection); "none" uses the plain SVD solver.
    max_points : int, default 2000
        At most this many points (stratified by label) go into the projection plot.
    n_permutations : int, default 99
        Label permutations (each refitting every fold) behind the ``p_value`` against
        chance; 0 reports the binomial p-value instead, which is anti-conservative for
        cross-validated predictions (benchmarks/README.md, calibration).
    permutation_test : {"ledoit_wolf", "refit"}, default "ledoit_wolf"
        "ledoit_wolf": the p-value tests the least-squares discriminant with a
        Ledoit–Wolf-shrunk total covariance, refitted in closed form (fast, exact);
        "refit": it tests the reported LDA itself, refitting every fold per permutation.
    n_jobs : int, default -1
        joblib workers of the "refit" test (-1: all cores); the p-value does not depend on it.
    stop_after : int or None, default 10
        Sequential (Besag–Clifford) stopping of the "refit" test after this many permuted
        accuracies reach the observed one; None runs every permutation.

    The projection plot is fitted on all rows, so its separation is in-sample and optimistic
    (with more dimensions than rows even pure noise separates); the cross-validated accuracy
    is the number to trust. With two labels there is one discriminant axis: the plot is a
    strip plot, x = LD1 score and y = the label's index plus uniform jitter of +/- 0.3.
    """

    name: ClassVar[str] = "lda"
    description: ClassVar[str] = (
        "Linear discriminant analysis: cross-validated accuracy with a CI; projection plot."
    )
    min_labels: ClassVar[int] = 2
    headline: ClassVar[str | None] = "accuracy"
    streams: ClassVar[bool] = True  # memory-mapped X: streamed_cv_lda on all rows
    _param_specs: ClassVar[dict[str, tuple]] = {
        "n_folds": ("int", 2, None, None),
        "seed": ("int", 0, 2**32 - 1, None),
        "n_permutations": ("int", 0, None, None),
        "shrinkage": ("str", None, None, ("auto", "none")),
        "max_points": ("int", 1, None, None),
        "permutation_test": ("str", None, None, ("ledoit_wolf", "refit")),
        "n_jobs": ("int", -64, None, None),
        "stop_after": ("int_or_none", 1, None, None),
    }

    def __init__(self, *, n_folds: int = 5, seed: int = 0, shrinkage: str = "auto",
                 max_points: int = 2000, n_permutations: int = 99,
                 permutation_test: str = "ledoit_wolf", n_jobs: int = -1,
                 stop_after: int | None = 10):
        self.n_folds = n_folds
        self.seed = seed
        self.shrinkage = shrinkage
        self.max_points = max_points
        self.n_permutations = n_permutations
        self.permutation_test = permutation_test
        self.n_jobs = n_jobs
        self.stop_after = stop_after

    def _estimator(self, *, for_projection: bool) -> LinearDiscriminantAnalysis:
        """LDA configured for ``shrinkage``; the eigen solver is the shrunk one that projects."""
        if self.shrinkage == "none":
            return LinearDiscriminantAnalysis(solver="svd")
        return LinearDiscriminantAnalysis(solver="eigen" if for_projection else "lsqr",
                                          shrinkage="auto")

    def _fit(self, X: np.ndarray, y: np.ndarray, **context: Any) -> ProbeResult:
        check_folds(type(self).__name__, y, self.n_folds)
        n, d = X.shape
        y = y.astype(str)
        labels = [str(v) for v in np.unique(y)]
        cv = StratifiedKFold(n_splits=self.n_folds, shuffle=True, random_state=self.seed)
        estimator = self._estimator(for_projection=False)
        streamed = None
        if self.out_of_core_:  # every row, read in chunks; the same folds as in memory
            fold = fold_ids(list(cv.split(np.zeros((n, 1)), y)), n)
            with progress.bar(3 if self.shrinkage == "auto" else 2,
                              "lda: passes over the memory map", "pass") as bar:
                streamed = streamed_cv_lda(X, np.searchsorted(labels, y), fold, len(labels),
                                           shrinkage=self.shrinkage, progress=bar)
            pred = np.asarray(labels)[streamed.pred]
        else:
            pred = cross_val_predict(estimator, X, y, cv=cv)

        how = f"{self.n_folds}-fold stratified cross-validated LDA"
        metrics = accuracy_metrics(y, pred, how=how)
        test = None
        n_test, subsample = n, ""
        if self.n_permutations:
            Xt, yt = X, y
            if streamed is not None:  # the in-memory test on a bounded subsample
                rows = permutation_rows(y, d, self.seed, self.n_folds)
                Xt, yt, n_test = read_rows(X, rows, X.dtype), y[rows], len(rows)
                if n_test < n:
                    subsample = (f" The permutation test ran on a seeded stratified "
                                 f"subsample of {n_test:,} of the {n:,} memory-mapped rows "
                                 f"(its own stratified folds); the accuracy uses every row.")
            fold = fold_ids(list(cv.split(Xt, yt)), n_test)
            test = self._permutation_test(estimator, Xt, yt, labels, fold)
            metrics["p_value"] = permutation_p_metric(
                test, n_test, statistic=self._statistic_name(),
                reported=self._reported_note(float(np.mean(pred == y)), test.observed)
                + subsample)
            metrics["permutation_statistic"] = Metric(
                value=test.observed, n=n_test,
                method="the statistic of the p_value's permutation test",
                description="Out-of-fold accuracy of the classifier whose permutation test "
                            "gives the p-value: " + self._statistic_name() + ".")
        acc = metrics["accuracy"]
        chance = metrics["chance_accuracy"].value
        cm = confusion_matrix(y, pred, labels=labels)

        # Projection on the discriminant axes, fitted on all rows (in-sample).
        idx = stratified_subsample(y, self.max_points, self.seed)
        if streamed is not None:  # the streamed all-row fit; only the plotted rows are read
            lda = streamed.projection
            self.lda_ = lda
            proj = lda.transform(read_rows(X, idx))
            ratios = lda.explained_variance_ratio
        else:
            lda = self._estimator(for_projection=True).fit(X, y)
            self.lda_ = lda
            proj = lda.transform(X)[idx]
            ratios = lda.explained_variance_ratio_
        # The SVD solver's ratios are exact shares of the between-label variance; the shrunk
        # eigen solver's are distorted by the shrinkage (two labels would not give LD1 100%),
        # so the axis labels show the share only for shrinkage="none".
        ratio = (np.asarray(ratios, dtype=float)
                 if self.shrinkage == "none" else np.array([]))

        def axis(i: int) -> str:
            share = f" ({fmt_pct(ratio[i])} of between-label variance)" if len(ratio) > i else ""
            return f"LD{i + 1}{share}"

        note = "fitted on all rows, so in-sample and optimistic"
        if proj.shape[1] >= 2:
            plot = Plot(kind="scatter", title=f"LDA projection ({note}; {len(idx)} of {n} rows)",
                        data={"x": plot_floats(proj[:, 0]), "y": plot_floats(proj[:, 1]),
                              "labels": y[idx].tolist()},
                        xlabel=axis(0), ylabel=axis(1))
        else:
            rng = np.random.default_rng(self.seed)
            strip = np.searchsorted(labels, y[idx]) + rng.uniform(-JITTER, JITTER, len(idx))
            plot = Plot(kind="scatter",
                        title=f"LDA projection, one axis for two labels ({note}; "
                              f"{len(idx)} of {n} rows)",
                        data={"x": plot_floats(proj[:, 0]), "y": plot_floats(strip),
                              "labels": y[idx].tolist()},
                        xlabel=axis(0),
                        ylabel="label (0 = " + labels[0] + ", 1 = " + labels[1]
                               + "; vertical jitter only)")

        summary = (
            f"Linear discriminant analysis tells the {len(labels)} labels apart with "
            f"{fmt_pct(acc.value)} cross-validated accuracy (95% CI {fmt_pct(acc.ci[0])}–"
            f"{fmt_pct(acc.ci[1])}, n={n}; chance {fmt_pct(chance)}, "
            f"{fmt_p(metrics['p_value'].value) if test is None else fmt_perm_p(test)})."
        )
        tables = {
            "per_label_recall": per_label_recall_table(y, pred, labels),
            "confusion_matrix": matrix_table(cm, labels, labels, "true \\ predicted"),
        }
        params: dict[str, Any] = {"n_rows": n, "dim": d}  # constructor's: added by fit
        if test is not None:
            params["permutation"] = {
                "test": self.permutation_test, "n_permutations": test.n_permutations,
                "n_evaluated": test.n_evaluated, "stopped_early": test.stopped_early,
                "folds": "fixed stratified folds; labels permuted within each fold"}
        if streamed is not None:
            summary = note_subsampled_test(summary, params.get("permutation"), n, n_test)
            params["streaming"] = {
                "passes": streamed.passes, "chunk_rows": streamed.chunk_rows,
                "scatter_precision": streamed.precision,
                "how": "per-(fold, label) counts, sums and scatter in one pass; "
                       + ("per-label Ledoit-Wolf intensities from a second pass; "
                          if self.shrinkage == "auto" else "")
                       + "held-out rows scored in a last pass; projection of the plotted "
                         "rows by the streamed all-row fit",
            }
            if self.shrinkage == "auto":
                params["streaming"]["ledoit_wolf_shrinkage_per_fold"] = [
                    r.shrinkage.tolist() for r in streamed.rules]
        return ProbeResult(probe=self.name, summary=summary, metrics=metrics, tables=tables,
                           plots=[plot], params=params)

    # ---- the permutation test ------------------------------------------------------------
    def _statistic_name(self) -> str:
        if self.permutation_test == "ledoit_wolf":
            return ("out-of-fold accuracy of the least-squares discriminant on standardised "
                    "features with a Ledoit-Wolf-shrunk total covariance per training fold "
                    "(label-free shrinkage; closed-form refits)")
        return "out-of-fold accuracy of the reported LDA, refitted per fold and permutation"

    def _reported_note(self, reported: float, statistic: float) -> str:
        if self.permutation_test == "ledoit_wolf":
            return (f"The tested classifier is this least-squares discriminant (accuracy "
                    f"{fmt_pct(statistic)}, metric permutation_statistic), not the reported "
                    f"LDA with per-class Ledoit-Wolf covariances (accuracy "
                    f"{fmt_pct(reported)}); for two labels both use Fisher's direction up "
                    f"to the shrinkage. permutation_test='refit' tests the LDA itself.")
        return "The tested classifier is the reported one."

    def _permutation_test(self, estimator: Any, X: np.ndarray, y: np.ndarray,
                          labels: list[str], fold: np.ndarray) -> Any:
        codes = np.searchsorted(labels, y)
        with progress.bar(self.n_permutations,
                          f"lda: permutations ({self.permutation_test})", "perm") as bar:
            if self.permutation_test == "ledoit_wolf":
                ridge = RidgeCV(standardise(X), fold, len(labels), nested=False,
                                fixed_penalty=ledoit_wolf_penalty)
                return ridge.permutation_test(codes, self.n_permutations, self.seed,
                                              progress=bar)
            stat = partial(lda_oof_accuracy, estimator, np.asarray(X), codes, fold)
            return sequential_p(stat(np.arange(len(codes))),
                                refit_null(stat, fold, self.seed, self.n_jobs),
                                self.n_permutations, stop_after=self.stop_after,
                                batch=max(8, 2 * abs(self.n_jobs)), progress=bar)
