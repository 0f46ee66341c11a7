"""Sentence-transformers folders: every supported module chain is reproduced, the rest refused.

Each test builds a tiny random BERT (``build_tiny_bert``) and writes sentence-transformers'
own module files beside it by hand (``modules.json``, ``1_Pooling/config.json``,
``2_Dense/config.json`` + weights, ``3_Normalize``); nothing is downloaded. The embeddings
are checked against a brute-force numpy reference (each text run alone, no padding, pooled
with loops) and, when sentence-transformers is installed, against
``SentenceTransformer(folder).encode``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from embedforensics.errors import UserError
from embedforensics.models.hf_encoder import HFTextEmbedder
from embedforensics.models.resolve import effective_spec, resolve_model, settings_key
from embedforensics.models.st_modules import ST_POOLING
from embedforensics.recipe.schema import ModelSpec
from tests.conftest import TEXTS_A, TEXTS_B

TEXTS = [*TEXTS_A[:6], *TEXTS_B[:4], "dog", "the cat sat on the mat and the dog sat on the road"]
HIDDEN = 32
TANH = "torch.nn.modules.activation.Tanh"
IDENTITY = "torch.nn.modules.linear.Identity"
TRANSFORMER = "sentence_transformers.models.Transformer"
POOLING = "sentence_transformers.sentence_transformer.modules.pooling.Pooling"  # v6 spelling
DENSE = "sentence_transformers.models.Dense"
NORMALIZE = "sentence_transformers.models.Normalize"


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def make_st_folder(root: Path, tiny_bert: Path, pooling: dict, *,
                   dense: list[dict] | None = None, normalize: bool = False,
                   extra: list[dict] | None = None, seed: int = 0) -> Path:
    """A sentence-transformers folder: the tiny BERT at its root, then Pooling (``pooling``
    is its config.json), Dense layers (``{"out": 8, "act": TANH, "format": "bin"}``),
    an optional Normalize and any ``extra`` modules.json entries."""
    import torch

    shutil.copytree(tiny_bert, root)
    _write_json(root / "sentence_bert_config.json", {"max_seq_length": 64,
                                                     "do_lower_case": False})
    modules = [{"idx": 0, "name": "0", "path": "", "type": TRANSFORMER},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": POOLING}]
    _write_json(root / "1_Pooling" / "config.json", pooling)
    modes = pooling.get("pooling_mode") or [
        k for k in ("cls_token", "max_tokens", "mean_tokens", "mean_sqrt_len_tokens",
                    "weightedmean_tokens", "lasttoken") if pooling.get(f"pooling_mode_{k}")]
    width = HIDDEN * (1 if isinstance(modes, str) else len(modes))
    gen = torch.Generator().manual_seed(seed)
    for layer in dense or []:
        path = f"{len(modules)}_Dense"
        out, bias = layer["out"], layer.get("bias", True)
        _write_json(root / path / "config.json", {
            "in_features": width, "out_features": out, "bias": bias,
            "activation_function": layer.get("act", TANH)})
        weights = {"linear.weight": torch.randn(out, width, generator=gen) / width ** 0.5}
        if bias:
            weights["linear.bias"] = torch.randn(out, generator=gen) * 0.1
        if layer.get("format") == "bin":
            torch.save(weights, root / path / "pytorch_model.bin")
        else:
            from safetensors.torch import save_file

            save_file(weights, str(root / path / "model.safetensors"))
        modules.append({"idx": len(modules), "name": str(len(modules)), "path": path,
                        "type": DENSE})
        width = out
    if normalize:
        path = f"{len(modules)}_Normalize"
        (root / path).mkdir()
        modules.append({"idx": len(modules), "name": str(len(modules)), "path": path,
                        "type": NORMALIZE})
    for entry in extra or []:
        modules.append({"idx": len(modules), "name": str(len(modules)), **entry})
    _write_json(root / "modules.json", modules)
    return root


def embed_auto(folder: Path, **spec: object) -> tuple[np.ndarray, HFTextEmbedder]:
    """Embed TEXTS the way a recipe does: resolve, fill the auto settings, encode."""
    model = ModelSpec(id=str(folder), **spec)
    resolved = resolve_model(model, base_dir=folder.parent)
    effective, _ = effective_spec(model, resolved)
    embedder = HFTextEmbedder(resolved.location, pooling=effective.pooling,
                              normalize=effective.normalize, prefix=effective.prefix,
                              batch_size=4, device="cpu", layers=effective.layers)
    vectors, _ = embedder.encode(TEXTS, progress=False)
    return vectors, embedder


# ------------------------------------------------------------------ brute-force reference
def _token_states(folder: Path, texts: list[str]) -> list[np.ndarray]:
    """Each text alone through the transformer (no padding): [t, d] per text."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    out = []
    with torch.no_grad():
        for text in texts:
            enc = tok([text], return_tensors="pt")
            out.append(model(**enc).last_hidden_state[0].double().numpy())
    return out


