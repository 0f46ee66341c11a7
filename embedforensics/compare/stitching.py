"""Model stitching: can model B's later layers work on model A's earlier representation?

The stitched model is ``h = B_{>j} ∘ T ∘ A_{≤i}``: the inputs run through model A up to its
hidden state ``i``, a token-wise affine map ``T(x) = W x + b`` (``W`` of shape
``d_B × d_A``; the hidden sizes may differ) carries it to model B's hidden space, and B's
layers after ``j`` finish the computation. A and B are frozen; only ``T`` is fitted. If a
cheap ``T`` keeps B's accuracy, A and B compute compatible features at ``(i, j)``
(Lenc & Vedaldi 2015; Bansal et al. 2021; Csiszárik et al. 2021).

**Layer indices** are ``hidden_states`` indices, as in the representations comparator: for a
Hugging Face encoder ``0`` is the embeddings output and ``k`` the output of the first ``k``
transformer blocks (``k = n_blocks`` the last one; negative indices count from the end). For
a head (an ``nn.Sequential`` on embeddings) ``0`` is its input and ``k`` the output of its
``k``-th non-``Linear`` module (an activation). Stitching at ``j = n_blocks`` leaves B only
its pooler and classifier.

**Fitting methods** (``method=``):

- ``direct``: least squares with bias from A's hidden vectors to B's at the stitch point,
  over every non-padding token of the fitting batches (``scipy.linalg.lstsq`` on the normal
  equations, minimum-norm when underdetermined — as it is after a LayerNorm, whose outputs
  satisfy one linear constraint, so ``[X, 1]`` has rank ``d``), in float64. Also the
  initialisation of the three trained methods.
- ``task``: cross-entropy of the stitched model's logits to the true labels (task-loss
  matching, Csiszárik et al.).
- ``soft``: ``τ² · KL(softmax(z_B/τ) ‖ softmax(z_stitched/τ))`` to B's own outputs
  (soft-label matching, Hinton-style distillation with temperature ``τ``).
- ``fula``: Functional Latent Alignment (Athanasiadis, Karmush & Felsberg, arXiv
  2505.20142): the stitched model is aligned with B at *every* layer from the stitch point
  on, not only at its output. What is implemented, exactly (see :func:`fula_loss`):

  ``L = Σ_{ℓ=0..D} w_ℓ · e_ℓ``,  ``e_ℓ = mean_tokens ‖ŝ_ℓ − s_ℓ‖² / v_ℓ``

  over the depths ``ℓ = 0`` (B's hidden state ``j``, the stitch point itself), ``ℓ = 1 ..
  n_B − j`` (B's hidden states ``j+1 … n_B``, each block's output) and ``ℓ = D`` (B's
  logits), where ``ŝ_ℓ`` is the stitched model's activation and ``s_ℓ`` B's own on the same
  input, the mean runs over non-padding tokens (logits: over inputs), and ``v_ℓ =
  mean_tokens ‖s_ℓ − μ_ℓ‖²`` is B's total variance at that layer on the fitting set, so
  ``e_ℓ`` is a scale-free ``1 − R²``-like error (0 = exact, 1 = no better than B's mean)
  and no layer dominates by its activation scale ("normalised per layer"). The depth
  weights ``w_ℓ`` are ``(ℓ + 1) / Σ (ℓ' + 1)`` (``fula_weighting="linear"``, the default)
  or ``1/(D + 1)`` (``"uniform"``). The paper describes a distillation-style hierarchy of
  "functional hints", a weighted, normalised loss over the depths after the stitch; the
  stored sources available while writing this gave that description but not the exact
  weights, so the linear ramp is this package's choice, made for this reason: weight grows
  towards the output so that the fit is pulled towards B's *function* (the later layers and
  the logits) while the stitch point itself — the ``direct`` objective — weighs least,
  which keeps ``fula`` from collapsing to ``direct``. Each ``e_ℓ`` is reported in the
  result (``fula_terms``), so other weightings can be read off.

**Metrics** on the test batches: the stitched model's accuracy, B's own accuracy, the
stitching penalty (B's accuracy minus the stitched one's), agreement of the stitched model's
predictions with B's, and the mean KL divergence ``KL(p_B ‖ p_stitched)``; Clopper–Pearson
intervals for the proportions and a paired percentile bootstrap over test inputs for the
penalty and the KL. ``stitch(A, B)`` is the direction A→B; B→A is a different question
(``stitch(B, A)``); the comparator reports both.

Batches are dict-like: Hugging Face models take the tokenizer's tensors (``input_ids``,
``attention_mask``, optional ``token_type_ids``) — both models are fed the same tensors, so
they must share a tokenizer — and heads an ``inputs`` float tensor ``[n, d]``; ``labels``
(class indices in **B's** output order) are needed for ``task`` and for accuracies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

Method = Literal["direct", "task", "soft", "fula"]
METHODS: tuple[str, ...] = ("direct", "task", "soft", "fula")
Weighting = Literal["linear", "uniform"]
N_BOOTSTRAP = 1000
#: relative tolerance of the check that B's hand-run tail reproduces B's own logits
TAIL_CHECK_RTOL = 1e-3


# --------------------------------------------------------------------------- models


class _HFNet:
    """A Hugging Face BERT-like ``…ForSequenceClassification``: embeddings, a list of
    transformer blocks (``<base>.encoder.layer``), a pooler and ``dropout`` + ``classifier``."""

    kind = "hf"

    def __init__(self, model: Any):
        base = getattr(model, getattr(model, "base_model_prefix", ""), None)
        encoder = getattr(base, "encoder", None)
        layers = getattr(encoder, "layer", None)
        if layers is None or getattr(model, "classifier", None) is None or getattr(
                base, "pooler", None) is None:
            raise ValueError(
                f"{type(model).__name__} is not a BERT-like sequence classifier (a base "
                "model with encoder.layer and a pooler, and a classifier): stitching "
                "supports those and nn.Sequential heads")
        self.model, self.base, self.layers = model, base, list(layers)
        self.n_states = len(self.layers) + 1

    def forward_states(self, batch: Mapping[str, Any]) -> tuple[list[Any], Any, Any]:
        """All hidden states ``[n, L, d]``, the token mask ``[n, L]`` and the logits."""
        inputs = {k: v for k, v in batch.items()
                  if k in ("input_ids", "attention_mask", "token_type_ids")}
        out = self.model(**inputs, output_hidden_states=True)
        mask = inputs.get("attention_mask")
        if mask is None:
            mask = inputs["input_ids"].new_ones(inputs["input_ids"].shape)
        return list(out.hidden_states), mask, out.logits

    def _extended_mask(self, h: Any, mask: Any) -> Any:
        try:  # transformers ≥ 5 builds the mask for the attention implementation in use
            from transformers.masking_utils import create_bidirectional_mask
        except ImportError:  # 4.x: the additive [n, 1, 1, L] mask
            return self.base.get_extended_attention_mask(mask, tuple(mask.shape))
        return create_bidirectional_mask(config=self.model.config, inputs_embeds=h,
                                         attention_mask=mask)

    def tail(self, h: Any, mask: Any, j: int) -> tuple[Any, list[Any]]:
        """Run B after hidden state ``j``: blocks ``j…``, pooler, classifier. Returns the
        logits and the hidden states ``j+1 … n`` (the block outputs)."""
        ext = self._extended_mask(h, mask)
        outs = []
        for layer in self.layers[j:]:
            h = layer(h, ext)
            if isinstance(h, tuple):  # transformers 4.x returns (hidden, ...)
                h = h[0]
            outs.append(h)
        pooled = self.base.pooler(h)
        dropout = getattr(self.model, "dropout", None)
        if dropout is not None:
            pooled = dropout(pooled)
        return self.model.classifier(pooled), outs


class _HeadNet:
    """An ``nn.Sequential`` head on embedding vectors; its hidden states are the input and
    the output of every non-``Linear`` child (one "token" per input)."""

    kind = "head"

    def __init__(self, module: Any):
        import torch

        self.children = list(module.children())
        if not self.children:
            raise ValueError("a head to stitch must be an nn.Sequential of modules")
        self.model = module
        self.cuts = [0] + [k + 1 for k, m in enumerate(self.children)
                           if not isinstance(m, torch.nn.Linear)]
        self.n_states = len(self.cuts)

    def forward_states(self, batch: Mapping[str, Any]) -> tuple[list[Any], Any, Any]:
        import torch

        h = torch.as_tensor(batch["inputs"], dtype=torch.float32)
        states = [h]
        for k, m in enumerate(self.children):
            h = m(h)
            if k + 1 in self.cuts:
                states.append(h)
        mask = torch.ones(h.shape[0], 1, dtype=torch.long)
        return [s.unsqueeze(1) for s in states], mask, h

    def tail(self, h: Any, mask: Any, j: int) -> tuple[Any, list[Any]]:
        h = h[:, 0]
        outs = []
        for k in range(self.cuts[j], len(self.children)):
            h = self.children[k](h)
            if k + 1 in self.cuts:
                outs.append(h.unsqueeze(1))
        return h, outs


def as_stitchable(model: Any) -> _HFNet | _HeadNet:
    """Wrap a BERT-like Hugging Face classifier or an ``nn.Sequential`` head."""
    import torch

    if isinstance(model, (_HFNet, _HeadNet)):
        return model
    if isinstance(model, torch.nn.Sequential):
        return _HeadNet(model)
    return _HFNet(model)


def resolve_layer(layer: int, n_states: int) -> int:
    """A hidden-state index (negative from the end) as a non-negative one, or ValueError."""
    if not -n_states <= layer < n_states:
        raise ValueError(f"layer {layer} is not a hidden state of this model: it has "
                         f"0..{n_states - 1} (or -{n_states}..-1)")
    return layer % n_states


# --------------------------------------------------------------------------- features


@dataclass
class Features:
    """One frozen model's forward pass over a list of batches, kept for stitching: per
    batch the hidden states that were asked for (``{index: [n, L, d] float32}``), the token
    mask, the logits and the labels (or None)."""

    states: list[dict[int, Any]]
    masks: list[Any]
    logits: list[Any]
    labels: list[Any]
    n_states: int

    def n_rows(self) -> int:
        return int(sum(m.shape[0] for m in self.masks))


def compute_features(net: Any, batches: Iterable[Mapping[str, Any]],
                     keep: Iterable[int] | None = None) -> Features:
    """Run ``net`` (a model or :func:`as_stitchable` wrapper) once over ``batches`` and keep
    the hidden states ``keep`` (all when None)."""
    import torch

    net = as_stitchable(net)
    wanted = None if keep is None else {resolve_layer(k, net.n_states) for k in keep}
    states, masks, logits, labels = [], [], [], []
    with torch.no_grad():
        for batch in batches:
            hs, mask, z = net.forward_states(batch)
            states.append({k: h.detach().float() for k, h in enumerate(hs)
                           if wanted is None or k in wanted})
            masks.append(mask.detach())
            logits.append(z.detach().float())
            y = batch.get("labels")
            labels.append(None if y is None else torch.as_tensor(y, dtype=torch.long))
    if not masks:
        raise ValueError("no batches to stitch on")
    return Features(states, masks, logits, labels, net.n_states)


# --------------------------------------------------------------------------- the loss


def fula_weights(n_depths: int, weighting: str = "linear") -> np.ndarray:
    """The depth weights ``w_ℓ`` over ``ℓ = 0 … n_depths − 1`` (sum 1)."""
    if weighting == "linear":
        w = np.arange(1, n_depths + 1, dtype=float)
    elif weighting == "uniform":
        w = np.ones(n_depths)
    else:
        raise ValueError(f"unknown FuLA weighting {weighting!r} (linear or uniform)")
    return w / w.sum()


def _masked_sq_error(a: Any, b: Any, mask: Any) -> Any:
    """Mean over non-padding tokens of ``‖a − b‖²`` (``a, b: [n, L, d]``)."""
    m = mask.to(a.dtype).unsqueeze(-1)
    return ((a - b) ** 2 * m).sum() / m.sum().clamp(min=1)


def fula_loss(stitched: Sequence[Any], target: Sequence[Any], mask: Any,
              scales: Sequence[float], weights: Sequence[float],
              terms: list[float] | None = None) -> Any:
    """``Σ_ℓ w_ℓ · mean_tokens ‖stitched_ℓ − target_ℓ‖² / scales_ℓ``.

    ``stitched`` / ``target``: the activations at each depth, ``[n, L, d]`` (token states,
    averaged over ``mask``'s non-padding tokens) or ``[n, C]`` (the logits, averaged over
    inputs); ``scales``: B's variance per depth on the fitting set; ``terms``: when given,
    receives each ``e_ℓ``.
    """
    total = 0.0
    for s, t, v, w in zip(stitched, target, scales, weights, strict=True):
        if s.dim() == 2:
            e = ((s - t) ** 2).sum(-1).mean()
        else:
            e = _masked_sq_error(s, t, mask)
        e = e / v
        if terms is not None:
            terms.append(float(e.detach()))
        total = total + w * e
    return total


def _layer_variance(batches: Sequence[Any], masks: Sequence[Any] | None) -> float:
    """B's total variance at one depth over non-padding tokens (or inputs), float64."""
    rows = []
    for k, x in enumerate(batches):
        x = x.double()
        if x.dim() == 3:
            rows.append(x[masks[k].bool()])
        else:
            rows.append(x)
    X = np.concatenate([r.numpy() for r in rows])
    v = float(((X - X.mean(0)) ** 2).sum(1).mean())
    return v if v > 0 else 1.0


