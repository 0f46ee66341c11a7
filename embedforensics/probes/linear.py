"""Linear probe: cross-validated logistic regression on the embeddings.

The standard "is the information linearly decodable?" test. Features are standardised
inside the cross-validation pipeline (so no statistics leak from test folds), and every
number comes from out-of-fold predictions: accuracy with an exact Clopper–Pearson interval
next to the chance rate and a one-sided binomial p-value, AUROC and balanced accuracy with a
seeded stratified bootstrap interval, per-label recall with exact intervals and the
confusion matrix.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from embedforensics.probes.base import Metric, Plot, Probe, ProbeResult
from embedforensics.probes.stats import (
    CI_LEVEL,
    accuracy_metrics,
    auroc_batch,
    balanced_accuracy_batch,
    check_folds,
    cv_permutation_p,
    fmt_p,
    fmt_pct,
    matrix_table,
    per_label_recall_table,
    stratified_bootstrap_ci,
)


class LinearProbe(Probe):
    """Cross-validated logistic regression: accuracy and AUROC with CIs; confusion matrix.

    Parameters
    ----------
    n_folds : int, default 5
        Folds of stratified cross-validation; must not exceed the rows of the rarest label.
    C : float, default 1.0
        Inverse L2 regularisation strength of the logistic regression (> 0).
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
    """

    name: ClassVar[str] = "linear"
    description: ClassVar[str] = (
        "Cross-validated logistic regression: accuracy and AUROC with CIs; confusion matrix."
    )
    min_labels: ClassVar[int] = 2
    headline: ClassVar[str | None] = "accuracy"
    _param_specs: ClassVar[dict[str, tuple]] = {
        "n_folds": ("int", 2, None, None),
        "C": ("positive_float", None, None, None),
        "max_iter": ("int", 1, None, None),
        "seed": ("int", 0, 2**32 - 1, None),
        "n_permutations": ("int", 0, None, None),
        "n_bootstrap": ("int", 0, None, None),
    }

    def __init__(self, *, n_folds: int = 5, C: float = 1.0, max_iter: int = 1000,
                 seed: int = 0, n_bootstrap: int = 1000, n_permutations: int = 99):
        self.n_folds = n_folds
        self.C = C
        self.max_iter = max_iter
        self.seed = seed
        self.n_bootstrap = n_bootstrap
        self.n_permutations = n_permutations


    def _fit(self, X: np.ndarray, y: np.ndarray, **context: Any) -> ProbeResult:
        check_folds(type(self).__name__, y, self.n_folds)
        n = len(y)
        y = y.astype(str)
        labels = [str(v) for v in np.unique(y)]
        model = make_pipeline(
            StandardScaler(),
            LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.seed),
        )
        cv = StratifiedKFold(n_splits=self.n_folds, shuffle=True, random_state=self.seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            # Probabilities once; the prediction is their argmax (what predict() returns for
            # logistic regression), so the folds are fitted only once. Columns follow the
            # sorted labels because stratified training folds contain every label.
            proba = cross_val_predict(model, X, y, cv=cv, method="predict_proba")
        unconverged = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
        for w in caught:  # pass on anything that is not the convergence notice we count
            if not issubclass(w.category, ConvergenceWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        pred = np.asarray(labels)[np.argmax(proba, axis=1)]
        codes = np.searchsorted(labels, y)

        how = f"{self.n_folds}-fold stratified cross-validated logistic regression"
        permutation = None
        if self.n_permutations:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)  # counted above for the fit
                permutation = (cv_permutation_p(model, X, y, cv, float(np.mean(pred == y)),
                                                self.n_permutations, self.seed),
                               self.n_permutations)
        metrics = accuracy_metrics(y, pred, how=how, permutation=permutation)
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
            f"{fmt_pct(metrics['chance_accuracy'].value)}, {fmt_p(metrics['p_value'].value)}) "
            f"and AUROC {auroc.value:.3f}{auroc_ci}."
        )
        if unconverged:
            summary = summary[:-1] + (
                f"; the solver hit max_iter={self.max_iter} in {unconverged} of "
                f"{self.n_folds} folds, so raise max_iter."
            )
        params = {"unconverged_folds": unconverged}  # constructor parameters: added by fit
        return ProbeResult(probe=self.name, summary=summary, metrics=metrics, tables=tables,
                           plots=plots, params=params)

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
