"""Every common Hugging Face checkpoint format loads in `compare` and scores like the same
model saved plainly: sharded safetensors, pytorch_model.bin (tensors only), PEFT LoRA
adapters, hub ids with a revision (offline, from a hand-built cache), Trainer checkpoints
without tokenizer files; the tokenizer rule; the fingerprint covers the tokenizer."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from embedforensics.cli import main
from embedforensics.compare.heads import is_checkpoint, load_scorer
from embedforensics.compare.hf_checkpoints import (
    LoadHints,
    checkpoint_format,
    checkpoint_path,
    resolve_hub_checkpoint,
)
from embedforensics.errors import UserError
from tests.compare.test_heads import build_tiny_classifier

LABELS = ["animals", "finance"]
TEXTS = ["the cat sat on the mat", "the bank rate rose", "a dog", "stock price fell at night",
         "the bird sang a song by the river", "market"]
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")
TRAINER_EXTRAS = ("optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin")


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Path:
    """A tiny random BERT classifier saved plainly (model.safetensors + tokenizer)."""
    return build_tiny_classifier(tmp_path_factory.mktemp("plain") / "clf", LABELS, seed=3)


@pytest.fixture(scope="module")
def expected(plain) -> np.ndarray:
    return load_scorer(plain).logits(texts=TEXTS, batch_size=4)


def _model(path: Path):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(str(path)).eval()


def _copy(src: Path, dst: Path, names) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(src / name, dst / name)
    return dst


def _trainer_checkpoint(plain: Path, dst: Path, **config_extra) -> Path:
    """What Trainer writes without a tokenizer: config, weights, optimiser state, logs.
    The optimiser files are not pickles at all: loading one would fail loudly."""
    _copy(plain, dst, ["model.safetensors"])
    config = json.loads((plain / "config.json").read_text())
    (dst / "config.json").write_text(json.dumps({**config, **config_extra}))
    for name in TRAINER_EXTRAS:
        (dst / name).write_bytes(b"never opened")
    (dst / "trainer_state.json").write_text(json.dumps({"global_step": 10}))
    return dst


def test_sharded_safetensors(plain, expected, tmp_path):
    folder = tmp_path / "sharded"
    _model(plain).save_pretrained(folder, max_shard_size="20KB")
    _copy(plain, folder, TOKENIZER_FILES)
    assert len(list(folder.glob("model-*.safetensors"))) > 1
    assert checkpoint_format(folder) == "safetensors-sharded" and is_checkpoint(folder)
    scorer = load_scorer(folder)
    assert scorer.config["format"] == "safetensors-sharded"
    assert scorer.config["tokenizer"]["source"] == "checkpoint"
    assert np.allclose(scorer.logits(texts=TEXTS), expected, atol=1e-5)
    # the fingerprint covers every shard
    shard = sorted(folder.glob("model-*.safetensors"))[-1]
    before = scorer.fingerprint
    shard.write_bytes(shard.read_bytes() + b" ")
    assert load_scorer(folder).fingerprint != before
    shard.unlink()
    with pytest.raises(UserError, match=f"missing the shard '{shard.name}'"):
        load_scorer(folder, file="r.yaml", key="compare.reference")


def _save_bin(state: dict, folder: Path, shards: int = 1) -> None:
    """pytorch_model.bin (transformers 5 no longer writes .bin), optionally sharded."""
    import torch

    keys = sorted(state)
    if shards == 1:
        torch.save(state, folder / "pytorch_model.bin")
        return
    weight_map = {}
    for i, part in enumerate(np.array_split(np.array(keys, dtype=object), shards)):
        name = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
        torch.save({k: state[k] for k in part}, folder / name)
        weight_map.update({k: name for k in part})
    (folder / "pytorch_model.bin.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map}))


@pytest.mark.parametrize("shards", [1, 3])
def test_pytorch_bin(plain, expected, tmp_path, shards):
    folder = _copy(plain, tmp_path / "bin", ["config.json", *TOKENIZER_FILES])
    _save_bin(_model(plain).state_dict(), folder, shards)
    assert checkpoint_format(folder) == ("bin" if shards == 1 else "bin-sharded")
    scorer = load_scorer(folder)
    assert np.allclose(scorer.logits(texts=TEXTS), expected, atol=1e-5)


class _Payload:
    """Unpickling this runs ``os.mkdir(marker)``: what weights_only=True must refuse."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.mkdir, (self.marker,))


