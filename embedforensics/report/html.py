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

from embedforensics.report.format import cell, metric_text, row_noun, verdict
from embedforensics.report.schema import Results

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1040px;
margin:2em auto;padding:0 1em;color:#1b1b1b;line-height:1.45}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ddd;padding:.3em .55em;text-align:left;vertical-align:top}
th{background:#f4f4f4}.verdict{background:#eef6ff;border-left:4px solid #1f77b4;
padding:.7em 1em}.warn{background:#fff6e5;border-left:4px solid #e69500;padding:.7em 1em}
.error{background:#fdecec;border-left:4px solid #c62828;padding:.7em 1em}
img{max-width:100%;height:auto}img.thumb{margin:2px;vertical-align:middle}.muted{color:#666;font-size:.9em}
details pre{white-space:pre-wrap;font-size:.85em;background:#f8f8f8;padding:.6em}
td.text{max-width:520px}
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
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


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


def render_html(results: Results, images: dict[tuple[int, int], bytes]) -> str:
    """The report as one HTML string."""
    r = results
    parts = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
             f"<meta name=viewport content='width=device-width, initial-scale=1'>"
             f"<title>{escape(r.recipe.name)} — embedforensics report</title>"
             f"<style>{_CSS}</style></head><body>"]
    parts.append(f"<h1>{escape(r.recipe.name)}</h1>")
    if r.recipe.description:
        parts.append(f"<p>{escape(r.recipe.description)}</p>")
    model = r.provenance.get("model") or {"id": "none (the checkpoints read the texts)"}
    parts.append(
        f"<p class=muted>Model <b>{escape(str(model.get('id')))}</b> · "
        f"{r.data.n} {row_noun(r)} · labels: "
        + escape(", ".join(f"{k} (n={v})" for k, v in r.data.counts_by_label.items()))
        + "</p>")
    parts.append(f"<div class=verdict id=verdict><b>Finding.</b> {escape(verdict(r))}</div>")

    warnings = list(r.recipe.confounds) + list(r.data.warnings)
    if warnings:
        items = "".join(f"<li>{escape(w)}</li>" for w in warnings)
        parts.append(f"<div class=warn id=confounds><b>Confounds and caveats — read before "
                     f"concluding.</b><ul>{items}</ul></div>")

    parts.append("<h2 id=data>Data</h2>")
    rows = [[s.id, s.label, s.rows, s.stats.get("rows_loaded"),
             s.stats.get("removed_by_where", 0) + s.stats.get("removed_empty", 0),
             round(s.lengths["chars_median"]), round(s.lengths["tokens_mean"], 1),
             int(s.lengths.get("truncated", 0)), s.origin.get("description", "")]
            for s in r.data.sources]
    parts.append(_table(["source", "label", "rows used", "rows loaded", "filtered out",
                         "median chars", "mean tokens", "truncated", "from"], rows))
    parts.extend(_example_images(r))

    for i, probe in enumerate(r.probes):
        at = "" if probe.layer is None else f" (layer {escape(probe.layer)})"
        parts.append(f"<h2 id=probe-{i}>Probe {i + 1}: {escape(probe.probe)}{at}</h2>")
        if probe.error:
            parts.append(f"<div class=error><b>This probe failed:</b> "
                         f"{escape(probe.error)}</div>")
            continue
        parts.append(f"<p><b>{escape(probe.summary)}</b></p>")
        if probe.metrics:
            metric_rows = [[name, metric_text(m), m.method, m.description]
                           for name, m in probe.metrics.items()]
            parts.append(_table(["metric", "value", "method", "meaning"], metric_rows))
        for j, plot in enumerate(probe.plots):
            png = images.get((i, j))
            if png is not None:
                data = base64.b64encode(png).decode("ascii")
                parts.append(f"<figure><img alt='{escape(plot.title, True)}' "
                             f"src='data:image/png;base64,{data}'></figure>")
            else:  # render_plot could not draw it (the reason is in the log)
                parts.append(f"<p class=muted>{escape(skipped_plot_note(plot.title))}</p>")
        for name, table in probe.tables.items():
            if isinstance(table, dict) and "columns" in table and "rows" in table:
                parts.append(f"<h3>{escape(str(name).replace('_', ' '))}</h3>")
                parts.append(_table(table["columns"], table["rows"]))
        params = {k: v for k, v in probe.params.items()}
        parts.append(f"<p class=muted>parameters: {escape(json.dumps(params, default=str))}"
                     "</p>")

    parts.append("<h2 id=provenance>Provenance</h2>")
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
        ["wall time (s)", ", ".join(f"{k} {v}" for k, v in r.timings.items())],
        ["data fingerprints", ", ".join(f"{s.id}: {s.fingerprint[:16]}" for s in r.data.sources)],
    ]
    parts.append(_table(["what", "value"], prov_rows))
    parts.append("<details><summary>Resolved recipe</summary><pre>"
                 + escape(json.dumps(r.recipe.resolved, indent=2)) + "</pre></details>")
    parts.append("<p class=muted>Generated by embedforensics; machine-readable results in "
                 "results.json.</p></body></html>")
    return "\n".join(parts)
