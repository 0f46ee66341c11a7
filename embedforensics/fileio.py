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


def _umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[str], None], *, suffix: str = "") -> Path:
    """Call ``write(tmp_path)`` to fill a temporary file, fsync it, move it to ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        # mkstemp makes the file owner-only; give it the mode a plain open() would
        os.chmod(tmp, 0o666 & ~_umask())
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


def file_sha256(path: str | Path, *, sample_above: int | None = None) -> str:
    """sha256 of a file's bytes, read in 4 MiB chunks: the package's one file hasher.

    ``sample_above`` (bytes): a larger file is hashed from its size and 64 evenly spaced
    1 MiB windows instead of every byte, so fingerprinting a multi-GiB weight file takes
    milliseconds (model fingerprints use it; cache integrity checks hash every byte).
    """
    size = os.stat(path).st_size
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        if sample_above is None or size <= sample_above:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
        else:
            h.update(str(size).encode())
            for k in range(64):
                fh.seek(k * (size - (1 << 20)) // 63)
                h.update(fh.read(1 << 20))
    return h.hexdigest()
