"""Linear probe: cross-validated logistic regression on the embeddings.

The standard "is the information linearly decodable?" test. Features are standardised
inside the cross-validation pipeline (so no statistics leak from test folds), and every
number comes from out-of-fold predictions: accuracy with an exact Clopper–Pearson interval
next to the chance rate, AUROC and balanced accuracy with a seeded stratified bootstrap
interval, per-label recall with exact intervals and the confusion matrix.

The regularisation ``C`` is chosen by nested cross-validation by default (issue 23: a fixed
C = 1 understated the embedding by about 4 points on real data): within each outer
training set, ``LogisticRegressionCV`` picks C from ``CS_GRID`` on inner folds that are
the other outer folds, and the C chosen in every outer fold is recorded.

The p-value against chance is an exact label-permutation test
(:mod:`embedforensics.probes.permutation`). By default (``permutation_test="ridge"``) its
statistic is the out-of-fold accuracy of a ridge discriminant with its penalty chosen by
the same nested scheme, every fold and the penalty choice recomputed for every
permutation in closed form — seconds instead of the ~1,000 logistic fits per study that a
refit test costs. The metric's method says so, and the ridge's accuracy is reported beside
the logistic regression's (``permutation_statistic``). ``permutation_test="refit"`` refits
the reported logistic procedure itself for every permutation (joblib workers, sequential
stopping).

Memory-mapped embeddings (``streams``) are never loaded: each outer fold's C is chosen as
above on an in-memory seeded subsample of its training rows (``tune_max_rows``), then all
K folds' logistic regressions are fitted on every training row by
:func:`embedforensics.probes.streaming_cv.streamed_cv_logistic` (one L-BFGS over the
concatenated fold parameters, one chunked pass per evaluation, the same objective and
stopping rule as scikit-learn's lbfgs), and the out-of-fold probabilities come from one
more pass. The permutation test runs in memory on a seeded stratified subsample
(``PERMUTATION_MAX_ROWS``, within the probe memory budget), its n stated in the metric and
``params.permutation``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from embedforensics.probes import progress
from embedforensics.probes.base import Metric, Plot, Probe, ProbeResult, probe_memory_bytes
from embedforensics.probes.permutation import (
    RidgeCV,
    fold_ids,
    refit_null,
    sequential_p,
    standardise,
)
from embedforensics.probes.stats import (
    CI_LEVEL,
    accuracy_metrics,
    auroc_batch,
    balanced_accuracy_batch,
    check_folds,
    fmt_p,
    fmt_pct,
    fmt_perm_p,
    matrix_table,
    per_label_recall_table,
    permutation_p_metric,
    stratified_bootstrap_ci,
    stratified_subsample,
)
from embedforensics.probes.streaming_cv import (
    note_subsampled_test,
    permutation_rows,
    read_rows,
    streamed_cv_logistic,
)

CS_GRID = tuple(float(c) for c in 10.0 ** np.arange(-4, 3))
"""Values of C the nested cross-validation chooses from (1e-4 ... 100)."""


def _accuracy(estimator: Any, X: np.ndarray, y: np.ndarray) -> float:
    """Accuracy scorer without scikit-learn's per-call target checks (half the time of a
    small nested fit went to ``accuracy_score``'s validation)."""
    return float(np.mean(estimator.predict(X) == y))


def _model(C: float | None, max_iter: int, seed: int,
           inner: list[tuple[np.ndarray, np.ndarray]] | None) -> Any:
    """Standardise + logistic regression; ``C=None``: C chosen on the ``inner`` splits."""
    if C is None:
        # l2 only, accuracy as the selection score (scikit-learn 1.9's defaults, spelled
        # out because 1.10/1.11 change them), scalar C_
        clf = LogisticRegressionCV(Cs=list(CS_GRID), cv=inner, max_iter=max_iter,
                                   random_state=seed, l1_ratios=(0.0,), scoring=_accuracy,
                                   use_legacy_attributes=False)
    else:
        clf = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
    return make_pipeline(StandardScaler(), clf)


