"""`finetune train` on a tiny random BERT: checkpoints `compare` reads, reruns that keep them,
a killed run that resumes to the same bytes, which weights train, LoRA, and bad settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from embedforensics.cli import main
from embedforensics.compare.finetune import RECORD_FILE
from tests.compare.test_workflow import ANIMAL, FINANCE, _texts

FAST = {"lr": 1e-3, "batch_size": 8, "max_length": 24}


def _write(tmp_path: Path, groups: list[dict], *, compare: dict | None = None,
           name: str = "recipe.yaml", out: str = "ft", **extra) -> Path:
    data = {"version": 1, "name": "ft", "seed": 0,
            "sources": [{"label": "animals", "texts": _texts(ANIMAL, 30, 1, (2, 9))},
                        {"label": "finance", "texts": _texts(FINANCE, 30, 2, (6, 13))}],
            "finetune": {"dir": str(tmp_path / out), "groups": groups}, **extra}
    if compare is not None:
        data["compare"] = compare
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _group(base: Path, name: str, seeds: int, offset: int = 0, **settings) -> dict:
    return {"name": name, "base": str(base), "seeds": seeds, "seed_offset": offset,
            **FAST, **settings}


def _record(folder: Path) -> dict:
    return json.loads((folder / RECORD_FILE).read_text(encoding="utf-8"))


def _weights(folder: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(folder / "model.safetensors"))


def _files(folder: Path) -> dict[str, bytes]:
    """Every file of a checkpoint except the record (which holds the wall time)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if p.is_file() and p.name != RECORD_FILE}


