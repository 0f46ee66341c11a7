"""``insert``: put a fixed phrase at the start or the end of every text.

Cheap and not cached. It makes the candidate transformations ModelDiff verifies ("does
inserting 'zebra' move group A's predictions but not group B's?") and, more generally,
counterfactual copies of a source with one cue added.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from embedforensics.transforms.base import Transform, TransformParams


class InsertParams(TransformParams):
    phrase: str = Field(min_length=1, description="The words to insert.")
    position: Literal["start", "end"] = Field("start", description="Before the text (start) "
                                              "or after it (end), separated by a space.")


class Insert(Transform):
    """Insert a phrase at the start or the end of each text, as separate words."""

    name = "insert"
    Params = InsertParams
    cache = False
    chunk_size = 100_000
    params: InsertParams

    def run(self, texts: list[str]) -> list[str]:
        phrase = self.params.phrase.strip() or self.params.phrase
        if self.params.position == "start":
            return [f"{phrase} {t}" if t else phrase for t in texts]
        return [f"{t} {phrase}" if t else phrase for t in texts]
