"""The records and html sources, and zipped CSV files read through datasets."""

from __future__ import annotations

import zipfile

import pytest

from embedforensics.errors import UserError
from embedforensics.sources.textfiles import html_paragraphs, split_records


def test_split_records_on_separator_lines():
    text = "first\nline\n%\nsecond\n\t\t-- Someone\n%\n%\nthird\n"
    assert split_records(text, "%") == ["first\nline", "second\n\t\t-- Someone", "third"]
    assert split_records(text, "%", drop_lines=r"^\s+--") == ["first\nline", "second", "third"]
    assert split_records("a\n---\nb", "-{3,}") == ["a", "b"]


def test_html_paragraphs_flatten_markup():
    doc = ("<html><body><p>One <b>bold</b>\n  word &amp; more.</p><div>not this</div>"
           "<p class='x'>Two <a href='#'>link</a></p><p></p></body></html>")
    assert html_paragraphs(doc) == ["One bold word & more.", "Two link", ""]
    assert html_paragraphs(doc, "div") == ["not this"]


@pytest.fixture
def html_dir(tmp_path):
    d = tmp_path / "docs"
    d.mkdir()
    (d / "ch01.en.html").write_text("<p>Hello world.</p><p>Same text.</p><p>Third one.</p>")
    (d / "ch01.es.html").write_text("<p>Hola mundo.</p><p>Same text.</p><p>Tercero.</p>")
    (d / "ch02.en.html").write_text("<p>Only one here.</p><p>And two.</p>")
    (d / "ch02.es.html").write_text("<p>Solo uno.</p>")
    return d


def test_html_parallel_alignment_and_where(write_recipe, html_dir):
    import embedforensics as ef
    from embedforensics.sources import load_sources

    path = write_recipe({"sources": [
        {"id": "es", "label": "es", "type": "html", "data_files": f"{html_dir}/ch*.es.html",
         "options": {"parallel": f"{html_dir}/ch*.en.html"},
         "where": {"same_as_parallel": False}},
        {"id": "en", "label": "en", "from": "es", "text_column": "parallel_text"}]})
    records = load_sources(ef.load_recipe(path))
    es, en = records.sources
    assert es.texts == ["Hola mundo.", "Tercero."]
    assert en.texts == ["Hello world.", "Third one."]
    assert en.ids == ["en:es:0", "en:es:2"]
    assert es.stats["files_unaligned"] == 1 and es.stats["removed_by_where"] == 1


def test_html_parallel_count_mismatch(write_recipe, html_dir):
    import embedforensics as ef

    path = write_recipe({"sources": [
        {"label": "es", "type": "html", "data_files": f"{html_dir}/ch01.es.html",
         "options": {"parallel": f"{html_dir}/ch*.en.html"}},
        {"label": "b", "texts": ["x"]}]})
    with pytest.raises(UserError, match="matches 2 files but data_files matches 1"):
        ef.run(ef.load_recipe(path), write_reports=False, progress=False)


def test_records_source_with_file_column(write_recipe, tmp_path):
    import embedforensics as ef
    from embedforensics.sources import load_sources

    (tmp_path / "love").write_text("l1\n%\nl2\n%\nl3\n")
    (tmp_path / "work").write_text("w1\n%\nw2\n")
    path = write_recipe({"sources": [
        {"label": "love", "type": "records", "data_files": "love"},
        {"label": "work", "type": "records", "data_files": "work", "where": {"position": 1}}]})
    love, work = load_sources(ef.load_recipe(path)).sources
    assert love.texts == ["l1", "l2", "l3"] and love.meta["file"] == ["love"] * 3
    assert work.texts == ["w2"]


@pytest.mark.parametrize("options,pattern", [
    ({"separater": "%"}, "unknown option 'separater'.*did you mean 'separator'"),
    ({"separator": "("}, "not a valid regular expression"),
])
def test_records_bad_options(write_recipe, tmp_path, options, pattern):
    import embedforensics as ef

    (tmp_path / "f.txt").write_text("a\n%\nb\n")
    path = write_recipe({"sources": [
        {"label": "a", "type": "records", "data_files": "f.txt", "options": options},
        {"label": "b", "texts": ["x"]}]})
    with pytest.raises(UserError, match=pattern) as e:
        ef.load_recipe(path)
    assert "sources[0].options" in str(e.value)


def test_unknown_column_for_text_source(write_recipe, tmp_path):
    import embedforensics as ef

    (tmp_path / "f.txt").write_text("a\n%\nb\n")
    path = write_recipe({"sources": [
        {"label": "a", "type": "records", "data_files": "f.txt", "where": {"fil": "f"}},
        {"label": "b", "texts": ["x"]}]})
    with pytest.raises(UserError, match="did you mean 'file'"):
        ef.load_recipe(path)


def test_latin1_file_gets_a_clear_error(write_recipe, tmp_path):
    import embedforensics as ef

    (tmp_path / "f.txt").write_bytes("caf\xe9\n%\nb\n".encode("latin-1"))
    path = write_recipe({"sources": [
        {"label": "a", "type": "records", "data_files": "f.txt"},
        {"label": "b", "texts": ["x"]}]})
    with pytest.raises(UserError, match="options.encoding"):
        ef.run(ef.load_recipe(path), write_reports=False, progress=False)
    path = write_recipe({"sources": [
        {"label": "a", "type": "records", "data_files": "f.txt",
         "options": {"encoding": "latin-1"}},
        {"label": "b", "texts": ["x"]}]})
    from embedforensics.sources import load_sources

    assert load_sources(ef.load_recipe(path)).sources[0].texts[0] == "café"


def test_zipped_csv_is_read_and_its_columns_checked(write_recipe, tmp_path):
    import embedforensics as ef
    from embedforensics.sources import load_sources

    with zipfile.ZipFile(tmp_path / "speeches.zip", "w") as z:
        z.writestr("es.csv", "text,party,chair\nhola,A,FALSE\nadios,B,TRUE\nbuenas,A,FALSE\n")
    path = write_recipe({"sources": [
        {"label": "es", "path": "csv", "data_files": "speeches.zip", "where": {"party": "A"}},
        {"label": "b", "texts": ["x"]}]})
    assert load_sources(ef.load_recipe(path)).sources[0].texts == ["hola", "buenas"]
    bad = write_recipe({"sources": [
        {"label": "es", "path": "csv", "data_files": "speeches.zip", "where": {"partei": "A"}},
        {"label": "b", "texts": ["x"]}]})
    with pytest.raises(UserError, match="did you mean 'party'"):
        ef.load_recipe(bad)
