"""The probe contract shared by every probe.

A probe follows scikit-learn's estimator contract: ``__init__`` only stores keyword-only
arguments; ``fit(X, y)`` validates them (raising ``ProbeParameterError`` with a message such
as "The 'n_components' parameter of PCAProbe must be an int in [1, inf). Got -1 instead."),
does the work and returns ``self``; learned state lives in attributes ending in ``_``.
After ``fit`` the attribute ``result_`` holds a :class:`ProbeResult`, the plain data object
that the report consumes. Probes never load models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator

from embedforensics.errors import UserError


class ProbeParameterError(UserError):
    """A probe parameter has the wrong type or value."""


@dataclass
class Metric:
    """One number with its uncertainty and the n behind it.

    ``ci`` is a (low, high) confidence interval at ``ci_level`` (or None when the metric
    has no interval, e.g. an explained-variance ratio); ``std`` a spread over seeds or folds
    where that is the natural uncertainty; ``range`` the (min, max) over those seeds or
    folds (a spread, not a confidence interval); ``method`` says how the interval was
    computed.
    """

    value: float
    n: int
    ci: tuple[float, float] | None = None
    ci_level: float | None = None
    std: float | None = None
    method: str = ""
    description: str = ""
    range: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": float(self.value),
            "n": int(self.n),
            "ci": None if self.ci is None else [float(self.ci[0]), float(self.ci[1])],
            "ci_level": self.ci_level,
            "std": None if self.std is None else float(self.std),
            "method": self.method,
            "description": self.description,
            "range": None if self.range is None else [float(self.range[0]),
                                                      float(self.range[1])],
        }


@dataclass
class Plot:
    """Data for one plot; the report draws it, the probe never imports matplotlib.

    ``kind`` is one of ``scatter`` (``x``, ``y``, ``labels`` per point), ``bar`` (``x``
    category names, ``y`` heights), ``matrix`` (``values`` 2-D, ``row_labels``,
    ``col_labels``).
    """

    kind: str
    title: str
    data: dict[str, Any]
    xlabel: str = ""
    ylabel: str = ""


@dataclass
class ProbeResult:
    """What a probe found: headline metrics, tables and plot data, all JSON-serialisable."""

    probe: str
    summary: str
    metrics: dict[str, Metric] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)
    plots: list[Plot] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "probe": self.probe,
            "summary": self.summary,
            "params": _jsonable(self.params),
            "metrics": {name: m.to_dict() for name, m in self.metrics.items()},
            "tables": _jsonable(self.tables),
            "plots": [
                {"kind": p.kind, "title": p.title, "xlabel": p.xlabel, "ylabel": p.ylabel,
                 "data": _jsonable(p.data)}
                for p in self.plots
            ],
        }


def _jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays (possibly nested) into plain Python for JSON."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


class Probe(BaseEstimator):
    """Base class: parameter declaration and validation; scikit-learn provides
    ``get_params``/``set_params``/``clone``/``repr`` from the ``__init__`` signature.

    Subclasses declare ``name`` (the registry name), ``description`` (one line for
    ``embedforensics ls probes``), ``min_labels``, ``headline`` (its key metric) and
    ``_param_specs``: a mapping
    from every ``__init__`` parameter to a tuple ``(kind, low, high, options)`` with kind
    one of int, int_or_none, float, positive_float, str, bool, checked by :meth:`_check_params`; and
    implement ``_fit(X, y, **context) -> ProbeResult``. ``__init__`` takes keyword-only
    arguments and stores them unchanged.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    min_labels: ClassVar[int] = 1
    headline: ClassVar[str | None] = None
    """The metric that sums the probe up (plotted against layer depth in layer sweeps)."""
    _param_specs: ClassVar[dict[str, tuple]] = {}


    # ---- validation ----------------------------------------------------------------
    def _check_params(self) -> None:
        for pname, (kind, low, high, options) in self._param_specs.items():
            value = getattr(self, pname)
            _check_param(type(self).__name__, pname, value, kind, low, high, options)

    def fit(self, X: np.ndarray, y: np.ndarray, **context: Any) -> Probe:
        """Validate parameters and inputs, run the probe and store ``result_``.

        ``context`` carries optional per-row information (``ids``, ``texts``) that a probe
        may use for examples in its report; probes must work without it.
        """
        self._check_params()
        X = np.asarray(X)
        y = np.asarray(y)
        if X.ndim != 2:
            raise ProbeParameterError(f"{type(self).__name__} expects a 2-D array; got {X.ndim}-D.")
        if X.size and not np.isfinite(X).all():
            bad = int(np.flatnonzero(~np.isfinite(X).all(axis=1))[0])
            raise ProbeParameterError(
                f"{type(self).__name__}: the embeddings contain NaN or infinite values "
                f"(first at row {bad}); check the model's dtype (float16 can overflow).")
        if len(X) != len(y):
            raise ProbeParameterError(
                f"{type(self).__name__}: X has {len(X)} rows but y has {len(y)} labels."
            )
        n_labels = len(np.unique(y))
        if n_labels < self.min_labels:
            raise ProbeParameterError(
                f"probe '{self.name}' needs at least {self.min_labels} distinct labels; "
                f"the data has {n_labels} ({', '.join(map(str, np.unique(y)))})."
            )
        self.result_ = self._fit(X, y, **context)
        return self

    def _fit(self, X: np.ndarray, y: np.ndarray, **context: Any) -> ProbeResult:
        raise NotImplementedError  # abstractmethod: implemented by every probe


def _check_param(owner: str, pname: str, value: Any, kind: str, low, high, options) -> None:
    """Check one parameter and raise sklearn-style messages."""
    def fail(expected: str) -> None:
        raise ProbeParameterError(
            f"The '{pname}' parameter of {owner} must be {expected}. Got {value!r} instead."
        )

    def interval() -> str:
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        left = "(" if low is None else "["
        right = ")" if high is None else "]"
        return f"{left}{lo}, {hi}{right}"

    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, Integral):
            fail(f"an int in {interval()}")
        if (low is not None and value < low) or (high is not None and value > high):
            fail(f"an int in {interval()}")
    elif kind == "int_or_none":
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, Integral) or \
                (low is not None and value < low) or (high is not None and value > high):
            fail(f"an int in {interval()} or None")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, Real):
            fail(f"a float in {interval()}")
        if (low is not None and value < low) or (high is not None and value > high):
            fail(f"a float in {interval()}")
    elif kind == "positive_float":
        if isinstance(value, bool) or not isinstance(value, Real) or value <= 0:
            fail("a float in (0, inf)")
    elif kind == "str":
        if value not in options:
            fail("one of " + ", ".join(repr(o) for o in options))
    elif kind == "bool":
        if not isinstance(value, bool):
            fail("a bool")
    else:  # pragma: no cover - programming error in a probe declaration
        raise ValueError(f"unknown constraint kind {kind!r}")
