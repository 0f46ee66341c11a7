"""Inline sources: a short list of texts written in the recipe itself."""

from __future__ import annotations

from pathlib import Path

from embedforensics.recipe.schema import SourceSpec
from embedforensics.sources.base import SourceData
from embedforensics.sources.hf import build_source_data


def load_inline_source(spec: SourceSpec, base_dir: Path, *, seed: int, file: str | None,
                       key: str) -> SourceData:
    """Turn ``texts:`` into records with ids ``<source id>:<position>``."""
    texts = list(spec.texts or [])
    origin = {"description": f"{len(texts)} inline texts", "builder": "inline", "files": []}
    return build_source_data(spec, {spec.text_column: texts}, seed=seed, file=file, key=key,
                             origin=origin)
