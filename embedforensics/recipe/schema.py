"""The recipe schema: what a YAML recipe may contain, validated with pydantic.

Every model forbids unknown keys, so a typo is an error (with a did-you-mean produced by
:mod:`embedforensics.recipe.loader`), never silently ignored. Component names (models,
source types, probes) are checked against :mod:`embedforensics.registry`; probe parameters
are checked by the probe classes themselves, so the recipe and the Python API share one
set of rules.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from embedforensics.errors import did_you_mean
from embedforensics.recipe.compare_spec import (
    CompareSpec,
    ComponentSpec,
    FinetuneSpec,
    HeadsSpec,
    component_shorthand,
)

RECIPE_VERSION = 1

Scalar = str | int | float | bool | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSpec(_Strict):
    """The embedding model and how its outputs become one vector per record."""

    id: str = Field(
        description="'bundled:NAME', a Hugging Face model id, or a local directory "
        "(as in from_pretrained)."
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    pretrained: str | None = Field(
        None, description="open_clip only: the pretrained tag (e.g. 'laion2b_s34b_b79k') or a "
        "checkpoint file for an 'open_clip:ARCH' model id, as in "
        "open_clip.create_model_and_transforms(ARCH, pretrained=...).")
    # None = "auto": filled per model family at resolve time (embedforensics.models.defaults)
    pooling: Literal["mean", "cls", "pooler", "last_token"] | None = Field(
        None, description="Default: the model family's rule (mean; last_token for decoders).")
    normalize: bool | None = Field(
        None, description="L2-normalise each embedding. Default: the family's rule (true).")
    prefix: str | None = Field(
        None, description="Text prepended to every input. Default: the family's rule "
        "('query: ' for e5 models, else '').")
    max_length: int | None = Field(
        None, ge=1, description="Truncate inputs to this many tokens (default: model limit)."
    )
    batch_size: int = Field(32, ge=1)
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    device: str = Field("auto", description="'auto', 'cpu', 'cuda', 'cuda:1', 'mps'.")
    trust_remote_code: bool = False
    layers: list[int] | None = Field(
        None, min_length=1, description="Hidden layers to pool, from one forward pass: "
        "0 = embedding output, -1 = last layer (e.g. [-1, -4, 6]); one embedding set each.")
    max_tokens_per_batch: int | None = Field(
        None, ge=1, description="Also bound each batch's padded tokens (rows x longest "
        "row); default: only batch_size bounds it.")
    batch_overhead_tokens: float | None = Field(
        64, ge=0, description="The fixed cost of one forward pass, in tokens: batches are "
        "cut to minimise padded tokens + this x batches (null: full-size batches).")
    device_map: str | None = Field(
        None, description="'auto' (or 'balanced', 'sequential'): spread a model too big "
        "for one device with accelerate's big-model inference; overrides 'device'.")
    compile: bool = Field(
        False, description="Run text models through torch.compile (dynamic shapes; on "
        "the CPU with inductor freezing, weights folded as constants): a one-off "
        "compilation of tens of seconds, then faster forward passes; worth it on long "
        "runs. Values differ from eager ones at float-rounding level, so it is part of "
        "the cache key. Falls back to eager (with a warning) if compilation fails.")
    onednn_linear: bool = Field(
        True, description="float32 on the CPU: run linear layers through oneDNN on weights "
        "pre-packed once (checked against PyTorch's result at load; about 1.1x faster "
        "encodes on the machine measured). Values differ at float-rounding level only, "
        "like batch_size, so it is not part of the cache key. false: PyTorch's default.")
    shard_rows: int = Field(
        10_000, ge=1, description="Rows per cache shard: a killed run resumes at the "
        "first missing shard; tokens are held for one shard at a time.")


class WhereClause(_Strict):
    """A condition on one column: equality or one comparison operator per key."""

    eq: Scalar = None
    ne: Scalar = None
    in_: list[Scalar] | None = Field(None, alias="in")
    not_in: list[Scalar] | None = None
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    contains: str | None = None
    min_length: int | None = Field(None, ge=0, description="Minimum string length (chars).")
    max_length: int | None = Field(None, ge=0, description="Maximum string length (chars).")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


SourceType = Literal["datasets", "files", "package", "inline", "records", "html", "derived"]


class TransformSpec(BaseModel):
    """A transform by registered name (``translate``, ``generate``, ``words``), with its
    parameters beside the name; the transform's own parameter model checks them."""

    model_config = ConfigDict(extra="allow")
    name: str

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class SourceSpec(_Strict):
    """One data source. Several sources may share a label.

    The type is inferred when omitted: ``texts`` → inline, ``package`` → package, a ``path``
    that names a local file or folder → files, anything else → datasets (a hub id or a
    builder name such as ``csv`` with ``data_files``); ``from`` → derived (the rows an
    earlier source selected). ``records`` (text files split on a separator line) and
    ``html`` (the paragraphs of HTML files) are given explicitly with ``type:``.
    """

    id: str | None = Field(None, description="Name of this source in reports and record ids.")
    label: str
    type: SourceType | None = None
    # datasets.load_dataset arguments
    path: str | None = None
    name: str | None = None
    split: str = "train"
    revision: str | None = None
    data_files: str | list[str] | dict[str, str | list[str]] | None = None
    options: dict[str, Any] = Field(
        default_factory=dict, description="Extra keyword arguments for load_dataset."
    )
    # files inside an installed Python package
    package: str | None = None
    # inline
    texts: list[str] | None = None
    images: list[str] | None = Field(
        None, description="Image file paths (relative to the recipe), embedded with the "
        "image tower of an image-text model.")
    # derived: the selected rows of an earlier source (its ``text`` or another column)
    from_: str | None = Field(
        None, alias="from", description="Id of an earlier source whose selected rows this "
        "source transforms; 'text_column' picks its text or one of its metadata columns.")
    transform: list[TransformSpec] = Field(
        default_factory=list, description="Transforms applied in order to the selected "
        "texts (after where/limit/sample), e.g. {name: translate, engine: apertium, "
        "pair: eng-spa}.")
    # columns and selection
    text_column: str = "text"
    image_column: str = Field(
        "image", description="Column holding images (an HF Image feature, or file paths).")
    modality: Literal["text", "image"] | None = Field(
        None, description="Embed this source's texts (text tower) or images (image tower). "
        "Default: image for image folders, image files and 'images:', else text.")
    id_column: str | None = None
    where: dict[str, WhereClause] = Field(
        default_factory=dict, description="column: value (equality) or column: {op: value}")
    drop_empty: bool = Field(True, description="Drop empty/whitespace-only texts (counted).")
    limit: int | None = Field(None, ge=1, description="Keep the first N rows.")
    sample: int | None = Field(None, ge=1, description="Keep a seeded random sample of N rows.")

    @field_validator("where", mode="before")
    @classmethod
    def _where_shorthand(cls, value: Any) -> Any:
        """``column: value`` means ``column: {eq: value}``."""
        if isinstance(value, dict):
            return {k: v if isinstance(v, dict) else {"eq": v} for k, v in value.items()}
        return value

    @field_validator("transform", mode="before")
    @classmethod
    def _transform_shorthand(cls, value: Any) -> Any:
        """One transform may be written without a list; ``- words`` means ``name: words``."""
        if value is None:
            return []
        if isinstance(value, (str, dict)):
            value = [value]
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _infer_type(self) -> SourceSpec:
        given = [k for k in ("texts", "images", "package", "path", "from_")
                 if getattr(self, k) is not None]
        if self.images is not None:
            if self.modality == "text":
                raise ValueError("'images:' holds images; it cannot have modality 'text'")
            object.__setattr__(self, "modality", "image")
        if self.texts is not None and self.modality == "image":
            raise ValueError("'texts:' holds texts; list image files under 'images:' instead")
        if self.from_ is not None:
            if len(given) > 1 or (self.type not in (None, "derived")):
                raise ValueError("a source with 'from' takes its rows from that source; give "
                                 "no 'path', 'package', 'texts', 'images' or other 'type'")
            object.__setattr__(self, "type", "derived")
        if self.type == "derived" and self.from_ is None:
            raise ValueError("a derived source needs 'from: <id of an earlier source>'")
        if self.type is None:
            if self.texts is not None or self.images is not None:
                inferred = "inline"
            elif self.package is not None:
                inferred = "package"
            elif self.path is not None:
                inferred = "datasets"  # refined to 'files' by the loader once paths resolve
            else:
                raise ValueError("a source needs one of 'path', 'package' or 'texts'")
            object.__setattr__(self, "type", inferred)
        if self.type == "inline" and self.texts is None and self.images is None:
            raise ValueError("an inline source needs 'texts' or 'images'")
        if self.type == "package" and (self.package is None or self.data_files is None):
            raise ValueError("a package source needs 'package' and 'data_files'")
        if self.type in ("records", "html") and self.path is None and self.data_files is None:
            raise ValueError(f"a {self.type} source needs 'data_files' (with 'package') or "
                             "'path'")
        if self.type in ("datasets", "files") and self.path is None and self.data_files is None:
            raise ValueError(f"a {self.type} source needs 'path' or 'data_files'")
        if (self.texts is not None or self.images is not None) and len(given) > 1:
            raise ValueError("give one of 'texts', 'images' or a dataset ('path'/'package')")
        return self


