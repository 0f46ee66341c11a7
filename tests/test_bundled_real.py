"""End-to-end runs with the real bundled model and real data (slow: tens of seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embedforensics.cli import main

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_default_recipe_end_to_end_on_a_subsample(tmp_path, capsys):
    out = tmp_path / "default"
    code = main(["run", str(ROOT / "recipes" / "default.yaml"), "-o", str(out), "-q",
                 "--set", "sources[0].sample=80", "--set", "sources[1].sample=80"])
    assert code == 0
    assert "Report:" in capsys.readouterr().out
    data = json.loads((out / "results.json").read_text())
    assert data["data"]["counts_by_label"] == {"gemini": 80, "human": 80}
    assert data["provenance"]["model"]["model_class"] == "BertModel"
    assert data["provenance"]["model"]["max_length"] == 256
    linear = next(p for p in data["probes"] if p["probe"] == "linear")["metrics"]
    # the sources are far apart (topic confound included): the probe must find it
    assert linear["accuracy"]["ci"][0] > 0.8
    cluster = next(p for p in data["probes"] if p["probe"] == "cluster")["metrics"]
    assert cluster["ari"]["value"] > cluster["ari_null"]["value"] + 0.3
    html = (out / "report.html").read_text()
    assert "Topic and genre" in html


def test_bundled_minilm_matches_sentence_transformers(tmp_path):
    from sentence_transformers import SentenceTransformer

    from embedforensics.models.bundled import minilm_path
    from embedforensics.models.hf_encoder import HFTextEmbedder

    texts = ["A short one.", "Ünïcödé and émojis 🙂 are fine.",
             "word " * 400,  # longer than max_seq_length: truncated identically
             "The Neolithic Revolution was a protracted, multifaceted process."]
    path = str(minilm_path())
    ours, stats = HFTextEmbedder(path, batch_size=2).encode(texts, progress=False)
    theirs = SentenceTransformer(path, device="cpu").encode(texts, batch_size=2,
                                                            convert_to_numpy=True)
    cosine_distance = 1 - (ours * theirs).sum(1) / np.linalg.norm(theirs, axis=1)
    assert cosine_distance.max() < 1e-5
    assert stats.n_truncated == 1