# --------------------------------------------------------------------------- the result


@dataclass
class StitchResult:
    """One stitch, fitted on ``n_fit`` inputs and measured on ``n_test``."""

    method: str
    layer_a: int
    layer_b: int
    seed: int
    n_fit: int
    n_test: int
    accuracy: float | None
    accuracy_ci: tuple[float, float] | None
    accuracy_b: float | None
    penalty: float | None
    penalty_ci: tuple[float, float] | None
    agreement: float
    agreement_ci: tuple[float, float]
    kl: float
    kl_ci: tuple[float, float]
    fit_loss: float
    fula_terms: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    weight: np.ndarray | None = field(default=None, repr=False)
    bias: np.ndarray | None = field(default=None, repr=False)
    probs: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (without the transform and the probabilities)."""
        out = asdict(self)
        for k in ("weight", "bias", "probs"):
            out.pop(k)
        return out


# --------------------------------------------------------------------------- fitting


def _direct(front: Features, back: Features, i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
    """Least squares ``[X, 1] @ [Wᵀ; b] = Y`` over the non-padding tokens (float64)."""
    from scipy.linalg import lstsq

    X = np.concatenate([s[i][m.bool()].double().numpy()
                        for s, m in zip(front.states, front.masks, strict=True)])
    Y = np.concatenate([s[j][m.bool()].double().numpy()
                        for s, m in zip(back.states, back.masks, strict=True)])
    if X.shape[0] != Y.shape[0]:
        raise ValueError("the two models saw different token masks: they must be fed the "
                         "same batches (and share a tokenizer)")
    X1 = np.hstack([X, np.ones((X.shape[0], 1))])
    # through the (d+1)×(d+1) normal equations: gelsd on the tokens × d system took seconds
    # for MiniLM-sized stitches; gelsd on X1ᵀX1 gives the same minimum-norm (pseudo-inverse)
    # solution and drops directions with singular value below ~1e-8 of the largest
    coef = lstsq(X1.T @ X1, X1.T @ Y, lapack_driver="gelsd")[0]
    return coef[:-1].T.copy(), coef[-1].copy()


def _affine(h: Any, W: Any, b: Any) -> Any:
    return h @ W.T + b


def _method_loss(method: str, net_b: Any, h: Any, mask: Any, j: int, back: Features,
                 k: int, *, temperature: float, scales: Sequence[float],
                 weights: Sequence[float], terms: list[float] | None = None) -> Any:
    import torch.nn.functional as F

    logits, outs = net_b.tail(h, mask, j)
    if method == "task":
        y = back.labels[k]
        if y is None:
            raise ValueError("method 'task' needs labels in the fitting batches")
        return F.cross_entropy(logits, y)
    if method == "soft":
        t = temperature
        target = F.softmax(back.logits[k] / t, -1)
        return F.kl_div(F.log_softmax(logits / t, -1), target, reduction="batchmean") * t * t
    if method == "fula":
        n = back.n_states
        stitched = [h, *outs, logits]
        target = [back.states[k][d] for d in range(j, n)] + [back.logits[k]]
        return fula_loss(stitched, target, mask, scales, weights, terms)
    raise ValueError(f"unknown stitching method {method!r}; choose from {', '.join(METHODS)}")


def _probs(z: Any) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(1, keepdims=True)


def stitch_features(net_b: Any, front_fit: Features, back_fit: Features,
                    front_test: Features, back_test: Features, *, layer_a: int,
                    layer_b: int, method: str = "direct", steps: int = 100,
                    lr: float = 1e-3, temperature: float = 1.0,
                    fula_weighting: str = "linear", seed: int = 0,
                    confidence: float = 0.95) -> StitchResult:
    """Fit ``T`` from precomputed features (A's ``front_*``, B's ``back_*``; computed with
    :func:`compute_features` on the same batches) and measure the stitched model.

    ``net_b`` is model B (or its wrapper): its layers after ``layer_b`` run with gradients
    through ``T`` only. Trained methods start from ``direct``'s solution and take ``steps``
    Adam steps, one fitting batch each, in a seeded random order (a new permutation of the
    batches every pass); ``direct`` ignores the seed.
    """
    import torch

    from embedforensics.compare.metrics import clopper_pearson

    if method not in METHODS:
        raise ValueError(f"unknown stitching method {method!r}; choose from "
                         f"{', '.join(METHODS)}")
    net_b = as_stitchable(net_b)
    i = resolve_layer(layer_a, front_fit.n_states)
    j = resolve_layer(layer_b, back_fit.n_states)
    for feats, idx, who in ((front_fit, i, "A"), (front_test, i, "A"), (back_fit, j, "B"),
                            (back_test, j, "B")):
        if idx not in feats.states[0]:
            raise ValueError(f"hidden state {idx} of model {who} was not kept in its features")
    # B's hand-run tail must reproduce B's own forward (else the architecture is unsupported)
    with torch.no_grad():
        z, _ = net_b.tail(back_test.states[0][j], back_test.masks[0], j)
        ref = back_test.logits[0]
        err = float((z - ref).abs().max())
        if err > TAIL_CHECK_RTOL * max(1.0, float(ref.abs().max())):
            raise RuntimeError(f"B's layers after hidden state {j}, run on B's own hidden "
                               f"state, do not reproduce B's logits (max error {err:.2e}): "
                               "this architecture is not supported by the stitcher")

    W0, b0 = _direct(front_fit, back_fit, i, j)
    W = torch.tensor(W0, dtype=torch.float32)
    b = torch.tensor(b0, dtype=torch.float32)
    n_depths = back_fit.n_states - j + 1
    scales: list[float] = []
    weights: list[float] = []
    if method == "fula":
        scales = [_layer_variance([s[d] for s in back_fit.states], back_fit.masks)
                  for d in range(j, back_fit.n_states)]
        scales.append(_layer_variance(back_fit.logits, None))
        weights = list(fula_weights(n_depths, fula_weighting))
    losses: list[float] = []
    params = [p for p in net_b.model.parameters()]
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        if method != "direct" and steps > 0:
            W.requires_grad_(True)
            b.requires_grad_(True)
            opt = torch.optim.Adam([W, b], lr=lr)
            gen = torch.Generator().manual_seed(int(seed))
            order: list[int] = []
            for _ in range(steps):
                if not order:
                    order = torch.randperm(len(front_fit.masks), generator=gen).tolist()
                k = order.pop()
                h = _affine(front_fit.states[k][i], W, b)
                loss = _method_loss(method, net_b, h, front_fit.masks[k], j, back_fit, k,
                                    temperature=temperature, scales=scales, weights=weights)
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
            W.requires_grad_(False)
            b.requires_grad_(False)
        # the objective on the whole fitting set, and the stitched outputs on the test set
        with torch.no_grad():
            fit_loss, n_seen = 0.0, 0
            terms_sum = np.zeros(n_depths) if method == "fula" else None
            for k in range(len(front_fit.masks)):
                h = _affine(front_fit.states[k][i], W, b)
                if method == "direct":
                    val = float(_masked_sq_error(h, back_fit.states[k][j], front_fit.masks[k]))
                else:
                    terms: list[float] = []
                    val = float(_method_loss(method, net_b, h, front_fit.masks[k], j, back_fit,
                                             k, temperature=temperature, scales=scales,
                                             weights=weights, terms=terms))
                    if terms_sum is not None:
                        terms_sum += np.asarray(terms) * front_fit.masks[k].shape[0]
                n = front_fit.masks[k].shape[0]
                fit_loss += val * n
                n_seen += n
            fit_loss /= n_seen
            z_st = [net_b.tail(_affine(s[i], W, b), m, j)[0]
                    for s, m in zip(front_test.states, front_test.masks, strict=True)]
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)

    p_st = _probs(torch.cat(z_st).numpy())
    p_b = _probs(torch.cat(back_test.logits).numpy())
    n = p_st.shape[0]
    pred_st, pred_b = p_st.argmax(1), p_b.argmax(1)
    agree = pred_st == pred_b
    kl_rows = np.sum(p_b * (np.log(np.clip(p_b, 1e-300, None))
                            - np.log(np.clip(p_st, 1e-300, None))), axis=1)
    kl_rows = np.maximum(kl_rows, 0.0)
    rng = np.random.default_rng([int(seed), 0x57C4])
    boot = rng.integers(0, n, size=(N_BOOTSTRAP, n))
    alpha = (1 - confidence) / 2

    def pct(values: np.ndarray) -> tuple[float, float]:
        return float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))

    kl_ci = pct(kl_rows[boot].mean(1))
    acc = acc_ci = acc_b = penalty = penalty_ci = None
    if all(y is not None for y in back_test.labels):
        y = torch.cat(back_test.labels).numpy()
        right_st, right_b = pred_st == y, pred_b == y
        acc, acc_b = float(right_st.mean()), float(right_b.mean())
        acc_ci = clopper_pearson(int(right_st.sum()), n, confidence)
        penalty = acc_b - acc
        diff = right_b.astype(float) - right_st.astype(float)
        penalty_ci = pct(diff[boot].mean(1))
    return StitchResult(
        method=method, layer_a=i, layer_b=j, seed=int(seed), n_fit=front_fit.n_rows(),
        n_test=n, accuracy=acc, accuracy_ci=acc_ci, accuracy_b=acc_b, penalty=penalty,
        penalty_ci=penalty_ci, agreement=float(agree.mean()),
        agreement_ci=clopper_pearson(int(agree.sum()), n, confidence),
        kl=float(kl_rows.mean()), kl_ci=kl_ci, fit_loss=float(fit_loss),
        fula_terms=[] if terms_sum is None else [float(v) for v in terms_sum / n_seen],
        losses=losses,
        weight=W.numpy().astype(np.float64), bias=b.numpy().astype(np.float64), probs=p_st)


def stitch(model_a: Any, model_b: Any, batches: Iterable[Mapping[str, Any]], *,
           layer_a: int, layer_b: int, method: str = "direct",
           test_batches: Iterable[Mapping[str, Any]] | None = None, steps: int = 100,
           lr: float = 1e-3, temperature: float = 1.0, fula_weighting: str = "linear",
           seed: int = 0, confidence: float = 0.95) -> StitchResult:
    """Stitch A's hidden state ``layer_a`` into B after its hidden state ``layer_b``
    (direction A→B), fit ``T`` on ``batches`` by ``method`` and measure the stitched model
    on ``test_batches`` (the fitting batches when None).

    ``model_a`` / ``model_b``: BERT-like Hugging Face sequence classifiers or
    ``nn.Sequential`` heads, put in eval mode and left unchanged (A and B are frozen).
    ``batches``: an iterable of dicts (see the module docstring), read once.

    Example::

        from embedforensics.compare import stitch
        r = stitch(model_a, model_b, fit_batches, test_batches=test_batches,
                   layer_a=4, layer_b=4, method="fula", steps=200, seed=0)
        r.penalty, r.penalty_ci, r.agreement, r.kl
    """
    batches = list(batches)
    test = batches if test_batches is None else list(test_batches)
    net_a, net_b = as_stitchable(model_a), as_stitchable(model_b)
    net_a.model.eval()
    net_b.model.eval()
    i = resolve_layer(layer_a, net_a.n_states)
    j = resolve_layer(layer_b, net_b.n_states)
    keep_b = range(j, net_b.n_states) if method == "fula" else [j]
    front_fit = compute_features(net_a, batches, [i])
    back_fit = compute_features(net_b, batches, keep_b)
    front_test = front_fit if test is batches else compute_features(net_a, test, [i])
    back_test = back_fit if test is batches else compute_features(net_b, test, [j])
    return stitch_features(net_b, front_fit, back_fit, front_test, back_test, layer_a=i,
                           layer_b=j, method=method, steps=steps, lr=lr,
                           temperature=temperature, fula_weighting=fula_weighting, seed=seed,
                           confidence=confidence)
