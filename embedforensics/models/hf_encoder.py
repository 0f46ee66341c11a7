"""Hugging Face text encoders: AutoTokenizer + AutoModel, pooled to one vector per text.

What a sentence-transformers user expects, with these differences: batches are sorted by
*token* length (not characters) and bounded by a token budget as well as a count
(:mod:`embedforensics.engine.batching`); a batch that runs out of memory is split and
retried; several hidden layers can be pooled from one forward pass (``layers``); the
number of inputs cut at ``max_length`` is counted and reported. Runs under
``torch.inference_mode``; embeddings come back in input order.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embedforensics.errors import UserError, first_line
from embedforensics.models.decoder import decoder_inputs
from embedforensics.models.st_modules import ST_POOLING

log = logging.getLogger(__name__)

# ST_POOLING runs a sentence-transformers folder's Pooling / Dense modules
# (embedforensics.models.st_modules); the defaults choose it, recipes cannot name it
POOLINGS = ("mean", "cls", "pooler", "last_token", ST_POOLING)


@dataclass
class EncodeStats:
    """What happened while encoding: tokens seen, inputs truncated, batches run."""

    n_texts: int = 0
    n_tokens: int = 0
    n_truncated: int = 0
    n_batches: int = 0
    n_padded_tokens: int = 0
    oom_splits: int = 0
    token_lengths: list[int] = field(default_factory=list)
    #: tokens the tokenizer could not map ([UNK] / <unk>); None when not counted
    n_unk: int | None = None


def pick_device(requested: str = "auto") -> str:
    """'auto' → accelerate's choice for this process (cuda, mps, or cpu)."""
    if requested != "auto":
        return requested
    from embedforensics.engine.distributed import accelerate_state

    return str(accelerate_state().device)


def load_error(what: str, exc: BaseException) -> UserError:
    """The one sentence for a model that would not load: ``what`` ("could not load model
    'x'"), then the first line of the library's error."""
    return UserError(f"{what}: {first_line(exc)}", key="model.id")


class EmbedderSettings:
    """The settings every embedder takes (where the model is, prefix, normalisation, token
    limit, batch size, dtype, device) and the model it loads once (``_model``)."""

    def __init__(self, location: str, *, normalize: bool = True, prefix: str = "",
                 max_length: int | None = None, batch_size: int = 32, dtype: str = "float32",
                 device: str = "auto"):
        self.location = location
        self.normalize = normalize
        self.prefix = prefix
        self.max_length = max_length
        self.batch_size = batch_size
        self.dtype = dtype
        self.device = device
        self._model: Any = None


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


def compile_for_inference(model: Any, device: str) -> tuple[Any, str]:
    """``torch.compile`` a model that will only ever run inference; returns it and a label.

    Dynamic shapes, so one compilation serves every batch size and length. On the CPU
    inductor's *freezing* is on as well: the weights become constants that inductor may
    fold and fuse. With dynamic shapes it still runs the linear layers as MKL matrix
    products (a torch profile of MiniLM shows ``aten::addmm``, not oneDNN's packed
    kernel), so the gain over eager is the fused elementwise work around them; freezing
    measured faster than plain compile here (benchmarks/results/compile.md). It costs a
    longer first compilation.
    """
    import torch

    freezing = str(device).startswith("cpu")
    options = {"freezing": True} if freezing else None
    compiled = torch.compile(model, dynamic=True, options=options)
    return compiled, "torch.compile(dynamic=True" + (", freezing)" if freezing else ")")


