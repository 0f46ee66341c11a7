"""The Hugging Face text family: any ``from_pretrained`` encoder or decoder.

The catch-all (asked last): a local model folder or a hub id, fingerprinted from the
folder's files or the cached hub commit. Its "auto" settings follow the rules of
:mod:`embedforensics.models.defaults` (decoders → last-token pooling, e5 → ``"query: "``,
sentence-transformers folders → their own modules, other encoders → mean pooling), and
its embedder is :class:`~embedforensics.models.hf_encoder.HFTextEmbedder` (token-budget
batches, several layers from one pass, decoders' position ids).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedforensics.models.family import GENERIC_DEFAULTS, ModelFamily, ResolvedModel
from embedforensics.models.hub import locate_pretrained

if TYPE_CHECKING:
    from embedforensics.models.hf_encoder import HFTextEmbedder
    from embedforensics.recipe.loader import LoadedRecipe
    from embedforensics.recipe.schema import ModelSpec


class HFTextFamily(ModelFamily):
    """Hugging Face text encoders and decoders (any from_pretrained folder or hub id):
    AutoModel + the family's pooling rule."""

    name = "hf_text"
    priority = 90

    def claims(self, spec: ModelSpec, *, base_dir: Path) -> bool:
        return True  # anything the more specific families left: from_pretrained decides

    def owns(self, resolved: ResolvedModel) -> bool:
        return resolved.kind == self.name or (resolved.kind is None
                                              and resolved.source in ("local", "hub"))

    def resolve(self, spec: ModelSpec, *, base_dir: Path, file: str | None, key: str,
                fingerprint: bool) -> ResolvedModel:
        from embedforensics.models.defaults import family_defaults

        found = locate_pretrained(spec.id, base_dir=base_dir, revision=spec.revision,
                                  file=file, key=key, fingerprint=fingerprint)
        family, dflt = family_defaults(found.name, found.read)
        return ResolvedModel(spec.id, found.location, found.revision, found.fingerprint,
                             found.source, found.config_hash, found.commit, family=family,
                             defaults=dflt)

    def effective(self, spec: ModelSpec, resolved: ResolvedModel, *, file: str | None = None
                  ) -> tuple[ModelSpec, dict[str, Any]]:
        from embedforensics.models.defaults import apply

        return apply(spec, resolved.family, resolved.defaults or GENERIC_DEFAULTS,
                     spec_id=resolved.spec_id, file=file)

    def check_sources(self, loaded: LoadedRecipe, image_sources: list[int],
                      resolved: ResolvedModel) -> None:
        if resolved.source == "hub" and resolved.config_hash is None:
            return  # not in the cache yet: what it is shows when it is loaded
        super().check_sources(loaded, image_sources, resolved)

    def make_embedder(self, spec: ModelSpec, resolved: ResolvedModel) -> HFTextEmbedder:
        from embedforensics.models.hf_encoder import HFTextEmbedder

        return HFTextEmbedder(
            resolved.location, revision=resolved.revision, pooling=spec.pooling,
            normalize=spec.normalize, prefix=spec.prefix, max_length=spec.max_length,
            batch_size=spec.batch_size, dtype=spec.dtype, device=spec.device,
            trust_remote_code=spec.trust_remote_code, layers=spec.layers,
            max_tokens_per_batch=spec.max_tokens_per_batch, device_map=spec.device_map,
            batch_overhead=spec.batch_overhead_tokens, compile=spec.compile,
            onednn_linear=spec.onednn_linear)
