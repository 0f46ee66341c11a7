"""A content-addressed, crash-safe cache of transform outputs (JSON files).

One entry per chunk of texts, named by sha256 of the transform's name, settings and engine
identity plus the chunk's text fingerprint, stored under ``<cache>/transforms/<k[:2]>/<k>.json``.
The entry repeats its key and input fingerprint; loading checks both and the number of
outputs, so a mismatched or corrupt entry is reported and recomputed, never reused. Writes
go to a temporary file in the same folder, are fsynced and moved into place with
``os.replace``, as the embedding cache does.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from embedforensics.fileio import atomic_write_bytes

log = logging.getLogger(__name__)

FORMAT = "embedforensics-transform-v1"


def transform_key(header: str, text_fingerprint: str) -> str:
    return hashlib.sha256(f"{FORMAT}\x1f{header}\x1f{text_fingerprint}".encode()).hexdigest()


class TransformCache:
    """Read and write lists of output texts keyed by :func:`transform_key`."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()

    def path_for(self, key: str) -> Path:
        return self.root / "transforms" / key[:2] / f"{key}.json"

    def load(self, key: str, *, expected: int, text_fingerprint: str) -> list[str] | None:
        path = self.path_for(key)
        if not path.is_file():
            return None
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("transform cache entry %s is unreadable (%s); recomputing it", path, exc)
            return None
        outputs = entry.get("outputs") if isinstance(entry, dict) else None
        problems = []
        if not isinstance(entry, dict) or entry.get("format") != FORMAT:
            problems.append("format")
        elif entry.get("key") != key:
            problems.append("key mismatch")
        elif entry.get("text_fingerprint") != text_fingerprint:
            problems.append("inputs differ")
        elif not isinstance(outputs, list) or len(outputs) != expected or \
                not all(isinstance(t, str) for t in outputs):
            problems.append(f"expected {expected} output texts")
        if problems:
            log.warning("transform cache entry %s does not match (%s); recomputing it", path,
                        ", ".join(problems))
            return None
        return list(outputs)  # type: ignore[arg-type]

    def save(self, key: str, outputs: list[str], *, text_fingerprint: str, header: str
             ) -> Path | None:
        """Write an entry; a cache that cannot be written (read-only, full, something in the
        way) is a warning, not an error: the outputs just computed are still used."""
        from embedforensics.engine.shards import cache_write_error

        path = self.path_for(key)
        entry = {"format": FORMAT, "key": key, "text_fingerprint": text_fingerprint,
                 "header": json.loads(header), "outputs": outputs}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return atomic_write_bytes(
                path, json.dumps(entry, ensure_ascii=False).encode("utf-8"), suffix=".json")
        except OSError as exc:
            log.warning("%s (the transform outputs are used, not cached)",
                        cache_write_error(path, exc).message)
            return None
