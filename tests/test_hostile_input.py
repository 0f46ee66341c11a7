"""Hostile and careless input (issue 22): every case answers quickly with exit 2 and one
sentence naming the file and key (no traceback), or runs with a warning; nothing hangs."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from embedforensics.cli import main
from embedforensics.recipe import loader as recipe_loader

HEAD = "version: 1\nname: hostile\nmodel: {id: MODEL, batch_size: 4}\n"
TEXTS_B = ["stock fell", "bank rose", "price fell", "market rose"]


def one_error(capsys, *needles: str) -> str:
    """The single stderr line of a user error, checked for the needles."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def recipe_file(tmp_path, tiny_bert):
    """Write YAML text (``MODEL`` replaced by the tiny model's folder) and return its path."""

    def _write(text: str, name: str = "recipe.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text.replace("MODEL", str(tiny_bert)), encoding="utf-8")
        return path

    return _write


def sources_yaml(first: str) -> str:
    return (HEAD + "sources:\n  - {label: a, " + first + "}\n"
            f"  - {{label: b, texts: {json.dumps(TEXTS_B)}}}\nprobes: [pca]\n")


@pytest.fixture(params=["libyaml", "pure"])
def yaml_loader(request, monkeypatch):
    """Each YAML case with libyaml (the default) and with the pure-Python loader."""
    if request.param == "pure":
        monkeypatch.setattr(recipe_loader, "_RecipeLoader", recipe_loader._PureRecipeLoader)
    return request.param


# --------------------------------------------------------------------------- 1. unbounded work


def test_billion_laughs_is_refused_quickly(recipe_file, capsys, yaml_loader):
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 9):
        prev, cur = chr(96 + i), chr(97 + i)
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    path = recipe_file(HEAD + "extra:\n" + "".join(f"  {line}\n" for line in lines))
    started = time.perf_counter()
    assert main(["validate", str(path)]) == 2
    assert time.perf_counter() - started < 10
    one_error(capsys, str(path), "aliases expand", "EMBEDFORENSICS_MAX_ALIAS_NODES")


def test_alias_limit_comes_from_the_environment(recipe_file, capsys, monkeypatch):
    text = sources_yaml("texts: &t [the cat sat, a dog sat, the bird, red house]") \
        .replace("probes: [pca]", "probes: [pca]\nextra: [*t, *t, *t]")
    path = recipe_file(text)
    monkeypatch.setenv("EMBEDFORENSICS_MAX_ALIAS_NODES", "5")
    assert main(["validate", str(path)]) == 2
    one_error(capsys, "more than the 5 allowed")


def test_ordinary_anchors_still_work(recipe_file):
    path = recipe_file(HEAD + "sources:\n  - {label: a, texts: &t [the cat sat, a dog]}\n"
                       "  - {label: b, texts: *t}\nprobes: [pca]\n"
                       "extra_settings: &s {n: 1}\nmore: {<<: *s, n: 2}\n")
    # unknown keys are still reported as such: the anchors themselves load fine
    data = recipe_loader.safe_load_yaml(path.read_text())
    assert data["sources"][1]["texts"] == ["the cat sat", "a dog"]
    assert data["more"] == {"n": 2}


def test_recipe_size_limit_and_its_environment_variable(recipe_file, capsys, monkeypatch):
    path = recipe_file(sources_yaml("texts: [the cat sat, a dog sat]")
                       + "# " + "x" * (2 << 20) + "\n")
    monkeypatch.setenv("EMBEDFORENSICS_MAX_RECIPE_MB", "1")
    assert main(["validate", str(path)]) == 2
    one_error(capsys, str(path), "MiB", "EMBEDFORENSICS_MAX_RECIPE_MB")
    monkeypatch.setenv("EMBEDFORENSICS_MAX_RECIPE_MB", "3")
    assert main(["validate", str(path)]) == 0


def test_a_huge_one_line_text_is_cut_before_tokenising(recipe_file, tmp_path, capsys,
                                                        caplog):
    words = np.random.default_rng(0).choice(["the", "cat", "sat", "on", "mat"], 400_000)
    (tmp_path / "huge.txt").write_text(" ".join(words) + "\nshort line\n", encoding="utf-8")
    # max_length 8 tokens: texts longer than 65,536 characters (the floor) are cut
    text = sources_yaml("path: huge.txt").replace("batch_size: 4", "batch_size: 4, "
                                                  "max_length: 8")
    path = recipe_file(text)
    with caplog.at_level(logging.WARNING):
        assert main(["run", str(path), "-o", str(tmp_path / "o"), "-q"]) == 0
    assert "1 text(s) longer than 65,536 characters were cut" in caplog.text
    data = json.loads((tmp_path / "o" / "results.json").read_text())
    assert data["data"]["sources"][0]["stats"]["texts_cut"] == 1
    assert "texts_cut" not in data["data"]["sources"][1]["stats"]


