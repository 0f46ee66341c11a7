"""The model-family contract: one class per kind of model, registered in ``FAMILIES``.

A family owns everything that depends on what kind of model ``model.id`` names:

- **resolution** — :meth:`ModelFamily.claims` (cheap: is this id mine?) and
  :meth:`ModelFamily.resolve` (where the model is and what fingerprints its weights, into a
  :class:`ResolvedModel`, without loading it);
- **defaults** — the values that fill the recipe's "auto" ``pooling`` / ``normalize`` /
  ``prefix`` (:meth:`ModelFamily.effective`);
- **the embedding key** — what besides the shared settings changes its embeddings
  (:meth:`ModelFamily.settings`, merged into ``resolve.settings_key``);
- **validation** — the spec fields it refuses (:meth:`ModelFamily.check_spec`) and the
  sources it cannot embed (:meth:`ModelFamily.check_sources`);
- **the embedder** — :meth:`ModelFamily.make_embedder`, an object satisfying
  :class:`~embedforensics.models.protocol.Embedder`.

:mod:`embedforensics.models.resolve` asks the registered families in ``priority`` order
(lowest first: the most specific id schemes before the catch-all ``hf_text``) whether they
claim an id. A new family is one module with a subclass plus one line in
``embedforensics.registry.FAMILIES``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from embedforensics.errors import UserError
from embedforensics.models.protocol import IMAGE, TEXT, text_only_error

if TYPE_CHECKING:
    from embedforensics.models.protocol import Embedder
    from embedforensics.recipe.loader import LoadedRecipe
    from embedforensics.recipe.schema import ModelSpec

AUTO_FIELDS = ("pooling", "normalize", "prefix")
#: what "auto" settings become when a family has no rule of its own
GENERIC_DEFAULTS: dict[str, Any] = {"pooling": "mean", "normalize": True, "prefix": ""}
#: ModelSpec fields that only some families read, and what they are for (for the refusal)
FAMILY_ONLY_FIELDS: dict[str, str] = {
    "pretrained": "'open_clip:ARCH' ids (a pretrained tag or checkpoint file); use "
                  "model.revision to pick a hub revision",
}


@dataclass
class ResolvedModel:
    """Where a model lives and what identifies its exact weights."""

    spec_id: str
    location: str  # a local directory or a hub id for from_pretrained
    revision: str | None
    fingerprint: str
    source: str  # "bundled", "local", "hub" or "open_clip-{local,hub,file,tag}"
    config_hash: str | None = None
    commit: str | None = None
    family: str | None = None  # the defaults rule: encoder, e5, decoder, image-text, ...
    defaults: dict[str, Any] = field(default_factory=dict)  # the family's pooling etc.
    pretrained: str | None = None  # open_clip: the pretrained tag or checkpoint file
    kind: str | None = None  # the registered ModelFamily that resolved it (FAMILIES name)


def fill_auto(spec: ModelSpec, defaults: dict[str, Any]) -> tuple[ModelSpec, dict[str, Any]]:
    """(spec with its "auto" (None) fields taken from ``defaults``, {field: value} filled)."""
    filled = {k: defaults[k] for k in AUTO_FIELDS
              if getattr(spec, k, None) is None and k in defaults}
    return (spec.model_copy(update=filled) if filled else spec), filled


class ModelFamily(ABC):
    """One kind of model: how its ids resolve, its defaults, its cache key contribution,
    its checks and its embedder. Subclasses set ``name`` (the FAMILIES key) and
    ``priority``; instances hold no state."""

    name: ClassVar[str] = ""
    #: resolution asks families in ascending priority; the catch-all hf_text is 90
    priority: ClassVar[int] = 50
    #: what its embedders accept: {"text"} or {"text", "image"}
    modalities: ClassVar[frozenset[str]] = frozenset({TEXT})
    #: which of FAMILY_ONLY_FIELDS it reads (the others are refused when set)
    spec_fields: ClassVar[frozenset[str]] = frozenset()

    # ---------------------------------------------------------------- resolution
    @abstractmethod
    def claims(self, spec: ModelSpec, *, base_dir: Path) -> bool:
        """Is ``spec.id`` a model of this family? Cheap: no load, no hashing."""

    @abstractmethod
    def resolve(self, spec: ModelSpec, *, base_dir: Path, file: str | None, key: str,
                fingerprint: bool) -> ResolvedModel:
        """Locate the model and (when ``fingerprint``) identify its weights; raise a
        UserError naming ``file`` / ``key`` when it cannot be had."""

    def owns(self, resolved: ResolvedModel) -> bool:
        """Did this family resolve ``resolved``? (For ResolvedModels made without ``kind``;
        families override it to recognise their ``source``.)"""
        return resolved.kind == self.name

    # ---------------------------------------------------------------- settings
    def effective(self, spec: ModelSpec, resolved: ResolvedModel, *, file: str | None = None
                  ) -> tuple[ModelSpec, dict[str, Any]]:
        """``spec`` with "auto" fields filled by the family's defaults, and what was filled."""
        return fill_auto(spec, resolved.defaults or GENERIC_DEFAULTS)

    def settings(self, spec: ModelSpec, resolved: ResolvedModel) -> dict[str, Any]:
        """This family's part of the embedding cache key, beyond the shared settings
        (weights fingerprint, pooling, normalize, prefix, max_length, dtype, layers,
        compile). ``spec`` is already effective. Default: nothing more."""
        return {}

    # ---------------------------------------------------------------- validation
    def check_spec(self, spec: ModelSpec, *, file: str | None = None) -> None:
        """Refuse settings this family does not read (a family-only field it ignores)."""
        for name, purpose in FAMILY_ONLY_FIELDS.items():
            if getattr(spec, name, None) is not None and name not in self.spec_fields:
                raise UserError(f"'model.{name}' does not apply to '{spec.id}' (a "
                                f"{self.name} model); it is for {purpose}.", file=file,
                                key=f"model.{name}")

    def check_sources(self, loaded: LoadedRecipe, image_sources: list[int],
                      resolved: ResolvedModel) -> None:
        """Validation of the recipe's sources against this model (nothing is loaded):
        by default, images need a family whose embedders take images."""
        if image_sources and IMAGE not in self.modalities:
            i = image_sources[0]
            key = f"sources[{i}]"
            raise text_only_error(loaded.recipe.sources[i].id, loaded.recipe.model.id,
                                  file=loaded.file_of(key), key=key, source_key=key)

    # ---------------------------------------------------------------- the embedder
    @abstractmethod
    def make_embedder(self, spec: ModelSpec, resolved: ResolvedModel) -> Embedder:
        """The (not yet loaded) embedder for an effective spec."""
