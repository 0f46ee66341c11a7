"""Load a recipe: safe YAML, ``include:`` resolution, ``--set`` overrides, validation.

Precedence, lowest to highest: schema defaults < included files (in order) < the recipe
file < command-line overrides. Mappings merge key by key; lists and scalars replace. Every
override is logged at INFO level, and every key remembers the file that set it, so an error
in an included file names that file rather than the top-level recipe.

Hostile or careless YAML is refused with one sentence rather than a hang or a traceback:
a file larger than :data:`MAX_RECIPE_BYTES`, aliases that expand past
:data:`MAX_ALIAS_NODES` nodes (a "billion laughs"), a self-referential anchor, nesting
deeper than :data:`MAX_DEPTH`, an ``include:`` chain deeper than :data:`MAX_INCLUDE_DEPTH`
or more than :data:`MAX_INCLUDES` includes, and a key written twice in one mapping. The
first two limits can be raised with the environment variables
``EMBEDFORENSICS_MAX_RECIPE_MB`` and ``EMBEDFORENSICS_MAX_ALIAS_NODES``. YAML is parsed
with libyaml (``yaml.CSafeLoader``) when PyYAML was built with it, else in pure Python.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from embedforensics.errors import UserError, did_you_mean
from embedforensics.recipe.schema import Recipe

log = logging.getLogger(__name__)

_KEY_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")

MAX_RECIPE_BYTES = 5 << 20
"""Largest recipe (or included) file read: 5 MiB; ``EMBEDFORENSICS_MAX_RECIPE_MB`` raises it."""
MAX_ALIAS_NODES = 100_000
"""Most YAML nodes that aliases (``*name``) may add to a file when expanded;
``EMBEDFORENSICS_MAX_ALIAS_NODES`` raises it."""
MAX_DEPTH = 100
"""Deepest nesting of mappings and lists in a recipe (real recipes need fewer than 10)."""
MAX_INCLUDE_DEPTH = 32
"""Longest chain of files including each other."""
MAX_INCLUDES = 1_000
"""Most ``include:`` reads for one recipe (a file included twice counts twice)."""

try:  # libyaml's parser and composer, ~20x faster; the constructor stays in Python
    _BaseLoader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _BaseLoader = yaml.SafeLoader


def _env_limit(name: str, default: int, scale: int = 1) -> int:
    """A limit from the environment (a positive number, times ``scale``), else ``default``."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise UserError(f"environment variable {name}={raw!r} must be a number.") from None
    if not value > 0:
        raise UserError(f"environment variable {name}={raw!r} must be positive.")
    return int(value * scale)


class _NoDuplicateKeys:
    """Constructor mix-in: refuse a key written twice in one mapping (naming both lines)."""

    file: str | None = None

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            first_line: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(
                        key_node, yaml.ScalarNode):
                    continue  # '<<' merges may repeat keys on purpose; complex keys are rare
                key = self.construct_object(key_node, deep=True)
                try:
                    earlier = first_line.get(key)
                except TypeError:
                    continue
                line = key_node.start_mark.line + 1
                if earlier is not None:
                    raise UserError(
                        f"duplicate key '{key}' at lines {earlier} and {line}; a key may "
                        "appear only once in a mapping.", file=self.file)
                first_line[key] = line
        return super().construct_mapping(node, deep=deep)  # type: ignore[misc]


class _RecipeLoader(_NoDuplicateKeys, _BaseLoader):  # type: ignore[misc, valid-type]
    """The loader recipes and ``--set`` values are read with."""


class _PureRecipeLoader(_NoDuplicateKeys, yaml.SafeLoader):
    """The same in pure Python (used when PyYAML has no libyaml; tests use it too)."""


