"""Sentence-transformers folders: reproduce their module chain exactly, or refuse it.

A sentence-transformers folder lists, in ``modules.json``, the modules that
``SentenceTransformer.encode`` runs one after another. Reading only the Pooling mode and
running plain mean pooling otherwise would give *different* embeddings without a word for
any folder with max / weighted-mean pooling, several concatenated modes, a Dense projection
or ``include_prompt: false``. So this module either reproduces the chain or names what it
cannot reproduce:

- ``Transformer`` at the folder root (``path: ""``), run by :class:`HFTextEmbedder` with
  AutoModel; its ``sentence_bert_config.json`` may set ``max_seq_length``. Lower-casing, a
  chat template (``message`` modality) or another output than ``last_hidden_state`` are
  refused.
- ``Pooling`` with every mode sentence-transformers has (``cls``, ``max``, ``mean``,
  ``mean_sqrt_len_tokens``, ``weightedmean``, ``lasttoken``), the old boolean flags
  (concatenated in sentence-transformers' order) or the new ``pooling_mode`` (its own
  order), and ``include_prompt: false`` (prompt tokens, i.e. ``model.prefix``, leave the
  pool). The arithmetic follows sentence-transformers 6 (``cls`` is the first unmasked
  token, ``weightedmean`` weights start at the first unmasked token), which equals the older
  releases for right-padded tokenizers.
- ``Dense`` layers (weights from the module folder's ``model.safetensors`` or
  ``pytorch_model.bin`` via ``torch.load(weights_only=True)``; bias; an activation that is a
  ``torch.nn`` module class; the optional residual), and ``Normalize``.

Anything else raises one :class:`~embedforensics.errors.UserError` sentence that names the
model and the module.

How it plugs in: :func:`st_defaults` is the sentence-transformers family rule of
:mod:`embedforensics.models.defaults`. A chain the embedder's own poolings already compute
(Transformer → one of mean / cls / lasttoken → optional Normalize) keeps that pooling
name, so existing cache keys stay valid; any other chain fills ``model.pooling`` with
:data:`ST_POOLING`, and :class:`HFTextEmbedder` then runs :class:`ModuleHead` (pooling,
Dense, intermediate Normalize) on the token states. A trailing Normalize is the
``normalize`` setting (auto: on), so a recipe's ``normalize: false`` is honoured. A recipe
that sets ``model.pooling`` explicitly overrides the folder: its pooling runs on the
transformer's token states and the folder's Pooling / Dense modules are not used (nor
refused).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from embedforensics.errors import UserError
from embedforensics.models.hub import FileReader, location_reader, model_file, read_json

#: the ``model.pooling`` value that means "the folder's own sentence-transformers modules"
ST_POOLING = "sentence-transformers"
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
#: the old boolean Pooling flags, in the order sentence-transformers concatenates them
_LEGACY_FLAGS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
#: single modes that HFTextEmbedder's own ``pool`` computes identically
_SIMPLE_POOLING = {"mean": "mean", "cls": "cls", "lasttoken": "last_token"}
_POOLING_KEYS = {"word_embedding_dimension", "embedding_dimension", "pooling_mode",
                 "include_prompt", *_LEGACY_FLAGS}
_DENSE_KEYS = {"in_features", "out_features", "bias", "activation_function",
               "module_input_name", "module_output_name", "use_residual"}
_NORMALIZE_KEYS = {"module_input_name", "module_output_name"}
_TRANSFORMER_KEYS = {"max_seq_length", "do_lower_case", "transformer_task", "modality_config",
                     "module_output_name", "model_args", "tokenizer_args", "config_args",
                     "processor_kwargs", "model_kwargs", "config_kwargs", "backend"}
_SENTENCE = "sentence_embedding"
_MODULE_KINDS = ("Transformer", "Pooling", "Dense", "Normalize")

class UnsupportedModule(UserError):
    """A sentence-transformers module (or option) whose output this package cannot reproduce."""


@dataclass(frozen=True)
class DenseSpec:
    """One Dense module: where its weights are and how it maps the sentence embedding."""

    path: str
    in_features: int
    out_features: int
    bias: bool
    activation: str
    use_residual: bool


@dataclass(frozen=True)
class ModuleChain:
    """What a folder's ``modules.json`` asks for, checked to be reproducible.

    ``steps`` are the modules after Pooling: ``DenseSpec`` or the string ``"normalize"``.
    """

    modes: tuple[str, ...]
    include_prompt: bool
    steps: tuple[DenseSpec | str, ...]
    max_seq_length: int | None = None

    @property
    def normalize(self) -> bool:
        """Does the chain end with Normalize (the family's ``normalize`` default)?"""
        return bool(self.steps) and self.steps[-1] == "normalize"

    @property
    def head_steps(self) -> tuple[DenseSpec | str, ...]:
        """The steps after pooling that the embedder runs itself (a final Normalize is the
        ``normalize`` setting instead)."""
        return self.steps[:-1] if self.normalize else self.steps

    @property
    def simple_pooling(self) -> str | None:
        """The embedder's own pooling name when it computes this chain identically
        (one mean / cls / lasttoken mode, prompt included, nothing but Normalize after)."""
        if len(self.modes) == 1 and self.include_prompt and not self.head_steps:
            return _SIMPLE_POOLING.get(self.modes[0])
        return None

    @property
    def has_dense(self) -> bool:
        return any(isinstance(step, DenseSpec) for step in self.steps)

    def describe(self) -> list[str]:
        """The chain in words, for provenance (``["Pooling(max+mean)", "Dense(64→8, Tanh)"]``)."""
        pooled = "+".join(self.modes) + ("" if self.include_prompt else ", prompt excluded")
        out = ["Transformer", f"Pooling({pooled})"]
        for step in self.steps:
            if isinstance(step, DenseSpec):
                act = step.activation.rsplit(".", 1)[-1]
                out.append(f"Dense({step.in_features}→{step.out_features}, {act}"
                           + (", residual" if step.use_residual else "") + ")")
            else:
                out.append("Normalize")
        return out


# ------------------------------------------------------------------ parsing (no torch)
_UNPARSABLE = object()  # a file that is there but is not JSON


def _kind(module_type: str) -> str | None:
    """'Pooling' for any sentence-transformers spelling of the Pooling class, else None."""
    if not module_type.startswith("sentence_transformers."):
        return None
    last = module_type.rsplit(".", 1)[-1]
    return last if last in _MODULE_KINDS else None


def _refuse(model: str, what: str, why: str) -> UnsupportedModule:
    return UnsupportedModule(
        f"the sentence-transformers model '{model}' lists {what}, {why}, so embedforensics "
        "cannot reproduce SentenceTransformer.encode for it; set model.pooling to choose a "
        "pooling of the transformer's token states instead.", key="model.id")


def _config(read: FileReader, model: str, what: str, path: str, name: str = "config.json",
            *, required: bool = False) -> dict[str, Any]:
    file = f"{path}/{name}" if path else name
    data = read_json(read, file, invalid=_UNPARSABLE)
    if data is None and not required:
        return {}
    if not isinstance(data, dict):
        state = "missing" if data is None else "not a JSON object"
        raise _refuse(model, what, f"whose {file} is {state}")
    return data


def _unknown_keys(model: str, what: str, config: dict[str, Any], known: set[str]) -> None:
    extra = sorted(set(config) - known)
    if extra:
        raise _refuse(model, what, f"with the option(s) {', '.join(extra)} that embedforensics "
                      "does not implement")


def _pooling(read: FileReader, model: str, what: str, path: str
             ) -> tuple[tuple[str, ...], bool]:
    config = _config(read, model, what, path, required=True)
    _unknown_keys(model, what, config, _POOLING_KEYS)
    mode = config.get("pooling_mode")
    if mode is not None:
        modes = (mode,) if isinstance(mode, str) else tuple(mode) if isinstance(
            mode, list) else None
    else:
        modes = tuple(m for flag, m in _LEGACY_FLAGS.items() if config.get(flag)) or ("mean",)
    if not modes or any(m not in POOLING_MODES for m in modes):
        raise _refuse(model, what, f"with pooling_mode {mode!r} (known: "
                      f"{', '.join(POOLING_MODES)})")
    return modes, bool(config.get("include_prompt", True))


def _dense(read: FileReader, model: str, what: str, path: str) -> DenseSpec:
    config = _config(read, model, what, path, required=True)
    _unknown_keys(model, what, config, _DENSE_KEYS)
    for key in ("module_input_name", "module_output_name"):
        if config.get(key, _SENTENCE) not in (_SENTENCE, None):
            raise _refuse(model, what, f"that reads or writes '{config[key]}' instead of the "
                          "sentence embedding")
    activation = str(config.get("activation_function") or "torch.nn.modules.activation.Tanh")
    if not activation.startswith("torch.nn."):
        raise _refuse(model, what, f"with the activation '{activation}', which is not a "
                      "torch.nn module")
    try:
        return DenseSpec(path, int(config["in_features"]), int(config["out_features"]),
                         bool(config.get("bias", True)), activation,
                         bool(config.get("use_residual", False)))
    except (KeyError, TypeError, ValueError):
        raise _refuse(model, what, "without integer in_features and out_features") from None


def _transformer(read: FileReader, model: str, what: str, path: str) -> int | None:
    if path not in ("", "."):
        raise _refuse(model, what, f"stored in the sub-folder '{path}' rather than at the "
                      "folder's root")
    config = _config(read, model, what, "", "sentence_bert_config.json")
    _unknown_keys(model, what, config, _TRANSFORMER_KEYS)
    if config.get("do_lower_case"):
        raise _refuse(model, what, "with do_lower_case: true (inputs lower-cased before "
                      "tokenising)")
    task = config.get("transformer_task", "feature-extraction")
    if task != "feature-extraction":
        raise _refuse(model, what, f"with transformer_task '{task}'")
    modality = config.get("modality_config") or {}
    text = modality.get("text", {}) if isinstance(modality, dict) else None
    if not isinstance(text, dict) or set(modality) - {"text"} or \
            text.get("method", "forward") != "forward" or \
            text.get("method_output_name", "last_hidden_state") != "last_hidden_state":
        raise _refuse(model, what, f"with modality_config {json.dumps(modality)} (only text "
                      "through forward → last_hidden_state is reproduced)")
    if config.get("module_output_name", "token_embeddings") != "token_embeddings":
        raise _refuse(model, what, f"that writes '{config['module_output_name']}' instead "
                      "of the token embeddings")
    for key in ("model_args", "tokenizer_args", "config_args", "processor_kwargs",
                "model_kwargs", "config_kwargs"):
        if config.get(key):
            raise _refuse(model, what, f"with {key} {json.dumps(config[key])} that "
                          "embedforensics does not pass on")
    if config.get("backend", "torch") != "torch":
        raise _refuse(model, what, f"with backend '{config['backend']}'")
    value = config.get("max_seq_length")
    return int(value) if value else None


def parse_modules(read: FileReader, model: str) -> ModuleChain | None:
    """The checked module chain of a sentence-transformers model, or None without modules.json.

    ``read`` returns a file of the model by its relative name; ``model`` names it in errors.
    Raises :class:`UnsupportedModule` (a UserError, one sentence naming the module) for any
    module or option this package does not reproduce.
    """
    modules = read_json(read, "modules.json", invalid=_UNPARSABLE)
    if modules is None:
        return None
    if not isinstance(modules, list) or not modules or \
            not all(isinstance(m, dict) for m in modules):
        raise _refuse(model, "a modules.json", "that is not a JSON list of modules")
    kinds: list[tuple[str | None, str, str]] = []
    for i, m in enumerate(modules):
        path = str(m.get("path", "") or "")
        mtype = str(m.get("type", ""))
        what = f"module {m.get('idx', i)} '{path or '.'}' of type '{mtype}'"
        kinds.append((_kind(mtype), path, what))
    for position, (kind, _, what) in enumerate(kinds):
        if kind is None:
            raise _refuse(model, what, "which is not one of sentence-transformers' "
                          "Transformer, Pooling, Dense or Normalize")
        expected = ("Transformer",) if position == 0 else ("Pooling",) if position == 1 \
            else ("Dense", "Normalize")
        if kind not in expected:
            raise _refuse(model, what, f"at position {position}, where only "
                          f"{' or '.join(expected)} is reproduced (the chain is Transformer → "
                          "Pooling → Dense / Normalize)")
    if len(kinds) < 2:
        raise _refuse(model, kinds[0][2], "with no Pooling module after it")
    max_seq_length = _transformer(read, model, kinds[0][2], kinds[0][1])
    modes, include_prompt = _pooling(read, model, kinds[1][2], kinds[1][1])
    steps: list[DenseSpec | str] = []
    for kind, path, what in kinds[2:]:
        if kind == "Dense":
            steps.append(_dense(read, model, what, path))
        else:
            config = _config(read, model, what, path)
            _unknown_keys(model, what, config, _NORMALIZE_KEYS)
            if any(config.get(k, _SENTENCE) not in (_SENTENCE, None) for k in _NORMALIZE_KEYS):
                raise _refuse(model, what, "that normalises something other than the "
                              "sentence embedding")
            steps.append("normalize")
    return ModuleChain(modes, include_prompt, tuple(steps), max_seq_length)


def st_defaults(read: FileReader, model: str, base: dict[str, Any]) -> dict[str, Any]:
    """The sentence-transformers family rule: ``base`` (the encoder defaults) with pooling
    and normalize read from the module chain, and prefix the folder's default prompt
    (``config_sentence_transformers.json``: ``prompts[default_prompt_name]``), which
    ``encode`` prepends when no prompt is given.

    A chain the embedder's own pooling computes keeps that name (mean / cls / last_token);
    any other reproducible chain gets :data:`ST_POOLING`. An unreproducible chain is not
    raised here (a recipe that sets ``model.pooling`` overrides the folder): its sentence is
    stored under ``"refuse"`` and :func:`refusal` raises it when pooling is left to auto;
    its pooling is :data:`ST_POOLING` too, so :func:`load_head` would raise it at load time
    should a caller fill the auto fields without :func:`refusal`.
    """
    out = dict(base)
    try:
        chain = parse_modules(read, model)
    except UnsupportedModule as exc:
        modules = read_json(read, "modules.json")
        out["normalize"] = isinstance(modules, list) and any(
            isinstance(m, dict) and str(m.get("type", "")).endswith("Normalize")
            for m in modules)
        out["refuse"] = exc.message
        # if a caller fills pooling without refusal(), loading the head refuses it anyway
        out["pooling"] = ST_POOLING
        return out
    if chain is None:
        return out
    out["normalize"] = chain.normalize
    out["pooling"] = chain.simple_pooling or ST_POOLING
    # encode() prepends the default prompt by itself when the folder names one
    settings = read_json(read, "config_sentence_transformers.json")
    if isinstance(settings, dict) and settings.get("default_prompt_name"):
        prompt = (settings.get("prompts") or {}).get(settings["default_prompt_name"])
        if isinstance(prompt, str):
            out["prefix"] = prompt
    return out


def refusal(spec: Any, defaults: dict[str, Any], file: str | None = None) -> None:
    """Raise the family rule's refusal when ``spec`` leaves pooling to the folder."""
    message = defaults.get("refuse")
    if message and getattr(spec, "pooling", None) is None:
        raise UnsupportedModule(message, file=file, key="model.id")


# ------------------------------------------------------------------ running (torch)
def pool_tokens(hidden: Any, mask: Any, modes: tuple[str, ...],
                prompt_length: int | None = None) -> Any:
    """sentence-transformers' Pooling: each mode over the unmasked tokens, concatenated.

    ``hidden`` [b, t, d], ``mask`` [b, t] (1 = real token); ``prompt_length`` (with
    ``include_prompt: false``) takes the first that many real tokens out of the pool.
    """
    import torch

    original = mask
    if prompt_length:
        mask = mask.clone()
        pad = mask.to(torch.int32).argmax(dim=1)
        if int(pad.sum()) == 0:
            mask[:, :prompt_length] = 0
        else:  # left padding: pads and prompt both leave the pool
            positions = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0)
            mask[positions < (pad + prompt_length).unsqueeze(1)] = 0
    acc = torch.float32 if hidden.dtype in (torch.float16, torch.bfloat16) else hidden.dtype
    b, t, d = hidden.shape
    out = []
    for mode in modes:
        if mode == "cls":
            first = mask.to(torch.int).argmax(dim=1)
            out.append(hidden[torch.arange(b, device=hidden.device), first])
        elif mode == "max":
            m = mask.unsqueeze(-1).expand_as(hidden)
            out.append(hidden.masked_fill(m == 0, float("-inf")).max(dim=1).values)
        elif mode in ("mean", "mean_sqrt_len_tokens"):
            m = mask.unsqueeze(-1).to(hidden.dtype)
            total = (hidden * m).sum(dim=1, dtype=acc)
            count = torch.clamp(m.sum(dim=1, dtype=acc), min=1e-9)
            out.append((total / (count if mode == "mean" else torch.sqrt(count)))
                       .to(hidden.dtype))
        elif mode == "weightedmean":
            m = mask.unsqueeze(-1).to(acc)
            weights = torch.arange(1, t + 1, device=hidden.device, dtype=acc).view(1, -1, 1)
            weights = weights - original.to(torch.int32).argmax(dim=1).view(-1, 1, 1)
            weighted = m * weights
            total = (hidden * weighted).sum(dim=1)
            out.append((total / torch.clamp(weighted.sum(dim=1), min=1e-9)).to(hidden.dtype))
        elif mode == "lasttoken":
            values, index = mask.flip(1).max(1)
            index = torch.where(values == 0, t - 1, index)
            rows = torch.arange(b, device=hidden.device)
            out.append((hidden * mask.unsqueeze(-1).to(hidden.dtype))[rows, t - index - 1])
        else:  # parse_modules admits only POOLING_MODES
            raise ValueError(f"unknown sentence-transformers pooling mode {mode!r}")
    return torch.cat(out, dim=-1)


