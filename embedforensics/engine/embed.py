"""The embedding stage: records in, an :class:`EmbeddingSet` out, through the shard cache.

Each source is cached separately (key = model fingerprint + embedding settings + the exact
texts), so adding a source to a recipe re-embeds only that source. A source is embedded
shard by shard (``model.shard_rows`` rows each): only one shard's tokens are held at a
time, each finished shard is written to disk at once (:mod:`embedforensics.engine.shards`),
and a run that is killed resumes at the first missing shard. Under ``accelerate launch``
every process runs its share of each shard's batches and the rows are gathered by index
(:mod:`embedforensics.engine.distributed`); only the main process writes the cache. The
model is loaded only when some shard misses the cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from embedforensics.engine.cache import cache_key
from embedforensics.models.protocol import IMAGE, Embedder, LengthPlanned, text_only_error
from embedforensics.models.resolve import ResolvedModel, effective_spec, settings_key
from embedforensics.models.resolve import make_embedder as _family_embedder
from embedforensics.recipe.schema import ModelSpec
from embedforensics.sources.base import Records

log = logging.getLogger(__name__)

# results larger than this (bytes, all layers) are assembled in memory-mapped .npy files
MMAP_BYTES_DEFAULT = 4 << 30


@dataclass
class EmbeddingSet:
    """Embeddings of every record, in record order, with labels, ids and provenance.

    ``per_layer`` maps each layer in ``model.layers`` as written (``"-1"``, ``"6"``) to its
    float32 [n, d] array, and ``X`` is the first of them; without ``layers`` it is empty.
    """

    X: np.ndarray
    labels: np.ndarray
    ids: Sequence[str]
    source_ids: np.ndarray
    texts: Sequence[str] | None
    provenance: dict[str, Any] = field(default_factory=dict)
    per_layer: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.X.shape[0])


def make_embedder(spec: ModelSpec, resolved: ResolvedModel) -> Embedder:
    """The (not yet loaded) embedder for a model spec, built by the model's family."""
    return _family_embedder(spec, resolved)


def tensor_names(spec: ModelSpec) -> list[str]:
    """Names of the stored tensors: 'embeddings', or 'layer.<L>' for each requested layer."""
    return [f"layer.{layer}" for layer in spec.layers] if spec.layers else ["embeddings"]


def _as_tensors(result: Any, names: list[str]) -> dict[str, np.ndarray]:
    """An embedder's output (an array, or a dict per layer) keyed by tensor name."""
    if isinstance(result, dict):
        tensors = {f"layer.{k}": np.asarray(v, dtype=np.float32) for k, v in result.items()}
    else:
        tensors = {names[0]: np.asarray(result, dtype=np.float32)}
    if sorted(tensors) != sorted(names):
        raise RuntimeError(f"the embedder returned {sorted(tensors)}, expected {names}")
    return tensors


def _stats_info(stats: Any) -> dict[str, Any]:
    lengths = getattr(stats, "token_lengths", None) or []
    return {"n_tokens": int(stats.n_tokens), "n_truncated": int(stats.n_truncated),
            "sum_tokens": int(sum(lengths)), "n_batches": int(getattr(stats, "n_batches", 0)),
            "n_padded_tokens": int(getattr(stats, "n_padded_tokens", 0)),
            "oom_splits": int(getattr(stats, "oom_splits", 0)),
            # unknown tokens, when the embedder counts them (older cache entries lack it)
            **({} if getattr(stats, "n_unk", None) is None else {"n_unk": int(stats.n_unk)})}


def _encode_shard(embedder: Embedder, texts: list[Any], names: list[str], workers: Any,
                  progress: bool, *, modality: str = "text", source_id: str = ""
                  ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Embed one shard's rows (texts, or images through an image-text model's image tower),
    split across the accelerate processes when there are several: a length-planned
    embedder's batches are shared out by tokens, any other gets a strided share of rows."""
    encode = embedder.encode
    if modality == IMAGE:
        if IMAGE not in embedder.modalities:
            raise text_only_error(source_id)
        encode = embedder.encode_images
    if workers.world == 1:
        result, stats = encode(texts, progress=progress)
        return _as_tensors(result, names), _stats_info(stats)
    if modality != IMAGE and embedder.plans_batches:
        from embedforensics.engine.batching import assign_batches

        planned = cast(LengthPlanned, embedder)
        batches, stats = planned.plan(texts)
        capped = np.minimum(np.asarray(stats.token_lengths, dtype=np.int64),
                            planned.effective_max_length)
        mine = [batches[j] for j in assign_batches(batches, capped, workers.world)
                [workers.rank]]
        index, parts = planned.encode_batches(texts, mine, progress=progress, stats=stats)
        empty = np.zeros((0, planned.embed_dim), np.float32)
        local = {name: parts.get("" if name == "embeddings" else name.removeprefix("layer."),
                                 empty) for name in names}
    else:
        index = np.arange(workers.rank, len(texts), workers.world, dtype=np.int64)
        result, stats = encode([texts[i] for i in index], progress=progress)
        local = _as_tensors(result, names)
    gathered = workers.gather_rows(index, local, len(texts))
    return gathered, _stats_info(stats)


