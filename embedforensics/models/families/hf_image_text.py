"""The transformers image-text family: CLIP, SigLIP and SigLIP2 through ``AutoModel``.

Any ``from_pretrained`` id or folder whose ``config.json`` says ``model_type`` ``clip``,
``siglip`` or ``siglip2`` (read from the folder, the Hugging Face cache, or, online, the
hub). Embeddings are ``get_image_features`` / ``get_text_features`` with the model's own
image processor and tokenizer (the two halves of its ``AutoProcessor``). SigLIP texts are
padded to ``max_length`` as the model was trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embedforensics.errors import UserError
from embedforensics.models.family import ResolvedModel
from embedforensics.models.hub import (
    library_version,
    locate_pretrained,
    model_reader,
    read_json,
)
from embedforensics.models.image_text import (
    IMAGE_TEXT_DEFAULTS,
    ImageTextEmbedder,
    ImageTextFamily,
)

if TYPE_CHECKING:
    from embedforensics.recipe.schema import ModelSpec

MODEL_TYPES = frozenset({"clip", "siglip", "siglip2"})


def model_type(model_id: str, base_dir: Path, revision: str | None) -> str | None:
    """``model_type`` from the model's config.json (folder, hub cache, or online the hub)."""
    read = model_reader(model_id, base_dir, revision)
    config = read_json(read, "config.json") if read is not None else None
    return config.get("model_type") if isinstance(config, dict) else None


class HFImageTextFamily(ImageTextFamily):
    """transformers CLIP / SigLIP / SigLIP2 models (a folder or hub id whose config.json
    says so): AutoModel's get_image_features / get_text_features."""

    name = "hf_image_text"
    priority = 50
    library = "transformers"
    key_family = "hf"

    def claims(self, spec: ModelSpec, *, base_dir: Path) -> bool:
        return model_type(spec.id, base_dir, spec.revision) in MODEL_TYPES

    def owns(self, resolved: ResolvedModel) -> bool:
        if resolved.kind is not None:
            return resolved.kind == self.name
        return resolved.source in ("local", "hub") and model_type(
            resolved.location, Path(), resolved.revision) in MODEL_TYPES

    def resolve(self, spec: ModelSpec, *, base_dir: Path, file: str | None, key: str,
                fingerprint: bool) -> ResolvedModel:
        found = locate_pretrained(spec.id, base_dir=base_dir, revision=spec.revision,
                                  file=file, key=key, fingerprint=fingerprint)
        return ResolvedModel(spec.id, found.location, found.revision, found.fingerprint,
                             found.source, found.config_hash, found.commit,
                             family="image-text", defaults=dict(IMAGE_TEXT_DEFAULTS))

    def make_embedder(self, spec: ModelSpec, resolved: ResolvedModel) -> HFImageTextEmbedder:
        return HFImageTextEmbedder(resolved.location, revision=resolved.revision,
                                   trust_remote_code=spec.trust_remote_code,
                                   **self.common_settings(spec))