def _activation(name: str, model: str, path: str) -> Any:
    """An instance of the torch.nn module class ``name`` (only torch.nn classes load)."""
    import importlib

    import torch

    module_name, _, class_name = name.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
        if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
            raise TypeError(name)
        return cls()
    except (ImportError, AttributeError, TypeError):
        raise _refuse(model, f"the Dense module '{path}'", f"with the activation '{name}', "
                      "which is not a torch.nn module class that takes no arguments") from None


def _dense_weights(location: str, revision: str | None, model: str, spec: DenseSpec
                   ) -> dict[str, Any]:
    import torch

    safetensors = model_file(location, revision, f"{spec.path}/model.safetensors")
    if safetensors is not None:
        from safetensors.torch import load_file

        return load_file(str(safetensors))
    binary = model_file(location, revision, f"{spec.path}/pytorch_model.bin")
    if binary is None:
        raise _refuse(model, f"the Dense module '{spec.path}'", "with neither "
                      "model.safetensors nor pytorch_model.bin in its folder")
    return torch.load(binary, map_location="cpu", weights_only=True)


class ModuleHead:
    """Pooling → Dense / Normalize of a sentence-transformers chain, on one device.

    Built by :func:`load_head`; called on ``(hidden [b, t, d], mask [b, t])`` it returns the
    sentence embeddings before the final Normalize (the embedder's ``normalize`` setting).
    """

    def __init__(self, chain: ModuleChain, layers: list[tuple[Any, Any, Any]],
                 prompt_length: int | None):
        self.chain = chain
        self._layers = layers  # (linear, activation, residual or None) per Dense, or None
        self.prompt_length = prompt_length

    @property
    def max_seq_length(self) -> int | None:
        return self.chain.max_seq_length

    def dimension(self, hidden_size: int) -> int:
        """The output size for a transformer of ``hidden_size``."""
        dense = [s for s in self.chain.steps if isinstance(s, DenseSpec)]
        return dense[-1].out_features if dense else hidden_size * len(self.chain.modes)

    def __call__(self, hidden: Any, mask: Any) -> Any:
        import torch

        x = pool_tokens(hidden, mask, self.chain.modes,
                        None if self.chain.include_prompt else self.prompt_length)
        for step, layer in zip(self.chain.head_steps, self._layers, strict=True):
            if step == "normalize":
                x = torch.nn.functional.normalize(x, p=2, dim=-1)
                continue
            linear, activation, residual = layer
            # (under device_map the last layer may sit on another device than the head)
            x_in = x.to(device=linear.weight.device, dtype=linear.weight.dtype)
            x = activation(linear(x_in))
            if residual is not None:
                x = x + residual(x_in)
            elif step.use_residual:
                x = x + x_in
        return x


