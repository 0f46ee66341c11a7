r"""Trace neural tangent kernels (trNTK): kernel surrogates of a network (Engel et al., 2024).

Question answered: *which training points does a network "use" for a prediction, and do two
networks use them the same way?* The trNTK (arXiv 2305.14585) is a kernel built from the
network's parameter gradients; a kernel GLM fit on it (:mod:`.kglm`) is a faithful,
attributable surrogate of the network, and attributions of two models can be compared.

Kernels (``kind=``), for a network ``f: x ↦ (f_1(x), …, f_C(x))`` with selected parameters θ
(``g_c(x) = ∇_θ f_c(x)``)::

    "trntk0"     K0(x, x') = Σ_c ⟨g_c(x), g_c(x')⟩                     (unnormalised trNTK)
    "trntk"      K(x, x')  = K0(x, x') / √(K0(x, x) K0(x', x'))         (cosine-normalised)
    "pntk"       Kp(x, x') = (1/C) ⟨∇_θ Σ_c f_c(x), ∇_θ Σ_c f_c(x')⟩    (pseudo-NTK)
    "conjugate"  Kc(x, x') = ⟨φ(x), φ(x')⟩, φ = the input of the final ``nn.Linear``
    "embedding"  Ke(x, x') = ⟨e(x), e(x')⟩, e = the flattened input tensor, or for token
                 inputs the attention-masked mean of the model's input word embeddings

``normalize=True`` cosine-normalises any kind (the default only for ``"trntk"``); the
normalised kernel has unit diagonal. A 1-output (binary) network has ``C = 1``.

Parameters (``params=``): ``"all"`` (every parameter with ``requires_grad``), ``"head"`` (the
parameters of the last ``nn.Linear`` module in registration order), an ``int k`` (the
parameters of the last ``k`` modules that own parameters directly — for an MLP the last ``k``
linear layers; for a transformer each LayerNorm/Linear counts) or a list of names. A list
entry selects every parameter whose dotted name equals it, starts with ``entry + "."``, ends
with ``"." + entry`` or contains ``"." + entry + "."`` — so ``["encoder.layer.5",
"classifier"]`` selects the last MiniLM block and the head.

Computation: per-example, per-class gradients with :mod:`torch.func` (``functional_call``,
``vmap`` over examples of ``jacrev`` over the selected parameters), ``batch_size`` examples at
a time, in eval mode (dropout off; the training flag is restored afterwards). The exact path
keeps the ``[n, C, P]`` float64 gradient features of ``inputs_a`` and ``inputs_b`` when they fit
in ``max_bytes``; otherwise it streams: parameter tensors are grouped so that one group's
features fit (a tensor too large alone is taken in example blocks), each group's gradients
are recomputed and their Gram blocks summed — the same kernel with bounded memory and more
time. Only a single example's gradient of one tensor larger than ``max_bytes`` is refused
(ValueError). The projected path (``projection_dim=k``) maps
each per-class gradient through a seeded random matrix ``R`` (``P × k``, entries ±1/√k for
``projection="rademacher"`` or N(0, 1/k) for ``"gaussian"``, so ``E[R Rᵀ] = I`` and the
projected unnormalised kernel is unbiased), generated per parameter tensor in row chunks of
``chunk_rows`` from ``numpy.random.SeedSequence([seed, tensor index, chunk index])``: only
``[batch, C, P_j]`` of one batch and ``chunk_rows × k`` of ``R`` exist at once, and the
stored features are ``[n, C, k]``. Kernels are accumulated in float64.

Public API::

    from embedforensics.compare.trntk import trntk_kernel, gradient_features, HFClassifierLogits
    K = trntk_kernel(model, inputs_a, inputs_b=None, kind="trntk", params="all",
                     projection_dim=None, seed=0, batch_size=32)   # numpy (len(a), len(b))

``model`` maps a batch of inputs to logits ``[B, C]`` (or ``[B]``): a head over embedding
tensors, or :class:`HFClassifierLogits` around a Hugging Face sequence classifier taking a dict
of tokenised tensors (``input_ids``, ``attention_mask``, optional ``token_type_ids``).
Also public: :func:`gradient_features` (the ``[n, C, D]`` features behind the kernel),
:func:`select_parameters`, :func:`naive_trntk_kernel` (per-example autograd reference) and
:func:`projection_error`. Surrogates built on the kernel live in :mod:`.kglm`::

    from embedforensics.compare.kglm import fit_kglm, faithfulness, attribute
    glm = fit_kglm(K_train, y_train, seed=0)              # K_train = trntk_kernel(model, x_train)
    res = faithfulness(glm.predict_proba(K_test), net_logits, y_test)   # K_test: test × train
    att = attribute(glm, K_test, top_k=10)                 # indices + scores per test point
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

Inputs = torch.Tensor | Mapping[str, torch.Tensor]

KINDS = ("trntk", "trntk0", "pntk", "conjugate", "embedding")
PROJECTIONS = ("rademacher", "gaussian")


class HFClassifierLogits(nn.Module):
    """Wrap a Hugging Face sequence classifier as ``inputs -> logits`` that works under vmap.

    Why: ``vmap`` cannot trace the data-dependent mask shortcuts of transformers' mask
    builders (``padding_mask.all()``), so the 2-D ``attention_mask`` is turned here into the
    4-D additive float mask the attention layers accept directly. Dict inputs are passed as
    keyword arguments; a bare tensor is taken as ``input_ids``. ``eager_attention=True``
    switches the wrapped model to eager attention (``set_attn_implementation("eager")``, same
    outputs): PyTorch's CPU SDPA kernel has no vmap batching rule and falls back to a slow
    per-example loop.
    """

    def __init__(self, model: nn.Module, eager_attention: bool = True) -> None:
        super().__init__()
        self.model = model
        # a new Module starts in training mode; take the wrapped model's mode instead, or
        # code that restores the wrapper's mode afterwards turns the model's dropout on
        self.training = model.training
        if eager_attention and hasattr(model, "set_attn_implementation"):
            model.set_attn_implementation("eager")

    def forward(self, inputs: Inputs) -> torch.Tensor:
        """Return ``model(**inputs).logits`` (``[B, C]``)."""
        kwargs = dict(inputs) if isinstance(inputs, Mapping) else {"input_ids": inputs}
        mask = kwargs.get("attention_mask")
        if mask is not None and mask.dim() == 2:
            dtype = next(self.model.parameters()).dtype
            keep = mask[:, None, None, :].to(dtype)
            kwargs["attention_mask"] = (1.0 - keep) * torch.finfo(dtype).min
        return self.model(**kwargs).logits

    trims_padding = True  # trailing all-masked columns of a batch may be dropped

    def gradient_split(self, names: Sequence[str]) -> tuple[Any, nn.Module] | None:
        """``(prefix, suffix)`` with ``suffix(prefix(x)) == self(x)``, or None.

        Why: when only the last transformer blocks and the head are differentiated, the blocks
        before them are a fixed feature extractor. :func:`gradient_features` then runs the
        prefix once per batch as a plain batched forward (no vmap, no autograd) and
        differentiates only the suffix, which holds every selected parameter. Measured on
        MiniLM with 27-token texts it saves no CPU time (the per-example gradients of the
        selected block and the projection dominate; benchmarks/README.md); it keeps the
        vmap trace small. Implemented for
        ``BertForSequenceClassification`` (BERT, MiniLM: pooled output → dropout → linear
        classifier); other models get None and the full model is differentiated.
        """
        m = self.model
        base = getattr(m, "base_model", None)
        layers = getattr(getattr(base, "encoder", None), "layer", None)
        if (type(m).__name__ != "BertForSequenceClassification"
                or not isinstance(layers, nn.ModuleList)
                or not isinstance(getattr(m, "classifier", None), nn.Linear)
                or getattr(base, "pooler", None) is None):
            return None
        named = dict(self.named_parameters())
        chosen = {id(named[n]) for n in names}
        if any(id(p) in chosen for p in base.embeddings.parameters()):
            return None
        first = len(layers)
        for i, layer in enumerate(layers):
            if any(id(p) in chosen for p in layer.parameters()):
                first = i
                break
        suffix = _BertSuffix(layers[first:], base.pooler, m.dropout, m.classifier)
        if not chosen <= {id(p) for p in suffix.parameters()}:
            return None

        def prefix(inputs: Inputs) -> dict[str, torch.Tensor]:
            kwargs = dict(inputs) if isinstance(inputs, Mapping) else {"input_ids": inputs}
            ids = kwargs["input_ids"]
            mask = kwargs.get("attention_mask")
            if mask is None:
                mask = torch.ones(ids.shape[:2], dtype=torch.long, device=ids.device)
                kwargs["attention_mask"] = mask
            with torch.no_grad():
                out = base(**kwargs, output_hidden_states=True)
            return {"hidden_states": out.hidden_states[first], "attention_mask": mask}

        return prefix, suffix

    def input_embeddings(self, inputs: Inputs) -> torch.Tensor:
        """Attention-masked mean of the input word embeddings, ``[B, d]`` (embedding kernel)."""
        ids = inputs["input_ids"] if isinstance(inputs, Mapping) else inputs
        emb = self.model.get_input_embeddings()(ids)
        if isinstance(inputs, Mapping) and "attention_mask" in inputs:
            w = inputs["attention_mask"].to(emb.dtype)[..., None]
        else:
            w = torch.ones_like(emb[..., :1])
        return (emb * w).sum(1) / w.sum(1).clamp_min(1.0)


class _BertSuffix(nn.Module):
    """The last BERT blocks, pooler, dropout and classifier: ``{hidden_states, attention_mask}
    -> logits``. Shares (does not copy) the modules of the wrapped model."""

    def __init__(self, layers: nn.ModuleList, pooler: nn.Module, dropout: nn.Module,
                 classifier: nn.Linear) -> None:
        super().__init__()
        self.layers, self.pooler, self.dropout, self.classifier = (
            layers, pooler, dropout, classifier)

    def forward(self, state: Mapping[str, torch.Tensor]) -> torch.Tensor:
        h = state["hidden_states"]
        keep = state["attention_mask"][:, None, None, :].to(h.dtype)
        mask = (1.0 - keep) * torch.finfo(h.dtype).min
        for layer in self.layers:
            out = layer(h, mask)
            h = out[0] if isinstance(out, tuple) else out
        return self.classifier(self.dropout(self.pooler(h)))


# ----------------------------------------------------------------------------- inputs


def _trim_padding(inputs: Inputs) -> Inputs:
    """Drop the trailing columns that are padding (attention mask 0) in every row of a batch.

    Masked positions do not change a masked model's outputs, so a batch padded for a longer
    sequence elsewhere costs only its own length.
    """
    if not isinstance(inputs, Mapping):
        return inputs
    mask = inputs.get("attention_mask")
    if mask is None or mask.dim() != 2 or mask.shape[1] == 0:
        return inputs
    used = mask.ne(0).any(0).nonzero()
    length = int(used.max()) + 1 if used.numel() else 1
    if length == mask.shape[1]:
        return inputs
    width = mask.shape[1]
    return {k: v[:, :length] if v.dim() >= 2 and v.shape[1] == width else v
            for k, v in inputs.items()}


# ----------------------------------------------------------------------------- inputs


def _n_inputs(inputs: Inputs) -> int:
    if isinstance(inputs, torch.Tensor):
        if inputs.dim() < 1:
            raise ValueError("tensor inputs need a leading batch dimension")
        return int(inputs.shape[0])
    if isinstance(inputs, Mapping):
        if not inputs:
            raise ValueError("dict inputs are empty")
        sizes = set()
        for key, value in inputs.items():
            if not isinstance(value, torch.Tensor) or value.dim() < 1:
                raise ValueError(f"dict input {key!r} must be a tensor with a batch dimension")
            sizes.add(int(value.shape[0]))
        if len(sizes) != 1:
            raise ValueError(f"dict inputs have different batch sizes: {sorted(sizes)}")
        return sizes.pop()
    raise ValueError(f"inputs must be a tensor or a dict of tensors, got {type(inputs).__name__}")


def _slice(inputs: Inputs, start: int, stop: int) -> Inputs:
    if isinstance(inputs, torch.Tensor):
        return inputs[start:stop]
    return {k: v[start:stop] for k, v in inputs.items()}


def _to(inputs: Inputs, device: torch.device, dtype: torch.dtype) -> Inputs:
    def move(t: torch.Tensor) -> torch.Tensor:
        return t.to(device, dtype) if t.is_floating_point() else t.to(device)

    if isinstance(inputs, torch.Tensor):
        return move(inputs)
    return {k: move(v) for k, v in inputs.items()}


# ----------------------------------------------------------------------------- parameters


def _last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    last = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            last = (name, mod)
    if last is None:
        raise ValueError("the model has no nn.Linear module: 'head'/'conjugate' need one")
    return last


def _matches(name: str, entry: str) -> bool:
    return (name == entry or name.startswith(entry + ".") or name.endswith("." + entry)
            or ("." + entry + ".") in name)


def select_parameters(model: nn.Module, params: str | int | Sequence[str] = "all") -> list[str]:
    """Names of the parameters a kernel differentiates, in registration order (see module doc)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("the model has no parameters with requires_grad=True")
    names = [n for n, _ in named]
    if isinstance(params, str):
        if params == "all":
            return names
        if params == "head":
            head, _ = _last_linear(model)
            prefix = head + "." if head else ""
            return [n for n in names if n.startswith(prefix) and "." not in n[len(prefix):]]
        raise ValueError(f"params must be 'all', 'head', an int or a list of names, got {params!r}")
    if isinstance(params, bool) or (isinstance(params, int | np.integer)):
        k = int(params)
        owners = []
        for mod_name, mod in model.named_modules():
            own = [mod_name + "." + pn if mod_name else pn
                   for pn, p in mod.named_parameters(recurse=False) if p.requires_grad]
            if own:
                owners.append(own)
        if isinstance(params, bool) or not 1 <= k <= len(owners):
            raise ValueError(f"params={params!r}: need 1 <= k <= {len(owners)} (modules with "
                             "parameters)")
        chosen = {n for own in owners[-k:] for n in own}
        return [n for n in names if n in chosen]
    if isinstance(params, Sequence):
        if not params:
            raise ValueError("params list is empty")
        chosen = set()
        for entry in params:
            hit = [n for n in names if _matches(n, str(entry))]
            if not hit:
                raise ValueError(f"params entry {entry!r} matches no trainable parameter")
            chosen.update(hit)
        return [n for n in names if n in chosen]
    raise ValueError(f"params must be 'all', 'head', an int or a list of names, got {params!r}")


