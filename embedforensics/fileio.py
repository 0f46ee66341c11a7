"""Crash-safe file writes and content hashes, shared by every cache in the package.

A write goes to a temporary file in the destination's folder, is flushed to disk
(``fsync``) and then moved over the destination with ``os.replace``, which is atomic on
POSIX and Windows: after a crash the destination holds either the old content or the new,
never half a file. The temporary file is removed if anything fails.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | Path, write: Callable[[str], None], *, suffix: str = "") -> Path:
    """Call ``write(tmp_path)`` to fill a temporary file, fsync it, move it to ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_bytes(path: str | Path, data: bytes, *, suffix: str = "") -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), suffix=suffix)


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 4 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()
