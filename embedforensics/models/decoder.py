"""What decoder-only LLMs (GPT-2, Llama, Mistral, Qwen, Gemma) need to embed text correctly.

Hidden states come from ``AutoModel`` (the base model under ``AutoModelForCausalLM``);
pooling is ``last_token`` (the last position whose attention mask is 1, right for both
padding sides) or masked ``mean``. Two details matter in a padded batch:

- tokenizers of decoders often have no pad token; the embedder borrows EOS (or UNK),
  which is harmless because the attention mask hides padding;
- with *left* padding, a model that numbers positions 0, 1, 2, ... over the padded row
  gives the real tokens shifted positions. Rotary models (Llama, Mistral, Gemma) are
  nearly insensitive, but learned absolute positions (GPT-2) are not, so for decoders we
  pass ``position_ids = cumsum(mask) - 1``: every text sees positions 0..n-1 exactly as
  when run alone, whichever side the tokenizer pads.
"""

from __future__ import annotations

from typing import Any


def is_decoder(model: Any) -> bool:
    """Is this loaded model a decoder-only (causal) LM?"""
    from embedforensics.models.defaults import is_decoder_config

    config = getattr(model, "config", None)
    if config is None:
        return False
    return is_decoder_config({"model_type": getattr(config, "model_type", None),
                              "architectures": getattr(config, "architectures", None) or [],
                              "is_decoder": getattr(config, "is_decoder", False)})


def decoder_inputs(enc: dict[str, Any], model: Any, padding_side: str) -> dict[str, Any]:
    """Add position ids that ignore left padding, for decoders; other models unchanged."""
    mask = enc.get("attention_mask")
    if padding_side != "left" or mask is None or "position_ids" in enc or not is_decoder(model):
        return enc
    position_ids = (mask.long().cumsum(-1) - 1).clamp(min=0)
    return {**enc, "position_ids": position_ids}
