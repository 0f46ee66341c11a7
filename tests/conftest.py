"""Shared fixtures: a tiny random BERT saved with save_pretrained, recipes, a private cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WORDS = ("the a cat dog sat on mat sun moon star market stock bank rate price fell rose "
         "river tree bird fly sing song red blue green house car road city night day "
         "is are was were and or of to in for with by").split()


def build_tiny_bert(path: Path, *, hidden: int = 32, seed: int = 0) -> Path:
    """A 2-layer random BertModel + WordPiece tokenizer, saved like any hub checkpoint."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS,
             *list("abcdefghijklmnopqrstuvwxyz0123456789.,!?<>/'\""),
             *[f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz0123456789"]]
    vocab = list(dict.fromkeys(vocab))  # 'a' is both a word and a letter
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    # transformers 5 takes the vocabulary as `vocab`; 4.x reads `vocab_file`
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, model_max_length=64)
    if len(tokenizer) != len(vocab):
        tokenizer = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), model_max_length=64)
    if len(tokenizer) != len(vocab):
        raise RuntimeError("could not build the tiny WordPiece tokenizer")
    tokenizer.save_pretrained(path)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    BertModel(config).eval().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert")


#: The cache the user had before tests ran: slow tests reuse converted bundled models there
#: instead of converting them again into each test's private cache.
USER_CACHE = os.environ.get("EMBEDFORENSICS_CACHE")


@pytest.fixture
def user_model_cache(monkeypatch):
    """Point bundled-model conversions at the user's cache (slow tests with real models)."""
    if USER_CACHE is None:
        monkeypatch.delenv("EMBEDFORENSICS_CACHE", raising=False)
    else:
        monkeypatch.setenv("EMBEDFORENSICS_CACHE", USER_CACHE)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Each test gets its own embedding cache, so tests never see each other's entries."""
    monkeypatch.setenv("EMBEDFORENSICS_CACHE", str(tmp_path / "cache"))


TEXTS_A = ["the cat sat on the mat", "a dog sat on the mat", "the bird sang a song",
           "the cat is red", "a dog and a cat", "the bird flew to the tree",
           "the red house", "a blue car on the road", "the green tree by the river",
           "the dog is blue"]
TEXTS_B = ["the stock market fell", "the bank rate rose", "the price of stock fell",
           "market price rose by day", "the bank and the market", "stock price fell at night",
           "rate rose in the city", "the market was red", "bank stock rose", "prices fell"]


@pytest.fixture
def write_recipe(tmp_path, tiny_bert):
    """Write a recipe (dict, merged over a small valid default) and return its path."""

    def _write(overrides: dict | None = None, name: str = "recipe.yaml", *,
               base: bool = True) -> Path:
        data: dict = {}
        if base:
            data = {
                "version": 1, "name": "tiny", "seed": 0,
                "model": {"id": str(tiny_bert), "batch_size": 4},
                "sources": [{"label": "animals", "texts": TEXTS_A},
                            {"label": "finance", "texts": TEXTS_B}],
                "probes": [{"name": "pca"}, {"name": "linear", "n_folds": 2}],
                "output": {"dir": str(tmp_path / "out")},
            }
        data.update(overrides or {})
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path

    return _write
