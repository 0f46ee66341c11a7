"""Turn ``model.id`` into a loadable location and a content fingerprint, without loading.

A thin dispatcher over the registered model families (``embedforensics.registry.FAMILIES``,
the contract in :mod:`embedforensics.models.family`): the families are asked in priority
order whether they claim the id (``bundled:NAME``, the open_clip schemes, a transformers
CLIP/SigLIP, then any ``from_pretrained`` folder or hub id), and the one that does
resolves it. The fingerprint (config hash + weights hash, or the hub commit) keys the
embedding cache, so a warm cache never needs the model loaded. Everything that changes an
embedding is assembled in one place, :func:`settings_key`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedforensics.errors import UserError
from embedforensics.models.family import ModelFamily, ResolvedModel
from embedforensics.models.hub import directory_fingerprint

if TYPE_CHECKING:
    from embedforensics.models.protocol import Embedder
    from embedforensics.recipe.loader import LoadedRecipe
    from embedforensics.recipe.schema import ModelSpec

__all__ = ["ResolvedModel", "check_model_available", "check_model_sources",
           "check_recipe_model",
           "directory_fingerprint", "effective_spec", "families", "family_of",
           "make_embedder", "resolve_model", "settings_key"]


def families() -> list[ModelFamily]:
    """The registered model families, in the order resolution asks them."""
    from embedforensics.registry import FAMILIES

    found = [FAMILIES.get(name)() for name in FAMILIES.names()]
    return sorted(found, key=lambda f: (f.priority, f.name))


def family_of(resolved: ResolvedModel) -> ModelFamily:
    """The family that resolved ``resolved`` (by its ``kind``, else the first that owns it)."""
    from embedforensics.registry import FAMILIES

    if resolved.kind is not None:
        FAMILIES.check(resolved.kind, key="model.id")
        return FAMILIES.get(resolved.kind)()
    for family in families():
        if family.owns(resolved):
            return family
    raise UserError(f"no registered model family handles '{resolved.spec_id}' "
                    f"(source '{resolved.source}').", key="model.id")


def resolve_model(spec: ModelSpec, *, base_dir: Path, file: str | None = None,
                  key: str = "model.id", fingerprint: bool = True) -> ResolvedModel:
    """Locate the model named by ``spec.id``; raise a UserError if it cannot be had.

    The first family (in priority order) that claims the id checks the spec's settings and
    resolves it; ``fingerprint=False`` (validation) locates without hashing or converting.
    """
    for family in families():
        if family.claims(spec, base_dir=base_dir):
            family.check_spec(spec, file=file)
            resolved = family.resolve(spec, base_dir=base_dir, file=file, key=key,
                                      fingerprint=fingerprint)
            resolved.kind = family.name
            return resolved
    raise UserError(f"no registered model family recognises '{spec.id}'.", file=file, key=key)


def effective_spec(spec: ModelSpec, resolved: ResolvedModel, *, file: str | None = None
                   ) -> tuple[ModelSpec, dict[str, Any]]:
    """``spec`` with its "auto" (None) fields filled by the family's defaults.

    Returns the filled spec and the {field: value} that came from the family rule.
    """
    return family_of(resolved).effective(spec, resolved, file=file)


def check_model_available(spec: ModelSpec, *, base_dir: Path, file: str | None, key: str
                          ) -> None:
    """Validation-time check: the model can be located (nothing is loaded or hashed)."""
    resolve_model(spec, base_dir=base_dir, file=file, key=key, fingerprint=False)


def settings_key(spec: ModelSpec, resolved: ResolvedModel) -> str:
    """Everything that changes an embedding, as a stable JSON string for cache keys.

    The one place it is computed: the weights, the effective settings ("auto" ones keyed by
    their family-filled values), the hidden layers, compile, and the family's own part
    (:meth:`~embedforensics.models.family.ModelFamily.settings`).
    """
    family = family_of(resolved)
    spec, _ = family.effective(spec, resolved)
    return json.dumps({
        **family.settings(spec, resolved),
        "model": resolved.fingerprint or resolved.location,
        "revision": resolved.revision,
        "pooling": spec.pooling, "normalize": spec.normalize, "prefix": spec.prefix,
        "max_length": spec.max_length, "dtype": spec.dtype,
        **({"layers": spec.layers} if spec.layers else {}),
        **({"compile": True} if spec.compile else {}),
    }, sort_keys=True)


def make_embedder(spec: ModelSpec, resolved: ResolvedModel) -> Embedder:
    """The (not yet loaded) embedder of ``resolved``'s family for an effective spec."""
    family = family_of(resolved)
    family.check_spec(spec)
    return family.make_embedder(spec, resolved)


def check_recipe_model(loaded: LoadedRecipe) -> None:
    """Validation of a recipe's model: its family locates it and checks its settings
    (nothing is loaded, hashed or converted). A recipe without a model has nothing here."""
    if loaded.recipe.model is None:
        return
    check_model_available(loaded.recipe.model, base_dir=Path(loaded.base_dir),
                          file=loaded.file_of("model.id"), key="model.id")


def check_model_sources(loaded: LoadedRecipe) -> None:
    """Validation: the model's family accepts the recipe's sources (images need an
    image-text model). Nothing is loaded; a model that cannot be located is left to
    :func:`check_model_available`."""
    image_sources = _image_sources(loaded)
    if not image_sources or loaded.recipe.model is None:
        return
    recipe = loaded.recipe
    try:
        resolved = resolve_model(recipe.model, base_dir=Path(loaded.base_dir),
                                 file=loaded.file_of("model.id"), fingerprint=False)
    except UserError:
        return  # reported by the model check
    family_of(resolved).check_sources(loaded, image_sources, resolved)


def _image_sources(loaded: LoadedRecipe) -> list[int]:
    """Indices of the sources that hold images: ``modality: image``, image lists, image
    folders, or data files with an image column and no text column (peeked, not loaded)."""
    from embedforensics.sources.hf import peek_columns, resolve_files

    out = []
    for i, src in enumerate(loaded.recipe.sources):
        if src.modality == "text":
            continue
        is_image = src.modality == "image"
        if not is_image and src.type != "inline" and src.path != "imagefolder":
            try:
                key = f"sources[{i}]"
                found = resolve_files(src, Path(loaded.base_dir), file=loaded.file_of(key),
                                      key=key)
                is_image = found.builder == "imagefolder"
                for path in found.local_files[:1]:  # an Image column and no text column
                    columns = peek_columns(path, found.builder, found.kwargs) or []
                    is_image = is_image or (src.text_column not in columns
                                            and src.image_column in columns)
            except UserError:
                continue  # reported by the source check
        if is_image or src.path == "imagefolder":
            out.append(i)
    return out
