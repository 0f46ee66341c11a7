"""Column views (sources/columns.py) against plain lists, and memory-bounded source loading."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import embedforensics as ef
from embedforensics.sources import load_sources
from embedforensics.sources.columns import (
    ArrowColumn,
    ConcatSequence,
    RowIds,
    first_duplicate,
    iter_blocks,
    select,
)


def _chunked(values: list, n_chunks: int = 3) -> pa.ChunkedArray:
    bounds = np.linspace(0, len(values), n_chunks + 1).astype(int)
    return pa.chunked_array([pa.array(values[a:b], type=pa.string())
                             for a, b in zip(bounds, bounds[1:], strict=False)])


@pytest.mark.parametrize("with_rows", [False, True])
def test_arrow_column_matches_a_list(with_rows):
    rng = np.random.default_rng(0)
    values = [f"text {i}" if i % 7 else None for i in range(1000)]
    rows = rng.permutation(1000)[:600] if with_rows else None
    column = ArrowColumn(_chunked(values), rows)
    expected = [values[i] for i in rows] if with_rows else values
    assert len(column) == len(expected)
    assert column == expected and list(column) == expected
    for index in (0, 5, -1, -len(expected), 599):
        assert column[index] == expected[index]
    for sl in (slice(0, 10), slice(590, 700), slice(None, None, 3), slice(-5, None),
               slice(10, 5), slice(None, None, -1)):
        assert column[sl] == expected[sl]
    with pytest.raises(IndexError):
        column[len(expected)]
    picked = rng.permutation(len(expected))[:50]
    assert column.select(picked) == [expected[i] for i in picked]
    assert select(column, picked) == select(expected, picked)
    blocks = list(iter_blocks(column, 128))
    assert [start for start, _ in blocks] == list(range(0, len(expected), 128))
    assert [v for _, block in blocks for v in block] == expected
    assert column != expected[:-1] and column != [*expected[:-1], "other"]


def test_concat_and_row_ids_match_lists():
    parts = [ArrowColumn(_chunked([f"a{i}" for i in range(40)], 2)),
             ["b0", "b1"], [], RowIds("c", np.array([5, 9, 2]))]
    expected = [f"a{i}" for i in range(40)] + ["b0", "b1", "c:5", "c:9", "c:2"]
    joined = ConcatSequence(parts)
    assert len(joined) == len(expected) and list(joined) == expected and joined == expected
    for i in range(-len(expected), len(expected)):
        assert joined[i] == expected[i]
    for a in range(0, len(expected) + 2, 5):
        for b in range(a, len(expected) + 3, 7):
            assert joined[a:b] == expected[a:b]
    assert joined[::4] == expected[::4]
    assert not ConcatSequence([[], []]) and len(ConcatSequence([])) == 0


def test_first_duplicate_arrow_and_list_agree():
    for values in (["x", "y", "z"], ["x", "y", "x", "y"], ["q", "r", "r", "q"], [3, 1, 3]):
        arrow = ArrowColumn(pa.array(values))
        assert first_duplicate(arrow) == first_duplicate(values)
    assert first_duplicate(["q", "r", "r", "q"]) == "q"  # first in order among repeats
    assert first_duplicate(ArrowColumn(pa.array([1, 2, 1]), convert=str)) == "1"


def test_file_sources_keep_arrow_views_and_equal_values(tmp_path, tiny_bert):
    n = 500
    table = pa.table({"text": [f"row {i} " + "word " * (i % 9) for i in range(n)],
                      "topic": [["a", "b"][i % 2] for i in range(n)],
                      "score": [float(i) for i in range(n)],
                      "tags": [[i, i + 1] for i in range(n)],
                      "uid": [f"u{i}" for i in range(n)]})
    pq.write_table(table, tmp_path / "rows.parquet")
    recipe = {"name": "views", "model": {"id": str(tiny_bert)}, "sources": [
        {"id": "all", "label": "x", "path": "rows.parquet",
         "where": {"topic": {"eq": "a"}}, "sample": 100},
        {"id": "ided", "label": "y", "path": "rows.parquet", "id_column": "uid",
         "limit": 30}], "probes": [{"name": "pca"}]}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    records = load_sources(ef.load_recipe(path))
    first, second = records.sources
    assert isinstance(first.texts, ArrowColumn) and isinstance(first.ids, RowIds)
    rows = [int(i.split(":")[1]) for i in first.ids]
    assert len(rows) == 100 and rows == sorted(rows) and all(r % 2 == 0 for r in rows)
    assert first.texts == [table["text"][r].as_py() for r in rows]
    assert first.meta["score"] == [float(r) for r in rows]
    assert "tags" not in first.meta  # lists are not kept as metadata
    assert second.ids == [f"u{i}" for i in range(30)]
    assert records.texts[99:102] == [first.texts[99], second.texts[0], second.texts[1]]
    assert list(records.labels) == ["x"] * 100 + ["y"] * 30


def test_large_source_is_not_turned_into_python_objects(tmp_path, tiny_bert):
    """Loading a 300,000-row source allocates far less Python memory than its texts."""
    n = 300_000
    texts = [f"review {i}: " + "the market fell and the bank rate rose " * (1 + i % 4)
             for i in range(n)]
    text_bytes = sum(len(t) for t in texts)
    pq.write_table(pa.table({"text": texts, "stars": [i % 5 for i in range(n)]}),
                   tmp_path / "big.parquet")
    del texts
    recipe = {"name": "big", "model": {"id": str(tiny_bert)},
              "sources": [{"id": "big", "label": "x", "path": "big.parquet",
                           "where": {"stars": {"ge": 1}}}], "probes": [{"name": "pca"}]}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    loaded = ef.load_recipe(path)
    load_sources(loaded)  # the first load converts the parquet file into datasets' cache
    tracemalloc.start()
    try:
        records = load_sources(loaded)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(records) == n - n // 5
    # Dataset.to_dict() would hold every text as a Python str (> text_bytes); the views
    # convert one block of rows at a time
    assert peak < text_bytes / 4, (peak, text_bytes)
    assert records.sources[0].texts[-1] == f"review {n - 1}: " + \
        "the market fell and the bank rate rose " * (1 + (n - 1) % 4)


def test_block_wise_safetensors_writer_reads_back(tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import load_file

    from embedforensics.export import write_safetensors

    rng = np.random.default_rng(1)
    on_disk = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32,
                                        shape=(1001, 7))
    on_disk[:] = rng.normal(size=(1001, 7))
    layer = rng.normal(size=(1001, 3)).astype(np.float64)  # converted to float32
    empty = np.zeros((0, 5), dtype=np.float32)
    path = tmp_path / "e.safetensors"
    write_safetensors(path, {"embeddings": on_disk, "layer.-1": layer, "none": empty},
                      {"format": "t"}, block_rows=64)
    got = load_file(str(path))
    np.testing.assert_array_equal(got["embeddings"], on_disk)
    np.testing.assert_array_equal(got["layer.-1"], layer.astype(np.float32))
    assert got["none"].shape == (0, 5)
    with safe_open(str(path), framework="np") as fh:
        assert fh.metadata() == {"format": "t"}