class HFTextEmbedder(EmbedderSettings):
    """Embed texts with any Hugging Face encoder or decoder (AutoModel) and a pooling rule.

    ``layers`` (e.g. ``[-1, -4, 6]``) pools those entries of ``hidden_states`` (0 = the
    embedding layer's output, -1 = the last layer) from one forward pass; ``encode`` then
    returns a dict from each layer as written (``"-1"``, ``"6"``) to its [n, d] array.
    ``device_map`` (e.g. ``"auto"``) loads the model with accelerate's big-model inference,
    spread over the available devices, instead of moving it to one ``device``.
    """

    #: the Embedder protocol (embedforensics.models.protocol): texts only, and the
    #: length-planned path (plan / encode_batches) the engine splits across processes
    modalities: frozenset[str] = frozenset({"text"})
    plans_batches = True

    def __init__(self, location: str, *, revision: str | None = None, pooling: str = "mean",
                 normalize: bool = True, prefix: str = "", max_length: int | None = None,
                 batch_size: int = 32, dtype: str = "float32", device: str = "auto",
                 trust_remote_code: bool = False, layers: list[int] | None = None,
                 max_tokens_per_batch: int | None = None, device_map: str | None = None,
                 batch_overhead: float | None = None, compile: bool = False,
                 onednn_linear: bool = True):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}; got {pooling!r}")
        if layers is not None and not layers:
            raise UserError("model.layers must list at least one layer (or be left out).",
                            key="model.layers")
        if layers is not None and pooling == "pooler":
            raise UserError("pooling 'pooler' uses the model's pooler head, which exists only "
                            "for the last layer; use 'mean', 'cls' or 'last_token' with "
                            "layers.", key="model.pooling")
        super().__init__(location, normalize=normalize, prefix=prefix, max_length=max_length,
                         batch_size=batch_size, dtype=dtype, device=device)
        self.revision = revision
        self.pooling = pooling
        self.trust_remote_code = trust_remote_code
        self.layers = list(layers) if layers is not None else None
        self.max_tokens_per_batch = max_tokens_per_batch
        self.batch_overhead = batch_overhead
        self.device_map = device_map
        self.compile = compile
        self.compile_status: str | None = None
        self.onednn_linear = onednn_linear
        self.linear_kernels: str | None = None
        self.n_parameters: int | None = None
        self._tokenizer: Any = None
        self._st_head: Any = None  # st_modules.ModuleHead when pooling is ST_POOLING

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
            if self.device_map is not None:  # accelerate's big-model inference
                kwargs["device_map"] = self.device_map
            dtype = getattr(torch, self.dtype)
            try:
                model = AutoModel.from_pretrained(self.location, dtype=dtype,
                                                  attn_implementation="sdpa", **kwargs)
            except (ValueError, ImportError) as exc:
                if "sdpa" not in str(exc).lower() and "attn" not in str(exc).lower():
                    raise
                model = AutoModel.from_pretrained(self.location, dtype=dtype, **kwargs)
        except OSError as exc:
            raise load_error(f"could not load model '{self.location}'", exc) from None
        except ValueError as exc:
            if "trust_remote_code" not in str(exc):
                raise
            raise UserError(f"the model '{self.location}' needs its own code to load; set "
                            "model.trust_remote_code: true only if you trust that code.",
                            key="model.trust_remote_code") from None
        if self.device_map is not None:
            # accelerate placed the weights; inputs go where the embeddings live
            self.device = str(model.get_input_embeddings().weight.device)
            self._model = model.eval()
        else:
            self.device = pick_device(self.device)
            self._model = model.to(self.device).eval()
        self.n_parameters = int(sum(p.numel() for p in self._model.parameters()))
        self.linear_kernels = self._choose_linear_kernels()
        if self.compile:
            self._model, self.compile_status = compile_for_inference(self._model, self.device)
        if self._tokenizer.pad_token is None:
            # decoder tokenizers often lack one; any id works because the mask hides it
            self._tokenizer.pad_token = self._tokenizer.eos_token or self._tokenizer.unk_token
        if self.layers is not None:
            self._check_layers()
        if self.pooling == ST_POOLING:
            from embedforensics.models.st_modules import load_head

            self._st_head = load_head(self.location, self.revision, device=self.device,
                                      tokenizer=self._tokenizer, prefix=self.prefix,
                                      layers=self.layers)
        return self

    def _choose_linear_kernels(self) -> str:
        """Float32 on one CPU: linear layers through oneDNN on pre-packed weights
        (:mod:`embedforensics.models.onednn`); elsewhere, and under ``compile`` (inductor
        then owns the kernels), PyTorch's own."""
        if self.compile:
            return "inductor (model.compile)"
        if not self.onednn_linear:
            return "aten (model.onednn_linear: false)"
        if self.device_map is not None or not str(self.device).startswith("cpu") \
                or self.dtype != "float32":
            return "aten"
        from embedforensics.models.onednn import use_onednn_linear

        return use_onednn_linear(self._model)

    def _check_layers(self) -> None:
        n_states = int(getattr(self._model.config, "num_hidden_layers", 0)) + 1
        bad = [layer for layer in self.layers or [] if not -n_states <= layer < n_states]
        if bad:
            raise UserError(
                f"model.layers {bad} out of range: this model has {n_states - 1} layers, so "
                f"layers run from {-n_states} to {n_states - 1} (0 = embedding output, "
                "-1 = last layer).", key="model.layers")

    @property
    def embed_dim(self) -> int:
        """Width of every returned vector: the hidden size, or what the folder's
        sentence-transformers modules (a Dense layer) make of it."""
        self.load()
        hidden = int(getattr(self._model.config, "hidden_size", 0) or 0)
        return self._st_head.dimension(hidden) if self._st_head is not None else hidden

    def encode_images(self, images: list[Any], *, progress: bool = True
                      ) -> tuple[np.ndarray, EncodeStats]:
        """Text models have no image tower (the Embedder protocol's image entry point)."""
        raise UserError(f"'{self.location}' is a text-only model; images need an image-text "
                        "model (open_clip or a transformers CLIP/SigLIP).", key="model.id")

    @property
    def layer_names(self) -> list[str]:
        """The keys of the per-layer output: each requested layer as written."""
        return [str(layer) for layer in self.layers] if self.layers is not None else []

    @property
    def effective_max_length(self) -> int:
        """The recipe's max_length, else sentence-transformers' setting, else the model's."""
        if self.max_length is not None:
            return self.max_length
        if self._st_head is not None and self._st_head.max_seq_length:
            return int(self._st_head.max_seq_length)
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
        """Provenance: model class, size, dtype, device(s), attention, pooling, max length."""
        self.load()
        config = self._model.config
        device_map = getattr(self._model, "hf_device_map", None)
        return {
            "model_class": type(getattr(self._model, "_orig_mod", self._model)).__name__,
            "model_type": getattr(config, "model_type", None),
            "hidden_size": getattr(config, "hidden_size", None),
            "n_parameters": self.n_parameters,
            "dtype": self.dtype,
            "device": str(self.device),
            "device_map": None if self.device_map is None else {
                "requested": self.device_map,
                "placement": ({k: str(v) for k, v in device_map.items()} if device_map
                              else {"": str(self.device)})},
            "attn_implementation": getattr(config, "_attn_implementation", None),
            "compile": self.compile_status,
            "linear_kernels": self.linear_kernels,
            "pooling": self.pooling,
            **({"sentence_transformers_modules": self._st_head.chain.describe()}
               if self._st_head is not None else {}),
            "normalize": self.normalize,
            "prefix": self.prefix,
            "max_length": self.effective_max_length,
            "layers": self.layer_names or None,
            "batch_size": self.batch_size,
            "max_tokens_per_batch": self.max_tokens_per_batch,
            "batch_overhead_tokens": self.batch_overhead,
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

    def count_unknown(self, texts: list[str]) -> int | None:
        """Tokens of ``texts`` the tokenizer maps to its unknown token ([UNK], <unk>), or
        None when it has none. A share of a few percent means the tokenizer does not fit
        the text (a wrong vocabulary once let length alone look like separability)."""
        self.load()
        unk = getattr(self._tokenizer, "unk_token_id", None)
        if unk is None or not texts:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            enc = self._tokenizer([self.prefix + t for t in texts], add_special_tokens=False,
                                  truncation=False, return_attention_mask=False,
                                  verbose=False)
        return int(sum(ids.count(unk) for ids in enc["input_ids"]))

    def plan(self, texts: list[str]) -> tuple[list[np.ndarray], EncodeStats]:
        """Token lengths and the batch plan for ``texts`` (no model call)."""
        from embedforensics.engine.batching import padded_tokens, plan_batches

        self.load()
        stats = EncodeStats(n_texts=len(texts))
        if not texts:
            return [], stats
        max_len = self.effective_max_length
        lengths = self.token_lengths(texts)
        capped = np.minimum(np.asarray(lengths), max_len)
        stats.token_lengths = lengths
        stats.n_unk = self.count_unknown(texts)
        stats.n_truncated = int(sum(n > max_len for n in lengths))
        stats.n_tokens = int(capped.sum())
        batches = plan_batches(capped, batch_size=self.batch_size,
                               max_tokens=self.max_tokens_per_batch,
                               batch_overhead=self.batch_overhead)
        stats.n_batches = len(batches)
        stats.n_padded_tokens = padded_tokens(capped, batches)
        return batches, stats

    def _call_model(self, enc: dict[str, Any], **kwargs: Any) -> Any:
        """The model's forward; a compiled model that fails to compile (no C++ compiler,
        an unsupported operation) falls back to eager once, with a warning."""
        if not hasattr(self._model, "_orig_mod"):  # eager (never compiled, or fell back)
            return self._model(**enc, **kwargs)
        try:
            return self._model(**enc, **kwargs)
        except Exception as exc:  # noqa: BLE001 - inductor raises many kinds
            if type(exc).__module__.startswith(("torch._dynamo", "torch._inductor")):
                first = first_line(exc)
                log.warning("torch.compile failed (%s); running the model eagerly", first)
                self._model = getattr(self._model, "_orig_mod", self._model)
                self.compile_status = f"failed, eager: {first}"
                return self._model(**enc, **kwargs)
            raise

    def _forward(self, texts: list[str]) -> dict[str, np.ndarray]:
        """One batch through the model: pooled float32 vectors per output layer."""
        import torch

        enc = self._tokenizer([self.prefix + t for t in texts], padding=True,
                              truncation=True, max_length=self.effective_max_length,
                              return_tensors="pt")
        enc = {k: v.to(self.device) for k, v in enc.items()}
        enc = decoder_inputs(enc, self._model, self._tokenizer.padding_side)
        if self.layers is None:
            outputs = self._call_model(enc)
            states = {"": outputs.last_hidden_state}
        else:
            outputs = self._call_model(enc, output_hidden_states=True)
            hidden = outputs.hidden_states
            states = {str(layer): hidden[layer] for layer in self.layers}
        out: dict[str, np.ndarray] = {}
        for name, hidden_state in states.items():
            mask = enc["attention_mask"].to(hidden_state.device)
            if self._st_head is not None:  # the folder's Pooling → Dense modules
                vectors = self._st_head(hidden_state, mask).float()
            else:
                vectors = pool(hidden_state, mask, self.pooling,
                               getattr(outputs, "pooler_output", None)).float()
            if self.normalize:
                vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
            out[name] = vectors.cpu().numpy()
        return out

    def encode_batches(self, texts: list[str], batches: list[np.ndarray], *,
                       progress: bool = False, stats: EncodeStats | None = None
                       ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Run the given batches (index arrays into ``texts``).

        Returns the row indices in the order computed and, per output layer ("" when no
        layers were asked for), the vectors in that same order. A batch that runs out of
        memory is halved and retried (``stats.oom_splits`` counts it).
        """
        import torch
        from tqdm.auto import tqdm

        from embedforensics.engine.batching import run_splitting_on_oom

        self.load()
        counter: dict[str, Any] = {}
        done: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []
        with torch.inference_mode():
            for batch in tqdm(batches, desc="embedding", unit="batch",
                              disable=not progress or None, leave=False):
                done += run_splitting_on_oom(
                    np.asarray(batch), lambda b: self._forward([texts[i] for i in b]),
                    counter)
        if stats is not None:
            stats.oom_splits += int(counter.get("oom_splits", 0))
        if not done:
            return np.zeros(0, dtype=np.int64), {}
        index = np.concatenate([rows for rows, _ in done]).astype(np.int64)
        names = list(done[0][1])
        return index, {name: np.concatenate([part[name] for _, part in done], axis=0)
                       for name in names}

    def encode(self, texts: list[str], *, progress: bool = True
               ) -> tuple[np.ndarray | dict[str, np.ndarray], EncodeStats]:
        """Embed ``texts`` in input order.

        float32 [n, d]; or, when ``layers`` is set, a dict from each layer as written
        (``"-1"``, ``"6"``) to a float32 [n, d] array.
        """
        self.load()
        batches, stats = self.plan(texts)
        if not texts:
            hidden = int(getattr(self._model.config, "hidden_size", 0) or 0)
            if self._st_head is not None:
                hidden = self._st_head.dimension(hidden)
            empty = np.zeros((0, hidden), dtype=np.float32)
            return ({name: empty.copy() for name in self.layer_names} if self.layers
                    is not None else empty), stats
        index, parts = self.encode_batches(texts, batches, progress=progress, stats=stats)
        ordered: dict[str, np.ndarray] = {}
        for name, values in parts.items():
            out = np.empty((len(texts), values.shape[1]), dtype=np.float32)
            out[index] = values
            ordered[name] = out
        return (ordered if self.layers is not None else ordered[""]), stats
