"""The Python API mirrors the CLI: load_recipe, run, embed."""

from __future__ import annotations

import pytest

import embedforensics as ef


def test_python_api_run_and_results(write_recipe, tmp_path):
    recipe = ef.load_recipe(write_recipe())
    result = ef.run(recipe, output=tmp_path / "api", progress=False)
    assert result.output_dir == tmp_path / "api"
    assert (tmp_path / "api" / "report.html").is_file()
    accuracy = result.metric("linear", "accuracy")
    assert 0.0 <= accuracy <= 1.0
    assert result["data"]["n"] == 20 and len(result.embeddings) == 20
    with pytest.raises(KeyError):
        result.metric("linear", "no_such_metric")


def test_python_api_embed_keeps_order_and_ids(write_recipe):
    embeddings = ef.embed(write_recipe(), progress=False)
    assert embeddings.ids[:2] == ["animals:0", "animals:1"]
    assert list(embeddings.labels[:1]) == ["animals"] and embeddings.X.shape == (20, 32)


def test_user_error_is_exported():
    with pytest.raises(ef.UserError):
        ef.load_recipe("/definitely/not/here.yaml")