# ----------------------------------------------------------------------------- features


def _projection_chunk(seed: int, index: int, chunk: int, rows: int, k: int, projection: str,
                      dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    state = np.random.SeedSequence([int(seed), int(index), int(chunk)]).generate_state(2)
    gen = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
    if projection == "rademacher":
        # random bytes -> 8 signs each through a 256-entry table: ~3x faster than bernoulli_
        words = (k + 7) // 8
        byte = torch.randint(0, 256, (rows * words,), generator=gen, dtype=torch.int64)
        bits = (torch.arange(256)[:, None] >> torch.arange(8)) & 1
        table = (bits.to(dtype) * 2.0 - 1.0) / math.sqrt(k)
        r = table[byte].reshape(rows, words * 8)[:, :k]
    else:
        r = torch.randn((rows, k), generator=gen, dtype=dtype).mul_(1.0 / math.sqrt(k))
    return r.to(device)


def gradient_features(model: nn.Module, inputs: Inputs, *, kind: str = "trntk",
                      params: str | int | Sequence[str] = "all",
                      projection_dim: int | None = None, projection: str = "rademacher",
                      seed: int = 0, batch_size: int = 32, chunk_rows: int = 65536,
                      max_bytes: int = 2 << 30,
                      projection_cache_bytes: int = 1 << 30,
                      split: bool = True, exact_names: bool = False) -> torch.Tensor:
    """Per-example, per-class gradient features ``[n, C', D]`` whose inner products give K0.

    ``C' = C`` for ``"trntk"``/``"trntk0"`` and 1 for ``"pntk"`` (gradient of ``Σ_c f_c /
    √C``); ``D = P`` (exact, float64) or ``projection_dim`` (projected). Computed with
    ``vmap(jacrev(·))`` over ``batch_size`` examples at a time; see the module docstring.
    The projection chunks are regenerated for every batch unless ``P × k`` values fit in
    ``projection_cache_bytes``, in which case they are kept for the call (same values).
    ``split=True`` lets a model with ``gradient_split`` (:class:`HFClassifierLogits` around a
    BERT classifier) run the blocks before the selected parameters as a plain batched
    forward and differentiate only the rest; models with ``trims_padding`` get each batch's
    trailing padding columns dropped. Neither changes the values. ``exact_names=True``
    takes ``params`` as the exact parameter names to use (the block-wise exact kernel).
    """
    if kind not in ("trntk", "trntk0", "pntk"):
        raise ValueError(f"gradient features exist for trntk/trntk0/pntk, not {kind!r}")
    if projection not in PROJECTIONS:
        raise ValueError(f"projection must be one of {PROJECTIONS}, got {projection!r}")
    if projection_dim is not None and (isinstance(projection_dim, bool)
                                       or int(projection_dim) < 1):
        raise ValueError(f"projection_dim must be a positive int or None, got {projection_dim!r}")
    if int(batch_size) < 1 or int(chunk_rows) < 1:
        raise ValueError("batch_size and chunk_rows must be positive")
    n = _n_inputs(inputs)
    names = list(params) if exact_names else select_parameters(model, params)  # type: ignore[arg-type]
    all_params = dict(model.named_parameters())
    device = all_params[names[0]].device
    dtype = all_params[names[0]].dtype
    plan = model.gradient_split(names) if split and hasattr(model, "gradient_split") else None
    prefix, fmodel = (None, model) if plan is None else plan
    trim = bool(getattr(model, "trims_padding", False))
    # names as the differentiated module (the model, or its suffix) calls its parameters
    local = {id(p): nm for nm, p in fmodel.named_parameters()}
    keys = [local[id(all_params[nm])] for nm in names]
    trainable = {key: all_params[nm].detach() for key, nm in zip(keys, names, strict=True)}
    frozen = {nm: p.detach() for nm, p in fmodel.named_parameters() if nm not in trainable}
    frozen.update(dict(fmodel.named_buffers()))
    sizes = [trainable[key].numel() for key in keys]
    total = sum(sizes)

    def f(theta: dict[str, torch.Tensor], x: Inputs) -> torch.Tensor:
        xb = x.unsqueeze(0) if isinstance(x, torch.Tensor) else {
            k: v.unsqueeze(0) for k, v in x.items()}
        out = functional_call(fmodel, {**frozen, **theta}, (xb,)).reshape(-1)
        if kind == "pntk":
            return out.sum(0, keepdim=True) / math.sqrt(out.shape[0])
        return out

    per_example = vmap(jacrev(f), in_dims=(None, 0))
    feats: torch.Tensor | None = None
    cache: dict[tuple[int, int], torch.Tensor] = {}
    use_cache = (projection_dim is not None and n > int(batch_size)
                 and total * int(projection_dim) * dtype.itemsize <= projection_cache_bytes)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, n, int(batch_size)):
            stop = min(n, start + int(batch_size))
            x = _slice(inputs, start, stop)
            if trim:
                x = _trim_padding(x)
            x = _to(x, device, dtype)
            with torch.no_grad():
                if prefix is not None:
                    x = prefix(x)
                jac = per_example(trainable, x)
            b = stop - start
            c = next(iter(jac.values())).shape[1]
            if feats is None:
                dim = total if projection_dim is None else int(projection_dim)
                need = n * c * dim * (8 if projection_dim is None else 4)
                if need > max_bytes:
                    raise ValueError(
                        f"gradient features need {need / 2**30:.2f} GiB (n={n}, C={c}, "
                        f"D={dim}) > max_bytes={max_bytes / 2**30:.2f} GiB; use "
                        "projection_dim=k, fewer params, or raise max_bytes")
                fdtype = torch.float64 if projection_dim is None else dtype
                feats = torch.zeros((n, c, dim), dtype=fdtype, device=device)
            if projection_dim is None:
                feats[start:stop] = torch.cat(
                    [jac[key].reshape(b, c, -1).to(torch.float64) for key in keys], dim=2)
                continue
            k = int(projection_dim)
            acc = torch.zeros((b * c, k), dtype=dtype, device=device)
            for index, key in enumerate(keys):
                g = jac[key].reshape(b * c, -1)
                for chunk, r0 in enumerate(range(0, sizes[index], int(chunk_rows))):
                    r1 = min(sizes[index], r0 + int(chunk_rows))
                    r = cache.get((index, chunk))
                    if r is None:
                        r = _projection_chunk(seed, index, chunk, r1 - r0, k, projection, dtype,
                                              device)
                        if use_cache:
                            cache[(index, chunk)] = r
                    acc.addmm_(g[:, r0:r1], r)
            feats[start:stop] = acc.reshape(b, c, k)
            del jac
    finally:
        model.train(was_training)
    if feats is None:  # unreachable for non-empty inputs, which the callers require
        raise RuntimeError("no gradient features were computed")
    return feats


