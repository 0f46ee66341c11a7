"""A recipe that only compares checkpoints needs no embedding model, and embeds nothing."""

from __future__ import annotations

import json

import pytest
import yaml

from embedforensics.cli import main
from embedforensics.errors import UserError
from embedforensics.recipe import load_recipe
from tests.compare.test_heads import build_tiny_classifier
from tests.compare.test_workflow import ANIMAL, FINANCE, _texts


def _compare_only(tmp_path, **extra):
    for i in range(3):
        build_tiny_classifier(tmp_path / "ckpt" / f"ref-{i}", ["animals", "finance"], seed=i)
    build_tiny_classifier(tmp_path / "ckpt" / "cand-0", ["animals", "finance"], seed=7)
    data = {"version": 1, "name": "ckpts", "seed": 0,
            "sources": [{"label": "animals", "texts": _texts(ANIMAL, 20, 1, (2, 9))},
                        {"label": "finance", "texts": _texts(FINANCE, 20, 2, (6, 13))}],
            "compare": {"reference": "ckpt/ref-*", "candidates": {"other": "ckpt/cand-*"},
                        "test": "all", "methods": ["asymptotic"]}, **extra}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_compare_only_recipe_needs_no_model(tmp_path, capsys):
    recipe = _compare_only(tmp_path)
    assert main(["validate", str(recipe)]) == 0
    assert "no embedding model" in capsys.readouterr().err
    out = tmp_path / "out"
    assert main(["-q", "compare", str(recipe), "-o", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["provenance"]["model"] is None and "embed" not in results["timings"]
    (entry,) = results["probes"]
    assert entry["probe"] == "compare-other" and entry["metrics"]["accuracy"]["n"] == 40


def test_checkpoints_are_not_embedded_with_an_unrelated_model(write_recipe, tmp_path):
    for i in range(2):
        build_tiny_classifier(tmp_path / "ckpt" / f"ref-{i}", ["animals", "finance"], seed=i)
    recipe = write_recipe({"probes": [], "compare": {
        "reference": "ckpt/ref-*", "candidates": {"x": "ckpt/ref-1"}, "test": "all",
        "methods": ["asymptotic"]}})
    from embedforensics.runner import compare

    res = compare(recipe, output=tmp_path / "o", progress=False)
    assert res.embeddings is None and "embed" not in res.results.timings


@pytest.mark.parametrize("section", [{"probes": ["pca"]}, {"heads": {"groups": [{"name": "a"}]}}])
def test_probes_and_heads_still_need_a_model(tmp_path, section):
    recipe = _compare_only(tmp_path, **section)
    with pytest.raises(UserError, match="model: is required but missing"):
        load_recipe(recipe)
