"""Hugging Face text encoders: AutoTokenizer + AutoModel, pooled to one vector per text.

What a sentence-transformers user expects, with two differences: batches are sorted by
*token* length (not characters), and the number of inputs cut at ``max_length`` is counted
and reported. Runs under ``torch.inference_mode``; embeddings come back in input order.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from embedforensics.errors import UserError
from embedforensics.models.decoder import decoder_inputs

log = logging.getLogger(__name__)

POOLINGS = ("mean", "cls", "pooler", "last_token")


@dataclass
class EncodeStats:
    """What happened while encoding: tokens seen, inputs truncated, batches run."""

    n_texts: int = 0
    n_tokens: int = 0
    n_truncated: int = 0
    n_batches: int = 0
    token_lengths: list[int] = field(default_factory=list)


def pick_device(requested: str = "auto") -> str:
    """'auto' → accelerate's choice for this process (cuda, mps, or cpu)."""
    if requested != "auto":
        return requested
    from accelerate import PartialState

    return str(PartialState().device)


def pool(hidden: Any, mask: Any, how: str, pooler_output: Any = None) -> Any:
    """Reduce token states [b, t, d] to one vector per row under the attention mask.

    ``last_token`` takes the last position whose mask is 1, which is right for both left
    and right padding.
    """
    import torch

    if how == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    if how == "cls":
        return hidden[:, 0]
    if how == "pooler":
        if pooler_output is None:
            raise UserError("pooling 'pooler' needs a model with a pooler layer; this model "
                            "returns none (use 'mean' or 'cls').", key="model.pooling")
        return pooler_output
    if how == "last_token":
        positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
        last = (positions * mask.long()).argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ValueError(f"unknown pooling {how!r}")


class HFTextEmbedder:
    """Embed texts with any Hugging Face encoder (AutoModel) and a pooling rule."""

    def __init__(self, location: str, *, revision: str | None = None, pooling: str = "mean",
                 normalize: bool = True, prefix: str = "", max_length: int | None = None,
                 batch_size: int = 32, dtype: str = "float32", device: str = "auto",
                 trust_remote_code: bool = False):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}; got {pooling!r}")
        self.location = location
        self.revision = revision
        self.pooling = pooling
        self.normalize = normalize
        self.prefix = prefix
        self.max_length = max_length
        self.batch_size = batch_size
        self.dtype = dtype
        self.device = device
        self.trust_remote_code = trust_remote_code
        self._model: Any = None
        self._tokenizer: Any = None

    # ---------------------------------------------------------------- loading
    def load(self) -> HFTextEmbedder:
        """Load tokenizer and model (once); translate 'not found' into a UserError."""
        if self._model is not None:
            return self
        import torch
        from transformers import AutoModel, AutoTokenizer

        kwargs: dict[str, Any] = {"revision": self.revision,
                                  "trust_remote_code": self.trust_remote_code}
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(self.location, **kwargs)
            dtype = getattr(torch, self.dtype)
            try:
                model = AutoModel.from_pretrained(self.location, dtype=dtype,
                                                  attn_implementation="sdpa", **kwargs)
            except (ValueError, ImportError) as exc:
                if "sdpa" not in str(exc).lower() and "attn" not in str(exc).lower():
                    raise
                model = AutoModel.from_pretrained(self.location, dtype=dtype, **kwargs)
        except OSError as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"could not load model '{self.location}': {first}",
                            key="model.id") from None
        self.device = pick_device(self.device)
        self._model = model.to(self.device).eval()
        if self._tokenizer.pad_token is None:
            # decoder tokenizers often lack one; any id works because the mask hides it
            self._tokenizer.pad_token = self._tokenizer.eos_token or self._tokenizer.unk_token
        return self

    @property
    def effective_max_length(self) -> int:
        """The recipe's max_length, else sentence-transformers' setting, else the model's."""
        if self.max_length is not None:
            return self.max_length
        st_config = os.path.join(str(self.location), "sentence_bert_config.json")
        if os.path.isfile(st_config):
            import json

            with open(st_config, encoding="utf-8") as fh:
                value = json.load(fh).get("max_seq_length")
            if value:
                return int(value)
        limit = getattr(self._tokenizer, "model_max_length", None) or 512
        positions = getattr(self._model.config, "max_position_embeddings", None)
        candidates = [v for v in (limit, positions) if v and v < 1_000_000]
        return int(min(candidates)) if candidates else 512

    def info(self) -> dict[str, Any]:
        """Provenance: model class, size, dtype, device, attention, pooling, max length."""
        self.load()
        config = self._model.config
        return {
            "model_class": type(self._model).__name__,
            "model_type": getattr(config, "model_type", None),
            "hidden_size": getattr(config, "hidden_size", None),
            "n_parameters": int(sum(p.numel() for p in self._model.parameters())),
            "dtype": self.dtype,
            "device": str(self.device),
            "attn_implementation": getattr(config, "_attn_implementation", None),
            "pooling": self.pooling,
            "normalize": self.normalize,
            "prefix": self.prefix,
            "max_length": self.effective_max_length,
            "commit": getattr(config, "_commit_hash", None),
        }

    # ---------------------------------------------------------------- encoding
    def token_lengths(self, texts: list[str]) -> list[int]:
        """Untruncated token counts, special tokens included."""
        self.load()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            enc = self._tokenizer([self.prefix + t for t in texts], add_special_tokens=True,
                                  truncation=False, return_attention_mask=False,
                                  verbose=False)
        return [len(ids) for ids in enc["input_ids"]]

    def encode(self, texts: list[str], *, progress: bool = True
               ) -> tuple[np.ndarray, EncodeStats]:
        """Embed ``texts`` in input order; float32 [n, d]."""
        import torch
        from tqdm.auto import tqdm

        self.load()
        stats = EncodeStats(n_texts=len(texts))
        if not texts:
            hidden = getattr(self._model.config, "hidden_size", 0)
            return np.zeros((0, hidden), dtype=np.float32), stats
        max_len = self.effective_max_length
        lengths = self.token_lengths(texts)
        stats.token_lengths = lengths
        stats.n_truncated = int(sum(n > max_len for n in lengths))
        stats.n_tokens = int(sum(min(n, max_len) for n in lengths))
        order = np.argsort(-np.asarray(lengths), kind="stable")  # longest first: OOM early
        out: np.ndarray | None = None
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        stats.n_batches = len(batches)
        with torch.inference_mode():
            for batch in tqdm(batches, desc="embedding", unit="batch", disable=not progress
                              or None, leave=False):
                enc = self._tokenizer([self.prefix + texts[i] for i in batch], padding=True,
                                      truncation=True, max_length=max_len, return_tensors="pt")
                enc = {k: v.to(self.device) for k, v in enc.items()}
                enc = decoder_inputs(enc, self._model, self._tokenizer.padding_side)
                outputs = self._model(**enc)
                hidden = outputs.last_hidden_state
                vectors = pool(hidden, enc["attention_mask"], self.pooling,
                               getattr(outputs, "pooler_output", None)).float()
                if self.normalize:
                    vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
                array = vectors.cpu().numpy()
                if out is None:
                    out = np.empty((len(texts), array.shape[1]), dtype=np.float32)
                out[batch] = array
        return cast(np.ndarray, out), stats  # texts is non-empty, so out was filled
