"""Inline sources: a short list of texts, or of image file paths, written in the recipe."""

from __future__ import annotations

from pathlib import Path

from embedforensics.recipe.schema import SourceSpec
from embedforensics.sources.base import SourceData
from embedforensics.sources.hf import build_source_data, check_encodable


def load_inline_source(spec: SourceSpec, base_dir: Path, *, seed: int, file: str | None,
                       key: str) -> SourceData:
    """Turn ``texts:`` (or ``images:``) into records with ids ``<source id>:<position>``."""
    if spec.images is not None:
        paths = list(spec.images)
        origin = {"description": f"{len(paths)} image files", "builder": "inline",
                  "files": paths}
        return build_source_data(spec, {spec.image_column: paths}, seed=seed, file=file,
                                 key=key, origin=origin, image_base=base_dir)
    texts = list(spec.texts or [])
    for i, text in enumerate(texts):
        if isinstance(text, str) and not text.isascii():
            check_encodable(text, row=i, what="inline text", file=file, key=f"{key}.texts[{i}]")
    origin = {"description": f"{len(texts)} inline texts", "builder": "inline", "files": []}
    return build_source_data(spec, {spec.text_column: texts}, seed=seed, file=file, key=key,
                             origin=origin)
