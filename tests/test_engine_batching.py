"""Token-budget batching, out-of-memory splitting, layer capture and device_map."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embedforensics.engine.batching import (
    assign_batches,
    is_oom,
    padded_tokens,
    plan_batches,
    run_splitting_on_oom,
)
from embedforensics.errors import UserError
from embedforensics.models.hf_encoder import HFTextEmbedder
from embedforensics.recipe import load_recipe
from embedforensics.runner import embed
from tests.conftest import TEXTS_A, TEXTS_B

TEXTS = TEXTS_A + TEXTS_B


def _brute_force_ok(lengths, batches, batch_size, max_tokens):
    covered = np.sort(np.concatenate(batches))
    assert np.array_equal(covered, np.arange(len(lengths)))  # every row exactly once
    for b in batches:
        assert 1 <= len(b) <= batch_size
        if len(b) > 1:
            assert len(b) * max(lengths[b]) <= max_tokens


@pytest.mark.parametrize("seed", range(5))
def test_plan_bounds_count_and_padded_tokens(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 300, size=int(rng.integers(1, 400)))
    batches = plan_batches(lengths, batch_size=16, max_tokens=1000)
    _brute_force_ok(lengths, batches, 16, 1000)
    # longest first, and sorted within the plan (non-increasing)
    flat = np.concatenate(batches)
    assert np.all(np.diff(lengths[flat]) <= 0)
    assert padded_tokens(lengths, batches) >= lengths.sum()


def test_plan_puts_an_overlong_row_alone_and_is_deterministic():
    lengths = np.array([5, 500, 5, 5, 7])
    batches = plan_batches(lengths, batch_size=4, max_tokens=20)
    assert [b.tolist() for b in batches] == [[1], [4, 0], [2, 3]]
    assert [b.tolist() for b in plan_batches(lengths, batch_size=4, max_tokens=20)] == \
        [b.tolist() for b in batches]
    # without a budget only the count bounds a batch
    assert [len(b) for b in plan_batches(lengths, batch_size=4)] == [4, 1]
    with pytest.raises(ValueError):
        plan_batches(lengths, batch_size=0)


def test_sorting_by_tokens_pads_less_than_fixed_order():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 256, size=500)
    sorted_plan = plan_batches(lengths, batch_size=32)
    unsorted = [np.arange(i, min(i + 32, 500)) for i in range(0, 500, 32)]
    assert padded_tokens(lengths, sorted_plan) < 0.7 * padded_tokens(lengths, unsorted)


def test_assign_batches_balances_and_covers():
    lengths = np.array([50] * 10 + [5] * 40)
    batches = plan_batches(lengths, batch_size=8)
    parts = assign_batches(batches, lengths, 3)
    assert sorted(j for p in parts for j in p) == list(range(len(batches)))
    loads = [sum(len(batches[j]) * lengths[batches[j]].max() for j in p) for p in parts]
    assert max(loads) - min(loads) <= 8 * 50


def test_is_oom_recognises_torch_errors():
    assert is_oom(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate"))
    assert is_oom(RuntimeError("DefaultCPUAllocator: can't allocate memory: out of memory"))
    assert not is_oom(RuntimeError("shape mismatch"))
    assert not is_oom(ValueError("out of memory"))


def test_oom_splits_batch_and_retries_until_it_fits():
    calls = []

    def fn(batch):
        calls.append(len(batch))
        if len(batch) > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return batch * 10

    counter: dict = {}
    done = run_splitting_on_oom(np.arange(10), fn, counter)
    rows = np.concatenate([b for b, _ in done])
    assert rows.tolist() == list(range(10))
    assert np.concatenate([r for _, r in done]).tolist() == [i * 10 for i in range(10)]
    assert all(len(b) <= 3 for b, _ in done) and counter["oom_splits"] >= 3


def test_oom_on_a_single_row_and_other_errors_propagate():
    def always(batch):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(torch.cuda.OutOfMemoryError):
        run_splitting_on_oom(np.arange(4), always)

    def bug(batch):
        raise RuntimeError("size mismatch")

    with pytest.raises(RuntimeError, match="size mismatch"):
        run_splitting_on_oom(np.arange(4), bug)


def test_encoder_recovers_from_injected_oom(tiny_bert, monkeypatch):
    clean, _ = HFTextEmbedder(str(tiny_bert), batch_size=8).encode(TEXTS, progress=False)
    embedder = HFTextEmbedder(str(tiny_bert), batch_size=8).load()
    real = embedder._forward

    def flaky(texts):
        if len(texts) > 2:  # a "GPU" that only fits 2 rows
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return real(texts)

    monkeypatch.setattr(embedder, "_forward", flaky)
    X, stats = embedder.encode(TEXTS, progress=False)
    assert stats.oom_splits > 0
    np.testing.assert_allclose(X, clean, atol=1e-6)


def test_token_budget_gives_same_embeddings_in_input_order(tiny_bert):
    base, s0 = HFTextEmbedder(str(tiny_bert), batch_size=32).encode(TEXTS, progress=False)
    budget, s1 = HFTextEmbedder(str(tiny_bert), batch_size=32,
                                max_tokens_per_batch=24).encode(TEXTS, progress=False)
    np.testing.assert_allclose(budget, base, atol=1e-6)
    assert s1.n_batches > s0.n_batches == 1
    assert s1.n_padded_tokens <= s0.n_padded_tokens


def _reference_layers(model_dir, texts, layers):
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    out = {str(layer): [] for layer in layers}
    with torch.no_grad():
        for text in texts:
            hs = model(**tok(text, return_tensors="pt"), output_hidden_states=True).hidden_states
            for layer in layers:
                out[str(layer)].append(torch.nn.functional.normalize(hs[layer][0].mean(0), dim=0))
    return {k: torch.stack(v).numpy() for k, v in out.items()}


def test_layers_one_forward_pass_match_reference(tiny_bert, monkeypatch):
    layers = [-1, 0, 1]
    embedder = HFTextEmbedder(str(tiny_bert), layers=layers, batch_size=4).load()
    calls = []
    real = embedder._model.forward

    def counting(*args, **kwargs):
        calls.append(kwargs.get("output_hidden_states"))
        return real(*args, **kwargs)

    monkeypatch.setattr(embedder._model, "forward", counting)
    out, stats = embedder.encode(TEXTS, progress=False)
    assert list(out) == ["-1", "0", "1"]
    assert len(calls) == stats.n_batches == 5 and all(calls)  # one pass per batch
    ref = _reference_layers(tiny_bert, TEXTS, layers)
    for name in out:
        assert out[name].dtype == np.float32 and out[name].shape == (20, 32)
        np.testing.assert_allclose(out[name], ref[name], atol=2e-5)
    # the last layer equals the plain (no layers) embedding
    plain, _ = HFTextEmbedder(str(tiny_bert), batch_size=4).encode(TEXTS, progress=False)
    np.testing.assert_allclose(out["-1"], plain, atol=1e-6)


def test_layers_out_of_range_or_with_pooler_are_user_errors(tiny_bert):
    with pytest.raises(UserError, match="out of range.*2 layers"):
        HFTextEmbedder(str(tiny_bert), layers=[-1, 3]).load()
    with pytest.raises(UserError, match="pooler"):
        HFTextEmbedder(str(tiny_bert), layers=[-1], pooling="pooler")


def test_recipe_layers_per_layer_sets_and_cache(write_recipe, monkeypatch):
    from embedforensics.engine import embed as embed_module

    loaded = load_recipe(write_recipe(), ["model.layers=[-1, 0]"])
    first = embed(loaded, progress=False)
    assert list(first.per_layer) == ["-1", "0"]
    assert first.X is first.per_layer["-1"]
    assert first.per_layer["0"].shape == (20, 32)
    assert not np.allclose(first.per_layer["0"], first.per_layer["-1"])
    assert first.provenance["embedding"]["layers"] == ["-1", "0"]
    plain = embed(load_recipe(write_recipe()), progress=False)
    assert plain.per_layer == {}
    np.testing.assert_allclose(plain.X, first.per_layer["-1"], atol=1e-6)
    # a different layer list is a different cache entry; the same one is a hit
    other = embed(load_recipe(write_recipe(), ["model.layers=[0]"]), progress=False)
    assert {v["cache"] for v in other.provenance["embedding"]["per_source"].values()} == \
        {"computed"}
    np.testing.assert_allclose(other.X, first.per_layer["0"], atol=1e-6)

    def no_model(*args, **kwargs):
        raise AssertionError("warm cache must not load the model")

    monkeypatch.setattr(embed_module, "make_embedder", no_model)
    again = embed(loaded, progress=False)
    for name in ("-1", "0"):
        np.testing.assert_array_equal(again.per_layer[name], first.per_layer[name])


def test_device_map_auto_loads_through_accelerate(tiny_bert, monkeypatch):
    import transformers

    plain, _ = HFTextEmbedder(str(tiny_bert), batch_size=4).encode(TEXTS, progress=False)
    seen = []
    real = transformers.AutoModel.from_pretrained

    def recording(*args, **kwargs):
        seen.append(kwargs.get("device_map"))
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", recording)
    mapped = HFTextEmbedder(str(tiny_bert), batch_size=4, device_map="auto")
    X, _ = mapped.encode(TEXTS, progress=False)
    info = mapped.info()
    assert seen == ["auto"]
    assert info["device_map"]["requested"] == "auto" and info["dtype"] == "float32"
    assert info["device_map"]["placement"]  # where accelerate put the weights
    np.testing.assert_allclose(X, plain, atol=1e-6)


def test_bfloat16_is_recorded_and_close(tiny_bert):
    plain, _ = HFTextEmbedder(str(tiny_bert), batch_size=4).encode(TEXTS, progress=False)
    half = HFTextEmbedder(str(tiny_bert), batch_size=4, dtype="bfloat16")
    X, _ = half.encode(TEXTS, progress=False)
    assert X.dtype == np.float32 and half.info()["dtype"] == "bfloat16"
    cos = (X * plain).sum(1)
    assert cos.min() > 0.98


def _all_partitions(n, batch_size):
    """Every split of range(n) into contiguous runs of at most batch_size (brute force)."""
    if n == 0:
        yield []
        return
    for first in range(1, min(batch_size, n) + 1):
        for rest in _all_partitions(n - first, batch_size):
            yield [first, *rest]


@pytest.mark.parametrize("seed", range(6))
def test_batch_overhead_plan_is_optimal_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 60, size=int(rng.integers(1, 11)))
    batch_size, overhead = int(rng.integers(1, 5)), float(rng.choice([0, 5, 30, 1000]))
    max_tokens = None if seed % 2 else 120
    batches = plan_batches(lengths, batch_size=batch_size, max_tokens=max_tokens,
                           batch_overhead=overhead)
    _brute_force_ok(lengths, batches, batch_size, max_tokens or 10**9)
    got = padded_tokens(lengths, batches) + overhead * len(batches)
    srt = np.sort(lengths)[::-1]
    best = np.inf
    for sizes in _all_partitions(len(srt), batch_size):
        starts = np.cumsum([0, *sizes[:-1]])
        padded = [k * srt[s] for s, k in zip(starts, sizes, strict=True)]
        if max_tokens is not None and any(p > max_tokens and k > 1
                                          for p, k in zip(padded, sizes, strict=True)):
            continue
        best = min(best, sum(padded) + overhead * len(sizes))
    assert got == pytest.approx(best)


def test_batch_overhead_extremes():
    lengths = np.random.default_rng(7).integers(1, 256, size=300)
    # no overhead: every batch holds rows of one length, so nothing is padded
    assert padded_tokens(lengths, plan_batches(lengths, batch_size=32, batch_overhead=0)) \
        == lengths.sum()
    # a huge overhead: as few batches as the count bound allows
    assert len(plan_batches(lengths, batch_size=32, batch_overhead=1e9)) == 10
    full = plan_batches(lengths, batch_size=32)
    some = plan_batches(lengths, batch_size=32, batch_overhead=64)
    assert padded_tokens(lengths, some) + 64 * len(some) <= \
        padded_tokens(lengths, full) + 64 * len(full)
    with pytest.raises(ValueError):
        plan_batches(lengths, batch_size=4, batch_overhead=-1)


def test_engine_recipe_keys_are_validated(write_recipe):
    for override in ("model.layers=[]", "model.max_tokens_per_batch=0",
                     "model.batch_overhead_tokens=-1", "model.shard_rows=0"):
        with pytest.raises(UserError, match="model"):
            load_recipe(write_recipe(), [override])
    loaded = load_recipe(write_recipe(), ["model.layers=[-1, 6]", "model.device_map=auto"])
    assert loaded.recipe.model.layers == [-1, 6]
