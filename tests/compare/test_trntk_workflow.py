"""`compare` with a `compare.trntk` section: surrogates, faithfulness, attributions, agreement."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedforensics.cli import main
from embedforensics.compare.trntk_comparator import stratified_sample
from tests.compare.test_heads import build_tiny_classifier
from tests.compare.test_workflow import ANIMAL, FINANCE, _texts

MARKUP = " <i>zz</i> & <script>x</script>"


def _recipe(write_recipe, tmp_path, kind="mlp", trntk=None):
    animals = [t + MARKUP for t in _texts(ANIMAL, 60, 1, (2, 9))]
    mlp = {"kind": kind, "hidden": 6, "epochs": 15, "batch_size": 16, "lr": 0.05}
    return write_recipe({
        "sources": [{"label": "animals", "texts": animals},
                    {"label": "finance", "texts": _texts(FINANCE, 61, 2, (6, 13))}],
        "probes": [],
        "heads": {"dir": str(tmp_path / "heads"), "test_fraction": 0.4, "groups": [
            {"name": "ref", "seeds": 4, **mlp},
            {"name": "same", "seeds": 2, "seed_offset": 100, **mlp},
            {"name": "noisy", "seeds": 2, "seed_offset": 200, "label_noise": 0.4, **mlp}]},
        "compare": {"reference": "ref", "candidates": {"same": "same", "noisy": "noisy"},
                    "methods": ["asymptotic"],
                    "trntk": trntk or {"n_train": 40, "n_test": 30, "top_k": 3, "show": 40,
                                       "max_models": 3, "reg_c": 10.0}},
    })


def test_compare_with_trntk_end_to_end(write_recipe, tmp_path):
    recipe = _recipe(write_recipe, tmp_path)
    assert main(["-q", "heads", "train", str(recipe)]) == 0
    out = tmp_path / "cmp"
    assert main(["-q", "compare", str(recipe), "-o", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    (entry,) = [p for p in results["probes"] if p["probe"] == "trntk"]
    m = entry["metrics"]
    for group in ("reference", "same", "noisy"):
        for field in ("kendall_tau", "tad", "jaccard_misclassified"):
            assert m[f"{group}_{field}"]["n"] == 30, (group, field)
            assert m[f"{group}_{field}"]["value"] is not None
    assert -1 <= m["reference_kendall_tau"]["value"] <= 1
    assert m["reference_attribution_agreement"]["n"] == 30
    assert "same_attribution_agreement" in m and "noisy_attribution_agreement" in m
    faith = entry["tables"]["trntk_faithfulness"]["rows"]
    assert len(faith) == 3 + 2 + 2  # max_models=3 reference models, 2 per candidate group
    # MLP heads: different weights, different kernels
    assert len({row[9] for row in faith}) == 7
    prov = results["provenance"]["compare"]["trntk"]
    assert len(prov["train_ids"]) == 40 and len(prov["test_ids"]) == 30
    assert not set(prov["train_ids"]) & set(prov["test_ids"])
    ref0 = prov["per_model"]["reference"][0]
    assert np.array(ref0["top_k_scores"]).shape == (30, 3)
    # scores are sorted, highest contribution first
    assert all(r[0] >= r[1] >= r[2] for r in ref0["top_k_scores"])
    agree = prov["agreement_detail"]
    assert len(agree["reference_pairs"]) == 3 and len(agree["reference_loo"]) == 3
    for per in agree["groups"].values():
        for p in per:
            assert 0 < p["p_rank"] <= 1 and len(p["per_reference"]) == 3
    # attributed training texts are in the tables and HTML-escaped in the report
    att = [k for k in entry["tables"] if k.startswith("trntk_attributions_reference")]
    assert att and len(entry["tables"][att[0]]["rows"]) == 30 * 3
    texts = [row[5] for row in entry["tables"][att[0]]["rows"]]
    assert any(t.endswith(MARKUP) for t in texts)  # every animal text carries markup
    html = (out / "report.html").read_text()
    assert "trntk" in html and "<script>x</script>" not in html and "<i>zz</i>" not in html
    assert "&lt;i&gt;zz&lt;/i&gt; &amp; &lt;script&gt;" in html
    assert "trntk" in results["timings"]


def test_linear_heads_share_one_kernel(write_recipe, tmp_path):
    recipe = _recipe(write_recipe, tmp_path, kind="logistic",
                     trntk={"n_train": 30, "n_test": 20, "max_models": 2})
    assert main(["-q", "heads", "train", str(recipe)]) == 0
    from embedforensics.recipe import load_recipe
    from embedforensics.runner import compare as run_compare

    res = run_compare(load_recipe(recipe), output=tmp_path / "o", write_reports=False)
    (entry,) = [p for p in res.results.probes if p.probe == "trntk"]
    assert "same kernel" in entry.summary
    digests = {row[9] for row in entry.tables["trntk_faithfulness"]["rows"]}
    assert len(digests) == 1


def test_trntk_on_hf_checkpoints(write_recipe, tmp_path):
    for i in range(2):
        build_tiny_classifier(tmp_path / "ckpt" / f"ref-{i}", ["animals", "finance"], seed=i)
    build_tiny_classifier(tmp_path / "ckpt" / "cand-0", ["finance", "animals"], seed=9)
    recipe = write_recipe({"probes": [], "compare": {
        "reference": "ckpt/ref-*", "candidates": {"other": ["ckpt/cand-*"]},
        "methods": ["asymptotic"],
        "trntk": {"params": ["layer.1", "classifier"], "n_train": 8, "n_test": 6,
                  "top_k": 2, "projection_dim": 64}}})
    from embedforensics.recipe import load_recipe
    from embedforensics.runner import compare as run_compare

    res = run_compare(load_recipe(recipe), output=tmp_path / "out", write_reports=False)
    (entry,) = [p for p in res.results.probes if p.probe == "trntk"]
    assert entry.metrics["other_kendall_tau"].n == 6
    assert len(entry.tables["trntk_faithfulness"]["rows"]) == 3


def test_bad_trntk_section(write_recipe, tmp_path, capsys):
    recipe = _recipe(write_recipe, tmp_path, trntk={"n_train": 40, "kinnd": "trntk"})
    assert main(["-q", "compare", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "compare.trntk" in err and "kind" in err
    recipe = _recipe(write_recipe, tmp_path, trntk={"projection_dim": 0})
    assert main(["-q", "compare", str(recipe)]) == 2
    assert "compare.trntk.projection_dim" in capsys.readouterr().err


def test_stratified_sample_is_seeded_and_balanced():
    y = np.array([0] * 70 + [1] * 30)
    idx = np.arange(100)
    a = stratified_sample(idx, y, 20, seed=3, salt=1)
    assert a.size == 20 and np.count_nonzero(y[a] == 1) == 6
    assert np.array_equal(a, stratified_sample(idx, y, 20, seed=3, salt=1))
    assert not np.array_equal(a, stratified_sample(idx, y, 20, seed=4, salt=1))
    assert np.array_equal(stratified_sample(idx[:10], y, 20, 0, 0), idx[:10])


@pytest.mark.parametrize("method", ["spearman", "kendall"])
def test_vectorised_agreement_matches_scipy(method):
    from scipy import stats

    from embedforensics.compare.trntk_comparator import ModelTrntk, _agreement

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 12)), rng.normal(size=(5, 12))
    a[:, 3] = a[:, 4]  # ties
    fn = stats.spearmanr if method == "spearman" else stats.kendalltau
    want = np.mean([fn(a[i], b[i]).statistic for i in range(5)])

    def mk(c):
        return ModelTrntk("g", "m", "p", None, None, c, "", 0.0)

    assert _agreement(mk(a), mk(b), method) == pytest.approx(want, abs=1e-12)


def test_length_sorted_kernel_is_in_input_order(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from embedforensics.compare.trntk import HFClassifierLogits, trntk_kernel
    from embedforensics.compare.trntk_comparator import length_sorted_kernel

    path = build_tiny_classifier(tmp_path / "c", ["a", "b"])
    model = HFClassifierLogits(AutoModelForSequenceClassification.from_pretrained(path))
    enc = AutoTokenizer.from_pretrained(path)(
        ["the cat sat on the red mat today", "a dog", "bank rate", "the sun and the moon"],
        padding=True, return_tensors="pt")
    inputs = {k: enc[k] for k in ("input_ids", "attention_mask")}
    lengths = inputs["attention_mask"].sum(1).tolist()
    assert lengths != sorted(lengths)  # the sort really reorders
    want = trntk_kernel(model, inputs, params="head", batch_size=2)
    got = length_sorted_kernel(model, inputs, params="head", batch_size=2)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
