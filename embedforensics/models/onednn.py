"""Float32 linear layers on the CPU through oneDNN, on weights pre-packed once.

Why: PyTorch runs a float32 ``nn.Linear`` on the CPU through MKL's sgemm. On this
project's machine (AMD EPYC, AVX-512) oneDNN's kernel on a weight pre-packed in its
blocked layout was faster for an encoder's shapes (one 1312x384 by 384x1536 product: 206
vs 170 GFLOP/s), and whole encodes of multilingual-e5-small ran about 1.1x faster
(benchmarks/results/onednn.md). Linear layers are three quarters of an encoder's CPU time.

It uses the two operators inductor itself emits for packed linear layers,
``torch.ops.mkldnn._reorder_linear_weight`` and ``torch.ops.mkldnn._linear_pointwise``.
They are private, so :func:`use_onednn_linear` checks every replacement against
``torch.nn.functional.linear`` on a probe input before swapping anything, and leaves the
model untouched (saying why) if an operator is missing or disagrees. The values differ
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

    def __init__(self, linear: torch.nn.Linear, batch_hint: int) -> None:
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        # plain attributes, not buffers: an opaque oneDNN tensor has no storage for
        # state_dict or .to(); this module exists only inside a loaded embedder
        self.packed_weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(),
                                                                     batch_hint)
        self.bias = None if linear.bias is None else linear.bias.detach()

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

    All or nothing: every replacement is built and checked first; any failure leaves the
    model as it was. Returns a one-line status for provenance: ``"onednn (N layers)"``,
    or ``"aten"`` with the reason nothing was swapped.
    """
    if not torch.backends.mkldnn.is_available():
        return "aten (oneDNN is not available in this torch build)"
    targets = [(parent, name, child) for parent in model.modules()
               for name, child in parent.named_children()
               if type(child) is torch.nn.Linear and child.weight.dtype == torch.float32
               and child.weight.device.type == "cpu"]
    if not targets:
        return "aten (no float32 CPU linear layers)"
    built = []
    try:
        for parent, name, linear in targets:
            replacement = OneDNNLinear(linear, batch_hint)
            error = _probe_error(linear, replacement)
            if not error <= PROBE_RTOL:
                return (f"aten (oneDNN linear differs from F.linear by {error:.1e} "
                        f"relative in {name})")
            built.append((parent, name, replacement))
    except (AttributeError, RuntimeError, TypeError) as exc:  # operator missing or changed
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log.info("oneDNN linear layers not used: %s", first)
        return f"aten (oneDNN linear unavailable: {first})"
    for parent, name, replacement in built:
        setattr(parent, name, replacement)
    return f"onednn ({len(built)} layers)"