def test_pytorch_bin_never_unpickles_objects(plain, tmp_path):
    import torch

    folder = _copy(plain, tmp_path / "evil", ["config.json", *TOKENIZER_FILES])
    marker = tmp_path / "executed"
    state = dict(_model(plain).state_dict())
    state["payload"] = _Payload(marker)
    torch.save(state, folder / "pytorch_model.bin")
    scorer = load_scorer(folder, file="r.yaml", key="compare.reference")  # nothing loaded yet
    with pytest.raises(UserError, match="holds more than tensors") as err:
        scorer.logits(texts=TEXTS)
    assert str(err.value).startswith(f"r.yaml: compare.reference: '{folder}'")
    assert not marker.exists()


def _lora(plain: Path, folder: Path, *, seed: int = 0):
    """A LoRA adapter (random non-zero B, so it changes the function) saved beside nothing
    else: no tokenizer, no config.json; returns (adapter folder, unmerged logits, peft model)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer

    torch.manual_seed(seed)
    peft_model = get_peft_model(_model(plain), LoraConfig(
        task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value"],
        init_lora_weights=False)).eval()
    peft_model.save_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(str(plain))
    with torch.no_grad():
        logits = peft_model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits
    return folder, logits.numpy(), peft_model


def test_peft_lora_adapter(plain, expected, tmp_path):
    folder, unmerged, peft_model = _lora(plain, tmp_path / "lora")
    assert json.loads((folder / "adapter_config.json").read_text())[
        "base_model_name_or_path"] == str(plain)
    assert checkpoint_format(folder) == "peft-adapter" and is_checkpoint(folder)
    assert not (folder / "config.json").exists() and not (folder / "vocab.txt").exists()
    scorer = load_scorer(folder)
    assert scorer.kind == "hf-peft-adapter" and scorer.classes == LABELS  # the base's labels
    assert scorer.config["tokenizer"]["source"] == f"base:{plain}"
    logits = scorer.logits(texts=TEXTS)
    assert np.allclose(logits, unmerged, atol=1e-5)
    assert np.abs(logits - expected).max() > 1e-4  # the adapter changed the function
    # merge check: the same fine-tune merged and saved plainly scores the same
    merged = tmp_path / "merged"
    peft_model.merge_and_unload().save_pretrained(merged)
    _copy(plain, merged, TOKENIZER_FILES)
    assert np.allclose(load_scorer(merged).logits(texts=TEXTS), logits, atol=1e-5)


def test_adapter_base_stated_in_recipe_and_own_classes(plain, tmp_path):
    folder, unmerged, _ = _lora(plain, tmp_path / "lora", seed=1)
    config = json.loads((folder / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "nowhere/not-cached"
    (folder / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="base model 'nowhere/not-cached' of adapter"):
        load_scorer(folder, file="r.yaml", key="compare.candidates.x")
    shutil.copytree(plain, tmp_path / "recipe" / "base")
    hints = LoadHints(base_dir=tmp_path / "recipe", base_model="base")
    scorer = load_scorer(checkpoint_path(folder, hints))
    assert scorer.config["base_model"]["id"] == "base"
    assert np.allclose(scorer.logits(texts=TEXTS), unmerged, atol=1e-5)
    # a config.json saved with the adapter names its classes (over the base's)
    own = json.loads((plain / "config.json").read_text())
    own["id2label"] = {"0": "cats", "1": "money"}
    own["label2id"] = {"cats": 0, "money": 1}
    (folder / "config.json").write_text(json.dumps(own))
    assert load_scorer(checkpoint_path(folder, hints)).classes == ["cats", "money"]


def test_adapter_leaving_the_classifier_random_is_refused(tmp_path):
    from peft import LoraConfig, get_peft_model

    from tests.conftest import build_tiny_bert

    encoder = build_tiny_bert(tmp_path / "encoder")  # a BertModel: no classifier weights
    clf = _model(encoder)
    # an adapter of the attention only (no task_type: no modules_to_save classifier)
    get_peft_model(clf, LoraConfig(r=2, target_modules=["query"])).save_pretrained(
        tmp_path / "lora")
    config = json.loads((tmp_path / "lora" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(encoder)
    scorer = load_scorer(tmp_path / "lora")
    with pytest.raises(UserError, match="randomly initialised"):
        scorer.logits(texts=TEXTS)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache in a temporary HF_HOME, offline."""
    from huggingface_hub import constants

    home = tmp_path / "hf-home"
    cache = home / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads the variables once, at import: point it at this cache too
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def _publish(cache: Path, repo: str, source: Path, revision: str, commit: str) -> Path:
    """The hub cache layout by hand: models--org--name/snapshots/<commit>/ + refs/<rev>."""
    root = cache / f"models--{repo.replace('/', '--')}"
    snapshot = shutil.copytree(source, root / "snapshots" / commit)
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / revision).write_text(commit)
    return snapshot