def _check_nodes(root: Any, *, file: str | None, key: str | None) -> None:
    """Refuse a node graph that is cyclic, nested too deeply, or that aliases blow up.

    The composed graph shares the node of an anchor among all its aliases, so it is small
    even when its expansion is astronomically large; sizes and depths are computed once
    per node (memoised) without recursion.
    """
    limit = _env_limit("EMBEDFORENSICS_MAX_ALIAS_NODES", MAX_ALIAS_NODES)
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        nid = id(node)
        children = _children(node)
        if done:
            on_path.discard(nid)
            size[nid] = 1 + sum(size[id(c)] for c in children)
            depth[nid] = 1 + max((depth[id(c)] for c in children), default=0)
            continue
        if nid in size:
            continue
        if nid in on_path:
            raise UserError(
                f"the anchor at line {node.start_mark.line + 1} refers to itself (an alias "
                "inside its own value); a recipe must be a tree.", file=file, key=key)
        on_path.add(nid)
        if len(on_path) > MAX_DEPTH:
            raise UserError(
                f"mappings and lists are nested more than {MAX_DEPTH} levels deep (at line "
                f"{node.start_mark.line + 1}).", file=file, key=key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)
    expanded = size[id(root)]
    added = expanded - len(size)
    if added > limit:
        raise UserError(
            f"YAML aliases expand this file to {expanded:,} values ({added:,} of them copies "
            f"made by aliases, more than the {limit:,} allowed); write the values out, or "
            "raise EMBEDFORENSICS_MAX_ALIAS_NODES.", file=file, key=key)
    if depth[id(root)] > MAX_DEPTH:  # pragma: no cover - caught on the way down
        raise UserError(f"nested more than {MAX_DEPTH} levels deep.", file=file, key=key)


def _children(node: Any) -> list[Any]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def safe_load_yaml(text: str, *, file: str | None = None, key: str | None = None) -> Any:
    """``yaml.safe_load`` with the limits above; problems are :class:`UserError`.

    Raises ``yaml.YAMLError`` for malformed YAML (the caller words it)."""
    loader = _RecipeLoader(text)
    loader.file = file
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:  # the pure-Python composer recurses per nesting level
            raise UserError(f"mappings and lists are nested more than {MAX_DEPTH} levels "
                            "deep.", file=file, key=key) from None
        if node is None:
            return None
        _check_nodes(node, file=file, key=key)
        return loader.construct_document(node)
    finally:
        loader.dispose()


class LoadedRecipe:
    """A validated recipe plus where each key came from and the overrides applied."""

    def __init__(self, recipe: Recipe, path: Path | None, origins: dict[str, str],
                 overrides: list[str], raw: dict[str, Any]):
        self.recipe = recipe
        self.path = path
        self.origins = origins
        self.overrides = overrides
        self.raw = raw

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    def file_of(self, key: str) -> str:
        """The file that set ``key`` (or its nearest parent), for error messages."""
        return _origin(self.origins, key, str(self.path) if self.path else "<recipe>")


