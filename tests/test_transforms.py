"""Transforms: the cache and batching logic with a fake engine, apertium's block wrapping,
the real apertium engine (skipped without it), Hugging Face generation and translation on a
tiny random GPT-2, recipe validation of transform specs, and a small end-to-end run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import ClassVar

import pytest

from embedforensics.errors import UserError
from embedforensics.transforms.base import Transform, TransformParams, apply_transform
from embedforensics.transforms.translate import unwrap_blocks, wrap_blocks
from tests.conftest import TEXTS_A, TEXTS_B

HAS_APERTIUM = shutil.which("apertium") is not None


class UpperParams(TransformParams):
    suffix: str = ""


class FakeUpper(Transform):
    """Upper-cases texts and counts how many texts it really processed."""

    name = "fake-upper"
    Params = UpperParams
    chunk_size = 3
    calls: ClassVar[list[int]] = []

    def run(self, texts: list[str]) -> list[str]:
        FakeUpper.calls.append(len(texts))
        return [t.upper() + self.params.suffix for t in texts]


def _fake(suffix: str = "") -> FakeUpper:
    FakeUpper.calls = []
    return FakeUpper(UpperParams(suffix=suffix))


# -- cache and chunking ---------------------------------------------------------------

def test_outputs_in_order_and_chunked(tmp_path):
    texts = [f"text {i}" for i in range(8)]
    t = _fake()
    out, info = apply_transform(t, texts, cache_dir=tmp_path)
    assert out == [s.upper() for s in texts]
    assert FakeUpper.calls == [3, 3, 2]
    assert info["n_computed"] == 8 and info["n_from_cache"] == 0
    assert info["settings"] == {"suffix": ""}


def test_rerun_reads_cache_and_settings_change_the_key(tmp_path):
    texts = [f"text {i}" for i in range(5)]
    apply_transform(_fake(), texts, cache_dir=tmp_path)
    t = _fake()
    out, info = apply_transform(t, texts, cache_dir=tmp_path)
    assert FakeUpper.calls == [] and info["n_from_cache"] == 5
    assert out == [s.upper() for s in texts]
    out2, info2 = apply_transform(_fake("!"), texts, cache_dir=tmp_path)
    assert info2["n_computed"] == 5 and out2[0] == "TEXT 0!"


def test_added_texts_compute_only_new_chunks(tmp_path):
    texts = [f"text {i}" for i in range(6)]
    apply_transform(_fake(), texts, cache_dir=tmp_path)
    _, info = apply_transform(_fake(), texts + ["extra"], cache_dir=tmp_path)
    assert FakeUpper.calls == [1] and info["n_from_cache"] == 6


def test_corrupt_or_mismatched_entry_is_recomputed(tmp_path, caplog):
    texts = ["a", "b", "c"]
    apply_transform(_fake(), texts, cache_dir=tmp_path)
    (entry,) = list((tmp_path / "transforms").rglob("*.json"))
    data = json.loads(entry.read_text())
    data["outputs"] = ["only one"]
    entry.write_text(json.dumps(data))
    out, info = apply_transform(_fake(), texts, cache_dir=tmp_path)
    assert out == ["A", "B", "C"] and info["n_computed"] == 3
    assert "does not match" in caplog.text
    entry.write_text("{not json")
    out, info = apply_transform(_fake(), texts, cache_dir=tmp_path)
    assert out == ["A", "B", "C"] and info["n_computed"] == 3
    assert not list((tmp_path / "transforms").rglob(".tmp-*"))


def test_no_cache_dir_means_no_files(tmp_path):
    apply_transform(_fake(), ["a"], cache_dir=None)
    _, info = apply_transform(_fake(), ["a"], cache_dir=None)
    assert info["n_computed"] == 1
    assert not (tmp_path / "transforms").exists()


def test_wrong_number_of_outputs_is_a_bug(tmp_path):
    class Broken(FakeUpper):
        def run(self, texts):
            return texts[:-1]

    with pytest.raises(RuntimeError, match="returned 2 outputs for 3"):
        apply_transform(Broken(UpperParams()), ["a", "b", "c"], cache_dir=tmp_path)


# -- apertium batching ----------------------------------------------------------------

def test_blocks_round_trip_tricky_texts():
    texts = ["a < b & c > d", "line one\nline two", "", 'quotes " and \'', "</div> inside"]
    assert unwrap_blocks(wrap_blocks(texts), len(texts)) == [t.strip() for t in texts]


def test_lost_block_is_an_error():
    doc = wrap_blocks(["one", "two", "three"]).replace('<div id="ef1">', "<div>")
    with pytest.raises(RuntimeError, match=r"missing blocks \[1\]"):
        unwrap_blocks(doc, 3)


def test_missing_apertium_names_the_package(monkeypatch):
    from embedforensics.transforms import build_transform

    monkeypatch.setattr("embedforensics.transforms.translate.shutil.which", lambda _: None)
    t = build_transform("translate", {"engine": "apertium", "pair": "eng-spa"},
                        file="r.yaml", key="sources[1].transform[0]")
    with pytest.raises(UserError, match="apt-get install -y apertium apertium-eng-spa") as e:
        t.check()
    assert e.value.file == "r.yaml" and e.value.key == "sources[1].transform[0]"


@pytest.mark.skipif(not HAS_APERTIUM, reason="apertium is not installed")
def test_apertium_translates_many_texts_in_order(tmp_path):
    from embedforensics.transforms import build_transform

    t = build_transform("translate", {"engine": "apertium", "pair": "eng-spa"})
    t.check()
    texts = ["The cat is on the table.", "Hello world.", "", "Install the package & reboot.",
             "I agree with my hon. Friend. A report in today's press mentions cuts."]
    out, info = apply_transform(t, texts, cache_dir=tmp_path)
    assert len(out) == 5 and "gato" in out[0] and "mesa" in out[0]
    assert not any("  " in o for o in out)  # apertium's double spaces are collapsed
    assert out[1].startswith("Hola") and out[2] == "" and "&" in out[3]
    assert info["engine"]["apertium"]  # the Debian package version is recorded


@pytest.mark.skipif(not HAS_APERTIUM, reason="apertium is not installed")
def test_unknown_apertium_pair_did_you_mean():
    from embedforensics.transforms import build_transform

    t = build_transform("translate", {"engine": "apertium", "pair": "eng-spb"}, key="k")
    with pytest.raises(UserError, match="did you mean 'eng-spa'"):
        t.check()


# -- parameter validation ---------------------------------------------------------------

@pytest.mark.parametrize("name,params,pattern", [
    ("translate", {"engine": "apertium"}, "needs 'pair'"),
    ("translate", {"engine": "hf"}, "needs 'model'"),
    ("translate", {"engine": "google"}, "engine"),
    ("translate", {"pair": "eng-spa", "pairs": 1}, "unknown parameter 'pairs'.*did you mean"),
    ("generate", {}, "needs the parameter 'model'"),
    ("generate", {"model": "x", "prompt": "{txt}"}, r"unknown field '\{txt\}'"),
    ("generate", {"model": "x", "prompt": "no field"}, "uses no field"),
    ("generate", {"model": "x", "temperature": 0}, "temperature"),
    ("words", {"start": -1}, "start"),
])
def test_bad_params(name, params, pattern):
    from embedforensics.transforms import build_transform

    with pytest.raises(UserError, match=pattern):
        build_transform(name, params, key="sources[0].transform[0]")


def test_unknown_transform_did_you_mean(write_recipe):
    from embedforensics.recipe.loader import load_recipe

    path = write_recipe({"sources": [
        {"label": "a", "texts": TEXTS_A},
        {"label": "b", "from": "a", "transform": {"name": "translat", "pair": "eng-spa"}}]})
    with pytest.raises(UserError, match=r"sources\[1\].transform\[0\].name: unknown "
                       r"transform 'translat' \(did you mean 'translate'\?\)"):
        load_recipe(path)


def test_bad_transform_param_in_recipe_names_key(write_recipe):
    from embedforensics.recipe.loader import load_recipe

    path = write_recipe({"sources": [
        {"label": "a", "texts": TEXTS_A},
        {"label": "b", "from": "a", "transform": [{"name": "words", "cont": 3}]}]})
    with pytest.raises(UserError, match=r"sources\[1\].transform\[0\].cont: unknown parameter "
                       r"'cont' for transform 'words' \(did you mean 'count'\?\)"):
        load_recipe(path)


def test_from_must_name_an_earlier_source(write_recipe):
    from embedforensics.recipe.loader import load_recipe

    path = write_recipe({"sources": [
        {"label": "b", "from": "aa", "transform": "words"},
        {"id": "aa", "label": "a", "texts": TEXTS_A}]})
    with pytest.raises(UserError, match="not the id of an earlier source"):
        load_recipe(path)
    path = write_recipe({"sources": [
        {"id": "first", "label": "a", "texts": TEXTS_A},
        {"label": "b", "from": "frist"}]})
    with pytest.raises(UserError, match="did you mean 'first'"):
        load_recipe(path)
    path = write_recipe({"sources": [
        {"id": "first", "label": "a", "texts": TEXTS_A},
        {"label": "b", "from": "first", "texts": ["x"]}]})
    with pytest.raises(UserError, match="takes its rows from that source"):
        load_recipe(path)


# -- Hugging Face engines on a tiny random GPT-2 ------------------------------------------

@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory, tiny_bert) -> Path:
    """A random 2-layer GPT-2 with the tiny WordPiece tokenizer, saved like a checkpoint."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    path = tmp_path_factory.mktemp("models") / "tiny-gpt2"
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    tok.save_pretrained(path)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=128,
                        bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id)
    GPT2LMHeadModel(config).eval().save_pretrained(path)
    return path


