"""The resolved run context: every fact the stages of a study share, computed once.

A :class:`StudyContext` is made from a loaded recipe at the start of ``run``, ``embed``,
``heads train`` and ``compare``. It owns the cache folder, the resolved model (location and
fingerprint), the effective model settings (the family's defaults filled in) and the one
embedding fingerprint — the hash of everything that changes an embedding
(:func:`embedforensics.models.resolve.settings_key`). Stages read these from the context
instead of recomputing them, so two stages can never disagree about them.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from embedforensics.engine.cache import recipe_cache_root
from embedforensics.models.resolve import (
    ResolvedModel,
    effective_spec,
    resolve_model,
    settings_key,
)
from embedforensics.recipe.loader import LoadedRecipe, load_recipe
from embedforensics.recipe.schema import ModelSpec, Recipe


@dataclass
class StudyContext:
    """A loaded recipe plus the run-wide facts derived from it (see the module docstring).

    ``use_cache`` overrides ``output.cache`` (``--no-cache``); ``progress`` shows progress
    bars; ``timings`` collects wall seconds per stage (``results.json``'s ``timings``).
    """

    loaded: LoadedRecipe
    use_cache: bool | None = None
    progress: bool = True
    started: _dt.datetime = field(
        default_factory=lambda: _dt.datetime.now(_dt.timezone.utc))
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def open(cls, recipe: LoadedRecipe | str | Path, *, overrides: list[str] | None = None,
             use_cache: bool | None = None, progress: bool = True) -> StudyContext:
        """A context for a recipe path (loaded and checked here) or a loaded recipe."""
        loaded = recipe if isinstance(recipe, LoadedRecipe) else load_recipe(recipe, overrides)
        return cls(loaded, use_cache=use_cache, progress=progress)

    # ---- the recipe ------------------------------------------------------------------
    @property
    def recipe(self) -> Recipe:
        return self.loaded.recipe

    def file_of(self, key: str) -> str:
        """The file (recipe, include or ``--set``) that set ``key``."""
        return self.loaded.file_of(key)

    # ---- caches ----------------------------------------------------------------------
    @cached_property
    def cache_root(self) -> Path | None:
        """The cache folder, or None when caching is off."""
        return recipe_cache_root(self.recipe.output, self.use_cache,
                                 file=self.file_of("output.cache_dir"))

    def cache_dir(self, kind: str) -> Path | None:
        """``<cache root>/<kind>`` (e.g. ``soft-outputs``), or None when caching is off."""
        return None if self.cache_root is None else self.cache_root / kind

    # ---- the model -------------------------------------------------------------------
    @cached_property
    def resolved(self) -> ResolvedModel:
        """Where the recipe's model lives and what identifies its weights (nothing loaded)."""
        return resolve_model(self.recipe.model, base_dir=self.loaded.base_dir,
                             file=self.file_of("model.id"))

    @cached_property
    def _effective(self) -> tuple[ModelSpec, dict[str, Any]]:
        return effective_spec(self.recipe.model, self.resolved,
                              file=self.file_of("model.pooling"))

    @property
    def model(self) -> ModelSpec:
        """The recipe's model settings with the family's defaults filled in."""
        return self._effective[0]

    @property
    def auto_settings(self) -> dict[str, Any]:
        """{setting: value} that came from the model family's defaults."""
        return self._effective[1]

    @cached_property
    def settings_key(self) -> str:
        """Everything that changes an embedding, as JSON (the embedding cache's key part;
        :func:`embedforensics.models.resolve.settings_key`)."""
        return settings_key(self.model, self.resolved)

    @property
    def embedding_fingerprint(self) -> str:
        """sha256 of everything that changes an embedding: the model's weights and every
        effective embedding setting, including ``layers`` and ``compile``. Heads record it
        and ``compare`` refuses heads whose fingerprint differs."""
        return hashlib.sha256(self.settings_key.encode()).hexdigest()

    # ---- timing ----------------------------------------------------------------------
    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Add the wall seconds of the ``with`` block to ``timings[stage]``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[stage] = round(self.timings.get(stage, 0.0)
                                        + time.perf_counter() - t0, 3)
