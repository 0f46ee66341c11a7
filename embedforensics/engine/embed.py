"""The embedding stage: records in, an :class:`EmbeddingSet` out, through the cache.

Each source is cached separately (key = model fingerprint + embedding settings + the exact
texts), so adding a source to a recipe re-embeds only that source. The model is loaded
only when some source misses the cache.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embedforensics.engine.cache import EmbeddingCache, cache_key
from embedforensics.models.resolve import ResolvedModel, effective_spec, settings_key
from embedforensics.recipe.schema import ModelSpec
from embedforensics.sources.base import Records

log = logging.getLogger(__name__)


@dataclass
class EmbeddingSet:
    """Embeddings of every record, in record order, with labels, ids and provenance."""

    X: np.ndarray
    labels: np.ndarray
    ids: list[str]
    source_ids: np.ndarray
    texts: list[str] | None
    provenance: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.X.shape[0])


def make_embedder(spec: ModelSpec, resolved: ResolvedModel):
    """The embedder for a model spec (text encoders here; other families plug in later)."""
    from embedforensics.models.hf_encoder import HFTextEmbedder

    return HFTextEmbedder(
        resolved.location, revision=resolved.revision, pooling=spec.pooling,
        normalize=spec.normalize, prefix=spec.prefix, max_length=spec.max_length,
        batch_size=spec.batch_size, dtype=spec.dtype, device=spec.device,
        trust_remote_code=spec.trust_remote_code)


def embed_records(records: Records, spec: ModelSpec, resolved: ResolvedModel, *,
                  cache_dir: str | Path | None, progress: bool = True) -> EmbeddingSet:
    """Embed all sources, reading and writing the cache unless ``cache_dir`` is None."""
    cache = EmbeddingCache(cache_dir) if cache_dir is not None else None
    spec, _ = effective_spec(spec, resolved)  # fill "auto" settings (model family rules)
    settings = settings_key(spec, resolved)
    embedder = None
    model_info: dict[str, Any] | None = None
    parts: list[np.ndarray] = []
    per_source: dict[str, Any] = {}
    for source in records.sources:
        started = time.perf_counter()
        key = cache_key(settings, source.fingerprint)
        hit = cache.load(key, expected_rows=len(source), text_fingerprint=source.fingerprint) \
            if cache is not None else None
        if hit is not None:
            array, info = hit
            status = "cache hit"
        else:
            if embedder is None:
                embedder = make_embedder(spec, resolved).load()
                model_info = embedder.info()
            array, stats = embedder.encode(source.texts, progress=progress)
            info = {"n_tokens": stats.n_tokens, "n_truncated": stats.n_truncated,
                    "max_length": embedder.effective_max_length,
                    "mean_tokens": float(np.mean(stats.token_lengths)) if source.texts else 0.0,
                    "model": model_info}
            status = "computed"
            if cache is not None:
                cache.save(key, array, text_fingerprint=source.fingerprint, info=info)
        per_source[source.source_id] = {
            "cache": status, "cache_key": key, "rows": len(source),
            "seconds": round(time.perf_counter() - started, 3),
            **{k: v for k, v in info.items() if k != "model"},
        }
        model_info = model_info or info.get("model")
        log.info("embedded %s: %d rows (%s)", source.source_id, len(source), status)
        parts.append(array)
    X = np.concatenate(parts, axis=0) if parts else np.zeros((0, 0), dtype=np.float32)
    return EmbeddingSet(
        X=X, labels=records.labels, ids=records.ids, source_ids=records.source_ids,
        texts=records.texts,
        provenance={"model": {"id": spec.id, "location": resolved.location,
                              "source": resolved.source, "revision": resolved.revision,
                              "fingerprint": resolved.fingerprint,
                              "config_sha256": resolved.config_hash,
                              "commit": resolved.commit, **(model_info or {})},
                    "embedding": {"dim": int(X.shape[1]) if X.ndim == 2 else 0,
                                  "per_source": per_source,
                                  "cache_dir": str(cache.root) if cache else None}})
