"""Sources: local files through datasets builders, filters, sampling, ids and bad input."""

from __future__ import annotations

import json

import pytest

from embedforensics.errors import UserError
from embedforensics.recipe import load_recipe
from embedforensics.sources import load_sources


def _records(write_recipe, sources, overrides=None):
    return load_sources(load_recipe(write_recipe({"sources": sources, "probes": []}),
                                    overrides))


def test_csv_jsonl_parquet_text_and_inline(tmp_path, write_recipe):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.csv").write_text("body,topic\nhello there,x\ngeneral kenobi,y\n")
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps({"t": f"row {i}", "k": i})
                                                for i in range(3)) + "\n")
    pq.write_table(pa.table({"text": ["p one", "p two"]}), tmp_path / "c.parquet")
    (tmp_path / "d.txt").write_text("line one\nline two\n\nline three\n")
    records = _records(write_recipe, [
        {"label": "csv", "path": "a.csv", "text_column": "body"},
        {"label": "json", "path": "b.jsonl", "text_column": "t"},
        {"label": "parquet", "path": "parquet", "data_files": "c.parquet"},
        {"label": "text", "data_files": "d.txt", "type": "files"},
        {"label": "inline", "texts": ["x", "y"]},
    ])
    by_id = {s.source_id: s for s in records.sources}
    assert by_id["csv"].texts == ["hello there", "general kenobi"]
    assert by_id["csv"].meta["topic"] == ["x", "y"]
    assert by_id["json"].ids == ["json:0", "json:1", "json:2"]
    assert by_id["parquet"].texts == ["p one", "p two"]
    assert by_id["text"].texts == ["line one", "line two", "line three"]
    assert by_id["text"].stats["removed_empty"] == 1
    assert by_id["text"].ids == ["text:0", "text:1", "text:3"]  # ids keep the original row
    assert len(records) == 12
    assert records.counts_by_label()["inline"] == 2


def test_builder_that_contradicts_the_files_is_an_error(tmp_path, write_recipe):
    (tmp_path / "c.parquet").write_bytes(b"PAR1")
    with pytest.raises(UserError) as err:
        load_recipe(write_recipe({"sources": [{"label": "a", "path": "csv",
                                               "data_files": "c.parquet"}], "probes": []}))
    assert err.value.key == "sources[0].path" and "look like parquet" in str(err.value)


def test_where_limit_sample_are_seeded_and_stable(tmp_path, write_recipe):
    rows = [{"text": f"text number {i}", "n": i, "kind": "even" if i % 2 == 0 else "odd"}
            for i in range(100)]
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    source = {"label": "a", "path": "r.jsonl", "where": {"kind": "even", "n": {"ge": 10}},
              "sample": 10}
    first = _records(write_recipe, [source]).sources[0]
    again = _records(write_recipe, [source]).sources[0]
    other_seed = _records(write_recipe, [source], ["seed=5"]).sources[0]
    assert first.ids == again.ids and first.texts == again.texts
    assert first.ids != other_seed.ids
    assert len(first) == 10 and first.stats["removed_by_where"] == 55
    assert all(int(i.split(":")[1]) % 2 == 0 and int(i.split(":")[1]) >= 10 for i in first.ids)
    limited = _records(write_recipe, [{"label": "a", "path": "r.jsonl", "limit": 3,
                                       "where": {"kind": {"in": ["odd"]}}}]).sources[0]
    assert limited.texts == ["text number 1", "text number 3", "text number 5"]


def test_id_column_and_duplicates(tmp_path, write_recipe):
    (tmp_path / "a.csv").write_text("id,text\nx1,hello\nx2,world\n")
    assert _records(write_recipe, [{"label": "a", "path": "a.csv", "id_column": "id"}]
                    ).sources[0].ids == ["x1", "x2"]
    (tmp_path / "b.csv").write_text("id,text\nx1,hello\nx1,world\n")
    with pytest.raises(UserError, match="repeats the id 'x1'"):
        _records(write_recipe, [{"label": "a", "path": "b.csv", "id_column": "id"}])


def test_package_source_reads_installed_package_data(write_recipe):
    source = {"label": "ai", "package": "dataset_build", "data_files": "data/eng/jobs.txt",
              "options": {"sample_by": "paragraph"}, "where": {"text": {"min_length": 100}},
              "limit": 5}
    data = _records(write_recipe, [source]).sources[0]
    assert len(data) == 5 and all(len(t) >= 100 for t in data.texts)


def test_missing_package_names_install_command(write_recipe):
    with pytest.raises(UserError) as err:
        load_recipe(write_recipe({"sources": [{"label": "a", "package": "no_such_pkg_xyz",
                                               "data_files": "x.txt"}], "probes": []}))
    assert err.value.key == "sources[0].package"
    assert "pip install no-such-pkg-xyz" in str(err.value)


def test_missing_file_is_caught_at_validation(write_recipe):
    with pytest.raises(UserError) as err:
        load_recipe(write_recipe({"sources": [{"label": "a", "path": "./nope.csv"}],
                                  "probes": []}))
    assert err.value.key == "sources[0].path" and "no file matches './nope.csv'" in str(err.value)


def test_unknown_column_is_caught_at_validation_with_did_you_mean(tmp_path, write_recipe):
    (tmp_path / "a.csv").write_text("body,topic\nhello,x\n")
    with pytest.raises(UserError) as err:
        load_recipe(write_recipe({"sources": [{"label": "a", "path": "a.csv",
                                               "text_column": "bdy"}], "probes": []}))
    assert err.value.key == "sources[0].text_column"
    assert "column 'bdy' not found" in str(err.value) and "did you mean 'body'" in str(err.value)


def test_non_utf8_bytes_name_the_file(tmp_path, write_recipe):
    (tmp_path / "bad.txt").write_bytes(b"fine line\n\xff\xfe broken \xc3\x28 line\n")
    with pytest.raises(UserError) as err:
        _records(write_recipe, [{"label": "a", "path": "bad.txt"}])
    assert "bad.txt' has bytes that are not UTF-8" in str(err.value)
    assert err.value.key == "sources[0]"
    # and the documented escape hatch works
    data = _records(write_recipe, [{"label": "a", "path": "bad.txt",
                                    "options": {"encoding_errors": "replace"}}]).sources[0]
    assert data.texts[0] == "fine line" and "\ufffd" in data.texts[1]


def test_empty_source_zero_rows_after_filter_and_empty_strings(tmp_path, write_recipe):
    (tmp_path / "empty.csv").write_text("text\n")
    with pytest.raises(UserError, match="empty"):
        _records(write_recipe, [{"label": "a", "path": "empty.csv"}])
    (tmp_path / "a.csv").write_text("text,k\nhello,1\nworld,2\n")
    with pytest.raises(UserError) as err:
        _records(write_recipe, [{"label": "a", "path": "a.csv", "where": {"k": 99}}])
    assert err.value.key == "sources[0].where" and "no rows are left" in str(err.value)
    with pytest.raises(UserError, match="no rows are left after dropping empty texts"):
        _records(write_recipe, [{"label": "a", "texts": ["", "   "]}])
    with pytest.raises(UserError, match="row 1 has an empty text"):
        _records(write_recipe, [{"label": "a", "texts": ["x", ""], "drop_empty": False}])


def test_non_text_column_is_rejected(tmp_path, write_recipe):
    (tmp_path / "n.jsonl").write_text('{"text": 5}\n{"text": 6}\n')
    with pytest.raises(UserError, match="must hold text; row 0 holds int"):
        _records(write_recipe, [{"label": "a", "path": "n.jsonl"}])
