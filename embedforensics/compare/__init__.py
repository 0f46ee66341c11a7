"""Comparing a candidate model against a reference ensemble trained the same way.

* :func:`alpha_hat` / :func:`trimmed_ks_distance` — the robust trimmed-KS α̂ of
  Banerjee et al. (arXiv 2406.08307) on soft outputs, computed exactly.
* :mod:`.metrics` — accuracy with a Clopper–Pearson CI, churn, expected calibration error.
* :func:`trntk_kernel` — trace-NTK / pNTK / conjugate / embedding kernels (Engel et al.,
  arXiv 2305.14585), exact or randomly projected; :mod:`.kglm` fits kernel-GLM surrogates,
  measures their faithfulness and compares kernel attributions of two models.
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
from embedforensics.compare.kglm import (
    Attribution,
    AttributionAgreement,
    FaithfulnessResult,
    KernelGLM,
    attribute,
    compare_attributions,
    faithfulness,
    fit_kglm,
    kernel_contributions,
    network_probabilities,
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
from embedforensics.compare.trntk import (
    HFClassifierLogits,
    gradient_features,
    naive_trntk_kernel,
    projection_error,
    select_parameters,
    trntk_kernel,
)

__all__ = [
    "AccuracyResult",
    "AlphaHatResult",
    "Attribution",
    "AttributionAgreement",
    "CalibrationResult",
    "ChurnResult",
    "FaithfulnessResult",
    "HFClassifierLogits",
    "KernelGLM",
    "TrimmedFit",
    "accuracy",
    "alpha_hat",
    "asymptotic_critical_value",
    "attribute",
    "bootstrap_critical_value",
    "churn",
    "churn_against_ensemble",
    "clopper_pearson",
    "compare_attributions",
    "expected_calibration_error",
    "faithfulness",
    "fit_kglm",
    "gradient_features",
    "kernel_contributions",
    "leave_one_out_critical_value",
    "majority_vote",
    "naive_trntk_kernel",
    "network_probabilities",
    "optimal_trimming",
    "projection_error",
    "reliability_bins",
    "select_parameters",
    "trimmed_ks_curve",
    "trimmed_ks_distance",
    "trntk_kernel",
]
