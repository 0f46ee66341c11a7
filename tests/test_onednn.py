"""oneDNN linear layers: same values as nn.Linear, all-or-nothing swap, honest status."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch

from embedforensics.models.hf_encoder import HFTextEmbedder
from embedforensics.models.onednn import OneDNNLinear, use_onednn_linear

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(),
                                reason="this torch build has no oneDNN")


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(7, 16), torch.nn.GELU(),
                               torch.nn.Sequential(torch.nn.Linear(16, 5, bias=False)),
                               torch.nn.LayerNorm(5)).eval()


@pytest.mark.parametrize("shape", [(1, 7), (4, 7), (3, 11, 7), (2, 1, 7)])
def test_swapped_model_matches_nn_linear(shape):
    """Every nn.Linear (nested, with and without bias) is swapped; outputs of 2-D and 3-D
    inputs, including a single row, equal the original's to float rounding."""
    reference, model = _mlp(), _mlp()
    assert use_onednn_linear(model) == "onednn (2 layers)"
    assert not any(type(m) is torch.nn.Linear for m in model.modules())
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        want, got = reference(x), model(x)
    assert got.shape == want.shape
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)


def test_non_float32_layers_are_left_alone():
    model = _mlp().to(torch.bfloat16)
    status = use_onednn_linear(model)
    assert status.startswith("aten (no float32")
    assert sum(type(m) is torch.nn.Linear for m in model.modules()) == 2


def _assert_same_plain_layers(model: torch.nn.Module, reference: torch.nn.Module) -> None:
    """``model`` has plain nn.Linear layers again, with weights bit-identical to ``reference``."""
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert all(type(m) is torch.nn.Linear for m in model.modules()
               if "Linear" in type(m).__name__)
    assert len(layers) == 2
    for (name, got), (_, want) in zip(model.state_dict().items(),
                                      reference.state_dict().items(), strict=True):
        assert torch.equal(got, want), name
        assert got.layout == torch.strided


def test_a_failing_operator_swaps_everything_back(monkeypatch):
    """All or nothing: the operator fails on the second layer, after the first one was
    swapped, and the first is swapped back with its weight unpacked bit-identically."""
    model, reference = _mlp(), _mlp()
    real = torch.ops.mkldnn._linear_pointwise
    calls = {"n": 0}

    def flaky(*args):
        calls["n"] += 1
        if calls["n"] > 1:  # the first layer's check passes, the second one's fails
            raise RuntimeError("operator changed")
        return real(*args)

    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", flaky)
    status = use_onednn_linear(model)
    assert status == "aten (oneDNN linear unavailable: operator changed)"
    _assert_same_plain_layers(model, reference)
    x = torch.randn(3, 7, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        assert torch.equal(model(x), reference(x))


def test_a_wrong_result_is_caught_by_the_probe(monkeypatch):
    model, reference = _mlp(), _mlp()
    real = torch.ops.mkldnn._linear_pointwise
    calls = {"n": 0}

    def wrong_on_second(*args):
        calls["n"] += 1
        return real(*args) * (1.01 if calls["n"] > 1 else 1.0)

    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", wrong_on_second)
    assert "differs from F.linear" in use_onednn_linear(model)
    _assert_same_plain_layers(model, reference)


def test_original_weights_are_freed_as_layers_are_swapped(monkeypatch):
    """Memory: when a layer is packed, every earlier layer's original weight is already
    gone, so a large model never holds two copies of all its linear weights at once."""
    model = _mlp()
    weights = [weakref.ref(m.weight) for m in model.modules() if type(m) is torch.nn.Linear]
    alive_when_packing = []
    real = OneDNNLinear.from_linear

    def spy(linear, batch_hint, packed=None):
        gc.collect()
        alive_when_packing.append(sum(w() is not None for w in weights))
        return real(linear, batch_hint, packed)

    monkeypatch.setattr(OneDNNLinear, "from_linear", spy)
    assert use_onednn_linear(model) == "onednn (2 layers)"
    assert alive_when_packing == [2, 1]  # the first weight was freed before the second packing
    gc.collect()
    assert [w() for w in weights] == [None, None]


def test_tied_weights_share_one_packed_copy_and_stay_tied_when_swapped_back(monkeypatch):
    torch.manual_seed(0)
    first, second = torch.nn.Linear(6, 6), torch.nn.Linear(6, 6)
    second.weight = first.weight  # tied, as in some encoders' heads
    model = torch.nn.Sequential(first, torch.nn.Tanh(), second)
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        want = model(x)
    assert use_onednn_linear(model) == "onednn (2 layers)"
    assert model[0].packed_weight is model[2].packed_weight
    with torch.inference_mode():
        assert torch.allclose(model(x), want, rtol=1e-5, atol=1e-6)

    from embedforensics.models.onednn import _swap_back

    _swap_back([(model, "0"), (model, "2")])
    assert type(model[0]) is type(model[2]) is torch.nn.Linear
    assert model[0].weight is model[2].weight
    with torch.inference_mode():
        assert torch.equal(model(x), want)


def test_embedder_uses_onednn_on_cpu_float32_only(tiny_bert):
    """The text embedder's default: oneDNN kernels, embeddings equal to PyTorch's own to
    1e-5 cosine, provenance says which kernels ran and still counts the parameters."""
    texts = ["a short one", "a rather longer sentence about cats and mats", "x"]
    fast = HFTextEmbedder(str(tiny_bert), batch_size=2, device="cpu").load()
    plain = HFTextEmbedder(str(tiny_bert), batch_size=2, device="cpu",
                           onednn_linear=False).load()
    assert fast.info()["linear_kernels"].startswith("onednn (")
    assert plain.info()["linear_kernels"] == "aten (model.onednn_linear: false)"
    assert fast.info()["n_parameters"] == plain.info()["n_parameters"] > 0
    a, _ = fast.encode(texts, progress=False)
    b, _ = plain.encode(texts, progress=False)
    assert float(np.max(1.0 - np.sum(a * b, axis=1))) < 1e-5
    half = HFTextEmbedder(str(tiny_bert), batch_size=2, device="cpu", dtype="bfloat16").load()
    assert half.info()["linear_kernels"] == "aten"
