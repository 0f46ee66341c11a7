"""Probes on memory-mapped embeddings: the out-of-core contract of ``Probe.fit``."""

from __future__ import annotations

import numpy as np
import pytest

from embedforensics.probes.base import (
    ProbeParameterError,
    first_nonfinite_row,
    is_memory_mapped,
)
from embedforensics.probes.cluster import ClusterProbe


def _memmap(tmp_path, X):
    m = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", dtype=np.float32,
                                  shape=X.shape)
    m[:] = X
    m.flush()
    return np.load(tmp_path / "X.npy", mmap_mode="r")


def _data(n=600, d=8, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(["a", "b"], n // 2)
    X = rng.normal(size=(n, d)) + (y == "b")[:, None] * 3.0
    return X.astype(np.float32), y


def test_memory_mapped_views_are_recognised(tmp_path):
    X, _ = _data()
    m = _memmap(tmp_path, X)
    assert is_memory_mapped(m) and is_memory_mapped(m[10:20]) and is_memory_mapped(np.asarray(m))
    assert not is_memory_mapped(X) and not is_memory_mapped(m[[1, 2]])  # a fancy-index copy


def test_nonfinite_rows_are_found_chunk_by_chunk():
    X = np.zeros((50, 3))
    assert first_nonfinite_row(X, chunk_rows=7) is None
    X[23, 1] = np.nan
    X[40, 0] = np.inf
    assert first_nonfinite_row(X, chunk_rows=7) == 23


def test_non_streaming_probe_gets_a_recorded_stratified_subsample(tmp_path, monkeypatch):
    X, y = _data()
    m = _memmap(tmp_path, X)
    monkeypatch.setenv("EMBEDFORENSICS_PROBE_MEMORY_BYTES", str(200 * 8 * 4))  # 200 rows
    texts = [f"t{i}" for i in range(len(y))]
    probe = ClusterProbe(seed=3).fit(m, y, texts=texts, ids=list(range(len(y))))
    record = probe.result_.params["out_of_core"]
    assert record["rows"] == 200 and record["rows_total"] == 600 and record["subsampled"]
    assert "subsample of 200 of 600" in probe.result_.summary
    assert not probe.out_of_core_


def test_non_streaming_probe_within_budget_loads_all_rows(tmp_path):
    X, y = _data()
    m = _memmap(tmp_path, X)
    probe = ClusterProbe(seed=3).fit(m, y)
    record = probe.result_.params["out_of_core"]
    assert record == {**record, "rows": 600, "rows_total": 600, "subsampled": False}
    in_memory = ClusterProbe(seed=3).fit(X, y).result_
    assert probe.result_.metrics["ari"].value == pytest.approx(in_memory.metrics["ari"].value)


def test_nonfinite_memory_mapped_rows_are_one_sentence(tmp_path):
    X, y = _data()
    X[123, 4] = np.nan
    with pytest.raises(ProbeParameterError, match="first at row 123"):
        ClusterProbe().fit(_memmap(tmp_path, X), y)


def test_pca_streams_a_memory_map_and_matches_in_memory(tmp_path, monkeypatch):
    from embedforensics.probes.pca import PCAProbe

    X, y = _data(d=12)
    m = _memmap(tmp_path, X)
    monkeypatch.setenv("EMBEDFORENSICS_PROBE_MEMORY_BYTES", str(100 * 12 * 4))
    streamed = PCAProbe(n_components=4, directions=["a->b"]).fit(m, y)
    assert streamed.out_of_core_
    params = streamed.result_.params
    assert params["out_of_core"]["rows"] == 600 and "streamed" in params["svd_solver"]
    assert params["directions_rows"]["rows"] == 100  # the bootstrap's in-memory subsample
    exact = PCAProbe(n_components=4).fit(X.astype(np.float64), y)
    np.testing.assert_allclose(streamed.pca_.explained_variance_ratio_,
                               exact.pca_.explained_variance_ratio_, rtol=1e-9)
    ours = streamed.result_.tables["label_means"]
    ref = exact.result_.tables["label_means"]
    assert ours["columns"] == ref["columns"]
    np.testing.assert_allclose(np.array([r[1:] for r in ours["rows"]], dtype=float),
                               np.array([r[1:] for r in ref["rows"]], dtype=float),
                               rtol=1e-7, atol=1e-9)


def test_probe_stage_hands_a_memory_map_through(tmp_path):
    from embedforensics.engine.embed import EmbeddingSet
    from embedforensics.recipe import load_recipe
    from embedforensics.runner import _run_probes

    X, y = _data()
    m = _memmap(tmp_path, X)
    es = EmbeddingSet(X=m, labels=y.astype(object), ids=[f"r{i}" for i in range(len(y))],
                      source_ids=y.astype(object), texts=None)
    loaded = load_recipe(data={
        "name": "mm", "seed": 3, "model": {"id": "bundled:all-MiniLM-L6-v2"},
        "sources": [{"label": "a", "texts": ["x"]}, {"label": "b", "texts": ["y"]}],
        "probes": [{"name": "pca", "n_components": 3}, {"name": "cluster"}]}, check=False)
    outputs, failures = _run_probes(loaded, es)
    assert not failures
    by_probe = {o["probe"]: o["params"]["out_of_core"] for o in outputs}
    assert by_probe["pca"]["how"].startswith("memory-mapped embeddings read in row chunks")
    assert by_probe["cluster"]["rows"] == 600 and not by_probe["cluster"]["subsampled"]
