"""The sources' part of recipe validation (no model loaded, nothing large read).

Registered source types, transform parameters, local files and, where they can be read
cheaply, the columns a source uses. Reached through the ``CHECKS`` registry, so the recipe
layer never imports the sources.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from embedforensics.errors import UserError

if TYPE_CHECKING:
    from embedforensics.recipe.loader import LoadedRecipe


def check_source(loaded: LoadedRecipe, index: int) -> None:
    """Check ``sources[index]``; raise a UserError naming its file and key."""
    from embedforensics.registry import SOURCES
    from embedforensics.sources.hf import check_columns, peek_columns, resolve_files
    from embedforensics.transforms import build_transform

    spec = loaded.recipe.sources[index]
    key = f"sources[{index}]"
    file = loaded.file_of(key)
    SOURCES.check(str(spec.type), file=file, key=f"{key}.type")
    for j, tspec in enumerate(spec.transform):
        build_transform(tspec.name, tspec.params, base_dir=Path(loaded.base_dir),
                        file=file, key=f"{key}.transform[{j}]").check()
    if spec.type in ("inline", "derived"):
        return
    if spec.type in ("records", "html"):
        from embedforensics.sources.textfiles import check_text_source

        check_text_source(spec, Path(loaded.base_dir), file=file, key=key)
        return
    resolved = resolve_files(spec, Path(loaded.base_dir), file=file, key=key)
    for path in resolved.local_files[:5]:
        columns = peek_columns(path, resolved.builder, resolved.kwargs)
        if columns is not None:
            check_columns(columns, spec, file=file, key=key, where_from=f"'{path}'")


def check_recipe_sources(loaded: LoadedRecipe) -> list[UserError]:
    """Every source's problems (one per source at most)."""
    problems: list[UserError] = []
    for i in range(len(loaded.recipe.sources)):
        try:
            check_source(loaded, i)
        except UserError as exc:
            problems.append(exc)
    return problems
