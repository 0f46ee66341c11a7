"""Comparing a candidate model against a reference ensemble trained the same way.

* :func:`alpha_hat` / :func:`trimmed_ks_distance` — the robust trimmed-KS α̂ of
  Banerjee et al. (arXiv 2406.08307) on soft outputs, computed exactly.
* :mod:`.metrics` — accuracy with a Clopper–Pearson CI, churn, expected calibration error.
"""

from embedforensics.compare.alpha_hat import (
    AlphaHatResult,
    TrimmedFit,
    alpha_hat,
    asymptotic_critical_value,
    bootstrap_critical_value,
    leave_one_out_critical_value,
    optimal_trimming,
    trimmed_ks_curve,
    trimmed_ks_distance,
)
from embedforensics.compare.metrics import (
    AccuracyResult,
    CalibrationResult,
    ChurnResult,
    accuracy,
    churn,
    churn_against_ensemble,
    clopper_pearson,
    expected_calibration_error,
    majority_vote,
    reliability_bins,
)

__all__ = [
    "AccuracyResult",
    "AlphaHatResult",
    "CalibrationResult",
    "ChurnResult",
    "TrimmedFit",
    "accuracy",
    "alpha_hat",
    "asymptotic_critical_value",
    "bootstrap_critical_value",
    "churn",
    "churn_against_ensemble",
    "clopper_pearson",
    "expected_calibration_error",
    "leave_one_out_critical_value",
    "majority_vote",
    "optimal_trimming",
    "reliability_bins",
    "trimmed_ks_curve",
    "trimmed_ks_distance",
]
