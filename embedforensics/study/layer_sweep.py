"""The layer sweep: each probe's headline metric against layer depth.

Runs after the probes when the model captured several hidden layers (``model.layers``); its
input is the probes' results, its output one ``layer_sweep`` entry with a table and a plot.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict

from embedforensics.results import AnalysisResult
from embedforensics.study.analysis import Analysis, Outcome


def layer_order(layers: list[str]) -> list[str]:
    """Layers by depth: non-negative indices ascending, then negative ones (counted from
    the end) ascending, then any non-numeric names in their given order."""
    def key(name: str) -> tuple[int, float]:
        try:
            v = int(name)
        except ValueError:
            return (2, 0.0)
        return (0, v) if v >= 0 else (1, v)

    return sorted(layers, key=key)


class LayerSweepParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    layers: list[str]


class LayerSweep(Analysis):
    """Each probe's headline metric against layer depth, with its interval."""

    name = "layer_sweep"
    Params = LayerSweepParams

    def run(self, inputs: list[AnalysisResult]) -> Outcome:
        order = layer_order(self.params.layers)
        series, rows = [], []
        groups: dict[str, dict[str, float | None]] = {}
        for out in inputs:
            metric = out.headline
            if out.error or not metric or metric not in out.metrics:
                continue
            m = out.metrics[metric]
            groups.setdefault(f"{out.probe}: {metric}", {})[out.layer] = m.value
            rows.append([out.probe, metric, out.layer, m.value,
                         None if m.ci is None else m.ci[0],
                         None if m.ci is None else m.ci[1], m.n])
        for label, values in groups.items():
            xs = [j for j, layer in enumerate(order) if values.get(layer) is not None]
            series.append({"label": label, "x": xs, "y": [values[order[j]] for j in xs],
                           "marker": True})
        best = []
        for label, values in groups.items():
            top = max(values, key=lambda k: -np.inf if values[k] is None else values[k])
            best.append(f"{label} peaks at layer {top} ({values[top]:.3g})")
        summary = (f"Layer sweep over {len(order)} layers ({', '.join(order)}): "
                   + ("; ".join(best) if best else "no probe produced a headline metric")
                   + ".")
        return Outcome([AnalysisResult(
            probe=self.name, summary=summary, layer=None, params={"layers": order},
            tables={"by_layer": {"columns": ["probe", "metric", "layer", "value", "ci_low",
                                             "ci_high", "n"], "rows": rows}},
            plots=[{"kind": "lines", "title": "Headline metric per probe against layer depth",
                    "xlabel": "layer (shallow → deep)", "ylabel": "metric value",
                    "data": {"series": series, "xticks": order}}])])
