"""The spectra comparator on tiny fine-tune-like checkpoint groups (issue 18)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml

from embedforensics.cli import main
from embedforensics.errors import UserError
from tests.compare.test_heads import build_tiny_classifier
from tests.compare.test_workflow import ANIMAL, FINANCE, _texts

SPIKED = "bert.encoder.layer.1.intermediate.dense.weight"


def _finetune_like(base, out, seed: int, spike: float) -> None:
    """A copy of ``base`` whose last block moved by seeded small noise (and, with ``spike``,
    a rank-one update of the intermediate weight), with a fine-tune record naming the
    base."""
    from safetensors.numpy import load_file, save_file

    shutil.copytree(base, out)
    state = load_file(str(out / "model.safetensors"))
    rng = np.random.default_rng(seed)
    for k, v in state.items():
        if k.startswith("bert.encoder.layer.1.") and k.endswith("weight") and v.ndim == 2:
            state[k] = (v + 0.01 * rng.standard_normal(v.shape)).astype(v.dtype)
    if spike:
        u, w = rng.standard_normal(64), rng.standard_normal(32)
        state[SPIKED] = (state[SPIKED] + spike * np.outer(u / np.linalg.norm(u),
                                                          w / np.linalg.norm(w))
                         ).astype(np.float32)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "embedforensics-finetune.json").write_text(json.dumps(
        {"base": {"id": "tiny", "location": str(base), "revision": None}}))


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("spectra")
    labels = ["animals", "finance"]
    base = build_tiny_classifier(tmp / "base", labels, seed=0)
    for i in range(4):
        _finetune_like(base, tmp / "ckpt" / f"ref-{i}", i, 0.0)
        _finetune_like(base, tmp / "ckpt" / f"spk-{i}", 100 + i, 1.0)
    data = {"version": 1, "name": "spectra", "seed": 0,
            "sources": [{"label": "animals", "texts": _texts(ANIMAL, 12, 1, (2, 9))},
                        {"label": "finance", "texts": _texts(FINANCE, 12, 2, (6, 13))}],
            "compare": {"reference": "ckpt/ref-*", "candidates": {"spiked": "ckpt/spk-*"},
                        "test": "all", "methods": ["asymptotic"],
                        "comparators": [{"name": "spectra", "layers": ["encoder.layer.1"],
                                         "n_permutations": 50}]}}
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_compare_with_spectra(recipe, tmp_path):
    out = tmp_path / "out"
    assert main(["-q", "compare", str(recipe), "-o", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    entries = {p["probe"]: p for p in results["probes"]}
    overall, spiked = entries["spectra"], entries["spectra-spiked"]
    rows = overall["tables"]["groups"]["rows"]
    cols = overall["tables"]["groups"]["columns"]
    get = {(r[0], r[1], r[2], r[3]): dict(zip(cols, r, strict=True)) for r in rows}
    layer = "bert.encoder.layer.1.intermediate.dense"
    # the planted rank-one update is one ΔW outlier in every candidate, none in the reference
    assert get[("spiked", "delta", layer, "n_outliers")]["min"] == 1
    assert get[("spiked", "delta", layer, "n_outliers")]["max"] == 1
    assert get[("reference", "delta", layer, "n_outliers")]["max"] == 0
    # only the last block moved: no ΔW of block 0 (it is equal to the base's)
    assert not any(r[1] == "delta" and ".layer.0." in r[2] for r in rows)
    assert any(r[1] == "weight" for r in rows)
    m = spiked["metrics"]
    assert m["classifier_accuracy"]["value"] == 1.0 and m["classifier_accuracy"]["n"] == 8
    assert 0 < m["classifier_accuracy"]["p_value"] <= 1
    assert 0 < m["outside_reference_range"]["value"] <= 1
    ranks = spiked["tables"]["ranks"]
    assert all(0 < r[5] <= 1 for r in ranks["rows"])
    assert "told apart" in spiked["summary"]
    assert overall["plots"] and overall["plots"][0]["kind"] == "lines"
    prov = results["provenance"]["compare"]["spectra"]
    assert set(prov["groups"]) == {"reference", "spiked"}
    assert f"delta:{layer}" in prov["common_spectra"]


def test_bad_parameters_name_the_key(recipe, tmp_path):
    from embedforensics.runner import compare

    data = yaml.safe_load(recipe.read_text())
    data["compare"]["comparators"] = [{"name": "spectra", "layers": ["nonexistent"]}]
    bad = recipe.parent / "bad.yaml"
    bad.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(UserError, match=r"no nn.Linear layer") as info:
        compare(bad, output=tmp_path / "o", progress=False)
    assert "compare.comparators[0].layers" in str(info.value)
    data["compare"]["comparators"] = [{"name": "spectra", "level": 0.5}]
    bad.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(UserError, match=r"level must be one of") as info:
        compare(bad, output=tmp_path / "o2", progress=False)
    assert "compare.comparators[0].level" in str(info.value)


def test_contract(recipe):
    from embedforensics.compare.checkpoints import load_checkpoints
    from embedforensics.compare.spectra_comparator import SpectraComparator
    from embedforensics.study.context import StudyContext
    from embedforensics.testing import check_comparator

    inputs = load_checkpoints(StudyContext.open(recipe, progress=False))
    params = dict(kinds=["weight", "delta", "ck"], n_inputs=8, n_permutations=20,
                  max_models=3)
    check_comparator(SpectraComparator, inputs, **params)
    outcome = SpectraComparator(**params).run(inputs)
    rows = outcome.results[0].tables["groups"]["rows"]
    aligned = [r for r in rows if r[1] == "ck" and r[3] == "label_alignment"]
    assert aligned and all(0 <= r[5] <= 1 for r in aligned)
    assert not any(r[1] != "ck" and r[3] == "label_alignment" for r in rows)
    with pytest.raises(UserError, match=r"compare\.x\.kinds"):
        SpectraComparator.validate_params({"kinds": ["hessian"]}, key="compare.x")