def _forward_features(model: nn.Module, inputs: Inputs, kind: str,
                      batch_size: int) -> torch.Tensor:
    """``[n, d]`` float64 features for the conjugate or embedding kernel (batched forward)."""
    n = _n_inputs(inputs)
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None else torch.float32
    out: list[torch.Tensor] = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, n, int(batch_size)):
                x = _slice(inputs, start, min(n, start + int(batch_size)))
                if kind == "embedding":
                    if isinstance(x, torch.Tensor) and x.is_floating_point():
                        out.append(x.reshape(x.shape[0], -1).to(torch.float64))
                        continue
                    if not hasattr(model, "input_embeddings"):
                        raise ValueError("embedding kernel on token inputs needs a model with "
                                         "input_embeddings() (e.g. HFClassifierLogits)")
                    emb = model.input_embeddings(_to(x, device, dtype))
                    out.append(emb.reshape(emb.shape[0], -1).to(torch.float64))
                    continue
                _, head = _last_linear(model)
                seen: list[torch.Tensor] = []
                hook = head.register_forward_hook(
                    lambda _m, a, _o, store=seen: store.append(a[0]))
                try:
                    model(_to(x, device, dtype))
                finally:
                    hook.remove()
                if not seen:
                    raise ValueError("the final nn.Linear was not called in the forward pass")
                phi = seen[-1]
                out.append(phi.reshape(phi.shape[0], -1).to(torch.float64))
    finally:
        model.train(was_training)
    return torch.cat(out, 0)