def test_cut_keeps_arrow_views_and_lists_alike():
    import pyarrow as pa

    from embedforensics.sources.base import SourceData, cap_text_length
    from embedforensics.sources.columns import ArrowColumn

    texts = ["short", "x" * 100, "y" * 10]
    for column in (texts, ArrowColumn(pa.array(texts))):
        data = SourceData("s", "a", ["0", "1", "2"], column)
        cut = cap_text_length(data, 20, file="r.yaml", key="sources[0]")
        assert list(cut.texts) == ["short", "x" * 20, "y" * 10]
        assert cut.stats["texts_cut"] == 1 and cut.fingerprint != data.fingerprint
        assert cap_text_length(cut, 20, file=None, key="k") is cut


def test_symlink_loop_under_a_double_star_glob(recipe_file, tmp_path, capsys, caplog):
    data = tmp_path / "data" / "sub"
    data.mkdir(parents=True)
    (data / "rows.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in
                                             ["the cat sat", "a dog sat", "the bird"]))
    os.symlink("..", data / "up")  # data/sub/up -> data
    os.symlink(".", tmp_path / "data" / "self")  # data/self -> data (two loops: 2^n paths)
    path = recipe_file(sources_yaml("path: 'data/**/*.jsonl'"))
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING):
        assert main(["run", str(path), "-o", str(tmp_path / "o"), "-q"]) == 0
    assert time.perf_counter() - started < 60
    assert "not following 2 link(s) to folders already walked" in caplog.text
    assert str(data / "up") in caplog.text
    result = json.loads((tmp_path / "o" / "results.json").read_text())
    assert result["data"]["counts_by_label"]["a"] == 3  # the file read once, not 41 times


def test_two_sample_pairs_are_bounded(recipe_file, capsys, caplog):
    from embedforensics.probes.two_sample import TwoSampleProbe

    many = "".join(f"  - {{label: l{i}, texts: [the cat {i}, a dog {i}]}}\n" for i in range(30))
    path = recipe_file(HEAD + "sources:\n" + many + "probes: [{name: two_sample}]\n")
    assert main(["validate", str(path)]) == 2
    one_error(capsys, str(path), "probes[0]", "435 label pairs", "max_pairs")
    assert main(["validate", str(path), "--set", "probes[0].max_pairs=435"]) == 0
    # above 100 pairs the probe warns when it runs
    X = np.random.default_rng(0).normal(size=(16 * 6, 3))
    y = np.repeat([f"l{i:02d}" for i in range(16)], 6)
    with caplog.at_level(logging.WARNING):
        TwoSampleProbe(n_permutations=19, n_folds=2, max_pairs=120)._check_pairs(16)
    assert "16 labels make 120 label pairs" in caplog.text
    with pytest.raises(Exception, match="more than max_pairs=100"):
        TwoSampleProbe(max_pairs=100).fit(X, y)


# --------------------------------------------------------------------------- 2. YAML tracebacks


def test_self_referential_anchor(recipe_file, capsys, yaml_loader):
    path = recipe_file("version: 1\nname: &a [*a]\n")
    assert main(["validate", str(path)]) == 2
    one_error(capsys, str(path), "line 2 refers to itself")


def test_merge_key_cycle(recipe_file, capsys, yaml_loader):
    path = recipe_file("version: 1\nname: x\nm: &m {<<: *m}\n")
    assert main(["validate", str(path)]) == 2
    one_error(capsys, str(path), "refers to itself")


@pytest.mark.parametrize("levels", [150, 5000])
def test_deep_nesting(recipe_file, capsys, yaml_loader, levels):
    path = recipe_file("version: 1\nname: x\nextra: " + "[" * levels + "]" * levels + "\n")
    started = time.perf_counter()
    assert main(["validate", str(path)]) == 2
    assert time.perf_counter() - started < 20
    one_error(capsys, str(path), "nest")


