"""Data parallel embedding: 2 CPU processes give exactly the rows of 1 process, in order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from embedforensics.cli import _relaunch
from embedforensics.engine.batching import assign_batches, plan_batches
from tests.conftest import TEXTS_A, TEXTS_B

ROOT = Path(__file__).resolve().parents[1]


def test_two_processes_equal_one_process_bit_for_bit(tmp_path, tiny_bert, monkeypatch):
    """``embedforensics embed --num-processes 2`` (torchrun + gloo on the CPU).

    Uneven shares (21 rows, 4 per batch, 8 per shard: the processes get different row
    counts, so the gather pads) and two layers, through the cache; then a 1-process run
    reads the 2-process run's cache entries and must agree, and so must a fresh 1-process
    computation.
    """
    from safetensors.numpy import load_file

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "version": 1, "name": "dp",
        "model": {"id": str(tiny_bert), "batch_size": 4, "shard_rows": 8, "layers": [-1, 0]},
        "sources": [{"label": "a", "texts": TEXTS_A + ["sun"]}, {"label": "b",
                                                                 "texts": TEXTS_B}]}))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "EMBEDFORENSICS_CACHE": str(tmp_path / "cache2")}
    two = subprocess.run([sys.executable, "-m", "embedforensics", "-q", "embed",
                          "--num-processes", "2", str(recipe), "-o", str(tmp_path / "two")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert manifest["provenance"]["embedding"]["processes"] == 2
    got = load_file(str(tmp_path / "two" / "embeddings.safetensors"))

    import torch

    from embedforensics.recipe import load_recipe
    from embedforensics.runner import embed

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fresh = embed(load_recipe(recipe), use_cache=False, progress=False)
        cached = embed(load_recipe(recipe), progress=False)  # 1 process, its own cache
    finally:
        torch.set_num_threads(threads)
    assert cached.provenance["embedding"]["per_source"]["a"]["cache"] == "computed"
    for name in ("-1", "0"):
        np.testing.assert_array_equal(got[f"layer.{name}"], fresh.per_layer[name])
        np.testing.assert_array_equal(cached.per_layer[name], fresh.per_layer[name])
    np.testing.assert_array_equal(got["embeddings"], fresh.X)
    records = [json.loads(line) for line in
               (tmp_path / "two" / "records.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == fresh.ids

    monkeypatch.setenv("EMBEDFORENSICS_CACHE", str(tmp_path / "cache2"))  # the 2-process cache
    warm = embed(load_recipe(recipe), progress=False)
    assert {v["cache"] for v in warm.provenance["embedding"]["per_source"].values()} == \
        {"cache hit"}
    np.testing.assert_array_equal(warm.X, fresh.X)


def test_batches_are_dealt_so_each_row_is_in_exactly_one_process():
    lengths = np.random.default_rng(3).integers(1, 64, size=101)
    batches = plan_batches(lengths, batch_size=4, max_tokens=100)
    for world in (1, 2, 3, 7):
        parts = assign_batches(batches, lengths, world)
        rows = np.concatenate([batches[j] for p in parts for j in p])
        assert np.array_equal(np.sort(rows), np.arange(101))


def test_gather_rejects_lost_rows():
    """The index check, not a length trim, decides: a missing row is an error."""
    from embedforensics.engine.distributed import Workers

    workers = Workers()
    assert workers.world == 1
    out = workers.gather_rows(np.array([2, 0, 1]), {"embeddings": np.eye(3, dtype=np.float32)},
                              3)
    np.testing.assert_array_equal(out["embeddings"], np.eye(3)[[1, 2, 0]])
    with pytest.raises(RuntimeError, match="1 missing"):
        workers.gather_rows(np.array([0, 0, 1]), {"embeddings": np.eye(3, dtype=np.float32)},
                            3)


def test_relaunch_builds_a_launcher_command(monkeypatch):
    seen = {}

    def fake_run(cmd, check, env):
        seen["cmd"], seen["env"] = cmd, env
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert _relaunch(["run", "--num-processes", "3", "r.yaml", "--no-cache"], 3) == 0
    cmd = seen["cmd"]
    assert cmd[-4:] == ["embedforensics", "run", "r.yaml", "--no-cache"]
    assert "--num-processes" not in cmd and "3" in cmd
    import torch

    if not torch.cuda.is_available():
        assert "torch.distributed.run" in cmd and seen["env"]["ACCELERATE_USE_CPU"] == "1"
