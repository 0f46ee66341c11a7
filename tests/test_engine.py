"""Embedding: pooling, order restoration, truncation counts, and the crash-safe cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embedforensics.engine import embed as embed_module
from embedforensics.engine.cache import EmbeddingCache
from embedforensics.models.hf_encoder import HFTextEmbedder, pool
from embedforensics.recipe import load_recipe
from embedforensics.runner import embed
from tests.conftest import TEXTS_A, TEXTS_B


def _reference(model_dir, texts, pooling="mean", normalize=True):
    """Embed one text at a time with plain transformers: no batching, no padding."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    rows = []
    with torch.no_grad():
        for text in texts:
            enc = tok(text, return_tensors="pt", truncation=True, max_length=64)
            hidden = model(**enc).last_hidden_state[0]
            vec = hidden.mean(0) if pooling == "mean" else hidden[0]
            rows.append(torch.nn.functional.normalize(vec, dim=0) if normalize else vec)
    return torch.stack(rows).numpy()


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_batched_sorted_embeddings_match_one_at_a_time(tiny_bert, pooling):
    texts = TEXTS_A + TEXTS_B
    embedder = HFTextEmbedder(str(tiny_bert), pooling=pooling, batch_size=3)
    X, stats = embedder.encode(texts, progress=False)
    ref = _reference(tiny_bert, texts, pooling)
    np.testing.assert_allclose(X, ref, atol=2e-5)
    assert stats.n_texts == 20 and stats.n_batches == 7 and stats.n_truncated == 0


def test_truncation_is_counted(tiny_bert):
    embedder = HFTextEmbedder(str(tiny_bert), max_length=6, batch_size=4)
    X, stats = embedder.encode(["the cat", "the cat sat on the mat by the tree"], progress=False)
    assert stats.n_truncated == 1 and X.shape == (2, 32)
    assert stats.n_tokens == 4 + 6


def test_last_token_pooling_handles_left_and_right_padding():
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert pool(hidden, right, "last_token").flatten().tolist() == [1.0, 7.0]
    assert pool(hidden, left, "last_token").flatten().tolist() == [3.0, 7.0]
    mean = pool(hidden, right, "mean").flatten().tolist()
    assert mean == [0.5, 5.5]


def test_cache_hit_does_not_load_the_model(write_recipe, monkeypatch):
    loaded = load_recipe(write_recipe())
    first = embed(loaded, progress=False)
    assert {v["cache"] for v in first.provenance["embedding"]["per_source"].values()} == \
        {"computed"}

    def no_model(*args, **kwargs):
        raise AssertionError("the model must not be loaded on a warm cache")

    monkeypatch.setattr(embed_module, "make_embedder", no_model)
    second = embed(loaded, progress=False)
    assert {v["cache"] for v in second.provenance["embedding"]["per_source"].values()} == \
        {"cache hit"}
    np.testing.assert_array_equal(first.X, second.X)
    assert second.ids == first.ids


def test_changed_settings_or_texts_miss_the_cache(write_recipe):
    loaded = load_recipe(write_recipe())
    embed(loaded, progress=False)
    other = embed(load_recipe(write_recipe(), ["model.pooling=cls"]), progress=False)
    assert {v["cache"] for v in other.provenance["embedding"]["per_source"].values()} == \
        {"computed"}
    changed = embed(load_recipe(write_recipe(), ["sources[1].limit=5"]), progress=False)
    status = {k: v["cache"] for k, v in changed.provenance["embedding"]["per_source"].items()}
    assert status == {"animals": "cache hit", "finance": "computed"}


def test_corrupt_or_mismatched_cache_entry_is_recomputed(write_recipe, caplog):
    import json

    from embedforensics.engine.shards import ShardedEntry

    loaded = load_recipe(write_recipe())
    first = embed(loaded, progress=False)
    per_source = first.provenance["embedding"]["per_source"]
    root = first.provenance["embedding"]["cache_dir"]

    def entry(source):
        return ShardedEntry(root, per_source[source]["cache_key"], n_rows=10,
                            shard_rows=10_000, text_fingerprint="", tensors=["embeddings"])

    # truncate one shard (a crash mid-write on a filesystem without atomic rename)
    shard = entry("animals").dir / "shard-00000.safetensors"
    shard.write_bytes(shard.read_bytes()[:100])
    # and make the other entry's manifest claim different texts
    manifest_path = entry("finance").manifest_path
    manifest = json.loads(manifest_path.read_text())
    manifest["text_fingerprint"] = "other"
    manifest_path.write_text(json.dumps(manifest))
    again = embed(loaded, progress=False)
    status = {k: v["cache"] for k, v in again.provenance["embedding"]["per_source"].items()}
    assert status == {"animals": "computed", "finance": "computed"}
    np.testing.assert_allclose(again.X, first.X, atol=1e-6)
    assert "sha256 differs" in caplog.text and "text_fingerprint" in caplog.text


def test_old_single_file_cache_api_still_works(tmp_path):
    """EmbeddingCache stays for other users of one-file entries (compare's soft outputs)."""
    cache = EmbeddingCache(tmp_path)
    cache.save("cd" * 32, np.ones((2, 2), np.float32), text_fingerprint="f", info={})
    assert cache.load("cd" * 32, expected_rows=2, text_fingerprint="g") is None


def test_no_cache_writes_nothing(write_recipe, tmp_path):
    loaded = load_recipe(write_recipe())
    result = embed(loaded, use_cache=False, progress=False)
    assert result.provenance["embedding"]["cache_dir"] is None
    assert not (tmp_path / "cache").exists()


def test_cache_write_is_atomic(tmp_path):
    cache = EmbeddingCache(tmp_path)
    cache.save("ab" * 32, np.ones((3, 2), np.float32), text_fingerprint="f", info={"x": 1})
    files = list((tmp_path / "embeddings").rglob("*"))
    assert [f.name for f in files if f.is_file()] == ["ab" * 32 + ".safetensors"]
    array, info = cache.load("ab" * 32, expected_rows=3, text_fingerprint="f")
    assert info == {"x": 1} and array.shape == (3, 2)
    assert cache.load("ab" * 32, expected_rows=4, text_fingerprint="f") is None


def test_tiny_tokenizer_knows_its_words(tiny_bert):
    """Guard for the fixture itself: words must not all collapse to [UNK]."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_bert)
    ids = tok("the cat sat on the mat", add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids and len(set(ids)) == 5


def test_compiled_model_matches_eager_and_has_its_own_cache_entry(write_recipe):
    """model.compile: torch.compile with dynamic shapes gives the eager embeddings (to
    float rounding) over batches of several shapes, and is keyed apart in the cache."""
    eager = embed(load_recipe(write_recipe(), ["model.batch_size=3"]), progress=False)
    compiled = embed(load_recipe(write_recipe(), ["model.batch_size=3", "model.compile=true"]),
                     progress=False)
    per = compiled.provenance["embedding"]["per_source"]
    assert {v["cache"] for v in per.values()} == {"computed"}  # not eager's entry
    assert compiled.provenance["model"]["compile"] == "torch.compile(dynamic=True, freezing)"
    assert compiled.provenance["model"]["model_class"] == "BertModel"
    cosine = np.sum(eager.X * compiled.X, axis=1)  # both L2-normalised
    assert float(np.max(1.0 - cosine)) < 1e-5
