"""Reports: results.json (versioned schema), a self-contained report.html, and report.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from embedforensics.fileio import atomic_write_bytes
from embedforensics.report.schema import Results, json_schema


def write_reports(results: Results, embeddings: Any, out_dir: str | Path) -> Path:
    """Write results.schema.json, report.html, report.md and plots/*.png.

    ``results.json`` itself is written by the study pipeline, once and atomically, after
    these (:func:`embedforensics.study.pipeline.write_outputs`). Every file is written
    atomically (a full disk or a crash leaves the old file or none, never half of one)."""
    from embedforensics.report.html import render_html
    from embedforensics.report.markdown import render_markdown
    from embedforensics.report.plots import render_plot

    out = Path(out_dir)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    images: dict[tuple[int, int], bytes] = {}
    from embedforensics.report.format import plot_numbers

    for i, probe in enumerate(results.probes):
        for j, plot in enumerate(probe.plots):
            if plot_numbers(plot) is not None:
                continue  # one label pair: the reports print its numbers, no picture
            png = render_plot(plot)
            if png is not None:
                images[(i, j)] = png
                atomic_write_bytes(out / "plots" / f"{i:02d}-{probe.probe}-{j}.png", png,
                                   suffix=".png")
    atomic_write_bytes(out / "results.schema.json",
                       json.dumps(json_schema(), indent=2).encode("utf-8"))
    atomic_write_bytes(out / "report.html", render_html(results, images).encode("utf-8"))
    atomic_write_bytes(out / "report.md", render_markdown(results, images).encode("utf-8"))
    return out