def test_generate_is_seeded_and_cached(tiny_gpt2, tmp_path):
    from embedforensics.transforms import build_transform

    params = {"model": str(tiny_gpt2), "prompt_words": 3, "max_new_tokens": 6, "seed": 1,
              "batch_size": 4, "device": "cpu"}
    texts = TEXTS_A[:5]
    t = build_transform("generate", params)
    t.check()
    assert t.prompts(["the cat sat on the mat"]) == ["the cat sat"]
    out, info = apply_transform(t, texts, cache_dir=tmp_path / "c1")
    assert len(out) == 5 and all(o.strip() for o in out)
    again, _ = apply_transform(build_transform("generate", params), texts,
                               cache_dir=tmp_path / "c2")
    assert again == out  # same seed, fresh cache: same continuations
    other, _ = apply_transform(build_transform("generate", {**params, "seed": 2}), texts,
                               cache_dir=tmp_path / "c2")
    assert other != out
    _, cached = apply_transform(build_transform("generate", params), texts,
                                cache_dir=tmp_path / "c1")
    assert cached["n_from_cache"] == 5 and info["engine"]["model"]
    full, _ = apply_transform(build_transform("generate", {**params, "output": "full"}),
                              texts[:1], cache_dir=None)
    assert full[0].startswith("the cat sat ")


