"""Image-text models (CLIP, DFN, SigLIP): images through the image tower, texts through the
text tower, both in the shared projected embedding space, L2-normalised by default.

Two implementations, chosen from the model id exactly as their own users write it:

* **open_clip** — ``hf-hub:ORG/REPO`` (e.g. ``hf-hub:apple/DFN5B-CLIP-ViT-H-14``),
  ``local-dir:PATH`` (a folder with ``open_clip_config.json`` and weights), or
  ``open_clip:ARCH`` with ``model.pretrained: TAG`` (or a checkpoint file), which is
  ``open_clip.create_model_and_transforms(ARCH, pretrained=TAG)``. Preprocessing is the
  model's own ``preprocess`` transform; texts use ``open_clip.get_tokenizer(name)``.
* **transformers** — any ``from_pretrained`` id or folder whose ``config.json`` says
  ``clip``, ``siglip`` or ``siglip2``: ``AutoModel`` with the model's own image processor
  and tokenizer (the two halves of its ``AutoProcessor``), ``get_image_features`` /
  ``get_text_features``. SigLIP texts are padded to ``max_length`` as the model was trained.

Both embedders take the same settings as the text embedder and return
``(float32 [n, d], EncodeStats)`` in input order. Which tower a source goes through is the
source's ``modality`` (see :mod:`embedforensics.sources.images`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from abc import ABC, abstractmethod
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from embedforensics.errors import UserError

log = logging.getLogger(__name__)

OPEN_CLIP_PREFIXES = ("hf-hub:", "local-dir:", "open_clip:")
HF_IMAGE_TEXT_TYPES = frozenset({"clip", "siglip", "siglip2"})
_OPEN_CLIP_INSTALL = "install it with 'pip install open_clip_torch' (or 'pip install " \
    "embedforensics[clip]')"


# ------------------------------------------------------------------ resolution (no torch)
def is_open_clip_id(model_id: str) -> bool:
    """True for ids open_clip understands: hf-hub:, local-dir:, open_clip:ARCH."""
    return model_id.startswith(OPEN_CLIP_PREFIXES)


def _open_clip_dir(*, file: str | None, key: str) -> Path:
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"open_clip models need the package 'open_clip_torch'; "
                        f"{_OPEN_CLIP_INSTALL}.", file=file, key=key)
    return Path(next(iter(spec.submodule_search_locations)))


def _library_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def resolve_open_clip(spec: Any, *, base_dir: Path, file: str | None, key: str,
                      fingerprint: bool = True) -> Any:
    """A :class:`~embedforensics.models.resolve.ResolvedModel` for an open_clip id.

    ``location`` is the name handed to ``open_clip.create_model_and_transforms`` (with a
    local path made absolute); the fingerprint follows the weights and both config files.
    """
    from embedforensics.models.resolve import (
        ResolvedModel,
        _file_digest,
        _offline,
        directory_fingerprint,
    )

    mid: str = spec.id
    oc_dir = _open_clip_dir(file=file, key=key)
    scheme, _, ident = mid.partition(":")
    if scheme != "open_clip" and spec.pretrained is not None:
        raise UserError(f"'model.pretrained' applies only to 'open_clip:ARCH' ids; '{mid}' "
                        "brings its own weights (open_clip ignores pretrained for it).",
                        file=file, key="model.pretrained")
    if scheme == "local-dir":
        path = Path(ident).expanduser()
        path = (path if path.is_absolute() else base_dir / path).resolve()
        if not (path / "open_clip_config.json").is_file():
            what = "does not exist" if not path.is_dir() else "has no open_clip_config.json"
            raise UserError(f"the open_clip folder '{path}' {what}.", file=file, key=key)
        fp = directory_fingerprint(path)[0] if fingerprint else ""
        cfg = hashlib.sha256((path / "open_clip_config.json").read_bytes()).hexdigest()
        return ResolvedModel(mid, f"local-dir:{path}", None, fp, "open_clip-local", cfg)
    if scheme == "hf-hub":
        from huggingface_hub import try_to_load_from_cache

        try:
            hit = try_to_load_from_cache(ident, "open_clip_config.json", revision=spec.revision)
        except Exception:  # noqa: BLE001 - a malformed repo id is reported below
            hit = None
        if not isinstance(hit, str):
            if _offline():
                raise UserError(
                    f"open_clip model '{mid}' is not available offline (no "
                    "open_clip_config.json in the Hugging Face cache and HF_HUB_OFFLINE=1); "
                    f"download it with 'huggingface-cli download {ident}' or use "
                    "'local-dir:PATH'.", file=file, key=key)
            return ResolvedModel(mid, mid, spec.revision, "", "open_clip-hub")
        commit = Path(hit).parent.name
        cfg = hashlib.sha256(Path(hit).read_bytes()).hexdigest()
        fp = hashlib.sha256(f"{mid}@{commit}".encode()).hexdigest()
        return ResolvedModel(mid, mid, spec.revision or commit, fp, "open_clip-hub", cfg, commit)
    # open_clip:ARCH [+ pretrained]
    arch = ident
    arch_file = oc_dir / "model_configs" / f"{arch.replace('/', '-')}.json"
    if not arch_file.is_file():
        from embedforensics.errors import did_you_mean

        known = sorted(p.stem for p in (oc_dir / "model_configs").glob("*.json"))
        raise UserError(f"open_clip has no architecture '{arch}'{did_you_mean(arch, known)} "
                        "(see open_clip.list_models()).", file=file, key=key)
    if not spec.pretrained:
        raise UserError(f"'{mid}' needs 'model.pretrained': a pretrained tag (see "
                        "open_clip.list_pretrained()) or a checkpoint file; without it the "
                        "weights would be random.", file=file, key="model.pretrained")
    cfg = hashlib.sha256(arch_file.read_bytes()).hexdigest()
    ckpt = Path(spec.pretrained).expanduser()
    ckpt = ckpt if ckpt.is_absolute() else base_dir / ckpt
    if ckpt.is_file():
        digest = _file_digest(ckpt) if fingerprint else ""
        fp = hashlib.sha256(f"{cfg}:{digest}".encode()).hexdigest() if fingerprint else ""
        return ResolvedModel(mid, arch, None, fp, "open_clip-file", cfg,
                             pretrained=str(ckpt.resolve()))
    if any(c in spec.pretrained for c in "/\\") or Path(spec.pretrained).suffix:
        raise UserError(f"the checkpoint file '{ckpt}' does not exist.", file=file,
                        key="model.pretrained")
    fp = hashlib.sha256(f"open_clip:{arch}:{spec.pretrained}".encode()).hexdigest()
    return ResolvedModel(mid, arch, None, fp, "open_clip-tag", cfg, pretrained=spec.pretrained)


@lru_cache(maxsize=32)
def _hf_model_type(location: str, revision: str | None) -> str | None:
    local = Path(location) / "config.json"
    if local.is_file():
        path: Path | None = local
    else:
        from embedforensics.models.resolve import _hub_cached_config

        path = _hub_cached_config(location, revision)
    if path is None:
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError):
        return None


def image_text_family(resolved: Any, *, download: bool = True) -> str | None:
    """'open_clip', 'hf' (a transformers CLIP/SigLIP) or None for a text-only model.

    Read from the model id or its config.json (local or in the hub cache); a hub model that
    is not cached yet is looked up with ``AutoConfig`` (a small download), or, with
    ``download=False``, reported as 'unknown'.
    """
    if resolved.source.startswith("open_clip"):
        return "open_clip"
    model_type = _hf_model_type(resolved.location, resolved.revision)
    if model_type is None and resolved.source == "hub" and not download:
        return "unknown"
    if model_type is None and resolved.source == "hub":
        try:
            from transformers import AutoConfig

            model_type = AutoConfig.from_pretrained(
                resolved.location, revision=resolved.revision).model_type
        except Exception:  # noqa: BLE001 - loading reports the real error
            model_type = None
    return "hf" if model_type in HF_IMAGE_TEXT_TYPES else None


def image_text_settings(spec: Any, resolved: Any) -> dict[str, Any]:
    """Extra cache-key settings for image-text models ({} for text models).

    Image preprocessing is code in open_clip / transformers, not only config, so the
    library version is part of the key; so are the family and the pretrained tag.
    """
    family = image_text_family(resolved)
    if family is None:
        return {}
    library = "open_clip_torch" if family == "open_clip" else "transformers"
    return {"image_text": {"family": family, "library": library,
                           "library_version": _library_version(library),
                           "pretrained": spec.pretrained, "embedding": "projected"}}


def make_image_text_embedder(spec: Any, resolved: Any) -> Any | None:
    """The image-text embedder for this model, or None when it is a text-only model."""
    family = image_text_family(resolved)
    if family is None:
        return None
    if "pooling" in spec.model_fields_set and spec.pooling != "mean":
        log.warning("model.pooling '%s' does not apply to image-text models; the embedding is "
                    "the model's own projection", spec.pooling)
    common = {"normalize": spec.normalize, "prefix": spec.prefix,
              "max_length": spec.max_length, "batch_size": spec.batch_size,
              "dtype": spec.dtype, "device": spec.device}
    if family == "open_clip":
        return OpenCLIPEmbedder(resolved.location, pretrained=resolved.pretrained, **common)
    return HFImageTextEmbedder(resolved.location, revision=resolved.revision,
                               trust_remote_code=spec.trust_remote_code, **common)


def check_image_sources(loaded: Any) -> None:
    """Validation: image sources need an image-text model, and ``model.pretrained`` an
    ``open_clip:ARCH`` id (nothing is loaded)."""
    from embedforensics.models.resolve import resolve_model
    from embedforensics.sources.hf import peek_columns, resolve_files

    recipe = loaded.recipe
    if recipe.model.pretrained is not None and not is_open_clip_id(recipe.model.id):
        raise UserError(f"'model.pretrained' applies only to 'open_clip:ARCH' ids; "
                        f"'{recipe.model.id}' is loaded with from_pretrained (use "
                        "model.revision to pick a hub revision).",
                        file=loaded.file_of("model.pretrained"), key="model.pretrained")
    image_sources = []
    for i, src in enumerate(recipe.sources):
        if src.modality == "text":
            continue
        is_image = src.modality == "image"
        if not is_image and src.type != "inline" and src.path != "imagefolder":
            try:
                key = f"sources[{i}]"
                resolved = resolve_files(src, Path(loaded.base_dir), file=loaded.file_of(key),
                                         key=key)
                is_image = resolved.builder == "imagefolder"
                for path in resolved.local_files[:1]:  # an Image column and no text column
                    columns = peek_columns(path, resolved.builder, resolved.kwargs) or []
                    is_image = is_image or (src.text_column not in columns
                                            and src.image_column in columns)
            except UserError:
                continue  # reported by the source check
        if is_image or src.path == "imagefolder":
            image_sources.append(i)
    if not image_sources:
        return
    try:
        resolved_model = resolve_model(recipe.model, base_dir=Path(loaded.base_dir),
                                       file=loaded.file_of("model.id"), fingerprint=False)
    except UserError:
        return  # reported by the model check
    if image_text_family(resolved_model, download=False) is None:
        i = image_sources[0]
        key = f"sources[{i}]"
        raise UserError(
            f"source '{recipe.sources[i].id}' holds images but model '{recipe.model.id}' is a "
            "text-only model; use an image-text model (open_clip 'hf-hub:...', "
            "'local-dir:...', 'open_clip:ARCH', or a transformers CLIP/SigLIP) or set "
            f"'{key}.modality: text'.", file=loaded.file_of(key), key=key)


# ------------------------------------------------------------------ embedders
class _ImageTextEmbedder(ABC):
    """Shared settings, batching and output handling of the two implementations."""

    family = ""

    def __init__(self, location: str, *, normalize: bool = True, prefix: str = "",
                 max_length: int | None = None, batch_size: int = 32, dtype: str = "float32",
                 device: str = "auto"):
        self.location = location
        self.normalize = normalize
        self.prefix = prefix
        self.max_length = max_length
        self.batch_size = batch_size
        self.dtype = dtype
        self.device = device
        self._model: Any = None

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
                      ) -> tuple[np.ndarray, Any]:
        """Embed :class:`~embedforensics.sources.images.ImageRef` s, decoded per batch."""
        import torch
        from tqdm.auto import tqdm

        from embedforensics.models.hf_encoder import EncodeStats

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

    @abstractmethod
    def load(self) -> Any:
        """Load the model and its preprocessing once; return self."""


class OpenCLIPEmbedder(_ImageTextEmbedder):
    """An open_clip model: ``create_model_and_transforms`` + ``get_tokenizer``."""

    family = "open_clip"

    def __init__(self, name: str, *, pretrained: str | None = None, **kwargs: Any):
        super().__init__(name, **kwargs)
        self.pretrained = pretrained
        self._preprocess: Any = None
        self._tokenizer: Any = None

    def load(self) -> OpenCLIPEmbedder:
        if self._model is not None:
            return self
        import torch

        from embedforensics.models.hf_encoder import pick_device

        try:
            import open_clip
        except ImportError:
            raise UserError(f"open_clip models need 'open_clip_torch'; {_OPEN_CLIP_INSTALL}.",
                            key="model.id") from None
        # open_clip logs a dozen INFO lines per load on the root logger; keep them for --debug
        root = logging.getLogger()
        level = root.level
        if level > logging.DEBUG:
            root.setLevel(logging.WARNING)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                self.location, pretrained=self.pretrained)
            tokenizer = open_clip.get_tokenizer(self.location)
        except (RuntimeError, OSError, ValueError, KeyError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"open_clip could not load '{self.location}'"
                            + (f" (pretrained '{self.pretrained}')" if self.pretrained else "")
                            + f": {first}", key="model.id") from None
        finally:
            root.setLevel(level)
        self.device = pick_device(self.device)
        self._model = model.to(self.device, dtype=getattr(torch, self.dtype)).eval()
        self._preprocess = preprocess
        self._tokenizer = tokenizer
        return self

    @property
    def context_length(self) -> int:
        return int(getattr(self._tokenizer, "context_length", None)
                   or getattr(self._model, "context_length", 77))

    @property
    def effective_max_length(self) -> int:
        self.load()
        if self.max_length is not None:
            return min(self.max_length, self.context_length)
        return self.context_length

    @property
    def embed_dim(self) -> int:
        self.load()
        return int(getattr(self._model, "embed_dim", None)
                   or self._model.text_projection.shape[-1])

    def info(self) -> dict[str, Any]:
        self.load()
        return {
            "model_class": type(self._model).__name__, "family": "open_clip",
            "open_clip_name": self.location, "pretrained": self.pretrained,
            "n_parameters": int(sum(p.numel() for p in self._model.parameters())),
            "dtype": self.dtype, "device": str(self.device),
            "embedding": "projected (encode_image / encode_text)",
            "pooling": "model projection", "normalize": self.normalize, "prefix": self.prefix,
            "max_length": self.effective_max_length,
            "image_preprocess": str(self._preprocess).replace("\n", " "),
            "tokenizer": type(self._tokenizer).__name__,
            "open_clip_version": _library_version("open_clip_torch"),
        }

    def token_lengths(self, texts: list[str]) -> list[int] | None:
        """Untruncated token counts (start and end tokens included) where the tokenizer
        can say; None for tokenizers that cannot."""
        tok = self._tokenizer
        if hasattr(tok, "encode") and hasattr(tok, "sot_token_id"):  # SimpleTokenizer
            return [len(tok.encode(t)) + 2 for t in texts]
        inner = getattr(tok, "tokenizer", None)
        if inner is not None and callable(inner):
            return [len(ids) for ids in inner(texts, truncation=False)["input_ids"]]
        return None

    def _pixels(self, images: list[Any]) -> Any:
        import torch

        return torch.stack([self._preprocess(im) for im in images])

    def _image_features(self, pixels: Any) -> Any:
        import torch

        return self._model.encode_image(pixels.to(self.device, dtype=getattr(torch, self.dtype)))

    def encode(self, texts: list[str], *, progress: bool = True) -> tuple[np.ndarray, Any]:
        """Embed texts with the text tower, in input order."""
        import torch
        from tqdm.auto import tqdm

        from embedforensics.models.hf_encoder import EncodeStats

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
        batches = self._batches(len(texts))
        stats.n_batches = len(batches)
        with torch.inference_mode():
            for batch in tqdm(batches, desc="embedding", unit="batch",
                              disable=not progress or None, leave=False):
                tokens = self._tokenizer([texts[i] for i in batch],
                                         context_length=limit).to(self.device)
                out[batch.start:batch.stop] = self._finish(self._model.encode_text(tokens))
        return out, stats


class HFImageTextEmbedder(_ImageTextEmbedder):
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

        from embedforensics.models.hf_encoder import pick_device

        kwargs: dict[str, Any] = {"revision": self.revision,
                                  "trust_remote_code": self.trust_remote_code}
        try:
            model = AutoModel.from_pretrained(self.location, dtype=getattr(torch, self.dtype),
                                              **kwargs)
            self._tokenizer = AutoTokenizer.from_pretrained(self.location, **kwargs)
            self._image_processor = AutoImageProcessor.from_pretrained(self.location, **kwargs)
        except (OSError, ValueError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"could not load image-text model '{self.location}': {first}",
                            key="model.id") from None
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
            "transformers_version": _library_version("transformers"),
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

    def encode(self, texts: list[str], *, progress: bool = True) -> tuple[np.ndarray, Any]:
        """Embed texts with the text tower, in input order (batches sorted by tokens)."""
        import warnings

        import torch
        from tqdm.auto import tqdm

        from embedforensics.models.hf_encoder import EncodeStats

        self.load()
        stats = EncodeStats(n_texts=len(texts))
        texts = [self.prefix + t for t in texts]
        limit = self.effective_max_length
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lengths = [len(ids) for ids in self._tokenizer(
                texts, truncation=False, verbose=False)["input_ids"]] if texts else []
        stats.token_lengths = lengths
        stats.n_truncated = int(sum(n > limit for n in lengths))
        stats.n_tokens = int(sum(min(n, limit) for n in lengths))
        out = np.zeros((len(texts), self.embed_dim), dtype=np.float32)
        order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        stats.n_batches = len(batches)
        with torch.inference_mode():
            for batch in tqdm(batches, desc="embedding", unit="batch",
                              disable=not progress or None, leave=False):
                enc = self._tokenizer([texts[i] for i in batch], padding=self._padding,
                                      truncation=True, max_length=limit, return_tensors="pt")
                enc = {k: v.to(self.device) for k, v in enc.items()
                       if k in ("input_ids", "attention_mask")}
                out[batch] = self._finish(self._features(self._model.get_text_features(**enc)))
        return out, stats

