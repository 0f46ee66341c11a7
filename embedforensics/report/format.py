"""Shared text formatting for the HTML and Markdown reports."""

from __future__ import annotations

from typing import Any

from embedforensics.report.schema import MetricOut, Results


def number(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.3g}"
    return f"{value:.3f}"


def metric_text(m: MetricOut) -> str:
    """'0.971 (95% CI 0.963–0.978; n=2000)' or '0.42 ± 0.03 (n=5)'."""
    text = number(m.value)
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
    if isinstance(value, float):
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
