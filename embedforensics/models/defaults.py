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
- ``sentence-transformers``: ``modules.json`` beside the model → its module chain
  (:mod:`embedforensics.models.st_modules`): the pooling mode of its Pooling module, or
  ``"sentence-transformers"`` (run the folder's Pooling / Dense modules as
  ``SentenceTransformer.encode`` does) for any chain that is not plain mean / cls /
  last-token pooling; normalize true only if it ends with a Normalize module; no prefix. A
  chain that cannot be reproduced is refused, naming the module, unless the recipe sets
  ``model.pooling`` (then that pooling runs on the transformer's token states and the
  folder's Pooling / Dense modules are not used);
- ``encoder``: anything else → mean pooling, normalize true, no prefix.

Decoders are checked first, so ``intfloat/e5-mistral-7b-instruct`` is a decoder.
"""

from __future__ import annotations

import re
from typing import Any

from embedforensics.models.family import AUTO_FIELDS, GENERIC_DEFAULTS, fill_auto
from embedforensics.models.hub import FileReader, folder_reader, hub_cache_reader, read_json
from embedforensics.models.st_modules import refusal, st_defaults  # sentence-transformers

FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "decoder": {"pooling": "last_token", "normalize": True, "prefix": ""},
    "e5": {"pooling": "mean", "normalize": True, "prefix": "query: "},
    "encoder": dict(GENERIC_DEFAULTS),
}
# the readers live with the other hub helpers; imported here for callers of this module
__all__ = ["AUTO_FIELDS", "DECODER_MODEL_TYPES", "FAMILY_DEFAULTS", "FileReader", "apply",
           "family_defaults", "folder_reader", "hub_cache_reader", "is_decoder_config"]

DECODER_MODEL_TYPES = frozenset({
    "gpt2", "gpt_neo", "gpt_neox", "gptj", "llama", "mistral", "mixtral", "qwen2", "qwen2_moe",
    "qwen3", "qwen3_moe", "gemma", "gemma2", "gemma3", "gemma3_text", "phi", "phi3", "falcon",
    "opt", "bloom", "olmo", "olmo2", "starcoder2", "cohere", "stablelm", "granite", "smollm3",
})
_E5_NAME = re.compile(r"(^|[/_\-.])e5([/_\-.]|$)")


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
    config = read_json(read, "config.json")
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
        return family, _sentence_transformers_defaults(read, name)
    return family, dict(FAMILY_DEFAULTS.get(family, FAMILY_DEFAULTS["encoder"]))


def _sentence_transformers_defaults(read: FileReader, name: str = "") -> dict[str, Any]:
    """Pooling and normalisation as the folder's sentence-transformers modules say.

    The whole module chain is read (:mod:`embedforensics.models.st_modules`): a chain that
    is not plain mean / cls / last-token pooling gets pooling ``"sentence-transformers"``
    (the embedder then runs the folder's Pooling / Dense modules), and a chain that cannot
    be reproduced is refused when the recipe leaves ``model.pooling`` to the folder.
    """
    return st_defaults(read, name, FAMILY_DEFAULTS["encoder"])


def apply(spec: Any, family: str | None, defaults: dict[str, Any], *, spec_id: str = "",
          file: str | None = None) -> tuple[Any, dict[str, Any]]:
    """(spec with "auto" fields filled, {field: value} that were filled).

    The hf_text rule (the ``bundled`` family adds its models' own refusals);
    ``family`` and ``spec_id`` are kept for callers that pass them.
    """
    refusal(spec, defaults, file)  # st_modules: a chain it cannot reproduce, pooling auto
    return fill_auto(spec, defaults)
