r"""Classifier comparison metrics: accuracy with an exact CI, churn, and calibration (ECE).

These complement :mod:`embedforensics.compare.alpha_hat` (which compares *distributions* of
soft outputs) with per-point comparisons of hard predictions and of confidence.

Predictions may be given as integer class labels (1-D, length ``n``) or as score arrays
(``n × K`` logits/probabilities, reduced by ``argmax``; ties go to the smallest class index).
Reference ensembles are ``M × n`` labels or ``M × n × K`` scores.

Formulas
--------
*Accuracy* ``acc = k/n`` with ``k = #{i : ŷ_i = y_i}``. The **Clopper–Pearson** (exact
binomial) two-sided interval at confidence ``1 − γ`` is::

    lower = Beta⁻¹(γ/2; k, n − k + 1)     (0 when k = 0)
    upper = Beta⁻¹(1 − γ/2; k + 1, n − k) (1 when k = n)

It inverts two one-sided binomial tests, so its coverage is ≥ 1 − γ for every true accuracy.

*Churn* between predictions ``ŷ^A`` and ``ŷ^B`` on the same points:
``churn = (1/n) Σ_i 1[ŷ^A_i ≠ ŷ^B_i]``. For a candidate against an ensemble we report the churn
against each reference model, their mean/min/max, the churn against the ensemble **majority
vote** (per point the most frequent label among the M models, ties to the smallest label),
and, as the null scale, the mean churn over all ``M(M−1)/2`` pairs of reference models: a
candidate trained the same way should churn against the references about as much as the
references churn among themselves.

*Expected calibration error* (Guo et al., 2017) with ``B = 15`` equal-width bins
``I_1 = [0, 1/B], I_b = ((b−1)/B, b/B]``: with confidence ``p̂_i = max_k P(k | x_i)``,
prediction ``ŷ_i = argmax_k P(k | x_i)``, and for each bin ``conf_b = mean_{i∈I_b} p̂_i``,
``acc_b = mean_{i∈I_b} 1[ŷ_i = y_i]``::

    ECE = Σ_b (|I_b| / n) · |acc_b − conf_b|,      MCE = max_{b : |I_b| > 0} |acc_b − conf_b|

The per-bin ``(conf_b, acc_b, |I_b|)`` are the reliability-diagram data (NaN for empty bins).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from embedforensics.probes.stats import clopper_pearson as _probe_clopper_pearson

__all__ = [
    "AccuracyResult",
    "CalibrationResult",
    "ChurnResult",
    "accuracy",
    "churn",
    "churn_against_ensemble",
    "clopper_pearson",
    "expected_calibration_error",
    "majority_vote",
    "reliability_bins",
]


# --------------------------------------------------------------------------- helpers


def _labels(x: Any, name: str, *, extra_dims: int = 0) -> np.ndarray:
    """Integer labels from labels (``extra_dims + 1`` dims) or scores (one more dim, argmax)."""
    arr = np.asarray(x)
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if arr.ndim == extra_dims + 2:  # scores
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} scores must be real numbers ({exc})") from exc
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains non-finite scores (NaN or inf)")
        return np.argmax(arr, axis=-1).astype(np.int64)
    if arr.ndim != extra_dims + 1:
        raise ValueError(
            f"{name} must be {extra_dims + 1}-D labels or {extra_dims + 2}-D scores, "
            f"got shape {arr.shape}"
        )
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "b":
        return arr.astype(np.int64)
    try:
        f = arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must hold integer class labels ({exc})") from exc
    if not np.all(np.isfinite(f)) or not np.all(f == np.round(f)):
        raise ValueError(
            f"{name} must hold integer class labels (or pass {extra_dims + 2}-D scores)"
        )
    return f.astype(np.int64)


def _check_confidence(confidence: float) -> float:
    c = float(confidence)
    if not (0.0 < c < 1.0):
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    return c


def _nan_to_none(a: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in a]


# --------------------------------------------------------------------------- accuracy


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper–Pearson) two-sided interval for a binomial proportion ``k/n``.

    The same interval the probes report (scipy's exact binomial interval); this wrapper
    only adds the argument checks of this module.
    """
    c = _check_confidence(confidence)
    if n < 1 or not (0 <= k <= n):
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    return _probe_clopper_pearson(k, n, level=c)


@dataclass(frozen=True)
class AccuracyResult:
    """Accuracy ``n_correct / n`` with its Clopper–Pearson interval ``[ci_low, ci_high]``."""

    accuracy: float
    n_correct: int
    n: int
    ci_low: float
    ci_high: float
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dictionary."""
        return dict(self.__dict__)


def accuracy(y_true: Any, y_pred: Any, confidence: float = 0.95) -> AccuracyResult:
    """Accuracy of ``y_pred`` (labels or ``n × K`` scores) against ``y_true`` with an exact CI."""
    yt = _labels(y_true, "y_true")
    yp = _labels(y_pred, "y_pred")
    if yt.shape != yp.shape:
        raise ValueError(f"y_true has {yt.size} points but y_pred has {yp.size}")
    n = int(yt.size)
    k = int(np.count_nonzero(yt == yp))
    lo, hi = clopper_pearson(k, n, confidence)
    return AccuracyResult(k / n, k, n, lo, hi, float(confidence))


# --------------------------------------------------------------------------- churn


def churn(pred_a: Any, pred_b: Any) -> float:
    """Fraction of points whose predicted class differs between two models."""
    a = _labels(pred_a, "pred_a")
    b = _labels(pred_b, "pred_b")
    if a.shape != b.shape:
        raise ValueError(f"pred_a has {a.size} points but pred_b has {b.size}")
    return float(np.mean(a != b))


def majority_vote(reference_preds: Any) -> np.ndarray:
    """Per-point most frequent label over ``M × n`` labels (or ``M × n × K`` scores).

    Ties are broken toward the smallest label.
    """
    ref = _labels(reference_preds, "reference_preds", extra_dims=1)
    classes, codes = np.unique(ref, return_inverse=True)
    codes = codes.reshape(ref.shape)
    M, n = ref.shape
    counts = np.zeros((n, classes.size), dtype=np.int64)
    cols = np.arange(n)
    for i in range(M):
        np.add.at(counts, (cols, codes[i]), 1)
    return classes[np.argmax(counts, axis=1)]


@dataclass(frozen=True)
class ChurnResult:
    """Churn of a candidate against a reference ensemble (see module docstring)."""

    per_model: np.ndarray
    mean: float
    min: float
    max: float
    against_majority: float
    reference_pairwise_mean: float | None
    n: int
    n_models: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dictionary."""
        d = dict(self.__dict__)
        d["per_model"] = [float(v) for v in self.per_model]
        return d


