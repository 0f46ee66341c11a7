"""report.md: the same content as the HTML report, as Markdown, plots as PNG files.

Every string that comes from data or a recipe (the description, labels, column names,
summaries, the Finding, model ids) passes through :func:`_escape`, as report.html's pass
through ``html.escape``: HTML is shown as text (``<script>`` becomes ``&lt;script>``),
Markdown syntax characters are backslash-escaped and line breaks become spaces, so no data
can add a heading, a link, an image, a table cell or markup to the report.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from embedforensics.report.format import (
    cell,
    duplicates_plot,
    metric_text,
    plot_numbers,
    row_noun,
)
from embedforensics.report.html import skipped_plot_note
from embedforensics.report.schema import Results
from embedforensics.report.summary import COLUMNS, caveats, lead_verdict, summary_rows

# punctuation that starts Markdown markup anywhere in a line (emphasis, code, links and
# images, table cells, strike-through); "<" and "&" become HTML entities instead (no tag
# or entity can start without them)
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
_HTML = {"&": "&amp;", "<": "&lt;"}


def _escape(text: object) -> str:
    """``text`` as literal Markdown on one line (see the module docstring)."""
    flat = " ".join(str(text).splitlines())
    flat = _MD_SPECIAL.sub(r"\\\1", flat)
    flat = re.sub(r"[&<]", lambda m: _HTML[m.group()], flat)
    # at a line start, "#", "-", "+", "=", ">" and "1." would become headings, lists or
    # quotes
    flat = re.sub(r"^(\s*)([#+=>-])", r"\1\\\2", flat)
    return re.sub(r"^(\s*\d+)([.)])(?=\s|$)", r"\1\\\2", flat)


def _code(text: object) -> str:
    """``text`` as an inline code span, or escaped text when it holds a backtick."""
    flat = " ".join(str(text).splitlines())
    return _escape(flat) if "`" in flat or not flat.strip() else f"`{flat}`"


def _table(columns: list, rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(_escape(c) for c in columns) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_escape(cell(v)) for v in row) + " |" for row in rows]
    return lines + [""]


def render_markdown(results: Results, images: dict[tuple[int, int], bytes]) -> str:
    r = results
    model = r.provenance.get("model") or {"id": "none (the checkpoints read the texts)"}
    out = [f"# {_escape(r.recipe.name)}", ""]
    if r.recipe.description:
        out += [_escape(r.recipe.description), ""]
    out += [f"Model {_code(model.get('id'))} · {r.data.n} {row_noun(r)} · labels: "
            + _escape(", ".join(f"{k} (n={v})" for k, v in r.data.counts_by_label.items())),
            "", f"**Finding.** {_escape(lead_verdict(r))}", ""]
    out += ["## Summary", ""]
    out += _table(COLUMNS, [row.cells() for row in summary_rows(r)])
    warnings = caveats(r)
    if warnings:
        out += ["## Confounds and caveats", ""] + [f"- {_escape(w)}" for w in warnings] + [""]
    out += ["## Data", ""]
    out += _table(["source", "label", "rows used", "median chars", "mean tokens", "truncated",
                   "from"],
                  [[s.id, s.label, s.rows, round(s.lengths["chars_median"]),
                    round(s.lengths["tokens_mean"], 1), int(s.lengths.get("truncated", 0)),
                    s.origin.get("description", "")] for s in r.data.sources])
    for i, probe in enumerate(r.probes):
        at = "" if probe.layer is None else f" (layer {probe.layer})"
        out += [f"## Probe {i + 1}: {_escape(probe.probe + at)}", ""]
        if probe.error:
            out += [f"**Failed:** {_escape(probe.error)}", ""]
            continue
        out += [f"**{_escape(probe.summary)}**", ""]
        if probe.metrics:
            out += _table(["metric", "value", "method"],
                          [[k, metric_text(m), m.method] for k, m in probe.metrics.items()])
        for j, plot in enumerate(probe.plots):
            numbers = plot_numbers(plot)
            if numbers is not None:
                out += [_escape(numbers), ""]
            elif (i, j) in images:
                name = quote(f"{i:02d}-{probe.probe}-{j}.png")
                out += [f"![{_escape(plot.title)}](plots/{name})", ""]
            else:  # render_plot could not draw it (the reason is in the log)
                out += [f"*{_escape(skipped_plot_note(plot.title))}*", ""]
        for name, table in probe.tables.items():
            if isinstance(table, dict) and "columns" in table and "rows" in table:
                if duplicates_plot(table, probe.plots) and any(
                        (i, j) in images for j in range(len(probe.plots))):
                    continue  # the plot above shows these numbers in its cells
                out += [f"### {_escape(str(name).replace('_', ' '))}", ""]
                out += _table(table["columns"], table["rows"])
    versions = r.provenance.get("versions", {})
    out += ["## Provenance", "",
            f"- model: {_code(model.get('id'))} at {_code(model.get('location'))}, "
            f"fingerprint {_code(model.get('fingerprint'))}",
            "- " + _escape(f"pooling {model.get('pooling')}, normalise "
                           f"{model.get('normalize')}, max length {model.get('max_length')}, "
                           f"dtype {model.get('dtype')}, device {model.get('device')}"),
            f"- seed {r.provenance.get('seed')}, git commit {r.provenance.get('git_commit')}",
            "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v),
            "- wall time (s): " + ", ".join(f"{k} {v}" for k, v in r.timings.items()), ""]
    return "\n".join(out)
