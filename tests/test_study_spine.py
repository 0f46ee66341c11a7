"""The study spine: a new probe and a new comparator are one file plus one registry line;
``run`` and ``compare`` write one provenance shape; heads are tied to the exact embedding
settings (layers included)."""

from __future__ import annotations

import json

import pytest

from embedforensics.cli import main
from embedforensics.errors import UserError
from embedforensics.recipe import load_recipe
from embedforensics.registry import COMPARATORS, PROBES
from embedforensics.runner import compare, run, train_heads
from embedforensics.testing import check_comparator, check_probe, check_result
from tests.compare.test_workflow import _recipe
from tests.plugin_examples.agreement_comparator import MajorityAgreement
from tests.plugin_examples.centroid_probe import CentroidGapProbe


@pytest.fixture
def centroid_probe():
    PROBES.add("centroid_gap", "tests.plugin_examples.centroid_probe:CentroidGapProbe")
    yield
    PROBES.remove("centroid_gap")


@pytest.fixture
def majority_comparator():
    COMPARATORS.add("majority_agreement",
                    "tests.plugin_examples.agreement_comparator:MajorityAgreement")
    yield
    COMPARATORS.remove("majority_agreement")


def test_a_new_probe_is_one_file_and_one_registry_line(centroid_probe, write_recipe,
                                                       tmp_path, capsys):
    check_probe(CentroidGapProbe, n_bootstrap=20)
    recipe = write_recipe({"probes": [{"name": "centroid_gap", "n_bootstrap": 50}, "pca"]})
    out = tmp_path / "o"
    run(recipe, output=out, progress=False)
    data = json.loads((out / "results.json").read_text())
    entry = data["probes"][0]
    assert entry["probe"] == "centroid_gap" and entry["headline"] == "centroid_gap"
    gap = entry["metrics"]["centroid_gap"]
    assert gap["n"] == 20 and gap["ci"][0] <= gap["value"] <= gap["ci"][1]
    assert entry["params"]["n_bootstrap"] == 50 and entry["params"]["seed"] == 0
    assert "centroid_gap" in (out / "report.html").read_text()
    # the class validates its own parameters during recipe validation
    bad = write_recipe({"probes": [{"name": "centroid_gap", "n_bootstrap": 1}]}, "bad.yaml")
    with pytest.raises(UserError, match=r"probes\[0\]\.n_bootstrap.*'n_bootstrap' parameter "
                                        r"of CentroidGapProbe must be an int in \[10, inf\)"):
        load_recipe(bad)
    # and lists itself with its own description
    assert main(["ls", "probes"]) == 0
    assert "centroid_gap    Euclidean distance between the centroids" in capsys.readouterr().out


def test_the_contract_checks_catch_a_broken_probe():
    class Positional(CentroidGapProbe):
        """Takes positional arguments."""

        def __init__(self, n_bootstrap: int = 200, seed: int = 0):
            super().__init__(n_bootstrap=n_bootstrap, seed=seed)

    with pytest.raises(AssertionError, match="keyword-only"):
        check_probe(Positional)

    class Undeclared(CentroidGapProbe):
        """Forgets to declare a parameter."""

        _param_specs = {"seed": ("int", 0, None, None)}

    with pytest.raises(AssertionError, match=r"undeclared: \['n_bootstrap'\]"):
        check_probe(Undeclared)


