"""Checks that go beyond the schema and still load no model.

Run by :func:`~embedforensics.recipe.loader.load_recipe` (and so by ``validate`` and
before any work in ``run``): registered component names, probe parameters (validated by the
probe classes themselves), the number of labels each probe needs, local files and, where
they can be read cheaply, the columns a source uses. All problems are collected and
reported together, each naming its file and key.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from embedforensics.errors import UserError, did_you_mean
from embedforensics.recipe.loader import LoadedRecipe


def _collect(problems: list[UserError], fn: Callable[[], None]) -> None:
    try:
        fn()
    except UserError as exc:
        problems.append(exc)


def check_model(loaded: LoadedRecipe) -> None:
    from embedforensics.models.resolve import check_model_available

    check_model_available(loaded.recipe.model, base_dir=loaded.base_dir,
                          file=loaded.file_of("model.id"), key="model.id")


def check_probe(loaded: LoadedRecipe, index: int) -> None:
    from embedforensics.probes.base import ProbeParameterError
    from embedforensics.registry import PROBES

    spec = loaded.recipe.probes[index]
    key = f"probes[{index}]"
    file = loaded.file_of(key)
    PROBES.check(spec.name, file=file, key=f"{key}.name")
    cls = PROBES.get(spec.name)
    from embedforensics.probes.matching import RUN_OPTIONS

    allowed = [*cls._get_param_names(), *RUN_OPTIONS]
    for pname in spec.params:
        if pname not in allowed:
            raise UserError(
                f"unknown parameter '{pname}' for probe '{spec.name}'"
                f"{did_you_mean(pname, allowed)}; parameters: {', '.join(allowed)}.",
                file=file, key=f"{key}.{pname}")
    if not isinstance(spec.params.get("length_match", False), bool):
        raise UserError(f"length_match must be true or false; got "
                        f"{spec.params['length_match']!r}.", file=loaded.file_of(key),
                        key=f"{key}.length_match")
    probe = cls(**{k: v for k, v in spec.params.items() if k not in RUN_OPTIONS})
    try:
        probe._check_params()
    except ProbeParameterError as exc:
        bad = next((p for p in spec.params if f"'{p}'" in exc.message), None)
        where = f"{key}.{bad}" if bad else key
        raise UserError(exc.message, file=loaded.file_of(where), key=where) from None
    n_labels = len(loaded.recipe.labels)
    if n_labels < cls.min_labels:
        raise UserError(
            f"probe '{spec.name}' needs at least {cls.min_labels} labels but the sources have "
            f"{n_labels} ({', '.join(loaded.recipe.labels)}); give sources different labels.",
            file=file, key=key)


def check_source(loaded: LoadedRecipe, index: int) -> None:
    from embedforensics.registry import SOURCES
    from embedforensics.sources.hf import check_columns, peek_columns, resolve_files

    spec = loaded.recipe.sources[index]
    key = f"sources[{index}]"
    file = loaded.file_of(key)
    SOURCES.check(str(spec.type), file=file, key=f"{key}.type")
    for j, tspec in enumerate(spec.transform):
        from embedforensics.transforms import build_transform

        build_transform(tspec.name, tspec.params, base_dir=Path(loaded.base_dir),
                        file=file, key=f"{key}.transform[{j}]").check()
    if spec.type in ("inline", "derived"):
        return
    if spec.type in ("records", "html"):
        from embedforensics.sources.textfiles import check_text_source

        check_text_source(spec, Path(loaded.base_dir), file=file, key=key)
        return
    resolved = resolve_files(spec, Path(loaded.base_dir), file=file, key=key)
    for path in resolved.local_files[:5]:
        columns = peek_columns(path, resolved.builder, resolved.kwargs)
        if columns is not None:
            check_columns(columns, spec, file=file, key=key, where_from=f"'{path}'")


def check_image_sources(loaded: LoadedRecipe) -> None:
    from embedforensics.models.clip import check_image_sources as _check

    _check(loaded)


def check_recipe(loaded: LoadedRecipe) -> None:
    """Raise one UserError listing every problem found, or return quietly."""
    problems: list[UserError] = []
    _collect(problems, lambda: check_model(loaded))
    for i in range(len(loaded.recipe.sources)):
        _collect(problems, lambda i=i: check_source(loaded, i))
    for i in range(len(loaded.recipe.probes)):
        _collect(problems, lambda i=i: check_probe(loaded, i))
    _collect(problems, lambda: check_image_sources(loaded))
    if len(problems) == 1:
        raise problems[0]
    if problems:
        lines = "\n  ".join(str(p) for p in problems)
        raise UserError(f"{len(problems)} problems in the recipe:\n  {lines}")
