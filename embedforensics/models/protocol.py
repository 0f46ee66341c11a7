"""The Embedder protocol: everything the embedding engine may ask of a model.

The engine (:mod:`embedforensics.engine.embed`) talks to embedders only through these
names; it never probes attributes or reads a model's internals. A model family
(:mod:`embedforensics.models.family`) builds an object that satisfies :class:`Embedder`;
if its ``plans_batches`` is true it also satisfies :class:`LengthPlanned`, and the engine
then splits a shard's length-sorted batches across accelerate processes instead of
handing each process a strided share of the rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from embedforensics.models.hf_encoder import EncodeStats

TEXT = "text"
IMAGE = "image"


@runtime_checkable
class Embedder(Protocol):
    """A loaded-on-demand model that turns texts (and, for image-text models, images) into
    float32 vectors in input order.

    ``modalities`` says what ``encode`` / ``encode_images`` accept (``{"text"}`` or
    ``{"text", "image"}``); ``plans_batches`` whether the :class:`LengthPlanned` methods
    exist. ``encode`` returns an [n, d] array, or for an embedder asked for several hidden
    layers a dict from each layer as written (``"-1"``, ``"6"``) to its [n, d] array, with
    :class:`~embedforensics.models.hf_encoder.EncodeStats`.
    """

    modalities: frozenset[str]
    plans_batches: bool

    def load(self) -> Embedder:
        """Load the model once (later calls return at once); return self."""
        ...

    def info(self) -> dict[str, Any]:
        """Provenance of the loaded model (class, size, dtype, device, settings)."""
        ...

    @property
    def effective_max_length(self) -> int:
        """The token limit inputs are cut at."""
        ...

    @property
    def embed_dim(self) -> int:
        """The width d of every returned vector."""
        ...

    def encode(self, texts: list[str], *, progress: bool = True
               ) -> tuple[np.ndarray | dict[str, np.ndarray], EncodeStats]:
        """Embed texts, in input order."""
        ...

    def encode_images(self, images: list[Any], *, progress: bool = True
                      ) -> tuple[np.ndarray, EncodeStats]:
        """Embed :class:`~embedforensics.sources.images.ImageRef` s, in input order (text-only
        embedders raise a UserError)."""
        ...


@runtime_checkable
class LengthPlanned(Embedder, Protocol):
    """An embedder whose text batches are planned from token lengths up front, so the
    engine can split one plan across processes (``plans_batches = True``)."""

    def plan(self, texts: list[str]) -> tuple[list[np.ndarray], EncodeStats]:
        """Token lengths (in the stats) and the batches (index arrays), no model call."""
        ...

    def encode_batches(self, texts: list[str], batches: list[np.ndarray], *,
                       progress: bool = False, stats: EncodeStats | None = None
                       ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Run these batches: (row indices in computed order, {layer or "": vectors})."""
        ...


def text_only_error(source_id: str, model_id: str = "", *, file: str | None = None,
                    key: str = "model.id", source_key: str | None = None) -> Exception:
    """The one sentence for images sent to a text-only model (validation and run time).

    ``source_key`` (``sources[1]``) names the source's recipe key in the advice.
    """
    from embedforensics.errors import UserError

    model = f"model '{model_id}'" if model_id else "the model"
    where = f"'{source_key}.modality: text'" if source_key else "the source's 'modality: text'"
    return UserError(
        f"source '{source_id}' holds images but {model} is a text-only model; use an "
        "image-text model (open_clip 'hf-hub:...', 'local-dir:...', 'open_clip:ARCH', or a "
        f"transformers CLIP/SigLIP) or set {where}.", file=file, key=key)
