"""Every hidden state of a compared model on a set of inputs, pooled per input, cached.

Representation-level comparators (``representations``, and any other that needs a model's
internal activations) ask for a model's pooled hidden states on a sample of the compare
rows. One forward pass per model gives all layers at once:

- a Hugging Face checkpoint: ``hidden_states`` of the encoder (index 0 = the embeddings
  output, ``k`` = after block ``k``), pooled over tokens by a masked mean or the first
  token or the last real token (decoders), on the texts tokenised with the comparison's
  ``max_length``;
- a head: its input embeddings (index 0), then the output of every non-``Linear`` module
  before its last ``Linear`` (an MLP head's hidden activation); a logistic head has only
  index 0.

Checkpoint states are cached under ``<cache root>/hidden-states`` keyed by the checkpoint's
file fingerprint, the texts, the token limit and the pooling (float32, exactly what the
model computed), so a second comparison, or a second comparator in one run, does not run
the model again. Heads are cheap and are not cached.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np

from embedforensics.compare.checkpoints import _sha256_json
from embedforensics.engine.cache import EmbeddingCache, cache_key

log = logging.getLogger(__name__)

HIDDEN_CACHE_VERSION = "hidden-states-v1"
Pooling = Literal["mean", "cls", "last"]


def head_states(module: Any, X: np.ndarray) -> list[np.ndarray]:
    """A head's representations of embeddings ``X``: the input, then each activation before
    its last ``Linear`` (float64)."""
    import torch

    h = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    children = list(module.children()) if hasattr(module, "children") else []
    last = max((i for i, m in enumerate(children) if isinstance(m, torch.nn.Linear)),
               default=None)
    states = [h.double().numpy()]
    with torch.inference_mode():
        for m in children[:last] if last is not None else []:
            h = m(h)
            if not isinstance(m, torch.nn.Linear):
                states.append(h.double().numpy())
    return states


def checkpoint_states(module: Any, tokenizer: Any, texts: list[str], *, pooling: Pooling,
                      batch_size: int, max_length: int | None) -> list[np.ndarray]:
    """Pooled ``hidden_states`` of a Hugging Face model on ``texts`` (float32, one array
    per hidden-state index)."""
    import torch

    from embedforensics.models.hf_encoder import pool  # the embedding engine's pooling

    parts: list[list[np.ndarray]] = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt")
            hidden = module(**enc, output_hidden_states=True).hidden_states
            how = {"last": "last_token"}.get(pooling, pooling)  # the engine's names
            pooled = []
            for hs in hidden:
                v = pool(hs, enc["attention_mask"], how)
                pooled.append(v.float().numpy())
            parts.append(pooled)
    return [np.concatenate([b[k] for b in parts]) for k in range(len(parts[0]))]


def model_states(ctx: Any, scored: Any, rows: np.ndarray, *, texts: Any, embeddings: Any,
                 pooling: Pooling, batch_size: int, max_length: int | None
                 ) -> tuple[list[np.ndarray], bool]:
    """Every hidden state (float64) of one compared model on the record rows ``rows``, and
    whether it is a head without a hidden layer (its only representation is its input).

    ``ctx`` is the :class:`~embedforensics.study.context.StudyContext` (for the cache; None:
    no cache), ``scored`` a :class:`~embedforensics.compare.checkpoints.Scored`, ``texts``
    and ``embeddings`` the prepared records' texts and embeddings (heads read embeddings).
    """
    if scored.scorer.input == "embeddings":
        module, _ = scored.scorer.torch_module()
        states = head_states(module, np.asarray(embeddings.X[rows], dtype=np.float32))
        return states, len(states) == 1
    return checkpoint_hidden_states(ctx, scored, [str(texts[i]) for i in rows],
                                    pooling=pooling, batch_size=batch_size,
                                    max_length=max_length), False


def checkpoint_hidden_states(ctx: Any, scored: Any, texts: list[str], *, pooling: Pooling,
                             batch_size: int, max_length: int | None) -> list[np.ndarray]:
    """:func:`checkpoint_states` through the hidden-state cache (float64 out)."""
    root = ctx.cache_dir("hidden-states") if ctx is not None else None
    cache = EmbeddingCache(root) if root is not None else None
    text_fp = _sha256_json({"texts": texts, "max_length": max_length, "pooling": pooling})
    key = cache_key(HIDDEN_CACHE_VERSION, scored.scorer.fingerprint, text_fp)
    if cache is not None:
        hit = cache.load(key, expected_rows=len(texts), text_fingerprint=text_fp)
        if hit is not None:
            array, info = hit
            n_states = int(info.get("n_states", 0))
            if n_states and array.shape[1] % n_states == 0:
                return [a.astype(np.float64) for a in np.split(array, n_states, axis=1)]
    module, tokenizer = scored.scorer.torch_module()
    states = checkpoint_states(module, tokenizer, texts, pooling=pooling,
                               batch_size=batch_size, max_length=max_length)
    if cache is not None:
        cache.save(key, np.concatenate(states, axis=1), text_fingerprint=text_fp,
                   info={"model": str(scored.path), "n_states": len(states),
                         "pooling": pooling})
    return [s.astype(np.float64) for s in states]

