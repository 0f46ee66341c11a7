"""Comparing a candidate model against a reference ensemble trained the same way.

* :func:`alpha_hat` / :func:`trimmed_ks_distance` — the robust trimmed-KS α̂ of
  Banerjee et al. (arXiv 2406.08307) on soft outputs, computed exactly.
* :mod:`.metrics` — accuracy with a Clopper–Pearson CI, churn, expected calibration error.
* :func:`trntk_kernel` — trace-NTK / pNTK / conjugate / embedding kernels (Engel et al.,
  arXiv 2305.14585), exact or randomly projected; :mod:`.kglm` fits kernel-GLM surrogates,
  measures their faithfulness and compares kernel attributions of two models.
* :func:`linear_cka`, :func:`rbf_cka`, :func:`svcca`, :func:`pwcca`,
  :func:`procrustes_distance`, :class:`MinibatchCKA` — representational similarity of two
  models' hidden states on the same inputs (:mod:`.representations`).
* :func:`modeldiff` — ModelDiff (Shah et al., arXiv 2211.12491): directions over training
  points that distinguish two training procedures' attribution matrices, with a half-split
  seed null (:mod:`.modeldiff`).
"""

from __future__ import annotations

import importlib
from typing import Any

# Names resolve lazily so that importing the package does not pull in torch or
# scikit-learn. The alpha_hat module is the exception: its function
# has the module's name, and importing a submodule rebinds that name on the package, so
# the function is bound eagerly here (it needs only numpy and scipy).
_EXPORTS = {
    "AccuracyResult": "embedforensics.compare.metrics",
    "AlphaHatResult": "embedforensics.compare.alpha_hat",
    "Attribution": "embedforensics.compare.kglm",
    "AttributionAgreement": "embedforensics.compare.kglm",
    "CalibrationResult": "embedforensics.compare.metrics",
    "ChurnResult": "embedforensics.compare.metrics",
    "DEFAULT_RBF_MAX_ROWS": "embedforensics.compare.representations",
    "FaithfulnessResult": "embedforensics.compare.kglm",
    "HFClassifierLogits": "embedforensics.compare.trntk",
    "KernelGLM": "embedforensics.compare.kglm",
    "MinibatchCKA": "embedforensics.compare.representations",
    "TrimmedFit": "embedforensics.compare.alpha_hat",
    "accuracy": "embedforensics.compare.metrics",
    "alpha_hat": "embedforensics.compare.alpha_hat",
    "asymptotic_critical_value": "embedforensics.compare.alpha_hat",
    "attribute": "embedforensics.compare.kglm",
    "bootstrap_critical_value": "embedforensics.compare.alpha_hat",
    "churn": "embedforensics.compare.metrics",
    "churn_against_ensemble": "embedforensics.compare.metrics",
    "clopper_pearson": "embedforensics.compare.metrics",
    "compare_attributions": "embedforensics.compare.kglm",
    "expected_calibration_error": "embedforensics.compare.metrics",
    "faithfulness": "embedforensics.compare.kglm",
    "fit_kglm": "embedforensics.compare.kglm",
    "gradient_features": "embedforensics.compare.trntk",
    "kernel_contributions": "embedforensics.compare.kglm",
    "leave_one_out_critical_value": "embedforensics.compare.alpha_hat",
    "linear_cka": "embedforensics.compare.representations",
    "majority_vote": "embedforensics.compare.metrics",
    "minibatch_linear_cka": "embedforensics.compare.representations",
    "model_similarity": "embedforensics.compare.model_similarity",
    "modeldiff": "embedforensics.compare.modeldiff",
    "ModelDiffResult": "embedforensics.compare.modeldiff",
    "load_attribution_matrix": "embedforensics.compare.modeldiff",
    "naive_trntk_kernel": "embedforensics.compare.trntk",
    "network_probabilities": "embedforensics.compare.kglm",
    "optimal_trimming": "embedforensics.compare.alpha_hat",
    "procrustes_distance": "embedforensics.compare.representations",
    "projection_error": "embedforensics.compare.trntk",
    "pwcca": "embedforensics.compare.representations",
    "rbf_bandwidth": "embedforensics.compare.representations",
    "rbf_cka": "embedforensics.compare.representations",
    "reliability_bins": "embedforensics.compare.metrics",
    "select_parameters": "embedforensics.compare.trntk",
    "stitch": "embedforensics.compare.stitching",
    "similarity": "embedforensics.compare.representations",
    "svcca": "embedforensics.compare.representations",
    "trimmed_ks_curve": "embedforensics.compare.alpha_hat",
    "trimmed_ks_distance": "embedforensics.compare.alpha_hat",
    "trntk_kernel": "embedforensics.compare.trntk",
    "LayerSpectrum": "embedforensics.compare.spectra",
    "MPFit": "embedforensics.compare.spectra",
    "PowerLawFit": "embedforensics.compare.spectra",
    "SpectralStats": "embedforensics.compare.spectra",
    "alignment": "embedforensics.compare.spectra",
    "esd": "embedforensics.compare.spectra",
    "layer_spectra": "embedforensics.compare.spectra",
    "mp_fit": "embedforensics.compare.spectra",
    "powerlaw_fit": "embedforensics.compare.spectra",
    "spectral_stats": "embedforensics.compare.spectra",
    "spike_location": "embedforensics.compare.spectra",
    "spike_overlap": "embedforensics.compare.spectra",
    "stable_rank": "embedforensics.compare.spectra",
    "procedure_classifier": "embedforensics.compare.spectra_comparator",
}

from embedforensics.compare.alpha_hat import alpha_hat as alpha_hat  # noqa: E402
from embedforensics.compare.modeldiff import modeldiff as modeldiff  # noqa: E402

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'embedforensics.compare' has no attribute {name!r}")