def _read_yaml(path: Path, key: str | None = None, parent: str | None = None) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"recipe file '{path}' does not exist.", file=parent, key=key)
    limit = _env_limit("EMBEDFORENSICS_MAX_RECIPE_MB", MAX_RECIPE_BYTES, scale=1 << 20)
    size = path.stat().st_size
    if size > limit:
        raise UserError(
            f"is {size / (1 << 20):.1f} MiB, more than the {limit / (1 << 20):g} MiB a recipe "
            "file may be; put large data in data files, or raise EMBEDFORENSICS_MAX_RECIPE_MB.",
            file=str(path))
    try:
        data = safe_load_yaml(path.read_text(encoding="utf-8"), file=str(path))
    except UnicodeDecodeError as exc:
        raise UserError(f"is not valid UTF-8 text (byte {exc.start}).", file=str(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"malformed YAML{where}: {problem}.", file=str(path)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(
            f"a recipe must be a YAML mapping of keys to values; found a {type(data).__name__}.",
            file=str(path),
        )
    return data


def _merge(base: dict, top: dict, origins: dict[str, str], file: str, prefix: str = "") -> dict:
    """Merge ``top`` over ``base``: mappings recurse, everything else replaces."""
    out = dict(base)
    for key, value in top.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, origins, file, path)
        else:
            out[key] = copy.deepcopy(value)
            for k in [k for k in origins if k == path or k.startswith(path + ".")
                      or k.startswith(path + "[")]:
                del origins[k]
            _record_origins(value, path, origins, file)
    return out


def _record_origins(value: Any, path: str, origins: dict[str, str], file: str) -> None:
    origins[path] = file
    if isinstance(value, dict):
        for k, v in value.items():
            _record_origins(v, f"{path}.{k}", origins, file)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _record_origins(v, f"{path}[{i}]", origins, file)


def _resolve_includes(path: Path, origins: dict[str, str], stack: tuple[Path, ...] = (),
                      count: list[int] | None = None) -> dict[str, Any]:
    """Read ``path`` and everything it includes (depth first), detecting cycles."""
    path = path.resolve()
    count = [0] if count is None else count
    if path in stack:
        chain = " -> ".join(str(p) for p in (*stack, path))
        raise UserError(f"include cycle: {chain}.", file=str(stack[-1]), key="include")
    if len(stack) > MAX_INCLUDE_DEPTH:
        raise UserError(f"includes are nested more than {MAX_INCLUDE_DEPTH} files deep "
                        f"(starting from {stack[0]}).", file=str(stack[-1]), key="include")
    count[0] += 1
    if count[0] > MAX_INCLUDES:
        raise UserError(f"the recipe includes more than {MAX_INCLUDES} files in all (a file "
                        "included several times counts each time).", file=str(stack[-1]),
                        key="include")
    data = _read_yaml(path, parent=str(stack[-1]) if stack else None,
                      key="include" if stack else None)
    includes = data.pop("include", [])
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise UserError("'include' must be a file name or a list of file names.",
                        file=str(path), key="include")
    merged: dict[str, Any] = {}
    for inc in includes:
        inc_path = (path.parent / inc)
        if not inc_path.is_file():
            raise UserError(f"included file '{inc}' does not exist (looked in {path.parent}).",
                            file=str(path), key="include")
        merged = _merge(merged, _resolve_includes(inc_path, origins, (*stack, path), count),
                        origins, str(inc_path.resolve()))
    return _merge(merged, data, origins, str(path))


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """Parse ``key.path[0].sub=value``; the value is read as a YAML scalar or flow value."""
    if "=" not in text:
        raise UserError(f"--set '{text}' must look like key.path=value.")
    key, _, raw_value = text.partition("=")
    parts: list[str | int] = []
    pos = 0
    key = key.strip()
    for match in _KEY_PART.finditer(key):
        if match.start() != pos and key[pos:match.start()] not in (".",):
            raise UserError(f"--set '{text}': cannot read the key path '{key}'.")
        parts.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        pos = match.end()
    # a.0.b is accepted as a[0].b
    parts = [int(p) if isinstance(p, str) and p.isdigit() else p for p in parts]
    if not parts:
        raise UserError(f"--set '{text}': empty key path.")
    try:
        value = safe_load_yaml(raw_value, file="--set", key=key) if raw_value.strip() else ""
    except yaml.YAMLError:
        value = raw_value
    return parts, value


def _format_path(parts: list[str | int] | tuple[Any, ...]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


#: the key a bare string stands for, by where it is written: ``model: <id>``,
#: ``probes: [pca]``, ``transform: [lowercase]``, ``comparators: [outputs]``
_SHORTHAND_KEYS = ((re.compile(r"^model$"), "id"),
                   (re.compile(r"(^|\.)(probes|transform|comparators)\[\d+\]$"), "name"))


def _expand_shorthand(parent: Any, key: str | int, path: str) -> Any:
    """``parent[key]`` as a mapping when it is a bare-string shorthand (``model: <id>``,
    ``probes: [pca]``), so ``--set model.batch_size=8`` or ``--set probes[0].n_folds=3``
    can add a key to it; anything else unchanged."""
    child = parent[key]
    if isinstance(child, str):
        for pattern, name in _SHORTHAND_KEYS:
            if pattern.search(path):
                parent[key] = {name: child}
                return parent[key]
    return child


def _apply_override(data: dict[str, Any], parts: list[str | int], value: Any, text: str) -> None:
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                size = len(node) if isinstance(node, list) else 0
                raise UserError(
                    f"--set '{text}': {_format_path(parts[:i + 1])} does not exist "
                    f"(the list has {size} items)."
                )
            node = _expand_shorthand(node, part, _format_path(parts[:i + 1]))
        else:
            if not isinstance(node, dict):
                raise UserError(f"--set '{text}': {_format_path(parts[:i])} is not a mapping.")
            if part not in node or node[part] is None:
                node[part] = [] if isinstance(nxt, int) else {}
            node = _expand_shorthand(node, part, _format_path(parts[:i + 1]))
    last = parts[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise UserError(f"--set '{text}': {_format_path(parts)} does not exist.")
        node[last] = value
    else:
        if not isinstance(node, dict):
            raise UserError(f"--set '{text}': {_format_path(parts[:-1])} is not a mapping.")
        node[last] = value


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model whose keys are valid at ``loc`` (walking Recipe's annotations)."""
    current: Any = Recipe
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int):
            continue  # a list index keeps the item type
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part) or next(
                (f for f in current.model_fields.values() if f.alias == part), None)
            if field is None:
                return None
            current = field.annotation
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]  # a dict key: go to the value type
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """Strip Optional/unions with None and list[...] down to the model type, if any."""
    for _ in range(5):
        origin = typing.get_origin(annotation)
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if origin in (list, tuple) and args:
            annotation = args[0]
        elif origin in (typing.Union, types.UnionType):
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            annotation = models[0] if models else (args[0] if len(args) == 1 else annotation)
            if not models:
                break
        else:
            break
    return annotation


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """Valid keys at a location, for did-you-mean on unknown keys."""
    model = _model_at(loc[:-1])
    if model is None:
        return []
    return [f.alias or n for n, f in model.model_fields.items()] + (
        ["include"] if model is Recipe else [])


#: keys other tools (Hugging Face datasets, MTEB, lm-eval, sentence-transformers) use for
#: what a recipe calls by another name; offered as the did-you-mean when that name is
#: valid where the unknown key was written
KEY_ALIASES = {
    "text_field": "text_column", "text_key": "text_column", "text_col": "text_column",
    "input_column": "text_column", "column": "text_column", "text_column_name": "text_column",
    "label_column": "label", "label_field": "label", "label_name": "label",
    "class": "label", "split_name": "split", "dataset_split": "split",
    "dataset": "path", "dataset_name": "path", "dataset_path": "path", "repo_id": "path",
    "config": "name", "config_name": "name", "subset": "name", "dataset_config": "name",
    "model_name": "id", "model_id": "id", "model_name_or_path": "id",
    "pretrained_model_name_or_path": "id", "max_seq_length": "max_length",
    "max_seq_len": "max_length", "batchsize": "batch_size", "pooling_mode": "pooling",
    "normalize_embeddings": "normalize", "id_field": "id_column", "data_dir": "data_files",
    "num_samples": "sample", "n_samples": "sample", "max_samples": "limit",
    "output_dir": "dir", "cv": "n_folds", "folds": "n_folds", "random_state": "seed",
}


def _describe(error: dict[str, Any]) -> str:
    kind = error["type"]
    loc = error["loc"]
    found = error.get("input")
    if kind == "extra_forbidden":
        name = str(loc[-1])
        allowed = _allowed_keys(loc)
        alias = KEY_ALIASES.get(name.lower())
        if alias in allowed:
            note = (" A source's label is one fixed string; to split a dataset by a column, "
                    "write one source per value with 'where: {column: value}'"
                    if alias == "label" else "")
            return f"unknown key '{name}' (did you mean '{alias}'?{note})"
        return f"unknown key '{name}'{did_you_mean(name, allowed)}"
    if kind == "missing":
        return "is required but missing"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"must be one of {expected}; found {found!r}"
    msg = error["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if found is not None and not isinstance(found, (dict, list)):
        return f"{msg[0].lower() + msg[1:]}; found {found!r}"
    return msg[0].lower() + msg[1:]


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop pydantic's union-branch names (e.g. 'WhereClause', 'str') from a location."""
    return tuple(p for p in loc if not (isinstance(p, str) and (
        p[:1].isupper() or p in {"str", "int", "float", "bool", "none", "list[str]",
                                 "dict[str,union[str,list[str]]]", "function-after"}
        or p.startswith(("list[", "dict[", "literal[")))))


def _validation_error(exc: ValidationError, origins: dict[str, str], default_file: str
                      ) -> UserError:
    lines = []
    seen = set()
    for err in exc.errors():
        loc = _clean_loc(err["loc"])
        key = _format_path(loc) or "<top level>"
        description = _describe({**err, 'loc': loc})
        # a check across fields names its key first ("model: is required but missing ...")
        named = re.match(r"([A-Za-z_][\w.\[\]]*): (.*)", description, re.S) if not loc else None
        if named:
            key, description = named.groups()
        line = f"{key}: {description}"
        if line in seen:
            continue
        seen.add(line)
        file = _origin(origins, key, default_file)
        lines.append(f"{file}: {line}.")
    message = lines[0] if len(lines) == 1 else (
        f"{len(lines)} problems in the recipe:\n  " + "\n  ".join(lines))
    return UserError(message)


def _origin(origins: dict[str, str], key: str, default: str) -> str:
    probe = key
    while True:
        if probe in origins:
            return origins[probe]
        shorter = re.sub(r"(\.[^.\[\]]+|\[\d+\])$", "", probe)
        if shorter == probe or not shorter:
            return origins.get(shorter, default)
        probe = shorter


def load_recipe(path: str | Path | None = None, overrides: list[str] | None = None, *,
                data: dict[str, Any] | None = None, check: bool = True) -> LoadedRecipe:
    """Read, merge, override and validate a recipe.

    Give a YAML ``path`` or an already-parsed ``data`` mapping. ``overrides`` are
    ``key.path=value`` strings (the CLI's ``--set``). With ``check`` (the default) the
    registered names, probe parameters and local files are checked too (no model loaded).
    """
    origins: dict[str, str] = {}
    recipe_path = Path(path).resolve() if path is not None else None
    default_file = str(recipe_path) if recipe_path else "<recipe>"
    if recipe_path is not None:
        merged = _resolve_includes(recipe_path, origins)
    elif data is not None:
        merged = copy.deepcopy(data)
        _record_origins(merged, "", origins, default_file)
        origins = {k.lstrip("."): v for k, v in origins.items()}
    else:
        raise ValueError("give a recipe path or data")
    applied = []
    for text in overrides or []:
        parts, value = parse_override(text)
        old = _get(merged, parts)
        _apply_override(merged, parts, value, text)
        where = _format_path(parts)
        origins[where] = "--set"
        log.info("override %s: %r -> %r (--set)", where, old, value)
        applied.append(f"{where}={value!r}")
    try:
        recipe = Recipe.model_validate(merged)
    except ValidationError as exc:
        raise _validation_error(exc, origins, default_file) from None
    loaded = LoadedRecipe(recipe, recipe_path, origins, applied, merged)
    if check:
        from embedforensics.recipe.checks import check_recipe

        check_recipe(loaded)
    return loaded


def _get(data: Any, parts: list[str | int]) -> Any:
    node = data
    for part in parts:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def dump_recipe(recipe: Recipe) -> str:
    """The resolved recipe as YAML (what ``validate`` prints and provenance records)."""
    return yaml.safe_dump(recipe.model_dump(mode="json", by_alias=True, exclude_none=True),
                          sort_keys=False, allow_unicode=True)
