"""What a notebook sees of a run or comparison: a short ``repr``, the summary table as
HTML, metrics carrying their interval, a pandas frame, and each plot as a matplotlib
figure.

:class:`ResultsView` is mixed into :class:`~embedforensics.study.pipeline.RunResults`
(which ``ef.run`` and ``ef.compare`` return); it needs only a ``results`` attribute (a
:class:`~embedforensics.report.schema.Results`) and an ``output_dir``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from embedforensics.report.schema import Results
from embedforensics.report.summary import lead_verdict, metric_frame_rows, summary_html
from embedforensics.results import AnalysisResult, MetricValue

if TYPE_CHECKING:
    import pandas
    from matplotlib.figure import Figure


class ResultsView:
    """Notebook-friendly access to a :class:`Results` object (see the module docstring)."""

    results: Results
    output_dir: Path | None

    # ------------------------------------------------------------------ lookup
    def analysis(self, probe: str, *, layer: str | None = None) -> AnalysisResult:
        """The first result called ``probe`` (at ``layer`` when given); KeyError if none."""
        for p in self.results.probes:
            if p.probe == probe and (layer is None or p.layer == str(layer)):
                return p
        names = sorted({p.probe for p in self.results.probes})
        raise KeyError(f"no analysis {probe!r}" + (f" at layer {layer}" if layer else "")
                       + f"; this run has {', '.join(names) or 'none'}")

    def metric(self, probe: str, name: str, *, layer: str | None = None
               ) -> MetricValue | None:
        """Metric ``name`` of the first result called ``probe``: a ``float`` that also
        carries ``.ci``, ``.n``, ``.method`` and ``.metric`` (the full record); None when the
        metric has no value on this data. KeyError when there is no such metric."""
        for p in self.results.probes:
            if p.probe == probe and name in p.metrics and (layer is None
                                                           or p.layer == str(layer)):
                m = p.metrics[name]
                return None if m.value is None else MetricValue(m, name=name, probe=probe)
        raise KeyError(f"no metric {name!r} for probe {probe!r}")

    def metrics(self, probe: str, *, layer: str | None = None) -> dict[str, MetricValue | None]:
        """Every metric of ``probe`` by name (as :meth:`metric` returns them)."""
        p = self.analysis(probe, layer=layer)
        return {n: None if m.value is None else MetricValue(m, name=n, probe=probe)
                for n, m in p.metrics.items()}

    @property
    def verdict(self) -> str:
        """The report's verdict: the strongest caveat first, then the lead finding."""
        return lead_verdict(self.results)

    # ------------------------------------------------------------------ tables
    def to_frame(self) -> pandas.DataFrame:
        """A pandas DataFrame, one row per metric of every analysis: analysis, layer,
        metric, value, ci_low, ci_high, ci_level, std, n, method, headline, description,
        error (a failed analysis is one row with its error)."""
        import pandas as pd

        columns = ["analysis", "layer", "metric", "value", "ci_low", "ci_high", "ci_level",
                   "std", "n", "method", "headline", "description", "error"]
        return pd.DataFrame(metric_frame_rows(self.results), columns=columns)

    # ------------------------------------------------------------------ plots
    def figures(self, probe: str | None = None) -> list[Figure]:
        """Every plot (of ``probe``, or of all analyses) as a matplotlib ``Figure``, drawn as
        in the report; plots that cannot be drawn are left out (logged)."""
        from embedforensics.report.plots import draw_figure

        out = []
        for p in self.results.probes:
            if probe is not None and p.probe != probe:
                continue
            for plot in p.plots:
                fig = draw_figure(plot)
                if fig is not None:
                    out.append(fig)
        return out

    def figure(self, probe: str, index: int = 0) -> Figure:
        """Plot number ``index`` of ``probe`` as a matplotlib ``Figure``."""
        from embedforensics.report.plots import draw_figure

        plots = [plot for p in self.results.probes if p.probe == probe for plot in p.plots]
        if not plots:
            raise KeyError(f"no plots for {probe!r}")
        fig = draw_figure(plots[index])
        if fig is None:
            raise ValueError(f"plot {index} of {probe!r} could not be drawn (the log says why)")
        return fig

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        r = self.results
        kinds = ", ".join(dict.fromkeys(p.probe for p in r.probes)) or "none"
        failed = sum(bool(p.error) for p in r.probes)
        where = f", output_dir='{self.output_dir}'" if self.output_dir else ""
        return (f"<{type(self).__name__} {r.recipe.name!r}: {r.data.n} rows, "
                f"{len(r.data.counts_by_label)} labels, {len(r.probes)} results ({kinds})"
                + (f", {failed} failed" if failed else "") + f"{where}>")

    def _repr_html_(self) -> str:
        from html import escape

        r = self.results
        where = (f"<p style='color:#666'>report: {escape(str(self.output_dir / 'report.html'))}"
                 "</p>") if self.output_dir else ""
        return (f"<div><b>{escape(r.recipe.name)}</b> · {r.data.n} rows · "
                + escape(", ".join(f"{k} (n={v})" for k, v in r.data.counts_by_label.items()))
                + f"<p>{escape(self.verdict)}</p>{summary_html(r, table_id='ef-summary')}"
                f"{where}</div>")

    def __str__(self) -> str:
        from embedforensics.report.summary import summary_text

        return f"{self.verdict}\n\n{summary_text(self.results)}"
