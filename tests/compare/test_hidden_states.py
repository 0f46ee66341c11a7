"""Pooled hidden states of compared checkpoints: pooling rules against per-text passes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embedforensics.compare.hidden_states import checkpoint_states, head_states


@pytest.mark.parametrize("pooling", ["mean", "cls", "last"])
def test_batched_pooling_equals_one_text_at_a_time(tiny_bert, pooling):
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_bert)
    model = AutoModel.from_pretrained(tiny_bert).eval()
    texts = ["the cat", "the bank rate is high today", "a dog"]
    batched = checkpoint_states(model, tok, texts, pooling=pooling, batch_size=3,
                                max_length=None)
    assert len(batched) == model.config.num_hidden_layers + 1
    for i, text in enumerate(texts):
        enc = tok([text], return_tensors="pt")
        with torch.no_grad():
            hidden = model(**enc, output_hidden_states=True).hidden_states
        for layer, hs in enumerate(hidden):
            ref = {"mean": hs[0].mean(0), "cls": hs[0, 0], "last": hs[0, -1]}[pooling]
            np.testing.assert_allclose(batched[layer][i], ref.numpy(), atol=1e-5)


def test_head_states_are_input_then_hidden_activation():
    from embedforensics.compare.heads import build_head

    torch.manual_seed(0)
    mlp = build_head("mlp", 4, 2, hidden=3)
    X = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    states = head_states(mlp, X)
    assert len(states) == 2
    np.testing.assert_allclose(states[0], X, atol=0)
    expected = torch.relu(mlp[0](torch.from_numpy(X))).detach().numpy()
    np.testing.assert_allclose(states[1], expected, atol=1e-6)
    assert len(head_states(build_head("logistic", 4, 2), X)) == 1