class HFImageTextEmbedder(ImageTextEmbedder):
    """A transformers CLIPModel / SiglipModel / Siglip2Model loaded with AutoModel."""

    family = "hf"

    def __init__(self, location: str, *, revision: str | None = None,
                 trust_remote_code: bool = False, **kwargs: Any):
        super().__init__(location, **kwargs)
        self.revision = revision
        self.trust_remote_code = trust_remote_code
        self._tokenizer: Any = None
        self._image_processor: Any = None

    def load(self) -> HFImageTextEmbedder:
        if self._model is not None:
            return self
        import torch
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        from embedforensics.models.hf_encoder import load_error, pick_device

        kwargs: dict[str, Any] = {"revision": self.revision,
                                  "trust_remote_code": self.trust_remote_code}
        try:
            model = AutoModel.from_pretrained(self.location, dtype=getattr(torch, self.dtype),
                                              **kwargs)
            self._tokenizer = AutoTokenizer.from_pretrained(self.location, **kwargs)
            self._image_processor = AutoImageProcessor.from_pretrained(self.location, **kwargs)
        except (OSError, ValueError) as exc:
            raise load_error(f"could not load image-text model '{self.location}'",
                             exc) from None
        if not hasattr(model, "get_image_features"):
            raise UserError(f"'{self.location}' is a {type(model).__name__}, which has no "
                            "image tower (get_image_features).", key="model.id")
        self.device = pick_device(self.device)
        self._model = model.to(self.device).eval()
        return self

    @property
    def model_type(self) -> str:
        return str(self._model.config.model_type)

    @property
    def effective_max_length(self) -> int:
        self.load()
        if self.max_length is not None:
            return self.max_length
        text_config = getattr(self._model.config, "text_config", None)
        positions = getattr(text_config, "max_position_embeddings", None)
        limit = getattr(self._tokenizer, "model_max_length", None)
        candidates = [v for v in (limit, positions) if v and v < 1_000_000]
        return int(min(candidates)) if candidates else 77

    @property
    def embed_dim(self) -> int:
        self.load()
        config = self._model.config
        return int(getattr(config, "projection_dim", None)
                   or config.text_config.hidden_size)

    def info(self) -> dict[str, Any]:
        self.load()
        config = self._model.config
        return {
            "model_class": type(self._model).__name__, "family": "transformers",
            "model_type": config.model_type,
            "n_parameters": int(sum(p.numel() for p in self._model.parameters())),
            "dtype": self.dtype, "device": str(self.device),
            "embedding": "projected (get_image_features / get_text_features)",
            "pooling": "model projection", "normalize": self.normalize, "prefix": self.prefix,
            "max_length": self.effective_max_length,
            "text_padding": self._padding,
            "image_processor": type(self._image_processor).__name__,
            "image_preprocess": self._image_processor.to_json_string().replace("\n", " "),
            "tokenizer": type(self._tokenizer).__name__,
            "transformers_version": library_version("transformers"),
            "commit": getattr(config, "_commit_hash", None),
        }

    @property
    def _padding(self) -> str | bool:
        # SigLIP was trained on texts padded to max_length; its text pooling depends on it
        return "max_length" if self.model_type.startswith("siglip") else True

    @staticmethod
    def _features(output: Any) -> Any:
        """transformers 5 returns a ModelOutput whose pooler_output is the projection;
        4.x returns the tensor itself."""
        import torch

        return output if torch.is_tensor(output) else output.pooler_output

    def _pixels(self, images: list[Any]) -> Any:
        # everything the processor returns: pixel_values, and for SigLIP2 also
        # pixel_attention_mask and spatial_shapes
        return dict(self._image_processor(images=images, return_tensors="pt"))

    def _image_features(self, pixels: Any) -> Any:
        import torch

        dtype = getattr(torch, self.dtype)
        inputs = {k: v.to(self.device, dtype=dtype) if v.is_floating_point()
                  else v.to(self.device) for k, v in pixels.items()}
        return self._features(self._model.get_image_features(**inputs))

    def token_lengths(self, texts: list[str]) -> list[int]:
        """Untruncated token counts, special tokens included."""
        import warnings

        if not texts:
            return []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [len(ids) for ids in self._tokenizer(
                texts, truncation=False, verbose=False)["input_ids"]]

    def _text_batches(self, lengths: list[int] | None, n: int) -> list[Any]:
        """Longest first, so a batch pads to similar lengths (order is restored)."""
        order = np.argsort(-np.asarray(lengths or [], dtype=np.int64), kind="stable")
        return [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def _text_features(self, texts: list[str], limit: int) -> Any:
        enc = self._tokenizer(texts, padding=self._padding, truncation=True,
                              max_length=limit, return_tensors="pt")
        enc = {k: v.to(self.device) for k, v in enc.items()
               if k in ("input_ids", "attention_mask")}
        return self._features(self._model.get_text_features(**enc))
