"""Draw probe plot data (scatter, bar, matrix, lines) as PNG bytes with matplotlib (Agg).

Every string in a plot (title, axis labels, tick labels, legend entries) comes from data or
a recipe, so it is drawn literally: matplotlib's mathtext (``$...$``) and LaTeX are off
while a plot is drawn (``text.parse_math=False``, ``text.usetex=False``), and a label such
as ``$\\notacommand{x}$`` appears as written. A plot that still cannot be drawn is skipped
(logged; the reports say so), never the end of the run.
"""

from __future__ import annotations

import io
import logging
from typing import Any

from embedforensics.results import Plot

log = logging.getLogger(__name__)

#: matplotlib settings while drawing: every string literal, no LaTeX, whatever the user's
#: matplotlibrc says
_LITERAL_TEXT = {"text.parse_math": False, "text.usetex": False,
                 "axes.formatter.use_mathtext": False}

_PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf"]


def render_plot(plot: Plot | dict[str, Any]) -> bytes | None:
    """PNG bytes for one :class:`~embedforensics.results.Plot` (or its dict), or None for an
    unknown kind or a plot that cannot be drawn (logged with the reason; the reports note
    the plot as skipped)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    if isinstance(plot, Plot):
        plot = plot.model_dump()
    try:
        with matplotlib.rc_context(_LITERAL_TEXT):
            return _draw(plot)
    except Exception as exc:  # noqa: BLE001 - one plot fails alone, the reports go on
        first = (str(exc).strip().splitlines() or [""])[0]
        log.warning("plot %r could not be drawn (%s: %s); skipped",
                    str(plot.get("title", "")) if isinstance(plot, dict) else "",
                    type(exc).__name__, first)
        log.debug("plot failure", exc_info=True)
        return None


def draw_figure(plot: Plot | dict[str, Any]) -> Any:
    """One plot as a matplotlib ``Figure`` (not registered with pyplot, so a notebook shows
    it once and nothing has to be closed), or None for an unknown kind or a plot that
    cannot be drawn (logged)."""
    import matplotlib

    if isinstance(plot, Plot):
        plot = plot.model_dump()
    try:
        with matplotlib.rc_context(_LITERAL_TEXT):
            return _figure(plot)
    except Exception as exc:  # noqa: BLE001 - one plot fails alone
        first = (str(exc).strip().splitlines() or [""])[0]
        log.warning("plot %r could not be drawn (%s: %s); skipped",
                    str(plot.get("title", "")) if isinstance(plot, dict) else "",
                    type(exc).__name__, first)
        return None


def _draw(plot: dict[str, Any]) -> bytes | None:
    fig = _figure(plot)
    if fig is None:
        return None
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _figure(plot: dict[str, Any]) -> Any:
    import numpy as np
    from matplotlib.figure import Figure

    kind, data = plot.get("kind"), plot.get("data", {})
    fig = Figure(figsize=(6.4, 4.4), dpi=100)
    ax = fig.add_subplot()
    if kind == "scatter":
        x = np.asarray(data.get("x", []), dtype=float)
        y = np.asarray(data.get("y", np.zeros(len(x))), dtype=float)
        labels = np.asarray(data.get("labels", ["all"] * len(x)), dtype=object)
        for i, label in enumerate(sorted(set(labels.tolist()), key=str)):
            sel = labels == label
            ax.scatter(x[sel], y[sel], s=9, alpha=0.6, color=_PALETTE[i % len(_PALETTE)],
                       label=f"{label} (n={int(sel.sum())})", linewidths=0)
        ax.legend(loc="best", fontsize=8, markerscale=2)
    elif kind == "bar":
        names = [str(v) for v in data.get("x", [])]
        ax.bar(range(len(names)), data.get("y", []), color=_PALETTE[0])
        ax.set_xticks(range(len(names)), names, rotation=45 if len(names) > 6 else 0,
                      ha="right" if len(names) > 6 else "center", fontsize=8)
    elif kind == "matrix":
        values = np.asarray(data.get("values", [[]]), dtype=float)
        finite = values[np.isfinite(values)]
        im = ax.imshow(np.ma.masked_invalid(values), cmap="Blues",
                       vmin=float(finite.min()) if finite.size else None,
                       vmax=float(finite.max()) if finite.size else None)
        rows, cols = data.get("row_labels", []), data.get("col_labels", [])
        ax.set_yticks(range(len(rows)), [str(r) for r in rows], fontsize=8)
        ax.set_xticks(range(len(cols)), [str(c) for c in cols], fontsize=8,
                      rotation=45 if len(cols) > 4 else 0)
        if values.size <= 144:
            finite = values[np.isfinite(values)]
            vmax = finite.max() if finite.size else 0
            for (r, c), v in np.ndenumerate(values):
                if not np.isfinite(v):  # an empty cell (e.g. a label with itself)
                    continue
                text = f"{v:.0f}" if float(v).is_integer() else f"{v:.2f}"
                ax.text(c, r, text, ha="center", va="center", fontsize=8,
                        color="white" if v > 0.6 * vmax else "black")
        fig.colorbar(im, ax=ax, shrink=0.8)
    elif kind == "lines":
        # {"series": [{"label", "x", "y", "step", "dashed"?, "marker"?}]}: eCDFs (step),
        # reliability diagrams (points joined by lines), learning curves, layer sweeps
        # a series with "low"/"high" instead of "y" is a shaded interval band in the
        # colour of the line before it
        last_color = _PALETTE[0]
        for i, series in enumerate(data.get("series", [])):
            x = np.asarray(series.get("x", []), dtype=float)
            if "low" in series:
                low = np.asarray(series["low"], dtype=float)
                high = np.asarray(series["high"], dtype=float)
                ax.fill_between(x, low, high, color=last_color, alpha=0.18, linewidth=0,
                                label=str(series.get("label", "")))
                continue
            y = np.asarray(series.get("y", []), dtype=float)
            style = {"color": _PALETTE[i % len(_PALETTE)], "linewidth": 1.4,
                     "label": str(series.get("label", "")),
                     "linestyle": "--" if series.get("dashed") else "-"}
            if series.get("dashed"):
                style["color"] = "#7f7f7f"
            last_color = style["color"]
            if series.get("step"):
                ax.step(x, y, where="post", **style)
            else:
                ax.plot(x, y, marker="o" if series.get("marker") else None,
                        markersize=3, **style)
        ticks = data.get("xticks")
        if ticks:  # categorical x (e.g. layer names) at positions 0..k-1
            ax.set_xticks(range(len(ticks)), [str(t) for t in ticks], fontsize=8)
        ax.legend(loc="best", fontsize=8)
    else:
        return None
    ax.set_title(str(plot.get("title", "")), fontsize=10)
    ax.set_xlabel(str(plot.get("xlabel", "")))
    ax.set_ylabel(str(plot.get("ylabel", "")))
    fig.tight_layout()
    return fig