def test_deep_include_chain(tmp_path, capsys):
    for i in range(2000):
        (tmp_path / f"inc{i}.yaml").write_text(f"include: inc{i + 1}.yaml\n")
    (tmp_path / "inc2000.yaml").write_text("name: x\n")
    assert main(["validate", str(tmp_path / "inc0.yaml")]) == 2
    one_error(capsys, "include", f"more than {recipe_loader.MAX_INCLUDE_DEPTH} files deep")


def test_include_fan_out_is_bounded(tmp_path, capsys):
    for i in range(30):  # each file includes the next twice: 2^30 reads without a bound
        (tmp_path / f"f{i}.yaml").write_text(f"include: [f{i + 1}.yaml, f{i + 1}.yaml]\n")
    (tmp_path / "f30.yaml").write_text("name: x\n")
    started = time.perf_counter()
    assert main(["validate", str(tmp_path / "f0.yaml")]) == 2
    assert time.perf_counter() - started < 20
    one_error(capsys, "include", f"more than {recipe_loader.MAX_INCLUDES} files")


def test_circular_set_value(recipe_file, capsys):
    path = recipe_file(sources_yaml("texts: [the cat sat, a dog sat]"))
    assert main(["validate", str(path), "--set", "probes=&a [*a]"]) == 2
    one_error(capsys, "--set", "probes", "refers to itself")


def test_duplicate_keys_name_the_key_and_both_lines(recipe_file, capsys, yaml_loader):
    path = recipe_file(sources_yaml("texts: [the cat sat, a dog sat]")
                       + "seed: 1\nname: again\n")
    assert main(["validate", str(path)]) == 2
    one_error(capsys, str(path), "duplicate key 'name' at lines 2 and 9")
    nested = recipe_file(HEAD + "sources:\n  - label: a\n    texts: [x]\n    label: b\n",
                         "nested.yaml")
    assert main(["validate", str(nested)]) == 2
    one_error(capsys, str(nested), "duplicate key 'label' at lines 5 and 7")


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_non_finite_probe_parameters_fail_validate(recipe_file, capsys, value):
    path = recipe_file(sources_yaml("texts: [the cat sat, a dog sat]").replace(
        "probes: [pca]", f"probes: [{{name: linear, C: {value}}}]"))
    assert main(["validate", str(path)]) == 2
    one_error(capsys, str(path), "probes[0].C", "finite float")


def test_non_finite_floats_are_rejected_by_every_float_kind():
    from embedforensics.probes.base import ProbeParameterError, _check_param

    for kind, low, high in (("float", 0.05, 0.9), ("float", None, None),
                            ("positive_float", None, None)):
        for bad in (float("nan"), float("inf"), float("-inf")):
            with pytest.raises(ProbeParameterError, match="'x' parameter of P must be"):
                _check_param("P", "x", bad, kind, low, high, None)
        _check_param("P", "x", 0.5, kind, low, high, None)


# --------------------------------------------------------------------------- 3. output


@pytest.mark.parametrize("command", ["run", "embed", "compare"])
def test_output_that_is_a_file_fails_before_any_work(recipe_file, tmp_path, capsys,
                                                     monkeypatch, command):
    import embedforensics.recipe as recipe_pkg

    def no_work(*args, **kwargs):  # the check must come before the recipe is even read
        raise AssertionError("work started")

    monkeypatch.setattr(recipe_pkg, "load_recipe", no_work)
    monkeypatch.setattr("embedforensics.runner.compare", no_work)
    path = recipe_file(sources_yaml("texts: [the cat sat, a dog sat]"))
    target = tmp_path / "taken.txt"
    target.write_text("keep me")
    assert main([command, str(path), "-o", str(target), "-q"]) == 2
    one_error(capsys, str(target), "existing file")
    assert main([command, str(path), "-o", str(target / "sub"), "-q"]) == 2
    one_error(capsys, "which is a file")
    assert target.read_text() == "keep me"


def test_configured_output_dir_that_is_a_file(recipe_file, tmp_path, capsys):
    (tmp_path / "taken").write_text("")
    path = recipe_file(sources_yaml("texts: [the cat sat, a dog sat]")
                       + "output: {dir: taken}\n")
    assert main(["run", str(path), "-q"]) == 2
    one_error(capsys, str(path), "output.dir", "existing file")