def test_hub_id_with_revision(plain, expected, hub_cache):
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = _publish(hub_cache, "org/tiny-clf", plain, "v1", commit)
    for ref in ("hub:org/tiny-clf@v1", f"hub:org/tiny-clf@{commit}"):
        path = resolve_hub_checkpoint(ref, None, file="r.yaml", key="compare.reference")
        assert path == snapshot and path.reference == ref
        scorer = load_scorer(path)
        assert scorer.config["hub"] == ref
        assert np.allclose(scorer.logits(texts=TEXTS), expected, atol=1e-5)
        assert scorer.fingerprint == load_scorer(plain).fingerprint  # the same files
    with pytest.raises(UserError) as err:  # no such revision cached (and no main)
        resolve_hub_checkpoint("hub:org/tiny-clf@v2", None, file="r.yaml",
                               key="compare.candidates.x")
    message = str(err.value)
    assert message.startswith("r.yaml: compare.candidates.x: hub model 'org/tiny-clf' at "
                              "revision 'v2' is not in the local Hugging Face cache")
    assert "'hf download org/tiny-clf --revision v2'" in message
    assert message.count(". ") == 0  # one sentence
    with pytest.raises(UserError, match="not a hub reference"):
        resolve_hub_checkpoint("hub:org/tiny clf", None, file=None, key="k")


def test_trainer_checkpoint_takes_the_stated_tokenizer(plain, expected, tmp_path):
    ckpt = _trainer_checkpoint(plain, tmp_path / "run" / "checkpoint-10")
    assert checkpoint_format(ckpt) == "safetensors" and is_checkpoint(ckpt)
    # no tokenizer anywhere: a clean error naming the folder and the recipe key
    with pytest.raises(UserError) as err:
        load_scorer(ckpt, file="r.yaml", key="compare.reference")
    assert str(err.value).startswith(f"r.yaml: compare.reference: checkpoint '{ckpt}' has no "
                                     "tokenizer files")
    assert "compare.base_model" in str(err.value)
    # the base model stated in the recipe
    hints = LoadHints(base_dir=tmp_path, base_model=str(plain))
    scorer = load_scorer(checkpoint_path(ckpt, hints))
    assert scorer.config["tokenizer"] == {"source": f"base:{plain}", "folder": str(plain)}
    assert np.allclose(scorer.logits(texts=TEXTS), expected, atol=1e-5)
    # the recipe's model:
    hints = LoadHints(base_dir=tmp_path, recipe_model_id="tiny", recipe_model=lambda: plain)
    scorer = load_scorer(checkpoint_path(ckpt, hints))
    assert scorer.config["tokenizer"]["source"] == "recipe model:tiny"
    assert np.allclose(scorer.logits(texts=TEXTS), expected, atol=1e-5)
    # a _name_or_path in config.json (transformers 4 wrote it) names the base
    named = _trainer_checkpoint(plain, tmp_path / "run4" / "checkpoint-10",
                                _name_or_path=str(plain))
    assert load_scorer(named).config["tokenizer"]["source"] == f"base:{plain}"


def test_only_the_tokenizer_changes_the_fingerprint(plain, tmp_path):
    copy = shutil.copytree(plain, tmp_path / "copy")
    before = load_scorer(copy).fingerprint
    assert before == load_scorer(plain).fingerprint
    config = json.loads((copy / "tokenizer_config.json").read_text())
    config["do_lower_case"] = not config.get("do_lower_case", True)
    (copy / "tokenizer_config.json").write_text(json.dumps(config))
    assert load_scorer(copy).fingerprint != before
    # and a borrowed tokenizer is part of the fingerprint too
    ckpt = _trainer_checkpoint(plain, tmp_path / "checkpoint-1")
    a = load_scorer(checkpoint_path(ckpt, LoadHints(tmp_path, base_model=str(plain))))
    b = load_scorer(checkpoint_path(ckpt, LoadHints(tmp_path, base_model=str(copy))))
    assert a.fingerprint != b.fingerprint