def load_head(location: str, revision: str | None, *, model: str | None = None,
              device: Any = "cpu", tokenizer: Any = None, prefix: str = "",
              layers: list[int] | None = None) -> ModuleHead:
    """Read the chain of the model at ``location`` and load its Dense weights onto ``device``.

    ``tokenizer`` and ``prefix`` give the prompt length that ``include_prompt: false``
    leaves out (sentence-transformers: the prompt's tokens less a trailing special token).
    ``layers`` (hidden layers pooled besides the last) is refused when the chain has a
    Dense module, which was trained on the last layer's pooled output only.
    """
    import torch

    name = model or location
    chain = parse_modules(location_reader(location, revision), name)
    if chain is None:
        raise UserError(f"model.pooling '{ST_POOLING}' runs a sentence-transformers folder's "
                        f"modules, but '{name}' has no modules.json; choose mean, cls, "
                        "pooler or last_token.", key="model.pooling")
    if layers is not None and chain.has_dense:
        raise UserError(f"model.layers pools hidden layers, but '{name}' ends in a Dense "
                        "module trained on the last layer's pooled output only; set "
                        "model.pooling (mean, cls, last_token) to pool hidden layers.",
                        key="model.layers")
    built: list[Any] = []
    for step in chain.head_steps:
        if not isinstance(step, DenseSpec):
            built.append(None)
            continue
        weights = _dense_weights(location, revision, name, step)
        linear = torch.nn.Linear(step.in_features, step.out_features, bias=step.bias)
        residual = None
        if step.use_residual and step.in_features != step.out_features:
            residual = torch.nn.Linear(step.in_features, step.out_features, bias=False)
        expected = {"linear.weight": linear.weight, **({"linear.bias": linear.bias}
                                                       if step.bias else {}),
                    **({"residual.weight": residual.weight} if residual is not None else {})}
        for key, param in expected.items():
            value = weights.get(key)
            if value is None or tuple(value.shape) != tuple(param.shape):
                got = "missing" if value is None else f"shape {tuple(value.shape)}"
                raise _refuse(name, f"the Dense module '{step.path}'", f"whose weight "
                              f"'{key}' is {got}, not {tuple(param.shape)} as its config says")
            with torch.no_grad():
                param.copy_(value.to(torch.float32))
        built.append((linear.to(device).eval(), _activation(step.activation, name, step.path)
                      .to(device), None if residual is None else residual.to(device).eval()))
    prompt_length = None
    if not chain.include_prompt and prefix and tokenizer is not None:
        ids = tokenizer([prefix], add_special_tokens=True)["input_ids"][0]
        prompt_length = len(ids)
        if ids and ids[-1] in set(getattr(tokenizer, "all_special_ids", [])):
            prompt_length -= 1
    return ModuleHead(chain, built, prompt_length)