def logistic_oof(X: np.ndarray, codes: np.ndarray, fold: np.ndarray, k: int,
                 C: float | None, max_iter: int, seed: int,
                 tune_max_rows: int | None = None) -> tuple[np.ndarray, list[float], int]:
    """Out-of-fold probabilities (n × k), the C used per outer fold and how many folds hit
    ``max_iter`` in at least one of their fits. With ``C=None`` each outer training set
    chooses C by cross-validation over the other outer folds (nested CV; ties to the
    smaller C, scikit-learn's rule). Above ``tune_max_rows`` training rows the choice of C
    uses a seeded stratified subsample of that many rows (same inner folds), and the chosen
    C is then fitted on every training row of the fold: the inner search costs 29 fits per
    fold, the final fit one.
    """
    proba = np.zeros((len(codes), k))
    chosen: list[float] = []
    unconverged = 0
    for f in np.unique(fold):
        train, test = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            if C is None:
                tune = train
                if tune_max_rows is not None and len(train) > tune_max_rows:
                    tune = train[stratified_subsample(codes[train], tune_max_rows,
                                                      seed + int(f))]
                inner = _inner_splits(fold[tune], codes[tune], seed + int(f))
                model = _model(None, max_iter, seed, inner).fit(X[tune], codes[tune])
                c_fold = float(np.ravel(model[-1].C_)[0])
                if len(tune) < len(train):
                    model = _model(c_fold, max_iter, seed, None).fit(X[train], codes[train])
            else:
                c_fold = float(C)
                model = _model(C, max_iter, seed, None).fit(X[train], codes[train])
        # a fold counts once however many of its nested fits hit max_iter
        unconverged += any(issubclass(w.category, ConvergenceWarning) for w in caught)
        for w in caught:  # pass on anything that is not the convergence notice we count
            if not issubclass(w.category, ConvergenceWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        proba[np.ix_(test, model[-1].classes_)] = model.predict_proba(X[test])
        chosen.append(c_fold)
    return proba, chosen, unconverged


def _inner_splits(sub: np.ndarray, codes: np.ndarray, seed: int
                  ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Inner CV splits of an outer training set: its own outer folds when it holds at least
    two of them; with ``n_folds=2`` (one fold) a seeded 2-fold split of its rows, stratified
    when every class has at least 2 rows."""
    groups = np.unique(sub)
    if groups.size >= 2:
        return [(np.flatnonzero(sub != g), np.flatnonzero(sub == g)) for g in groups]
    from sklearn.model_selection import KFold, StratifiedKFold

    rows = np.arange(codes.size)
    if np.bincount(codes)[np.unique(codes)].min() >= 2:
        return list(StratifiedKFold(2, shuffle=True, random_state=seed).split(rows, codes))
    return list(KFold(2, shuffle=True, random_state=seed).split(rows))


def logistic_oof_accuracy(X: np.ndarray, codes: np.ndarray, fold: np.ndarray, k: int,
                          C: float | None, max_iter: int, seed: int,
                          tune_max_rows: int | None, order: np.ndarray) -> float:
    """Out-of-fold accuracy of :func:`logistic_oof` for the labels ``codes[order]`` (the
    statistic of the refit permutation test; module-level so joblib workers can run it)."""
    permuted = codes[order]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        proba, _, _ = logistic_oof(X, permuted, fold, k, C, max_iter, seed, tune_max_rows)
    return float(np.mean(np.argmax(proba, axis=1) == permuted))


class LinearProbe(Probe):
    """Cross-validated logistic regression: accuracy and AUROC with CIs; confusion matrix.

    Parameters
    ----------
    n_folds : int, default 5
        Folds of stratified cross-validation; must not exceed the rows of the rarest label.
    C : float or None, default None
        Inverse L2 regularisation strength of the logistic regression (> 0); None chooses
        it by nested cross-validation from ``CS_GRID`` in every outer fold (recorded as
        ``C_per_fold``).
    max_iter : int, default 1000
        Iteration cap of the lbfgs solver; folds that hit it are counted in the result.
    seed : int, default 0
        Seeds the fold shuffle and the bootstrap.
    n_bootstrap : int, default 1000
        Bootstrap resamples for the AUROC and balanced-accuracy intervals; 0 skips them
        (the metrics are then reported without an interval).
    n_permutations : int, default 99
        Label permutations (each refitting every fold) behind the ``p_value`` against
        chance; 0 reports the binomial p-value instead, which is anti-conservative for
        cross-validated predictions (benchmarks/README.md, calibration).
    permutation_test : {"ridge", "refit"}, default "ridge"
        "ridge": the p-value tests the out-of-fold accuracy of a nested-CV ridge
        discriminant, refitted in closed form for every permutation (fast, exact);
        "refit": it tests the reported logistic regression itself, refitting every fold
        (and the choice of C) for every permutation.
    n_jobs : int, default -1
        joblib workers of the "refit" test (-1: all cores); the p-value does not depend on it.
    stop_after : int or None, default 10
        Sequential stopping of the "refit" test (Besag–Clifford): stop once this many
        permuted accuracies reach the observed one (p = stop_after / permutations run).
        None runs every permutation.
    tune_max_rows : int or None, default 5000
        Above this many training rows per outer fold, C is chosen on a seeded stratified
        subsample of this many of them (then fitted on all); recorded as
        ``C_tuned_on_rows``. None always tunes on every row.
    """

    name: ClassVar[str] = "linear"
    description: ClassVar[str] = (
        "Cross-validated logistic regression: accuracy and AUROC with CIs; confusion matrix."
    )
    min_labels: ClassVar[int] = 2
    headline: ClassVar[str | None] = "accuracy"
    streams: ClassVar[bool] = True  # memory-mapped X: streamed_cv_logistic on all rows
    _param_specs: ClassVar[dict[str, tuple]] = {
        "n_folds": ("int", 2, None, None),
        "C": ("positive_float_or_none", None, None, None),
        "max_iter": ("int", 1, None, None),
        "seed": ("int", 0, 2**32 - 1, None),
        "n_permutations": ("int", 0, None, None),
        "n_bootstrap": ("int", 0, None, None),
        "permutation_test": ("str", None, None, ("ridge", "refit")),
        "n_jobs": ("int", -64, None, None),
        "stop_after": ("int_or_none", 1, None, None),
        "tune_max_rows": ("int_or_none", 10, None, None),
    }

    def __init__(self, *, n_folds: int = 5, C: float | None = None, max_iter: int = 1000,
                 seed: int = 0, n_bootstrap: int = 1000, n_permutations: int = 99,
                 permutation_test: str = "ridge", n_jobs: int = -1,
                 stop_after: int | None = 10, tune_max_rows: int | None = 5000):
        self.n_folds = n_folds
        self.C = C
        self.max_iter = max_iter
        self.seed = seed
        self.n_bootstrap = n_bootstrap
        self.n_permutations = n_permutations
        self.permutation_test = permutation_test
        self.n_jobs = n_jobs
        self.stop_after = stop_after
        self.tune_max_rows = tune_max_rows


    def _fit(self, X: np.ndarray, y: np.ndarray, **context: Any) -> ProbeResult:
        check_folds(type(self).__name__, y, self.n_folds)
        n = len(y)
        y = y.astype(str)
        labels = [str(v) for v in np.unique(y)]
        codes = np.searchsorted(labels, y)
        cv = StratifiedKFold(n_splits=self.n_folds, shuffle=True, random_state=self.seed)
        # the folds depend on the labels alone (a memory map is not touched)
        fold = fold_ids(list(cv.split(np.zeros((n, 1)) if self.out_of_core_ else X, y)), n)
        streamed = None
        if self.out_of_core_:  # every row read in chunks
            proba, c_per_fold, unconverged, streamed = self._streamed_oof(
                X, codes, fold, len(labels))
        elif self.C is not None:
            model = _model(self.C, self.max_iter, self.seed, None)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                # Probabilities once; the prediction is their argmax (what predict() returns
                # for logistic regression), so the folds are fitted only once. Columns follow
                # the sorted labels because stratified training folds contain every label.
                proba = cross_val_predict(model, X, y, cv=cv, method="predict_proba")
            unconverged = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
            for w in caught:  # pass on anything that is not the convergence notice we count
                if not issubclass(w.category, ConvergenceWarning):
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            c_per_fold = [float(self.C)] * self.n_folds
        else:
            proba, c_per_fold, unconverged = logistic_oof(
                X, codes, fold, len(labels), None, self.max_iter, self.seed,
                self.tune_max_rows)
        pred = np.asarray(labels)[np.argmax(proba, axis=1)]

        tuned = ("C chosen per fold by nested cross-validation" if self.C is None
                 else f"C={self.C:g}")
        how = (f"{self.n_folds}-fold stratified cross-validated logistic regression "
               f"({tuned})")
        test = None
        n_test, subsample = n, ""
        if self.n_permutations:
            if streamed is not None:  # the in-memory test on a bounded subsample
                rows = permutation_rows(y, X.shape[1], self.seed, self.n_folds)
                n_test = len(rows)
                fold_t = fold_ids(list(cv.split(np.zeros((n_test, 1)), y[rows])), n_test)
                test, stat_metric = self._permutation_test(
                    read_rows(X, rows, X.dtype), codes[rows], fold_t, len(labels))
                if n_test < n:
                    subsample = (f" The permutation test ran on a seeded stratified "
                                 f"subsample of {n_test:,} of the {n:,} memory-mapped rows "
                                 f"(its own stratified folds); the accuracy uses every row.")
            else:
                test, stat_metric = self._permutation_test(X, codes, fold, len(labels))
        metrics = accuracy_metrics(y, pred, how=how)
        if test is not None:
            metrics["p_value"] = permutation_p_metric(
                test, n_test, statistic=self._statistic_name(),
                reported=self._reported_note(float(np.mean(pred == y)), test.observed)
                + subsample)
            metrics["permutation_statistic"] = stat_metric
        metrics["auroc"] = self._auroc(codes, proba, len(labels))
        metrics["balanced_accuracy"] = self._balanced_accuracy(codes, proba, len(labels))

        cm = confusion_matrix(y, pred, labels=labels)
        tables = {
            "per_label_recall": per_label_recall_table(y, pred, labels),
            "confusion_matrix": matrix_table(cm, labels, labels, "true \\ predicted"),
        }
        plots = [Plot(kind="matrix", title=f"Confusion matrix (out-of-fold, n={n})",
                      data={"values": cm.tolist(), "row_labels": labels, "col_labels": labels},
                      xlabel="predicted label", ylabel="true label")]

        acc, auroc = metrics["accuracy"], metrics["auroc"]
        auroc_ci = (f" (95% CI {auroc.ci[0]:.3f}–{auroc.ci[1]:.3f})" if auroc.ci is not None
                    else "")
        summary = (
            f"A linear probe tells the {len(labels)} labels apart with {fmt_pct(acc.value)} "
            f"accuracy (95% CI {fmt_pct(acc.ci[0])}–{fmt_pct(acc.ci[1])}, n={n}; chance "
            f"{fmt_pct(metrics['chance_accuracy'].value)}, {self._p_text(metrics, test)}) "
            f"and AUROC {auroc.value:.3f}{auroc_ci}{self._c_text(c_per_fold)}."
        )
        if unconverged:
            summary = summary[:-1] + (
                f"; the solver hit max_iter={self.max_iter} in {unconverged} of "
                f"{self.n_folds} folds, so raise max_iter."
            )
        params = {"unconverged_folds": unconverged,  # constructor parameters: added by fit
                  "C_per_fold": c_per_fold}
        if self.C is None:
            n_train = n - int(np.min(np.bincount(fold)))
            params["C_tuned_on_rows"] = (n_train if self.tune_max_rows is None
                                         else min(n_train, self.tune_max_rows))
            if streamed is not None:
                params["C_tuned_on_rows"] = min(n_train, self._tune_cap(X.shape[1]))
        if test is not None:
            params["permutation"] = {
                "test": self.permutation_test, "n_permutations": test.n_permutations,
                "n_evaluated": test.n_evaluated, "stopped_early": test.stopped_early,
                "folds": "fixed stratified folds; labels permuted within each fold"}
            if self.permutation_test == "ridge":
                params["permutation"]["ridge_penalty_per_row_per_fold"] = \
                    self._ridge_chosen
        if streamed is not None:
            summary = note_subsampled_test(summary, params.get("permutation"), n, n_test)
            params["streaming"] = {
                "passes": streamed.passes, "iterations": streamed.n_iter,
                "converged": streamed.converged,
                "converged_folds": streamed.converged_folds,
                "solver_message": streamed.message, "chunk_rows": streamed.chunk_rows,
                "how": "every outer fold's logistic regression fitted on all its training "
                       "rows by one L-BFGS over the concatenated fold parameters, one "
                       "chunked pass per function/gradient evaluation (plus one pass of "
                       "standardisation moments and one of out-of-fold scores)"}
        return ProbeResult(probe=self.name, summary=summary, metrics=metrics, tables=tables,
                           plots=plots, params=params)

    # ---- out of core ---------------------------------------------------------------------
    def _tune_cap(self, d: int) -> int:
        """Rows the choice of C uses per outer fold on memory-mapped embeddings:
        ``tune_max_rows``, or (None) as many float64 rows as fit the probe memory budget."""
        if self.tune_max_rows is not None:
            return self.tune_max_rows
        return max(10, probe_memory_bytes() // (8 * max(d, 1)))

    def _streamed_oof(self, X: Any, codes: np.ndarray, fold: np.ndarray, k: int
                      ) -> tuple[np.ndarray, list[float], int, Any]:
        """Out-of-fold probabilities on every row of memory-mapped ``X``: C per outer fold
        chosen in memory on (a seeded stratified subsample of) its training rows exactly as
        :func:`logistic_oof` does, then every fold fitted out of core at once. Returns
        ``(proba, C per fold, unconverged folds, the StreamedLogisticCV)``."""
        folds = np.unique(fold)
        chosen: list[float] = []
        tune_warned: list[bool] = []
        cap = self._tune_cap(X.shape[1])
        for f in folds:
            if self.C is not None:
                chosen.append(float(self.C))
                tune_warned.append(False)
                continue
            train = np.flatnonzero(fold != f)
            tune = train
            if len(train) > cap:
                tune = train[stratified_subsample(codes[train], cap, self.seed + int(f))]
            inner = _inner_splits(fold[tune], codes[tune], self.seed + int(f))
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                model = _model(None, self.max_iter, self.seed, inner).fit(
                    read_rows(X, tune, X.dtype), codes[tune])
            tune_warned.append(any(issubclass(w.category, ConvergenceWarning)
                                   for w in caught))
            for w in caught:
                if not issubclass(w.category, ConvergenceWarning):
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            chosen.append(float(np.ravel(model[-1].C_)[0]))
        # passes over the memory map: the total is not known in advance (L-BFGS)
        with progress.bar(None, f"linear: {len(folds)} folds out of core",  # type: ignore[arg-type]
                          "pass") as bar:
            streamed = streamed_cv_logistic(X, codes, fold, k, chosen, max_iter=self.max_iter,
                                            progress=bar)
        unconverged = sum(w or not ok for w, ok in zip(tune_warned, streamed.converged_folds,
                                                       strict=True))
        return streamed.proba, chosen, unconverged, streamed

    # ---- the permutation test ------------------------------------------------------------
    def _statistic_name(self) -> str:
        if self.permutation_test == "ridge":
            return ("out-of-fold accuracy of a ridge (least-squares) discriminant on "
                    "standardised features, its penalty chosen per outer fold by nested "
                    "cross-validation over the other folds and rechosen for every permutation "
                    "(closed-form refits)")
        return ("out-of-fold accuracy of the reported logistic regression (" +
                ("C rechosen by nested cross-validation for every permutation"
                 if self.C is None else f"C={self.C:g}") + ")")

    def _reported_note(self, reported: float, statistic: float) -> str:
        if self.permutation_test == "ridge":
            return (f"The tested classifier is this ridge discriminant (accuracy "
                    f"{fmt_pct(statistic)}, metric permutation_statistic), not the reported "
                    f"logistic regression (accuracy {fmt_pct(reported)}); both are linear "
                    f"read-outs of the same folds. permutation_test='refit' tests the "
                    f"logistic regression itself.")
        return "The tested classifier is the reported one."

    def _permutation_test(self, X: np.ndarray, codes: np.ndarray, fold: np.ndarray,
                          k: int) -> tuple[Any, Metric]:
        """Run the exact permutation test; returns it and the metric of its statistic."""
        with progress.bar(self.n_permutations, f"linear: permutations ({self.permutation_test})",
                          "perm") as bar:
            if self.permutation_test == "ridge":
                ridge = RidgeCV(standardise(X), fold, k)
                test = ridge.permutation_test(codes, self.n_permutations, self.seed,
                                              progress=bar)
                self._ridge_chosen = [ridge.chosen_[f] for f in sorted(ridge.chosen_)]
            else:
                stat = partial(logistic_oof_accuracy, np.asarray(X), codes, fold, k, self.C,
                               self.max_iter, self.seed, self.tune_max_rows)
                test = sequential_p(stat(np.arange(len(codes))),
                                    refit_null(stat, fold, self.seed, self.n_jobs),
                                    self.n_permutations, stop_after=self.stop_after,
                                    batch=max(8, 2 * abs(self.n_jobs)), progress=bar)
        n = len(codes)
        k_correct = round(test.observed * n)
        metric = Metric(
            value=test.observed, n=n, method="the statistic of the p_value's permutation test",
            description=f"Out-of-fold accuracy of the classifier whose permutation test gives "
                        f"the p-value ({k_correct} of {n}): " + self._statistic_name() + ".")
        return test, metric

    @staticmethod
    def _p_text(metrics: dict[str, Metric], test: Any) -> str:
        return fmt_p(metrics["p_value"].value) if test is None else fmt_perm_p(test)

    def _c_text(self, c_per_fold: list[float]) -> str:
        if self.C is not None:
            return ""
        chosen = sorted(set(c_per_fold))
        return f"; C chosen by nested CV: {', '.join(f'{c:g}' for c in chosen)}"

    # ---- bootstrapped metrics --------------------------------------------------------------
    def _interval(self, statistic: Callable[[np.ndarray], np.ndarray],
                  codes: np.ndarray) -> tuple[float, float] | None:
        if self.n_bootstrap == 0:
            return None
        return stratified_bootstrap_ci(statistic, codes, self.n_bootstrap, self.seed)

    def _boot_method(self) -> str:
        if self.n_bootstrap == 0:
            return "no interval (n_bootstrap=0)"
        return (f"stratified percentile bootstrap of the out-of-fold scores "
                f"({self.n_bootstrap} resamples; fold models not refitted)")

    def _auroc(self, codes: np.ndarray, proba: np.ndarray, k: int) -> Metric:
        """AUROC of the out-of-fold probabilities: binary, or macro one-vs-rest for k > 2."""
        if k == 2:
            value = roc_auc_score(codes, proba[:, 1])
            what = "Area under the ROC curve of the out-of-fold probability of the second label"
        else:
            value = roc_auc_score(codes, proba, multi_class="ovr", average="macro",
                                  labels=np.arange(k))
            what = ("Macro-averaged one-vs-rest area under the ROC curve of the out-of-fold "
                    "probabilities")
        ci = self._interval(lambda idx: auroc_batch(codes, proba, idx), codes)
        return Metric(value=float(value), n=len(codes), ci=ci,
                      ci_level=None if ci is None else CI_LEVEL, method=self._boot_method(),
                      description=f"{what}; 0.5 is chance, 1 is perfect separation.")

    def _balanced_accuracy(self, codes: np.ndarray, proba: np.ndarray, k: int) -> Metric:
        """Mean per-label recall: accuracy that imbalance cannot inflate (chance = 1/k)."""
        pred = np.argmax(proba, axis=1)
        ci = self._interval(lambda idx: balanced_accuracy_batch(codes, pred, idx), codes)
        return Metric(value=float(balanced_accuracy_score(codes, pred)), n=len(codes), ci=ci,
                      ci_level=None if ci is None else CI_LEVEL, method=self._boot_method(),
                      description=f"Mean of the per-label recalls of the out-of-fold "
                                  f"predictions; chance is 1/{k} = {fmt_pct(1 / k)} whatever "
                                  f"the label balance.")
