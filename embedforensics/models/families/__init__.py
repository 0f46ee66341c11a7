"""The model families shipped with embedforensics, one module each (see
:mod:`embedforensics.models.family` for the contract and ``registry.FAMILIES`` for the
order they are asked in): ``bundled``, ``open_clip``, ``hf_image_text``, ``hf_text``."""
