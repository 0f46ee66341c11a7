"""recipes/image-textiles.yaml end to end (sources -> image embeddings -> probes -> report),
with ``--set model.id=local-dir:<tiny random open_clip>`` and small samples, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("open_clip")
pytest.importorskip("conformal_clip_data")

from embedforensics.cli import main  # noqa: E402
from tests.clip_models import build_tiny_open_clip  # noqa: E402

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "image-textiles.yaml"


def test_image_recipe_names_a_real_model_and_validates():
    import yaml

    data = yaml.safe_load(RECIPE.read_text(encoding="utf-8"))
    assert data["model"]["id"] == "hf-hub:apple/DFN5B-CLIP-ViT-H-14"


def test_image_recipe_runs_end_to_end_with_a_tiny_model(tmp_path):
    model = build_tiny_open_clip(tmp_path / "tiny-oc")
    out = tmp_path / "run"
    sets = ["--set", f"model.id=local-dir:{model}"]
    for i in range(3):
        sets += ["--set", f"sources[{i}].sample=12"]
    assert main(["run", str(RECIPE), *sets, "-o", str(out)]) == 0
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["data"]["counts_by_label"] == {"global-defect": 12, "local-defect": 12,
                                                  "nominal": 12}
    per_source = results["provenance"]["embedding"]["per_source"]
    assert {s["modality"] for s in per_source.values()} == {"image"}
    assert results["provenance"]["model"]["family"] == "open_clip"
    assert {p["probe"] for p in results["probes"]} == {"linear", "baselines", "two_sample",
                                                       "cluster", "pca"}
    assert not any(p.get("error") for p in results["probes"])
    assert "36 images" in (out / "report.md").read_text(encoding="utf-8")
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "36 images" in html
    assert html.count("<img class=thumb") == 3 * 6  # example thumbnails per source

    # every image row is fingerprinted by content and points back at its file
    for src in results["data"]["sources"]:
        assert len(src["fingerprint"]) == 64
        assert "conformal_clip_data" in src["origin"]["description"]
