"""Batch planning by token budget, and out-of-memory recovery by splitting batches.

Why: a fixed number of texts per batch either wastes memory on short texts or runs out of
it on long ones, and sorting by *characters* (as sentence-transformers does) still pads a
lot because characters predict tokens poorly. Here batches are cut from the inputs sorted
by token length (longest first, so an out-of-memory error shows up at once), each batch
bounded both by a count and by its padded size (rows x longest row). Results are put back
in input order by the caller, using the index arrays these functions return.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

log = logging.getLogger(__name__)

T = TypeVar("T")


def plan_batches(lengths: Sequence[int] | np.ndarray, *, batch_size: int,
                 max_tokens: int | None = None, max_padding: float | None = None
                 ) -> list[np.ndarray]:
    """Cut ``range(len(lengths))`` into batches of indices, longest inputs first.

    Every batch holds at most ``batch_size`` rows and, when ``max_tokens`` is given, at
    most ``max_tokens`` padded tokens (rows x the batch's longest row); a single row longer
    than ``max_tokens`` gets a batch of its own. With ``max_padding`` (a fraction in
    [0, 1)) a batch also ends before a row shorter than ``(1 - max_padding)`` times its
    longest row, so padding is at most that fraction of every batch: a few more, smaller
    batches instead of computing on padding. The sort is stable, so ties keep input
    order and the plan is deterministic.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1; got {max_tokens}")
    if max_padding is not None and not 0 <= max_padding < 1:
        raise ValueError(f"max_padding must be in [0, 1); got {max_padding}")
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    descending = -lengths[order]  # ascending, for searchsorted
    batches: list[np.ndarray] = []
    start = 0
    n = len(order)
    while start < n:
        longest = max(int(lengths[order[start]]), 1)  # sorted: the first row is the longest
        rows = batch_size
        if max_tokens is not None:
            rows = max(1, min(rows, max_tokens // longest))
        if max_padding is not None:
            # rows with length >= (1 - max_padding) * longest, i.e. -length <= -bound
            bound = (1.0 - max_padding) * longest
            stop = int(np.searchsorted(descending, -bound, side="right"))
            rows = max(1, min(rows, stop - start))
        batches.append(order[start:start + rows])
        start += rows
    return batches


def padded_tokens(lengths: Sequence[int] | np.ndarray, batches: list[np.ndarray]) -> int:
    """Tokens the model runs for this plan, padding included (rows x longest row)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    return int(sum(len(b) * int(lengths[b].max()) for b in batches if len(b)))


def assign_batches(batches: list[np.ndarray], lengths: Sequence[int] | np.ndarray,
                   n_parts: int) -> list[list[int]]:
    """Deal batches to ``n_parts`` workers, each next batch to the least-loaded worker.

    Load is padded tokens. Deterministic (ties go to the lowest worker), so every process
    computes the same assignment from the same lengths without talking to the others.
    Returns, per worker, the positions of its batches in ``batches``.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    load = [0] * n_parts
    parts: list[list[int]] = [[] for _ in range(n_parts)]
    for i, batch in enumerate(batches):
        worker = min(range(n_parts), key=lambda w: (load[w], w))
        parts[worker].append(i)
        load[worker] += len(batch) * (int(lengths[batch].max()) if len(batch) else 0)
    return parts


def is_oom(exc: BaseException) -> bool:
    """True for CUDA/MPS/CPU out-of-memory errors raised by torch."""
    try:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
    except ImportError:  # pragma: no cover - torch is a dependency of every embedder
        pass
    return isinstance(exc, (RuntimeError, MemoryError)) and (
        isinstance(exc, MemoryError) or "out of memory" in str(exc).lower())


def _free_accelerator_memory() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


def run_splitting_on_oom(batch: np.ndarray, fn: Callable[[np.ndarray], T],
                         counter: dict[str, Any] | None = None) -> list[tuple[np.ndarray, T]]:
    """``fn(batch)``; on out-of-memory, halve the batch and retry each half (recursively).

    Returns ``(indices, result)`` pairs covering ``batch`` in order. A single row that
    still runs out of memory re-raises the error: nothing smaller can be tried.
    ``counter['oom_splits']`` counts the splits, for provenance.
    """
    try:
        return [(batch, fn(batch))]
    except Exception as exc:  # noqa: BLE001 - only out-of-memory errors are handled
        if not is_oom(exc) or len(batch) <= 1:
            raise
    _free_accelerator_memory()
    if counter is not None:
        counter["oom_splits"] = counter.get("oom_splits", 0) + 1
    half = len(batch) // 2
    log.warning("out of memory on a batch of %d rows; retrying as %d + %d rows",
                len(batch), half, len(batch) - half)
    return (run_splitting_on_oom(batch[:half], fn, counter)
            + run_splitting_on_oom(batch[half:], fn, counter))
