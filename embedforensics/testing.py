"""Contract checks for plugin authors, in the spirit of scikit-learn's ``check_estimator``.

A new probe or comparator is one file plus one registry line (or one entry point in the
``embedforensics.probes`` / ``embedforensics.comparators`` group). These functions check
that it honours the contract the pipeline and the reports rely on; call them from your own
tests::

    from embedforensics.testing import check_probe

    def test_my_probe_contract():
        check_probe(MyProbe, n_folds=3)

Each check raises ``AssertionError`` with a message naming what is wrong.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

import numpy as np

from embedforensics.errors import UserError
from embedforensics.results import AnalysisResult


def _fail(owner: str, message: str) -> None:
    raise AssertionError(f"{owner}: {message}")


def _check_plugin_class(cls: type, base: type) -> str:
    """The checks every plug-in class passes: its base, a registry name, a description.
    Returns the name to use in messages."""
    from embedforensics.registry import describe

    owner = cls.__name__
    if not issubclass(cls, base):
        _fail(owner, f"must subclass {base.__module__}.{base.__name__}")
    if not cls.name:
        _fail(owner, "needs a registry name (class attribute 'name')")
    if not describe(cls):
        _fail(owner, "needs a description (class attribute or docstring) for "
                     "'embedforensics ls'")
    return owner


def check_result(owner: str, result: Any, *, n_rows: int | None = None) -> None:
    """One analysis result: the shared result type, a one-line summary, metrics with a
    positive n and finite values inside their intervals, rectangular tables, titled plots,
    and JSON that round-trips without NaN or infinity."""
    if not isinstance(result, AnalysisResult):
        _fail(owner, f"returned {type(result).__name__}, not embedforensics.results."
                     "AnalysisResult")
    if result.error is None:
        if not result.summary or not result.summary.rstrip().endswith("."):
            _fail(owner, "the summary must be a sentence ending with '.'")
        if not result.metrics:
            _fail(owner, "a result without an error needs at least one metric")
    for key, metric in result.metrics.items():
        if key != key.lower() or " " in key:
            _fail(owner, f"metric name {key!r} must be lower_snake_case")
        if metric.n <= 0 or (n_rows is not None and metric.n > n_rows):
            _fail(owner, f"metric {key!r} has n={metric.n}")
        if metric.value is not None and not np.isfinite(metric.value):
            _fail(owner, f"metric {key!r} is not finite ({metric.value})")
        if metric.ci is not None and metric.value is not None and not (
                metric.ci[0] - 1e-9 <= metric.value <= metric.ci[1] + 1e-9):
            _fail(owner, f"metric {key!r}: value {metric.value} outside its CI {metric.ci}")
        if not metric.description:
            _fail(owner, f"metric {key!r} needs a description")
    for name, table in result.tables.items():
        columns = table.get("columns", [])
        if any(len(row) != len(columns) for row in table.get("rows", [])):
            _fail(owner, f"table {name!r} has rows that do not match its columns")
    for plot in result.plots:
        if not plot.title:
            _fail(owner, "every plot needs a title")
    text = json.dumps(result.to_dict(), allow_nan=False)
    if AnalysisResult.model_validate_json(text).to_dict() != result.to_dict():
        _fail(owner, "the result does not survive a JSON round trip")


def check_probe(cls: type, **params: Any) -> None:
    """The probe contract (:class:`embedforensics.probes.base.Probe`): scikit-learn's
    estimator API, every parameter declared and validated, deterministic JSON-ready results,
    clear errors for bad input. ``params`` are small settings that keep the check fast."""
    from sklearn.base import clone

    from embedforensics.probes.base import Probe, ProbeParameterError

    owner = _check_plugin_class(cls, Probe)
    probe = cls(**params)
    names = set(probe.get_params())
    if names != set(cls._param_specs):
        _fail(owner, f"_param_specs must declare every __init__ parameter; undeclared: "
                     f"{sorted(names - set(cls._param_specs))}, extra: "
                     f"{sorted(set(cls._param_specs) - names)}")
    if clone(probe).get_params() != probe.get_params():
        _fail(owner, "clone() changes the parameters: __init__ must store them unchanged")
    positional = [p.name for p in list(inspect.signature(cls.__init__).parameters.values())[1:]
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if positional:
        _fail(owner, f"__init__ must take keyword-only arguments; positional: {positional}")

    rng = np.random.default_rng(0)
    n_labels = max(2, cls.min_labels)
    y = np.repeat(np.array([f"l{i}" for i in range(n_labels)]), 30)
    X = rng.normal(size=(y.size, 6)).astype(np.float32)
    X[:, 0] += 2.0 * np.searchsorted(np.unique(y), y)
    texts = [f"text {'x' * (i % 7)} number {i}" for i in range(y.size)]
    ids = [f"row-{i}" for i in range(y.size)]
    seeded = {"seed": 5} if "seed" in names else {}
    first = cls(**params, **seeded).fit(X, y, ids=ids, texts=texts).result_
    second = cls(**params, **seeded).fit(X, y, ids=ids, texts=texts).result_
    check_result(owner, first, n_rows=y.size)
    if first.to_dict() != second.to_dict():
        _fail(owner, "two fits with the same seed gave different results")
    if first.probe != cls.name:
        _fail(owner, f"result.probe is {first.probe!r}, not the registry name {cls.name!r}")
    for bad_X, bad_y, what in ((X[:, 0], y, "a 1-D X"), (X, y[:-1], "X and y of different "
                                                                     "lengths")):
        try:
            cls(**params).fit(bad_X, bad_y)
        except ProbeParameterError:
            continue
        except UserError:
            continue
        _fail(owner, f"fit accepted {what}; it must raise ProbeParameterError")


def check_comparator(cls: type, inputs: Any | None = None, **params: Any) -> None:
    """The comparator contract (:class:`embedforensics.study.analysis.Comparator`): a
    registry name, a description, a pydantic ``Params`` that rejects unknown keys with a
    message naming the key, and — given ``inputs`` (a
    :class:`~embedforensics.compare.checkpoints.CheckpointData`) — a deterministic
    :class:`~embedforensics.study.analysis.Outcome` of valid, JSON-ready results."""
    from embedforensics.study.analysis import Comparator, Outcome

    owner = _check_plugin_class(cls, Comparator)
    cls.validate_params(params)
    try:
        cls.validate_params({**params, "surely_not_a_parameter": 1}, key="compare.x")
    except UserError as exc:
        if "surely_not_a_parameter" not in str(exc):
            _fail(owner, f"the unknown-parameter error does not name the key: {exc}")
    else:
        _fail(owner, "Params must reject unknown keys (model_config extra='forbid')")
    if inputs is None:
        return
    first = cls(cls.validate_params(params)).run(inputs)
    second = cls(cls.validate_params(params)).run(inputs)
    if not isinstance(first, Outcome):
        _fail(owner, "run() must return an embedforensics.study.analysis.Outcome")
    if not first.results:
        _fail(owner, "run() returned no results")
    for result in first.results:
        check_result(owner, result)
    if [r.to_dict() for r in first.results] != [r.to_dict() for r in second.results]:
        _fail(owner, "two runs on the same inputs gave different results")
    json.dumps(first.provenance, allow_nan=False, default=str)
