"""Length-matched subsampling: take text length off the table as an explanation.

If one source's texts are longer than another's, a probe may separate them by length
alone. ``length_match: true`` beside a probe in a recipe makes the runner hand that probe a
subsample in which every label has the same distribution of text lengths (coarsened exact
matching): the pooled character lengths are cut into ``LENGTH_BINS`` quantile bins and, in
each bin, every label keeps as many rows as the rarest label has there (seeded choice).
The matched rows, the per-label counts before and after and the mean lengths after are
recorded in the probe's params. The probe's own seed drives the choice.

This module imports only numpy, so recipe validation can check the option cheaply.
"""

from __future__ import annotations

from typing import Any

import numpy as np

RUN_OPTIONS = ("length_match",)
"""Keys beside a probe's name in a recipe that the runner handles, not the probe."""

LENGTH_BINS = 10
"""Quantile bins of the pooled character lengths used for matching."""


def length_matched_rows(lengths: np.ndarray, labels: np.ndarray, seed: int,
                        n_bins: int = LENGTH_BINS) -> tuple[np.ndarray, dict[str, Any]]:
    """Sorted row indices of a length-matched subsample, and a summary for the results.

    Every label ends with the same count in every length bin, so their length histograms
    (at this resolution) are identical. A bin in which some label has no row is dropped.
    """
    lengths = np.asarray(lengths, dtype=float)
    labels = np.asarray(labels).astype(str)
    names = sorted(set(labels.tolist()))
    edges = np.unique(np.quantile(lengths, np.linspace(0, 1, n_bins + 1)))
    bins = np.clip(np.searchsorted(edges, lengths, side="right") - 1, 0, max(len(edges) - 2, 0))
    rng = np.random.default_rng(seed)
    keep = []
    for b in np.unique(bins):
        groups = [np.flatnonzero((bins == b) & (labels == name)) for name in names]
        m = min(len(g) for g in groups)
        if m == 0:
            continue
        keep += [np.sort(rng.choice(g, m, replace=False)) for g in groups]
    rows = np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=int)
    summary = {
        "bins": int(len(edges) - 1),
        "rows_before": {name: int(np.sum(labels == name)) for name in names},
        "rows_after": {name: int(np.sum(labels[rows] == name)) for name in names},
        "mean_chars_before": {name: float(lengths[labels == name].mean()) for name in names},
        "mean_chars_after": {name: float(lengths[rows][labels[rows] == name].mean())
                             if np.any(labels[rows] == name) else None for name in names},
    }
    return rows, summary
