"""oneDNN linear layers: same values as nn.Linear, all-or-nothing swap, honest status."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embedforensics.models.hf_encoder import HFTextEmbedder
from embedforensics.models.onednn import use_onednn_linear

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


def test_a_failing_operator_leaves_the_model_untouched(monkeypatch):
    """All or nothing: if the private operator is missing, no layer is swapped."""
    model = _mlp()
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
    assert sum(type(m) is torch.nn.Linear for m in model.modules()) == 2


def test_a_wrong_result_is_caught_by_the_probe(monkeypatch):
    model = _mlp()
    real = torch.ops.mkldnn._linear_pointwise
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise",
                        lambda *args: real(*args) * 1.01)
    assert "differs from F.linear" in use_onednn_linear(model)
    assert sum(type(m) is torch.nn.Linear for m in model.modules()) == 2


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
