"""Recipe loading: includes, precedence, overrides, and error messages that locate problems."""

from __future__ import annotations

import logging

import pytest
import yaml

from embedforensics.errors import UserError
from embedforensics.recipe import dump_recipe, load_recipe


def test_valid_recipe_resolves_defaults_and_source_ids(write_recipe):
    loaded = load_recipe(write_recipe())
    recipe = loaded.recipe
    # pooling/normalize/prefix stay "auto" (None) until the model's family fills them
    assert recipe.model.pooling is None and recipe.model.normalize is None
    assert [s.id for s in recipe.sources] == ["animals", "finance"]
    assert [s.type for s in recipe.sources] == ["inline", "inline"]
    assert recipe.labels == ["animals", "finance"]
    assert "name: tiny" in dump_recipe(recipe)


def test_shared_labels_get_distinct_source_ids(write_recipe):
    path = write_recipe({"sources": [{"label": "x", "texts": ["a"]},
                                     {"label": "x", "texts": ["b"]},
                                     {"label": "y", "texts": ["c"]}],
                         "probes": []})
    assert [s.id for s in load_recipe(path).recipe.sources] == ["x-0", "x-1", "y"]


def test_include_precedence_and_override_logging(tmp_path, write_recipe, caplog):
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({"seed": 7, "model": {"batch_size": 2, "max_length": 16}}))
    path = write_recipe({"include": ["base.yaml"], "seed": 3})
    with caplog.at_level(logging.INFO):
        loaded = load_recipe(path, ["model.max_length=8", "sources[1].sample=5"])
    recipe = loaded.recipe
    assert recipe.seed == 3                      # recipe beats include
    assert recipe.model.batch_size == 4          # recipe beats include (nested merge)
    assert recipe.model.max_length == 8          # command line beats include
    assert recipe.sources[1].sample == 5
    assert loaded.overrides == ["model.max_length=8", "sources[1].sample=5"]
    assert "override model.max_length: 16 -> 8" in caplog.text


def test_include_cycle_is_detected(tmp_path):
    (tmp_path / "a.yaml").write_text("include: b.yaml\nname: a\n")
    (tmp_path / "b.yaml").write_text("include: a.yaml\n")
    with pytest.raises(UserError, match="include cycle"):
        load_recipe(tmp_path / "a.yaml")


def test_missing_include_names_including_file(tmp_path):
    (tmp_path / "a.yaml").write_text("include: nope.yaml\nname: a\n")
    with pytest.raises(UserError) as err:
        load_recipe(tmp_path / "a.yaml")
    assert "a.yaml" in str(err.value) and "nope.yaml" in str(err.value)
    assert err.value.key == "include"


def test_error_in_included_file_names_that_file(tmp_path, write_recipe):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({"model": {"pooling": "meen"}}))
    path = write_recipe({"include": "base.yaml", "model": {"id": "x"}})
    # the recipe's model mapping merges over the include's, so pooling comes from base.yaml
    data = yaml.safe_load(path.read_text())
    data["model"] = {"batch_size": 2}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(UserError) as err:
        load_recipe(path, check=False)
    text = str(err.value)
    assert "base.yaml: model.pooling: must be one of 'mean'" in text
    assert "'meen'" in text


def test_unknown_key_has_did_you_mean(write_recipe):
    path = write_recipe({"sede": 1})
    with pytest.raises(UserError, match=r"unknown key 'sede' \(did you mean 'seed'\?\)"):
        load_recipe(path)


def test_unknown_nested_key_has_path_and_did_you_mean(write_recipe):
    path = write_recipe({"sources": [{"label": "a", "texts": ["x"], "text_colum": "t"}]})
    with pytest.raises(UserError) as err:
        load_recipe(path)
    assert "sources[0].text_colum: unknown key 'text_colum' (did you mean 'text_column'?)" \
        in str(err.value)


def test_unknown_probe_has_did_you_mean(write_recipe):
    path = write_recipe({"probes": [{"name": "pca"}, {"name": "linaer"}]})
    with pytest.raises(UserError) as err:
        load_recipe(path)
    assert "probes[1].name" in str(err.value)
    assert "did you mean 'linear'" in str(err.value)


