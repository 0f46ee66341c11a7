"""embedforensics: are these data sources (or these checkpoints) meaningfully different?

Entry points (the same as the command line's commands)::

    import embedforensics as ef
    result = ef.run("recipes/default.yaml")     # or a dict, or ef.load_recipe(...)
    result                                      # in a notebook: verdict + summary table
    result.metric("linear", "accuracy")         # a float with .ci, .n and .method
    result.to_frame()                           # pandas: one row per metric
    result.figures("linear")                    # the plots as matplotlib figures

- ``run(recipe)``: sources → embeddings → probes → reports; returns ``RunResults``.
- ``compare(recipe)``: candidate checkpoints against a reference ensemble; ``RunResults``.
- ``embed(recipe)``: the embeddings only (an ``EmbeddingSet``).
- ``train_heads(recipe)``, ``finetune(recipe)``: the models ``compare`` reads.
- ``load_recipe(path)``: read and check a recipe without running it.
- ``UserError``: what every mistake in a recipe or its data raises (one sentence).

A recipe is a YAML path, a dict with the same keys, or ``load_recipe``'s result. The
names are imported lazily so ``import embedforensics`` stays light (no torch,
transformers or scikit-learn until they are needed).
"""

from __future__ import annotations

import sys
import types
from typing import Any

__version__ = "0.1.0"

_RUNNER = ("run", "compare", "embed", "train_heads", "finetune")
__all__ = ["UserError", "__version__", "compare", "embed", "finetune", "load_recipe", "run",
           "train_heads"]


def __getattr__(name: str) -> Any:
    if name == "load_recipe":
        from embedforensics.recipe.loader import load_recipe

        return load_recipe
    if name == "compare":  # the subpackage, made callable as runner.compare on import
        import importlib

        return importlib.import_module("embedforensics.compare")
    if name in _RUNNER:
        from embedforensics import runner

        return getattr(runner, name)
    if name == "UserError":
        from embedforensics.errors import UserError

        return UserError
    raise AttributeError(f"module 'embedforensics' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names (lazy ones included), so tab completion shows them."""
    hidden = {"Any", "annotations", "sys", "types"}
    return sorted({*__all__, *(n for n in globals() if not n.startswith("_"))} - hidden)


class _CallableCompare(types.ModuleType):
    """``embedforensics.compare``: the subpackage of comparison code, and also callable, so
    ``ef.compare(recipe, ...)`` runs :func:`embedforensics.runner.compare` like ``ef.run``.

    (Importing a subpackage binds its name on the package, so a plain function called
    ``compare`` would be replaced by the module as soon as anything imported it.)"""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from embedforensics.runner import compare

        return compare(*args, **kwargs)


class _Package(types.ModuleType):
    """This package's module type: when the import system binds the ``compare``
    subpackage here, it becomes a :class:`_CallableCompare`."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "compare" and type(value) is types.ModuleType:
            value.__class__ = _CallableCompare
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
if "embedforensics.compare" in sys.modules:  # imported before this ran (a reload)
    sys.modules[__name__].compare = sys.modules["embedforensics.compare"]
