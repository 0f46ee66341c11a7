"""Records: the plain data object every source produces.

A source turns one recipe entry into a :class:`SourceData`: texts (or images) with stable ids
(either the dataset's own id column or ``<source id>:<row number in the loaded split>``, so a
result can always point back at the row), the label, selected metadata columns, counts of
what was filtered, and a content fingerprint used by the cache and in provenance.

An image source (``modality == "image"``) also carries one
:class:`~embedforensics.sources.images.ImageRef` per row; its ``texts`` are the images'
file names (for display, and so the text baselines can show whether file names alone give
the label away), and its fingerprint is over the image bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embedforensics.sources.columns import ConcatSequence


def text_fingerprint(texts: Sequence[str]) -> str:
    """sha256 over the texts, each length-prefixed so concatenations cannot collide."""
    h = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


@dataclass
class SourceData:
    """The rows of one source after filtering and sampling, in a stable order.

    ``texts``, ``ids`` and ``meta`` columns are lists, or for sources read through
    ``datasets`` read-only views of memory-mapped Arrow columns
    (:mod:`embedforensics.sources.columns`) that behave as sequences.
    """

    source_id: str
    label: str
    ids: Sequence[str]
    texts: Sequence[str]
    meta: dict[str, Sequence[Any]] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)
    origin: dict[str, Any] = field(default_factory=dict)
    modality: str = "text"  # "text" or "image"
    images: list[Any] | None = None  # ImageRef per row when modality == "image"

    def __post_init__(self) -> None:
        if self.modality == "image":
            from embedforensics.sources.images import image_fingerprint

            if self.images is None or len(self.images) != len(self.texts):
                raise ValueError("an image source needs one ImageRef per row")
            self.fingerprint = image_fingerprint(self.images)
        else:
            self.fingerprint = text_fingerprint(self.texts)

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class Records:
    """All sources of a recipe concatenated: the input to the embedding engine."""

    sources: list[SourceData]

    @property
    def ids(self) -> Sequence[str]:
        """Every row's id in record order (a view over the sources, not a copy)."""
        return ConcatSequence([s.ids for s in self.sources])

    @property
    def texts(self) -> Sequence[str]:
        """Every row's text in record order (a view over the sources, not a copy)."""
        return ConcatSequence([s.texts for s in self.sources])

    @property
    def labels(self) -> np.ndarray:
        return self._per_row([s.label for s in self.sources])

    @property
    def source_ids(self) -> np.ndarray:
        return self._per_row([s.source_id for s in self.sources])

    def _per_row(self, values: list[str]) -> np.ndarray:
        """One value per source repeated over its rows, as an object array."""
        per_source = np.empty(len(values), dtype=object)
        per_source[:] = values
        return np.repeat(per_source, [len(s) for s in self.sources])

    def __len__(self) -> int:
        return sum(len(s) for s in self.sources)

    def counts_by_label(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for s in self.sources:
            counts[s.label] = counts.get(s.label, 0) + len(s)
        return dict(sorted(counts.items()))
