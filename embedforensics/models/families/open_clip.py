"""The open_clip family: image-text models loaded by open_clip, named as its users name them.

* ``hf-hub:ORG/REPO`` (e.g. ``hf-hub:apple/DFN5B-CLIP-ViT-H-14``): a hub repo with
  ``open_clip_config.json``, fingerprinted by its cached commit;
* ``local-dir:PATH``: a folder with ``open_clip_config.json`` and weights, fingerprinted
  from its files;
* ``open_clip:ARCH`` with ``model.pretrained: TAG`` (or a checkpoint file), which is
  ``open_clip.create_model_and_transforms(ARCH, pretrained=TAG)``.

Preprocessing is the model's own ``preprocess`` transform; texts use
``open_clip.get_tokenizer(name)``; embeddings are ``encode_image`` / ``encode_text``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from embedforensics.errors import UserError, did_you_mean
from embedforensics.models.family import ResolvedModel
from embedforensics.models.hub import (
    bytes_sha256,
    cached_file,
    directory_fingerprint,
    file_digest,
    hub_fingerprint,
    library_version,
    offline,
)
from embedforensics.models.image_text import (
    IMAGE_TEXT_DEFAULTS,
    ImageTextEmbedder,
    ImageTextFamily,
)

if TYPE_CHECKING:
    from embedforensics.recipe.schema import ModelSpec

PREFIXES = ("hf-hub:", "local-dir:", "open_clip:")
_INSTALL = "install it with 'pip install open_clip_torch' (or 'pip install " \
    "embedforensics[clip]')"


def is_open_clip_id(model_id: str) -> bool:
    """True for ids open_clip understands: hf-hub:, local-dir:, open_clip:ARCH."""
    return model_id.startswith(PREFIXES)


def _open_clip_dir(*, file: str | None, key: str) -> Path:
    """The installed open_clip package folder (its model_configs/), without importing it."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"open_clip models need the package 'open_clip_torch'; {_INSTALL}.",
                        file=file, key=key)
    return Path(next(iter(spec.submodule_search_locations)))


class OpenCLIPFamily(ImageTextFamily):
    """open_clip image-text models: 'hf-hub:ORG/REPO', 'local-dir:PATH', or 'open_clip:ARCH'
    with model.pretrained."""

    name = "open_clip"
    priority = 20
    library = "open_clip_torch"
    key_family = "open_clip"
    spec_fields: ClassVar[frozenset[str]] = frozenset({"pretrained"})

    def claims(self, spec: ModelSpec, *, base_dir: Path) -> bool:
        return is_open_clip_id(spec.id)

    def owns(self, resolved: ResolvedModel) -> bool:
        return resolved.kind == self.name or resolved.source.startswith("open_clip")

    def resolve(self, spec: ModelSpec, *, base_dir: Path, file: str | None, key: str,
                fingerprint: bool) -> ResolvedModel:
        """``location`` is the name handed to ``open_clip.create_model_and_transforms``
        (a local path made absolute); the fingerprint follows the weights and both config
        files."""
        mid = spec.id
        oc_dir = _open_clip_dir(file=file, key=key)
        scheme, _, ident = mid.partition(":")
        dflt = {"family": "image-text", "defaults": dict(IMAGE_TEXT_DEFAULTS)}
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
            cfg = bytes_sha256(path / "open_clip_config.json")
            return ResolvedModel(mid, f"local-dir:{path}", None, fp, "open_clip-local", cfg,
                                 **dflt)
        if scheme == "hf-hub":
            hit = cached_file(ident, "open_clip_config.json", spec.revision)
            if hit is None:
                if offline():
                    raise UserError(
                        f"open_clip model '{mid}' is not available offline (no "
                        "open_clip_config.json in the Hugging Face cache and "
                        f"HF_HUB_OFFLINE=1); download it with 'hf download {ident}"
                        + (f" --revision {spec.revision}" if spec.revision else "")
                        + "' or use 'local-dir:PATH'.", file=file, key=key)
                return ResolvedModel(mid, mid, spec.revision, "", "open_clip-hub", **dflt)
            commit = hit.parent.name
            return ResolvedModel(mid, mid, spec.revision or commit, hub_fingerprint(mid, commit),
                                 "open_clip-hub", bytes_sha256(hit), commit, **dflt)
        return self._resolve_arch(spec, ident, oc_dir, base_dir=base_dir, file=file, key=key,
                                  fingerprint=fingerprint, dflt=dflt)

    @staticmethod
    def _resolve_arch(spec: ModelSpec, arch: str, oc_dir: Path, *, base_dir: Path,
                      file: str | None, key: str, fingerprint: bool,
                      dflt: dict[str, Any]) -> ResolvedModel:
        """``open_clip:ARCH`` + pretrained: a tag (fingerprinted by name) or a checkpoint
        file (fingerprinted by its bytes and the architecture config)."""
        mid = spec.id
        arch_file = oc_dir / "model_configs" / f"{arch.replace('/', '-')}.json"
        if not arch_file.is_file():
            known = sorted(p.stem for p in (oc_dir / "model_configs").glob("*.json"))
            raise UserError(f"open_clip has no architecture '{arch}'{did_you_mean(arch, known)} "
                            "(see open_clip.list_models()).", file=file, key=key)
        if not spec.pretrained:
            raise UserError(f"'{mid}' needs 'model.pretrained': a pretrained tag (see "
                            "open_clip.list_pretrained()) or a checkpoint file; without it the "
                            "weights would be random.", file=file, key="model.pretrained")
        cfg = bytes_sha256(arch_file)
        ckpt = Path(spec.pretrained).expanduser()
        ckpt = ckpt if ckpt.is_absolute() else base_dir / ckpt
        if ckpt.is_file():
            fp = (hashlib.sha256(f"{cfg}:{file_digest(ckpt)}".encode()).hexdigest()
                  if fingerprint else "")
            return ResolvedModel(mid, arch, None, fp, "open_clip-file", cfg,
                                 pretrained=str(ckpt.resolve()), **dflt)
        if any(c in spec.pretrained for c in "/\\") or Path(spec.pretrained).suffix:
            raise UserError(f"the checkpoint file '{ckpt}' does not exist.", file=file,
                            key="model.pretrained")
        fp = hashlib.sha256(f"open_clip:{arch}:{spec.pretrained}".encode()).hexdigest()
        return ResolvedModel(mid, arch, None, fp, "open_clip-tag", cfg,
                             pretrained=spec.pretrained, **dflt)

    def make_embedder(self, spec: ModelSpec, resolved: ResolvedModel) -> OpenCLIPEmbedder:
        return OpenCLIPEmbedder(resolved.location, pretrained=resolved.pretrained,
                                **self.common_settings(spec))


class OpenCLIPEmbedder(ImageTextEmbedder):
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

        from embedforensics.models.hf_encoder import load_error, pick_device

        try:
            import open_clip
        except ImportError:
            raise UserError(f"open_clip models need 'open_clip_torch'; {_INSTALL}.",
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
            raise load_error(f"open_clip could not load '{self.location}'"
                             + (f" (pretrained '{self.pretrained}')" if self.pretrained else ""),
                             exc) from None
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
            "open_clip_version": library_version("open_clip_torch"),
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

    def _text_features(self, texts: list[str], limit: int) -> Any:
        return self._model.encode_text(self._tokenizer(texts, context_length=limit)
                                       .to(self.device))
