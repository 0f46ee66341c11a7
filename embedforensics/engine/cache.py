"""A content-addressed, crash-safe cache of embedding arrays.

An entry is one safetensors file named by the sha256 of everything that determines its
contents (model fingerprint, embedding settings, the exact texts). Its metadata repeats the
key and the texts' fingerprint, and loading checks both plus the shape, so a mismatched,
truncated or corrupt entry is detected, reported and recomputed, never silently reused.
Writes go to a temporary file in the same folder and are moved into place with
``os.replace``, so a crash leaves either the old entry or the new one, never half a file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from embedforensics.fileio import atomic_write

log = logging.getLogger(__name__)

CACHE_FORMAT = "embedforensics-embeddings-v1"


def default_cache_dir() -> Path:
    env = os.environ.get("EMBEDFORENSICS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "embedforensics"


def recipe_cache_root(output: Any, use_cache: bool | None = None) -> Path | None:
    """The cache folder a recipe's ``output:`` section asks for, or None when caching is
    off (``use_cache`` overrides ``output.cache``, as ``--no-cache`` does). The one place
    that resolves it: embeddings, transform outputs and soft outputs live under it."""
    if not (output.cache if use_cache is None else use_cache):
        return None
    return Path(output.cache_dir).expanduser() if output.cache_dir else default_cache_dir()


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
        """Write atomically: temp file in the same folder, fsync, then os.replace."""
        from safetensors.numpy import save_file

        path = self.path_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": CACHE_FORMAT, "key": key, "text_fingerprint": text_fingerprint,
                "info": json.dumps(info, sort_keys=True, default=str)}
        return atomic_write(
            path, lambda tmp: save_file(
                {"embeddings": np.ascontiguousarray(array, dtype=np.float32)}, tmp,
                metadata=meta), suffix=".safetensors")
