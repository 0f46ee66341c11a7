"""A complete third-party probe in one file: the distance between label centroids.

Registered only inside tests (tests/test_study_spine.py) to show that a new probe is this
file plus one registry line: ``PROBES.add("centroid_gap", "<module>:CentroidGapProbe")``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from embedforensics.probes.base import Metric, Probe, ProbeResult


class CentroidGapProbe(Probe):
    """Euclidean distance between the centroids of the first two labels, with a
    bootstrap interval over rows."""

    name = "centroid_gap"
    min_labels = 2
    headline = "centroid_gap"
    _param_specs: ClassVar[dict[str, tuple]] = {
        "n_bootstrap": ("int", 10, None, None),
        "seed": ("int", 0, None, None),
    }

    def __init__(self, *, n_bootstrap: int = 200, seed: int = 0):
        self.n_bootstrap = n_bootstrap
        self.seed = seed

    def _fit(self, X: np.ndarray, y: np.ndarray, **context: Any) -> ProbeResult:
        a, b = np.unique(y)[:2]
        Xa, Xb = X[y == a], X[y == b]
        gap = float(np.linalg.norm(Xa.mean(0) - Xb.mean(0)))
        rng = np.random.default_rng(self.seed)
        boot = [np.linalg.norm(Xa[rng.integers(0, len(Xa), len(Xa))].mean(0)
                               - Xb[rng.integers(0, len(Xb), len(Xb))].mean(0))
                for _ in range(self.n_bootstrap)]
        low, high = np.quantile(boot, [0.025, 0.975])
        return ProbeResult(
            probe=self.name,
            summary=f"The centroids of {a} and {b} are {gap:.3g} apart (n={len(y)}).",
            metrics={"centroid_gap": Metric(
                value=gap, n=len(Xa) + len(Xb), ci=(min(low, gap), max(high, gap)),
                ci_level=0.95, method=f"percentile bootstrap over rows, {self.n_bootstrap}",
                description=f"Euclidean distance between the mean embeddings of {a} and {b}")})
