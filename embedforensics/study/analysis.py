"""The analysis contract: probes, the layer sweep and checkpoint comparators plug in here.

An analysis has a registry ``name``, validated parameters (a pydantic ``Params`` model, or a
probe's scikit-learn-style ``_param_specs``), and a ``run(inputs)`` that returns an
:class:`Outcome`: a list of :class:`~embedforensics.results.AnalysisResult` — the same
objects ``results.json`` is made of — plus an optional provenance block. The pipeline
(:mod:`embedforensics.study.pipeline`) builds every analysis of a recipe, runs it and
assembles one ``results.json``; nothing else in the package assembles results.

Two kinds plug in through registries (:mod:`embedforensics.registry`):

- **probes** (``PROBES``): scikit-learn estimators over one embedding matrix
  (:class:`embedforensics.probes.base.Probe`); :class:`ProbeAnalysis` runs one over every
  captured layer, optionally on a length-matched subsample;
- **comparators** (``COMPARATORS``): :class:`Comparator` subclasses over a reference
  ensemble and candidate checkpoint groups (:class:`embedforensics.compare.checkpoints.
  CheckpointData`), e.g. α̂/churn/calibration and trNTK attributions.

A new probe or comparator is one file plus one registry line; its registry description is
read from the class (``description``, else the first line of its docstring).
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from embedforensics.engine.embed import EmbeddingSet
from embedforensics.errors import UserError, did_you_mean
from embedforensics.probes.matching import length_matched_rows
from embedforensics.recipe.loader import LoadedRecipe
from embedforensics.registry import COMPARATORS
from embedforensics.results import AnalysisResult

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What running one analysis produced: results (in report order), a provenance block
    merged into ``results.json``'s provenance, the failure messages of results that carry
    an ``error`` (the run ends with a non-zero exit after the reports are written), and
    warnings the report shows first (``data.warnings``)."""

    results: list[AnalysisResult] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class NoParams(BaseModel):
    """The parameters of an analysis that takes none."""

    model_config = ConfigDict(extra="forbid")