def test_a_new_comparator_is_one_file_and_one_registry_line(majority_comparator,
                                                            write_recipe, tmp_path):
    recipe = _recipe(write_recipe, tmp_path, compare={
        "reference": "ref", "candidates": {"same": "same", "noisy": "noisy"},
        "n_bootstrap": 100, "methods": ["asymptotic"],
        "comparators": [{"name": "majority_agreement", "min_reference": 4}]})
    train_heads(recipe, progress=False)
    res = compare(recipe, output=tmp_path / "cmp", progress=False)
    names = [p.probe for p in res.results.probes]
    assert names == ["compare-same", "compare-noisy", "majority_agreement-same",
                     "majority_agreement-noisy"]
    for result in res.results.probes:
        check_result(result.probe, result)
    prov = res.results.provenance["compare"]
    assert prov["comparators"] == ["outputs", "majority_agreement"]
    assert len(prov["majority_agreement"]["reference_loo"]) == 8
    saved = json.loads((tmp_path / "cmp" / "results.json").read_text())
    assert [p["probe"] for p in saved["probes"]] == names

    # the contract helper, run on the real inputs of that comparison
    from embedforensics.compare.checkpoints import load_checkpoints
    from embedforensics.study.context import StudyContext

    inputs = load_checkpoints(StudyContext.open(recipe, progress=False))
    check_comparator(MajorityAgreement, inputs, min_reference=3)

    # parameters are validated by the class, names by the registry; both name the key
    for entry, pattern in (
            ({"name": "majority_agreement", "min_reference": 1},
             r"compare\.comparators\[0\]\.min_reference"),
            ({"name": "majority_agreement", "min_refs": 3},
             r"compare\.comparators\[0\]\.min_refs: unknown parameter 'min_refs'.*did you "
             r"mean 'min_reference'"),
            ({"name": "majority_agrement"},
             r"compare\.comparators\[0\]\.name: unknown comparator 'majority_agrement'.*did "
             r"you mean 'majority_agreement'")):
        bad = _recipe(write_recipe, tmp_path, compare={
            "reference": "ref", "candidates": {"same": "same"}, "comparators": [entry]})
        with pytest.raises(UserError, match=pattern):
            load_recipe(bad)


def test_run_and_compare_write_one_provenance_shape(write_recipe, tmp_path):
    recipe = _recipe(write_recipe, tmp_path, probes=["pca"], compare={
        "reference": "ref", "candidates": {"same": "same"}, "methods": ["asymptotic"]})
    assert main(["-q", "run", str(recipe), "-o", str(tmp_path / "run")]) == 0
    assert main(["-q", "heads", "train", str(recipe)]) == 0
    assert main(["-q", "compare", str(recipe), "-o", str(tmp_path / "cmp")]) == 0
    ran = json.loads((tmp_path / "run" / "results.json").read_text())
    compared = json.loads((tmp_path / "cmp" / "results.json").read_text())
    assert set(compared["provenance"]) == set(ran["provenance"]) | {"compare"}
    for key in ("platform", "recipe_git_commit", "finished", "cache", "versions", "model"):
        assert key in ran["provenance"] and key in compared["provenance"], key
    assert compared["provenance"]["compare"]["embedding_fingerprint"] == \
        ran["provenance"]["embedding"]["fingerprint"]
    assert set(ran["timings"]) >= {"sources", "embed", "probes", "report"}
    assert set(compared["timings"]) >= {"sources", "embed", "score", "compare", "report"}
    for folder in ("run", "cmp"):  # written atomically: no temporary files left behind
        assert not list((tmp_path / folder).glob(".tmp-*"))


def test_compare_refuses_heads_trained_on_another_layer(write_recipe, tmp_path, tiny_bert,
                                                       capsys):
    recipe = _recipe(write_recipe, tmp_path,
                     model={"id": str(tiny_bert), "batch_size": 4, "layers": [-1]},
                     compare={"reference": "ref", "candidates": {"same": "same"},
                              "methods": ["asymptotic"]})
    assert main(["-q", "heads", "train", str(recipe)]) == 0
    assert main(["-q", "compare", str(recipe), "-o", str(tmp_path / "ok")]) == 0
    capsys.readouterr()
    assert main(["-q", "compare", str(recipe), "--set", "model.layers=[1]"]) == 2
    err = capsys.readouterr().err
    assert "compare.reference" in err and "other embedding settings" in err


def test_validation_asks_each_probe_about_the_labels(write_recipe):
    recipe = write_recipe({"probes": [{"name": "pca", "factors": ["language", "topic"]}]})
    with pytest.raises(UserError, match=r"probes\[0\].*label 'animals' has 1 part"):
        load_recipe(recipe)
