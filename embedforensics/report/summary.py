"""The first screen of every report, the terminal and the notebook: a verdict that leads
with the strongest caveat, and one summary table (one row per analysis).

Everything here is generic over :class:`~embedforensics.results.AnalysisResult`: a probe,
the layer sweep or any comparator (built in or a plug-in) gets its row from its
``headline`` metric (or its first metric), that metric's interval, the metric that serves
as its baseline or null (found by name, see :func:`reference_metric`) and the first
sentence of its summary as the plain-word reading.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from html import escape
from typing import Any

from embedforensics.report.format import number
from embedforensics.report.schema import Results
from embedforensics.results import AnalysisResult, Metric

#: below this many rows in the smallest label, a result says little (the verdict says so)
SMALL_LABEL = 30
#: the summary table's reading: the first sentence of a summary, cut at this length
READING_LIMIT = 170
#: a surface baseline within this much accuracy of the embedding "matches" it
BASELINE_MARGIN = 0.02

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z(])")


@dataclass
class SummaryRow:
    """One analysis in the summary table."""

    analysis: str
    metric: str
    value: str
    interval: str
    reference: str
    reading: str
    failed: bool = False

    def cells(self) -> list[str]:
        return [self.analysis, self.metric, self.value, self.interval, self.reference,
                self.reading]


COLUMNS = ["analysis", "headline metric", "value", "interval", "baseline or null",
           "reading"]


def first_sentence(text: str, limit: int = 220) -> str:
    """The first sentence of ``text`` (cut at ``limit`` characters with an ellipsis)."""
    text = " ".join(text.split())
    head = _SENTENCE.split(text, maxsplit=1)[0] if text else ""
    if len(head) <= limit:
        return head
    cut = head[: limit - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip(" ,;(") + " …"


def headline_metric(result: AnalysisResult) -> tuple[str, Metric] | None:
    """The metric that sums ``result`` up: its ``headline`` or else its first metric."""
    if not result.metrics:
        return None
    name = result.headline if result.headline in result.metrics else next(iter(result.metrics))
    return name, result.metrics[name]


def reference_metric(result: AnalysisResult, headline: str) -> tuple[str, Metric] | None:
    """The metric a reader compares the headline with: ``<headline>_null``,
    ``reference_<headline>``, ``chance_<headline>``, then any metric whose name says
    null, baseline, chance or reference (the headline itself excluded)."""
    names = [f"{headline}_null", f"reference_{headline}", f"chance_{headline}",
             f"{headline}_baseline"]
    if re.search(r"baseline|minus|gain", headline):
        return None  # the headline is itself a difference against its baseline
    stem = headline.rsplit("_", 1)[-1]  # 'accuracy' of 'balanced_accuracy', 'ari', ...
    names += [n for n in result.metrics if n != headline and not n.endswith("p_value")
              and re.search(r"null|baseline|chance|reference", n) and stem in n]
    for name in names:
        metric = result.metrics.get(name)
        if metric is not None and metric.value is not None and name != headline:
            return name, metric
    return None


def _analysis_name(result: AnalysisResult) -> str:
    return result.probe + ("" if result.layer is None else f" (layer {result.layer})")


def _interval(metric: Metric) -> str:
    if metric.ci is not None:
        level = f"{round(metric.ci_level * 100)}% " if metric.ci_level else ""
        return f"{level}{number(metric.ci[0])}–{number(metric.ci[1])}"
    if metric.std is not None:
        return f"± {number(metric.std)} sd"
    if metric.range is not None:
        return f"range {number(metric.range[0])}–{number(metric.range[1])}"
    return ""


def summary_rows(results: Results) -> list[SummaryRow]:
    """One row per analysis result, in report order."""
    rows = []
    for p in results.probes:
        if p.error:
            rows.append(SummaryRow(_analysis_name(p), "", "", "", "",
                                   "failed: " + first_sentence(p.error, 160), failed=True))
            continue
        head = headline_metric(p)
        if head is None:
            rows.append(SummaryRow(_analysis_name(p), "", "", "", "",
                                   first_sentence(p.summary, READING_LIMIT)))
            continue
        name, metric = head
        ref = reference_metric(p, name)
        reference = "" if ref is None else f"{ref[0].replace('_', ' ')} {number(ref[1].value)}"
        rows.append(SummaryRow(_analysis_name(p), name.replace("_", " "),
                               number(metric.value), _interval(metric), reference,
                               first_sentence(p.summary, READING_LIMIT)))
    return rows


# --------------------------------------------------------------------------- caveats


_BASELINE_NAMES = {"length": "text length", "lexical": "character n-grams"}


def _baseline_caveat(results: Results) -> str | None:
    """A surface baseline (length, character n-grams) that beats, matches or comes close
    to the embedding, from any result carrying ``embedding_accuracy`` and
    ``<baseline>_accuracy`` metrics. "Matches" needs the difference to be within
    :data:`BASELINE_MARGIN` and not significant (the result's ``comparison_p_value`` or
    ``mcnemar_p_value`` at or above 0.05, when it has one); "beats" needs it below 0.05
    (when there is one). Nothing is said when the result's ``best_baseline_p_value`` (the
    best baseline against chance, by permutation) is above 0.05 (issue 23)."""
    for p in results.probes:
        if p.error or "embedding_accuracy" not in p.metrics:
            continue
        embedding = p.metrics["embedding_accuracy"].value
        if embedding is None:
            continue
        baselines = {n.removesuffix("_accuracy"): m.value for n, m in p.metrics.items()
                     if n.endswith("_accuracy") and m.value is not None
                     and n not in ("embedding_accuracy", "chance_accuracy")}
        if not baselines:
            continue
        best = max(baselines, key=lambda n: baselines[n])
        value = baselines[best]
        what = _BASELINE_NAMES.get(best, best.replace("_", " "))
        tests = [p.metrics[k].value for k in ("comparison_p_value", "mcnemar_p_value")
                 if k in p.metrics and p.metrics[k].value is not None]
        significant = bool(tests) and tests[0] < 0.05
        chance = p.metrics.get("best_baseline_p_value")
        if chance is not None and chance.value is not None and chance.value > 0.05:
            continue  # the baselines are not shown to beat chance: no surface finding
        if value > embedding and (significant or not tests):
            verb = "beats"
        elif value >= embedding - BASELINE_MARGIN and not significant:
            verb = "matches"
        elif value >= embedding - 2.5 * BASELINE_MARGIN:
            verb = "comes close to"
        else:
            continue
        return (f"a surface baseline {verb} the embedding: on {what} alone a classifier reaches "
                f"accuracy {number(value)} against the embedding's {number(embedding)}, so most of "
                "the separation does not need what the embedding encodes")
    return None


def caveats(results: Results) -> list[str]:
    """Every caveat, strongest first: a surface baseline that beats, matches or comes
    close to the embedding; the automatic warnings (a length confound, a too-small
    reference ensemble, ...); a small sample; the recipe's own confounds; truncation."""
    out = []
    baseline = _baseline_caveat(results)
    if baseline:
        out.append(baseline[0].upper() + baseline[1:] + ".")
    later = [w for w in results.data.warnings if w.startswith("Truncation")]
    out += [w for w in results.data.warnings if not w.startswith("Truncation")]
    counts = results.data.counts_by_label
    if counts and min(counts.values()) < SMALL_LABEL:
        label = min(counts, key=lambda k: counts[k])
        out.append(f"Small sample: label '{label}' has only {counts[label]} rows, so every "
                   "interval is wide and a permutation p-value cannot go far below "
                   f"1/{counts[label]}.")
    out += list(results.recipe.confounds)
    return out + later


