"""The Python API of the commands: ``run``, ``embed``, ``train_heads``, ``finetune`` and
``compare``.

Each is a thin entry into the one study pipeline (:mod:`embedforensics.study.pipeline`):
it opens a :class:`~embedforensics.study.context.StudyContext` for the recipe and runs the
stages the command needs. See ``ARCHITECTURE.md`` for the data flow.

Every entry takes the recipe as a YAML path, a dict (the same keys as the YAML; relative
paths in it resolve against the working directory) or the result of ``load_recipe``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedforensics.recipe.loader import LoadedRecipe, load_recipe
from embedforensics.study.context import StudyContext
from embedforensics.study.layer_sweep import layer_order
from embedforensics.study.pipeline import (
    AnalysisFailures,
    RunResults,
    git_commit,
    load_data,
    package_versions,
    records_meta,
    run_probes,
    run_study,
)

if TYPE_CHECKING:
    from embedforensics.engine.embed import EmbeddingSet

ProbeFailures = AnalysisFailures  # the name earlier releases raised

RecipeLike = LoadedRecipe | str | Path | Mapping[str, Any]
"""A recipe as the API takes it: a YAML path, a dict, or ``load_recipe``'s result."""


def as_recipe(recipe: RecipeLike, overrides: list[str] | None = None) -> LoadedRecipe:
    """``recipe`` loaded and checked, with ``overrides`` (``key.path=value``) applied.

    A loaded recipe given with overrides is read again from its file (or its data) with
    them, so they are never silently dropped."""
    if isinstance(recipe, LoadedRecipe):
        if not overrides:
            return recipe
        if recipe.path is not None:
            return load_recipe(recipe.path, overrides)
        return load_recipe(data=recipe.raw, overrides=overrides)
    if isinstance(recipe, (str, Path)):
        return load_recipe(recipe, overrides)
    if isinstance(recipe, Mapping):
        return load_recipe(data=dict(recipe), overrides=overrides)
    raise TypeError(f"a recipe is a YAML path, a dict or the result of load_recipe; got "
                    f"{type(recipe).__name__}")

__all__ = ["AnalysisFailures", "ProbeFailures", "RecipeLike", "RunResults", "as_recipe",
           "compare", "embed",
           "finetune", "git_commit", "layer_order", "package_versions", "records_meta", "run",
           "train_heads"]


def embed(recipe: RecipeLike, *, overrides: list[str] | None = None,
          use_cache: bool | None = None, progress: bool = True,
          mmap_bytes: int | None = None, assemble: bool = True) -> EmbeddingSet:
    """Load a recipe's sources and embed them (through the cache); no probes, no reports.

    Returns an :class:`~embedforensics.engine.embed.EmbeddingSet`. Results larger than
    ``mmap_bytes`` (default 4 GiB) are assembled in memory-mapped files, not in RAM.
    ``assemble=False`` only fills the cache (an accelerate worker that is not the main
    process does this); the returned set then has no rows in ``X``.
    """
    ctx = StudyContext.open(as_recipe(recipe, overrides), use_cache=use_cache,
                            progress=progress)
    return load_data(ctx, mmap_bytes=mmap_bytes, assemble=assemble).embeddings


def run(recipe: RecipeLike, *, output: str | Path | None = None,
        overrides: list[str] | None = None, use_cache: bool | None = None,
        progress: bool = True, write_reports: bool = True) -> RunResults:
    """Run a recipe (a YAML path, a dict or the result of ``load_recipe``) and write its
    reports (to ``output``, else ``output.dir``, else ``runs/<name>`` next to the recipe).

    Returns a :class:`RunResults`: in a notebook it shows the verdict and the summary
    table; ``.metric(probe, name)`` is a float carrying ``.ci``, ``.n`` and ``.method``;
    ``.to_frame()`` a pandas DataFrame; ``.figures()`` the plots as matplotlib figures.
    Raises :class:`~embedforensics.errors.UserError` for
    problems with the recipe or the data; any probe errors are raised after the reports
    are written (:class:`AnalysisFailures`, which carries the other results).
    """
    ctx = StudyContext.open(as_recipe(recipe, overrides), use_cache=use_cache,
                            progress=progress)
    return run_study(ctx, output=output, write_reports=write_reports)


def train_heads(recipe: RecipeLike, *, overrides: list[str] | None = None,
                use_cache: bool | None = None, progress: bool = True) -> list[Path]:
    """Train every ``heads:`` group over its seeds; returns the saved head folders."""
    from embedforensics.compare.checkpoints import train_heads as _train

    ctx = StudyContext.open(as_recipe(recipe, overrides), use_cache=use_cache,
                            progress=progress)
    return _train(ctx)


def finetune(recipe: RecipeLike, *, overrides: list[str] | None = None,
             use_cache: bool | None = None, progress: bool = True) -> list[Path]:
    """Fine-tune every ``finetune:`` group over its seeds; returns the checkpoint folders
    (``<dir>/<group>/seed-NNNN``). Under ``accelerate launch`` every process calls this and
    the main one writes."""
    from embedforensics.compare.finetune import train_finetunes

    ctx = StudyContext.open(as_recipe(recipe, overrides), use_cache=use_cache,
                            progress=progress)
    return train_finetunes(ctx)


def compare(recipe: RecipeLike, *, output: str | Path | None = None,
            overrides: list[str] | None = None, use_cache: bool | None = None,
            progress: bool = True, write_reports: bool = True) -> RunResults:
    """Compare every candidate group with the reference ensemble (every comparator of the
    recipe) and write the reports."""
    from embedforensics.compare.checkpoints import run_comparison

    ctx = StudyContext.open(as_recipe(recipe, overrides), use_cache=use_cache,
                            progress=progress)
    return run_comparison(ctx, output=output, write_reports=write_reports)


def _run_probes(loaded: LoadedRecipe, embeddings: Any,
                meta: dict[str, list[Any]] | None = None
                ) -> tuple[list[dict[str, Any]], list[str]]:
    """Every recipe probe over ``embeddings`` as JSON-ready dicts, and the failures."""
    outcome = run_probes(StudyContext(loaded), embeddings, meta)
    return [r.to_dict() for r in outcome.results], outcome.failures
