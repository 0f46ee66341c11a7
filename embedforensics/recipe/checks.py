"""Checks that go beyond the schema and still load no model.

Run by :func:`~embedforensics.recipe.loader.load_recipe` (and so by ``validate`` and
before any work in ``run``). This module imports no component: each component checks its
own part of the recipe through the ``CHECKS`` registry (:mod:`embedforensics.registry`) —
the sources their types, files and columns, the probes and comparators their names and
parameters, the model families their model and sources. All problems are collected and
reported together, each naming its file and key.
"""

from __future__ import annotations

from embedforensics.errors import UserError
from embedforensics.recipe.loader import LoadedRecipe


def check_recipe(loaded: LoadedRecipe) -> None:
    """Raise one UserError listing every problem found, or return quietly."""
    from embedforensics.registry import CHECKS

    problems: list[UserError] = []
    for name in CHECKS.registered():
        try:
            problems += CHECKS.get(name)(loaded) or []
        except UserError as exc:
            problems.append(exc)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        lines = "\n  ".join(str(p) for p in problems)
        raise UserError(f"{len(problems)} problems in the recipe:\n  {lines}")
