"""Classifier heads: deterministic training, save/load round trip, HF checkpoint scorer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embedforensics.compare.heads import (
    load_scorer,
    prepare_training_labels,
    save_head,
    train_head,
)
from embedforensics.errors import UserError
from embedforensics.recipe.compare_spec import CompareSpec, HeadGroupSpec, HeadsSpec


def _data(n: int = 120, d: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = (rng.normal(size=(n, d)) + y[:, None] * 0.8).astype(np.float32)
    return X, y


def _settings(**kw) -> dict:
    return HeadGroupSpec(name="g", **{"epochs": 5, "batch_size": 16, **kw}).training_settings()


@pytest.mark.parametrize("kw", [{}, {"kind": "mlp", "hidden": 8, "optimizer": "sgd"},
                                {"optimizer": "lbfgs", "lr": 0.5, "epochs": 3}])
def test_training_is_deterministic_and_seed_dependent(kw):
    X, y = _data()
    a, _ = train_head(X, y, 2, _settings(**kw), seed=3)
    b, _ = train_head(X, y, 2, _settings(**kw), seed=3)
    c, _ = train_head(X, y, 2, _settings(**kw), seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    for k in sa:
        assert np.array_equal(sa[k].numpy(), sb[k].numpy()), k
    assert any(not np.array_equal(sa[k].numpy(), sc[k].numpy()) for k in sa)


def test_label_noise_and_subsample_are_exact_and_seeded():
    y = np.arange(200) % 2
    idx, labels = prepare_training_labels(y, 2, label_noise=0.2, train_fraction=0.5, seed=1)
    assert idx.size == 100 and np.bincount(y[idx]).tolist() == [50, 50]
    assert int(np.count_nonzero(labels != y[idx])) == 20
    idx2, labels2 = prepare_training_labels(y, 2, label_noise=0.2, train_fraction=0.5, seed=1)
    assert np.array_equal(idx, idx2) and np.array_equal(labels, labels2)
    idx3, _ = prepare_training_labels(y, 2, label_noise=0.2, train_fraction=0.5, seed=2)
    assert not np.array_equal(idx, idx3)


def test_save_load_round_trip(tmp_path):
    X, y = _data()
    module, info = train_head(X, y, 2, _settings(kind="mlp", hidden=4), seed=0)
    out = save_head(tmp_path / "h", module, {"kind": "mlp", "input_dim": 8,
                                             "classes": ["a", "b"], "seed": 0,
                                             "training": _settings(kind="mlp", hidden=4),
                                             "train_info": info})
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    scorer = load_scorer(out)
    assert scorer.classes == ["a", "b"] and scorer.input == "embeddings"
    import torch

    with torch.no_grad():
        expected = module(torch.from_numpy(X)).numpy()
    assert np.allclose(scorer.logits(X=X), expected, atol=1e-6)
    assert json.loads((out / "config.json").read_text())["format"] == "embedforensics-head-v1"
    assert load_scorer(out).fingerprint == scorer.fingerprint


def build_tiny_classifier(path: Path, labels: list[str], seed: int = 0) -> Path:
    """A random BertForSequenceClassification + WordPiece tokenizer, saved with save_pretrained."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from tests.conftest import build_tiny_bert

    build_tiny_bert(path, seed=seed)  # vocabulary, tokenizer and a config to start from
    torch.manual_seed(seed)
    config = BertConfig.from_pretrained(path)
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {v: k for k, v in config.id2label.items()}
    BertForSequenceClassification(config).eval().save_pretrained(path)
    return path


def test_hf_checkpoint_scorer(tmp_path):
    path = build_tiny_classifier(tmp_path / "clf", ["animals", "finance"])
    scorer = load_scorer(path)
    assert scorer.input == "texts" and scorer.classes == ["animals", "finance"]
    logits = scorer.logits(texts=["the cat sat", "the bank rate rose", "a dog"], batch_size=2)
    assert logits.shape == (3, 2) and logits.dtype == np.float32
    again = load_scorer(path).logits(texts=["the cat sat", "the bank rate rose", "a dog"])
    assert np.allclose(logits, again, atol=1e-5)


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no config.json"):
        load_scorer(tmp_path / "empty", file="r.yaml", key="compare.reference")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").write_text("{}")
    with pytest.raises(UserError, match="no model.safetensors"):
        load_scorer(tmp_path / "cfg")


def test_spec_validation():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        HeadGroupSpec(name="g", label_noise=0.5)
    with pytest.raises(ValidationError):
        HeadGroupSpec(name="g", train_fraction=0)
    with pytest.raises(ValidationError):
        HeadGroupSpec(name="g", optimiser="adam")
    with pytest.raises(ValidationError, match="unique"):
        HeadsSpec(groups=[{"name": "a"}, {"name": "a"}])
    spec = CompareSpec(reference="a", candidates={"b": ["x/*", "y/*"]})
    assert spec.methods == ["asymptotic", "bootstrap"] and spec.level == 0.05
    assert HeadGroupSpec(name="g", seeds=3, seed_offset=10).seed_list == [10, 11, 12]
