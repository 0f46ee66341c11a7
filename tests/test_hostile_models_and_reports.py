"""Hostile and broken input (issue 22): no stale answers, one sentence instead of a
traceback, and one failure never loses the rest.

Every hostile input is built in the test: tiny random BERT folders (conftest), tiny heads,
hand-written manifests and checkpoints, labels and column names that try to break the
reports.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from embedforensics.cli import main
from embedforensics.engine.shards import ShardedEntry, safetensors_bytes
from embedforensics.errors import UserError
from embedforensics.models.hub import directory_fingerprint, fingerprinted
from tests.conftest import TEXTS_A, TEXTS_B, build_tiny_bert

ROOT = Path(__file__).resolve().parents[1]


def _one_sentence(err: str) -> str:
    """The CLI's error output: one line, no traceback."""
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def bert_template(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("hostile") / "tiny-bert")


@pytest.fixture
def bert(bert_template, tmp_path) -> Path:
    """A private copy of the tiny BERT folder, free to edit."""
    return Path(shutil.copytree(bert_template, tmp_path / "bert"))


# =========================================================================== stale answers


def _fp(path: Path) -> str:
    return directory_fingerprint(path)[0]


@pytest.mark.parametrize("edit", [
    # the three examples
    ("sentence_bert_config.json", '{"max_seq_length": 4, "do_lower_case": false}'),
    ("vocab.txt", None),  # appended to, in a folder without tokenizer.json
    ("modeling_custom.py", "# custom code, read with trust_remote_code\nX = 2\n"),
    # and every other kind of file that can change an embedding
    ("merges.txt", "#version: 0.2\na b\n"),
    ("spiece.model", b"\x00\x01sentencepiece"),
    ("special_tokens_map.json", '{"cls_token": "[SEP]"}'),
    ("added_tokens.json", '{"<new>": 999}'),
    ("generation_config.json", '{"max_length": 3}'),
    ("preprocessor_config.json", '{"size": 3}'),
    ("1_Pooling/config.json", '{"pooling_mode_cls_token": true}'),
    ("2_Dense/model.safetensors", b"dense weights"),
    ("modules.json", "[]"),
])
def test_editing_any_model_file_changes_the_fingerprint(bert, edit):
    name, content = edit
    (bert / "tokenizer.json").unlink()  # the slow tokenizer reads vocab.txt
    target = bert / name
    if content is None or target.exists():
        # a file present already: change it
        before = _fp(bert)
        with target.open("ab") as fh:
            fh.write(b"extra\n")
        assert _fp(bert) != before
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    before = _fp(bert)
    if isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content, encoding="utf-8")
    created = _fp(bert)
    assert created != before, f"adding {name} left the fingerprint unchanged"
    with target.open("ab") as fh:
        fh.write(b" ")
    assert _fp(bert) != created, f"editing {name} left the fingerprint unchanged"


def test_irrelevant_files_do_not_change_the_fingerprint(bert):
    before = _fp(bert)
    (bert / "README.md").write_text("# a model card\n", encoding="utf-8")
    (bert / "LICENSE").write_text("MIT\n", encoding="utf-8")
    (bert / "optimizer.pt").write_bytes(b"adam state")
    (bert / "trainer_state.json").write_text("{}", encoding="utf-8")
    (bert / ".git").mkdir()
    (bert / ".git" / "HEAD").write_text("ref", encoding="utf-8")
    (bert / "checkpoint-500").mkdir()
    (bert / "checkpoint-500" / "model.safetensors").write_bytes(b"older weights")
    assert _fp(bert) == before
    names = {rel for rel, _ in fingerprinted(bert)}
    assert {"config.json", "model.safetensors", "vocab.txt", "tokenizer.json"} <= names


def test_symlink_loop_in_a_model_folder_is_walked_once(bert):
    (bert / "sub").mkdir()
    (bert / "sub" / "loop").symlink_to(bert, target_is_directory=True)
    (bert / "sub" / "extra.json").write_text("{}", encoding="utf-8")
    rels = [rel for rel, _ in fingerprinted(bert)]
    assert len(rels) == len(set(rels))
    assert "sub/extra.json" in rels


