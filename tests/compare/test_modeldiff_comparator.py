"""The modeldiff comparator on tiny random checkpoints: tables, null, verified transforms."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from embedforensics.cli import main
from embedforensics.errors import UserError
from tests.compare.test_heads import build_tiny_classifier
from tests.compare.test_workflow import ANIMAL, FINANCE, _texts

PARAMS = {"name": "modeldiff", "group_a": "other", "n_components": 2, "n_train": 24,
          "n_test": 12, "n_splits": 10, "subpopulation": 3, "show_train": 2, "n_effect": 16,
          "n_bootstrap": 200, "batch_size": 8, "params": "head",
          "transforms": [{"name": "insert", "phrase": "stock stock", "position": "end"},
                         {"name": "insert", "phrase": "cat cat cat", "position": "start"}]}


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("modeldiff")
    labels = ["animals", "finance"]
    for i in range(4):
        build_tiny_classifier(tmp / "ckpt" / f"ref-{i}", labels, seed=i)
    for i in range(2):
        build_tiny_classifier(tmp / "ckpt" / f"cand-{i}", labels, seed=10 + i)
    # every text is longer than max_length, so words appended at the end are never seen
    data = {"version": 1, "name": "ckpts", "seed": 0,
            "sources": [{"label": "animals", "texts": _texts(ANIMAL, 30, 1, (9, 13))},
                        {"label": "finance", "texts": _texts(FINANCE, 30, 2, (9, 13))}],
            "compare": {"reference": "ckpt/ref-*", "candidates": {"other": "ckpt/cand-*"},
                        "methods": ["asymptotic"], "max_length": 6,
                        "comparators": [PARAMS]}}
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_compare_with_modeldiff(recipe, tmp_path):
    out = tmp_path / "out"
    assert main(["-q", "compare", str(recipe), "-o", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    (entry,) = [p for p in results["probes"] if p["probe"] == "modeldiff-other-vs-reference"]
    assert "ModelDiff" in entry["summary"] and "2 vs 4 models" in entry["summary"]
    assert entry["headline"] == "largest_variance_gap"
    gap = entry["metrics"]["largest_variance_gap"]
    null = entry["metrics"]["largest_variance_gap_null"]
    assert null["n"] == 10 and null["range"][0] <= null["value"] <= null["range"][1]
    dirs = entry["tables"]["modeldiff_directions"]["rows"]
    assert gap["value"] == pytest.approx(max(r[3] for r in dirs[:2]))
    assert len(dirs) == 2 * 2  # both ways × components
    for row in dirs:
        assert 0 <= row[1] <= 1 and 0 <= row[2] <= 1 and row[3] == pytest.approx(row[1] - row[2])
        assert 0 < row[5] <= 1
    assert len(entry["tables"]["modeldiff_subpopulations"]["rows"]) == 4 * 3
    assert len(entry["tables"]["modeldiff_training_points"]["rows"]) == 4 * 2 * 2
    faith = entry["tables"]["modeldiff_kglm_faithfulness"]["rows"]
    assert [r[0] for r in faith] == ["other"] * 2 + ["reference"] * 4
    effects = entry["tables"]["modeldiff_verified_transformations"]["rows"]
    assert len(effects) == 2 * 3
    hidden, seen = effects[:3], effects[3:]
    # the appended words are truncated away: nothing changes, the CI covers 0
    for label, group, mean, lo, hi, *_ in hidden[:2]:
        assert mean == 0.0 and lo <= 0.0 <= hi, (label, group)
    assert hidden[2][2] == 0.0 and hidden[2][7] == 1.0 and hidden[2][8] is True
    assert any(abs(r[2]) > 0 for r in seen[:2])  # the inserted start is seen
    prov = results["provenance"]["compare"]["modeldiff-other-vs-reference"]
    assert len(prov["train_ids"]) == 24 and len(prov["test_ids"]) == 12
    assert not set(prov["train_ids"]) & set(prov["test_ids"])
    assert prov["a_vs_b"]["null"]["n_splits"] == 10
    w = np.array(prov["directions"][0]["weights"])
    assert w.shape == (24,) and np.linalg.norm(w) == pytest.approx(1.0)
    assert prov["verification"]["transforms"][0]["example"]["transformed"].endswith(
        "stock stock")


def test_contract_and_bad_parameters(recipe):
    from embedforensics.compare.checkpoints import load_checkpoints
    from embedforensics.compare.modeldiff_comparator import ModelDiffComparator
    from embedforensics.study.context import StudyContext
    from embedforensics.testing import check_comparator

    inputs = load_checkpoints(StudyContext.open(recipe, progress=False))
    params = {k: v for k, v in PARAMS.items() if k not in ("name", "transforms")}
    check_comparator(ModelDiffComparator, inputs, **{**params, "n_splits": 4, "max_models": 2})

    def run(**extra):
        comp = ModelDiffComparator(ModelDiffComparator.validate_params({**params, **extra}))
        comp.key = "compare.comparators[0]"
        return comp.run(inputs)

    with pytest.raises(UserError, match="group 'nope' is not among") as info:
        run(group_a="nope")
    assert "compare.comparators[0].group_a" in str(info.value)
    with pytest.raises(UserError, match="both 'other'"):
        run(group_b="other")
    with pytest.raises(UserError, match="unknown transform 'insret'.*insert"):
        run(n_splits=0, transforms=[{"name": "insret", "phrase": "x"}])
    with pytest.raises(UserError, match="effect_class 'cats'"):
        run(n_splits=0, effect_class="cats", transforms=[{"name": "insert", "phrase": "x"}])
    with pytest.raises(UserError, match=r"compare\.x\.transforms"):
        ModelDiffComparator.validate_params({"group_a": "a", "transforms": [{"phrase": "x"}]},
                                            key="compare.x")


def test_training_texts_as_trained(recipe, tmp_path):
    """A fine-tune record's shortcut is planted again in the training texts the kernel sees,
    in exactly the rows finetune train chose (checked by the record's fingerprints)."""
    import shutil

    from embedforensics.compare.checkpoints import _sha256_json, load_checkpoints
    from embedforensics.compare.heads import prepare_training_labels
    from embedforensics.compare.modeldiff_comparator import ModelDiffComparator
    from embedforensics.study.context import StudyContext

    root = tmp_path / "r"
    shutil.copytree(recipe.parent / "ckpt", root / "ckpt")
    shutil.copy(recipe, root / "recipe.yaml")
    inputs = load_checkpoints(StudyContext.open(root / "recipe.yaml", progress=False))
    data = inputs.prepared
    train = np.asarray(data.train_idx)
    texts, y = [data.texts[i] for i in train], data.y[train]
    # the record finetune train writes, for a shortcut on half the finance texts (seed 7)
    idx, labels = prepare_training_labels(y, 2, label_noise=0.0, train_fraction=1.0, seed=7)
    record = {"seed": 7, "train_data_fingerprint": _sha256_json(
                  {"texts": texts, "labels": y.tolist(), "classes": data.classes}),
              "training": {"train_rows_fingerprint": _sha256_json([idx.tolist(),
                                                                   labels.tolist()])},
              "settings": {"label_noise": 0.0, "train_fraction": 1.0,
                           "shortcut": {"token": "zz", "label": "finance", "fraction": 0.5,
                                        "position": "start"}}}
    for i in range(2):
        (root / "ckpt" / f"cand-{i}" / "embedforensics-finetune.json").write_text(
            json.dumps(record), encoding="utf-8")
    params = {k: v for k, v in PARAMS.items() if k not in ("name", "transforms")}
    # reg_c = 1: on 24 training points the default (Engel et al.'s alpha, C = 417)
    # saturates every kGLM, and the faithfulness rows below could not show the kernels differ
    params.update(n_splits=0, max_models=2, reg_c=1.0)
    comp = ModelDiffComparator(ModelDiffComparator.validate_params(
        {**params, "train_texts": "as_trained"}))
    comp.key = "compare.comparators[0]"
    seen = comp._as_trained(inputs, inputs.candidates["other"][0], train)
    marked = [i for i in train if seen.texts[i] == "zz " + data.texts[i]]
    finance = int(np.sum(y == data.classes.index("finance")))
    assert len(marked) == round(0.5 * finance) > 0
    assert all(data.classes[data.y[i]] == "finance" for i in marked)
    assert all(seen.texts[i] == data.texts[i] for i in data.test_idx)
    assert comp._as_trained(inputs, inputs.reference[0], train) is data  # no record

    def run(**extra):
        c = ModelDiffComparator(ModelDiffComparator.validate_params({**params, **extra}))
        c.key = "compare.comparators[0]"
        return c.run(inputs).results[0]

    plain, trained = run(), run(train_texts="as_trained")
    assert "as trained" in trained.summary and "as trained" not in plain.summary
    rows = list(zip(plain.tables["modeldiff_kglm_faithfulness"]["rows"],
                    trained.tables["modeldiff_kglm_faithfulness"]["rows"], strict=True))
    assert [a[0] for a, _ in rows] == ["other"] * 2 + ["reference"] * 2
    assert all(a == b for a, b in rows[2:])  # the reference has no record
    assert any(a != b for a, b in rows[:2])  # the candidates' kernels see "zz ..." texts
    record["training"]["train_rows_fingerprint"] = "0" * 64  # rows that cannot be rebuilt
    (root / "ckpt" / "cand-0" / "embedforensics-finetune.json").write_text(
        json.dumps(record), encoding="utf-8")
    with pytest.raises(UserError, match="cannot rebuild") as info:
        run(train_texts="as_trained")
    assert "compare.comparators[0].train_texts" in str(info.value)