def test_reports_are_written_atomically(recipe_file, tmp_path, monkeypatch):
    """A failure while writing report.md leaves the previous report.md whole."""
    import embedforensics.report.markdown as markdown

    out = tmp_path / "o"
    path = recipe_file(sources_yaml("texts: [the cat sat, a dog sat, the bird]"))
    assert main(["run", str(path), "-o", str(out), "-q"]) == 0
    before = (out / "report.md").read_text()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(markdown, "render_markdown", full_disk)
    with pytest.raises(OSError):
        main(["run", str(path), "-o", str(out), "-q"])
    assert (out / "report.md").read_text() == before
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]


# --------------------------------------------------------------------------- 4. data


def test_invalid_utf8_inside_jsonl(recipe_file, tmp_path, capsys):
    (tmp_path / "bad.jsonl").write_bytes(b'{"text": "the cat"}\n{"text": "bad \xff\xfe"}\n')
    path = recipe_file(sources_yaml("path: bad.jsonl"))
    assert main(["run", str(path), "-o", str(tmp_path / "o"), "-q"]) == 2
    one_error(capsys, str(path), "sources[0].text_column", str(tmp_path / "bad.jsonl"),
              "not UTF-8 (at byte 34")


def test_lone_surrogate_in_an_inline_text(recipe_file, tmp_path, capsys, monkeypatch):
    # libyaml itself refuses the escape (one sentence); the pure-Python loader accepts it
    path = recipe_file(sources_yaml('texts: ["the cat", "bad \\ud800 text"]'))
    assert main(["run", str(path), "-o", str(tmp_path / "o"), "-q"]) == 2
    one_error(capsys, str(path), "line 5")
    monkeypatch.setattr(recipe_loader, "_RecipeLoader", recipe_loader._PureRecipeLoader)
    assert main(["run", str(path), "-o", str(tmp_path / "o"), "-q"]) == 2
    one_error(capsys, str(path), "sources[0].texts[1]", "lone surrogate")


def test_lone_surrogate_from_a_records_file(recipe_file, tmp_path, capsys):
    (tmp_path / "f.txt").write_bytes(b"the cat\n%\nbad \xff text\n%\nthe dog\n")
    path = recipe_file(sources_yaml(
        "type: records, data_files: f.txt, options: {encoding_errors: surrogateescape}"))
    assert main(["run", str(path), "-o", str(tmp_path / "o"), "-q"]) == 2
    one_error(capsys, str(path), "sources[0].text_column", "row 1", "lone surrogate")


def test_numeric_where_on_a_text_column(recipe_file, tmp_path, capsys):
    (tmp_path / "ok.jsonl").write_text('{"text": "the cat"}\n{"text": "a dog"}\n')
    path = recipe_file(sources_yaml("path: ok.jsonl, where: {text: {gt: 5}}"))
    assert main(["run", str(path), "-o", str(tmp_path / "o"), "-q"]) == 2
    one_error(capsys, str(path), "sources[0].where.text.gt", "holds str values",
              "min_length")


@pytest.mark.parametrize("rows", [['{"text": {"a": 1}}', '{"text": {"a": 2}}'],
                                  ['{"text": "the cat"}', '{"text": {"a": 2}}']],
                         ids=["all-dicts", "mixed"])
def test_text_column_holding_dicts(recipe_file, tmp_path, capsys, rows):
    (tmp_path / "d.jsonl").write_text("\n".join(rows) + "\n")
    path = recipe_file(sources_yaml("path: d.jsonl"))
    assert main(["run", str(path), "-o", str(tmp_path / "o"), "-q"]) == 2
    one_error(capsys, str(path), "sources[0].text_column", "must hold text", "dict")


def test_where_string_comparisons_still_work(recipe_file, tmp_path):
    (tmp_path / "ok.jsonl").write_text("".join(json.dumps({"text": t, "n": i}) + "\n"
                                               for i, t in enumerate(
                                                   ["the cat", "a dog", "the bird", "red"])))
    path = recipe_file(sources_yaml("path: ok.jsonl, where: {n: {gt: 0}}"))
    assert main(["run", str(path), "-o", str(tmp_path / "o"), "-q"]) == 0
    data = json.loads((tmp_path / "o" / "results.json").read_text())
    assert data["data"]["counts_by_label"]["a"] == 3


def test_safe_load_yaml_is_yaml_safe_load_for_ordinary_documents():
    text = "a: 1\nb: [x, {c: 2.5, d: null}]\ne: &e {f: true}\ng: *e\n"
    assert recipe_loader.safe_load_yaml(text) == yaml.safe_load(text)
    assert recipe_loader.safe_load_yaml("") is None
