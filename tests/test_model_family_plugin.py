"""A new model family is one module plus one registry line.

This file is that module: ``ToyFamily`` resolves ids ``toy:NAME`` and embeds texts with a
deterministic hashing embedder (no torch, no download). The ``toy_family`` fixture adds the
one registry line (and removes it afterwards); nothing else in the package knows about it,
yet a recipe naming ``toy:words`` validates, embeds through the engine and its cache, keys
the cache with the family's own settings, and has its sources checked by the family.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embedforensics.errors import UserError
from embedforensics.models.family import ModelFamily, ResolvedModel
from embedforensics.models.hf_encoder import EncodeStats
from embedforensics.recipe.schema import ModelSpec
from embedforensics.registry import FAMILIES

DIM = 8
TEXTS = ["the cat sat", "a dog ran", "stock prices fell", "the bank rate rose"]


def toy_vector(text: str, name: str, dim: int = DIM) -> np.ndarray:
    """Hash each word into one of ``dim`` buckets (sign from the hash), L2-normalised."""
    v = np.zeros(dim, dtype=np.float32)
    for word in text.split():
        digest = hashlib.sha256(f"{name}:{word}".encode()).digest()
        v[digest[0] % dim] += 1.0 if digest[1] % 2 else -1.0
    norm = float(np.linalg.norm(v))
    return v / norm if norm else v


class ToyEmbedder:
    """A deterministic hashing text embedder that satisfies the Embedder protocol."""

    modalities = frozenset({"text"})
    plans_batches = False

    def __init__(self, name: str, prefix: str):
        self.name = name
        self.prefix = prefix
        self.loads = 0

    def load(self) -> ToyEmbedder:
        self.loads += 1
        return self

    def info(self) -> dict[str, Any]:
        return {"model_class": "ToyEmbedder", "family": "toy", "max_length": 64,
                "prefix": self.prefix}

    @property
    def effective_max_length(self) -> int:
        return 64

    @property
    def embed_dim(self) -> int:
        return DIM

    def encode(self, texts: list[str], *, progress: bool = True
               ) -> tuple[np.ndarray, EncodeStats]:
        lengths = [len(t.split()) for t in texts]
        stats = EncodeStats(n_texts=len(texts), n_tokens=sum(lengths), n_batches=1,
                            token_lengths=lengths)
        out = np.stack([toy_vector(self.prefix + t, self.name) for t in texts]) if texts \
            else np.zeros((0, DIM), np.float32)
        return out, stats

    def encode_images(self, images: list[Any], *, progress: bool = True
                      ) -> tuple[np.ndarray, EncodeStats]:
        raise UserError("toy models read no images.", key="model.id")


class ToyFamily(ModelFamily):
    """Toy hashing embedders for tests ('toy:NAME')."""

    name = "toy"
    priority = 30  # before the catch-all hf_text, which would take 'toy:x' for a hub id

    def claims(self, spec: ModelSpec, *, base_dir: Path) -> bool:
        return spec.id.startswith("toy:")

    def resolve(self, spec: ModelSpec, *, base_dir: Path, file: str | None, key: str,
                fingerprint: bool) -> ResolvedModel:
        name = spec.id.removeprefix("toy:")
        if not name:
            raise UserError("a toy model needs a name ('toy:NAME').", file=file, key=key)
        fp = hashlib.sha256(f"toy:{name}:{DIM}".encode()).hexdigest() if fingerprint else ""
        return ResolvedModel(spec.id, name, None, fp, "toy", family="toy",
                             defaults={"pooling": "mean", "normalize": True, "prefix": "t: "})

    def settings(self, spec: ModelSpec, resolved: ResolvedModel) -> dict[str, Any]:
        return {"toy": {"dim": DIM}}

    def make_embedder(self, spec: ModelSpec, resolved: ResolvedModel) -> ToyEmbedder:
        return ToyEmbedder(resolved.location, spec.prefix or "")


@pytest.fixture
def toy_family():
    """The one registry line, for this test only."""
    FAMILIES.add("toy", f"{__name__}:ToyFamily")
    try:
        yield
    finally:
        FAMILIES.remove("toy")


def _recipe(tmp_path: Path, sources: list[dict] | None = None, **model: Any):
    from embedforensics.recipe.loader import load_recipe

    return load_recipe(data={
        "version": 1, "name": "toy", "model": {"id": "toy:words", **model},
        "sources": sources or [{"label": "a", "texts": TEXTS[:2]},
                               {"label": "b", "texts": TEXTS[2:]}],
        "probes": [], "output": {"dir": str(tmp_path / "out")}})


def test_a_family_registered_in_a_test_embeds_a_recipe(toy_family, tmp_path, monkeypatch):
    from embedforensics.engine import embed as embed_module
    from embedforensics.models.resolve import family_of, resolve_model, settings_key
    from embedforensics.runner import embed

    loaded = _recipe(tmp_path)
    first = embed(loaded, progress=False)
    expected = np.stack([toy_vector("t: " + t, "words") for t in TEXTS])
    np.testing.assert_array_equal(first.X, expected)
    assert list(first.labels) == ["a", "a", "b", "b"]
    model = first.provenance["model"]
    assert model["model_class"] == "ToyEmbedder" and model["source"] == "toy"
    assert model["auto_settings"] == {"pooling": "mean", "normalize": True, "prefix": "t: "}
    per_source = first.provenance["embedding"]["per_source"]
    assert {s["cache"] for s in per_source.values()} == {"computed"}

    # the family's part of the key is in the one settings key; the cache then serves it
    resolved = resolve_model(ModelSpec(id="toy:words"), base_dir=tmp_path)
    assert resolved.kind == "toy" and isinstance(family_of(resolved), ToyFamily)
    assert '"toy": {"dim": 8}' in settings_key(ModelSpec(id="toy:words"), resolved)

    def no_model(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a warm cache must not build the embedder")

    monkeypatch.setattr(embed_module, "make_embedder", no_model)
    second = embed(loaded, progress=False)
    np.testing.assert_array_equal(second.X, first.X)
    assert {s["cache"] for s in second.provenance["embedding"]["per_source"].values()} \
        == {"cache hit"}


def test_the_family_checks_its_spec_and_sources(toy_family, tmp_path):
    from PIL import Image

    with pytest.raises(UserError) as err:  # a family-only field it does not read
        _recipe(tmp_path, pretrained="openai")
    assert err.value.key == "model.pretrained"

    image = tmp_path / "pic.png"
    Image.new("RGB", (4, 4)).save(image)
    with pytest.raises(UserError) as err:  # text-only: images are refused at validation
        _recipe(tmp_path, [{"label": "a", "texts": TEXTS},
                           {"label": "p", "images": [str(image)]}])
    assert "text-only model" in str(err.value) and err.value.key == "sources[1]"


def test_without_its_registry_line_the_id_is_not_recognised(tmp_path):
    assert "toy" not in FAMILIES
    with pytest.raises(UserError) as err:  # hf_text takes it for a hub id (offline)
        _recipe(tmp_path)
    assert "not available offline" in str(err.value)
