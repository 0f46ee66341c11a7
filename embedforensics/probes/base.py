"""The probe contract shared by every probe.

A probe follows scikit-learn's estimator contract: ``__init__`` only stores keyword-only
arguments; ``fit(X, y)`` validates them (raising ``ProbeParameterError`` with a message such
as "The 'n_components' parameter of PCAProbe must be an int in [1, inf). Got -1 instead."),
does the work and returns ``self``; learned state lives in attributes ending in ``_``.
After ``fit`` the attribute ``result_`` holds a :class:`ProbeResult`, the plain data object
that the report consumes. Probes never load models.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator

from embedforensics.errors import UserError, did_you_mean
from embedforensics.results import AnalysisResult, Metric, Plot, jsonable

if TYPE_CHECKING:
    from embedforensics.recipe.loader import LoadedRecipe

__all__ = ["Metric", "Plot", "Probe", "ProbeParameterError", "ProbeResult", "jsonable"]


class ProbeParameterError(UserError):
    """A probe parameter has the wrong type or value."""


ProbeResult = AnalysisResult
"""What a probe's ``fit`` leaves in ``result_``: the one result type of every analysis."""


class Probe(BaseEstimator):
    """Base class: parameter declaration and validation; scikit-learn provides
    ``get_params``/``set_params``/``clone``/``repr`` from the ``__init__`` signature.

    Subclasses declare ``name`` (the registry name), ``description`` (one line for
    ``embedforensics ls probes``), ``min_labels``, ``headline`` (its key metric) and
    ``_param_specs``: a mapping
    from every ``__init__`` parameter to a tuple ``(kind, low, high, options)`` with kind
    one of int, int_or_none, float, positive_float, positive_float_or_none, str, bool,
    checked by :meth:`_check_params`; and
    implement ``_fit(X, y, **context) -> ProbeResult``. ``__init__`` takes keyword-only
    arguments and stores them unchanged.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    min_labels: ClassVar[int] = 1
    headline: ClassVar[str | None] = None
    """The metric that sums the probe up (plotted against layer depth in layer sweeps)."""
    _param_specs: ClassVar[dict[str, tuple]] = {}
    streams: ClassVar[bool] = False
    """True when ``_fit`` reads a memory-mapped ``X`` only in row chunks (out of core, all
    rows); other probes get an in-memory copy, subsampled above ``probe_memory_bytes()``
    (see :meth:`fit`)."""

    # ---- validation ----------------------------------------------------------------
    def check_labels(self, labels: Any) -> None:
        """Check the parameters against the label names alone (recipe validation runs it
        before anything is embedded); raise ``ProbeParameterError``. Default: nothing."""

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
        out_of_core = is_memory_mapped(X)
        X = np.asarray(X)
        y = np.asarray(y)
        if X.ndim != 2:
            raise ProbeParameterError(f"{type(self).__name__} expects a 2-D array; got {X.ndim}-D.")
        bad = first_nonfinite_row(X)
        if bad is not None:
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
        self.out_of_core_ = out_of_core and self.streams
        in_memory: dict[str, Any] | None = None
        if out_of_core and not self.streams:
            X, y, context, in_memory = in_memory_rows(X, y, context,
                                                      seed=int(getattr(self, "seed", 0)))
        with _blas_threads(X.size):
            result = self._fit(X, y, **context)
        # every parameter the probe ran with, plus what the probe itself reports
        result.params = {**self.get_params(), **result.params}
        if self.out_of_core_:
            result.params["out_of_core"] = {
                "rows": int(len(y)), "how": "memory-mapped embeddings read in row chunks",
                **(result.params.get("out_of_core") or {})}
        elif in_memory is not None:
            result.params["out_of_core"] = in_memory
            if in_memory["subsampled"]:
                result.summary = (f"{result.summary} [On a seeded stratified subsample of "
                                  f"{in_memory['rows']:,} of {in_memory['rows_total']:,} "
                                  f"memory-mapped rows.]")
        self.result_ = result
        return self

    def _fit(self, X: np.ndarray, y: np.ndarray, **context: Any) -> ProbeResult:
        raise NotImplementedError  # abstractmethod: implemented by every probe


def check_recipe_probes(loaded: LoadedRecipe) -> list[UserError]:
    """The probes' part of recipe validation: registered names, parameters (validated by
    each probe class), run options beside them, and the labels each probe needs."""
    from embedforensics.probes.matching import RUN_OPTIONS
    from embedforensics.registry import PROBES

    problems: list[UserError] = []
    n_labels = len(loaded.recipe.labels)
    for index, spec in enumerate(loaded.recipe.probes):
        key = f"probes[{index}]"
        file = loaded.file_of(key)
        try:
            PROBES.check(spec.name, file=file, key=f"{key}.name")
            cls = PROBES.get(spec.name)
            allowed = [*cls._get_param_names(), *RUN_OPTIONS]
            for pname in spec.params:
                if pname not in allowed:
                    raise UserError(
                        f"unknown parameter '{pname}' for probe '{spec.name}'"
                        f"{did_you_mean(pname, allowed)}; parameters: {', '.join(allowed)}.",
                        file=file, key=f"{key}.{pname}")
            if not isinstance(spec.params.get("length_match", False), bool):
                raise UserError(f"length_match must be true or false; got "
                                f"{spec.params['length_match']!r}.", file=file,
                                key=f"{key}.length_match")
            probe = cls(**{k: v for k, v in spec.params.items() if k not in RUN_OPTIONS})
            try:
                probe._check_params()
            except ProbeParameterError as exc:
                bad = next((p for p in spec.params if f"'{p}'" in exc.message), None)
                where = f"{key}.{bad}" if bad else key
                raise UserError(exc.message, file=loaded.file_of(where), key=where) from None
            try:
                probe.check_labels(loaded.recipe.labels)
            except ProbeParameterError as exc:
                raise UserError(exc.message, file=file, key=key) from None
            if n_labels < cls.min_labels:
                raise UserError(
                    f"probe '{spec.name}' needs at least {cls.min_labels} labels but the "
                    f"sources have {n_labels} ({', '.join(loaded.recipe.labels)}); give "
                    "sources different labels.", file=file, key=key)
        except UserError as exc:
            problems.append(exc)
    return problems


SINGLE_THREAD_CELLS = 20_000_000
"""Probes on fewer embedding cells than this (52,000 rows × 384) run BLAS and OpenMP on
one thread.

