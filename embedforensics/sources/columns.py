"""Column views: a source's rows stay in (memory-mapped) Arrow until someone reads them.

Why: ``datasets`` keeps a loaded data set as memory-mapped Arrow files, so a 10-million-row
corpus costs almost no RAM until it is turned into Python objects. A source used to call
``Dataset.to_dict()``, which builds every text, id and metadata value as a Python object
at once (gigabytes for a large corpus). Here the filters run block by block, and what a
source keeps is a *view*: the Arrow column plus the numbers of the rows selected. The
embedding engine reads one shard's texts at a time (``texts[start:stop]``), so only that
shard's strings exist in Python.

Every view is a read-only :class:`collections.abc.Sequence` (``len``, indexing, slicing to a
list, iteration block by block) and compares equal to a list with the same items, so code
written for lists keeps working. :func:`iter_blocks`, :func:`select` and
:func:`first_duplicate` accept plain lists too: the same filters serve small in-memory
tables (inline texts, derived sources) and large Arrow ones.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Sequence
from itertools import chain
from typing import Any

import numpy as np

BLOCK_ROWS = 8_192
"""Rows converted to Python objects at a time when a view is iterated or filtered."""


class _SequenceView(Sequence):
    """Shared behaviour: list equality and a short repr."""

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (str, bytes)) or not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other,
                                                                       strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        head = list(self[:3]) if len(self) else []
        return f"{type(self).__name__}(len={len(self)}, head={head!r})"

    def _positions(self, index: slice) -> np.ndarray:
        return np.arange(len(self), dtype=np.int64)[index]

    def _index(self, i: int) -> int:
        n = len(self)
        j = int(i) + n if int(i) < 0 else int(i)
        if not 0 <= j < n:
            raise IndexError(f"row {i} out of range for {n} rows")
        return j


class ArrowColumn(_SequenceView):
    """The selected rows of one Arrow column, converted to Python objects on access.

    ``rows`` (sorted or not, int64) picks rows of ``column`` in that order; None means all
    rows in order. ``convert`` is applied to each value read (e.g. ``str`` for ids).
    """

    def __init__(self, column: Any, rows: np.ndarray | None = None,
                 convert: Callable[[Any], Any] | None = None):
        import pyarrow as pa

        if isinstance(column, pa.Array):
            column = pa.chunked_array([column], type=column.type)
        self.column = column
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self.convert = convert

    @property
    def type(self) -> Any:
        """The Arrow type of the column."""
        return self.column.type

    def __len__(self) -> int:
        return len(self.column) if self.rows is None else len(self.rows)

    def _pylist(self, array: Any) -> list[Any]:
        values = array.to_pylist()
        return [self.convert(v) for v in values] if self.convert is not None else values

    def _chunk_offsets(self) -> np.ndarray:
        if not hasattr(self, "_offsets"):
            self._offsets = np.cumsum([0] + [len(c) for c in self.column.chunks])
        return self._offsets

    def _take(self, rows: np.ndarray) -> list[Any]:
        """Arrow arrays holding column rows ``rows`` in order, taken chunk by chunk.

        (``ChunkedArray.take`` concatenates every chunk first: reading a block of rows
        would copy the whole column.) Consecutive rows in one chunk are taken together,
        so sorted rows cost one ``take`` per chunk touched.
        """
        import pyarrow as pa

        if len(rows) == 0:
            return [pa.array([], type=self.column.type)]
        offsets = self._chunk_offsets()
        chunk_of = np.searchsorted(offsets, rows, side="right") - 1
        cuts = np.flatnonzero(np.diff(chunk_of)) + 1
        parts = []
        for group in np.split(np.arange(len(rows)), cuts):
            k = int(chunk_of[group[0]])
            local = rows[group] - offsets[k]
            chunk = self.column.chunk(k)
            if len(local) == local[-1] - local[0] + 1 and np.all(np.diff(local) == 1):
                parts.append(chunk.slice(int(local[0]), len(local)))
            else:
                parts.append(chunk.take(pa.array(local, type=pa.int64())))
        return parts

    def arrow(self, positions: np.ndarray | None = None) -> Any:
        """The selected values (or those at ``positions`` of this view) as an Arrow
        chunked array (no copy of the rest of the column)."""
        import pyarrow as pa

        if positions is None and self.rows is None:
            return self.column
        if self.rows is None:
            rows = np.asarray(positions, dtype=np.int64)
        else:
            rows = self.rows if positions is None else self.rows[positions]
        return pa.chunked_array(self._take(rows), type=self.column.type)

    def __getitem__(self, index: int | slice) -> Any:  # type: ignore[override]
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if self.rows is None and step == 1:
                return self._pylist(self.column.slice(start, max(stop - start, 0)))
            return self._pylist(self.arrow(self._positions(index)))
        j = self._index(index)
        value = self.column[j if self.rows is None else int(self.rows[j])].as_py()
        return self.convert(value) if self.convert is not None else value

    def blocks(self, size: int = BLOCK_ROWS) -> Iterator[list[Any]]:
        """The values in order, ``size`` at a time."""
        for start in range(0, len(self), size):
            yield self[start:start + size]

    def __iter__(self) -> Iterator[Any]:
        for block in self.blocks():
            yield from block

    def select(self, rows: np.ndarray) -> ArrowColumn:
        """A view of this view's rows ``rows`` (positions in this view)."""
        rows = np.asarray(rows, dtype=np.int64)
        return ArrowColumn(self.column, rows if self.rows is None else self.rows[rows],
                           self.convert)

    def to_list(self) -> list[Any]:
        return list(self)


