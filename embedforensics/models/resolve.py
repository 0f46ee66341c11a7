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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    family: str | None = None  # see embedforensics.models.defaults
    defaults: dict[str, Any] = field(default_factory=dict)  # the family's pooling etc.
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


def directory_fingerprint(path: Path, *, weights: bool = True) -> tuple[str, str | None]:
    """(fingerprint of config + weights, sha256 of config.json) for a local model folder.

    ``weights=False`` returns only the config hash (for folders whose weights are already
    identified, such as converted bundled models).
    """
    h = hashlib.sha256()
    config = path / "config.json"
    config_hash = hashlib.sha256(config.read_bytes()).hexdigest() if config.is_file() else None
    h.update((config_hash or "").encode())
    if not weights:
        return "", config_hash
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
    from embedforensics.models import defaults as fam
    from embedforensics.registry import MODELS

    mid = spec.id
    from embedforensics.models.clip import is_open_clip_id, resolve_open_clip

    if is_open_clip_id(mid):
        return resolve_open_clip(spec, base_dir=base_dir, file=file, key=key,
                                 fingerprint=fingerprint)
    if mid.startswith("bundled:"):
        MODELS.check(mid, file=file, key=key)
        entry = MODELS.get(mid)
        try:
            if not fingerprint:  # validation: the package is there; convert nothing yet
                require = getattr(entry, "require", None)
                if require is not None:
                    require(key)
                    prepared = entry.prepared_path()
                    family, dflt = fam.family_defaults(
                        mid, fam.folder_reader(prepared) if prepared else lambda _: None,
                        entry.family)
                    return ResolvedModel(mid, str(prepared or ""), None, "", "bundled",
                                         family=family, defaults=dflt)
            path = Path(entry())
        except UserError as exc:
            raise UserError(exc.message, file=file, key=key) from None
        from embedforensics.models.bundled import conversion_fingerprint

        fp, cfg = ("", None)
        if fingerprint:
            converted_fp = conversion_fingerprint(path)
            fp, cfg = directory_fingerprint(path, weights=converted_fp is None)
            fp = converted_fp or fp
        family, dflt = fam.family_defaults(mid, fam.folder_reader(path),
                                           getattr(entry, "family", None))
        return ResolvedModel(mid, str(path), None, fp, "bundled", cfg, family=family,
                             defaults=dflt)
    local = _is_local(mid, base_dir)
    if local is not None:
        if not (local / "config.json").is_file() and not any(local.glob("*.gguf")):
            raise UserError(f"the folder '{local}' has no config.json, so it is not a "
                            "Hugging Face model folder.", file=file, key=key)
        fp, cfg = directory_fingerprint(local) if fingerprint else ("", None)
        family, dflt = fam.family_defaults(local.name, fam.folder_reader(local))
        return ResolvedModel(mid, str(local), None, fp, "local", cfg, family=family,
                             defaults=dflt)
    if mid.startswith((".", "/", "~")):
        raise UserError(f"the model folder '{mid}' does not exist.", file=file, key=key)
    family, dflt = fam.family_defaults(mid, fam.hub_cache_reader(mid, spec.revision))
    cached = _hub_cached_config(mid, spec.revision)
    if cached is None:
        if _offline():
            raise UserError(
                f"model '{mid}' is not available offline (not in the Hugging Face cache and "
                "HF_HUB_OFFLINE=1); download it with 'huggingface-cli download "
                f"{mid}', point model.id at a local folder, or use a bundled model "
                "('embedforensics models ls').", file=file, key=key)
        family, dflt = fam.family_defaults(mid, _hub_download_reader(mid, spec.revision))
        return ResolvedModel(mid, mid, spec.revision, "", "hub", family=family, defaults=dflt)
    commit = cached.parent.name
    h = hashlib.sha256(f"{mid}@{commit}".encode()).hexdigest()
    cfg = hashlib.sha256(cached.read_bytes()).hexdigest()
    return ResolvedModel(mid, mid, spec.revision or commit, h, "hub", cfg, commit,
                         family=family, defaults=dflt)


def _hub_download_reader(repo_id: str, revision: str | None):
    """Read small files of a hub model by downloading them (online, uncached models)."""

    def read(name: str) -> str | None:
        try:
            from huggingface_hub import hf_hub_download

            return Path(hf_hub_download(repo_id, name, revision=revision)).read_text(
                encoding="utf-8")
        except Exception:  # noqa: BLE001 - missing file or no network: no hint from it
            return None

    return read


def effective_spec(spec: ModelSpec, resolved: ResolvedModel, *, file: str | None = None
                   ) -> tuple[ModelSpec, dict[str, Any]]:
    """``spec`` with its "auto" (None) fields filled by the family's defaults.

    Returns the filled spec and the {field: value} that came from the family rule.
    """
    from embedforensics.models.defaults import FAMILY_DEFAULTS, apply

    return apply(spec, resolved.family, resolved.defaults or FAMILY_DEFAULTS["encoder"],
                 spec_id=resolved.spec_id, file=file)


def check_model_available(spec: ModelSpec, *, base_dir: Path, file: str | None, key: str
                          ) -> None:
    """Validation-time check: the model can be located (nothing is loaded or hashed)."""
    resolve_model(spec, base_dir=base_dir, file=file, key=key, fingerprint=False)


def settings_key(spec: ModelSpec, resolved: ResolvedModel) -> str:
    """Everything that changes an embedding, as a stable JSON string for cache keys.

    "auto" settings are keyed by their effective (family default) values.
    """
    from embedforensics.models.clip import image_text_settings

    spec, _ = effective_spec(spec, resolved)
    return json.dumps({
        **image_text_settings(spec, resolved),
        "model": resolved.fingerprint or resolved.location,
        "revision": resolved.revision,
        "pooling": spec.pooling, "normalize": spec.normalize, "prefix": spec.prefix,
        "max_length": spec.max_length, "dtype": spec.dtype,
        **({"layers": spec.layers} if spec.layers else {}),
        **({"compile": True} if spec.compile else {}),
    }, sort_keys=True)
