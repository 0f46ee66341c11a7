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
                 max_tokens: int | None = None, batch_overhead: float | None = None
                 ) -> list[np.ndarray]:
    """Cut ``range(len(lengths))`` into batches of indices, longest inputs first.

    Every batch holds at most ``batch_size`` rows and, when ``max_tokens`` is given, at
    most ``max_tokens`` padded tokens (rows x the batch's longest row); a single row longer
    than ``max_tokens`` gets a batch of its own. The rows are sorted by length (stable, so
    the plan is deterministic) and batches are contiguous runs of that order.

    Without ``batch_overhead`` the runs are as long as the bounds allow. With it, the
    runs minimise ``padded tokens + batch_overhead x number of batches`` exactly (dynamic
    programming over the sorted rows): a batch is split where the padding it saves is
    worth more than the fixed cost of one more forward pass, expressed in tokens.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1; got {max_tokens}")
    if batch_overhead is not None and batch_overhead < 0:
        raise ValueError(f"batch_overhead must be >= 0; got {batch_overhead}")
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    n = len(order)
    srt = np.maximum(lengths[order], 1)  # non-increasing: a run's first row is its longest
    if batch_overhead is None:
        batches: list[np.ndarray] = []
        start = 0
        while start < n:
            rows = batch_size
            if max_tokens is not None:
                rows = max(1, min(rows, max_tokens // int(srt[start])))
            batches.append(order[start:start + rows])
            start += rows
        return batches
    best = np.zeros(n + 1)
    cut = np.zeros(n + 1, dtype=np.int64)
    for j in range(1, n + 1):
        i = np.arange(max(0, j - batch_size), j)
        size = j - i
        padded = size * srt[i]
        cost = best[i] + padded + batch_overhead
        if max_tokens is not None:
            cost = np.where((padded > max_tokens) & (size > 1), np.inf, cost)
        k = int(np.argmin(cost))  # ties: the longest batch
        best[j], cut[j] = cost[k], i[k]
    bounds = [n]
    while bounds[-1] > 0:
        bounds.append(int(cut[bounds[-1]]))
    bounds.reverse()
    return [order[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


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
