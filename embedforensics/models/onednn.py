"""Float32 linear layers on the CPU through oneDNN, on weights pre-packed once.

Why: PyTorch runs a float32 ``nn.Linear`` on the CPU through MKL's sgemm. On this
project's machine (AMD EPYC, AVX-512) oneDNN's kernel on a weight pre-packed in its
blocked layout was faster for an encoder's shapes (one 1312x384 by 384x1536 product: 206
vs 170 GFLOP/s), and whole encodes of multilingual-e5-small ran about 1.1x faster
(benchmarks/results/onednn.md). Linear layers are three quarters of an encoder's CPU time.

It uses the two operators inductor itself emits for packed linear layers,
``torch.ops.mkldnn._reorder_linear_weight`` and ``torch.ops.mkldnn._linear_pointwise``.
They are private, so :func:`use_onednn_linear` checks every replacement against
``torch.nn.functional.linear`` on a probe input as it swaps it in, and swaps every layer
back (saying why) if an operator is missing or disagrees. The values differ
from MKL's at float-rounding level (cosine distance ~2e-7 on real encoders).
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

# rows (tokens) per product that the packed layout is tuned for: a typical batch here
BATCH_HINT = 1024
# a replacement must reproduce F.linear to this relative tolerance on a random probe
PROBE_RTOL = 1e-5


class OneDNNLinear(torch.nn.Module):
    """``nn.Linear`` (inference only) computed by oneDNN on a pre-packed weight."""

    def __init__(self, packed_weight: torch.Tensor, bias: torch.Tensor | None,
                 requires_grad: bool = False) -> None:
        super().__init__()
        self.out_features, self.in_features = packed_weight.shape
        # plain attributes, not buffers: an opaque oneDNN tensor has no storage for
        # state_dict or .to(); this module exists only inside a loaded embedder
        self.packed_weight = packed_weight
        self.bias = bias
        self.requires_grad = requires_grad  # the original weight's, for to_linear()

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, batch_hint: int,
                    packed: torch.Tensor | None = None) -> OneDNNLinear:
        """Pack ``linear``'s weight, or reuse ``packed`` (the same weight, already packed)."""
        if packed is None:
            packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(),
                                                             batch_hint)
        bias = None if linear.bias is None else linear.bias.detach()
        return cls(packed, bias, linear.weight.requires_grad)

    def to_linear(self) -> torch.nn.Linear:
        """The equivalent ``nn.Linear`` again; the unpacked weight is bit-identical."""
        linear = torch.nn.Linear(self.in_features, self.out_features,
                                 bias=self.bias is not None, device="meta")
        linear.weight = torch.nn.Parameter(self.packed_weight.to_dense(),
                                           requires_grad=self.requires_grad)
        if self.bias is not None:
            linear.bias = torch.nn.Parameter(self.bias, requires_grad=self.requires_grad)
        return linear.train(self.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight, self.bias, "none",
                                                  [], "")

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, kernel=oneDNN (pre-packed)")


def _probe_error(linear: torch.nn.Linear, replacement: OneDNNLinear) -> float:
    """Largest |difference| between the replacement and F.linear, relative to the output."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, linear.in_features, generator=gen)
    with torch.inference_mode():
        want = torch.nn.functional.linear(x, linear.weight, linear.bias)
        got = replacement(x)
    if got.shape != want.shape:
        return float("inf")
    return float((got - want).abs().max() / want.abs().max().clamp(min=1e-30))


def use_onednn_linear(model: torch.nn.Module, batch_hint: int = BATCH_HINT) -> str:
    """Swap every plain float32 CPU ``nn.Linear`` in ``model`` for a oneDNN one, in place.

    All or nothing: each layer is checked against ``F.linear`` as it is swapped, and any
    failure swaps the layers already done back (their weights unpacked bit-identically).
    Layers are swapped one at a time, so a weight can be freed as soon as its packed copy
    replaces it: memory peaks at one layer above the model, not two copies of every
    weight (which for a multi-GB float32 model would be the difference between fitting
    and not). Layers sharing one weight share one packed copy. Returns a one-line status
    for provenance: ``"onednn (N layers)"``, or ``"aten"`` with the reason nothing was
    swapped.
    """
    if not torch.backends.mkldnn.is_available():
        return "aten (oneDNN is not available in this torch build)"
    # (parent, name) only: holding the layers themselves would keep every weight alive
    targets = [(parent, name) for parent in model.modules()
               for name, child in parent.named_children()
               if type(child) is torch.nn.Linear and child.weight.dtype == torch.float32
               and child.weight.device.type == "cpu"]
    if not targets:
        return "aten (no float32 CPU linear layers)"
    swapped: list[tuple[torch.nn.Module, str]] = []
    packed_by_weight: dict[int, torch.Tensor] = {}  # id(weight) -> packed, for tied weights
    failure = None
    try:
        for parent, name in targets:
            linear = getattr(parent, name)
            replacement = OneDNNLinear.from_linear(linear, batch_hint,
                                                   packed_by_weight.get(id(linear.weight)))
            error = _probe_error(linear, replacement)
            if not error <= PROBE_RTOL:
                failure = (f"aten (oneDNN linear differs from F.linear by {error:.1e} "
                           f"relative in {name})")
                break
            # keyed while the weight is alive (ids are reused only after it is freed)
            packed_by_weight[id(linear.weight)] = replacement.packed_weight
            replacement.train(linear.training)
            setattr(parent, name, replacement)
            swapped.append((parent, name))
            del linear, replacement  # the original weight is freed here if nothing else holds it
    except (AttributeError, RuntimeError, TypeError) as exc:  # operator missing or changed
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log.info("oneDNN linear layers not used: %s", first)
        failure = f"aten (oneDNN linear unavailable: {first})"
    if failure is not None:
        _swap_back(swapped)
        return failure
    return f"onednn ({len(swapped)} layers)"


def _swap_back(swapped: list[tuple[torch.nn.Module, str]]) -> None:
    """Undo :func:`use_onednn_linear` for these layers; tied weights stay tied."""
    restored: dict[int, torch.nn.Parameter] = {}  # id(packed) -> unpacked weight
    for parent, name in swapped:
        onednn: OneDNNLinear = getattr(parent, name)
        linear = onednn.to_linear()
        key = id(onednn.packed_weight)
        if key in restored:
            linear.weight = restored[key]
        restored[key] = linear.weight
        setattr(parent, name, linear)
