"""Turn ``model.id`` into a loadable location and a content fingerprint, without loading.

``bundled:NAME`` → a directory inside an installed package; a local directory → itself;
anything else → a Hugging Face hub id, looked up in the local Hugging Face cache. The
fingerprint (config hash + weights hash, or the hub commit) keys the embedding cache, so a
warm cache never needs the model loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from embedforensics.errors import UserError
from embedforensics.recipe.schema import ModelSpec

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
# small files besides config.json that change what a model computes (image preprocessing,
# open_clip's architecture + preprocess config)
_CONFIG_FILES = ("open_clip_config.json", "preprocessor_config.json", "processor_config.json")
_FULL_HASH_LIMIT = 2 << 30  # hash whole weight files up to 2 GiB; larger ones are sampled


@dataclass
class ResolvedModel:
    """Where a model lives and what identifies its exact weights."""

    spec_id: str
    location: str  # a local directory or a hub id for from_pretrained
    revision: str | None
    fingerprint: str
    source: str  # "bundled", "local" or "hub"
    config_hash: str | None = None
    commit: str | None = None
    pretrained: str | None = None  # open_clip: the pretrained tag or checkpoint file


def _file_digest(path: Path) -> str:
    size = path.stat().st_size
    h = hashlib.sha256()
    with path.open("rb") as fh:
        if size <= _FULL_HASH_LIMIT:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
        else:  # sampled: size + 64 evenly spaced 1 MiB windows
            h.update(str(size).encode())
            for k in range(64):
                fh.seek(k * (size - (1 << 20)) // 63)
                h.update(fh.read(1 << 20))
    return h.hexdigest()


def directory_fingerprint(path: Path) -> tuple[str, str | None]:
    """(fingerprint of config + weights, sha256 of config.json) for a local model folder."""
    h = hashlib.sha256()
    config = path / "config.json"
    config_hash = hashlib.sha256(config.read_bytes()).hexdigest() if config.is_file() else None
    h.update((config_hash or "").encode())
    for f in sorted(path.rglob("*")):
        if f.is_file() and (f.suffix in _WEIGHT_SUFFIXES or f.name.startswith("tokenizer")
                            or f.name in _CONFIG_FILES):
            h.update(str(f.relative_to(path)).encode())
            h.update(_file_digest(f).encode())
    return h.hexdigest(), config_hash


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def _hub_cached_config(repo_id: str, revision: str | None) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on huggingface_hub
        return None
    try:
        hit = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    except Exception:  # noqa: BLE001 - malformed ids are reported by the caller
        return None
    return Path(hit) if isinstance(hit, str) else None


def _is_local(spec_id: str, base_dir: Path) -> Path | None:
    for candidate in (Path(spec_id).expanduser(), base_dir / spec_id):
        if candidate.is_dir():
            return candidate.resolve()
    return None


def resolve_model(spec: ModelSpec, *, base_dir: Path, file: str | None = None,
                  key: str = "model.id", fingerprint: bool = True) -> ResolvedModel:
    """Locate the model named by ``spec.id``; raise a UserError if it cannot be had."""
    from embedforensics.registry import MODELS

    mid = spec.id
    from embedforensics.models.clip import is_open_clip_id, resolve_open_clip

    if is_open_clip_id(mid):
        return resolve_open_clip(spec, base_dir=base_dir, file=file, key=key,
                                 fingerprint=fingerprint)
    if mid.startswith("bundled:"):
        MODELS.check(mid, file=file, key=key)
        try:
            path = Path(MODELS.get(mid)())
        except UserError as exc:
            raise UserError(exc.message, file=file, key=key) from None
        fp, cfg = directory_fingerprint(path) if fingerprint else ("", None)
        return ResolvedModel(mid, str(path), None, fp, "bundled", cfg)
    local = _is_local(mid, base_dir)
    if local is not None:
        if not (local / "config.json").is_file() and not any(local.glob("*.gguf")):
            raise UserError(f"the folder '{local}' has no config.json, so it is not a "
                            "Hugging Face model folder.", file=file, key=key)
        fp, cfg = directory_fingerprint(local) if fingerprint else ("", None)
        return ResolvedModel(mid, str(local), None, fp, "local", cfg)
    if mid.startswith((".", "/", "~")):
        raise UserError(f"the model folder '{mid}' does not exist.", file=file, key=key)
    cached = _hub_cached_config(mid, spec.revision)
    if cached is None:
        if _offline():
            raise UserError(
                f"model '{mid}' is not available offline (not in the Hugging Face cache and "
                "HF_HUB_OFFLINE=1); download it with 'huggingface-cli download "
                f"{mid}', point model.id at a local folder, or use a bundled model "
                "('embedforensics ls models').", file=file, key=key)
        return ResolvedModel(mid, mid, spec.revision, "", "hub")
    commit = cached.parent.name
    h = hashlib.sha256(f"{mid}@{commit}".encode()).hexdigest()
    cfg = hashlib.sha256(cached.read_bytes()).hexdigest()
    return ResolvedModel(mid, mid, spec.revision or commit, h, "hub", cfg, commit)


def check_model_available(spec: ModelSpec, *, base_dir: Path, file: str | None, key: str
                          ) -> None:
    """Validation-time check: the model can be located (nothing is loaded or hashed)."""
    resolve_model(spec, base_dir=base_dir, file=file, key=key, fingerprint=False)


def settings_key(spec: ModelSpec, resolved: ResolvedModel) -> str:
    """Everything that changes an embedding, as a stable JSON string for cache keys."""
    from embedforensics.models.clip import image_text_settings

    return json.dumps({
        **image_text_settings(spec, resolved),
        "model": resolved.fingerprint or resolved.location,
        "revision": resolved.revision,
        "pooling": spec.pooling, "normalize": spec.normalize, "prefix": spec.prefix,
        "max_length": spec.max_length, "dtype": spec.dtype,
    }, sort_keys=True)