def _pool_one(states: np.ndarray, mode: str, skip: int = 0) -> np.ndarray:
    positions = np.arange(1, len(states) + 1, dtype=np.float64)[skip:]
    kept = states[skip:]
    if mode == "cls":
        return kept[0]
    if mode == "max":
        return kept.max(axis=0)
    if mode == "mean":
        return kept.sum(axis=0) / len(kept)
    if mode == "mean_sqrt_len_tokens":
        return kept.sum(axis=0) / np.sqrt(len(kept))
    if mode == "weightedmean":
        return (kept * positions[:, None]).sum(axis=0) / positions.sum()
    if mode == "lasttoken":
        return kept[-1]
    raise AssertionError(mode)


def reference(folder: Path, modes: list[str], *, prefix: str = "", prompt_tokens: int = 0,
              normalize: bool = False) -> np.ndarray:
    """numpy: pool each mode, concatenate, run the Dense layers, normalise."""
    import torch

    rows = []
    for states in _token_states(folder, [prefix + t for t in TEXTS]):
        rows.append(np.concatenate([_pool_one(states, m, prompt_tokens) for m in modes]))
    x = np.stack(rows)
    modules = json.loads((folder / "modules.json").read_text())
    for module in modules[2:]:
        if module["type"] != DENSE:
            continue
        config = json.loads((folder / module["path"] / "config.json").read_text())
        bin_file = folder / module["path"] / "pytorch_model.bin"
        if bin_file.is_file():
            weights = torch.load(bin_file, weights_only=True)
        else:
            from safetensors.torch import load_file

            weights = load_file(str(folder / module["path"] / "model.safetensors"))
        x = x @ weights["linear.weight"].double().numpy().T
        if "linear.bias" in weights:
            x = x + weights["linear.bias"].double().numpy()
        x = np.tanh(x) if config["activation_function"] == TANH else x
    if normalize:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    return x


def sentence_transformers_encode(folder: Path, prompt: str | None = None) -> np.ndarray:
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(folder), device="cpu")
    return model.encode(TEXTS, prompt=prompt, batch_size=4, convert_to_numpy=True)


# ------------------------------------------------------------------ every supported chain
CHAINS = {
    "max": ({"word_embedding_dimension": HIDDEN, "pooling_mode_max_tokens": True},
            ["max"], None, False),
    "weightedmean": ({"word_embedding_dimension": HIDDEN,
                      "pooling_mode_weightedmean_tokens": True}, ["weightedmean"], None, False),
    "mean_sqrt_len": ({"word_embedding_dimension": HIDDEN,
                       "pooling_mode_mean_sqrt_len_tokens": True},
                      ["mean_sqrt_len_tokens"], None, True),
    # legacy flags concatenate in sentence-transformers' order, whatever the file's order
    "flags_lasttoken_max_cls": ({"pooling_mode_lasttoken": True, "pooling_mode_max_tokens": True,
                                 "pooling_mode_cls_token": True,
                                 "word_embedding_dimension": HIDDEN},
                                ["cls", "max", "lasttoken"], None, False),
    # the new pooling_mode list concatenates in its own order
    "list_weightedmean_cls": ({"embedding_dimension": HIDDEN,
                               "pooling_mode": ["weightedmean", "cls"]},
                              ["weightedmean", "cls"], None, True),
    "mean_dense_tanh_normalize": ({"pooling_mode": "mean", "embedding_dimension": HIDDEN},
                                  ["mean"], [{"out": 12}], True),
    "cls_two_dense": ({"pooling_mode_cls_token": True, "word_embedding_dimension": HIDDEN},
                      ["cls"], [{"out": 24, "act": IDENTITY, "format": "bin"},
                                {"out": 8, "act": TANH, "bias": False}], True),
}


