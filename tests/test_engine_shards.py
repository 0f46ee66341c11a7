"""The sharded cache: resume after SIGKILL, identical results, only missing shards recomputed."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from embedforensics.engine.shards import ShardedEntry, shard_ranges
from embedforensics.recipe import load_recipe
from embedforensics.runner import embed
from tests.conftest import WORDS

ROOT = Path(__file__).resolve().parents[1]

# A child that embeds slowly (a sleep per batch), so it can be killed mid-run.
SLOW_CHILD = """
import sys, time
from embedforensics.models.hf_encoder import HFTextEmbedder
real = HFTextEmbedder._forward
def slow(self, texts):
    time.sleep(float(sys.argv[1]))
    return real(self, texts)
HFTextEmbedder._forward = slow
from embedforensics.cli import main
sys.exit(main(["-q", "embed", sys.argv[2], "-o", sys.argv[3]]))
"""


def _texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 30))) for _ in range(n)]


def _recipe(tmp_path: Path, model: Path, shard_rows: int) -> Path:
    data = {"version": 1, "name": "shards",
            "model": {"id": str(model), "batch_size": 4, "shard_rows": shard_rows},
            "sources": [{"label": "a", "texts": _texts(130, 1)},
                        {"label": "b", "texts": _texts(57, 2)}]}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _child(recipe: Path, out: Path, cache: Path, delay: float) -> subprocess.Popen:
    env = {**os.environ, "EMBEDFORENSICS_CACHE": str(cache), "PYTHONPATH": str(ROOT),
           "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", SLOW_CHILD, str(delay), str(recipe),
                             str(out)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _listed(cache: Path) -> int:
    return sum(len(json.loads(p.read_text())["shards"])
               for p in cache.glob("shards/*/*/manifest.json"))


def test_sigkill_mid_run_then_resume_is_identical(tmp_path, tiny_bert):
    """Kill a real run with SIGKILL twice at random moments; the third run finishes it."""
    recipe = _recipe(tmp_path, tiny_bert, shard_rows=10)
    cache = tmp_path / "cache"
    rng = random.Random(0)
    for target in (3, 9):  # kill once >= target shards are listed, plus a random delay
        proc = _child(recipe, tmp_path / "unused", cache, delay=0.05)
        deadline = time.monotonic() + 120
        while _listed(cache) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.08))  # land anywhere: mid-batch, mid-write, ...
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    listed = _listed(cache)
    total = len(shard_ranges(130, 10)) + len(shard_ranges(57, 10))
    assert 9 <= listed < total, "the kills should have left some shards to do"

    resumed = _child(recipe, tmp_path / "resumed", cache, delay=0.0)
    assert resumed.wait() == 0, resumed.stderr.read()
    import torch
    from safetensors.numpy import load_file

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the children
    try:
        want = embed(load_recipe(recipe), use_cache=False, progress=False).X
    finally:
        torch.set_num_threads(threads)
    got = load_file(str(tmp_path / "resumed" / "embeddings.safetensors"))["embeddings"]
    assert got.shape == (187, 32)
    np.testing.assert_array_equal(got, want)  # bit for bit, same order
    manifest = json.loads((tmp_path / "resumed" / "manifest.json").read_text())
    per_source = manifest["provenance"]["embedding"]["per_source"]
    reused = sum(s["shards_reused"] for s in per_source.values())
    computed = sum(s["shards_computed"] for s in per_source.values())
    assert reused == listed and computed == total - listed  # only missing shards recomputed
    # the cache's shards read back without embedforensics (documented format)
    from safetensors.numpy import load_file as plain_load

    entry = cache / "shards" / per_source["a"]["cache_key"][:2] / per_source["a"]["cache_key"]
    m = json.loads((entry / "manifest.json").read_text())
    X = np.concatenate([plain_load(str(entry / m["shards"][str(i)]["file"]))["embeddings"]
                        for i in range(m["n_shards"])])
    np.testing.assert_array_equal(X, want[:130])


def test_shard_size_does_not_change_results_and_partial_entries_restart(write_recipe,
                                                                        caplog):
    caplog.set_level("INFO", logger="embedforensics.engine.shards")
    small = embed(load_recipe(write_recipe(), ["model.shard_rows=3"]), progress=False)
    per = small.provenance["embedding"]["per_source"]["animals"]
    assert per["shards"] == 4 and per["cache"] == "computed"
    # a complete entry written with 3 rows per shard is reused under another shard size
    again = embed(load_recipe(write_recipe(), ["model.shard_rows=5"]), progress=False)
    assert {v["cache"] for v in again.provenance["embedding"]["per_source"].values()} == \
        {"cache hit"}
    np.testing.assert_array_equal(again.X, small.X)
    # a partial entry is only resumed with the same shard boundaries
    root = small.provenance["embedding"]["cache_dir"]
    entry = ShardedEntry(root, per["cache_key"], n_rows=10, shard_rows=3,
                         text_fingerprint="", tensors=["embeddings"])
    manifest = json.loads(entry.manifest_path.read_text())
    del manifest["shards"]["3"]
    entry.manifest_path.write_text(json.dumps(manifest))
    partial = embed(load_recipe(write_recipe(), ["model.shard_rows=3"]), progress=False)
    assert partial.provenance["embedding"]["per_source"]["animals"]["cache"].startswith(
        "resumed (3 of 4")
    del manifest["shards"]["2"]
    entry.manifest_path.write_text(json.dumps(manifest))
    other = embed(load_recipe(write_recipe(), ["model.shard_rows=5"]), progress=False)
    assert other.provenance["embedding"]["per_source"]["animals"]["cache"] == "computed"
    np.testing.assert_allclose(other.X, small.X, atol=1e-6)
    assert "starting it again" in caplog.text


def test_bit_flip_in_a_shard_is_detected(write_recipe, caplog):
    first = embed(load_recipe(write_recipe(), ["model.shard_rows=4"]), progress=False)
    per = first.provenance["embedding"]["per_source"]["finance"]
    root = Path(first.provenance["embedding"]["cache_dir"])
    shard = root / "shards" / per["cache_key"][:2] / per["cache_key"] / "shard-00001.safetensors"
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0x01  # one bit inside the float data; the file still parses
    shard.write_bytes(bytes(data))
    again = embed(load_recipe(write_recipe(), ["model.shard_rows=4"]), progress=False)
    status = again.provenance["embedding"]["per_source"]["finance"]["cache"]
    assert status == "resumed (2 of 3 shards from the cache)"
    np.testing.assert_array_equal(again.X, first.X)
    assert "sha256 differs" in caplog.text


def test_large_results_are_memory_mapped(write_recipe, monkeypatch):
    plain = embed(load_recipe(write_recipe()), progress=False)
    monkeypatch.setenv("EMBEDFORENSICS_MMAP_BYTES", "0")
    mapped = embed(load_recipe(write_recipe()), progress=False)
    assert isinstance(mapped.X, np.memmap)
    np.testing.assert_array_equal(np.asarray(mapped.X), plain.X)


@pytest.mark.parametrize("n,rows", [(0, 5), (1, 5), (10, 5), (11, 5)])
def test_shard_ranges_cover_rows(n, rows):
    ranges = shard_ranges(n, rows)
    assert [i for a, b in ranges for i in range(a, b)] == list(range(n))


def test_temporary_files_of_a_killed_run_are_removed_when_old(tmp_path):
    import os
    import time

    entry = ShardedEntry(tmp_path, "ab" + "0" * 62, n_rows=4, shard_rows=2,
                         text_fingerprint="f", tensors=["embeddings"])
    entry.write_shard(0, {"embeddings": np.ones((2, 3), np.float32)}, info={})
    old = entry.dir / ".tmp-killed.safetensors"
    young = entry.dir / ".tmp-running.safetensors"
    old.write_bytes(b"half a shard")
    young.write_bytes(b"being written")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    again = ShardedEntry(tmp_path, "ab" + "0" * 62, n_rows=4, shard_rows=2,
                         text_fingerprint="f", tensors=["embeddings"])
    again.write_shard(1, {"embeddings": np.zeros((2, 3), np.float32)}, info={})
    assert not old.exists() and young.exists()
    assert again.completed() == {0, 1}
