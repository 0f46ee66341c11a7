"""`heads train` + `compare` end to end on a tiny random BERT, and the bad-input errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedforensics.cli import main
from tests.compare.test_heads import build_tiny_classifier

ANIMAL = "cat dog bird tree river sun moon star song house".split()
FINANCE = "market stock bank rate price city road car night day".split()
SHARED = "the a is was and of to in on by red blue green".split()


def _texts(words: list[str], n: int, seed: int, lengths: tuple[int, int]) -> list[str]:
    # the tiny test tokenizer maps most words to [UNK], so the classes also differ in length
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(words + SHARED, size=int(rng.integers(*lengths))))
            for _ in range(n)]


def _recipe(write_recipe, tmp_path, **extra):
    data = {
        "sources": [{"label": "animals", "texts": _texts(ANIMAL, 70, 1, (2, 9))},
                    {"label": "finance", "texts": _texts(FINANCE, 70, 2, (6, 13))}],
        "probes": [],
        "heads": {"dir": str(tmp_path / "heads"), "test_fraction": 0.4, "groups": [
            {"name": "ref", "epochs": 15, "batch_size": 16, "lr": 0.05, "seeds": 8},
            {"name": "same", "epochs": 15, "batch_size": 16, "lr": 0.05, "seeds": 3,
             "seed_offset": 100},
            {"name": "noisy", "epochs": 15, "batch_size": 16, "lr": 0.05, "seeds": 3,
             "seed_offset": 200, "label_noise": 0.4}]},
        "compare": {"reference": "ref", "candidates": {"same": "same", "noisy": "noisy"},
                    "n_bootstrap": 200},
    }
    data.update(extra)
    return write_recipe(data)


def test_heads_train_and_compare_end_to_end(write_recipe, tmp_path, capsys):
    recipe = _recipe(write_recipe, tmp_path)
    assert main(["-q", "heads", "train", str(recipe)]) == 0
    heads = tmp_path / "heads"
    assert len(list((heads / "ref").glob("seed-*/model.safetensors"))) == 8
    first = (heads / "ref" / "seed-0000" / "model.safetensors").read_bytes()
    # retraining reuses identical heads (deterministic, same data) and is idempotent
    assert main(["-q", "heads", "train", str(recipe)]) == 0
    assert (heads / "ref" / "seed-0000" / "model.safetensors").read_bytes() == first

    out = tmp_path / "cmp"
    assert main(["-q", "compare", str(recipe), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "same:" in printed and "noisy:" in printed
    results = json.loads((out / "results.json").read_text())
    assert {p["probe"] for p in results["probes"]} == {"compare-same", "compare-noisy"}
    by = {p["probe"]: p for p in results["probes"]}
    for entry in by.values():
        m = entry["metrics"]
        for key in ("alpha_hat_asymptotic", "alpha_hat_bootstrap", "flagged_asymptotic",
                    "flagged_bootstrap", "accuracy", "reference_accuracy",
                    "churn_vs_majority", "churn_vs_reference_mean",
                    "reference_pairwise_churn", "ece", "reference_ece"):
            assert key in m and m[key]["n"] > 0, key
        assert len(m["accuracy"]["ci"]) == 2
        assert len(entry["tables"]["candidates"]["rows"]) == 3
        assert [p["kind"] for p in entry["plots"]] == ["lines", "lines"]
    noisy = by["compare-noisy"]["metrics"]["alpha_hat_asymptotic"]["value"]
    same = by["compare-same"]["metrics"]["alpha_hat_asymptotic"]["value"]
    assert noisy > same
    prov = results["provenance"]["compare"]
    assert prov["n_test"] == 56 and len(prov["reference"]) == 8
    assert not any(r["cached"] for r in prov["reference"])
    html = (out / "report.html").read_text()
    assert "compare-noisy" in html and "<img" in html
    assert (out / "report.md").is_file() and len(list((out / "plots").glob("*.png"))) == 4

    # a rerun reads every model's soft outputs from the cache
    assert main(["-q", "compare", str(recipe), "-o", str(out)]) == 0
    prov = json.loads((out / "results.json").read_text())["provenance"]["compare"]
    assert all(r["cached"] for r in prov["reference"])


def test_compare_hf_checkpoints_by_glob(write_recipe, tmp_path):
    for i in range(3):
        build_tiny_classifier(tmp_path / "ckpt" / f"ref-{i}", ["animals", "finance"], seed=i)
    build_tiny_classifier(tmp_path / "ckpt" / "cand-0", ["finance", "animals"], seed=9)
    recipe = write_recipe({"probes": [], "compare": {
        "reference": "ckpt/ref-*", "candidates": {"other": ["ckpt/cand-*"]}, "test": "all",
        "n_bootstrap": 50, "methods": ["bootstrap"]}})
    from embedforensics.recipe import load_recipe
    from embedforensics.runner import compare as run_compare

    result = run_compare(load_recipe(recipe), output=tmp_path / "out", progress=False)
    (probe,) = result.results.probes
    assert probe.probe == "compare-other"
    assert probe.metrics["accuracy"].n == 20
    assert 0.0 <= probe.metrics["alpha_hat_bootstrap"].value <= 1.0
    assert "(bootstrap)," in probe.summary  # one method: no dangling separator
    assert not result.results.provenance["compare"]["reference"][0]["cached"]
    # the rerun takes every checkpoint's logits from the cache without loading its weights
    again = run_compare(load_recipe(recipe), output=tmp_path / "out", progress=False)
    assert all(r["cached"] for r in again.results.provenance["compare"]["reference"])
    assert again.results.probes[0].metrics["alpha_hat_bootstrap"].value == \
        probe.metrics["alpha_hat_bootstrap"].value


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_bad_inputs(write_recipe, tmp_path, capsys):
    recipe = _recipe(write_recipe, tmp_path, compare={
        "reference": "ref", "candidates": {"noisy": "noisey"}})
    err = _error(capsys, ["-q", "compare", str(recipe)])
    assert "compare.candidates.noisy" in err and "did you mean 'noisy'" in err
    assert "recipe.yaml" in err

    recipe = _recipe(write_recipe, tmp_path, compare={
        "reference": "ref", "candidates": {"x": "nowhere/*"}})
    err = _error(capsys, ["-q", "compare", str(recipe)])
    assert "compare.candidates.x" in err and "matches no checkpoint" in err

    recipe = _recipe(write_recipe, tmp_path)
    err = _error(capsys, ["-q", "compare", str(recipe)])  # heads not trained yet
    assert "heads train" in err and "compare.reference" in err

    build_tiny_classifier(tmp_path / "bad" / "c0", ["positive", "negative"])
    build_tiny_classifier(tmp_path / "bad" / "c1", ["positive", "negative"], seed=1)
    recipe = write_recipe({"probes": [], "compare": {
        "reference": "bad/c*", "candidates": {"x": "bad/c0"}, "test": "all"}})
    err = _error(capsys, ["-q", "compare", str(recipe)])
    assert "compare.reference" in err and "classes" in err and "animals" in err

    recipe = write_recipe({"probes": []})
    assert "no 'heads:' section" in _error(capsys, ["-q", "heads", "train", str(recipe)])
    assert "no 'compare:' section" in _error(capsys, ["-q", "compare", str(recipe)])

    recipe = write_recipe({"probes": [], "heads": {"groups": [{"name": "a", "label_noise": 0.6}]}})
    err = _error(capsys, ["-q", "heads", "train", str(recipe)])
    assert "heads.groups[0].label_noise" in err


@pytest.mark.parametrize("mode,expected", [("logit", [1.0, -2.0]), ("top2_gap", [1.0, 2.0]),
                                           ("true_class_gap", [1.0, 2.0])])
def test_soft_outputs(mode, expected):
    from embedforensics.compare.checkpoints import soft_outputs

    logits = np.array([[0.0, 1.0], [2.0, 0.0]])
    assert soft_outputs(logits, np.array([1, 0]), mode).tolist() == expected
    three = np.array([[3.0, 1.0, 0.5]])
    assert soft_outputs(three, np.array([1]), "true_class_gap").tolist() == [-2.0]
    assert soft_outputs(three, np.array([1]), "auto").tolist() == [2.0]