Their matrix products are small, and multi-threaded BLAS waiting on busy cores cost far
more than it saved: the default study's probes (800 × 384, without baselines) took 8-11 s
wall with one BLAS thread and 64-95 s with two, same run on the shared 2-core machine
(benchmarks/README.md, probes section)."""


def _blas_threads(cells: int) -> Any:
    """One BLAS / OpenMP thread for a small probe input; no limit (a null context) above."""
    if cells >= SINGLE_THREAD_CELLS:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


PROBE_MEMORY_BYTES = 1 << 30
"""In-memory budget (float32 bytes) of a probe that does not stream, when the embeddings
are memory-mapped; the environment variable EMBEDFORENSICS_PROBE_MEMORY_BYTES overrides."""

CHECK_ROWS = 65_536
"""Rows per chunk of the finiteness check (bounds its temporary boolean array)."""


def probe_memory_bytes() -> int:
    """The in-memory budget of a non-streaming probe on memory-mapped embeddings."""
    return int(os.environ.get("EMBEDFORENSICS_PROBE_MEMORY_BYTES", PROBE_MEMORY_BYTES))


def is_memory_mapped(X: Any) -> bool:
    """Whether ``X`` is (a view of) a memory-mapped file: ``np.memmap``, ``np.load(...,
    mmap_mode=...)`` or the engine's assembled embeddings above EMBEDFORENSICS_MMAP_BYTES."""
    seen = 0
    while X is not None and seen < 32:
        if isinstance(X, np.memmap | mmap.mmap):
            return True
        X = getattr(X, "base", None)
        seen += 1
    return False


def first_nonfinite_row(X: np.ndarray, chunk_rows: int = CHECK_ROWS) -> int | None:
    """Index of the first row holding NaN or ±inf, else None; read in row chunks so a
    memory-mapped matrix is never held whole (nor its boolean mask), each chunk's pages
    of the map handed back once checked."""
    from embedforensics.probes.streaming import page_releaser

    release = page_releaser(X)
    for start in range(0, len(X), chunk_rows):
        finite = np.isfinite(X[start:start + chunk_rows])
        release(start, start + chunk_rows)
        if not finite.all():
            return start + int(np.flatnonzero(~finite.all(axis=1))[0])
    return None


def in_memory_rows(X: np.ndarray, y: np.ndarray, context: dict[str, Any], *, seed: int
                   ) -> tuple[np.ndarray, np.ndarray, dict[str, Any], dict[str, Any]]:
    """Memory-mapped embeddings in memory for a probe that does not stream: all rows when
    they fit :func:`probe_memory_bytes` as float32, else a seeded stratified subsample
    (labels keep their shares) of as many rows as fit. Returns ``(X, y, context, record)``
    with the per-row context (``ids``, ``texts``, ``meta`` columns) cut to the same rows
    and ``record`` saying what was used (``results.json``: ``params.out_of_core``)."""
    from embedforensics.probes.stats import stratified_subsample

    n, d = X.shape
    cap = max(1, probe_memory_bytes() // (4 * max(d, 1)))
    rows = stratified_subsample(y, cap, seed)
    out = np.empty((len(rows), d), dtype=np.float32)
    for start in range(0, len(rows), CHECK_ROWS):  # sorted rows: sequential reads
        part = rows[start:start + CHECK_ROWS]
        out[start:start + len(part)] = X[part]

    def cut(values: Any) -> Any:
        return None if values is None else [values[r] for r in rows]

    sub = dict(context)
    for key in ("ids", "texts"):
        if key in sub:
            sub[key] = cut(sub[key])
    if isinstance(sub.get("meta"), dict):
        sub["meta"] = {c: cut(v) for c, v in sub["meta"].items()}
    record = {"rows": int(len(rows)), "rows_total": int(n), "subsampled": len(rows) < n,
              "how": ("memory-mapped embeddings loaded into memory "
                      + (f"as a seeded stratified subsample (budget "
                         f"{probe_memory_bytes():,} bytes, EMBEDFORENSICS_PROBE_MEMORY_BYTES)"
                         if len(rows) < n else "whole (within the probe memory budget)"))}
    return out, y[rows], sub, record


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
        # NaN compares False with every bound, so finiteness is checked on its own
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            fail(f"a finite float in {interval()}")
        if (low is not None and value < low) or (high is not None and value > high):
            fail(f"a float in {interval()}")
    elif kind == "positive_float":
        if isinstance(value, bool) or not isinstance(value, Real) or \
                not math.isfinite(value):
            fail("a finite float in (0, inf)")
        if value <= 0:
            fail("a float in (0, inf)")
    elif kind == "positive_float_or_none":
        if value is None:
            return
        _check_param(owner, pname, value, "positive_float", low, high, options)
    elif kind == "str":
        if value not in options:
            fail("one of " + ", ".join(repr(o) for o in options))
    elif kind == "bool":
        if not isinstance(value, bool):
            fail("a bool")
    else:  # pragma: no cover - programming error in a probe declaration
        raise ValueError(f"unknown constraint kind {kind!r}")
