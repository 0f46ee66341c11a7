"""Shared Hugging Face generation code for the ``translate`` (hf engine) and ``generate``
transforms: resolve a model id like ``model.id`` does, load it once, generate in batches.

Decoder-only models get left padding (so every row's continuation starts at the same
position) and a pad token (the end-of-sequence token when the tokenizer has none).
Sampling is seeded per batch from the transform's seed and the batch's exact prompts, so a
batch's outputs do not depend on what ran before it.
"""

from __future__ import annotations

import hashlib
import logging
import string
from pathlib import Path
from typing import Any

from embedforensics.errors import UserError

log = logging.getLogger(__name__)


def resolve(model_id: str, base_dir: Path, *, file: str | None, key: str | None,
            fingerprint: bool = True) -> Any:
    """Locate a model as ``model.id`` would (bundled:NAME, a folder, a hub id)."""
    from embedforensics.models.resolve import resolve_model
    from embedforensics.recipe.schema import ModelSpec

    return resolve_model(ModelSpec(id=model_id), base_dir=base_dir, file=file,
                         key=key or "model", fingerprint=fingerprint)


def template_fields(template: str) -> list[str]:
    """The ``{field}`` names used by a str.format template (raises ValueError if malformed)."""
    return [f for _, f, _, _ in string.Formatter().parse(template) if f]


def check_template(template: str, allowed: set[str]) -> str:
    try:
        fields = template_fields(template)
    except ValueError as exc:
        raise ValueError(f"the prompt template is malformed ({exc})") from None
    bad = [f for f in fields if f not in allowed]
    if bad:
        raise ValueError(f"the prompt template uses unknown field '{{{bad[0]}}}'; fields: "
                         + ", ".join(f"{{{a}}}" for a in sorted(allowed)))
    if not fields:
        raise ValueError("the prompt template uses no field, so every prompt would be the "
                         "same; put {text} (or another field) in it")
    return template


class Generator:
    """A loaded Hugging Face model that continues prompts (causal LM or seq2seq)."""

    def __init__(self, location: str, *, revision: str | None = None, dtype: str = "float32",
                 device: str = "auto"):
        self.location = location
        self.revision = revision
        self.dtype = dtype
        self.device = device
        self.model: Any = None
        self.tokenizer: Any = None
        self.seq2seq = False

    def load(self) -> Generator:
        import torch
        from transformers import (
            AutoConfig,
            AutoModelForCausalLM,
            AutoModelForSeq2SeqLM,
            AutoTokenizer,
        )

        from embedforensics.models.hf_encoder import pick_device

        config = AutoConfig.from_pretrained(self.location, revision=self.revision)
        self.seq2seq = bool(getattr(config, "is_encoder_decoder", False))
        cls = AutoModelForSeq2SeqLM if self.seq2seq else AutoModelForCausalLM
        self.tokenizer = AutoTokenizer.from_pretrained(self.location, revision=self.revision)
        if not self.seq2seq:
            self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = getattr(torch, self.dtype)
        self.model = cls.from_pretrained(self.location, revision=self.revision, dtype=dtype)
        self.model.to(pick_device(self.device)).eval()
        return self

    def generate(self, prompts: list[str], *, batch_size: int, seed: int, max_new_tokens: int,
                 do_sample: bool, temperature: float = 1.0, top_p: float = 1.0,
                 top_k: int | None = None, repetition_penalty: float | None = None
                 ) -> list[str]:
        """The decoded new tokens for each prompt, in input order."""
        import torch

        out: list[str] = []
        kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": do_sample,
                                  "pad_token_id": self.tokenizer.pad_token_id}
        if do_sample:
            kwargs.update(temperature=temperature, top_p=top_p, top_k=top_k or 0)
        if repetition_penalty is not None:
            kwargs["repetition_penalty"] = repetition_penalty
        device = next(self.model.parameters()).device
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start:start + batch_size]
            digest = hashlib.sha256(f"{seed}\x1f".encode() + "\x1e".join(batch).encode())
            torch.manual_seed(int.from_bytes(digest.digest()[:8], "little") % (2**63))
            enc = self.tokenizer(batch, return_tensors="pt", padding=True).to(device)
            with torch.inference_mode():
                ids = self.model.generate(**enc, **kwargs)
            new = ids if self.seq2seq else ids[:, enc["input_ids"].shape[1]:]
            out.extend(self.tokenizer.batch_decode(new, skip_special_tokens=True))
        return out


def load_generator(location: str, revision: str | None, dtype: str, device: str, *,
                   file: str | None, key: str | None) -> Generator:
    try:
        return Generator(location, revision=revision, dtype=dtype, device=device).load()
    except (OSError, ValueError) as exc:
        raise UserError(f"could not load the model '{location}' for generation: "
                        f"{str(exc).splitlines()[0]}", file=file, key=key) from None


class LanguageModelUser:
    """Mixin for transforms that run a Hugging Face model: the model is resolved once (its
    fingerprint is part of the transform's cache key) and loaded on first use only, so a
    fully cached transform never loads it. Errors name ``<key>.model``."""

    _generator: Any = None
    _resolved: Any = None
    file: str | None
    key: str | None
    base_dir: Path

    def _model_key(self) -> str | None:
        return f"{self.key}.model" if self.key else None

    def _model_identity(self, model_id: str) -> dict[str, Any]:
        self._resolved = resolve(model_id, self.base_dir, file=self.file, key=self._model_key())
        return {"model": self._resolved.fingerprint or self._resolved.location,
                "revision": self._resolved.revision}

    def _language_model(self, model_id: str, dtype: str, device: str) -> Generator:
        if self._generator is None:
            if self._resolved is None:
                self._model_identity(model_id)
            self._generator = load_generator(self._resolved.location, self._resolved.revision,
                                             dtype, device, file=self.file,
                                             key=self._model_key())
        return self._generator
