"""The stitching comparator: penalties against a reference-seed null, controls, matrix."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from embedforensics.cli import main
from embedforensics.errors import UserError
from tests.compare.test_heads import build_tiny_classifier
from tests.compare.test_workflow import ANIMAL, FINANCE, _texts

PARAMS = {"name": "stitching", "layers": [1, -1], "methods": ["direct", "fula"],
          "steps": 3, "n_fit": 16, "n_test": 12, "batch_size": 8, "seeds": 2,
          "matrix": True}


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stitch")
    labels = ["animals", "finance"]
    for i in range(3):
        build_tiny_classifier(tmp / "ckpt" / f"ref-{i}", labels, seed=i)
    build_tiny_classifier(tmp / "ckpt" / "cand-0", labels, seed=7)
    shutil.copytree(tmp / "ckpt" / "ref-0", tmp / "ckpt" / "cand-same")
    data = {"version": 1, "name": "ckpts", "seed": 0,
            "sources": [{"label": "animals", "texts": _texts(ANIMAL, 20, 1, (2, 9))},
                        {"label": "finance", "texts": _texts(FINANCE, 20, 2, (6, 13))}],
            "compare": {"reference": "ckpt/ref-*", "candidates": {"other": "ckpt/cand-*"},
                        "test": "all", "methods": ["asymptotic"],
                        "comparators": [PARAMS]}}
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_compare_with_stitching(recipe, tmp_path):
    out = tmp_path / "out"
    assert main(["-q", "compare", str(recipe), "-o", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    by_name = {p["probe"]: p for p in results["probes"]}
    entry = by_name["stitching-other"]
    metrics = entry["metrics"]
    for layer in (1, -1):
        for method in ("direct", "fula"):
            m = metrics[f"penalty_{method}_layer_{layer}"]
            assert m["n"] == 12 and -1 <= m["value"] <= 1 and m["ci"][0] <= m["ci"][1]
            assert 0 < metrics[f"rank_p_{method}_layer_{layer}"]["value"] <= 1
            assert 0 <= metrics[f"agreement_{method}_layer_{layer}"]["value"] <= 1
            assert metrics[f"kl_{method}_layer_{layer}"]["value"] >= 0
    rows = entry["tables"]["stitching"]["rows"]
    assert len(rows) == 2 * 2 * 2  # candidates × layers × methods
    assert "smallest rank p" in entry["summary"]
    # controls: self-stitch costs nothing with every method
    controls = by_name["stitching-controls"]["tables"]["controls"]["rows"]
    assert {r[0] for r in controls} == {"self", "random_init"}
    assert all(r[3] == 0.0 and r[8] == 1.0 for r in controls if r[0] == "self")
    matrix = by_name["stitching-matrix"]
    assert matrix["plots"][0]["kind"] == "matrix"
    assert len(matrix["tables"]["matrix"]["rows"]) == 2
    prov = results["provenance"]["compare"]["stitching"]
    assert len(prov["test_ids"]) == 12 and len(prov["fit_ids"]) == 16
    assert not set(prov["test_ids"]) & set(prov["fit_ids"])
    # null: 3 references → 6 ordered pairs × 2 layers × 2 methods × 2 seeds
    assert sum(s["role"] == "null" for s in prov["stitches"]) == 6 * 2 * 2 * 2
    # cand-same is ref-0: its stitches with ref-0 cost nothing in either direction
    same = [s for s in prov["stitches"] if {s["a"], s["b"]} == {"ckpt/cand-same", "ckpt/ref-0"}]
    assert same and all(s["penalty"] == 0.0 and s["agreement"] == 1.0 for s in same)


def test_bad_layer_names_the_key(recipe, tmp_path):
    data = yaml.safe_load(recipe.read_text())
    data["compare"]["comparators"] = [{**PARAMS, "layers": [7], "matrix": False}]
    bad = recipe.parent / "bad.yaml"
    bad.write_text(yaml.safe_dump(data), encoding="utf-8")
    from embedforensics.runner import compare

    with pytest.raises(UserError, match=r"layer 7 is not a hidden state") as info:
        compare(bad, output=tmp_path / "o", progress=False)
    assert "compare.comparators[0].layers" in str(info.value)


def test_contract(recipe):
    from embedforensics.compare.checkpoints import load_checkpoints
    from embedforensics.compare.stitching_comparator import StitchingComparator
    from embedforensics.study.context import StudyContext
    from embedforensics.testing import check_comparator

    inputs = load_checkpoints(StudyContext.open(recipe, progress=False))
    check_comparator(StitchingComparator, inputs, layers=[2], methods=["task", "soft"],
                     steps=2, n_fit=8, n_test=8, seeds=1, max_models=2, controls=False)
    with pytest.raises(UserError, match=r"compare\.x\.methods"):
        StitchingComparator.validate_params({"methods": ["fulla"]}, key="compare.x")


def test_mlp_heads(write_recipe, tmp_path):
    """Heads with a hidden layer stitch at their input (0) and hidden activation (1)."""
    from tests.compare.test_workflow import _texts as texts

    data = {
        "sources": [{"label": "animals", "texts": texts(ANIMAL, 60, 1, (2, 9))},
                    {"label": "finance", "texts": texts(FINANCE, 60, 2, (6, 13))}],
        "probes": [],
        "heads": {"dir": str(tmp_path / "heads"), "test_fraction": 0.4, "groups": [
            {"name": "ref", "kind": "mlp", "hidden": 8, "epochs": 10, "lr": 0.05,
             "seeds": 3},
            {"name": "other", "kind": "mlp", "hidden": 6, "epochs": 10, "lr": 0.05,
             "seeds": 1, "seed_offset": 100}]},
        "compare": {"reference": "ref", "candidates": {"other": "other"},
                    "methods": ["asymptotic"],
                    "comparators": [{"name": "stitching", "layers": [0, 1],
                                     "methods": ["direct", "task"], "steps": 5, "n_fit": 64,
                                     "n_test": 16, "batch_size": 8, "seeds": 1}]}}
    recipe = write_recipe(data)
    assert main(["-q", "heads", "train", str(recipe)]) == 0
    out = tmp_path / "out"
    assert main(["-q", "compare", str(recipe), "-o", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    by_name = {p["probe"]: p for p in results["probes"]}
    rows = by_name["stitching-other"]["tables"]["stitching"]["rows"]
    assert {(r[1], r[2]) for r in rows} == {(0, "direct"), (0, "task"), (1, "direct"),
                                            (1, "task")}
    controls = by_name["stitching-controls"]["tables"]["controls"]["rows"]
    # at the input (layer 0) every model sees the same embeddings: direct is the identity
    # (with more fitting rows than the 32 embedding dimensions + 1)
    assert all(r[3] == 0.0 for r in controls if r[0] == "self")
    prov = results["provenance"]["compare"]["stitching"]["stitches"]
    input_stitches = [s for s in prov if s["layer_a"] == 0 and s["method"] == "direct"]
    assert input_stitches and all(s["penalty"] == 0.0 and s["agreement"] == 1.0
                                  for s in input_stitches)