def release_free_memory() -> None:
    """Hand memory freed by the last shard back to the operating system (glibc only).

    Tokenizer threads and varying batch shapes fragment glibc's malloc arenas; without
    this, a long run's resident memory creeps up by hundreds of MiB though nothing is held
    (measured in benchmarks/results/memory.md). Elsewhere this does nothing.
    """
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        _MALLOC_TRIM = False
        if sys.platform.startswith("linux"):
            import ctypes

            try:
                _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
            except (OSError, AttributeError):  # not glibc (e.g. musl)
                pass
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM: Any = None


class _Assembly:
    """The output arrays (one per tensor), in memory or memory-mapped when large."""

    def __init__(self, n_rows: int, names: list[str], scratch: Path | None, tag: str,
                 mmap_bytes: int | None = None):
        self.n_rows, self.names, self.scratch, self.tag = n_rows, names, scratch, tag
        self.mmap_bytes = mmap_bytes
        self.arrays: dict[str, np.ndarray] = {}

    def put(self, row0: int, tensors: dict[str, np.ndarray]) -> None:
        if not self.arrays:
            limit = int(os.environ.get("EMBEDFORENSICS_MMAP_BYTES", self.mmap_bytes
                                       if self.mmap_bytes is not None else MMAP_BYTES_DEFAULT))
            total = sum(self.n_rows * t.shape[1] * 4 for t in tensors.values())
            for name, t in tensors.items():
                shape = (self.n_rows, t.shape[1])
                if total > limit:
                    folder = self.scratch or Path(tempfile.gettempdir()) / "embedforensics"
                    path = folder / f"{self.tag}.{name}.npy"
                    try:
                        folder.mkdir(parents=True, exist_ok=True)
                        self.arrays[name] = np.lib.format.open_memmap(
                            path, mode="w+", dtype=np.float32, shape=shape)
                    except OSError as exc:
                        if self.scratch is None:
                            raise
                        from embedforensics.engine.shards import cache_write_error

                        raise cache_write_error(path, exc) from None
                else:
                    self.arrays[name] = np.empty(shape, dtype=np.float32)
        for name, t in tensors.items():
            self.arrays[name][row0:row0 + t.shape[0]] = t


