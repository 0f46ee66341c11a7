"""Image-text models: open_clip and transformers CLIP/SigLIP, image sources, errors, cache.

The reference for every embedding is the library itself called the way its own docs show
(open_clip: create_model_and_transforms + preprocess + encode_image / tokenizer +
encode_text; transformers: AutoModel + the image processor / tokenizer +
get_image_features / get_text_features), then L2-normalised.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("open_clip")
pytest.importorskip("skimage")

from embedforensics.errors import UserError  # noqa: E402
from tests.clip_models import (  # noqa: E402
    build_tiny_hf_clip,
    build_tiny_open_clip,
    skimage_photos,
)

TEXTS = ["a photo of a cat", "the red house by the river", "a dog", "stock market"]


@pytest.fixture(scope="module")
def oc_dir(tmp_path_factory) -> Path:
    return build_tiny_open_clip(tmp_path_factory.mktemp("oc") / "tiny-open-clip")


@pytest.fixture(scope="module")
def hf_clip_dir(tmp_path_factory) -> Path:
    return build_tiny_hf_clip(tmp_path_factory.mktemp("hf") / "tiny-clip", kind="clip")


@pytest.fixture(scope="module")
def siglip_dir(tmp_path_factory) -> Path:
    return build_tiny_hf_clip(tmp_path_factory.mktemp("hf") / "tiny-siglip", kind="siglip")


def _normalize(x):
    import torch

    return torch.nn.functional.normalize(x.float(), dim=-1).numpy()


def _records(tmp_path: Path, model_id: str, sources: list[dict], **model) -> tuple:
    """Run the embedding stage of a recipe; returns (EmbeddingSet, Records)."""
    from embedforensics.recipe.loader import load_recipe
    from embedforensics.runner import embed
    from embedforensics.sources import load_sources

    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({
        "version": 1, "name": "img", "model": {"id": model_id, "batch_size": 3, **model},
        "sources": sources, "probes": []}), encoding="utf-8")
    loaded = load_recipe(path)
    return embed(loaded, progress=False), load_sources(loaded)


def _image_sources(paths: list[Path]) -> list[dict]:
    return [{"label": "photos", "images": [str(p) for p in paths]},
            {"label": "texts", "texts": TEXTS}]


# ------------------------------------------------------------ equality with the libraries
def test_open_clip_local_dir_matches_open_clip(oc_dir, tmp_path):
    import open_clip
    import torch
    from PIL import Image

    photos = skimage_photos()
    emb, _ = _records(tmp_path, f"local-dir:{oc_dir}", _image_sources(photos))
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{oc_dir}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{oc_dir}")
    model.eval()
    with torch.no_grad():
        pixels = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in photos])
        ref_img = _normalize(model.encode_image(pixels))
        ref_txt = _normalize(model.encode_text(tokenizer(TEXTS)))
    assert emb.X.shape == (len(photos) + len(TEXTS), 16)
    np.testing.assert_allclose(emb.X[:len(photos)], ref_img, atol=1e-6)
    np.testing.assert_allclose(emb.X[len(photos):], ref_txt, atol=1e-6)
    model_prov = emb.provenance["embedding"]["per_source"]
    assert model_prov["photos"]["modality"] == "image"
    assert model_prov["texts"]["modality"] == "text"
    info = emb.provenance["model"]
    assert info["family"] == "open_clip" and "Normalize" in info["image_preprocess"]
    assert len(info["config_sha256"]) == 64 and len(info["fingerprint"]) == 64


@pytest.fixture(scope="module")
def siglip2_dir(tmp_path_factory) -> Path:
    return build_tiny_hf_clip(tmp_path_factory.mktemp("hf") / "tiny-siglip2", kind="siglip2")


@pytest.mark.parametrize("kind", ["clip", "siglip", "siglip2"])
def test_transformers_models_match_transformers(kind, request, tmp_path):
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    folder = request.getfixturevalue({"clip": "hf_clip_dir", "siglip": "siglip_dir",
                                      "siglip2": "siglip2_dir"}[kind])
    photos = skimage_photos()
    emb, _ = _records(tmp_path, str(folder), _image_sources(photos))
    model = AutoModel.from_pretrained(folder).eval()
    processor = AutoImageProcessor.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    padding = "max_length" if kind.startswith("siglip") else True
    with torch.no_grad():
        inputs = processor(images=[Image.open(p).convert("RGB") for p in photos],
                           return_tensors="pt")
        ref_img = model.get_image_features(**inputs)
        enc = tokenizer(TEXTS, padding=padding, truncation=True, max_length=16,
                        return_tensors="pt", return_token_type_ids=False)
        ref_txt = model.get_text_features(**enc)
    ref_img = getattr(ref_img, "pooler_output", ref_img)
    ref_txt = getattr(ref_txt, "pooler_output", ref_txt)
    np.testing.assert_allclose(emb.X[:len(photos)], _normalize(ref_img), atol=1e-6)
    np.testing.assert_allclose(emb.X[len(photos):], _normalize(ref_txt), atol=1e-6)
    assert emb.provenance["model"]["model_type"] == kind
    assert np.allclose(np.linalg.norm(emb.X, axis=1), 1.0, atol=1e-5)


def test_batching_and_order_do_not_change_image_embeddings(oc_dir, tmp_path):
    photos = skimage_photos()
    one, _ = _records(tmp_path / "a", f"local-dir:{oc_dir}",
                      [{"label": "p", "images": [str(p) for p in photos]}], batch_size=1)
    rev, _ = _records(tmp_path / "b", f"local-dir:{oc_dir}",
                      [{"label": "p", "images": [str(p) for p in reversed(photos)]}],
                      batch_size=4)
    np.testing.assert_allclose(one.X, rev.X[::-1], atol=1e-6)


def test_normalize_false_keeps_raw_projection(oc_dir, tmp_path):
    raw, _ = _records(tmp_path, f"local-dir:{oc_dir}", [{"label": "t", "texts": TEXTS}],
                      normalize=False)
    assert not np.allclose(np.linalg.norm(raw.X, axis=1), 1.0, atol=1e-3)


# ------------------------------------------------------------ image sources
def test_image_folder_and_hf_dataset_sources(oc_dir, tmp_path):
    """An image folder (imagefolder builder), image files by glob, and a parquet data set
    with an Image column all give the same rows and embeddings for the same pictures."""
    import datasets

    photos = skimage_photos()[:4]
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in photos:
        (folder / p.name).write_bytes(p.read_bytes())
    ds = datasets.Dataset.from_dict({"image": [str(folder / p.name) for p in photos],
                                     "name": [p.name for p in photos]})
    ds = ds.cast_column("image", datasets.Image())
    ds.to_parquet(str(tmp_path / "imgs.parquet"))
    emb, records = _records(tmp_path, f"local-dir:{oc_dir}", [
        {"id": "folder", "label": "a", "path": str(folder)},
        {"id": "glob", "label": "b", "path": str(folder / "*.*")},
        {"id": "parquet", "label": "c", "path": str(tmp_path / "imgs.parquet")},
    ])
    by_source = {s.source_id: s for s in records.sources}
    assert all(s.modality == "image" for s in records.sources)
    names = sorted(p.name for p in photos)
    assert sorted(by_source["folder"].texts) == names
    assert sorted(by_source["glob"].texts) == names
    assert by_source["parquet"].meta["name"] == [p.name for p in photos]
    # same images -> same vectors whatever the source type (match rows by file content)
    vec = {}
    starts = np.cumsum([0] + [len(s) for s in records.sources])[:-1]
    for s, lo in zip(records.sources, starts, strict=True):
        for j, ref in enumerate(s.images):
            vec.setdefault(ref.sha256, []).append(emb.X[lo + j])
    assert len(vec) == 4
    for vs in vec.values():
        assert len(vs) == 3
        np.testing.assert_allclose(vs[0], vs[1], atol=1e-6)
        np.testing.assert_allclose(vs[0], vs[2], atol=1e-6)


def test_image_fingerprint_follows_pixels_and_cache_is_reused(oc_dir, tmp_path):
    photos = skimage_photos()[:3]
    sources = [{"label": "p", "images": [str(p) for p in photos]}]
    first, rec1 = _records(tmp_path, f"local-dir:{oc_dir}", sources)
    again, _ = _records(tmp_path, f"local-dir:{oc_dir}", sources)
    assert again.provenance["embedding"]["per_source"]["p"]["cache"] == "cache hit"
    np.testing.assert_array_equal(first.X, again.X)
    # a copy under another name: same fingerprint (content, not names)
    copy = tmp_path / "renamed.png"
    copy.write_bytes(photos[0].read_bytes())
    _, rec2 = _records(tmp_path, f"local-dir:{oc_dir}",
                       [{"label": "p", "images": [str(copy), *map(str, photos[1:])]}])
    assert rec2.sources[0].fingerprint == rec1.sources[0].fingerprint
    # the same strings as texts: a different cache entry (modality is in the key)
    as_text, _ = _records(tmp_path, f"local-dir:{oc_dir}",
                          [{"label": "p", "texts": [p.name for p in photos]}])
    assert as_text.provenance["embedding"]["per_source"]["p"]["cache"] == "computed"


def test_text_model_fingerprint_unchanged_and_preprocessing_in_key(hf_clip_dir, tmp_path):
    from embedforensics.models.resolve import directory_fingerprint

    before, _ = directory_fingerprint(hf_clip_dir)
    copy = tmp_path / "clip-copy"
    import shutil

    shutil.copytree(hf_clip_dir, copy)
    cfg = json.loads((copy / "preprocessor_config.json").read_text())
    cfg["image_mean"] = [0.5, 0.5, 0.5]
    (copy / "preprocessor_config.json").write_text(json.dumps(cfg))
    after, _ = directory_fingerprint(copy)
    assert before != after  # a preprocessing change is a different model fingerprint


# ------------------------------------------------------------ errors
def test_unreadable_image_names_file_and_key(oc_dir, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_text("not an image")
    with pytest.raises(UserError) as err:
        _records(tmp_path, f"local-dir:{oc_dir}",
                 [{"label": "p", "images": [str(skimage_photos()[0]), str(bad)]}])
    assert "broken.png" in str(err.value) and err.value.key == "sources[0].images"
    with pytest.raises(UserError) as err:
        _records(tmp_path, f"local-dir:{oc_dir}",
                 [{"label": "p", "images": [str(tmp_path / "missing.png")]}])
    assert "missing.png" in str(err.value)


def test_missing_image_column(oc_dir, tmp_path):
    (tmp_path / "d.jsonl").write_text('{"text": "a", "picture": "x.png"}\n')
    with pytest.raises(UserError) as err:
        _records(tmp_path, f"local-dir:{oc_dir}",
                 [{"label": "p", "path": str(tmp_path / "d.jsonl"), "modality": "image"}])
    assert err.value.key == "sources[0].image_column"
    assert "did you mean" in str(err.value).lower() or "picture" in str(err.value)


def test_one_data_set_two_towers(oc_dir, tmp_path):
    """An image-caption data set: one source embeds its images, another its captions, in
    the same space; each equals embedding the same content directly."""
    import datasets

    photos = skimage_photos()[:3]
    captions = ["a photo of an astronaut", "a cup of coffee", "a cat"]
    ds = datasets.Dataset.from_dict({"image": [str(p) for p in photos], "caption": captions})
    ds.cast_column("image", datasets.Image()).to_parquet(str(tmp_path / "pairs.parquet"))
    data = str(tmp_path / "pairs.parquet")
    both, rec = _records(tmp_path / "a", f"local-dir:{oc_dir}", [
        {"id": "pictures", "label": "image", "path": data},  # no 'text' column: images
        {"id": "captions", "label": "caption", "path": data, "text_column": "caption"}])
    assert [s.modality for s in rec.sources] == ["image", "text"]
    direct, _ = _records(tmp_path / "b", f"local-dir:{oc_dir}", [
        {"label": "image", "images": [str(p) for p in photos]},
        {"label": "caption", "texts": captions}])
    np.testing.assert_allclose(both.X, direct.X, atol=1e-6)


def test_rows_without_an_image_are_dropped_and_counted(oc_dir, tmp_path):
    import datasets

    photos = skimage_photos()[:3]
    ds = datasets.Dataset.from_dict({"image": [str(photos[0]), None, str(photos[2])],
                                     "n": [0, 1, 2]}).cast_column("image", datasets.Image())
    ds.to_parquet(str(tmp_path / "imgs.parquet"))
    source = {"label": "p", "path": str(tmp_path / "imgs.parquet")}
    _, rec = _records(tmp_path, f"local-dir:{oc_dir}", [source])
    s = rec.sources[0]
    assert s.meta["n"] == [0, 2] and s.stats["removed_empty"] == 1
    assert [r.sha256 for r in s.images] == [
        __import__("hashlib").sha256(p.read_bytes()).hexdigest() for p in (photos[0], photos[2])]
    with pytest.raises(UserError) as err:
        _records(tmp_path, f"local-dir:{oc_dir}", [{**source, "drop_empty": False}])
    assert "row 1 has no image" in str(err.value)


def test_column_of_image_paths_relative_to_the_data_file(oc_dir, tmp_path):
    photos = skimage_photos()[:2]
    for p in photos:
        (tmp_path / p.name).write_bytes(p.read_bytes())
    (tmp_path / "list.csv").write_text("file,kind\n" + "".join(f"{p.name},x\n" for p in photos))
    emb, rec = _records(tmp_path, f"local-dir:{oc_dir}", [
        {"label": "p", "path": str(tmp_path / "list.csv"), "modality": "image",
         "image_column": "file"}])
    assert rec.sources[0].texts == [p.name for p in photos]
    assert rec.sources[0].meta == {"kind": ["x", "x"]}


def test_text_only_model_asked_for_images_fails_at_validation(tiny_bert, tmp_path):
    from embedforensics.recipe.loader import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({
        "version": 1, "name": "img", "model": {"id": str(tiny_bert)},
        "sources": [{"label": "p", "images": [str(skimage_photos()[0])]},
                    {"label": "t", "texts": TEXTS}]}), encoding="utf-8")
    with pytest.raises(UserError) as err:
        load_recipe(path)
    assert "text-only model" in str(err.value) and err.value.key == "sources[0]"
    assert err.value.file == str(path) or str(path) in str(err.value)


def test_image_column_data_set_with_text_model_fails_at_validation(tiny_bert, tmp_path):
    import datasets

    from embedforensics.recipe.loader import load_recipe

    photo = skimage_photos()[0]
    ds = datasets.Dataset.from_dict({"image": [str(photo)]}).cast_column("image",
                                                                          datasets.Image())
    ds.to_parquet(str(tmp_path / "imgs.parquet"))
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({
        "version": 1, "name": "img", "model": {"id": str(tiny_bert)},
        "sources": [{"label": "t", "texts": TEXTS},
                    {"label": "p", "path": str(tmp_path / "imgs.parquet")}]}),
        encoding="utf-8")
    with pytest.raises(UserError) as err:
        load_recipe(path)
    assert "text-only model" in str(err.value) and err.value.key == "sources[1]"


def test_pretrained_only_for_open_clip_arch_ids(tiny_bert, tmp_path):
    from embedforensics.recipe.loader import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({
        "version": 1, "name": "img", "model": {"id": str(tiny_bert), "pretrained": "openai"},
        "sources": [{"label": "t", "texts": TEXTS}]}), encoding="utf-8")
    with pytest.raises(UserError) as err:
        load_recipe(path)
    assert err.value.key == "model.pretrained"


def test_texts_cannot_be_images():
    from pydantic import ValidationError

    from embedforensics.recipe.schema import SourceSpec

    with pytest.raises(ValidationError, match="images:"):
        SourceSpec(label="x", texts=["a"], modality="image")


def test_bfloat16_close_to_float32(oc_dir, tmp_path):
    photos = skimage_photos()[:3]
    sources = [{"label": "p", "images": [str(p) for p in photos]},
               {"label": "t", "texts": TEXTS}]
    full, _ = _records(tmp_path / "a", f"local-dir:{oc_dir}", sources)
    half, _ = _records(tmp_path / "b", f"local-dir:{oc_dir}", sources, dtype="bfloat16")
    cos = np.sum(full.X * half.X, axis=1)
    assert cos.min() > 0.98 and not np.array_equal(full.X, half.X)


def test_open_clip_id_errors(tmp_path):
    from embedforensics.models.resolve import resolve_model
    from embedforensics.recipe.schema import ModelSpec

    def resolve(**kw):
        return resolve_model(ModelSpec(**kw), base_dir=tmp_path, file="r.yaml")

    with pytest.raises(UserError) as err:
        resolve(id="open_clip:ViT-B-23", pretrained="openai")
    assert "ViT-B-32" in str(err.value)  # did-you-mean
    with pytest.raises(UserError) as err:
        resolve(id="open_clip:ViT-B-32")
    assert err.value.key == "model.pretrained"
    with pytest.raises(UserError) as err:
        resolve(id="local-dir:nowhere")
    assert "does not exist" in str(err.value)
    with pytest.raises(UserError) as err:
        resolve(id="hf-hub:apple/DFN5B-CLIP-ViT-H-14", pretrained="x")
    assert err.value.key == "model.pretrained"
    with pytest.raises(UserError) as err:  # HF_HUB_OFFLINE=1 in tests
        resolve(id="hf-hub:apple/DFN5B-CLIP-ViT-H-14")
    assert "not available offline" in str(err.value)
    tag = resolve(id="open_clip:ViT-B-32", pretrained="laion2b_s34b_b79k")
    other = resolve(id="open_clip:ViT-B-32", pretrained="openai")
    assert tag.location == "ViT-B-32" and tag.fingerprint != other.fingerprint


def test_open_clip_arch_with_checkpoint_file(oc_dir, tmp_path, monkeypatch):
    """'open_clip:ARCH' + pretrained file, with a tiny architecture registered the way
    open_clip users add one (open_clip.add_model_config)."""
    import open_clip

    from embedforensics.models.families import open_clip as clip_mod

    cfg_dir = tmp_path / "configs"
    cfg_dir.mkdir()
    cfg = json.loads((oc_dir / "open_clip_config.json").read_text())["model_cfg"]
    (cfg_dir / "tiny-test-clip.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(cfg_dir / "tiny-test-clip.json")
    real_dir = clip_mod._open_clip_dir

    def fake_dir(*, file, key):  # let resolution see the registered config
        d = tmp_path / "oc_pkg"
        (d / "model_configs").mkdir(parents=True, exist_ok=True)
        for f in (real_dir(file=file, key=key) / "model_configs").glob("ViT-B-32.json"):
            (d / "model_configs" / f.name).write_bytes(f.read_bytes())
        (d / "model_configs" / "tiny-test-clip.json").write_text(json.dumps(cfg))
        return d

    monkeypatch.setattr(clip_mod, "_open_clip_dir", fake_dir)
    emb, _ = _records(tmp_path, "open_clip:tiny-test-clip", [{"label": "t", "texts": TEXTS}],
                      pretrained=str(oc_dir / "open_clip_model.safetensors"))
    ref, _ = _records(tmp_path / "ref", f"local-dir:{oc_dir}", [{"label": "t", "texts": TEXTS}])
    np.testing.assert_allclose(emb.X, ref.X, atol=1e-6)
    assert emb.provenance["model"]["pretrained"].endswith("open_clip_model.safetensors")


def _fake_hub_cache(root: Path, repo: str, folder: Path, commit: str = "0" * 40) -> Path:
    """Lay out ``folder`` as a Hugging Face hub cache entry for ``repo`` (what
    ``huggingface-cli download`` leaves behind), so offline hub loading can be tested."""
    import shutil

    entry = root / f"models--{repo.replace('/', '--')}"
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text(commit)
    shutil.copytree(folder, entry / "snapshots" / commit)
    return root


def test_open_clip_hf_hub_id_from_the_hub_cache(oc_dir, tmp_path, monkeypatch):
    """'hf-hub:ORG/REPO' (the DFN path) loads through open_clip's own hub code, offline."""
    import huggingface_hub.constants

    cache = _fake_hub_cache(tmp_path / "hub", "tiny/open-clip", oc_dir)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    emb, _ = _records(tmp_path / "a", "hf-hub:tiny/open-clip", _image_sources(skimage_photos()))
    ref, _ = _records(tmp_path / "b", f"local-dir:{oc_dir}", _image_sources(skimage_photos()))
    np.testing.assert_allclose(emb.X, ref.X, atol=1e-6)
    prov = emb.provenance["model"]
    assert prov["source"] == "open_clip-hub" and prov["revision"] == "0" * 40


