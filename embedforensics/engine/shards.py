"""A crash-safe, sharded store of embeddings: one folder per cache entry.

Why shards: a corpus of millions of rows takes hours to embed; a crash must cost at most
the shard in flight, and memory must not grow with the corpus. Each cache entry (one
source under one set of embedding settings, keyed as in :mod:`embedforensics.engine.cache`)
is a folder of fixed-size row shards plus a manifest that lists the shards completed::

    <cache>/shards/<key[:2]>/<key>/
        manifest.json               see below; rewritten (atomically) after every shard
        shard-00000.safetensors     rows [0, shard_rows), float32 tensors:
                                    "embeddings" [rows, d], or one "layer.<L>" per layer
        shard-00001.safetensors     rows [shard_rows, 2 * shard_rows), ...

``manifest.json`` holds ``format`` ("embedforensics-shards-v1"), ``key``,
``text_fingerprint`` (sha256 of the source's texts), ``n_rows``, ``shard_rows``,
``n_shards``, ``tensors`` (the tensor names), ``model`` (provenance) and ``shards``: for
each completed shard, by its number as a string, ``file``, ``start``, ``stop``, ``sha256``
(of the file's bytes) and ``info`` (token counts). Rows of shard ``i`` are rows
``start:stop`` of the source, in record order. Read it without embedforensics::

    import json, safetensors.numpy, numpy as np
    m = json.load(open(f"{entry}/manifest.json"))
    X = np.concatenate([safetensors.numpy.load_file(f"{entry}/{m['shards'][str(i)]['file']}")
                        ["embeddings"] for i in range(m["n_shards"])])

Shard bytes are deterministic: the safetensors header (tensor entries and ``__metadata__``)
is serialised here with sorted keys and compact separators, so the same shard written by
any process, machine or safetensors version is byte-identical and its manifest sha256 holds
for every writer.

A manifest of the wrong shape (valid JSON but not this layout), a shard record that does not
name its own file, or a shard path that is not a readable file is treated like a missing or
corrupt entry: logged and recomputed. A cache folder that cannot be written (read-only, full,
or a file where a folder should be) is a :class:`~embedforensics.errors.UserError` naming the
path and ``output.cache_dir``, never a traceback.

Crash safety: a shard is written to a temporary file in the same folder, fsynced and moved
into place with ``os.replace``; only then is the manifest (also written via a temporary file
and ``os.replace``) updated to list it. A process killed at any moment therefore leaves
either a shard listed with its complete bytes, or a shard not listed (recomputed on the next
run). Loading re-checks the manifest's key, fingerprint and shape and each shard's sha256,
size and values, so a mismatched, truncated or corrupt shard is recomputed, never reused.
A process killed while writing leaves its temporary file (``.tmp-*``) behind; the next run
that writes to the entry deletes those older than an hour (younger ones may belong to a
run still going).
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np

from embedforensics.errors import UserError
from embedforensics.fileio import atomic_write_bytes, file_sha256

log = logging.getLogger(__name__)

SHARD_FORMAT = "embedforensics-shards-v1"
STALE_TMP_SECONDS = 3600
"""Temporary files older than this in an entry folder are leftovers of a killed run."""


def shard_ranges(n_rows: int, shard_rows: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(n_rows)`` in shards of ``shard_rows``."""
    return [(s, min(s + shard_rows, n_rows)) for s in range(0, n_rows, shard_rows)]


def shard_name(i: int) -> str:
    """The file name of shard ``i`` (the only name a manifest may list for it)."""
    return f"shard-{i:05d}.safetensors"