def embed_records(records: Records, spec: ModelSpec, resolved: ResolvedModel, *,
                  cache_dir: str | Path | None, progress: bool = True,
                  mmap_bytes: int | None = None, assemble: bool = True,
                  settings: str | None = None) -> EmbeddingSet:
    """Embed all sources, reading and writing the shard cache unless ``cache_dir`` is None.

    ``spec`` may leave "auto" settings to the model family; ``settings`` is the
    :func:`~embedforensics.models.resolve.settings_key` of the effective spec when the
    caller has it already (the study pipeline computes it once per run).

    The result is assembled in memory-mapped ``.npy`` files when it is larger than
    ``mmap_bytes`` (default 4 GiB; the environment variable EMBEDFORENSICS_MMAP_BYTES
    overrides both), under ``<cache>/assembled`` or the temporary folder. With
    ``assemble=False`` nothing is assembled (``X`` has no rows): the caller only wants the
    shard cache filled, e.g. an accelerate worker that is not the main process.
    """
    from embedforensics.engine.distributed import Workers
    from embedforensics.engine.shards import ShardedEntry, shard_ranges

    workers = Workers()
    spec, _ = effective_spec(spec, resolved)  # fill "auto" settings (model family rules)
    settings = settings or settings_key(spec, resolved)
    names = tensor_names(spec)
    keys = [cache_key(settings, s.fingerprint) for s in records.sources]
    tag = hashlib.sha256("".join(keys).encode()).hexdigest()[:16]
    if not workers.is_main:  # each process assembles into its own scratch files
        tag += f".rank{workers.rank}"
    out = _Assembly(len(records), names, Path(cache_dir).expanduser() / "assembled"
                    if cache_dir is not None else None, tag, mmap_bytes)
    embedder = None
    model_info: dict[str, Any] | None = None
    per_source: dict[str, Any] = {}
    row0 = 0
    for source, key in zip(records.sources, keys, strict=True):
        started = time.perf_counter()
        entry = (ShardedEntry(cache_dir, key, n_rows=len(source), shard_rows=spec.shard_rows,
                              text_fingerprint=source.fingerprint, tensors=names)
                 if cache_dir is not None else None)
        ranges = entry.ranges if entry is not None else shard_ranges(len(source),
                                                                     spec.shard_rows)
        infos: list[dict[str, Any]] = []
        reused = computed = 0
        for i, (start, stop) in enumerate(ranges):
            tensors = entry.load_shard(i) if entry is not None else None
            # every process must take the same branch: the main process decides
            hit = workers.broadcast(tensors is not None)
            if hit and tensors is None:
                raise RuntimeError(f"cache shard {i} of {key} is readable by the main "
                                   "process but not by this one")
            if hit:
                reused += 1
                infos.append(entry.manifest["shards"][str(i)].get("info", {}))  # type: ignore[union-attr]
                model_info = model_info or entry.manifest.get("model")  # type: ignore[union-attr]
            else:
                if embedder is None:
                    embedder = make_embedder(spec, resolved).load()
                    model_info = embedder.info()
                items = (source.images[start:stop] if source.modality == "image"
                         else source.texts[start:stop])
                tensors, info = _encode_shard(embedder, items, names, workers, progress,
                                              modality=source.modality,
                                              source_id=source.source_id)
                infos.append(info)
                computed += 1
                if entry is not None and workers.is_main:
                    entry.write_shard(i, tensors, info=info, model=model_info)
                release_free_memory()
            if assemble:
                out.put(row0 + start, tensors)
        workers.wait()
        n_tok = sum(int(x.get("n_tokens", 0)) for x in infos)
        status = ("cache hit" if computed == 0 else "computed" if reused == 0
                  else f"resumed ({reused} of {len(ranges)} shards from the cache)")
        per_source[source.source_id] = {
            "cache": status, "cache_key": key, "rows": len(source),
            "seconds": round(time.perf_counter() - started, 3),
            "shards": len(ranges), "shards_reused": reused, "shards_computed": computed,
            "n_tokens": n_tok,
            "n_truncated": sum(int(x.get("n_truncated", 0)) for x in infos),
            "n_padded_tokens": sum(int(x.get("n_padded_tokens", 0)) for x in infos),
            "oom_splits": sum(int(x.get("oom_splits", 0)) for x in infos),
            "max_length": (model_info or {}).get("max_length"),
            "modality": source.modality,
            "mean_tokens": (sum(int(x.get("sum_tokens", 0)) for x in infos) / len(source)
                            if len(source) else 0.0),
            # share of unknown tokens among the (untruncated, special-free) tokens: only
            # when every shard counted them
            "unk_share": (sum(int(x["n_unk"]) for x in infos)
                          / max(1, sum(int(x.get("sum_tokens", 0)) for x in infos))
                          if infos and all("n_unk" in x for x in infos) else None),
        }
        log.info("embedded %s: %d rows (%s)", source.source_id, len(source), status)
        row0 += len(source)
    arrays = out.arrays or {n: np.zeros((0, 0), dtype=np.float32) for n in names}
    per_layer = ({str(layer): arrays[f"layer.{layer}"] for layer in spec.layers}
                 if spec.layers else {})
    X = arrays[names[0]]
    return EmbeddingSet(
        X=X, labels=records.labels, ids=records.ids, source_ids=records.source_ids,
        texts=records.texts, per_layer=per_layer,
        provenance={"model": {"id": spec.id, "location": resolved.location,
                              "source": resolved.source, "revision": resolved.revision,
                              "fingerprint": resolved.fingerprint,
                              "config_sha256": resolved.config_hash,
                              "commit": resolved.commit, **(model_info or {})},
                    "embedding": {"dim": int(X.shape[1]) if X.ndim == 2 else 0,
                                  "layers": [str(x) for x in spec.layers] if spec.layers
                                  else None,
                                  "processes": workers.world,
                                  "shard_rows": spec.shard_rows,
                                  "per_source": per_source,
                                  "cache_dir": str(Path(cache_dir).expanduser())
                                  if cache_dir is not None else None}})
