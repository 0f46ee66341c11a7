"""Transforms: make contrast data from a source's texts (machine translation, LM
generation, word slices), cached by content and recorded in provenance.

A recipe source lists ``transform:`` steps, applied in order to the texts it selected (a
source with ``from: <id>`` starts from an earlier source's selected rows):

    - id: apertium-es
      label: machine
      from: human-es
      text_column: parallel_text
      transform: {name: translate, engine: apertium, pair: eng-spa}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from embedforensics.transforms.base import Transform, apply_transform


def build_transform(name: str, params: dict[str, Any], *, base_dir: Path | None = None,
                    file: str | None = None, key: str | None = None) -> Transform:
    """The registered transform ``name`` with validated parameters."""
    from embedforensics.registry import TRANSFORMS

    TRANSFORMS.check(name, file=file, key=f"{key}.name" if key else None)
    cls = TRANSFORMS.get(name)
    return cls.from_spec(params, base_dir=base_dir, file=file, key=key)


__all__ = ["Transform", "apply_transform", "build_transform"]