def churn_against_ensemble(candidate_pred: Any, reference_preds: Any) -> ChurnResult:
    """Churn of a candidate (``n`` labels / ``n × K`` scores) vs. ``M`` reference models.

    Returns per-model churn, its mean/min/max, churn against the majority vote and the mean
    pairwise churn among the reference models (the null scale; ``None`` when ``M = 1``).
    """
    cand = _labels(candidate_pred, "candidate_pred")
    ref = _labels(reference_preds, "reference_preds", extra_dims=1)
    M, n = ref.shape
    if cand.size != n:
        raise ValueError(f"candidate has {cand.size} points but the reference models have {n}")
    per = np.mean(ref != cand[None, :], axis=1)
    vote = majority_vote(ref)
    pair: float | None = None
    if M >= 2:
        total = 0.0
        for i in range(M - 1):
            total += float(np.sum(np.mean(ref[i + 1 :] != ref[i][None, :], axis=1)))
        pair = total / (M * (M - 1) / 2)
    return ChurnResult(
        per_model=per,
        mean=float(per.mean()),
        min=float(per.min()),
        max=float(per.max()),
        against_majority=float(np.mean(cand != vote)),
        reference_pairwise_mean=pair,
        n=int(n),
        n_models=int(M),
    )


# --------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class CalibrationResult:
    """ECE/MCE and the reliability-diagram data (per-bin confidence, accuracy, count)."""

    ece: float
    mce: float
    n: int
    n_bins: int
    bin_edges: np.ndarray
    bin_confidence: np.ndarray
    bin_accuracy: np.ndarray
    bin_count: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dictionary (empty bins as ``None``)."""
        return {
            "ece": self.ece,
            "mce": self.mce,
            "n": self.n,
            "n_bins": self.n_bins,
            "bin_edges": [float(v) for v in self.bin_edges],
            "bin_confidence": _nan_to_none(self.bin_confidence),
            "bin_accuracy": _nan_to_none(self.bin_accuracy),
            "bin_count": [int(v) for v in self.bin_count],
        }


def reliability_bins(confidence: Any, correct: Any, n_bins: int = 15) -> CalibrationResult:
    """ECE from per-point confidences in [0, 1] and correctness flags, ``n_bins`` equal bins.

    Bin ``b`` (0-based) is ``(b/B, (b+1)/B]``; confidence exactly 0 goes to the first bin.
    """
    if isinstance(n_bins, bool) or int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    B = int(n_bins)
    conf = np.asarray(confidence, dtype=np.float64)
    corr = np.asarray(correct)
    if conf.ndim != 1 or conf.size == 0:
        raise ValueError("confidence must be a non-empty 1-D array")
    if corr.shape != conf.shape:
        raise ValueError("correct must have the same shape as confidence")
    if not np.all(np.isfinite(conf)) or np.any(conf < 0) or np.any(conf > 1):
        raise ValueError("confidence values must lie in [0, 1]")
    corr = corr.astype(np.float64)
    edges = np.linspace(0.0, 1.0, B + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, B - 1)
    count = np.bincount(idx, minlength=B)
    sum_conf = np.bincount(idx, weights=conf, minlength=B)
    sum_acc = np.bincount(idx, weights=corr, minlength=B)
    nonempty = count > 0
    bconf = np.full(B, np.nan)
    bacc = np.full(B, np.nan)
    bconf[nonempty] = sum_conf[nonempty] / count[nonempty]
    bacc[nonempty] = sum_acc[nonempty] / count[nonempty]
    gap = np.abs(bacc[nonempty] - bconf[nonempty])
    n = int(conf.size)
    ece = float(np.sum(count[nonempty] / n * gap))
    mce = float(gap.max())
    return CalibrationResult(ece, mce, n, B, edges, bconf, bacc, count.astype(np.int64))


def expected_calibration_error(probs: Any, y_true: Any, n_bins: int = 15) -> CalibrationResult:
    """Top-label ECE (default 15 equal-width bins) of ``n × K`` class probabilities."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.size == 0:
        raise ValueError(f"probs must be a non-empty n × K array, got shape {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0) or np.any(p > 1):
        raise ValueError("probs must lie in [0, 1] (pass softmax probabilities, not logits)")
    yt = _labels(y_true, "y_true")
    if yt.size != p.shape[0]:
        raise ValueError(f"probs has {p.shape[0]} rows but y_true has {yt.size} labels")
    if np.any(yt < 0) or np.any(yt >= p.shape[1]):
        raise ValueError(f"y_true labels must lie in [0, {p.shape[1]})")
    pred = np.argmax(p, axis=1)
    conf = p[np.arange(p.shape[0]), pred]
    return reliability_bins(conf, pred == yt, n_bins)