def test_hf_translate_with_a_causal_model(tiny_gpt2, tmp_path):
    from embedforensics.transforms import build_transform

    t = build_transform("translate", {"engine": "hf", "model": str(tiny_gpt2), "device": "cpu",
                                      "prompt": "english: {text} spanish:",
                                      "max_new_tokens": 5})
    out, info = apply_transform(t, TEXTS_B[:3], cache_dir=tmp_path)
    assert len(out) == 3 and all("\n" not in o for o in out)
    assert info["settings"]["decoding"] == "greedy"


def test_missing_model_is_one_sentence(tmp_path):
    from embedforensics.transforms import build_transform

    t = build_transform("generate", {"model": str(tmp_path / "nope")}, file="r.yaml",
                        key="sources[1].transform[0]")
    with pytest.raises(UserError, match="does not exist") as e:
        t.check()
    assert e.value.key == "sources[1].transform[0].model"


# -- end to end ----------------------------------------------------------------------------

def test_recipe_with_derived_generated_source_runs(write_recipe, tiny_gpt2, tmp_path):
    import embedforensics as ef

    path = write_recipe({"sources": [
        {"id": "human", "label": "human", "texts": TEXTS_A + TEXTS_B},
        {"id": "human-cont", "label": "human", "from": "human",
         "transform": {"name": "words", "start": 2}, "where": {"text": {"min_length": 10}}},
        {"id": "lm", "label": "lm", "from": "human",
         "transform": [{"name": "generate", "model": str(tiny_gpt2), "prompt_words": 2,
                        "max_new_tokens": 5, "device": "cpu"}]}],
        "probes": [{"name": "linear", "n_folds": 2}]})
    loaded = ef.load_recipe(path)
    r = ef.run(loaded, progress=False)
    sources = {s["id"]: s for s in r["data"]["sources"]}
    assert sources["lm"]["rows"] == 20
    assert sources["lm"]["origin"]["transforms"][0]["name"] == "generate"
    assert sources["lm"]["origin"]["from"] == "human"
    assert sources["human-cont"]["origin"]["transforms"][0]["settings"] == {"start": 2,
                                                                            "count": None}
    assert r.embeddings.ids[-1] == "lm:human:19"
    assert r.metric("linear", "accuracy") is not None
    # the rerun takes the generated texts from the transform cache
    r2 = ef.run(loaded, progress=False, write_reports=False)
    info = {s["id"]: s for s in r2["data"]["sources"]}["lm"]["origin"]["transforms"][0]
    assert info["n_from_cache"] == 20 and info["n_computed"] == 0


def test_an_unwritable_transform_cache_warns_and_keeps_the_outputs(tmp_path, caplog):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    texts = ["a", "b"]
    out, info = apply_transform(_fake(), texts, cache_dir=blocker)
    assert out == ["A", "B"] and info["n_computed"] == 2
    assert "cannot write the cache" in caplog.text
