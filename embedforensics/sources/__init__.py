"""Data sources: turn recipe entries into :class:`~embedforensics.sources.base.Records`."""

from __future__ import annotations

from pathlib import Path

from embedforensics.recipe.loader import LoadedRecipe
from embedforensics.sources.base import Records, SourceData


def load_sources(loaded: LoadedRecipe) -> Records:
    """Load every source of a recipe (seeded sampling), in recipe order."""
    from embedforensics.registry import SOURCES

    recipe = loaded.recipe
    out: list[SourceData] = []
    for i, spec in enumerate(recipe.sources):
        key = f"sources[{i}]"
        loader = SOURCES.get(str(spec.type))
        # each source gets its own stream of randomness derived from the recipe seed
        out.append(loader(spec, Path(loaded.base_dir), seed=recipe.seed + 1000 * i,
                          file=loaded.file_of(key), key=key))
    return Records(out)


__all__ = ["Records", "SourceData", "load_sources"]