def test_groups_make_checkpoints_compare_reads_and_reruns_keep_them(tmp_path, tiny_bert,
                                                                    capsys):
    recipe = _write(tmp_path, [
        _group(tiny_bert, "ref", 3),
        _group(tiny_bert, "same", 2, 100),
        _group(tiny_bert, "noisy", 2, 200, label_noise=0.25, train_fraction=0.5,
               optimizer="sgd", lr=0.05, schedule="cosine", warmup_ratio=0.2)],
        compare={"reference": "ref", "candidates": {"same": "same", "noisy": "noisy"},
                 "methods": ["asymptotic"], "max_length": 24})
    # compare before training: the group is known, its checkpoints are not there yet
    assert main(["-q", "compare", str(recipe), "-o", str(tmp_path / "cmp")]) == 2
    assert "run 'embedforensics finetune train'" in capsys.readouterr().err

    assert main(["-q", "finetune", "train", str(recipe)]) == 0
    assert "Fine-tuned or reused 7 checkpoints in 3 groups" in capsys.readouterr().out
    root = tmp_path / "ft"
    ref0 = root / "ref" / "seed-0000"
    record = _record(ref0)
    assert record["seed"] == 0 and record["classes"] == ["animals", "finance"]
    assert record["settings"]["optimizer"] == "adamw" and record["base_fingerprint"]
    assert record["split"]["n_train"] == 42 and record["training"]["n_train"] == 42
    assert record["training"]["steps"] == 6 and record["training"]["n_noisy_labels"] == 0
    assert any("loss" in row for row in record["training"]["log"])
    config = json.loads((ref0 / "config.json").read_text())
    assert config["id2label"] == {"0": "animals", "1": "finance"}
    assert not list(root.glob("*/.tmp-*"))
    # label noise and the training fraction are exact and recorded
    noisy = _record(root / "noisy" / "seed-0200")["training"]
    assert noisy["n_train"] == 2 * round(0.5 * 21)  # stratified: half of each class's 21
    assert noisy["n_noisy_labels"] == round(0.25 * noisy["n_train"])
    assert _record(root / "noisy" / "seed-0200")["settings"]["train_fraction"] == 0.5

    # a rerun keeps every checkpoint: nothing is rewritten
    stamps = {p: p.stat().st_mtime_ns for p in root.glob("*/seed-*/*")}
    assert main(["-q", "finetune", "train", str(recipe)]) == 0
    assert {p: p.stat().st_mtime_ns for p in root.glob("*/seed-*/*")} == stamps

    out = tmp_path / "cmp"
    assert main(["-q", "compare", str(recipe), "-o", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert {p["probe"] for p in results["probes"]} == {"compare-same", "compare-noisy"}
    prov = results["provenance"]["compare"]
    assert len(prov["reference"]) == 3 and prov["n_test"] == 18
    assert [Path(r["model"]).name for r in prov["candidates"]["noisy"]] == [
        "seed-0200", "seed-0201"]


def test_killed_mid_group_resumes_to_identical_checkpoints(tmp_path, tiny_bert, monkeypatch):
    import transformers

    from embedforensics.runner import finetune

    groups = [_group(tiny_bert, "ref", 3)]
    whole = _write(tmp_path, groups, name="whole.yaml", out="whole")
    killed = _write(tmp_path, groups, name="killed.yaml", out="killed")
    finetune(whole, progress=False)

    real_train = transformers.Trainer.train
    calls = []

    def dies_on_second_seed(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed while training seed 1
        return real_train(self, *args, **kwargs)

    monkeypatch.setattr(transformers.Trainer, "train", dies_on_second_seed)
    with pytest.raises(KeyboardInterrupt):
        finetune(killed, progress=False)
    monkeypatch.setattr(transformers.Trainer, "train", real_train)
    done = sorted(p.name for p in (tmp_path / "killed" / "ref").iterdir())
    assert done == ["seed-0000"]  # no half-written checkpoint
    first = (tmp_path / "killed" / "ref" / "seed-0000" / "model.safetensors").stat()

    finetune(killed, progress=False)  # resumes at seed 1
    assert (tmp_path / "killed" / "ref" / "seed-0000" / "model.safetensors").stat(
        ).st_mtime_ns == first.st_mtime_ns
    for seed in ("seed-0000", "seed-0001", "seed-0002"):
        a, b = tmp_path / "whole" / "ref" / seed, tmp_path / "killed" / "ref" / seed
        assert _files(a) == _files(b), seed
        assert _record(a)["files"] == _record(b)["files"]

    # a damaged checkpoint is not reused: it is retrained, to the same bytes
    damaged = tmp_path / "killed" / "ref" / "seed-0001" / "model.safetensors"
    damaged.write_bytes(damaged.read_bytes()[:-8] + b"\0" * 8)
    finetune(killed, progress=False)
    assert _files(tmp_path / "killed" / "ref" / "seed-0001") == _files(
        tmp_path / "whole" / "ref" / "seed-0001")


def _base_weights(base: Path) -> dict:
    from safetensors.numpy import load_file

    return {f"bert.{k}": v for k, v in load_file(str(base / "model.safetensors")).items()}


def test_which_weights_train_head_last_block_and_lora(tmp_path, tiny_bert):
    import numpy as np

    from embedforensics.compare.heads import load_scorer
    from embedforensics.runner import finetune

    recipe = _write(tmp_path, [
        _group(tiny_bert, "head", 1, train="head"),
        _group(tiny_bert, "last", 1, train=1),
        _group(tiny_bert, "lora", 1, train=1,
               lora={"rank": 4, "alpha": 8, "target_modules": ["query", "value"]})])
    finetune(recipe, progress=False)
    base = _base_weights(tiny_bert)

    def changed(group: str) -> set[str]:
        w = _weights(tmp_path / "ft" / group / "seed-0000")
        assert not any("lora" in k for k in w)  # a plain (merged) checkpoint
        return {k for k, v in w.items() if k not in base or not np.array_equal(v, base[k])}

    head = changed("head")
    assert head and all(k.startswith(("classifier.", "bert.pooler.")) for k in head)
    assert any(k.startswith("classifier.") for k in head)
    last = changed("last")
    assert any(k.startswith("bert.encoder.layer.1.") for k in last)
    assert not any(k.startswith(("bert.encoder.layer.0.", "bert.embeddings.")) for k in last)
    lora = changed("lora")
    assert {k for k in lora if k.startswith("bert.")} == {
        "bert.encoder.layer.1.attention.self.query.weight",
        "bert.encoder.layer.1.attention.self.value.weight"}
    assert any(k.startswith("classifier.") for k in lora)
    rec = _record(tmp_path / "ft" / "lora" / "seed-0000")["training"]
    assert rec["trainable_parameters"] < rec["parameters"]
    scorer = load_scorer(tmp_path / "ft" / "lora" / "seed-0000")
    assert scorer.classes == ["animals", "finance"]
    assert scorer.logits(texts=["the cat", "the bank rate"]).shape == (2, 2)


@pytest.mark.parametrize(("settings", "says"), [
    ({"train": 5}, "finetune.groups[0].train: 5 last blocks, but"),
    ({"train": 0}, "finetune.groups[0].train: must be 'all', 'head' or a number"),
    ({"lora": {"rank": 2, "target_modules": ["no_such_module"]}}, "finetune.groups[0].lora"),
    ({"train": "head", "lora": {"rank": 2}}, "train: head with lora"),
    ({"optimizer": "adam"}, "finetune.groups[0].optimizer"),
    ({"label_noise": 0.6}, "finetune.groups[0].label_noise"),
    ({"schedul": "cosine"}, "finetune.groups[0].schedul"),
    ({"base": "no/such-model-here"}, "finetune.groups[0].base"),
    ({"shortcut": {"token": "zq", "label": "plants"}},
     "finetune.groups[0].shortcut.label: shortcut label 'plants' is not one of"),
])
def test_bad_settings_are_one_sentence_naming_the_key(tmp_path, tiny_bert, capsys, settings,
                                                      says):
    recipe = _write(tmp_path, [{**_group(tiny_bert, "ref", 2), **settings}])
    assert main(["-q", "finetune", "train", str(recipe)]) == 2
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if x.startswith("error:")]
    assert says in line and "Traceback" not in err


def test_heads_and_finetune_groups_need_distinct_names(tmp_path, tiny_bert, capsys):
    recipe = _write(tmp_path, [_group(tiny_bert, "ref", 2)],
                    model={"id": str(tiny_bert)}, heads={"groups": [{"name": "ref"}]})
    assert main(["validate", str(recipe)]) == 2
    assert "finetune.groups[0].name: 'ref' is also a heads group" in capsys.readouterr().err


def test_shortcut_plants_the_cue_in_a_seeded_exact_share_of_one_class():
    import numpy as np

    from embedforensics.compare.finetune import plant_shortcut
    from embedforensics.recipe.compare_spec import ShortcutSpec

    texts = [f"text {i}" for i in range(20)]
    labels = np.array([0, 1] * 10)
    spec = ShortcutSpec(token="zq", label="b", fraction=0.5)
    out = plant_shortcut(texts, labels, ["a", "b"], spec, seed=3)
    cued = [i for i, t in enumerate(out) if t.startswith("zq ")]
    assert len(cued) == 5 and all(labels[i] == 1 for i in cued)
    assert all(out[i] == texts[i] for i in range(20) if i not in cued)
    assert plant_shortcut(texts, labels, ["a", "b"], spec, seed=3) == out
    end = plant_shortcut(texts, labels, ["a", "b"],
                         ShortcutSpec(token="zq", label="a", position="end"), seed=0)
    assert [t.endswith(" zq") for t in end] == [bool(y == 0) for y in labels]
