"""Tiny random image-text models saved the way their libraries save real ones (no download).

* open_clip: a ``local-dir`` folder with ``open_clip_config.json`` (model + preprocess
  config, as open_clip's hub repos ship it) and ``open_clip_model.safetensors``.
* transformers: CLIPModel / SiglipModel via ``save_pretrained``, with the model's image
  processor and a small WordPiece tokenizer saved beside it (CLIP's BPE vocabulary cannot be
  downloaded here; the text tower does not care which tokenizer produced the ids).
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import WORDS

OPEN_CLIP_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 16, "layers": 1, "width": 32, "patch_size": 8,
                   "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2,
                 "layers": 1},
}


def build_tiny_open_clip(path: Path, *, seed: int = 0) -> Path:
    import open_clip
    import torch
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = open_clip.CLIP(**OPEN_CLIP_CFG)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(path / "open_clip_model.safetensors"))
    (path / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": OPEN_CLIP_CFG,
        "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073],
                           "std": [0.26862954, 0.26130258, 0.27577711]}}), encoding="utf-8")
    return path


def _save_wordpiece(path: Path, max_length: int) -> int:
    from transformers import BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS,
             *list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'"),
             *[f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz0123456789"]]
    vocab = list(dict.fromkeys(vocab))
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)},
                                  model_max_length=max_length)
    if len(tokenizer) != len(vocab):
        tokenizer = BertTokenizerFast(vocab_file=str(path / "vocab.txt"),
                                      model_max_length=max_length)
    tokenizer.save_pretrained(path)
    return len(vocab)


def build_tiny_hf_clip(path: Path, *, kind: str = "clip", seed: int = 0) -> Path:
    import torch

    path.mkdir(parents=True, exist_ok=True)
    n_vocab = _save_wordpiece(path, 16)
    text = dict(vocab_size=n_vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=16, pad_token_id=0)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                  num_attention_heads=2, image_size=16, patch_size=8)
    torch.manual_seed(seed)
    if kind == "clip":
        from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

        text.update(bos_token_id=2, eos_token_id=3)  # [CLS] / [SEP]
        config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
        CLIPModel(config).eval().save_pretrained(path)
        CLIPImageProcessor(size={"shortest_edge": 16},
                           crop_size={"height": 16, "width": 16}).save_pretrained(path)
    elif kind == "siglip2":
        from transformers import Siglip2Config, Siglip2ImageProcessor, Siglip2Model

        vision.pop("image_size")
        vision["num_patches"] = 4
        config = Siglip2Config(text_config=text, vision_config=vision)
        Siglip2Model(config).eval().save_pretrained(path)
        Siglip2ImageProcessor(patch_size=8, max_num_patches=4).save_pretrained(path)
    else:
        from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

        config = SiglipConfig(text_config=text, vision_config=vision)
        SiglipModel(config).eval().save_pretrained(path)
        SiglipImageProcessor(size={"height": 16, "width": 16}).save_pretrained(path)
    return path


def skimage_photos() -> list[Path]:
    """A few of scikit-image's bundled photos (colour, grey and RGBA)."""
    import skimage

    data = Path(skimage.__file__).parent / "data"
    return [data / n for n in ("astronaut.png", "coffee.png", "chelsea.png", "camera.png",
                               "rocket.jpg", "logo.png", "horse.png")]
