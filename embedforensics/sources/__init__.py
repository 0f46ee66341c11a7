"""Data sources: turn recipe entries into :class:`~embedforensics.sources.base.Records`."""

from __future__ import annotations

from pathlib import Path

from embedforensics.recipe.loader import LoadedRecipe
from embedforensics.sources.base import Records, SourceData, cap_text_length, text_char_limit


def load_sources(loaded: LoadedRecipe, *, use_cache: bool | None = None) -> Records:
    """Load every source of a recipe (seeded sampling), in recipe order.

    A derived source (``from:``) starts from an earlier source's selected rows; sources
    with ``transform:`` steps run them through the transform cache (``use_cache`` overrides
    ``output.cache``, as ``--no-cache`` does). Texts far longer than the model can read
    are cut before anything tokenises them (:func:`~embedforensics.sources.base.cap_text_length`).
    """
    from embedforensics.registry import SOURCES
    from embedforensics.sources.derived import apply_transforms, load_derived_source

    recipe = loaded.recipe
    out: list[SourceData] = []
    by_id: dict[str, SourceData] = {}
    from embedforensics.engine.cache import recipe_cache_root

    cache_dir = recipe_cache_root(recipe.output, use_cache,
                                  file=loaded.file_of("output.cache_dir"))
    limit = text_char_limit(recipe.model.max_length if recipe.model is not None else None)
    for i, spec in enumerate(recipe.sources):
        key = f"sources[{i}]"
        file = loaded.file_of(key)
        # each source gets its own stream of randomness derived from the recipe seed
        seed = recipe.seed + 1000 * i
        if spec.type == "derived":
            data = load_derived_source(spec, by_id[str(spec.from_)], seed=seed, file=file,
                                       key=key)
        else:
            loader = SOURCES.get(str(spec.type))
            data = loader(spec, Path(loaded.base_dir), seed=seed, file=file, key=key)
        data = cap_text_length(data, limit, file=file, key=key)
        if spec.transform:
            data = apply_transforms(spec, data, base_dir=Path(loaded.base_dir),
                                    cache_dir=cache_dir, file=file, key=key)
            data = cap_text_length(data, limit, file=file, key=key)
        by_id[str(spec.id)] = data
        out.append(data)
    return Records(out)


__all__ = ["Records", "SourceData", "load_sources"]