@pytest.mark.parametrize("name", list(CHAINS))
def test_chain_matches_numpy_and_sentence_transformers(name, tiny_bert, tmp_path):
    pooling, modes, dense, normalize = CHAINS[name]
    folder = make_st_folder(tmp_path / name, tiny_bert, pooling, dense=dense,
                            normalize=normalize)
    ours, embedder = embed_auto(folder)
    assert embedder.pooling == ST_POOLING
    assert embedder.normalize is normalize
    want = reference(folder, modes, normalize=normalize)
    assert ours.shape == want.shape
    np.testing.assert_allclose(ours, want, atol=2e-5, rtol=0)
    assert embedder.info()["sentence_transformers_modules"][1].startswith("Pooling(")
    st = sentence_transformers_encode(folder)
    np.testing.assert_allclose(ours, st, atol=1e-5, rtol=0)


def test_include_prompt_false_leaves_the_prefix_out_of_the_pool(tiny_bert, tmp_path):
    pooling = {"pooling_mode": ["mean", "weightedmean", "cls"], "embedding_dimension": HIDDEN,
               "include_prompt": False}
    folder = make_st_folder(tmp_path / "prompt", tiny_bert, pooling)
    prefix = "the sun "
    ours, _ = embed_auto(folder, prefix=prefix)
    # [CLS] the sun [SEP]: three tokens before the text (the trailing [SEP] is not counted)
    want = reference(folder, ["mean", "weightedmean", "cls"], prefix=prefix, prompt_tokens=3)
    np.testing.assert_allclose(ours, want, atol=2e-5, rtol=0)
    np.testing.assert_allclose(ours, sentence_transformers_encode(folder, prompt=prefix),
                               atol=1e-5, rtol=0)


def test_plain_chains_keep_the_embedders_own_pooling(tiny_bert, tmp_path):
    """Transformer → mean / cls / lasttoken → Normalize: same pooling name (and cache key)
    as before, and still what sentence-transformers computes."""
    for flag, pooling in (("mean_tokens", "mean"), ("cls_token", "cls"),
                          ("lasttoken", "last_token")):
        folder = make_st_folder(tmp_path / flag, tiny_bert, {f"pooling_mode_{flag}": True},
                                normalize=True)
        ours, embedder = embed_auto(folder)
        assert (embedder.pooling, embedder.normalize) == (pooling, True)
        mode = {"mean": "mean", "cls": "cls", "last_token": "lasttoken"}[pooling]
        np.testing.assert_allclose(ours, reference(folder, [mode], normalize=True),
                                   atol=2e-5, rtol=0)


def test_recipe_pooling_overrides_the_folder(tiny_bert, tmp_path):
    """An explicit model.pooling runs on the token states; the Dense module is not used."""
    folder = make_st_folder(tmp_path / "override", tiny_bert,
                            {"pooling_mode_max_tokens": True}, dense=[{"out": 8}])
    ours, embedder = embed_auto(folder, pooling="mean", normalize=False)
    assert embedder.pooling == "mean" and ours.shape == (len(TEXTS), HIDDEN)
    np.testing.assert_allclose(ours, _plain_mean(folder), atol=2e-5, rtol=0)


def _plain_mean(folder: Path) -> np.ndarray:
    return np.stack([s.mean(axis=0) for s in _token_states(folder, TEXTS)])


