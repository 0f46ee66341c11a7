"""The command line: run, validate, embed, ls, env; exit codes; errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from embedforensics.cli import main
from embedforensics.report.schema import Results


def test_run_writes_reports_and_prints_where(write_recipe, tmp_path, capsys):
    path = write_recipe({"probes": ["pca", {"name": "lda", "n_folds": 2},
                                    {"name": "linear", "n_folds": 2}, "cluster"]})
    assert main(["run", str(path), "--output", str(tmp_path / "o"), "-q"]) == 0
    out = capsys.readouterr().out
    assert f"Report: {tmp_path / 'o' / 'report.html'}" in out
    for name in ("results.json", "report.html", "report.md", "results.schema.json"):
        assert (tmp_path / "o" / name).is_file()
    data = json.loads((tmp_path / "o" / "results.json").read_text())
    Results.model_validate(data)  # follows the published schema
    assert data["schema"] == "embedforensics.results" and data["schema_version"] == "1.0"
    assert [p["probe"] for p in data["probes"]] == ["pca", "lda", "linear", "cluster"]
    assert data["data"]["counts_by_label"] == {"animals": 10, "finance": 10}
    prov = data["provenance"]
    assert prov["model"]["fingerprint"] and prov["model"]["pooling"] == "mean"
    assert prov["versions"]["torch"] and prov["seed"] == 0
    assert set(data["timings"]) >= {"sources", "embed", "probes", "report"}
    linear = data["probes"][2]["metrics"]
    assert 0 <= linear["accuracy"]["ci"][0] <= linear["accuracy"]["value"] <= 1
    assert linear["accuracy"]["n"] == 20


def test_rerun_is_deterministic_and_uses_cache(write_recipe, tmp_path):
    path = write_recipe()
    main(["run", str(path), "-o", str(tmp_path / "a"), "-q"])
    main(["run", str(path), "-o", str(tmp_path / "b"), "-q"])
    a = json.loads((tmp_path / "a" / "results.json").read_text())
    b = json.loads((tmp_path / "b" / "results.json").read_text())
    assert [p["metrics"] for p in a["probes"]] == [p["metrics"] for p in b["probes"]]
    caches = {v["cache"] for v in b["provenance"]["embedding"]["per_source"].values()}
    assert caches == {"cache hit"}


def test_set_override_and_no_cache(write_recipe, tmp_path):
    path = write_recipe()
    assert main(["run", str(path), "-o", str(tmp_path / "o"), "--no-cache", "-q",
                 "--set", "sources[0].limit=6", "--set", "probes[1].n_folds=3"]) == 0
    data = json.loads((tmp_path / "o" / "results.json").read_text())
    assert data["data"]["counts_by_label"]["animals"] == 6
    assert data["recipe"]["overrides"] == ["sources[0].limit=6", "probes[1].n_folds=3"]
    assert data["provenance"]["cache"]["enabled"] is False


def test_user_error_is_one_line_exit_2_and_debug_shows_traceback(write_recipe, capsys):
    path = write_recipe({"probes": [{"name": "pca", "n_components": 0}]})
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "probes[0].n_components" in err
    assert "Traceback" not in err and str(path) in err
    from embedforensics.errors import UserError

    with pytest.raises(UserError):
        main(["--debug", "run", str(path)])


def test_failing_probe_keeps_other_results(write_recipe, tmp_path, capsys):
    # 10 rows per label cannot fill 20 folds: linear fails, pca still reported
    path = write_recipe({"probes": ["pca", {"name": "linear", "n_folds": 20}]})
    assert main(["run", str(path), "-o", str(tmp_path / "o"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "probes[1] (linear)" in err and str(tmp_path / "o") in err
    data = json.loads((tmp_path / "o" / "results.json").read_text())
    assert data["probes"][0]["metrics"] and data["probes"][1]["error"]


def test_validate_prints_resolved_recipe_without_loading_model(write_recipe, capsys,
                                                               monkeypatch):
    import embedforensics.models.hf_encoder as enc

    monkeypatch.setattr(enc.HFTextEmbedder, "load", lambda self: pytest.fail("model loaded"))
    path = write_recipe()
    assert main(["validate", str(path), "--set", "seed=9"]) == 0
    captured = capsys.readouterr()
    assert "seed: 9" in captured.out and "pooling: mean" in captured.out
    assert "valid (2 sources, 2 probes)" in captured.err


def test_embed_export_is_readable_without_embedforensics(write_recipe, tmp_path):
    path = write_recipe()
    assert main(["embed", str(path), "-o", str(tmp_path / "e"), "-q"]) == 0
    from safetensors.numpy import load_file

    X = load_file(str(tmp_path / "e" / "embeddings.safetensors"))["embeddings"]
    rows = [json.loads(line) for line in (tmp_path / "e" / "records.jsonl").open()]
    manifest = json.loads((tmp_path / "e" / "manifest.json").read_text())
    assert X.shape == (20, 32) and X.dtype == np.float32
    assert rows[0] == {"index": 0, "id": "animals:0", "label": "animals", "source": "animals"}
    assert rows[-1]["label"] == "finance" and manifest["n"] == 20 and manifest["dim"] == 32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)


def test_ls_and_env(capsys):
    assert main(["ls", "probes"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("pca", "lda", "cluster", "linear"))
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    assert "bundled:all-MiniLM-L6-v2" in out and "package" in out
    assert "transforms:" in out and "translate" in out and "generate" in out
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    assert "torch: " in out and "cuda available: " in out


def test_console_script_and_import_is_light():
    code = ("import sys, embedforensics; "
            "print(sorted(m for m in ('torch','transformers','sklearn','datasets') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
    proc = subprocess.run([sys.executable, "-m", "embedforensics", "validate", "/nonexistent.yaml"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_loading_a_recipe_does_not_import_torch_or_sklearn():
    code = ("import sys, embedforensics.recipe.loader; "
            "print(sorted(m for m in ('torch','sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
