"""The versioned schema of ``results.json``.

``results.json`` is the machine-readable output of a run; the HTML and Markdown reports are
rendered from the same object. The schema is defined here with pydantic, written next to
every results file as ``results.schema.json`` (JSON Schema), and bumped on any
incompatible change: readers should check ``schema_version``.

Layout::

    schema, schema_version
    recipe:      name, description, confounds, resolved (the full resolved recipe), overrides
    data:        n, counts_by_label, sources[] (id, label, rows, stats, fingerprint,
                 origin, lengths in characters and tokens),
                 warnings (automatic surface-confound checks)
    probes[]:    one entry per recipe probe, in order: either a probe result
                 (probe, summary, params, metrics{name: {value, n, ci, ci_level, std,
                 method, description}}, tables, plots, layer, headline) or
                 {probe, error}; with several captured layers one entry per probe and
                 layer, then a ``layer_sweep`` entry (headline metric against depth)
    provenance:  model (id, location, revision, fingerprint, config hash, class, dtype,
                 device, pooling, max length, ...), embedding (dim, per-source cache status,
                 token and truncation counts), versions, git commit, seed, platform,
                 started/finished timestamps
    timings:     wall seconds per stage (sources, embed, probes, report)
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from embedforensics.results import AnalysisResult, Metric

SCHEMA_NAME = "embedforensics.results"
SCHEMA_VERSION = "1.0"


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


MetricOut = Metric
ProbeOut = AnalysisResult
"""An entry of ``probes``: the analysis result itself (:mod:`embedforensics.results`)."""


class SourceOut(_Open):
    id: str
    label: str
    rows: int
    fingerprint: str
    stats: dict[str, int]
    origin: dict[str, Any]
    lengths: dict[str, float]


class DataOut(BaseModel):
    n: int
    counts_by_label: dict[str, int]
    sources: list[SourceOut]
    warnings: list[str] = Field(default_factory=list)


class RecipeOut(BaseModel):
    name: str
    description: str = ""
    confounds: list[str] = Field(default_factory=list)
    resolved: dict[str, Any]
    overrides: list[str] = Field(default_factory=list)
    path: str | None = None

    @classmethod
    def from_loaded(cls, loaded: Any) -> RecipeOut:
        """The recipe part of results.json from a LoadedRecipe."""
        spec = loaded.recipe
        return cls(name=spec.name, description=spec.description, confounds=spec.confounds,
                   resolved=spec.model_dump(mode="json", by_alias=True, exclude_none=True),
                   overrides=loaded.overrides, path=str(loaded.path) if loaded.path else None)


class Results(BaseModel):
    """Top-level object of results.json."""

    schema_: str = Field(SCHEMA_NAME, alias="schema")
    schema_version: str = SCHEMA_VERSION
    recipe: RecipeOut
    data: DataOut
    probes: list[AnalysisResult]
    provenance: dict[str, Any]
    timings: dict[str, float]

    model_config = ConfigDict(populate_by_name=True)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2)


def json_schema() -> dict[str, Any]:
    return Results.model_json_schema(by_alias=True)
