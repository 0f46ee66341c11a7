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


def export_embeddings(embeddings: Any, out_dir: str | Path) -> list[Path]:
    """Write the three files atomically (each via a temporary name and os.replace)."""
    from safetensors.numpy import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "embeddings.safetensors", out / "records.jsonl", out / "manifest.json"]
    tmp = [p.with_name(f".{p.name}.tmp") for p in paths]
    tensors = {"embeddings": np.ascontiguousarray(embeddings.X, dtype=np.float32)}
    for layer, values in (getattr(embeddings, "per_layer", None) or {}).items():
        tensors[f"layer.{layer}"] = np.ascontiguousarray(values, dtype=np.float32)
    save_file(tensors, str(tmp[0]),
              metadata={"format": EXPORT_FORMAT, "version": str(EXPORT_VERSION)})
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