def test_transformers_hub_id_from_the_hub_cache(hf_clip_dir, tmp_path, monkeypatch):
    """A hub id such as 'openai/clip-vit-base-patch32' is recognised as CLIP from its cached
    config.json and loaded with AutoModel, offline."""
    import huggingface_hub.constants

    cache = _fake_hub_cache(tmp_path / "hub", "tiny/clip", hf_clip_dir)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    emb, _ = _records(tmp_path / "a", "tiny/clip", _image_sources(skimage_photos()[:3]))
    ref, _ = _records(tmp_path / "b", str(hf_clip_dir), _image_sources(skimage_photos()[:3]))
    np.testing.assert_allclose(emb.X, ref.X, atol=1e-6)
    assert emb.provenance["model"]["source"] == "hub"
    assert emb.provenance["model"]["model_class"] == "CLIPModel"


def test_truncation_at_the_context_length_is_counted(oc_dir, hf_clip_dir, tmp_path):
    long = " ".join(["the cat sat on the mat"] * 6)  # far over the tiny models' 16 tokens
    for model_id in (f"local-dir:{oc_dir}", str(hf_clip_dir)):
        emb, _ = _records(tmp_path / model_id[-8:], model_id,
                          [{"label": "t", "texts": [long, "a cat"]}])
        info = emb.provenance["embedding"]["per_source"]["t"]
        assert info["n_truncated"] == 1 and info["max_length"] == 16, model_id


def test_truncated_image_fails_at_decoding_with_its_name(oc_dir, tmp_path):
    """A file whose header is fine but whose pixels are cut off passes the load-time check
    and fails when its batch is decoded, still as one sentence naming the file."""
    data = skimage_photos()[1].read_bytes()  # coffee.png
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(UserError) as err:
        _records(tmp_path, f"local-dir:{oc_dir}", [{"label": "p", "images": [str(cut)]}])
    assert "cut.png" in str(err.value)
