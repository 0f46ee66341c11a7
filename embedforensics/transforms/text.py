"""``words``: keep a slice of each text's words (whitespace-separated).

Cheap and not cached. Use it to make human and generated texts comparable: the human
continuation after the same opening (``start: 30``) cut to about the generated length
(``count: 40``), or the first words of everything.
"""

from __future__ import annotations

from pydantic import Field

from embedforensics.transforms.base import Transform, TransformParams


class WordsParams(TransformParams):
    start: int = Field(0, ge=0, description="Skip this many words.")
    count: int | None = Field(None, ge=1, description="Keep at most this many (default all).")


class Words(Transform):
    """Keep words [start, start + count) of each text."""

    name = "words"
    Params = WordsParams
    cache = False
    chunk_size = 100_000
    params: WordsParams

    def run(self, texts: list[str]) -> list[str]:
        start, count = self.params.start, self.params.count
        end = None if count is None else start + count
        return [" ".join(t.split()[start:end]) for t in texts]
