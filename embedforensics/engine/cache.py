"""A content-addressed, crash-safe cache of embedding arrays.

An entry is one safetensors file named by the sha256 of everything that determines its
contents (model fingerprint, embedding settings, the exact texts). Its metadata repeats the
key and the texts' fingerprint, and loading checks both plus the shape, so a mismatched,
truncated or corrupt entry is detected, reported and recomputed, never silently reused.
Writes go to a temporary file in the same folder and are moved into place with
``os.replace``, so a crash leaves either the old entry or the new one, never half a file.
A cache folder that is a regular file, or that cannot be written (read-only, full), is a
:class:`~embedforensics.errors.UserError` naming the path and ``output.cache_dir``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from embedforensics.errors import UserError
from embedforensics.fileio import atomic_write_bytes

log = logging.getLogger(__name__)

CACHE_FORMAT = "embedforensics-embeddings-v1"


def default_cache_dir() -> Path:
    env = os.environ.get("EMBEDFORENSICS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "embedforensics"


def recipe_cache_root(output: Any, use_cache: bool | None = None, *,
                      file: str | None = None) -> Path | None:
    """The cache folder a recipe's ``output:`` section asks for, or None when caching is
    off (``use_cache`` overrides ``output.cache``, as ``--no-cache`` does). The one place
    that resolves it: embeddings, transform outputs and soft outputs live under it.
    A cache path that is a regular file is a UserError (``file`` names the recipe)."""
    if not (output.cache if use_cache is None else use_cache):
        return None
    root = Path(output.cache_dir).expanduser() if output.cache_dir else default_cache_dir()
    check_cache_root(root, file=file)
    return root


def check_cache_root(root: Path, *, file: str | None = None) -> None:
    """Raise a one-sentence UserError when ``root`` (or the nearest existing folder above
    it) is a regular file, so no stage ever tries to write a cache into a file."""
    for path in (root, *root.parents):
        if path.is_dir():
            return
        if path.exists():
            where = "" if path == root else f" (needed for the cache folder '{root}')"
            raise UserError(f"the cache path '{path}'{where} is a file, not a folder; point "
                            "output.cache_dir at a folder, or run with --no-cache.",
                            file=file, key="output.cache_dir")


def cache_key(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Read and write embedding arrays under ``root/embeddings/<key[:2]>/<key>.safetensors``."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()

    def path_for(self, key: str) -> Path:
        return self.root / "embeddings" / key[:2] / f"{key}.safetensors"

    def load(self, key: str, *, expected_rows: int, text_fingerprint: str
             ) -> tuple[np.ndarray, dict[str, Any]] | None:
        """The cached array and its metadata, or None on a miss or a bad entry."""
        path = self.path_for(key)
        if not path.is_file():
            return None
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="np") as fh:
                meta = dict(fh.metadata() or {})
                array = fh.get_tensor("embeddings")
        except Exception as exc:  # noqa: BLE001 - any unreadable entry is recomputed
            log.warning("cache entry %s is unreadable (%s); recomputing it", path, exc)
            return None
        problems = []
        if meta.get("format") != CACHE_FORMAT:
            problems.append(f"format {meta.get('format')!r}")
        if meta.get("key") != key:
            problems.append("key mismatch")
        if meta.get("text_fingerprint") != text_fingerprint:
            problems.append("texts differ")
        if array.ndim != 2 or array.shape[0] != expected_rows:
            problems.append(f"shape {array.shape} for {expected_rows} rows")
        if array.dtype != np.float32 or not np.isfinite(array).all():
            problems.append("non-finite or non-float32 values")
        if problems:
            log.warning("cache entry %s does not match (%s); recomputing it", path,
                        ", ".join(problems))
            return None
        info = json.loads(meta.get("info", "{}"))
        return array, info

    def save(self, key: str, array: np.ndarray, *, text_fingerprint: str,
             info: dict[str, Any]) -> Path:
        """Write atomically: temp file in the same folder, fsync, then os.replace (the
        bytes are deterministic: :func:`~embedforensics.engine.shards.safetensors_bytes`)."""
        from embedforensics.engine.shards import cache_write_error, safetensors_bytes

        path = self.path_for(key)
        meta = {"format": CACHE_FORMAT, "key": key, "text_fingerprint": text_fingerprint,
                "info": json.dumps(info, sort_keys=True, default=str)}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return atomic_write_bytes(path, safetensors_bytes({"embeddings": array}, meta),
                                      suffix=".safetensors")
        except OSError as exc:
            raise cache_write_error(path, exc) from None