def _tiny_recipe(tmp_path: Path, model: Path, **model_extra) -> Path:
    data = {"version": 1, "name": "hostile", "seed": 0,
            "model": {"id": str(model), "batch_size": 4, **model_extra},
            "sources": [{"label": "animals", "texts": TEXTS_A[:4]},
                        {"label": "finance", "texts": TEXTS_B[:4]}],
            "probes": [{"name": "pca"}]}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_editing_vocab_txt_is_a_cache_miss_end_to_end(bert, tmp_path):
    """The issue's case: a folder without tokenizer.json, vocab.txt edited between runs."""
    from embedforensics.runner import embed

    (bert / "tokenizer.json").unlink()
    recipe = _tiny_recipe(tmp_path, bert)
    first = embed(recipe, progress=False)
    assert first.provenance["embedding"]["per_source"]["animals"]["cache"] == "computed"
    again = embed(recipe, progress=False)
    assert again.provenance["embedding"]["per_source"]["animals"]["cache"] == "cache hit"
    vocab = (bert / "vocab.txt").read_text(encoding="utf-8").splitlines()
    cat, dog = vocab.index("cat"), vocab.index("dog")
    vocab[cat], vocab[dog] = "dog", "cat"
    (bert / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    edited = embed(recipe, progress=False)
    assert edited.provenance["embedding"]["per_source"]["animals"]["cache"] == "computed"
    assert not np.allclose(edited.X, first.X)


# --------------------------------------------------------------- deterministic shard bytes

_WRITER = """
import sys, json, numpy as np
from embedforensics.engine.shards import ShardedEntry
e = ShardedEntry(sys.argv[1], "ab" + "0" * 62, n_rows=5, shard_rows=5,
                 text_fingerprint="t", tensors=["layer.-1", "layer.2"])
rng = np.random.default_rng(0)
e.write_shard(0, {"layer.2": rng.normal(size=(5, 3)), "layer.-1": rng.normal(size=(5, 3))},
              info={"n_tokens": 7})
"""


def test_the_same_shard_written_by_two_processes_is_byte_identical(tmp_path):
    files = []
    for run, hashseed in enumerate(("1", "2")):
        root = tmp_path / f"cache{run}"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": hashseed}
        subprocess.run([sys.executable, "-c", _WRITER, str(root)], check=True, env=env)
        entry = root / "shards" / "ab" / ("ab" + "0" * 62)
        files.append(((entry / "shard-00000.safetensors").read_bytes(),
                      (entry / "manifest.json").read_bytes()))
    assert files[0] == files[1]
    # and the bytes are a valid safetensors file with the metadata and tensors
    from safetensors import safe_open
    from safetensors.numpy import load

    path = tmp_path / "cache0" / "shards" / "ab" / ("ab" + "0" * 62) / "shard-00000.safetensors"
    with safe_open(str(path), framework="np") as fh:
        assert fh.metadata()["shard"] == "0"
    assert load(files[0][0])["layer.2"].shape == (5, 3)


def test_safetensors_bytes_ignore_dict_order():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    one = safetensors_bytes({"x": a, "y": a + 1}, {"k": "1", "a": "2"})
    two = safetensors_bytes({"y": a + 1, "x": a}, {"a": "2", "k": "1"})
    assert one == two
    from safetensors.numpy import load

    assert np.array_equal(load(one)["y"], a + 1)


# =========================================================================== cache robustness


def _entry(root: Path, n_rows: int = 4) -> ShardedEntry:
    return ShardedEntry(root, "cd" + "1" * 62, n_rows=n_rows, shard_rows=2,
                        text_fingerprint="t", tensors=["embeddings"])


def _arrays(rows: int = 2) -> dict[str, np.ndarray]:
    return {"embeddings": np.ones((rows, 3), dtype=np.float32)}


@pytest.mark.parametrize("manifest", [
    [], "a string", 3, None,
    {"format": "embedforensics-shards-v1", "shards": []},
    "WITH_BAD_SHARDS",  # the right header, shards of the wrong shape
])
def test_manifest_of_the_wrong_shape_is_recomputed(tmp_path, manifest):
    entry = _entry(tmp_path)
    entry.write_shard(0, _arrays(), info={"n_tokens": 1})
    entry.write_shard(1, _arrays(), info={"n_tokens": 1})
    good = json.loads(entry.manifest_path.read_text())
    if manifest == "WITH_BAD_SHARDS":
        manifest = {**good, "shards": {"0": "not a record", "x": {}, "1": {
            **good["shards"]["1"], "file": "../../../etc/passwd"}}, "model": [1, 2]}
    entry.manifest_path.write_text(json.dumps(manifest))
    again = _entry(tmp_path)
    assert again.completed() == set()
    assert again.load_shard(0) is None and again.load_shard(1) is None
    again.write_shard(0, _arrays(), info={"n_tokens": "not a number"})
    assert again.completed() == {0}


def test_partly_malformed_manifest_keeps_the_good_records(tmp_path):
    entry = _entry(tmp_path)
    entry.write_shard(0, _arrays(), info={"n_tokens": 1})
    entry.write_shard(1, _arrays(), info={"n_tokens": 1})
    m = json.loads(entry.manifest_path.read_text())
    m["shards"]["1"]["info"] = "garbage"
    m["shards"]["0"]["start"] = "zero"
    entry.manifest_path.write_text(json.dumps(m))
    again = _entry(tmp_path)
    assert again.completed() == {1}
    assert again.manifest["shards"]["1"]["info"] == {}
    assert again.load_shard(1) is not None


def test_shard_path_that_is_a_directory_is_one_sentence(tmp_path):
    entry = _entry(tmp_path)
    entry.write_shard(0, _arrays(), info={})
    shard = entry.dir / "shard-00000.safetensors"
    shard.unlink()
    shard.mkdir()
    (shard / "x").write_text("x")
    again = _entry(tmp_path)
    assert again.load_shard(0) is None  # recomputed, never read
    with pytest.raises(UserError) as err:
        again.write_shard(0, _arrays(), info={})
    assert "output.cache_dir" in str(err.value) and str(shard) in str(err.value)
    assert again.completed() == set()  # nothing listed that is not on disk


def test_full_cache_disk_is_one_sentence_and_nothing_half_written(tmp_path, monkeypatch):
    import embedforensics.engine.shards as shards

    entry = _entry(tmp_path)
    entry.write_shard(0, _arrays(), info={})
    before = entry.manifest_path.read_bytes()

    def full(path, data, *, suffix=""):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(shards, "atomic_write_bytes", full)
    with pytest.raises(UserError, match="No space left"):
        entry.write_shard(1, _arrays(), info={})
    assert entry.manifest_path.read_bytes() == before
    assert not (entry.dir / "shard-00001.safetensors").exists()
    assert not list(entry.dir.glob(".tmp-*"))
    assert entry.completed() == {0}


def test_cache_dir_that_is_a_file_is_exit_2_before_any_work(bert, tmp_path, capsys):
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("not a folder")
    recipe = _tiny_recipe(tmp_path, bert)
    data = yaml.safe_load(recipe.read_text())
    data["output"] = {"cache_dir": str(blocker)}
    recipe.write_text(yaml.safe_dump(data))
    assert main(["-q", "embed", str(recipe), "-o", str(tmp_path / "out")]) == 2
    line = _one_sentence(capsys.readouterr().err)
    assert "output.cache_dir" in line and str(blocker) in line
    # a file where a folder under the cache should be
    data["output"] = {"cache_dir": str(blocker / "sub")}
    recipe.write_text(yaml.safe_dump(data))
    assert main(["-q", "embed", str(recipe), "-o", str(tmp_path / "out2")]) == 2
    assert str(blocker) in _one_sentence(capsys.readouterr().err)


def test_unwritable_cache_is_exit_2_one_sentence(bert, tmp_path, capsys, monkeypatch):
    """A read-only (or full) cache folder: chmod where it bites, else a simulated ENOSPC."""
    cache = tmp_path / "ro-cache"
    cache.mkdir()
    recipe = _tiny_recipe(tmp_path, bert)
    data = yaml.safe_load(recipe.read_text())
    data["output"] = {"cache_dir": str(cache)}
    recipe.write_text(yaml.safe_dump(data))
    cache.chmod(0o500)
    try:
        if os.access(cache, os.W_OK):  # root ignores the mode: simulate a full disk
            import embedforensics.fileio as fileio

            real = fileio.tempfile.mkstemp

            def no_space(*args, **kwargs):
                if str(cache) in str(kwargs.get("dir", "")):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return real(*args, **kwargs)

            monkeypatch.setattr(fileio.tempfile, "mkstemp", no_space)
        code = main(["-q", "embed", str(recipe), "-o", str(tmp_path / "out")])
    finally:
        cache.chmod(0o700)
    assert code == 2
    line = _one_sentence(capsys.readouterr().err)
    assert "output.cache_dir" in line and str(cache) in line
    assert not list(cache.rglob(".tmp-*"))


# =========================================================================== checkpoints


def _head(path: Path) -> Path:
    from embedforensics.compare.heads import save_head, train_head
    from embedforensics.recipe.compare_spec import HeadGroupSpec

    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    X = (rng.normal(size=(40, 8)) + y[:, None]).astype(np.float32)
    settings = HeadGroupSpec(name="g", epochs=2, batch_size=16).training_settings()
    module, info = train_head(X, y, 2, settings, seed=0)
    return save_head(path, module, {"kind": "logistic", "input_dim": 8,
                                    "classes": ["a", "b"], "training": settings})


def _edit_config(path: Path, **changes) -> None:
    config = json.loads((path / "config.json").read_text())
    for k, v in changes.items():
        if v is _DROP:
            config.pop(k)
        else:
            config[k] = v
    (path / "config.json").write_text(json.dumps(config))


_DROP = object()


@pytest.mark.parametrize("breakage, words", [
    ({"kind": "svm"}, "kind 'svm'"),
    ({"input_dim": _DROP}, "input_dim None"),
    ({"input_dim": "eight"}, "input_dim 'eight'"),
    ({"input_dim": 9}, "do not fit"),  # the weights are [2, 8]
    ({"classes": "ab"}, "classes 'ab'"),
    ({"classes": ["a", "b", "c"]}, "do not fit"),
    ({"classes": []}, "classes []"),
    ({"training": {"hidden": -1}, "kind": "mlp"}, "training.hidden -1"),
    ("garbage-weights", "unreadable model.safetensors"),
    ("no-weights", "unreadable model.safetensors"),
])
def test_malformed_head_is_one_sentence_naming_folder_and_key(tmp_path, breakage, words):
    from embedforensics.compare.heads import load_scorer

    head = _head(tmp_path / "head")
    if breakage == "garbage-weights":
        (head / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    elif breakage == "no-weights":
        (head / "model.safetensors").unlink()
    else:
        _edit_config(head, **breakage)
    with pytest.raises(UserError) as err:
        load_scorer(head, file="r.yaml", key="compare.reference")
    text = str(err.value)
    assert text.startswith("r.yaml: compare.reference: ") and str(head) in text
    assert words in text and "\n" not in text


def test_checkpoint_with_custom_code_is_refused_without_running_or_prompting(tmp_path):
    from embedforensics.compare.heads import load_scorer
    from tests.compare.test_heads import build_tiny_classifier

    clf = build_tiny_classifier(tmp_path / "clf", ["a", "b"])
    marker = tmp_path / "code-ran"
    config = json.loads((clf / "config.json").read_text())
    config["model_type"] = "x-custom"
    config["auto_map"] = {"AutoConfig": "configuration_x.XConfig",
                          "AutoModelForSequenceClassification": "modeling_x.XModel"}
    (clf / "config.json").write_text(json.dumps(config))
    for name in ("configuration_x.py", "modeling_x.py"):
        (clf / name).write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    with pytest.raises(UserError) as err:
        load_scorer(clf, file="r.yaml", key="compare.candidates.x")
    assert "own Python code" in str(err.value) and str(clf) in str(err.value)
    assert "compare.candidates.x" in str(err.value)
    assert not marker.exists()


class _Payload:
    marker = ""

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pickle ran"))


def test_pickle_payload_is_refused_by_weights_only_loading(tmp_path):
    import torch

    from embedforensics.compare.heads import load_scorer
    from tests.compare.test_heads import build_tiny_classifier

    clf = build_tiny_classifier(tmp_path / "clf", ["a", "b"])
    (clf / "model.safetensors").unlink()
    payload = _Payload()
    payload.marker = str(tmp_path / "pickle-ran")
    torch.save({"bert.embeddings.word_embeddings.weight": payload}, clf / "pytorch_model.bin")
    scorer = load_scorer(clf, file="r.yaml", key="compare.reference")
    with pytest.raises(UserError, match="holds more than tensors") as err:
        scorer.logits(texts=["a cat"])
    assert str(clf) in str(err.value)
    assert not (tmp_path / "pickle-ran").exists()


def test_nan_logits_name_the_checkpoint_not_the_method(tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    from tests.compare.test_compare_only import _compare_only

    recipe = _compare_only(tmp_path)
    cand = tmp_path / "ckpt" / "cand-0"
    state = load_file(str(cand / "model.safetensors"))
    state["classifier.bias"] = state["classifier.bias"] * float("nan")
    save_file(state, str(cand / "model.safetensors"), metadata={"format": "pt"})
    assert main(["-q", "compare", str(recipe), "-o", str(tmp_path / "out")]) == 2
    line = _one_sentence(capsys.readouterr().err)
    assert str(cand) in line and "non-finite logit" in line
    assert "compare.candidates" in line and "compare.methods" not in line


# =========================================================================== one failure alone


def _run_recipe(tmp_path: Path, model: Path, sources: list, probes: list, **extra) -> Path:
    data = {"version": 1, "name": "alone", "seed": 0,
            "model": {"id": str(model), "batch_size": 4}, "sources": sources,
            "probes": probes, **extra}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_one_text_per_label_cluster_probe_still_reports(bert_template, tmp_path, capsys):
    sources = [{"label": "animals", "texts": TEXTS_A[:1]},
               {"label": "finance", "texts": TEXTS_B[:1]},
               {"label": "other", "texts": ["the red house"]}]
    recipe = _run_recipe(tmp_path, bert_template, sources, ["cluster", "pca"])
    out = tmp_path / "out"
    assert main(["-q", "run", str(recipe), "-o", str(out)]) == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    by_name = {p["probe"]: p for p in results["probes"]}
    assert by_name["cluster"]["error"] is None
    assert "HDBSCAN skipped" in by_name["cluster"]["summary"]
    assert by_name["pca"]["error"] is None


def test_a_probe_raising_a_library_error_fails_alone(bert_template, tmp_path, capsys,
                                                     monkeypatch):
    from embedforensics.probes.pca import PCAProbe

    def broken(self, X, y, **context):
        raise np.linalg.LinAlgError("SVD did not converge\nsecond line")

    monkeypatch.setattr(PCAProbe, "_fit", broken)
    sources = [{"label": "animals", "texts": TEXTS_A}, {"label": "finance", "texts": TEXTS_B}]
    recipe = _run_recipe(tmp_path, bert_template, sources,
                         ["pca", {"name": "linear", "n_folds": 2}])
    out = tmp_path / "out"
    assert main(["-q", "run", str(recipe), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "LinAlgError: SVD did not converge" in err
    results = json.loads((out / "results.json").read_text())
    by_name = {p["probe"]: p for p in results["probes"]}
    assert by_name["pca"]["error"] == "LinAlgError: SVD did not converge"
    assert by_name["linear"]["error"] is None and by_name["linear"]["metrics"]
    assert (out / "report.html").is_file() and (out / "report.md").is_file()


def test_mathtext_label_is_drawn_literally_and_results_written(bert_template, tmp_path,
                                                               capsys):
    label = "$\\notacommand{x}$"
    sources = [{"label": label, "texts": TEXTS_A}, {"label": "$x^$", "texts": TEXTS_B}]
    recipe = _run_recipe(tmp_path, bert_template, sources, ["pca", "cluster"])
    out = tmp_path / "out"
    assert main(["-q", "run", str(recipe), "-o", str(out)]) == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert all(p["error"] is None for p in results["probes"])
    assert len(list((out / "plots").glob("*.png"))) == sum(
        len(p["plots"]) for p in results["probes"])


def test_render_plot_never_raises_and_reports_note_the_skipped_plot(tmp_path, caplog):
    from embedforensics.report.plots import render_plot

    assert render_plot({"kind": "bar", "title": "$\\frac{", "xlabel": "$\\bad$",
                        "data": {"x": ["$\\notacommand{x}$"], "y": [1.0]}}) is not None
    # data that cannot be drawn: skipped with a logged reason
    assert render_plot({"kind": "scatter", "title": "broken",
                        "data": {"x": [1, 2], "y": [1], "labels": ["a", "b"]}}) is None
    assert "could not be drawn" in caplog.text


def test_a_plot_that_cannot_be_drawn_is_skipped_with_a_note(bert_template, tmp_path, capsys,
                                                            monkeypatch):
    import embedforensics.report.plots as plots

    real = plots._draw

    def flaky(plot):
        if plot.get("kind") == "matrix":
            raise RuntimeError("cannot draw this")
        return real(plot)

    monkeypatch.setattr(plots, "_draw", flaky)
    sources = [{"label": "animals", "texts": TEXTS_A}, {"label": "finance", "texts": TEXTS_B}]
    recipe = _run_recipe(tmp_path, bert_template, sources, ["pca", "cluster"])
    out = tmp_path / "out"
    assert main(["-q", "run", str(recipe), "-o", str(out)]) == 0, capsys.readouterr().err
    assert (out / "results.json").is_file()
    assert "could not be drawn and was skipped" in (out / "report.md").read_text()
    assert "could not be drawn and was skipped" in (out / "report.html").read_text()


def test_report_md_escapes_data_derived_strings(bert_template, tmp_path, capsys):
    (tmp_path / "a.csv").write_text(
        "<b>body</b>,<script>alert(1)</script>\n"
        + "".join(f"{t},x\n" for t in TEXTS_A), encoding="utf-8")
    sources = [{"label": "<script>alert('label')</script>", "path": "a.csv",
                "text_column": "<b>body</b>"},
               {"label": "*bold* [link](http://evil) | cell", "texts": TEXTS_B}]
    recipe = _run_recipe(tmp_path, bert_template, sources, ["pca"],
                         description="# Heading\n<img src=x onerror=alert(1)> ![i](http://x)")
    out = tmp_path / "out"
    assert main(["-q", "run", str(recipe), "-o", str(out)]) == 0, capsys.readouterr().err
    md = (out / "report.md").read_text()
    for raw in ("<script", "<img", "<b>", "[link](http://evil)", "![i](http://x)"):
        assert raw not in md, raw
    assert "\n# Heading" not in md
    finding = next(ln for ln in md.splitlines() if ln.startswith("**Finding.**"))
    assert "<" not in finding
    assert "&lt;script>" in md


def test_broken_cache_entries_through_the_cli(bert_template, tmp_path, capsys):
    """A manifest of the wrong shape is recomputed (exit 0); a folder where a shard file
    belongs is exit 2 with one sentence naming it."""
    cache = tmp_path / "c"
    recipe = _tiny_recipe(tmp_path, bert_template)
    data = yaml.safe_load(recipe.read_text())
    data["output"] = {"cache_dir": str(cache)}
    recipe.write_text(yaml.safe_dump(data))
    args = ["-q", "embed", str(recipe), "-o"]
    assert main([*args, str(tmp_path / "o1")]) == 0
    manifests = sorted(cache.rglob("manifest.json"))
    assert len(manifests) == 2
    manifests[0].write_text('{"format": "embedforensics-shards-v1", "shards": [1, 2]}')
    assert main([*args, str(tmp_path / "o2")]) == 0
    assert json.loads(manifests[0].read_text())["shards"]  # rewritten whole
    shard = manifests[1].parent / "shard-00000.safetensors"
    shard.unlink()
    shard.mkdir()
    assert main([*args, str(tmp_path / "o3")]) == 2
    line = _one_sentence(capsys.readouterr().err)
    assert str(shard) in line and "output.cache_dir" in line


def test_embedding_model_with_custom_code_is_one_sentence(tmp_path, tiny_bert, capsys):
    import shutil

    from embedforensics.cli import main

    folder = tmp_path / "custom"
    shutil.copytree(tiny_bert, folder)
    marker = tmp_path / "code-ran"
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "x-custom"
    config["auto_map"] = {"AutoConfig": "configuration_x.XConfig",
                          "AutoModel": "modeling_x.XModel"}
    (folder / "config.json").write_text(json.dumps(config))
    for name in ("configuration_x.py", "modeling_x.py"):
        (folder / name).write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps({"version": 1, "name": "c", "model": {"id": str(folder)},
                                  "sources": [{"label": "a", "texts": ["x", "y"]},
                                              {"label": "b", "texts": ["z", "w"]}],
                                  "probes": ["pca"]}))
    assert main(["-q", "run", str(recipe), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "model.trust_remote_code" in err and "Traceback" not in err
    assert not marker.exists()


def test_atomic_writes_keep_the_usual_file_mode(tmp_path):
    import os
    import stat

    from embedforensics.fileio import atomic_write_bytes

    path = atomic_write_bytes(tmp_path / "f", b"x")
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~mask
