"""Export embeddings for other tools: ``embedforensics embed RECIPE --output DIR``.

Format (readable without embedforensics)::

    DIR/embeddings.safetensors   tensor "embeddings", float32 [n, d], row i = record i;
                                 with model.layers also one "layer.<L>" tensor per layer
                                 as written in the recipe ("layer.-1", "layer.6"), and
                                 "embeddings" is the first of them
    DIR/records.jsonl            one JSON object per row, in the same order:
                                 {"index": i, "id": ..., "label": ..., "source": ...}
    DIR/manifest.json            format name and version, n, d, model provenance

Read it with ``safetensors.numpy.load_file(DIR/embeddings.safetensors)["embeddings"]``
and any JSON-lines reader (e.g. ``pandas.read_json(..., lines=True)``). The embedding
cache's own shard folders are readable without embedforensics too (format in
:mod:`embedforensics.engine.shards` and the README).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

EXPORT_FORMAT = "embedforensics-export"
EXPORT_VERSION = 1


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str],
                      *, block_rows: int = 65_536) -> None:
    """Write 2-d float32 tensors as a safetensors file, ``block_rows`` rows at a time.

    ``safetensors.numpy.save_file`` serialises every tensor to bytes in memory first; an
    export of millions of rows (assembled in a memory-mapped array) must not need that
    much RAM. The layout is safetensors' own (little-endian u64 header length, a JSON
    header padded with spaces to a multiple of 8 bytes, then the tensors' bytes in header
    order); the tests read these files back with the safetensors library.
    """
    header: dict[str, Any] = {"__metadata__": dict(metadata)}
    offset = 0
    for name, array in tensors.items():
        if array.ndim != 2:
            raise ValueError(f"tensor {name} must be 2-d, not {array.shape}")
        size = int(array.shape[0]) * int(array.shape[1]) * 4
        header[name] = {"dtype": "F32", "shape": [int(s) for s in array.shape],
                        "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    with path.open("wb") as fh:
        fh.write(len(encoded).to_bytes(8, "little"))
        fh.write(encoded)
        for array in tensors.values():
            for start in range(0, array.shape[0], block_rows):
                block = np.ascontiguousarray(array[start:start + block_rows], dtype="<f4")
                fh.write(block.tobytes())
        fh.flush()
        os.fsync(fh.fileno())


def export_embeddings(embeddings: Any, out_dir: str | Path) -> list[Path]:
    """Write the three files atomically (each via a temporary name and os.replace).

    Everything is written in blocks, so exporting a memory-mapped embedding matrix of
    millions of rows does not load it into RAM.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "embeddings.safetensors", out / "records.jsonl", out / "manifest.json"]
    tmp = [p.with_name(f".{p.name}.tmp") for p in paths]
    tensors = {"embeddings": embeddings.X}
    for layer, values in (getattr(embeddings, "per_layer", None) or {}).items():
        tensors[f"layer.{layer}"] = values
    write_safetensors(tmp[0], tensors,
                      {"format": EXPORT_FORMAT, "version": str(EXPORT_VERSION)})
    with tmp[1].open("w", encoding="utf-8") as fh:
        for i, (rid, label, source) in enumerate(zip(embeddings.ids, embeddings.labels,
                                                     embeddings.source_ids, strict=True)):
            fh.write(json.dumps({"index": i, "id": rid, "label": str(label),
                                 "source": str(source)}, ensure_ascii=False) + "\n")
    manifest = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "n": len(embeddings),
                "dim": int(embeddings.X.shape[1]), "tensors": sorted(tensors),
                "provenance": embeddings.provenance}
    tmp[2].write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
    for t, p in zip(tmp, paths, strict=True):
        os.replace(t, p)
    return paths
