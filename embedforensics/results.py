"""The one result type of every analysis: probes, the layer sweep and checkpoint comparators.

An analysis returns :class:`AnalysisResult` objects; ``results.json`` is made of the same
objects (``Results.probes``), so there is no second representation to convert to or keep in
step. Everything here is plain data (pydantic models, JSON-ready): numpy scalars and arrays
in parameters, tables and plot data become Python numbers and lists on construction, and
non-finite floats in tables become ``null``.

This module imports no component (no torch, no scikit-learn): probes, comparators, the
study pipeline and the reports all build on it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator


def jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays (possibly nested) into plain Python for JSON;
    non-finite floats become None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Metric(BaseModel):
    """One number with its uncertainty and the n behind it.

    ``ci`` is a (low, high) confidence interval at ``ci_level`` (or None when the metric
    has no interval, e.g. an explained-variance ratio); ``std`` a spread over seeds or folds
    where that is the natural uncertainty; ``range`` the (min, max) over those seeds or
    folds (a spread, not a confidence interval); ``method`` says how the interval was
    computed.
    """

    model_config = ConfigDict(extra="allow")

    value: float | None
    n: int
    ci: tuple[float, float] | None = None
    ci_level: float | None = None
    std: float | None = None
    range: tuple[float, float] | None = None
    method: str = ""
    description: str = ""

    @field_validator("value", "std", "ci_level", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        return value.item() if isinstance(value, np.generic) else value

    @field_validator("n", mode="before")
    @classmethod
    def _count(cls, value: Any) -> Any:
        return int(value) if isinstance(value, (np.integer, float)) else value

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class Plot(BaseModel):
    """Data for one plot; the report draws it, analyses never import matplotlib.

    ``kind`` is one of ``scatter`` (``x``, ``y``, ``labels`` per point), ``bar`` (``x``
    category names, ``y`` heights), ``matrix`` (``values`` 2-D, ``row_labels``,
    ``col_labels``), ``lines`` (``series`` of ``x``/``y`` with a ``label``).
    """

    kind: str
    title: str
    data: dict[str, Any] = Field(default_factory=dict)
    xlabel: str = ""
    ylabel: str = ""

    @field_validator("data", mode="before")
    @classmethod
    def _plain(cls, value: Any) -> Any:
        return jsonable(value)


class AnalysisResult(BaseModel):
    """What one analysis found (or why it failed): the entries of ``results.json``'s
    ``probes`` list.

    ``probe`` is the analysis name as it appears in the report (a probe's registry name,
    ``layer_sweep``, ``compare-<group>``, ``trntk``, ...); ``metrics`` are headline numbers
    with their uncertainty; ``tables`` are ``{"columns": [...], "rows": [[...]]}`` objects;
    ``params`` the parameters it ran with (plus ``seconds``); ``layer`` the hidden layer
    the embeddings came from when several were captured; ``headline`` the metric that sums
    the analysis up (plotted against layer depth in layer sweeps); ``error`` the message
    when it failed on this data.
    """

    probe: str
    summary: str = ""
    error: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Metric] = Field(default_factory=dict)
    tables: dict[str, Any] = Field(default_factory=dict)
    plots: list[Plot] = Field(default_factory=list)
    layer: str | None = None
    headline: str | None = None

    @field_validator("params", "tables", mode="before")
    @classmethod
    def _plain(cls, value: Any) -> Any:
        return jsonable(value)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict of this result (as written to ``results.json``)."""
        return self.model_dump(mode="json")


class MetricValue(float):
    """A metric's value that is still a ``float`` (so ``result.metric(...) > 0.9`` and
    arithmetic work as before) and also carries its interval, n and method.

    Returned by ``RunResults.metric``; ``.metric`` is the full :class:`Metric`.
    """

    metric: Metric
    name: str
    probe: str

    def __new__(cls, metric: Metric, *, name: str = "", probe: str = "") -> MetricValue:
        if metric.value is None:
            raise ValueError("a MetricValue needs a value (the metric has none)")
        obj = super().__new__(cls, metric.value)
        obj.metric, obj.name, obj.probe = metric, name, probe
        return obj

    @property
    def value(self) -> float:
        return float(self)

    @property
    def ci(self) -> tuple[float, float] | None:
        """The (low, high) confidence interval, or None when the metric has none."""
        return self.metric.ci

    interval = ci

    @property
    def ci_level(self) -> float | None:
        return self.metric.ci_level

    @property
    def n(self) -> int:
        return self.metric.n

    @property
    def method(self) -> str:
        return self.metric.method

    @property
    def std(self) -> float | None:
        return self.metric.std

    @property
    def description(self) -> str:
        return self.metric.description

    def __repr__(self) -> str:
        parts = [f"{float(self):.4g}"]
        if self.ci is not None:
            level = f"{round((self.ci_level or 0.95) * 100)}% " if self.ci_level else ""
            parts.append(f"{level}CI {self.ci[0]:.4g}–{self.ci[1]:.4g}")
        if self.std is not None:
            parts.append(f"sd {self.std:.3g}")
        parts.append(f"n={self.n}")
        head = f"{self.probe}.{self.name}" if self.probe else (self.name or "metric")
        method = f"; {self.method}" if self.method else ""
        return f"<{head} = {', '.join(parts)}{method}>"

    def __reduce__(self) -> Any:
        return (MetricValue, (self.metric,), {"name": self.name, "probe": self.probe})

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.name, self.probe = state["name"], state["probe"]
