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

import dataclasses
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embedforensics.sources.columns import ArrowColumn, ConcatSequence

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 32
"""Characters kept per token of ``model.max_length``: far more than any tokenizer's
average (English is about 4), so cutting there never changes what the model sees."""
DEFAULT_MAX_TOKENS = 8192
"""The token limit assumed when the recipe leaves ``model.max_length`` to the model."""
MIN_TEXT_CHARS = 65_536
"""Texts are never cut shorter than this (so length baselines see long texts as long)."""


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


def text_char_limit(max_length: int | None) -> int:
    """The longest text (in characters) kept for a model whose token limit is
    ``max_length`` (None: the model's own, assumed at most :data:`DEFAULT_MAX_TOKENS`)."""
    return max(CHARS_PER_TOKEN * (max_length or DEFAULT_MAX_TOKENS), MIN_TEXT_CHARS)


def cap_text_length(data: SourceData, limit: int, *, file: str | None, key: str
                    ) -> SourceData:
    """Cut texts longer than ``limit`` characters before anything tokenises them.

    A tokenizer holds every token of its input, so one 20 MB line costs gigabytes before
    truncation at ``max_length`` happens; the model only sees the first ``max_length``
    tokens anyway. The number cut is recorded in ``stats["texts_cut"]``; the source's
    fingerprint is over the cut texts (what is embedded).
    """
    if data.modality != "text" or not len(data.texts):
        return data
    texts = data.texts
    if isinstance(texts, ArrowColumn):
        import pyarrow.compute as pc

        array = texts.arrow()
        lengths = pc.utf8_length(array)
        n_cut = int(pc.sum(pc.greater(lengths, limit)).as_py() or 0)
        if n_cut:
            texts = ArrowColumn(pc.utf8_slice_codeunits(array, 0, limit))
    else:
        n_cut = sum(1 for t in texts if isinstance(t, str) and len(t) > limit)
        if n_cut:
            texts = [t[:limit] if isinstance(t, str) and len(t) > limit else t for t in texts]
    if not n_cut:
        return data
    log.warning("%s: %s: %d text(s) longer than %s characters were cut to that length before "
                "tokenising (the model reads at most model.max_length tokens of each)",
                file or "<recipe>", key, n_cut, f"{limit:,}")
    return dataclasses.replace(data, texts=texts, stats={**data.stats, "texts_cut": n_cut})


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
