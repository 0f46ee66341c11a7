"""report.md: the same content as the HTML report, as Markdown, plots as PNG files."""

from __future__ import annotations

from embedforensics.report.format import cell, metric_text, row_noun, verdict
from embedforensics.report.schema import Results


def _escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")


def _table(columns: list, rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(_escape(c) for c in columns) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_escape(cell(v)) for v in row) + " |" for row in rows]
    return lines + [""]


def render_markdown(results: Results, images: dict[tuple[int, int], bytes]) -> str:
    r = results
    model = r.provenance.get("model") or {"id": "none (the checkpoints read the texts)"}
    out = [f"# {r.recipe.name}", ""]
    if r.recipe.description:
        out += [r.recipe.description, ""]
    out += [f"Model `{model.get('id')}` · {r.data.n} {row_noun(r)} · labels: "
            + ", ".join(f"{k} (n={v})" for k, v in r.data.counts_by_label.items()), "",
            f"**Finding.** {verdict(r)}", ""]
    warnings = list(r.recipe.confounds) + list(r.data.warnings)
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
        out += [f"## Probe {i + 1}: {probe.probe}{at}", ""]
        if probe.error:
            out += [f"**Failed:** {_escape(probe.error)}", ""]
            continue
        out += [f"**{_escape(probe.summary)}**", ""]
        if probe.metrics:
            out += _table(["metric", "value", "method"],
                          [[k, metric_text(m), m.method] for k, m in probe.metrics.items()])
        for j, plot in enumerate(probe.plots):
            if (i, j) in images:
                out += [f"![{_escape(plot.title)}](plots/{i:02d}-{probe.probe}-{j}.png)",
                        ""]
        for name, table in probe.tables.items():
            if isinstance(table, dict) and "columns" in table and "rows" in table:
                out += [f"### {str(name).replace('_', ' ')}", ""]
                out += _table(table["columns"], table["rows"])
    versions = r.provenance.get("versions", {})
    out += ["## Provenance", "",
            f"- model: `{model.get('id')}` at `{model.get('location')}`, fingerprint "
            f"`{model.get('fingerprint')}`",
            f"- pooling {model.get('pooling')}, normalise {model.get('normalize')}, max length "
            f"{model.get('max_length')}, dtype {model.get('dtype')}, device {model.get('device')}",
            f"- seed {r.provenance.get('seed')}, git commit {r.provenance.get('git_commit')}",
            "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v),
            "- wall time (s): " + ", ".join(f"{k} {v}" for k, v in r.timings.items()), ""]
    return "\n".join(out)