def _gram(fa: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
    fa, fb = fa.to(torch.float64), fb.to(torch.float64)
    if fa.dim() == 2:
        return fa @ fb.T
    return torch.einsum("icd,jcd->ij", fa, fb)


def _sq_norms(f: torch.Tensor) -> torch.Tensor:
    f = f.to(torch.float64)
    return (f * f).reshape(f.shape[0], -1).sum(1)


def trntk_kernel(model: nn.Module, inputs_a: Inputs, inputs_b: Inputs | None = None,
                 kind: str = "trntk", params: str | int | Sequence[str] = "all",
                 projection_dim: int | None = None, seed: int = 0, batch_size: int = 32, *,
                 projection: str = "rademacher", normalize: bool | None = None,
                 chunk_rows: int = 65536, max_bytes: int = 2 << 30,
                 projection_cache_bytes: int = 1 << 30, split: bool = True) -> np.ndarray:
    """Kernel matrix ``K[i, j] = k(a_i, b_j)`` as a float64 numpy array ``(len(a), len(b))``.

    ``inputs_b=None`` means ``b = a`` (the features are computed once and the result is
    exactly symmetric). ``kind`` in ``("trntk", "trntk0", "pntk", "conjugate", "embedding")``;
    ``params``, ``projection_dim``/``projection``/``seed``/``chunk_rows``/
    ``projection_cache_bytes``, ``max_bytes`` and ``split`` act on the gradient kernels only
    (see the module docstring and :func:`gradient_features`). ``normalize`` (default: True
    for ``"trntk"``, else False) divides by ``√(k(a,a) k(b,b))``; a zero-norm point gets 0.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not isinstance(model, nn.Module):
        raise ValueError("model must be a torch.nn.Module mapping a batch of inputs to logits")
    if normalize is None:
        normalize = kind == "trntk"

    def feats(inputs: Inputs) -> torch.Tensor:
        if kind in ("conjugate", "embedding"):
            return _forward_features(model, inputs, kind, batch_size)
        return gradient_features(model, inputs, kind=kind, params=params,
                                 projection_dim=projection_dim, projection=projection,
                                 seed=seed, batch_size=batch_size, chunk_rows=chunk_rows,
                                 max_bytes=max_bytes,
                                 projection_cache_bytes=projection_cache_bytes, split=split)

    same = inputs_b is None
    blocks = None
    if kind in ("trntk", "trntk0", "pntk") and projection_dim is None:
        blocks = _exact_blocks(model, inputs_a, inputs_b, kind, params, max_bytes)
    if blocks is not None:
        k, na2, nb2 = _blockwise_gram(model, inputs_a, inputs_b, kind, blocks, batch_size,
                                      max_bytes, split)
    else:
        fa = feats(inputs_a)
        fb = fa if same else feats(inputs_b)
        if fa.shape[1:] != fb.shape[1:]:
            raise ValueError(f"features of a {tuple(fa.shape[1:])} and b "
                             f"{tuple(fb.shape[1:])} differ")
        k = _gram(fa, fb)
        na2 = _sq_norms(fa) if normalize else None
        nb2 = na2 if same or not normalize else _sq_norms(fb)
    if same:
        k = 0.5 * (k + k.T)
    if normalize:
        na = na2.sqrt()
        nb = na if same else nb2.sqrt()
        denom = na[:, None] * nb[None, :]
        k = torch.where(denom > 0, k / torch.where(denom > 0, denom, 1.0), 0.0)
        if same:
            k.diagonal().copy_((na > 0).to(k.dtype))
    return k.cpu().numpy()


def _n_outputs(model: nn.Module, inputs: Inputs, kind: str) -> int:
    if kind == "pntk":
        return 1
    first = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(_to(_slice(inputs, 0, 1), first.device, first.dtype))
    finally:
        model.train(was_training)
    return int(out.reshape(1, -1).shape[1])


def _exact_blocks(model: nn.Module, inputs_a: Inputs, inputs_b: Inputs | None, kind: str,
                  params: str | int | Sequence[str], max_bytes: int
                  ) -> list[tuple[list[str], int]] | None:
    """None when the exact features of a and b fit in ``max_bytes``; else the plan of the
    block-wise exact kernel: parameter groups and rows per example block.

    Parameter tensors are grouped (registration order) so that one group's float64 features
    of all a and b rows fit in ``max_bytes``; a tensor too large for that on its own forms a
    group processed in example blocks of ``rows`` for a and for b.
    """
    names = select_parameters(model, params)
    named = dict(model.named_parameters())
    n = _n_inputs(inputs_a) + (0 if inputs_b is None else _n_inputs(inputs_b))
    per_row = _n_outputs(model, inputs_a, kind) * 8  # bytes per example per parameter
    sizes = [named[nm].numel() for nm in names]
    if n * per_row * sum(sizes) <= max_bytes:
        return None
    groups: list[tuple[list[str], int]] = []
    current: list[str] = []
    width = 0
    for nm, size in zip(names, sizes, strict=True):
        if current and n * per_row * (width + size) > max_bytes:
            groups.append((current, n))
            current, width = [], 0
        current.append(nm)
        width += size
    groups.append((current, n))
    out = []
    for group, _ in groups:
        width = sum(named[nm].numel() for nm in group)
        if n * per_row * width <= max_bytes:
            rows = n
        else:
            rows = min(n, max(1, int(max_bytes // (2 * per_row * width))))
        out.append((group, rows))
    return out


def _blockwise_gram(model: nn.Module, inputs_a: Inputs, inputs_b: Inputs | None, kind: str,
                    blocks: list[tuple[list[str], int]], batch_size: int, max_bytes: int,
                    split: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact unnormalised Gram matrix and squared norms, streamed over parameter groups and
    example blocks so that no more than ``max_bytes`` of gradient features exist at once.

    Gradients are recomputed per group (and per b block for groups split over examples):
    more time, bounded memory, the same kernel up to float64 summation order.
    """
    same = inputs_b is None
    b_in = inputs_a if same else inputs_b
    n_a, n_b = _n_inputs(inputs_a), _n_inputs(b_in)
    k = torch.zeros((n_a, n_b), dtype=torch.float64)
    na2 = torch.zeros(n_a, dtype=torch.float64)
    nb2 = na2 if same else torch.zeros(n_b, dtype=torch.float64)

    def feats(inputs: Inputs, start: int, stop: int, names: list[str]) -> torch.Tensor:
        f = gradient_features(model, _slice(inputs, start, stop), kind=kind, params=names,
                              batch_size=batch_size, max_bytes=max_bytes, split=split,
                              exact_names=True)
        return f.reshape(stop - start, -1).cpu()

    for names, rows in blocks:
        if not same and rows >= n_a + n_b:  # whole group fits: a and b once each
            fa, fb = feats(inputs_a, 0, n_a, names), feats(b_in, 0, n_b, names)
            k += fa @ fb.T
            na2 += (fa * fa).sum(1)
            nb2 += (fb * fb).sum(1)
            continue
        for a0 in range(0, n_a, rows):
            a1 = min(n_a, a0 + rows)
            fa = feats(inputs_a, a0, a1, names)
            na2[a0:a1] += (fa * fa).sum(1)
            for b0 in range(a0 if same else 0, n_b, rows):
                b1 = min(n_b, b0 + rows)
                fb = fa if same and b0 == a0 else feats(b_in, b0, b1, names)
                if not same and a0 == 0:
                    nb2[b0:b1] += (fb * fb).sum(1)
                block = fa @ fb.T
                k[a0:a1, b0:b1] += block
                if same and b0 != a0:
                    k[b0:b1, a0:a1] += block.T
    return k, na2, nb2


def naive_trntk_kernel(model: nn.Module, inputs_a: Inputs, inputs_b: Inputs | None = None,
                       kind: str = "trntk", params: str | int | Sequence[str] = "all",
                       normalize: bool | None = None) -> np.ndarray:
    """Reference: the same kernel with ``torch.autograd.grad`` per example per class (slow).

    Used by the tests and the benchmark to check :func:`trntk_kernel`; gradient kinds only.
    """
    if kind not in ("trntk", "trntk0", "pntk"):
        raise ValueError(f"naive kernel supports trntk/trntk0/pntk, not {kind!r}")
    if normalize is None:
        normalize = kind == "trntk"
    names = select_parameters(model, params)
    named = dict(model.named_parameters())
    plist = [named[n] for n in names]
    dtype = plist[0].dtype
    was_training = model.training
    model.eval()

    def grads(inputs: Inputs) -> torch.Tensor:
        rows = []
        for i in range(_n_inputs(inputs)):
            out = model(_to(_slice(inputs, i, i + 1), plist[0].device, dtype)).reshape(-1)
            outs = [out.sum() / math.sqrt(out.numel())] if kind == "pntk" else list(out)
            per_class = []
            for o in outs:
                g = torch.autograd.grad(o, plist, retain_graph=True, allow_unused=True)
                per_class.append(torch.cat([
                    (gi if gi is not None else torch.zeros_like(p)).reshape(-1)
                    for gi, p in zip(g, plist, strict=True)]).to(torch.float64))
            rows.append(torch.stack(per_class))
        return torch.stack(rows)

    try:
        ga = grads(inputs_a)
        gb = ga if inputs_b is None else grads(inputs_b)
    finally:
        model.train(was_training)
    k = _gram(ga, gb)
    if normalize:
        k = k / (_sq_norms(ga).sqrt()[:, None] * _sq_norms(gb).sqrt()[None, :])
    return k.detach().numpy()


def projection_error(exact: np.ndarray, approx: np.ndarray) -> dict[str, Any]:
    """Relative Frobenius and max-abs error of a projected kernel against the exact one."""
    exact = np.asarray(exact, dtype=np.float64)
    approx = np.asarray(approx, dtype=np.float64)
    if exact.shape != approx.shape:
        raise ValueError(f"shapes differ: {exact.shape} vs {approx.shape}")
    denom = float(np.linalg.norm(exact)) or 1.0
    return {"rel_fro": float(np.linalg.norm(approx - exact) / denom),
            "max_abs": float(np.max(np.abs(approx - exact))), "n": int(exact.size)}