def test_normalize_false_in_the_recipe_drops_the_final_normalize(tiny_bert, tmp_path):
    folder = make_st_folder(tmp_path / "nonorm", tiny_bert, {"pooling_mode_max_tokens": True},
                            dense=[{"out": 8}], normalize=True)
    ours, _ = embed_auto(folder, normalize=False)
    np.testing.assert_allclose(ours, reference(folder, ["max"]), atol=2e-5, rtol=0)
    assert not np.allclose(np.linalg.norm(ours, axis=1), 1.0)


def test_module_files_key_the_cache(tiny_bert, tmp_path):
    """Changing a Pooling mode, a Dense activation or Dense weights changes the cache key."""
    def key(folder: Path) -> str:
        spec = ModelSpec(id=str(folder))
        return settings_key(spec, resolve_model(spec, base_dir=tmp_path))

    a = make_st_folder(tmp_path / "a", tiny_bert, {"pooling_mode_max_tokens": True},
                       dense=[{"out": 8}])
    b = make_st_folder(tmp_path / "b", tiny_bert, {"pooling_mode_weightedmean_tokens": True},
                       dense=[{"out": 8}])
    c = make_st_folder(tmp_path / "c", tiny_bert, {"pooling_mode_max_tokens": True},
                       dense=[{"out": 8, "act": IDENTITY}])
    d = make_st_folder(tmp_path / "d", tiny_bert, {"pooling_mode_max_tokens": True},
                       dense=[{"out": 8}], seed=1)
    e = make_st_folder(tmp_path / "e", tiny_bert, {"pooling_mode_max_tokens": True},
                       dense=[{"out": 8}])
    keys = [key(f) for f in (a, b, c, d, e)]
    assert len(set(keys[:4])) == 4
    assert keys[0] == keys[4]  # same files in another folder: same key


# ------------------------------------------------------------------ refusals
def _refused(folder: Path, **spec: object) -> UserError:
    model = ModelSpec(id=str(folder), **spec)
    resolved = resolve_model(model, base_dir=folder.parent)
    with pytest.raises(UserError) as info:
        effective_spec(model, resolved, file="recipe.yaml")
    return info.value


def _one_sentence(message: str) -> None:
    body = message.replace("e.g.", "")
    assert body.endswith(".") and body.count(". ") == 0 and body.count(";") <= 1


def test_unknown_module_is_refused_naming_it(tiny_bert, tmp_path):
    folder = make_st_folder(tmp_path / "custom", tiny_bert, {"pooling_mode_mean_tokens": True},
                            extra=[{"path": "2_Whitening", "type": "mylab.modules.Whitening"}])
    error = _refused(folder)
    assert (error.file, error.key) == ("recipe.yaml", "model.id")
    for part in ("'custom'", "'2_Whitening'", "'mylab.modules.Whitening'",
                 "cannot reproduce SentenceTransformer.encode", "model.pooling"):
        assert part in error.message
    _one_sentence(error.message)
    # the recipe may still override the folder: its pooling runs on the token states
    ours, _ = embed_auto(folder, pooling="mean", normalize=False)
    np.testing.assert_allclose(ours, _plain_mean(folder), atol=2e-5, rtol=0)


@pytest.mark.parametrize("pooling, dense, extra, sbert, named", [
    ({"pooling_mode_mean_tokens": True, "pooling_mode_weighted_layer": True}, None, None,
     None, "pooling_mode_weighted_layer"),
    ({"pooling_mode": "median", "embedding_dimension": HIDDEN}, None, None, None, "median"),
    ({"pooling_mode_mean_tokens": True}, [{"out": 8, "act": "mylab.Swish"}], None, None,
     "mylab.Swish"),
    ({"pooling_mode_mean_tokens": True}, None,
     [{"path": "2_LayerNorm", "type": "sentence_transformers.models.LayerNorm"}], None,
     "sentence_transformers.models.LayerNorm"),
    ({"pooling_mode_mean_tokens": True}, None, None,
     {"max_seq_length": 64, "do_lower_case": True}, "do_lower_case"),
])
def test_unsupported_options_are_refused(pooling, dense, extra, sbert, named, tiny_bert,
                                         tmp_path):
    folder = make_st_folder(tmp_path / "m", tiny_bert, pooling, dense=dense, extra=extra)
    if sbert is not None:
        _write_json(folder / "sentence_bert_config.json", sbert)
    error = _refused(folder)
    assert named in error.message and "'m'" in error.message
    _one_sentence(error.message)


