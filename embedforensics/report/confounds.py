"""Automatic warnings about surface differences between labels (length, truncation).

A separability result is only interesting if the sources do not differ trivially; these
checks flag the obvious surface confounds so the report can say so next to the numbers.
"""

from __future__ import annotations

from typing import Any


def surface_warnings(sources: list[Any], *, length_ratio: float = 1.5) -> list[str]:
    """Sentences describing length and truncation differences between labels."""
    by_label: dict[str, list[Any]] = {}
    for s in sources:
        by_label.setdefault(s.label, []).append(s)
    medians = {}
    for label, group in by_label.items():
        rows = sum(s.rows for s in group)
        medians[label] = sum(s.lengths["chars_median"] * s.rows for s in group) / max(rows, 1)
    warnings = []
    if len(medians) >= 2:
        lo = min(medians, key=medians.get)
        hi = max(medians, key=medians.get)
        if medians[lo] > 0 and medians[hi] / medians[lo] >= length_ratio:
            warnings.append(
                f"Length confound: texts labelled '{hi}' are {medians[hi] / medians[lo]:.1f}× "
                f"longer than those labelled '{lo}' (row-weighted median characters "
                f"{medians[hi]:.0f} vs {medians[lo]:.0f}); a probe may separate them by length "
                "alone.")
    for s in sources:
        truncated = int(s.lengths.get("truncated", 0))
        if truncated:
            warnings.append(
                f"Truncation: {truncated} of {s.rows} texts in source '{s.id}' were cut at the "
                "model's max_length; the model saw only their beginnings.")
    return warnings
