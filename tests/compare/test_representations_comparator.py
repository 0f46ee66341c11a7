"""The representations comparator: hidden-state similarity against a reference-seed null."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from embedforensics.cli import main
from embedforensics.errors import UserError
from tests.compare.test_heads import build_tiny_classifier
from tests.compare.test_workflow import ANIMAL, FINANCE, _texts


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("repr")
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
                        "comparators": [{"name": "representations", "layers": [-1, 1],
                                         "n_inputs": 20,
                                         "measures": ["linear_cka", "procrustes"]}]}}
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_compare_with_representations(recipe, tmp_path):
    out = tmp_path / "out"
    assert main(["-q", "compare", str(recipe), "-o", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    (entry,) = [p for p in results["probes"] if p["probe"] == "representations-other"]
    metrics = entry["metrics"]
    for layer in (-1, 1):
        for measure in ("linear_cka", "procrustes"):
            m = metrics[f"{measure}_layer_{layer}"]
            assert m["n"] == 20 and 0 <= m["value"] <= 1 + 1e-9
            p = metrics[f"rank_p_{measure}_layer_{layer}"]["value"]
            assert 0 < p <= 1
        ci = metrics[f"linear_cka_layer_{layer}"]["ci"]
        assert ci is not None and ci[0] <= ci[1]
        assert metrics[f"procrustes_layer_{layer}"]["ci"] is None
    assert "farther" in entry["summary"] and "smallest rank p" in entry["summary"]
    table = entry["tables"]["similarity"]
    assert len(table["rows"]) == 2 * 2 * 2  # candidates × layers × measures
    assert all(0 < row[4] <= 1 for row in table["rows"])
    assert entry["plots"][0]["kind"] == "lines"
    prov = results["provenance"]["compare"]["representations"]
    assert len(prov["sample_ids"]) == 20 and prov["n_inputs"] == 20
    same = [q for q in prov["pairs"] if q["a"] == "ckpt/cand-same" and q["b"] == "ckpt/ref-0"]
    assert len(same) == 4 and all(q["value"] == pytest.approx(1.0, abs=1e-9) for q in same)
    other = [q for q in prov["pairs"] if q["a"] == "ckpt/cand-0"
             and q["measure"] == "linear_cka"]
    assert other and all(q["value"] < 0.999 for q in other)


def test_missing_layer_names_the_key(recipe, tmp_path):
    data = yaml.safe_load(recipe.read_text())
    data["compare"]["comparators"] = [{"name": "representations", "layers": [5],
                                       "n_inputs": 10}]
    bad = recipe.parent / "bad.yaml"
    bad.write_text(yaml.safe_dump(data), encoding="utf-8")
    from embedforensics.runner import compare

    with pytest.raises(UserError, match=r"layer 5 is not a layer") as info:
        compare(bad, output=tmp_path / "o", progress=False)
    assert "compare.comparators[0].layers" in str(info.value)


def test_contract(recipe):
    from embedforensics.compare.checkpoints import load_checkpoints
    from embedforensics.compare.representations_comparator import RepresentationsComparator
    from embedforensics.study.context import StudyContext
    from embedforensics.testing import check_comparator

    inputs = load_checkpoints(StudyContext.open(recipe, progress=False))
    check_comparator(RepresentationsComparator, inputs, layers=[0, -1], n_inputs=12,
                     measures=["linear_cka", "debiased_cka", "svcca", "pwcca"])
    with pytest.raises(UserError, match=r"compare\.x\.pooling"):
        RepresentationsComparator.validate_params({"pooling": "max"}, key="compare.x")


def test_hidden_states_are_cached_and_reused(recipe, tmp_path, monkeypatch):
    """A second comparison reads every checkpoint's hidden states from the cache (no
    forward pass) and gives the same similarities."""
    from embedforensics.compare import hidden_states

    calls = []
    real = hidden_states.checkpoint_states
    monkeypatch.setattr(hidden_states, "checkpoint_states",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setenv("EMBEDFORENSICS_CACHE", str(tmp_path / "cache"))
    first, second = tmp_path / "a", tmp_path / "b"
    assert main(["-q", "compare", str(recipe), "-o", str(first)]) == 0
    # 3 reference + 2 candidate checkpoints; cand-same is a byte copy of ref-0: a cache hit
    assert len(calls) == 4
    assert main(["-q", "compare", str(recipe), "-o", str(second)]) == 0
    assert len(calls) == 4
    pairs = [json.loads((d / "results.json").read_text())["provenance"]["compare"][
        "representations"]["pairs"] for d in (first, second)]
    assert pairs[0] == pairs[1]


def test_cross_layer_matrix_and_multiplicity_table(recipe, tmp_path):
    out = tmp_path / "out"
    assert main(["-q", "compare", str(recipe), "-o", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    entries = {p["probe"]: p for p in results["probes"]}
    (matrix,) = [q for q in entries["representations-other"]["plots"] if q["kind"] == "matrix"]
    values = matrix["data"]["values"]
    assert len(values) == len(values[0]) >= 2  # every hidden state of both models
    assert all(0 <= v <= 1 + 1e-9 for row in values for v in row)
    multi = entries["representations-multiplicity"]
    models = multi["tables"]["models"]["rows"]
    assert [r[0] for r in models] == ["reference"] * 3 + ["other"] * 2
    # cand-same is a byte copy of ref-0: no representational distance to ref-0, and its
    # churn against the 3-model majority is that of any reference-like model
    for row in models:
        assert 0 <= row[3] <= 1 and 0 <= row[4] <= 1 and row[5] >= 0
    assert {r[0] for r in multi["tables"]["groups"]["rows"]} == {"reference", "other"}
