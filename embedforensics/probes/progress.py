"""Progress bars inside probes: on only where the study asked for them.

The study pipeline turns bars on with :func:`probe_progress` around the probe stage when
the command shows progress (not ``-q``); a probe asks :func:`bar` for a tqdm bar over its
permutations, seeds, folds or blocks. As in the embedding stage, a bar that is on is still
silent when stderr is not a terminal (tqdm's ``disable=None``). Probes fitted directly
through the Python API stay silent.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_ENABLED: ContextVar[bool] = ContextVar("embedforensics_probe_progress", default=False)


@contextmanager
def probe_progress(enabled: bool) -> Iterator[None]:
    """Show (``enabled``) or hide probe progress bars inside this block."""
    token = _ENABLED.set(bool(enabled))
    try:
        yield
    finally:
        _ENABLED.reset(token)


def enabled() -> bool:
    """Whether probe progress bars are on here."""
    return _ENABLED.get()


def bar(total: int, desc: str, unit: str = "it") -> Any:
    """A tqdm bar (use as a context manager, ``.update(k)``), silent unless enabled and
    stderr is a terminal."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False,
                disable=not _ENABLED.get() or None)