class ProbeSpec(ComponentSpec):
    """A probe by registered name, with its keyword parameters beside the name."""


class OutputSpec(_Strict):
    dir: str | None = Field(None, description="Where reports go (default runs/<name>).")
    cache_dir: str | None = Field(
        None, description="Embedding cache (default $EMBEDFORENSICS_CACHE or "
        "~/.cache/embedforensics)."
    )
    cache: bool = True


class Recipe(_Strict):
    """A whole study: one model, labelled sources, the probes to run, where output goes."""

    version: Literal[1] = RECIPE_VERSION
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = ""
    confounds: list[str] = Field(
        default_factory=list,
        description="Known differences between sources besides the one under study; "
        "shown in the report next to the results.",
    )
    seed: int = 0
    model: ModelSpec | None = Field(
        None, description="The embedding model; required unless the recipe only compares "
        "checkpoints that read the texts themselves (no probes, no heads).")
    sources: list[SourceSpec] = Field(min_length=1)
    probes: list[ProbeSpec] = Field(default_factory=list)
    output: OutputSpec = Field(default_factory=OutputSpec)
    heads: HeadsSpec | None = None
    finetune: FinetuneSpec | None = Field(
        None, description="Fine-tune Hugging Face models over seeds ('embedforensics "
        "finetune train'); the groups are model references for compare:.")
    compare: CompareSpec | None = None

    @field_validator("probes", mode="before")
    @classmethod
    def _probe_shorthand(cls, value: Any) -> Any:
        """Allow ``- pca`` as shorthand for ``- name: pca``."""
        return component_shorthand(value)

    @field_validator("model", mode="before")
    @classmethod
    def _model_shorthand(cls, value: Any) -> Any:
        """Allow ``model: bundled:all-MiniLM-L6-v2`` as shorthand for ``model: {id: ...}``."""
        return {"id": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _model_when_embedding(self) -> Recipe:
        if self.model is None and (self.probes or self.heads is not None
                                   or (self.compare is None and self.finetune is None)):
            why = ("probes work on embeddings" if self.probes else "heads work on embeddings"
                   if self.heads is not None else "the recipe compares no checkpoints")
            raise ValueError(f"model: is required but missing ({why}; only a recipe that "
                             "compares checkpoints reading the texts themselves may leave "
                             "it out)")
        return self

    @model_validator(mode="after")
    def _group_names_distinct(self) -> Recipe:
        if self.heads is not None and self.finetune is not None:
            heads = {g.name for g in self.heads.groups}
            for i, group in enumerate(self.finetune.groups):
                if group.name in heads:
                    raise ValueError(f"finetune.groups[{i}].name: '{group.name}' is also a "
                                     "heads group; compare: names a group by its name, so "
                                     "heads and finetune groups need different names")
        return self

    @model_validator(mode="after")
    def _source_ids(self) -> Recipe:
        seen: dict[str, int] = {}
        for i, source in enumerate(self.sources):
            if source.id is None:
                base = source.label
                count = sum(1 for s in self.sources if s.label == base)
                object.__setattr__(source, "id", base if count == 1 else f"{base}-{i}")
            if source.id in seen:
                raise ValueError(
                    f"sources[{i}].id '{source.id}' repeats sources[{seen[source.id]}].id; "
                    "source ids must be unique"
                )
            seen[source.id] = i
        for i, source in enumerate(self.sources):
            if source.from_ is not None and seen.get(source.from_, i) >= i:
                earlier = [s.id for s in self.sources[:i]]
                raise ValueError(
                    f"sources[{i}].from '{source.from_}' is not the id of an earlier source"
                    f"{did_you_mean(source.from_, [str(e) for e in earlier])}; earlier "
                    f"sources: {', '.join(str(e) for e in earlier) or 'none'}")
        return self

    @property
    def labels(self) -> list[str]:
        return sorted({s.label for s in self.sources})