def test_compare_end_to_end_every_format(write_recipe, tmp_path, hub_cache, caplog):
    """`embedforensics compare` with a plain reference ensemble and candidates that are
    sharded, an adapter, Trainer checkpoints without tokenizer and a hub id."""
    ckpt = tmp_path / "ckpt"
    for i in range(3):
        build_tiny_classifier(ckpt / f"ref-{i}", LABELS, seed=i)
    _model(ckpt / "ref-0").save_pretrained(ckpt / "sharded", max_shard_size="20KB")
    _copy(ckpt / "ref-0", ckpt / "sharded", TOKENIZER_FILES)
    _lora(ckpt / "ref-1", ckpt / "lora")
    for step in (10, 20):
        _trainer_checkpoint(ckpt / "ref-2", ckpt / "trainer" / f"checkpoint-{step}")
    _publish(hub_cache, "org/tiny-clf", ckpt / "ref-0", "v1", "f" * 40)
    recipe = write_recipe({"probes": [], "compare": {
        "reference": "ckpt/ref-*", "candidates": {
            "sharded": "ckpt/sharded", "adapter": "ckpt/lora",
            "trainer": "ckpt/trainer/checkpoint-*", "hub": "hub:org/tiny-clf@v1"},
        "test": "all", "n_bootstrap": 50, "methods": ["bootstrap"]}})
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        assert main(["-q", "compare", str(recipe), "-o", str(out)]) == 0
    said = sorted(r.getMessage() for r in caplog.records if "tokenizer" in r.getMessage())
    # the adapter takes its base's tokenizer, the Trainer checkpoints the recipe model's:
    # each said once for its group
    assert len(said) == 2
    assert said[0].startswith("compare.candidates.adapter: 1 checkpoint(s) without tokenizer "
                              f"files ('{ckpt / 'lora'}') use the tokenizer of the base model "
                              f"'{ckpt / 'ref-1'}'")
    assert said[1].startswith("compare.candidates.trainer: 2 checkpoint(s)")
    model_id = yaml.safe_load(recipe.read_text())["model"]["id"]
    assert said[1].endswith(f"use the tokenizer of the recipe's model '{model_id}'")
    results = json.loads((out / "results.json").read_text())
    prov = results["provenance"]["compare"]
    assert set(prov["candidates"]) == {"sharded", "adapter", "trainer", "hub"}
    kinds = {name: [m["kind"] for m in v] for name, v in prov["candidates"].items()}
    assert kinds["adapter"] == ["hf-peft-adapter"] and len(kinds["trainer"]) == 2
    by = {p["probe"]: p for p in results["probes"]}
    # the sharded copy of ref-0 and the hub copy score exactly like ref-0
    fp = {m["model"]: m["fingerprint"] for m in prov["reference"]}
    hub_fp = prov["candidates"]["hub"][0]["fingerprint"]
    assert hub_fp == fp[str(ckpt / "ref-0")]
    for name in ("sharded", "hub", "adapter", "trainer"):
        assert by[f"compare-{name}"]["metrics"]["accuracy"]["n"] == 20
    # a rerun takes every model's logits from the cache
    assert main(["-q", "compare", str(recipe), "-o", str(out)]) == 0
    prov = json.loads((out / "results.json").read_text())["provenance"]["compare"]
    assert all(m["cached"] for v in prov["candidates"].values() for m in v)


def test_compare_errors_name_the_folder_and_key(write_recipe, tmp_path, hub_cache, capsys):
    ckpt = tmp_path / "ckpt"
    for i in range(2):
        build_tiny_classifier(ckpt / f"ref-{i}", LABELS, seed=i)
    _trainer_checkpoint(ckpt / "ref-0", ckpt / "bare" / "checkpoint-5")
    recipe = write_recipe({"probes": [], "model": None, "compare": {
        "reference": "ckpt/ref-*", "candidates": {"bare": "ckpt/bare/checkpoint-*"},
        "test": "all"}})
    assert main(["-q", "compare", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "compare.candidates.bare" in err and "checkpoint-5' has no tokenizer files" in err
    recipe = write_recipe({"probes": [], "compare": {
        "reference": "ckpt/ref-*", "candidates": {"hub": "hub:org/absent@main"}}})
    assert main(["-q", "compare", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "compare.candidates.hub" in err and "hf download org/absent --revision main" in err
    recipe = write_recipe({"probes": [], "compare": {
        "reference": "ckpt/ref-*", "candidates": {"typo": "org/absent"}}})
    assert main(["-q", "compare", str(recipe)]) == 2
    assert "write 'hub:org/absent@REVISION'" in capsys.readouterr().err
