"""What the two image-text families (open_clip, transformers CLIP/SigLIP) share.

Images go through the image tower, texts through the text tower, both into the shared
projected embedding space, L2-normalised by default. :class:`ImageTextFamily` holds the
family-side rules both follow (no hidden layers, no compile, the projection instead of a
pooling rule, the library version in the cache key); :class:`ImageTextEmbedder` the
embedder-side settings, batching and image loop. Which tower a source goes through is the
source's ``modality`` (see :mod:`embedforensics.sources.images`).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from embedforensics.errors import UserError
from embedforensics.models.family import ModelFamily, ResolvedModel
from embedforensics.models.hf_encoder import EmbedderSettings, EncodeStats
from embedforensics.models.hub import library_version
from embedforensics.models.protocol import IMAGE, TEXT

if TYPE_CHECKING:
    from embedforensics.recipe.schema import ModelSpec

log = logging.getLogger(__name__)

#: "auto" settings of image-text models: normalised, no prefix. pooling does not apply (the
#: embedding is the model's projection) but its filled value stays in the cache key, as it
#: always has, so existing caches remain valid.
IMAGE_TEXT_DEFAULTS: dict[str, Any] = {"pooling": "mean", "normalize": True, "prefix": ""}


class ImageTextFamily(ModelFamily):
    """Shared rules of image-text families; subclasses name their ``library`` and the
    ``key_family`` label that goes into the cache key."""

    modalities: ClassVar[frozenset[str]] = frozenset({TEXT, IMAGE})
    library: ClassVar[str] = ""  # the distribution whose preprocessing code runs
    key_family: ClassVar[str] = ""  # "open_clip" or "hf" in the cache key

    def check_spec(self, spec: ModelSpec, *, file: str | None = None) -> None:
        super().check_spec(spec, file=file)
        if spec.layers:
            raise UserError("model.layers selects hidden layers of text encoders and "
                            "decoders; image-text models give their projected embedding "
                            "only (remove 'layers').", file=file, key="model.layers")
        if spec.compile:
            raise UserError("model.compile applies to text encoders and decoders; remove it "
                            "for image-text models.", file=file, key="model.compile")

    def settings(self, spec: ModelSpec, resolved: ResolvedModel) -> dict[str, Any]:
        """Image preprocessing is code in the library, not only config, so the library
        version is part of the key; so are the family and the pretrained tag."""
        return {"image_text": {"family": self.key_family, "library": self.library,
                               "library_version": library_version(self.library),
                               "pretrained": spec.pretrained, "embedding": "projected"}}

    @staticmethod
    def common_settings(spec: ModelSpec) -> dict[str, Any]:
        """The embedder keyword arguments both image-text embedders take."""
        if "pooling" in spec.model_fields_set and spec.pooling != "mean":
            log.warning("model.pooling '%s' does not apply to image-text models; the "
                        "embedding is the model's own projection", spec.pooling)
        return {"normalize": spec.normalize, "prefix": spec.prefix,
                "max_length": spec.max_length, "batch_size": spec.batch_size,
                "dtype": spec.dtype, "device": spec.device}


class ImageTextEmbedder(EmbedderSettings, ABC):
    """Shared batching and output handling of the image-text embedders (an
    :class:`~embedforensics.models.protocol.Embedder` with both modalities); the settings
    are every embedder's (:class:`~embedforensics.models.hf_encoder.EmbedderSettings`)."""

    modalities: ClassVar[frozenset[str]] = frozenset({TEXT, IMAGE})
    plans_batches: ClassVar[bool] = False  # the engine gives each process a share of rows
    family = ""

    def _finish(self, vectors: Any) -> np.ndarray:
        import torch

        vectors = vectors.float()
        if self.normalize:
            vectors = torch.nn.functional.normalize(vectors, p=2, dim=-1)
        return vectors.cpu().numpy()

    def _batches(self, n: int) -> list[range]:
        return [range(i, min(i + self.batch_size, n)) for i in range(0, n, self.batch_size)]

    @abstractmethod
    def _pixels(self, images: list[Any]) -> Any:
        """A batch of decoded images as the model's input tensor."""

    @abstractmethod
    def _image_features(self, pixels: Any) -> Any:
        """The image tower's projected features for a pixel batch."""

    def encode_images(self, images: list[Any], *, progress: bool = True
                      ) -> tuple[np.ndarray, EncodeStats]:
        """Embed :class:`~embedforensics.sources.images.ImageRef` s, decoded per batch."""
        import torch
        from tqdm.auto import tqdm

        self.load()
        stats = EncodeStats(n_texts=len(images))
        out: np.ndarray | None = None
        batches = self._batches(len(images))
        stats.n_batches = len(batches)
        with torch.inference_mode():
            for batch in tqdm(batches, desc="embedding images", unit="batch",
                              disable=not progress or None, leave=False):
                pil = [images[i].open_rgb() for i in batch]
                array = self._finish(self._image_features(self._pixels(pil)))
                if out is None:
                    out = np.empty((len(images), array.shape[1]), dtype=np.float32)
                out[batch.start:batch.stop] = array
        if out is None:
            out = np.zeros((0, self.embed_dim), dtype=np.float32)
        return out, stats

    @property
    @abstractmethod
    def embed_dim(self) -> int:
        """Width of the shared embedding space."""

    @property
    @abstractmethod
    def effective_max_length(self) -> int:
        """The text tower's token limit."""

    @abstractmethod
    def load(self) -> ImageTextEmbedder:
        """Load the model and its preprocessing once; return self."""

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """Provenance of the loaded model."""

    @abstractmethod
    def token_lengths(self, texts: list[str]) -> list[int] | None:
        """Untruncated token counts (special tokens included), or None when the tokenizer
        cannot say."""

    @abstractmethod
    def _text_features(self, texts: list[str], limit: int) -> Any:
        """The text tower's projected features for one batch of (prefixed) texts."""

    def _text_batches(self, lengths: list[int] | None, n: int) -> list[Any]:
        """The text batches (index ranges or arrays); in input order by default."""
        return self._batches(n)

    def encode(self, texts: list[str], *, progress: bool = True
               ) -> tuple[np.ndarray, EncodeStats]:
        """Embed texts with the text tower, in input order."""
        import torch
        from tqdm.auto import tqdm

        self.load()
        stats = EncodeStats(n_texts=len(texts))
        texts = [self.prefix + t for t in texts]
        limit = self.effective_max_length
        lengths = self.token_lengths(texts)
        if lengths is not None:
            stats.token_lengths = lengths
            stats.n_truncated = int(sum(n > limit for n in lengths))
            stats.n_tokens = int(sum(min(n, limit) for n in lengths))
        out = np.zeros((len(texts), self.embed_dim), dtype=np.float32)
        batches = self._text_batches(lengths, len(texts))
        stats.n_batches = len(batches)
        with torch.inference_mode():
            for batch in tqdm(batches, desc="embedding", unit="batch",
                              disable=not progress or None, leave=False):
                out[batch] = self._finish(self._text_features([texts[i] for i in batch],
                                                              limit))
        return out, stats
