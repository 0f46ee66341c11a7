"""Shared text formatting for the HTML and Markdown reports."""

from __future__ import annotations

import math
from typing import Any

from embedforensics.report.schema import MetricOut, Results


def number(value: float | None) -> str:
    """A statistic for a reader: three decimals up to 1 (0.988, so proportions line up),
    four significant digits above 1 without trailing zeros (14.6, 266, 1075), an integer
    value as an integer, and ``3.1e-05`` style for the very small or very large."""
    if value is None:
        return "n/a"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.3g}"
    if abs(value) <= 1:
        return f"{value:.3f}"
    if float(value).is_integer():
        return str(int(value))
    decimals = max(0, 3 - math.floor(math.log10(abs(value))))
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def metric_text(m: MetricOut) -> str:
    """'0.971 (95% CI 0.963–0.978; n=2000)' or '0.42 ± 0.03 (n=5)'; a metric that carries
    its own reading in ``display`` (a permutation p-value at its floor: 'p ≤ 0.01 (floor
    with 99 permutations)') shows that instead of the bare number."""
    display = (m.model_extra or {}).get("display")
    text = str(display) if display else number(m.value)
    extras = []
    if m.ci is not None:
        level = f"{round((m.ci_level or 0.95) * 100)}% CI " if m.ci_level else "CI "
        extras.append(f"{level}{number(m.ci[0])}–{number(m.ci[1])}")
    if m.std is not None:
        text += f" ± {number(m.std)} sd"
    if m.range is not None:
        extras.append(f"range {number(m.range[0])}–{number(m.range[1])}")
    extras.append(f"n={m.n}")
    return f"{text} ({'; '.join(extras)})"


def cell(value: Any) -> str:
    """A table cell: numbers as :func:`number` (a count stays an integer), None empty."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        return number(value)
    if value is None:
        return ""
    return str(value)


def row_noun(results: Results) -> str:
    """'texts', 'images' or 'rows' (a mix), from the modality each source was embedded in."""
    per_source = (results.provenance.get("embedding") or {}).get("per_source") or {}
    kinds = {info.get("modality", "text") for info in per_source.values()}
    return {frozenset({"image"}): "images"}.get(frozenset(kinds),
                                                "rows" if len(kinds) > 1 else "texts")


def verdict(results: Results) -> str:
    """One paragraph: the headline of each successful probe, in recipe order."""
    probes = results.probes
    layered = [p for p in probes if getattr(p, "layer", None) is not None]
    summaries: list[str] = []
    if layered:  # a layer sweep: the first listed layer's headlines, then the sweep
        first = layered[0].layer
        summaries.append(f"At layer {first} (the first of model.layers):")
        probes = [p for p in probes if getattr(p, "layer", None) in (None, first)]
    summaries += [p.summary for p in probes if not p.error and p.summary]
    failed = list(dict.fromkeys(
        p.probe + (f" (layer {p.layer})" if getattr(p, "layer", None) else "")
        for p in results.probes if p.error))
    text = " ".join(summaries) if summaries else "No probe produced a result."
    if failed:
        text += f" Failed probes: {', '.join(failed)}."
    return text


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def plot_numbers(plot: Any) -> str | None:
    """The numbers of a plot that a picture would not help: a matrix of one label pair
    (2×2, the same labels on both axes, nothing on the diagonal), e.g. a pairwise test
    between two labels. None for every other plot (it is drawn)."""
    if getattr(plot, "kind", None) != "matrix":
        return None
    data = plot.data
    values = data.get("values") or []
    rows, cols = data.get("row_labels") or [], data.get("col_labels") or []
    if len(values) != 2 or any(len(v) != 2 for v in values) or list(rows) != list(cols) \
            or len(rows) != 2:
        return None
    if any(_finite(values[k][k]) and values[k][k] != 0 for k in (0, 1)):
        return None
    a, b = values[0][1], values[1][0]
    shown = [number(v) for v in (a, b) if _finite(v)]
    if not shown:
        return None
    text = shown[0] if len(set(shown)) == 1 else f"{shown[0]} ({rows[0]} row), " \
        f"{shown[-1]} ({rows[1]} row)"
    return f"{plot.title}: {rows[0]} vs {rows[1]}: {text}."


def duplicates_plot(table: dict[str, Any], plots: list[Any]) -> bool:
    """True when ``table`` holds exactly the numbers of one of ``plots``' matrices (a
    confusion matrix drawn with its counts in the cells): the report shows it once."""
    body = [[v for v in row if not isinstance(v, str)] for row in table.get("rows", [])]
    for plot in plots:
        if getattr(plot, "kind", None) != "matrix":
            continue
        values = plot.data.get("values") or []
        if len(values) <= 12 and len(values) == len(body) and all(
                len(a) == len(b) and all(x == y for x, y in zip(a, b, strict=True))
                for a, b in zip(values, body, strict=True)):
            return True
    return False
