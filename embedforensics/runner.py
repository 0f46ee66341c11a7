"""The Python API of the commands: ``run``, ``embed``, ``train_heads``, ``finetune`` and
``compare``.

Each is a thin entry into the one study pipeline (:mod:`embedforensics.study.pipeline`):
it opens a :class:`~embedforensics.study.context.StudyContext` for the recipe and runs the
stages the command needs. See ``ARCHITECTURE.md`` for the data flow.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedforensics.recipe.loader import LoadedRecipe
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

__all__ = ["AnalysisFailures", "ProbeFailures", "RunResults", "compare", "embed",
           "finetune", "git_commit", "layer_order", "package_versions", "records_meta", "run",
           "train_heads"]


def embed(recipe: LoadedRecipe | str | Path, *, overrides: list[str] | None = None,
          use_cache: bool | None = None, progress: bool = True,
          mmap_bytes: int | None = None, assemble: bool = True) -> EmbeddingSet:
    """Load a recipe's sources and embed them (through the cache); no probes, no reports.

    Returns an :class:`~embedforensics.engine.embed.EmbeddingSet`. Results larger than
    ``mmap_bytes`` (default 4 GiB) are assembled in memory-mapped files, not in RAM.
    ``assemble=False`` only fills the cache (an accelerate worker that is not the main
    process does this); the returned set then has no rows in ``X``.
    """
    ctx = StudyContext.open(recipe, overrides=overrides, use_cache=use_cache,
                            progress=progress)
    return load_data(ctx, mmap_bytes=mmap_bytes, assemble=assemble).embeddings


def run(recipe: LoadedRecipe | str | Path, *, output: str | Path | None = None,
        overrides: list[str] | None = None, use_cache: bool | None = None,
        progress: bool = True, write_reports: bool = True) -> RunResults:
    """Run a recipe (a path or the result of ``load_recipe``) and write its reports.

    Returns a :class:`RunResults`. Raises :class:`~embedforensics.errors.UserError` for
    problems with the recipe or the data; any probe errors are raised after the reports
    are written (:class:`AnalysisFailures`, which carries the other results).
    """
    ctx = StudyContext.open(recipe, overrides=overrides, use_cache=use_cache,
                            progress=progress)
    return run_study(ctx, output=output, write_reports=write_reports)


def train_heads(recipe: LoadedRecipe | str | Path, *, overrides: list[str] | None = None,
                use_cache: bool | None = None, progress: bool = True) -> list[Path]:
    """Train every ``heads:`` group over its seeds; returns the saved head folders."""
    from embedforensics.compare.checkpoints import train_heads as _train

    ctx = StudyContext.open(recipe, overrides=overrides, use_cache=use_cache,
                            progress=progress)
    return _train(ctx)


def finetune(recipe: LoadedRecipe | str | Path, *, overrides: list[str] | None = None,
             use_cache: bool | None = None, progress: bool = True) -> list[Path]:
    """Fine-tune every ``finetune:`` group over its seeds; returns the checkpoint folders
    (``<dir>/<group>/seed-NNNN``). Under ``accelerate launch`` every process calls this and
    the main one writes."""
    from embedforensics.compare.finetune import train_finetunes

    ctx = StudyContext.open(recipe, overrides=overrides, use_cache=use_cache,
                            progress=progress)
    return train_finetunes(ctx)


def compare(recipe: LoadedRecipe | str | Path, *, output: str | Path | None = None,
            overrides: list[str] | None = None, use_cache: bool | None = None,
            progress: bool = True, write_reports: bool = True) -> RunResults:
    """Compare every candidate group with the reference ensemble (every comparator of the
    recipe) and write the reports."""
    from embedforensics.compare.checkpoints import run_comparison

    ctx = StudyContext.open(recipe, overrides=overrides, use_cache=use_cache,
                            progress=progress)
    return run_comparison(ctx, output=output, write_reports=write_reports)


def _run_probes(loaded: LoadedRecipe, embeddings: Any,
                meta: dict[str, list[Any]] | None = None
                ) -> tuple[list[dict[str, Any]], list[str]]:
    """Every recipe probe over ``embeddings`` as JSON-ready dicts, and the failures."""
    outcome = run_probes(StudyContext(loaded), embeddings, meta)
    return [r.to_dict() for r in outcome.results], outcome.failures