def _lead(results: Results) -> AnalysisResult | None:
    """The result the verdict states: the first successful one whose headline has an
    interval (an inferential result), else the first successful one."""
    ok = [p for p in results.probes if not p.error and p.summary]
    for p in ok:
        head = headline_metric(p)
        if head is not None and head[1].ci is not None:
            return p
    return ok[0] if ok else None


def lead_verdict(results: Results) -> str:
    """One or two sentences: the strongest caveat first, then the lead finding."""
    notes = caveats(results)
    lead = _lead(results)
    finding = first_sentence(lead.summary, 320) if lead is not None else \
        "No analysis produced a result."
    if lead is not None and lead.probe.startswith("compare-"):
        # a comparison's answer is one line per candidate group
        groups = [p for p in results.probes if p.probe.startswith("compare-")
                  and not p.error and p.summary]
        finding = " ".join(first_sentence(p.summary, 240) for p in groups[:4])
    failed = [p for p in results.probes if p.error]
    if failed:
        finding += f" ({len(failed)} of {len(results.probes)} analyses failed.)"
    if not notes:
        return finding
    caveat = first_sentence(notes[0], 320).rstrip(".")
    more = f" (and {len(notes) - 1} more caveat{'s' if len(notes) > 2 else ''} below)" \
        if len(notes) > 1 else ""
    return f"Caveat first: {caveat}{more}. {finding}"


# --------------------------------------------------------------------------- renderers


def summary_html(results: Results, *, table_id: str = "summary") -> str:
    """The summary table as HTML (every string escaped), in a horizontally scrolling box."""
    head = "".join(f"<th>{escape(c)}</th>" for c in COLUMNS)
    body = "".join(
        f"<tr{' class=failed' if row.failed else ''}>"
        + "".join(f"<td>{escape(c)}</td>" for c in row.cells()) + "</tr>"
        for row in summary_rows(results))
    return (f"<div class=scroll><table id={table_id} class=summary><thead><tr>{head}</tr>"
            f"</thead><tbody>{body}</tbody></table></div>")


def summary_text(results: Results, *, width: int = 100) -> str:
    """The summary table as fixed-width text for a terminal (the reading is cut to fit)."""
    rows = [[r.analysis, r.metric, r.value, r.interval, r.reference] for r in
            summary_rows(results)]
    readings = [r.reading for r in summary_rows(results)]
    header = COLUMNS[:5]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for row, reading in zip(rows, readings, strict=True):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if reading:
            room = max(width - 4, 40)
            lines.append("    " + (reading if len(reading) <= room
                                   else reading[: room - 1] + "…"))
    return "\n".join(lines)


def metric_frame_rows(results: Results) -> list[dict[str, Any]]:
    """One dict per metric of every result (the rows of ``RunResults.to_frame()``)."""
    out = []
    for p in results.probes:
        if p.error:
            out.append({"analysis": p.probe, "layer": p.layer, "metric": None,
                        "value": math.nan, "error": p.error})
            continue
        for name, m in p.metrics.items():
            ci = m.ci or (None, None)
            out.append({"analysis": p.probe, "layer": p.layer, "metric": name,
                        "value": math.nan if m.value is None else m.value,
                        "ci_low": ci[0], "ci_high": ci[1], "ci_level": m.ci_level,
                        "std": m.std, "n": m.n, "method": m.method,
                        "headline": name == p.headline, "description": m.description,
                        "error": None})
    return out
