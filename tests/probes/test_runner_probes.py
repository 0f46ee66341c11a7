"""The runner's probe stage: per-layer runs and the layer sweep, length matching, and the
metadata handed to probes — on a hand-built EmbeddingSet (no model)."""

from __future__ import annotations

import numpy as np
import pytest

from embedforensics.engine.embed import EmbeddingSet
from embedforensics.errors import UserError
from embedforensics.probes.matching import length_matched_rows
from embedforensics.recipe import load_recipe
from embedforensics.report.plots import render_plot
from embedforensics.report.schema import ProbeOut
from embedforensics.runner import _run_probes, layer_order, records_meta
from embedforensics.sources.base import Records, SourceData


def _recipe(probes: list[dict]) -> object:
    return load_recipe(data={
        "name": "layers", "seed": 3, "model": {"id": "bundled:all-MiniLM-L6-v2"},
        "sources": [{"label": "a", "texts": ["x"]}, {"label": "b", "texts": ["y"]}],
        "probes": probes}, check=False)


def _embeddings(per_layer: bool = True) -> EmbeddingSet:
    rng = np.random.default_rng(0)
    y = np.repeat(np.array(["a", "b"]), 30).astype(object)
    shallow = rng.normal(size=(60, 4)).astype(np.float32)
    deep = shallow.copy()
    deep[:, 0] += 3.0 * (y == "b")  # the labels separate only in the deep layer
    # 'b' texts are longer on average, with overlap, so length matching keeps some of both
    sizes = np.r_[rng.integers(5, 60, 30), rng.integers(30, 90, 30)]
    texts = ["x" * int(k) for k in sizes]
    layers = {"-1": deep, "2": shallow} if per_layer else {}
    return EmbeddingSet(X=deep, labels=y, ids=[f"r{i}" for i in range(60)],
                        source_ids=y.copy(), texts=texts, per_layer=layers)


def test_every_probe_runs_per_layer_and_a_sweep_follows() -> None:
    loaded = _recipe([{"name": "linear", "n_folds": 3, "n_bootstrap": 0,
                       "n_permutations": 0}, {"name": "pca", "n_components": 2}])
    outputs, failures = _run_probes(loaded, _embeddings())
    assert not failures
    assert [(o["probe"], o["layer"]) for o in outputs] == [
        ("linear", "-1"), ("linear", "2"), ("pca", "-1"), ("pca", "2"), ("layer_sweep", None)]
    acc = {o["layer"]: o["metrics"]["accuracy"]["value"] for o in outputs[:2]}
    assert acc["-1"] > 0.9 and acc["2"] < 0.75
    sweep = outputs[-1]
    assert sweep["params"]["layers"] == ["2", "-1"]  # depth order: 2 before the last layer
    series = {s["label"]: s for s in sweep["plots"][0]["data"]["series"]}
    lin = series["linear: accuracy"]
    assert lin["x"] == [0, 1] and lin["y"] == [acc["2"], acc["-1"]]
    assert "linear: accuracy peaks at layer -1" in sweep["summary"]
    assert all(ProbeOut(**o) for o in outputs)  # fits the results schema
    assert render_plot(sweep["plots"][0])[:4] == b"\x89PNG"


def test_one_layer_runs_once_without_a_sweep() -> None:
    outputs, _ = _run_probes(_recipe([{"name": "pca"}]), _embeddings(per_layer=False))
    assert len(outputs) == 1 and outputs[0]["layer"] is None


def test_layer_order() -> None:
    assert layer_order(["-1", "6", "0", "-3", "emb"]) == ["0", "6", "-3", "-1", "emb"]


def test_length_matching_equalises_the_length_histograms() -> None:
    rng = np.random.default_rng(1)
    lengths = np.r_[rng.integers(10, 200, 300), rng.integers(80, 400, 200)]
    labels = np.array(["a"] * 300 + ["b"] * 200)
    rows, summary = length_matched_rows(lengths, labels, seed=0)
    edges = np.unique(np.quantile(lengths, np.linspace(0, 1, 11)))
    bins = np.clip(np.searchsorted(edges, lengths, side="right") - 1, 0, len(edges) - 2)
    for b in range(len(edges) - 1):
        in_bin = rows[bins[rows] == b]
        assert np.sum(labels[in_bin] == "a") == np.sum(labels[in_bin] == "b")
    assert summary["rows_after"]["a"] == summary["rows_after"]["b"] == len(rows) // 2
    before = summary["mean_chars_before"]
    after = summary["mean_chars_after"]
    assert abs(after["a"] - after["b"]) < 0.3 * abs(before["a"] - before["b"])
    again, _ = length_matched_rows(lengths, labels, seed=0)
    assert np.array_equal(rows, again)


def test_runner_applies_length_match_and_records_it() -> None:
    loaded = _recipe([{"name": "pca", "length_match": True}])
    outputs, failures = _run_probes(loaded, _embeddings(per_layer=False))
    assert not failures
    matched = outputs[0]["params"]["length_match"]
    assert matched["rows_before"] == {"a": 30, "b": 30}
    kept = matched["rows_after"]["a"]
    assert 0 < kept < 30 and matched["rows_after"]["b"] == kept
    assert outputs[0]["metrics"]["explained_variance_pc1"]["n"] == 2 * kept
    gap = matched["mean_chars_after"]["b"] - matched["mean_chars_after"]["a"]
    assert abs(gap) < matched["mean_chars_before"]["b"] - matched["mean_chars_before"]["a"]


def test_length_match_must_be_a_bool() -> None:
    with pytest.raises(UserError, match="length_match must be true or false"):
        load_recipe(data={"name": "x", "model": {"id": "bundled:all-MiniLM-L6-v2"},
                          "sources": [{"label": "a", "texts": ["x"]},
                                      {"label": "b", "texts": ["y"]}],
                          "probes": [{"name": "pca", "length_match": "yes"}]})


def test_records_meta_lines_up_with_the_rows() -> None:
    records = Records([SourceData("s1", "a", ["1", "2"], ["t1", "t2"], meta={"year": [1, 2]}),
                       SourceData("s2", "b", ["3"], ["t3"], meta={"party": ["x"]})])
    assert records_meta(records) == {"party": [None, None, "x"], "year": [1, 2, None]}
