"""The transform contract: texts in, the same number of texts out, cached by content.

A transform *makes* contrast data from a source's selected texts: a machine translation, a
language-model continuation, a slice of words. Each transform declares its parameters as a
pydantic model (unknown keys are errors with a did-you-mean, checked by ``validate`` before
anything runs), says what identifies its engine (a program version, a model fingerprint) and
maps a list of texts to a list of outputs in the same order.

:func:`apply_transform` adds the cache: texts are processed in fixed chunks, and each chunk's
outputs are stored under a key made of the transform's name, its settings, its engine
identity and the chunk's exact texts (:mod:`embedforensics.transforms.cache`). A rerun, or a
run resumed after a crash, computes only the chunks that are missing.
"""

from __future__ import annotations

import json
import logging
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from embedforensics.errors import UserError, did_you_mean

log = logging.getLogger(__name__)


class TransformParams(BaseModel):
    """Base for a transform's parameters: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class Transform(ABC):
    """One configured transform. Subclasses set ``name``, ``Params`` and implement ``run``.

    ``cache`` says whether outputs are worth caching (cheap pure-Python transforms are not);
    ``chunk_size`` is how many texts make one cache entry (and one resumable unit of work).
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type[TransformParams]] = TransformParams
    cache: ClassVar[bool] = True
    chunk_size: ClassVar[int] = 64

    def __init__(self, params: TransformParams, *, base_dir: Path | None = None,
                 file: str | None = None, key: str | None = None):
        self.params = params
        self.base_dir = base_dir or Path.cwd()
        self.file = file
        self.key = key

    @classmethod
    def from_spec(cls, params: dict[str, Any], *, base_dir: Path | None = None,
                  file: str | None = None, key: str | None = None) -> Transform:
        """Validate ``params`` and build the transform; bad parameters raise a UserError."""
        return cls(parse_params(cls, params, file=file, key=key), base_dir=base_dir,
                   file=file, key=key)

    def check(self) -> None:
        """Cheap availability check (a program on PATH, a model folder); no model loaded."""
        return None  # nothing to check by default

    def identity(self) -> dict[str, Any]:
        """What identifies the engine beyond the settings (program version, model hash)."""
        return {}

    def settings(self) -> dict[str, Any]:
        """Everything that changes the outputs, for the cache key and provenance."""
        return self.params.model_dump(mode="json")

    @abstractmethod
    def run(self, texts: list[str]) -> list[str]:
        """The transformed texts, one per input, in order."""


def parse_params(cls: type[Transform], params: dict[str, Any], *, file: str | None,
                 key: str | None) -> TransformParams:
    """Validate a transform's parameters, one sentence per problem, naming the key."""
    allowed = list(cls.Params.model_fields)
    try:
        return cls.Params.model_validate(params)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        where = f"{key}.{loc}" if key and loc else (key or loc or None)
        if err["type"] == "extra_forbidden":
            name = str(err["loc"][-1])
            message = (f"unknown parameter '{name}' for transform '{cls.name}'"
                       f"{did_you_mean(name, allowed)}; parameters: {', '.join(allowed)}.")
        elif err["type"] == "missing":
            message = f"transform '{cls.name}' needs the parameter '{loc}'."
        else:
            msg = err["msg"].removeprefix("Value error, ")
            message = f"transform '{cls.name}': {msg[0].lower() + msg[1:]}; found " \
                      f"{err.get('input')!r}."
        raise UserError(message, file=file, key=where) from None


def apply_transform(transform: Transform, texts: list[str], *, cache_dir: Path | None,
                    progress: bool = False) -> tuple[list[str], dict[str, Any]]:
    """Run ``transform`` over ``texts`` through the cache; return outputs and provenance."""
    from embedforensics.sources.base import text_fingerprint
    from embedforensics.transforms.cache import TransformCache, transform_key

    started = time.perf_counter()
    use_cache = cache_dir is not None and transform.cache
    settings = transform.settings()
    identity = transform.identity() if use_cache or transform.cache else {}
    header = json.dumps({"transform": transform.name, "settings": settings,
                         "engine": identity}, sort_keys=True, default=str)
    cache = TransformCache(cache_dir) if use_cache else None
    outputs: list[str] = []
    n_cached = n_computed = 0
    keys: list[str] = []
    size = max(1, transform.chunk_size)
    for start in range(0, len(texts), size):
        chunk = texts[start:start + size]
        fp = text_fingerprint(chunk)
        key = transform_key(header, fp)
        keys.append(key)
        hit = cache.load(key, expected=len(chunk), text_fingerprint=fp) if cache else None
        if hit is None:
            result = transform.run(chunk)
            if len(result) != len(chunk) or not all(isinstance(t, str) for t in result):
                raise RuntimeError(f"transform {transform.name} returned {len(result)} outputs "
                                   f"for {len(chunk)} texts")
            if cache is not None:
                cache.save(key, result, text_fingerprint=fp, header=header)
            n_computed += len(chunk)
        else:
            result = hit
            n_cached += len(chunk)
        outputs.extend(result)
        if progress and n_computed:
            log.info("%s: %d/%d texts", transform.name, len(outputs), len(texts))
    info = {"name": transform.name, "settings": settings, "engine": identity,
            "n_texts": len(texts), "n_from_cache": n_cached, "n_computed": n_computed,
            "output_fingerprint": text_fingerprint(outputs),
            "cache_keys": keys[:3] + ([f"... {len(keys) - 3} more"] if len(keys) > 3 else []),
            "seconds": round(time.perf_counter() - started, 3)}
    return outputs, info