class RowIds(_SequenceView):
    """Ids ``"<prefix>:<row>"`` for row numbers ``rows``, made when read."""

    def __init__(self, prefix: str, rows: np.ndarray):
        self.prefix = prefix
        self.rows = np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int | slice) -> Any:  # type: ignore[override]
        if isinstance(index, slice):
            return [f"{self.prefix}:{r}" for r in self.rows[index].tolist()]
        return f"{self.prefix}:{int(self.rows[self._index(index)])}"

    def __iter__(self) -> Iterator[str]:
        for start in range(0, len(self.rows), BLOCK_ROWS):
            yield from self[start:start + BLOCK_ROWS]


class ConcatSequence(_SequenceView):
    """Several sequences read as one, without copying them."""

    def __init__(self, parts: Sequence[Sequence[Any]]):
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts]).tolist()

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int | slice) -> Any:  # type: ignore[override]
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return [self[int(i)] for i in self._positions(index)]
            out: list[Any] = []
            for part, lo, hi in zip(self.parts, self.offsets, self.offsets[1:], strict=False):
                if hi > start and lo < stop:
                    out.extend(part[max(start - lo, 0):min(stop, hi) - lo])
            return out
        j = self._index(index)
        k = bisect.bisect_right(self.offsets, j) - 1
        return self.parts[k][j - self.offsets[k]]

    def __iter__(self) -> Iterator[Any]:
        return chain.from_iterable(self.parts)


def iter_blocks(values: Sequence[Any], size: int = BLOCK_ROWS
                ) -> Iterator[tuple[int, Sequence[Any]]]:
    """``(offset, block)`` pairs covering ``values`` in order, ``size`` rows at a time."""
    if isinstance(values, ArrowColumn):
        yield from zip(range(0, len(values), size), values.blocks(size), strict=True)
        return
    for start in range(0, len(values), size):
        yield start, values[start:start + size]


def select(values: Sequence[Any], rows: np.ndarray) -> Sequence[Any]:
    """``values`` at ``rows``: a view for an Arrow column, a list otherwise."""
    if isinstance(values, ArrowColumn):
        return values.select(rows)
    return [values[int(i)] for i in rows]


def first_duplicate(values: Sequence[Any]) -> Any | None:
    """The first value that occurs twice (in order of first repeat), or None.

    Arrow columns are checked with Arrow's own hashing (no Python objects per row).
    """
    if isinstance(values, ArrowColumn):
        import pyarrow.compute as pc

        array = values.arrow()
        if pc.count_distinct(array, mode="all").as_py() == len(array):
            return None
        counts = pc.value_counts(array)
        repeated = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
        value = repeated[0].as_py()
        return values.convert(value) if values.convert is not None else value
    from collections import Counter

    counts = Counter(values)
    return next((v for v in values if counts[v] > 1), None)


def is_scalar_type(arrow_type: Any) -> bool:
    """Whether an Arrow column holds plain scalars (kept as metadata) rather than
    lists, structs or binary data."""
    import pyarrow as pa

    t = arrow_type
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)
                or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_null(t))