class Analysis(ABC):
    """Base of every pluggable analysis with pydantic-validated parameters.

    Subclasses set ``name`` and ``Params`` (a pydantic model with ``extra="forbid"``, so
    a misspelt parameter is an error) and implement :meth:`run`. ``__init__`` only stores
    the validated parameters.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = NoParams

    def __init__(self, params: BaseModel | None = None, **kwargs: Any):
        if params is not None and kwargs:
            raise TypeError("give validated params or keyword arguments, not both")
        self.params = params if params is not None else self.validate_params(kwargs)

    @classmethod
    def validate_params(cls, raw: dict[str, Any], *, file: str | None = None,
                        key: str | None = None) -> BaseModel:
        """``Params`` from a recipe mapping; a UserError naming the file and the key of the
        first bad parameter (``compare.comparators[0].level``) otherwise."""
        try:
            return cls.Params.model_validate(raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err.get("loc", ()))
            where = f"{key}.{loc}" if key and loc else (key or loc or None)
            if err.get("type") == "extra_forbidden":
                allowed = sorted(cls.Params.model_fields)
                message = (f"unknown parameter '{loc}' for {cls.name or cls.__name__}"
                           f"{did_you_mean(loc, allowed)}; parameters: "
                           f"{', '.join(allowed) or 'none'}.")
            else:
                message = f"{loc or 'parameters'}: {err.get('msg')} (got {err.get('input')!r})."
            raise UserError(message, file=file, key=where) from None

    @abstractmethod
    def run(self, inputs: Any) -> Outcome:
        """Analyse ``inputs`` (the stage's plain data object) and return the outcome."""


# --------------------------------------------------------------------------- probes


@dataclass
class EmbeddedData:
    """What probes consume: the embeddings (one matrix per captured layer), labels and the
    per-row context (ids, texts, metadata columns)."""

    embeddings: EmbeddingSet
    meta: dict[str, list[Any]] = field(default_factory=dict)

    def layers(self) -> list[tuple[str | None, np.ndarray]]:
        """(layer, X) pairs: every captured layer when there are several, else (None, X)."""
        per_layer = getattr(self.embeddings, "per_layer", None) or {}
        if len(per_layer) > 1:
            return [(str(k), v) for k, v in per_layer.items()]
        return [(None, self.embeddings.X)]


class ProbeAnalysis(Analysis):
    """A registered probe run over every captured layer (the adapter from the probe's
    scikit-learn contract to the analysis contract).

    ``length_match`` fits the probe on a length-matched subsample
    (:mod:`embedforensics.probes.matching`); ``seed`` defaults to the recipe's seed. A
    probe that fails on the data yields a result with ``error`` and a failure message,
    and the other probes still run.
    """

    def __init__(self, probe_cls: type, params: dict[str, Any], *, seed: int,
                 length_match: bool = False, where: str = ""):
        self.probe_cls = probe_cls
        self.name = probe_cls.name
        self.params = dict(params)
        if "seed" in probe_cls._get_param_names() and "seed" not in self.params:
            self.params["seed"] = seed
        self.length_match = length_match
        self.where = where  # "<file>: probes[i]" for error messages

    def run(self, inputs: EmbeddedData) -> Outcome:
        emb = inputs.embeddings
        texts = list(emb.texts) if emb.texts is not None else None
        labels = np.asarray(emb.labels)
        ids = list(emb.ids)
        out = Outcome()
        rows = np.arange(len(labels))
        matched: dict[str, Any] | None = None
        if self.length_match and texts is None:
            message = (f"{self.where}.length_match needs the texts behind the embeddings, "
                       "and this run has none.")
            out.failures.append(message)
            out.results.append(AnalysisResult(probe=self.name, error=message,
                                              params=self.params))
            return out
        if self.length_match:
            rows, matched = length_matched_rows([len(t) for t in texts], labels,
                                                seed=self.params.get("seed", 0))
        context = {"ids": [ids[r] for r in rows],
                   "texts": None if texts is None else [texts[r] for r in rows],
                   "meta": {c: [v[r] for r in rows] for c, v in inputs.meta.items()}}
        for layer, X in inputs.layers():
            t0 = time.perf_counter()
            extra: dict[str, Any] = {} if layer is None else {"layer": layer}
            if matched is not None:
                extra["length_match"] = matched
            try:
                # all rows: hand X over as it is, so memory-mapped embeddings stay on disk
                # (streaming probes read them in chunks; see Probe.fit)
                X_rows = X if len(rows) == len(X) else X[rows]
                probe = self.probe_cls(**self.params).fit(X_rows, labels[rows], **context)
            except Exception as exc:  # noqa: BLE001 - each probe fails alone (see below)
                # a UserError is the probe's own sentence; anything else (scikit-learn's
                # ValueError on degenerate data, LinAlgError, ...) is recorded with its type
                # and first line, the traceback logged at debug level, so a real bug stays
                # recognisable while every other probe still runs and reports
                if isinstance(exc, UserError):
                    error = exc.message
                else:
                    first = (str(exc).strip().splitlines() or [""])[0]
                    error = f"{type(exc).__name__}: {first}" if first \
                        else type(exc).__name__
                    log.debug("probe %s failed", self.name, exc_info=True)
                at = "" if layer is None else f" at layer {layer}"
                message = f"{self.where} ({self.name}){at}: {error}"
                log.error(message)
                out.failures.append(message)
                out.results.append(AnalysisResult(probe=self.name, error=error,
                                                  params={**self.params, **extra},
                                                  layer=layer))
                continue
            result = probe.result_
            result.params = {**result.params, **extra,
                             "seconds": round(time.perf_counter() - t0, 3)}
            result.layer = layer
            result.headline = getattr(self.probe_cls, "headline", None)
            out.results.append(result)
        return out


# --------------------------------------------------------------------------- comparators


class Comparator(Analysis):
    """Base of checkpoint comparators: is each candidate group farther from the reference
    ensemble than the ensemble's own seeds are from each other?

    ``run`` receives :class:`embedforensics.compare.checkpoints.CheckpointData` (the
    scored reference and candidate models, the test split, the recipe) and returns an
    :class:`Outcome` whose provenance block is merged into ``provenance.compare``.
    ``key`` (set by the pipeline) is the recipe key the comparator came from, for errors.
    """

    key: str = "compare"


def check_recipe_comparators(loaded: LoadedRecipe) -> list[UserError]:
    """The comparators' part of recipe validation: every ``compare.comparators`` entry is a
    registered comparator whose class accepts its parameters."""
    problems: list[UserError] = []
    cmp = loaded.recipe.compare
    for i, spec in enumerate(cmp.comparators if cmp is not None else []):
        key = f"compare.comparators[{i}]"
        try:
            COMPARATORS.check(spec.name, file=loaded.file_of(key), key=f"{key}.name")
            COMPARATORS.get(spec.name).validate_params(spec.params, file=loaded.file_of(key),
                                                       key=key)
        except UserError as exc:
            problems.append(exc)
    return problems
