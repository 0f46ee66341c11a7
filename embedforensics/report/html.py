"""A self-contained HTML report: one file, plots embedded as data URIs, no scripts.

Every string that comes from data or a recipe passes through :func:`html.escape`, so a
text containing markup is shown as text, never interpreted.
"""

from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path
from typing import Any

from embedforensics.report.format import (
    cell,
    duplicates_plot,
    metric_text,
    number,
    plot_numbers,
    row_noun,
)
from embedforensics.report.schema import Results
from embedforensics.report.summary import caveats, lead_verdict, summary_html

#: a table with more rows than this starts folded (per-seed and per-text tables)
TABLE_OPEN_ROWS = 12
#: a table with more columns than this is set smaller (a compare report's candidates)
WIDE_COLUMNS = 9
#: caveats listed on the first screen; the rest are one click away
CAVEATS_SHOWN = 3

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1180px;
margin:1.2em auto;padding:0 1em;color:#1b1b1b;line-height:1.4}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ddd;padding:.3em .55em;text-align:left;vertical-align:top}
th{background:#f4f4f4}.verdict{background:#eef6ff;border-left:4px solid #1f77b4;
padding:.7em 1em}.warn{background:#fff6e5;border-left:4px solid #e69500;padding:.7em 1em}
.error{background:#fdecec;border-left:4px solid #c62828;padding:.7em 1em}
img{max-width:100%;height:auto}img.thumb{margin:2px;vertical-align:middle}.muted{color:#666;font-size:.9em}
details pre{white-space:pre-wrap;font-size:.85em;background:#f8f8f8;padding:.6em}
td.text{max-width:520px}
.scroll{overflow-x:auto;max-width:100%}.scroll table{margin:.3em 0}
table.summary td:last-child{min-width:22em}table.summary tr.failed td{color:#c62828}
details.section{border-top:1px solid #ddd;margin:.2em 0}details.section>summary{cursor:pointer;
padding:.35em 0}details.section>summary h2{display:inline;border:0;font-size:1.2em;margin:0}
h1{margin-top:.2em}nav#toc{font-size:.9em;margin:.8em 0}.question{font-size:1.05em}
.verdict{font-size:1.05em}.warn{font-size:.92em;padding:.5em 1em}.warn ul{margin:.2em 0}
table.summary td:nth-child(-n+5){white-space:nowrap}
table.wide{font-size:.78em}table.wide th,table.wide td{padding:.2em .3em}
table.summary{font-size:.9em}
"""


def skipped_plot_note(title: str) -> str:
    """The reports' line for a plot that could not be drawn."""
    return f"Plot '{title}' could not be drawn and was skipped (the log says why)."


def _table(columns: list[Any], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(
            f"<td{' class=text' if isinstance(v, str) and len(v) > 60 else ''}>"
            f"{escape(cell(v))}</td>" for v in row) + "</tr>"
        for row in rows)
    wide = " class=wide" if len(columns) > WIDE_COLUMNS else ""
    return (f"<div class=scroll><table{wide}><thead><tr>{head}</tr></thead><tbody>{body}"
            "</tbody></table></div>")


def _example_images(r: Results) -> list[str]:
    """Thumbnails of the first few images of each image source (read from their files when
    the report is written; an image that cannot be read is left out)."""
    from embedforensics.sources.images import thumbnail_png

    out = []
    for s in r.data.sources:
        pngs = [(p, thumbnail_png(p)) for p in s.origin.get("example_images") or []]
        imgs = "".join(f"<img class=thumb alt='{escape(Path(p).name, True)}' "
                       f"title='{escape(p, True)}' "
                       f"src='data:image/png;base64,{base64.b64encode(png).decode('ascii')}'>"
                       for p, png in pngs if png is not None)
        if imgs:
            out.append(f"<p class=examples><b>{escape(s.id)}</b> ({escape(s.label)}): "
                       f"{imgs}</p>")
    if out:
        out.insert(0, "<h3 id=examples>Example images</h3>")
    return out


def _section(sid: str, title: str, body: list[str], *, open_: bool = False,
             note: str = "") -> str:
    """A collapsible section (``<details>``, no script): its heading stays visible."""
    extra = f" <span class=muted>{escape(note)}</span>" if note else ""
    return (f"<details id={sid} class=section{' open' if open_ else ''}><summary>"
            f"<h2>{escape(title)}</h2>{extra}</summary>" + "\n".join(body) + "</details>")


def _plot_block(plot: Any, png: bytes | None) -> str:
    """A plot's image, its numbers when a picture would carry nothing (one label pair), or
    the note that it could not be drawn."""
    numbers = plot_numbers(plot)
    if numbers is not None:
        return f"<p>{escape(numbers)}</p>"
    if png is not None:
        data = base64.b64encode(png).decode("ascii")
        return (f"<figure><img alt='{escape(plot.title, True)}' "
                f"src='data:image/png;base64,{data}'></figure>")
    return f"<p class=muted>{escape(skipped_plot_note(plot.title))}</p>"


def _analysis_body(i: int, probe: Any, images: dict[tuple[int, int], bytes]) -> list[str]:
    if probe.error:
        return [f"<div class=error><b>This analysis failed:</b> {escape(probe.error)}</div>"]
    body = [f"<p><b>{escape(probe.summary)}</b></p>"]
    if probe.metrics:
        metric_rows = [[name, metric_text(m), m.method, m.description]
                       for name, m in probe.metrics.items()]
        body.append(_table(["metric", "value", "method", "meaning"], metric_rows))
    for j, plot in enumerate(probe.plots):
        body.append(_plot_block(plot, images.get((i, j))))
    for name, table in probe.tables.items():
        if not (isinstance(table, dict) and "columns" in table and "rows" in table):
            continue
        if duplicates_plot(table, probe.plots):
            continue  # the same numbers are drawn (and printed in the cells) above
        title = escape(str(name).replace("_", " "))
        rows = table["rows"]
        if len(rows) > TABLE_OPEN_ROWS or "seed" in str(name).lower():
            body.append(f"<details><summary><b>{title}</b> <span class=muted>({len(rows)} "
                        f"rows)</span></summary>{_table(table['columns'], rows)}</details>")
        else:
            body.append(f"<h3>{title}</h3>" + _table(table["columns"], rows))
    if probe.params:
        body.append("<details class=muted><summary>parameters</summary><pre>"
                    + escape(json.dumps(probe.params, indent=1, default=str)) + "</pre></details>")
    return body


def render_html(results: Results, images: dict[tuple[int, int], bytes]) -> str:
    """The report as one HTML string: the first screen holds the question, the verdict
    (strongest caveat first), the caveats and one summary table; every other section is a
    collapsible ``<details>`` listed in the table of contents."""
    r = results
    parts = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
             f"<meta name=viewport content='width=device-width, initial-scale=1'>"
             f"<title>{escape(r.recipe.name)} — embedforensics report</title>"
             f"<style>{_CSS}</style></head><body>"]
    parts.append(f"<h1>{escape(r.recipe.name)}</h1>")
    if r.recipe.description:
        parts.append(f"<p class=question>{escape(r.recipe.description)}</p>")
    model = r.provenance.get("model") or {"id": "none (the checkpoints read the texts)"}
    parts.append(
        f"<p class=muted>Model <b>{escape(str(model.get('id')))}</b> · "
        f"{r.data.n} {row_noun(r)} · labels: "
        + escape(", ".join(f"{k} (n={v})" for k, v in r.data.counts_by_label.items()))
        + "</p>")
    parts.append(f"<div class=verdict id=verdict><b>Finding.</b> {escape(lead_verdict(r))}"
                 "</div>")
    parts.append(summary_html(r))
    warnings = caveats(r)
    if warnings:
        items = "".join(f"<li>{escape(w)}</li>" for w in warnings[:CAVEATS_SHOWN])
        more = warnings[CAVEATS_SHOWN:]
        folded = ("<details><summary>" + f"{len(more)} more caveat{'s' if len(more) > 1 else ''}"
                  + "</summary><ul>" + "".join(f"<li>{escape(w)}</li>" for w in more)
                  + "</ul></details>") if more else ""
        parts.append(f"<div class=warn id=confounds><b>Confounds and caveats — read before "
                     f"concluding.</b><ul>{items}</ul>{folded}</div>")

    comparing = "compare" in r.provenance
    noun = "Comparison" if comparing else "Probe"
    sections: list[tuple[str, str]] = [("data", "Data")]
    sections += [(f"probe-{i}", f"{noun} {i + 1}: {p.probe}"
                  + ("" if p.layer is None else f" (layer {p.layer})"))
                 for i, p in enumerate(r.probes)]
    sections.append(("provenance", "Provenance"))
    parts.append("<nav id=toc><b>Contents</b> (click a heading to open it): "
                 + " · ".join(f"<a href='#{sid}'>{escape(title)}</a>"
                              for sid, title in sections) + "</nav>")

    rows = [[s.id, s.label, s.rows, s.stats.get("rows_loaded"),
             s.stats.get("removed_by_where", 0) + s.stats.get("removed_empty", 0),
             round(s.lengths["chars_median"]), round(s.lengths["tokens_mean"], 1),
             int(s.lengths.get("truncated", 0)),
             "" if s.lengths.get("unk_share") is None else f"{s.lengths['unk_share']:.1%}",
             s.origin.get("description", "")]
            for s in r.data.sources]
    data_body = [_table(["source", "label", "rows used", "rows loaded", "filtered out",
                         "median chars", "mean tokens", "truncated", "unknown tokens",
                         "from"], rows)]
    data_body.extend(_example_images(r))
    parts.append(_section("data", "Data", data_body, open_=True))

    for i, probe in enumerate(r.probes):
        title = sections[i + 1][1]
        note = "failed" if probe.error else ""
        parts.append(_section(f"probe-{i}", title, _analysis_body(i, probe, images),
                              note=note))

    prov = r.provenance
    versions = prov.get("versions", {})
    prov_rows = [
        ["model", f"{model.get('id')} ({model.get('model_class')}, "
                  f"{model.get('n_parameters')} parameters)"],
        ["model location", model.get("location")],
        ["model fingerprint", model.get("fingerprint")],
        ["pooling / normalise / prefix", f"{model.get('pooling')} / {model.get('normalize')} / "
                                         f"{model.get('prefix')!r}"],
        ["max length / dtype / device", f"{model.get('max_length')} / {model.get('dtype')} / "
                                        f"{model.get('device')}"],
        ["seed", prov.get("seed")],
        ["git commit", prov.get("git_commit")],
        ["versions", ", ".join(f"{k} {v}" for k, v in versions.items() if v)],
        ["started", prov.get("started")],
        ["wall time (s)", ", ".join(f"{k} {number(v)}" for k, v in r.timings.items())],
        ["data fingerprints", ", ".join(f"{s.id}: {s.fingerprint[:16]}" for s in r.data.sources)],
    ]
    prov_body = [_table(["what", "value"], prov_rows),
                 "<details><summary>Resolved recipe</summary><pre>"
                 + escape(json.dumps(r.recipe.resolved, indent=2)) + "</pre></details>"]
    parts.append(_section("provenance", "Provenance", prov_body))
    parts.append("<p class=muted>Generated by embedforensics; machine-readable results in "
                 "results.json.</p></body></html>")
    return "\n".join(parts)
