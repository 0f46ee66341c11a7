"""Sample-size curve: would more data change the verdict?

Held-out accuracy and AUROC of the linear probe (standardised logistic regression) trained
on growing numbers of rows per label. Each repeat draws a fresh stratified test set
(``test_fraction`` of the rows) and, from the remaining rows, nested training sets of
``m`` rows per label for a geometric grid of ``m`` (the smaller sets are subsets of the
larger, so the curve of one repeat is smooth and differences are paired). Every point is
the mean over repeats with a 95% t-interval of that mean and the sd; the gain from the
second-largest to the largest size comes with a paired t-interval, so a reader sees
whether the curve has flattened.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numpy as np
from scipy import stats as sps
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from embedforensics.probes import progress
from embedforensics.probes.base import Metric, Plot, Probe, ProbeParameterError, ProbeResult
from embedforensics.probes.stats import CI_LEVEL, child_seeds, fmt_pct


def mean_t_interval(values: np.ndarray, level: float = CI_LEVEL
                    ) -> tuple[float, float | None, tuple[float, float] | None]:
    """Mean, sample sd and t-interval of the mean (None for fewer than two values)."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, None, None
    sd = float(values.std(ddof=1))
    half = float(sps.t.ppf(0.5 + level / 2, len(values) - 1)) * sd / np.sqrt(len(values))
    return mean, sd, (mean - half, mean + half)