def test_dense_with_hidden_layers_is_refused(tiny_bert, tmp_path):
    folder = make_st_folder(tmp_path / "layers", tiny_bert, {"pooling_mode_max_tokens": True},
                            dense=[{"out": 8}])
    with pytest.raises(UserError, match="Dense") as info:
        embed_auto(folder, layers=[-1, 1])
    assert info.value.key == "model.layers"
    # without Dense, each layer is pooled the folder's way
    plain = make_st_folder(tmp_path / "plain", tiny_bert, {"pooling_mode_max_tokens": True})
    per_layer, _ = embed_auto(plain, layers=[-1, 1])
    last, _ = embed_auto(plain)
    np.testing.assert_allclose(per_layer["-1"], last, atol=1e-6)
    assert per_layer["1"].shape == last.shape


def test_refused_chain_also_fails_at_load_time(tiny_bert, tmp_path):
    """Should a caller fill the auto pooling without the refusal check, loading refuses."""
    folder = make_st_folder(tmp_path / "late", tiny_bert, {"pooling_mode_mean_tokens": True},
                            extra=[{"path": "2_Whitening", "type": "mylab.Whitening"}])
    with pytest.raises(UserError, match="'2_Whitening'"):
        HFTextEmbedder(str(folder), pooling=ST_POOLING, device="cpu").load()


def test_hub_id_reads_its_modules_from_the_hub_cache(tiny_bert, tmp_path, monkeypatch):
    """A hub id, offline from the Hugging Face cache: the chain (and the Dense weights)
    come through the cache like the transformer's own files."""
    import huggingface_hub.constants

    folder = make_st_folder(tmp_path / "st", tiny_bert, {"pooling_mode_max_tokens": True},
                            dense=[{"out": 8}], normalize=True)
    entry = tmp_path / "hub" / "models--tiny--st-model"
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text("0" * 40)
    shutil.copytree(folder, entry / "snapshots" / ("0" * 40))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    model = ModelSpec(id="tiny/st-model")
    resolved = resolve_model(model, base_dir=tmp_path)
    assert (resolved.source, resolved.family) == ("hub", "sentence-transformers")
    effective, _ = effective_spec(model, resolved)
    embedder = HFTextEmbedder(resolved.location, revision=resolved.revision,
                              pooling=effective.pooling, normalize=effective.normalize,
                              batch_size=4, device="cpu")
    ours, _ = embedder.encode(TEXTS, progress=False)
    assert embedder.effective_max_length == 64  # sentence_bert_config.json, from the cache
    np.testing.assert_allclose(ours, reference(folder, ["max"], normalize=True), atol=2e-5,
                               rtol=0)


def test_default_prompt_is_the_auto_prefix(tiny_bert, tmp_path):
    """encode() prepends the folder's default prompt by itself; so does the auto prefix."""
    folder = make_st_folder(tmp_path / "prompted", tiny_bert,
                            {"pooling_mode": "mean", "include_prompt": False,
                             "embedding_dimension": HIDDEN})
    _write_json(folder / "config_sentence_transformers.json",
                {"prompts": {"query": "the sun ", "document": ""},
                 "default_prompt_name": "query"})
    ours, embedder = embed_auto(folder)
    assert embedder.prefix == "the sun "
    np.testing.assert_allclose(ours, reference(folder, ["mean"], prefix="the sun ",
                                               prompt_tokens=3), atol=2e-5, rtol=0)
    np.testing.assert_allclose(ours, sentence_transformers_encode(folder), atol=1e-5, rtol=0)