def test_bad_probe_parameter_names_key_path(write_recipe):
    path = write_recipe({"probes": [{"name": "pca"}, {"name": "pca", "n_components": -1}]})
    with pytest.raises(UserError) as err:
        load_recipe(path)
    assert err.value.key == "probes[1].n_components"
    assert "'n_components'" in str(err.value) and "-1" in str(err.value)


def test_unknown_probe_parameter_did_you_mean(write_recipe):
    path = write_recipe({"probes": [{"name": "linear", "n_fold": 3}]})
    with pytest.raises(UserError, match=r"probes\[0\].n_fold: unknown parameter 'n_fold'.*"
                                        r"did you mean 'n_folds'"):
        load_recipe(path)


def test_probe_needing_two_labels_with_one_label(write_recipe):
    path = write_recipe({"sources": [{"label": "only", "texts": ["a", "b"]}],
                         "probes": ["pca", "linear"]})
    with pytest.raises(UserError) as err:
        load_recipe(path)
    assert err.value.key == "probes[1]" and "needs at least 2 labels" in str(err.value)


def test_several_problems_reported_together(write_recipe):
    path = write_recipe({"model": {"id": "bundled:nope"}, "probes": [{"name": "pcaa"}]})
    with pytest.raises(UserError) as err:
        load_recipe(path)
    assert "2 problems" in str(err.value)
    assert "model.id" in str(err.value) and "probes[0].name" in str(err.value)


def test_malformed_yaml_reports_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nmodel: {id: [unclosed\n")
    with pytest.raises(UserError, match=r"bad.yaml: malformed YAML at line \d+"):
        load_recipe(path)


def test_non_mapping_and_missing_file(tmp_path):
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(UserError, match="must be a YAML mapping"):
        load_recipe(tmp_path / "list.yaml")
    with pytest.raises(UserError, match="does not exist"):
        load_recipe(tmp_path / "missing.yaml")


def test_missing_required_and_no_sources(write_recipe):
    with pytest.raises(UserError, match="model: is required but missing"):
        load_recipe(write_recipe({"name": "x", "sources": [{"label": "a", "texts": ["t"]}]},
                                 base=False))
    with pytest.raises(UserError, match="sources"):
        load_recipe(write_recipe({"sources": []}))


def test_set_override_errors(write_recipe):
    path = write_recipe()
    with pytest.raises(UserError, match="must look like key.path=value"):
        load_recipe(path, ["seed"])
    with pytest.raises(UserError, match=r"sources\[5\] does not exist"):
        load_recipe(path, ["sources[5].label=x"])
    with pytest.raises(UserError, match="unknown key 'bogus'"):
        load_recipe(path, ["model.bogus=1"])


def test_unavailable_hub_model_offline_is_clear(write_recipe, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = write_recipe({"model": {"id": "someone/not-a-cached-model"}})
    with pytest.raises(UserError) as err:
        load_recipe(path)
    assert err.value.key == "model.id" and "not available offline" in str(err.value)


def test_load_from_python_dict(tiny_bert):
    loaded = load_recipe(data={"name": "d", "model": {"id": str(tiny_bert)},
                               "sources": [{"label": "a", "texts": ["x"]}]})
    assert loaded.recipe.name == "d"


def test_did_you_mean_reaches_every_section(write_recipe):
    path = write_recipe({
        "model": {"id": "x", "normalise": True},
        "sources": [{"label": "a", "texts": ["x"], "where": {"text": {"min_len": 3}}},
                    {"label": "b", "texts": ["y"]}],
        "heads": {"groups": [{"name": "r", "optimiser": "adam"}]},
        "compare": {"reference": "r", "candidates": {"c": "r"}, "levl": 0.1},
    })
    with pytest.raises(UserError) as err:
        load_recipe(path)
    text = str(err.value)
    for key, suggestion in [("model.normalise", "normalize"),
                            ("sources[0].where.text.min_len", "min_length"),
                            ("heads.groups[0].optimiser", "optimizer"),
                            ("compare.levl", "level")]:
        assert f"{key}: unknown key" in text and f"did you mean '{suggestion}'" in text
