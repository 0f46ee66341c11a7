"""Automatic warnings about surface differences between labels (length, truncation).

A separability result is only interesting if the sources do not differ trivially; these
checks flag the obvious surface confounds so the report can say so next to the numbers.
"""

from __future__ import annotations

from typing import Any

#: above this share of unknown tokens in a source, the report warns (issue 21: a broken
#: tokenizer once gave 94.5% "accuracy" from length alone)
UNK_SHARE_WARN = 0.03


def surface_warnings(sources: list[Any], *, length_ratio: float = 1.5) -> list[str]:
    """Sentences describing length, unknown-token and truncation differences between
    labels."""
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
        share = s.lengths.get("unk_share")
        if share is not None and share > UNK_SHARE_WARN:
            warnings.append(
                f"Tokenizer: {share:.1%} of the tokens of source '{s.id}' are unknown to the "
                "model's tokenizer ([UNK]); the model sees little of these texts, and what "
                "separates the sources may be how many unknown tokens they have (check "
                "model.id and the text column).")
    for s in sources:
        truncated = int(s.lengths.get("truncated", 0))
        if truncated:
            warnings.append(
                f"Truncation: {truncated} of {s.rows} texts in source '{s.id}' were cut at the "
                "model's max_length; the model saw only their beginnings.")
    return warnings
