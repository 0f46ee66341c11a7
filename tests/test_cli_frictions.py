"""The small frictions a new user hits (issue 21): recipe shorthands, did-you-mean for other
tools' key names, the offline message, one-process accelerate launches, where the default
output folder is, reruns into the same folder, and what the terminal shows at the end."""

from __future__ import annotations

import json

import pytest
import yaml

import embedforensics as ef
from embedforensics.cli import main
from embedforensics.errors import UserError

BASE = {"version": 1, "name": "x", "model": "bundled:all-MiniLM-L6-v2",
        "sources": [{"label": "a", "texts": ["x y"]}, {"label": "b", "texts": ["y z"]}],
        "probes": ["pca", "linear"]}


def test_bare_string_model_is_its_id_and_set_expands_shorthands():
    loaded = ef.load_recipe(data=BASE, check=False,
                            overrides=["probes[1].n_folds=3", "model.batch_size=8"])
    assert loaded.recipe.model.id == "bundled:all-MiniLM-L6-v2"
    assert loaded.recipe.model.batch_size == 8
    assert loaded.recipe.probes[1].name == "linear"
    assert loaded.recipe.probes[1].params["n_folds"] == 3
    with pytest.raises(UserError, match=r"sources\[0\] is not a mapping|does not exist"):
        ef.load_recipe(data={**BASE, "sources": ["a"]}, check=False,
                       overrides=["sources[0].x.y=1"])


@pytest.mark.parametrize(("key", "meant"), [("text_field", "text_column"),
                                            ("label_column", "label"),
                                            ("split_name", "split"),
                                            ("dataset_name", "path")])
def test_other_tools_key_names_get_a_did_you_mean(key, meant):
    data = {**BASE, "sources": [{**BASE["sources"][0], key: "v"}, BASE["sources"][1]]}
    with pytest.raises(UserError) as err:
        ef.load_recipe(data=data, check=False)
    assert f"sources[0].{key}: unknown key '{key}' (did you mean '{meant}'?" in str(err.value)


def test_model_alias_inside_model(tmp_path):
    data = {**BASE, "model": {"model_name_or_path": "m"}}
    with pytest.raises(UserError, match=r"did you mean 'id'\?"):
        ef.load_recipe(data=data, check=False)


def test_offline_message_names_hf_download_with_the_revision(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from embedforensics.models.hub import offline_message

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    text = offline_message("org/model", "v2")
    assert "'hf download org/model --revision v2'" in text and "not available offline" in text
    assert "huggingface-cli" not in text
    assert "'hf download org/model'" in offline_message("org/model", None)
    # another revision is cached: say that only the requested one is missing
    repo = tmp_path / "models--org--model"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123def4567890").mkdir(parents=True)
    text = offline_message("org/model", "v2")
    assert "in the Hugging Face cache but not at revision 'v2'" in text
    assert "cached: main, abc123def456" in text
    assert "'hf download org/model --revision v2'" in text


def test_accelerate_simple_launcher_is_detected(monkeypatch):
    from embedforensics.cli import accelerate_ran_one_process

    for var in ("WORLD_SIZE", "ACCELERATE_MIXED_PRECISION", "MASTER_ADDR"):
        monkeypatch.delenv(var, raising=False)
    assert not accelerate_ran_one_process()
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    assert accelerate_ran_one_process()
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert not accelerate_ran_one_process()


def test_threads_are_given_back_to_the_probes(monkeypatch):
    import torch

    from embedforensics.study.pipeline import restore_threads

    before = torch.get_num_threads()
    monkeypatch.setenv("EMBEDFORENSICS_THREADS", "2")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    torch.set_num_threads(1)
    try:
        restore_threads()  # not launched: nothing changes
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("WORLD_SIZE", "2")
        restore_threads()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_default_folder_is_next_to_the_recipe_and_reruns_never_mix(write_recipe, tmp_path,
                                                                   capsys, monkeypatch):
    work = tmp_path / "elsewhere"
    work.mkdir()
    monkeypatch.chdir(work)
    path = write_recipe({"name": "nextto", "output": {},
                         "probes": ["pca", {"name": "lda", "n_folds": 2}]})
    assert main(["run", str(path), "-q"]) == 0
    out = tmp_path / "runs" / "nextto"
    printed = capsys.readouterr().out
    assert (out / "report.html").is_file() and not (work / "runs").exists()
    # the terminal: the summary table, the finding, then the paths and why this folder
    table, rest = printed.split("Finding:", 1)
    assert "analysis" in table and "headline metric" in table and "lda" in table
    assert rest.index("Report:") < rest.index("Folder:")
    assert "next to the recipe" in rest
    plots = {p.name for p in (out / "plots").iterdir()}
    assert any("lda" in name for name in plots)
    (out / "notes.txt").write_text("mine")
    # a rerun without lda: its plots are gone, the user's file stays, no staging left
    data = yaml.safe_load(path.read_text())
    data["probes"] = ["pca"]
    path.write_text(yaml.safe_dump(data))
    assert main(["run", str(path), "-q"]) == 0
    assert not any("lda" in p.name for p in (out / "plots").iterdir())
    assert [p["probe"] for p in json.loads((out / "results.json").read_text())["probes"]] \
        == ["pca"]
    assert (out / "notes.txt").read_text() == "mine"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_failed_write_keeps_the_previous_run(tmp_path):
    from embedforensics.report.outdir import staged_output

    out = tmp_path / "o"
    with staged_output(out) as stage:
        (stage / "report.md").write_text("first")
        (stage / "results.json").write_text("{}")
    with pytest.raises(RuntimeError), staged_output(out) as stage:
        (stage / "report.md").write_text("second")
        raise RuntimeError("disk full")
    assert (out / "report.md").read_text() == "first"
    assert sorted(p.name for p in out.iterdir()) == ["report.md", "results.json"]


def test_unknown_tokens_are_counted_per_source_and_warned_about(write_recipe, tmp_path):
    """The tiny test tokenizer knows few words: a source of unknown words gets a warning."""
    path = write_recipe({"sources": [
        {"label": "known", "texts": ["the cat sat on the mat", "the dog sat"] * 5},
        {"label": "odd", "texts": ["the 猫 sat 🙂", "狗 and the 鳥"] * 5}],
        "probes": ["pca"]})
    r = ef.run(path, output=tmp_path / "o", progress=False)
    shares = {s["id"]: s["lengths"].get("unk_share") for s in r["data"]["sources"]}
    assert shares["known"] == 0.0
    assert shares["odd"] is not None and shares["odd"] > 0.03
    warnings = [w for w in r.results.data.warnings if w.startswith("Tokenizer:")]
    assert len(warnings) == 1 and "'odd'" in warnings[0]
    assert "unknown tokens" in (tmp_path / "o" / "report.html").read_text()
    # cached: the same counts come back without the model
    again = ef.run(path, output=tmp_path / "o2", progress=False)
    assert {s["id"]: s["lengths"].get("unk_share")
            for s in again["data"]["sources"]} == shares
