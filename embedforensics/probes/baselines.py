"""Surface baselines: does the foundation model add anything over length and spelling?

A separability result means little if text length or character n-grams separate the
sources as well. This probe runs the same cross-validated logistic regression, on the same
folds, on three feature sets — the embeddings, a length-only baseline (log characters and
log words), and a lexical baseline (TF-IDF of character 2–4-grams, fitted inside each fold
so nothing leaks from the test fold) — and compares the embedding with the best baseline
on the same rows with an exact McNemar test on the discordant predictions.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from scipy.stats import binomtest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from embedforensics.probes.base import Metric, Plot, Probe, ProbeParameterError, ProbeResult
from embedforensics.probes.stats import (
    accuracy_metrics,
    check_folds,
    fmt_p,
    fmt_pct,
)


def _length_features(texts: np.ndarray) -> np.ndarray:
    chars = np.array([len(t) for t in texts], dtype=float)
    words = np.array([len(t.split()) for t in texts], dtype=float)
    return np.column_stack([np.log1p(chars), np.log1p(words)])


class SurfaceBaselineProbe(Probe):
    """Length-only and character n-gram baselines beside the embedding, same folds.

    Parameters
    ----------
    n_folds : int, default 5
        Folds of stratified cross-validation shared by all three feature sets.
    max_features : int, default 50000
        Vocabulary cap of the character n-gram TF-IDF.
    C : float, default 1.0
        Inverse regularisation strength of every logistic regression (> 0).
    seed : int, default 0
        Seeds the fold shuffle.
    """

    name: ClassVar[str] = "baselines"
    description: ClassVar[str] = (
        "Length-only and character n-gram baselines on the same folds as the embedding, "
        "with a McNemar test: does the model add anything over surface features?")
    min_labels: ClassVar[int] = 2
    headline: ClassVar[str | None] = "embedding_minus_best_baseline"
    _param_specs: ClassVar[dict[str, tuple]] = {
        "n_folds": ("int", 2, None, None),
        "max_features": ("int", 1, None, None),
        "C": ("positive_float", None, None, None),
        "seed": ("int", 0, 2**32 - 1, None),
    }

    def __init__(self, *, n_folds: int = 5, max_features: int = 50000, C: float = 1.0,
                 seed: int = 0):
        self.n_folds = n_folds
        self.max_features = max_features
        self.C = C
        self.seed = seed


    def _fit(self, X: np.ndarray, y: np.ndarray, **context: Any) -> ProbeResult:
        texts = context.get("texts")
        if texts is None:
            raise ProbeParameterError(
                "probe 'baselines' needs the texts behind the embeddings; it cannot run on "
                "embeddings alone.")
        check_folds(type(self).__name__, y, self.n_folds)
        y = np.asarray(y).astype(str)
        texts_arr = np.asarray(texts, dtype=object)
        n = len(y)
        cv = StratifiedKFold(n_splits=self.n_folds, shuffle=True, random_state=self.seed)

        def logreg() -> LogisticRegression:
            return LogisticRegression(C=self.C, max_iter=2000, random_state=self.seed)

        models = {
            "embedding": (make_pipeline(StandardScaler(), logreg()), X),
            "length": (make_pipeline(FunctionTransformer(_length_features), StandardScaler(),
                                     logreg()), texts_arr),
            "lexical": (make_pipeline(
                TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True,
                                max_features=self.max_features, lowercase=False),
                logreg()), texts_arr),
        }
        descriptions = {
            "embedding": "logistic regression on the embeddings",
            "length": "logistic regression on log characters and log words only",
            "lexical": "logistic regression on TF-IDF character 2-4-grams (fitted per fold)",
        }
        predictions: dict[str, np.ndarray] = {}
        metrics: dict[str, Metric] = {}
        for name, (model, features) in models.items():
            predictions[name] = cross_val_predict(model, features, y, cv=cv)
            acc = accuracy_metrics(y, predictions[name],
                                   how=f"{self.n_folds}-fold {descriptions[name]}")
            metrics[f"{name}_accuracy"] = acc["accuracy"]
            if name == "embedding":
                metrics["chance_accuracy"] = acc["chance_accuracy"]
        best = max(("length", "lexical"), key=lambda k: metrics[f"{k}_accuracy"].value)
        correct_emb = predictions["embedding"] == y
        correct_base = predictions[best] == y
        only_emb = int(np.sum(correct_emb & ~correct_base))
        only_base = int(np.sum(~correct_emb & correct_base))
        discordant = only_emb + only_base
        p_value = (binomtest(only_emb, discordant, 0.5).pvalue if discordant else 1.0)
        gain = metrics["embedding_accuracy"].value - metrics[f"{best}_accuracy"].value
        metrics["embedding_minus_best_baseline"] = Metric(
            value=gain, n=n, method=f"paired on the same out-of-fold rows; best baseline: {best}",
            description="Accuracy of the embedding minus that of the better surface baseline.")
        metrics["mcnemar_p_value"] = Metric(
            value=float(p_value), n=discordant,
            method="exact two-sided McNemar (binomial) test on the discordant predictions",
            description="Probability of a split of discordant rows at least this uneven if the "
                        "embedding and the best baseline were equally accurate.")
        emb, base = metrics["embedding_accuracy"].value, metrics[f"{best}_accuracy"].value
        if p_value < 0.05 and gain > 0:
            reading = "the embedding beats the best surface baseline"
        elif p_value < 0.05:
            reading = ("the best surface baseline beats the embedding — the sources differ in "
                       "surface statistics the embedding does not need")
        else:
            reading = "the embedding does not detectably beat the best surface baseline"
        summary = (
            f"Surface baselines on the same folds: length alone "
            f"{fmt_pct(metrics['length_accuracy'].value)}, character n-grams "
            f"{fmt_pct(metrics['lexical_accuracy'].value)}, embeddings {fmt_pct(emb)} (n={n}); "
            f"{reading} ({best} {fmt_pct(base)}, McNemar {fmt_p(p_value)}, "
            f"{discordant} discordant rows).")
        names = ["length", "lexical", "embedding"]
        table = {"columns": ["features", "accuracy", "95% CI", "n"],
                 "rows": [[k, metrics[f"{k}_accuracy"].value,
                           f"{metrics[f'{k}_accuracy'].ci[0]:.3f}–"
                           f"{metrics[f'{k}_accuracy'].ci[1]:.3f}", n] for k in names]}
        plots = [Plot(kind="bar", title=f"Cross-validated accuracy by feature set (n={n})",
                      data={"x": names, "y": [metrics[f"{k}_accuracy"].value for k in names]},
                      ylabel="accuracy")]
        params = {"best_baseline": best}  # the constructor's parameters are added by fit
        return ProbeResult(probe=self.name, summary=summary, metrics=metrics,
                           tables={"accuracy_by_features": table}, plots=plots, params=params)
