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

from typing import Any

__version__ = "0.1.0"

_RUNNER = ("run", "compare", "embed", "train_heads", "finetune")
__all__ = ["UserError", "__version__", "compare", "embed", "finetune", "load_recipe", "run",
           "train_heads"]


def __getattr__(name: str) -> Any:
    if name == "load_recipe":
        from embedforensics.recipe.loader import load_recipe

        return load_recipe
    if name in _RUNNER:
        from embedforensics import runner

        return getattr(runner, name)
    if name == "UserError":
        from embedforensics.errors import UserError

        return UserError
    raise AttributeError(f"module 'embedforensics' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names (lazy ones included), so tab completion shows them."""
    return sorted({*__all__, *(n for n in globals() if not n.startswith("_"))} - {"Any",
                                                                                  "annotations"})