class LearningCurveProbe(Probe):
    """Accuracy and AUROC against training rows per label, with intervals over repeats.

    Parameters
    ----------
    n_sizes : int, default 6
        Points on the geometric grid of training rows per label, from ``min_per_label`` to
        the most every label can give after the test split.
    min_per_label : int, default 5
        Smallest training size per label.
    n_repeats : int, default 5
        Repeats (fresh test split and training draws each).
    test_fraction : float, default 0.25
        Share of rows held out for testing in each repeat.
    C : float, default 1.0
        Inverse L2 regularisation of the logistic regression.
    seed : int, default 0
    """

    name: ClassVar[str] = "learning_curve"
    description: ClassVar[str] = (
        "Sample-size curve: held-out accuracy and AUROC of the linear probe against training "
        "rows per label, with intervals over repeats.")
    min_labels: ClassVar[int] = 2
    headline: ClassVar[str | None] = "accuracy_at_largest"
    _param_specs: ClassVar[dict[str, tuple]] = {
        "n_sizes": ("int", 1, None, None),
        "min_per_label": ("int", 2, None, None),
        "n_repeats": ("int", 1, None, None),
        "test_fraction": ("float", 0.05, 0.9, None),
        "C": ("positive_float", None, None, None),
        "seed": ("int", 0, 2**32 - 1, None),
    }

    def __init__(self, *, n_sizes: int = 6, min_per_label: int = 5, n_repeats: int = 5,
                 test_fraction: float = 0.25, C: float = 1.0, seed: int = 0):
        self.n_sizes = n_sizes
        self.min_per_label = min_per_label
        self.n_repeats = n_repeats
        self.test_fraction = test_fraction
        self.C = C
        self.seed = seed

    def _fit(self, X: np.ndarray, y: np.ndarray, **context: Any) -> ProbeResult:
        y = np.asarray(y).astype(str)
        labels = [str(v) for v in np.unique(y)]
        counts = np.array([np.sum(y == lab) for lab in labels])
        largest = int(np.floor(counts.min() * (1 - self.test_fraction))) - 1
        if largest < self.min_per_label or counts.min() * self.test_fraction < 1:
            raise ProbeParameterError(
                f"LearningCurveProbe: label '{labels[int(np.argmin(counts))]}' has only "
                f"{int(counts.min())} rows, too few for a test share of {self.test_fraction} "
                f"and at least min_per_label={self.min_per_label} training rows; lower "
                f"min_per_label or add rows.")
        sizes = np.unique(np.round(np.geomspace(self.min_per_label, largest,
                                                self.n_sizes)).astype(int))
        acc = np.empty((self.n_repeats, len(sizes)))
        auc = np.empty_like(acc)
        n_test = 0
        bar = progress.bar(self.n_repeats * len(sizes), "learning_curve: fits", "fit")
        for r, run_seed in enumerate(child_seeds(self.seed, self.n_repeats)):
            split = StratifiedShuffleSplit(n_splits=1, test_size=self.test_fraction,
                                           random_state=run_seed % 2**32)
            train, test = next(split.split(X, y))
            n_test = len(test)
            rng = np.random.default_rng(run_seed)
            # one shuffled order per label: size m takes its first m rows (nested sets)
            order = {lab: rng.permutation(train[y[train] == lab]) for lab in labels}
            for j, m in enumerate(sizes):
                bar.update(1)
                rows = np.concatenate([order[lab][:m] for lab in labels])
                model = make_pipeline(StandardScaler(),
                                      LogisticRegression(C=self.C, max_iter=2000))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    model.fit(X[rows], y[rows])
                proba = model.predict_proba(X[test])
                acc[r, j] = float(np.mean(model.classes_[proba.argmax(axis=1)] == y[test]))
                codes = np.searchsorted(labels, y[test])
                auc[r, j] = float(roc_auc_score(codes, proba[:, 1]) if len(labels) == 2 else
                                  roc_auc_score(codes, proba, multi_class="ovr",
                                                labels=np.arange(len(labels))))
        bar.close()

        how = (f"mean over {self.n_repeats} repeat(s) (fresh test split of {n_test} rows "
               f"each); 95% t-interval of the mean")
        rows_out, series = [], []
        for j, m in enumerate(sizes):
            a_mean, a_sd, a_ci = mean_t_interval(acc[:, j])
            u_mean, u_sd, u_ci = mean_t_interval(auc[:, j])
            rows_out.append([int(m), a_mean, a_sd, *(a_ci or (None, None)), u_mean, u_sd,
                             *(u_ci or (None, None)), self.n_repeats])
        for name, col in (("accuracy", 1), ("AUROC", 5)):
            series.append({"label": name, "x": [int(s) for s in sizes],
                           "y": [row[col] for row in rows_out], "marker": True})
            if self.n_repeats > 1:
                series.append({"label": f"{name} 95% CI", "x": [int(s) for s in sizes],
                               "low": [row[col + 2] for row in rows_out],
                               "high": [row[col + 3] for row in rows_out]})

        a_mean, a_sd, a_ci = mean_t_interval(acc[:, -1])
        u_mean, u_sd, u_ci = mean_t_interval(auc[:, -1])
        n_used = len(labels) * int(sizes[-1]) + n_test
        metrics = {
            "accuracy_at_largest": Metric(
                value=a_mean, n=n_used, ci=a_ci, ci_level=None if a_ci is None else CI_LEVEL,
                std=a_sd, method=how,
                description=f"Held-out accuracy with {sizes[-1]} training rows per label."),
            "auroc_at_largest": Metric(
                value=u_mean, n=n_used, ci=u_ci, ci_level=None if u_ci is None else CI_LEVEL,
                std=u_sd, method=how,
                description=f"Held-out AUROC with {sizes[-1]} training rows per label "
                            f"(macro one-vs-rest for more than two labels)."),
        }
        gain_text = ""
        if len(sizes) > 1:
            g_mean, g_sd, g_ci = mean_t_interval(acc[:, -1] - acc[:, -2])
            metrics["accuracy_gain_last_step"] = Metric(
                value=g_mean, n=n_used, ci=g_ci, ci_level=None if g_ci is None else CI_LEVEL,
                std=g_sd, method="paired over repeats (same test set, nested training sets); "
                                 "95% t-interval of the mean difference",
                description=f"Accuracy gained from {sizes[-2]} to {sizes[-1]} training rows "
                            f"per label; an interval covering 0 says the curve has flattened.")
            gain_text = (f", {'+' if g_mean >= 0 else ''}{100 * g_mean:.1f} points over the "
                         f"last step from {sizes[-2]}")
        summary = (
            f"With {sizes[-1]} training rows per label the linear probe reaches "
            f"{fmt_pct(a_mean)} held-out accuracy and AUROC {u_mean:.3f} (mean of "
            f"{self.n_repeats} repeat(s), n={n_used}){gain_text}.")
        tables = {"curve": {"columns": ["rows per label", "accuracy", "accuracy sd",
                                        "accuracy ci_low", "accuracy ci_high", "auroc",
                                        "auroc sd", "auroc ci_low", "auroc ci_high", "repeats"],
                            "rows": rows_out}}
        plots = [Plot(kind="lines", title="Held-out accuracy and AUROC against training rows "
                                          "per label",
                      data={"series": series}, xlabel="training rows per label",
                      ylabel="held-out metric")]
        params = {"sizes": [int(s) for s in sizes]}  # constructor parameters: added by fit
        return ProbeResult(probe=self.name, summary=summary, metrics=metrics, tables=tables,
                           plots=plots, params=params)
