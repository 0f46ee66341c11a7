"""The Embedder protocol and the family registry: what the engine relies on, checked over
every registered family and both ways the engine splits a shard across processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embedforensics.errors import UserError
from embedforensics.models.family import ModelFamily, ResolvedModel
from embedforensics.models.protocol import Embedder, LengthPlanned
from embedforensics.models.resolve import (
    families,
    family_of,
    make_embedder,
    resolve_model,
    settings_key,
)
from embedforensics.recipe.schema import ModelSpec
from tests.conftest import TEXTS_A, TEXTS_B

TEXTS = TEXTS_A + TEXTS_B


def test_registered_families_are_asked_most_specific_first():
    names = [f.name for f in families()]
    assert names == ["bundled", "open_clip", "hf_image_text", "hf_text"]
    assert all(isinstance(f, ModelFamily) for f in families())


def test_the_text_embedder_satisfies_the_protocol(tiny_bert, tmp_path):
    spec = ModelSpec(id=str(tiny_bert))
    resolved = resolve_model(spec, base_dir=tmp_path)
    assert resolved.kind == "hf_text" and resolved.family == "encoder"
    embedder = make_embedder(spec.model_copy(update={"pooling": "mean", "normalize": True,
                                                     "prefix": ""}), resolved).load()
    assert isinstance(embedder, Embedder) and isinstance(embedder, LengthPlanned)
    assert embedder.plans_batches and embedder.modalities == frozenset({"text"})
    X, _ = embedder.encode(TEXTS[:3], progress=False)
    assert X.shape == (3, embedder.embed_dim) == (3, 32)
    with pytest.raises(UserError, match="text-only"):
        embedder.encode_images([], progress=False)


def test_hand_made_resolved_models_find_their_family(tiny_bert, tmp_path):
    """ResolvedModels built without ``kind`` (older code) map to the family by source."""
    resolved = resolve_model(ModelSpec(id=str(tiny_bert)), base_dir=tmp_path)
    legacy = ResolvedModel(resolved.spec_id, resolved.location, None, resolved.fingerprint,
                           "local", resolved.config_hash, family=resolved.family,
                           defaults=resolved.defaults)
    assert family_of(legacy).name == "hf_text"
    assert settings_key(ModelSpec(id=str(tiny_bert)), legacy) == \
        settings_key(ModelSpec(id=str(tiny_bert)), resolved)
    bundled = ResolvedModel("bundled:x", "", None, "", "bundled")
    assert family_of(bundled).name == "bundled"
    assert family_of(ResolvedModel("local-dir:x", "x", None, "", "open_clip-local")).name \
        == "open_clip"


class _Rank:
    """One accelerate process, as the engine sees it: rank, world and a gather that hands
    back this rank's part (the test joins the parts as accelerate's gather would)."""

    def __init__(self, rank: int, world: int):
        self.rank, self.world = rank, world
        self.parts: tuple[np.ndarray, dict[str, np.ndarray]] | None = None

    def gather_rows(self, index: np.ndarray, local: dict[str, np.ndarray], n: int
                    ) -> dict[str, np.ndarray]:
        self.parts = (np.asarray(index), local)
        return local


def _split_across(embedder: Any, texts: list[str], names: list[str], world: int
                  ) -> dict[str, np.ndarray]:
    from embedforensics.engine.embed import _encode_shard

    out: dict[str, np.ndarray] = {}
    for rank in range(world):
        workers = _Rank(rank, world)
        _encode_shard(embedder, texts, names, workers, False)
        assert workers.parts is not None
        index, local = workers.parts
        for name, values in local.items():
            out.setdefault(name, np.zeros((len(texts), embedder.embed_dim), np.float32))
            out[name][index] = values
    return out


@pytest.mark.parametrize("plans", [True, False])
def test_both_process_splits_give_the_single_process_rows(tiny_bert, tmp_path, plans):
    """Length-planned embedders share batches by tokens; others a strided share of rows.
    Either way every row comes back once, equal to one process's result."""
    from embedforensics.engine.embed import _encode_shard

    spec = ModelSpec(id=str(tiny_bert), pooling="mean", normalize=True, prefix="",
                     batch_size=3, layers=[-1, 1])
    resolved = resolve_model(spec, base_dir=tmp_path)
    embedder = make_embedder(spec, resolved).load()
    embedder.plans_batches = plans  # the capability the engine reads, nothing else
    names = ["layer.-1", "layer.1"]
    alone, _ = _encode_shard(embedder, TEXTS, names, _Rank(0, 1), False)
    split = _split_across(embedder, TEXTS, names, world=3)
    for name in names:
        np.testing.assert_allclose(split[name], alone[name], atol=1e-6)


def test_images_to_a_text_only_embedder_fail_with_one_sentence(tiny_bert, tmp_path):
    from embedforensics.engine.embed import _encode_shard

    spec = ModelSpec(id=str(tiny_bert), pooling="mean", normalize=True, prefix="")
    embedder = make_embedder(spec, resolve_model(spec, base_dir=tmp_path))
    with pytest.raises(UserError) as err:
        _encode_shard(embedder, [], ["embeddings"], _Rank(0, 1), False, modality="image",
                      source_id="photos")
    assert "source 'photos' holds images" in str(err.value)
    assert "text-only model" in str(err.value)


def test_offline_follows_huggingface_hub_and_both_variables(monkeypatch):
    from huggingface_hub import constants

    from embedforensics.models.hub import offline

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    assert not offline()
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")  # missed by the old check
    assert offline()
    monkeypatch.delenv("TRANSFORMERS_OFFLINE")
    monkeypatch.setenv("HF_HUB_OFFLINE", "yes")
    assert offline()
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read at import: still offline
    assert offline()


def test_one_file_hasher_samples_only_above_the_limit(tmp_path: Path):
    import hashlib

    from embedforensics.fileio import file_sha256

    f = tmp_path / "w.bin"
    data = np.random.default_rng(0).bytes(3 << 20)
    f.write_bytes(data)
    assert file_sha256(f) == hashlib.sha256(data).hexdigest()
    assert file_sha256(f, sample_above=4 << 20) == hashlib.sha256(data).hexdigest()
    sampled = file_sha256(f, sample_above=1 << 20)
    assert sampled != hashlib.sha256(data).hexdigest()
    f.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # the last window sees the change
    assert file_sha256(f, sample_above=1 << 20) != sampled