def safetensors_bytes(arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """A float32 safetensors file as bytes, identical for identical inputs in every process.

    The format (8-byte little-endian header length, a JSON header padded with spaces to a
    multiple of 8, then the tensors' bytes) is written here rather than by
    ``safetensors.numpy.save``, whose metadata map comes out in a per-process order: the
    header's keys are sorted and the tensors laid out in name order.
    """
    header: dict[str, Any] = {"__metadata__": {str(k): str(v)
                                               for k, v in sorted(metadata.items())}}
    blobs: list[bytes] = []
    offset = 0
    for name in sorted(arrays):
        blob = np.ascontiguousarray(arrays[name], dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": [int(n) for n in arrays[name].shape],
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True).encode("ascii")
    text += b" " * (-len(text) % 8)
    return b"".join([struct.pack("<Q", len(text)), text, *blobs])


def cache_write_error(path: Path, exc: OSError) -> UserError:
    """The one sentence for a cache that cannot be written (read-only, full, a file where a
    folder should be, a folder where a file should be)."""
    why = exc.strerror or type(exc).__name__
    if isinstance(exc, (IsADirectoryError, NotADirectoryError, FileExistsError)):
        fix = "remove what is in the way (the cache rebuilds it)"
    else:
        fix = "free space or fix the folder's permissions"
    return UserError(f"cannot write the cache at '{path}' ({why}); {fix}, point "
                     "output.cache_dir at a writable folder, or run with --no-cache.",
                     key="output.cache_dir")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class ShardedEntry:
    """One cache entry: the shards of one source's embeddings and their manifest."""

    def __init__(self, root: str | Path, key: str, *, n_rows: int, shard_rows: int,
                 text_fingerprint: str, tensors: list[str]):
        self.root = Path(root).expanduser()
        self.key = key
        self.dir = self.root / "shards" / key[:2] / key
        self.n_rows = n_rows
        self.text_fingerprint = text_fingerprint
        self.tensors = list(tensors)
        self.ranges = shard_ranges(n_rows, shard_rows)
        self.shard_rows = shard_rows
        self._swept = False
        # read now: a completed entry's own shard size decides the row ranges
        self._manifest: dict[str, Any] | None = self.read_manifest()

    @property
    def manifest_path(self) -> Path:
        return self.dir / "manifest.json"

    def _fresh_manifest(self) -> dict[str, Any]:
        return {"format": SHARD_FORMAT, "key": self.key, "text_fingerprint":
                self.text_fingerprint, "n_rows": self.n_rows, "n_shards": len(self.ranges),
                "tensors": self.tensors, "model": None, "shards": {}}

    def read_manifest(self) -> dict[str, Any]:
        """The manifest on disk if it matches this entry; else an empty one (logged)."""
        path = self.manifest_path
        fresh = self._fresh_manifest()
        fresh["shard_rows"] = self.shard_rows
        if not path.is_file():
            return fresh
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("cache manifest %s is unreadable (%s); recomputing its shards",
                        path, exc)
            return fresh
        if not isinstance(manifest, dict):
            log.warning("cache manifest %s is not a JSON object; recomputing its shards", path)
            return fresh
        problems = [k for k in ("format", "key", "text_fingerprint", "n_rows", "tensors")
                    if manifest.get(k) != fresh[k]]
        shard_rows = manifest.get("shard_rows")
        if not _is_int(shard_rows) or shard_rows < 1:
            problems.append("shard_rows")
        if not isinstance(manifest.get("shards"), dict):
            problems.append("shards")
        if problems:
            log.warning("cache manifest %s does not match (%s); recomputing its shards",
                        path, ", ".join(problems))
            return fresh
        if manifest.get("shard_rows") != self.shard_rows:
            # a completed entry is valid whatever its shard size; a partial one is resumed
            # only with the same shard boundaries
            ranges = shard_ranges(self.n_rows, shard_rows)
            if len(self._valid_shards(manifest, ranges)) == len(ranges) \
                    and manifest.get("n_shards") == len(ranges):
                self.ranges, self.shard_rows = ranges, shard_rows
                return self._cleaned(manifest)
            log.info("cache entry %s was started with %s rows per shard, now %d; starting "
                     "it again", self.dir, manifest.get("shard_rows"), self.shard_rows)
            return fresh
        return self._cleaned(manifest)

    def _valid_shards(self, manifest: dict[str, Any], ranges: list[tuple[int, int]]
                      ) -> dict[str, dict[str, Any]]:
        """The manifest's shard records that have the shape this module writes: the
        number of a shard of ``ranges`` → a record naming that shard's own file, its row
        range and a sha256 (anything else is not trusted, so its shard is recomputed)."""
        valid: dict[str, dict[str, Any]] = {}
        for k, record in manifest["shards"].items():
            if not (isinstance(k, str) and k.isdigit() and int(k) < len(ranges)
                    and str(int(k)) == k and isinstance(record, dict)):
                continue
            i = int(k)
            if (record.get("file") == shard_name(i) and isinstance(record.get("sha256"), str)
                    and (record.get("start"), record.get("stop")) == ranges[i]):
                valid[k] = record
        return valid

    def _cleaned(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """``manifest`` with only well-formed shard records (the others logged and
        dropped, so their shards are recomputed) and a ``model`` that is an object."""
        valid = self._valid_shards(manifest, self.ranges)
        dropped = len(manifest["shards"]) - len(valid)
        if dropped:
            log.warning("cache manifest %s has %d malformed shard record(s); recomputing "
                        "those shards", self.manifest_path, dropped)
        for record in valid.values():
            info = record.get("info")
            record["info"] = ({k: v for k, v in info.items() if _is_int(v)}
                              if isinstance(info, dict) else {})
        manifest["shards"] = valid
        if not isinstance(manifest.get("model"), dict):
            manifest["model"] = None
        return manifest

    @property
    def manifest(self) -> dict[str, Any]:
        if self._manifest is None:
            self._manifest = self.read_manifest()
        return self._manifest

    def completed(self) -> set[int]:
        return {int(i) for i in self.manifest.get("shards", {})}

    def load_shard(self, i: int) -> dict[str, np.ndarray] | None:
        """Shard ``i``'s tensors, or None when missing or not exactly right (logged)."""
        record = self.manifest.get("shards", {}).get(str(i))
        if record is None:
            return None
        path = self.dir / record["file"]
        start, stop = self.ranges[i]
        problems: list[str] = []
        try:
            if file_sha256(path) != record.get("sha256"):
                problems.append("sha256 differs")
            else:
                from safetensors import safe_open

                with safe_open(str(path), framework="np") as fh:
                    meta = dict(fh.metadata() or {})
                    arrays = {name: fh.get_tensor(name) for name in self.tensors}
        except Exception as exc:  # noqa: BLE001 - any unreadable shard is recomputed
            problems.append(f"unreadable ({exc})")
        if not problems:
            if meta.get("key") != self.key or meta.get("shard") != str(i):
                problems.append("key mismatch")
            if (record.get("start"), record.get("stop")) != (start, stop):
                problems.append("row range differs")
            for name, array in arrays.items():
                if array.ndim != 2 or array.shape[0] != stop - start:
                    problems.append(f"{name} shape {array.shape} for {stop - start} rows")
                elif array.dtype != np.float32 or not np.isfinite(array).all():
                    problems.append(f"{name} non-finite or non-float32 values")
        if problems:
            log.warning("cache shard %s does not match (%s); recomputing it", path,
                        ", ".join(problems))
            self.manifest.get("shards", {}).pop(str(i), None)
            return None
        return arrays

    def remove_stale_temporaries(self, max_age: float = STALE_TMP_SECONDS) -> list[Path]:
        """Delete ``.tmp-*`` files older than ``max_age`` seconds (left by killed runs)."""
        removed: list[Path] = []
        now = time.time()
        try:
            leftovers = list(self.dir.glob(".tmp-*"))
        except OSError:  # an unreadable folder: nothing to sweep (writing will say why)
            leftovers = []
        for path in leftovers:
            try:
                if now - path.stat().st_mtime > max_age:
                    path.unlink()
                    removed.append(path)
            except OSError:  # another run removed or replaced it meanwhile
                continue
        if removed:
            log.info("removed %d temporary files left by a killed run in %s", len(removed),
                     self.dir)
        return removed

    def write_shard(self, i: int, arrays: dict[str, np.ndarray], *, info: dict[str, Any],
                    model: dict[str, Any] | None = None) -> Path:
        """Write shard ``i`` atomically, then list it in the manifest (also atomically)."""
        start, stop = self.ranges[i]
        if sorted(arrays) != sorted(self.tensors):
            raise ValueError(f"shard tensors {sorted(arrays)} != {sorted(self.tensors)}")
        name = shard_name(i)
        data = safetensors_bytes(arrays, {"format": SHARD_FORMAT, "key": self.key,
                                          "shard": str(i), "start": str(start),
                                          "stop": str(stop)})
        path = self.dir / name
        manifest = self.manifest
        if model is not None and manifest.get("model") is None:
            manifest["model"] = model
        manifest["shards"][str(i)] = {"file": name, "start": start, "stop": stop,
                                      "sha256": hashlib.sha256(data).hexdigest(),
                                      "info": info}
        target = self.dir
        try:
            if not self.dir.is_dir():
                self.dir.mkdir(parents=True, exist_ok=True)
            elif not self._swept:
                self.remove_stale_temporaries()
            self._swept = True
            target = path
            atomic_write_bytes(path, data)
            target = self.manifest_path
            atomic_write_bytes(self.manifest_path,
                                json.dumps(manifest, indent=1, sort_keys=True,
                                           default=str).encode("utf-8"))
        except OSError as exc:
            manifest["shards"].pop(str(i), None)  # not on disk: not listed
            raise cache_write_error(target, exc) from None
        return path
