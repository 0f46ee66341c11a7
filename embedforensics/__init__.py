"""embedforensics: are these data sources (or these checkpoints) meaningfully different?

The top-level names are imported lazily so ``import embedforensics`` stays light (no
torch, transformers or scikit-learn until they are needed)::

    import embedforensics as ef
    recipe = ef.load_recipe("recipes/default.yaml")
    results = ef.run(recipe)            # writes runs/<name>/report.html etc.
    results.metric("linear", "accuracy")
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["UserError", "__version__", "embed", "load_recipe", "run"]


def __getattr__(name: str) -> Any:
    if name == "load_recipe":
        from embedforensics.recipe.loader import load_recipe

        return load_recipe
    if name in ("run", "embed"):
        from embedforensics import runner

        return getattr(runner, name)
    if name == "UserError":
        from embedforensics.errors import UserError

        return UserError
    raise AttributeError(f"module 'embedforensics' has no attribute {name!r}")
