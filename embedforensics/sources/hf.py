"""Sources read through Hugging Face ``datasets``: hub ids, local files, package data.

All three go through ``datasets.load_dataset`` so local json/csv/parquet/text files get
exactly the parsing a Hugging Face user expects. Path resolution happens in
:func:`resolve_files`, shared by ``validate`` (which checks files and, where cheap, columns
without loading anything) and by loading.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import fnmatch
import glob
import gzip
import importlib.util
import io
import json
import logging
import lzma
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedforensics.errors import UserError, did_you_mean
from embedforensics.recipe.schema import SourceSpec, WhereClause
from embedforensics.sources.base import SourceData
from embedforensics.sources.columns import (
    ArrowColumn,
    RowIds,
    first_duplicate,
    is_scalar_type,
    iter_blocks,
    select,
)
from embedforensics.sources.images import IMAGE_EXTENSIONS, make_image_ref

log = logging.getLogger(__name__)

_COMPRESSION = {".gz", ".bz2", ".xz", ".zst"}
_BUILDERS = {
    ".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet",
    ".txt": "text", ".md": "text", ".text": "text", ".arrow": "arrow",
    **{ext: "imagefolder" for ext in IMAGE_EXTENSIONS},
}
_META_MAX_COLUMNS = 20
_N_EXAMPLES = 6


@dataclass
class ResolvedSource:
    """Where a source's data is and which ``load_dataset`` call reads it."""

    builder: str  # a hub id or a packaged builder name
    data_files: list[str] | dict[str, Any] | None
    kwargs: dict[str, Any]
    local_files: list[Path]
    description: str


def _suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    while suffixes and suffixes[-1] in _COMPRESSION:
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def package_dir(package: str, *, file: str | None, key: str) -> Path:
    """The install folder of an importable package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"Python package '{package}' is not installed; install it with "
            f"'pip install {package.replace('_', '-')}'.", file=file, key=key)
    return Path(next(iter(spec.submodule_search_locations)))


def _expand(patterns: list[str], base: Path, *, file: str | None, key: str) -> list[Path]:
    """The files the patterns match, each real file once.

    A ``**`` pattern is walked by :func:`_walk_glob`, which follows symbolic links to
    folders but never enters a folder it has already walked (``glob`` would follow a link
    loop until the path is too long, reading the same files dozens of times). A file
    reached by a second path (a link, an overlapping pattern) is read once; both are
    named in a warning.
    """
    found: list[Path] = []
    seen: dict[str, Path] = {}
    again: list[tuple[Path, Path]] = []
    loops: list[tuple[Path, Path]] = []
    for pattern in patterns:
        full = Path(pattern).expanduser()
        full = full if full.is_absolute() else base / full
        if "**" in full.parts:
            matches = sorted(_walk_glob(full, loops))
        else:
            matches = sorted(Path(p) for p in glob.glob(str(full)))
        matches = [m for m in matches if m.is_file()] or ([full] if full.is_dir() else [])
        if not matches:
            raise UserError(f"no file matches '{pattern}' (looked in {base}).", file=file, key=key)
        for m in matches:
            real = os.path.realpath(m)
            if real in seen:
                again.append((m, seen[real]))
            else:
                seen[real] = m
                found.append(m)
    where = f"{file}: {key}: " if file else f"{key}: "
    if loops:
        shown = "; ".join(f"'{link}' -> '{target}'" for link, target in loops[:3])
        log.warning("%snot following %d link(s) to folders already walked (a symbolic link "
                    "loop or a second path to them): %s%s", where, len(loops), shown,
                    f" (+{len(loops) - 3} more)" if len(loops) > 3 else "")
    if again:
        shown = "; ".join(f"'{a}' is '{b}'" for a, b in again[:3])
        log.warning("%s%d file(s) matched again under another path, read once: %s%s", where,
                    len(again), shown, f" (+{len(again) - 3} more)" if len(again) > 3 else "")
    return found


def _walk_glob(pattern: Path, loops: list[tuple[Path, Path]]) -> list[Path]:
    """``glob(pattern, recursive=True)`` without walking any real folder twice per pattern
    position; folder links that lead to a folder already walked are recorded in ``loops``
    as ``(link, first path of that folder)``."""
    parts = pattern.parts
    first_magic = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    root = Path(*parts[:first_magic]) if first_magic else Path(".")
    rest = parts[first_magic:]
    out: list[Path] = []
    walked: dict[tuple[str, int], Path] = {}
    todo: list[tuple[Path, int]] = [(root, 0)]
    while todo:
        folder, i = todo.pop()
        state = (os.path.realpath(folder), i)
        if state in walked:
            if rest[i] == "**" and folder.is_symlink():
                loops.append((folder, walked[state]))
            continue
        walked[state] = folder
        comp = rest[i]
        last = i == len(rest) - 1
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:  # not a folder, unreadable, or a dangling link
            continue
        if comp == "**":
            if last:
                out.extend(Path(e.path) for e in entries if not e.name.startswith("."))
            else:
                todo.append((folder, i + 1))  # '**' matching no folder at all
            for e in entries:
                if not e.name.startswith(".") and e.is_dir():
                    todo.append((Path(e.path), i))
            continue
        for e in entries:
            if e.name.startswith(".") and not comp.startswith("."):
                continue
            if fnmatch.fnmatchcase(e.name, comp):
                if last:
                    out.append(Path(e.path))
                elif e.is_dir():
                    todo.append((Path(e.path), i + 1))
    return out


def resolve_files(spec: SourceSpec, base_dir: Path, *, file: str | None, key: str
                  ) -> ResolvedSource:
    """Work out the ``load_dataset`` call for a source and check its local files exist."""
    kwargs = dict(spec.options)
    if spec.type == "package" or (spec.type in ("datasets", "files") and _is_local(spec, base_dir)):
        if spec.type == "package":
            base = package_dir(str(spec.package), file=file, key=f"{key}.package")
            where = f"package '{spec.package}'"
        else:
            base = base_dir
            where = "local files"
        patterns = _patterns(spec)
        files = _expand(patterns, base, file=file,
                        key=f"{key}.data_files" if spec.data_files is not None else f"{key}.path")
        if len(files) == 1 and files[0].is_dir():
            return ResolvedSource("imagefolder", None, {"data_dir": str(files[0]), **kwargs},
                                  [], f"image folder {files[0]}")
        builder = spec.path if spec.path and not _looks_like_path(spec.path, base) else None
        inferred = {_BUILDERS.get(_suffix(f)) for f in files} - {None}
        if builder is not None and inferred and builder not in inferred:
            raise UserError(
                f"'path: {builder}' does not match the data files, which look like "
                f"{', '.join(sorted(inferred))} ({files[0].name}).", file=file, key=f"{key}.path")
        if builder is None:
            kinds = {_BUILDERS.get(_suffix(f)) for f in files}
            if None in kinds:
                bad = next(f for f in files if _BUILDERS.get(_suffix(f)) is None)
                raise UserError(
                    f"cannot tell the format of '{bad.name}' from its extension; give "
                    f"'path: csv|json|parquet|text|imagefolder' explicitly.", file=file, key=key)
            if len(kinds) > 1:
                raise UserError(f"mixes file formats ({', '.join(sorted(kinds))}); use one "
                                "source per format.", file=file, key=key)
            builder = kinds.pop()
            if builder == "csv" and all(_suffix(f) == ".tsv" for f in files):
                kwargs.setdefault("sep", "\t")
        shown = [_relative(f, base) for f in files[:3]]
        return ResolvedSource(builder, [str(f) for f in files], kwargs, files,
                              f"{where}: {', '.join(shown)}"
                              + (f" (+{len(files) - 3} more)" if len(files) > 3 else ""))
    return ResolvedSource(spec.path or "", spec.data_files, kwargs, [],
                          f"dataset '{spec.path}'" + (f" ({spec.name})" if spec.name else ""))


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _patterns(spec: SourceSpec) -> list[str]:
    if spec.data_files is None:
        return [spec.path or ""]
    if isinstance(spec.data_files, str):
        return [spec.data_files]
    if isinstance(spec.data_files, list):
        return list(spec.data_files)
    out: list[str] = []
    for value in spec.data_files.values():
        out.extend([value] if isinstance(value, str) else value)
    return out


def _looks_like_path(text: str, base: Path) -> bool:
    return (text.startswith((".", "/", "~")) or Path(text).suffix.lower() in _BUILDERS
            or (base / text).exists())


def _is_local(spec: SourceSpec, base_dir: Path) -> bool:
    if spec.type == "files":
        return True
    if spec.path and _looks_like_path(spec.path, base_dir):
        return True
    # a builder name such as 'csv' with local data_files
    return spec.path in set(_BUILDERS.values()) | {"imagefolder"} and spec.data_files is not None


def _open(path: Path, mode: str, **kwargs: Any) -> Any:
    """Open a file, decompressing .gz/.bz2/.xz transparently."""
    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(path.suffix.lower(), open)
    return opener(path, mode, **kwargs)


def _open_member(path: Path) -> Any:
    """A text handle on a file, or on the single data file inside a .zip archive (which
    ``datasets`` reads directly, e.g. a CSV shipped zipped)."""
    if path.suffix.lower() == ".zip":
        import zipfile

        archive = zipfile.ZipFile(path)
        members = [m for m in archive.namelist() if not m.endswith("/")]
        if len(members) != 1:
            raise ValueError("peek only single-member archives")
        return io.TextIOWrapper(archive.open(members[0]), encoding="utf-8", errors="replace")
    return _open(path, "rt", encoding="utf-8", errors="replace")


def peek_columns(path: Path, builder: str, kwargs: dict[str, Any]) -> list[str] | None:
    """Column names of a local file read cheaply (header or first record), or None."""
    try:
        if builder == "text":
            return ["text"]
        if builder == "parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        with _open_member(path) as fh:
            if builder == "csv":
                header = fh.readline()
                return next(csv.reader(io.StringIO(header), delimiter=kwargs.get("sep", ",")))
            if builder == "json":
                first = fh.read(1 << 20).lstrip()
                if first.startswith("["):
                    return None
                record = json.loads(first.splitlines()[0])
                field = kwargs.get("field")
                return list(record) if isinstance(record, dict) and not field else None
    except Exception:  # noqa: BLE001 - a peek is best effort; loading reports real errors
        return None
    return None


def check_columns(columns: list[str], spec: SourceSpec, *, file: str | None, key: str,
                  where_from: str) -> None:
    """Raise a UserError naming the first column the recipe uses that is missing."""
    image = spec.modality == "image" or (spec.modality is None and spec.text_column not in
                                          columns and spec.image_column in columns)
    wanted = [("image_column", spec.image_column) if image
              else ("text_column", spec.text_column)]
    if spec.id_column:
        wanted.append(("id_column", spec.id_column))
    wanted += [(f"where.{c}", c) for c in spec.where]
    for name, column in wanted:
        if column not in columns:
            raise UserError(
                f"column '{column}' not found in {where_from}{did_you_mean(column, columns)}; "
                f"columns: {', '.join(columns)}.", file=file, key=f"{key}.{name}")


def _find_undecodable(files: list[Path]) -> tuple[Path, int] | None:
    for f in files:
        offset = 0
        decoder = codecs.getincrementaldecoder("utf-8")()
        with _open(f, "rb") as fh:
            while chunk := fh.read(1 << 20):
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    return f, offset + exc.start
                offset += len(chunk)
    return None


def _load(resolved: ResolvedSource, spec: SourceSpec, *, file: str | None, key: str):
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    call: dict[str, Any] = dict(resolved.kwargs)
    if resolved.data_files is not None:
        call["data_files"] = resolved.data_files
    if spec.name:
        call["name"] = spec.name
    if spec.revision:
        call["revision"] = spec.revision
    try:
        return datasets.load_dataset(resolved.builder, split=spec.split, **call)
    except Exception as exc:  # noqa: BLE001 - translated into one sentence below
        chain, cause = [], exc
        while cause is not None and len(chain) < 10:
            chain.append(cause)
            cause = cause.__cause__ or cause.__context__
        if any(isinstance(c, UnicodeDecodeError) for c in chain):
            bad = _find_undecodable(resolved.local_files)
            where = f"'{bad[0]}' has bytes that are not UTF-8 (at byte {bad[1]})" if bad else \
                "the data has bytes that are not UTF-8"
            raise UserError(
                f"{where}; fix the file or set options.encoding / "
                "options.encoding_errors: replace.", file=file, key=key) from None
        if isinstance(exc, ValueError) and "Unknown split" in str(exc):
            raise UserError(f"{exc}".split("\n")[0], file=file, key=f"{key}.split") from None
        if not resolved.local_files:
            raise UserError(
                f"could not load {resolved.description}: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}. Hub datasets need network "
                "access or a copy in the Hugging Face cache (HF_DATASETS_OFFLINE=1 uses it).",
                file=file, key=f"{key}.path") from None
        raise UserError(
            f"could not read {resolved.description}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}.", file=file, key=key) from None


def _mask_for(values: Sequence[Any], clause: WhereClause, *, column: str = "",
              file: str | None = None, key: str = "") -> np.ndarray:
    """Boolean mask for one column under a ``where`` clause (all its operators must hold),
    computed block by block so a large Arrow column is never converted whole. A comparison
    the column's values cannot make (``gt: 5`` on text) is a UserError naming the key."""
    checks = {
        "eq": lambda v, a: v == a, "ne": lambda v, a: v != a,
        "in_": lambda v, a: v in a, "not_in": lambda v, a: v not in a,
        "gt": lambda v, a: v is not None and v > a, "ge": lambda v, a: v is not None and v >= a,
        "lt": lambda v, a: v is not None and v < a, "le": lambda v, a: v is not None and v <= a,
        "contains": lambda v, a: isinstance(v, str) and a in v,
        "min_length": lambda v, a: isinstance(v, str) and len(v) >= a,
        "max_length": lambda v, a: isinstance(v, str) and len(v) <= a,
    }
    tests = [(checks[name], getattr(clause, name)) for name in clause.model_fields_set]
    mask = np.ones(len(values), dtype=bool)
    for start, block in iter_blocks(values):
        try:
            mask[start:start + len(block)] = [all(bool(test(v, arg)) for test, arg in tests)
                                              for v in block]
        except TypeError:
            _raise_bad_comparison(block, start, tests, clause, column=column, file=file,
                                  key=key)
    return mask


def _raise_bad_comparison(block: Sequence[Any], start: int, tests: list[Any],
                          clause: WhereClause, *, column: str, file: str | None,
                          key: str) -> None:
    """Name the operator and the first row whose value it cannot compare."""
    names = list(clause.model_fields_set)
    for j, value in enumerate(block):
        for name, (test, arg) in zip(names, tests, strict=True):
            try:
                test(value, arg)
            except TypeError:
                shown = repr(value)
                shown = shown if len(shown) <= 40 else shown[:37] + "..."
                op = clause.model_fields[name].alias or name
                hint = (" (for the length of a text use min_length / max_length)"
                        if isinstance(value, str) else "")
                raise UserError(
                    f"'{op}: {arg!r}' cannot be compared with column '{column}', which holds "
                    f"{type(value).__name__} values (row {start + j}: {shown}){hint}.",
                    file=file, key=f"{key}.where.{column}.{op}") from None
    raise UserError(f"the 'where' filter on column '{column}' cannot be applied to its "
                    "values.", file=file, key=f"{key}.where.{column}")


def _empty_texts(texts: Sequence[Any], keep: np.ndarray, *, column: str, file: str | None,
                 key: str) -> np.ndarray:
    """Kept rows whose text is blank; a kept row that is not text at all, or (outside
    Arrow, which holds only valid UTF-8) not valid Unicode, is a UserError."""
    check_unicode = not isinstance(texts, ArrowColumn)
    empty = np.zeros(len(texts), dtype=bool)
    for start, block in iter_blocks(texts):
        for j, text in enumerate(block):
            if not keep[start + j]:
                continue
            if not isinstance(text, str):
                shown = repr(text)
                shown = shown if len(shown) <= 60 else shown[:57] + "..."
                raise UserError(
                    f"column '{column}' must hold text; row {start + j} holds "
                    f"{type(text).__name__} {shown}.", file=file, key=f"{key}.text_column")
            if not text.strip():
                empty[start + j] = True
            elif check_unicode and not text.isascii():
                check_encodable(text, row=start + j, what=f"column '{column}'", file=file,
                                key=f"{key}.text_column")
    return empty


def check_encodable(text: str, *, row: int, what: str, file: str | None, key: str) -> None:
    """Refuse a text that is not valid Unicode (a lone surrogate such as ``\\ud800``, which
    no tokenizer, cache or report can encode as UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UserError(
            f"{what} row {row} holds a lone surrogate {text[exc.start]!r} at character "
            f"{exc.start}, which is not valid Unicode text; remove it or fix the encoding.",
            file=file, key=key) from None


def build_source_data(spec: SourceSpec, table: dict[str, list[Any]], *, seed: int,
                      file: str | None, key: str, origin: dict[str, Any],
                      image_base: Path | None = None) -> SourceData:
    """Apply column mapping, ``where``, empty-text dropping, ``limit`` and ``sample``.

    For an image source (``spec.modality == "image"``) the column is ``image_column``;
    rows without an image count as empty, and only the rows kept are read (relative image
    paths resolve against ``image_base``).
    """
    columns = list(table)
    check_columns(columns, spec, file=file, key=key, where_from=origin.get("description", ""))
    if spec.modality == "image":
        return _build_image_source_data(spec, table, seed=seed, file=file, key=key,
                                        origin=origin, image_base=image_base)
    texts_all = table[spec.text_column]
    n_rows = len(texts_all)
    keep, stats = _where_mask(spec, table, n_rows, file=file, key=key, origin=origin)
    empty = _empty_texts(texts_all, keep, column=spec.text_column, file=file, key=key)
    if empty.any() and not spec.drop_empty:
        i = int(np.flatnonzero(empty)[0])
        raise UserError(f"row {i} has an empty text (set drop_empty: true to drop such rows).",
                        file=file, key=f"{key}.text_column")
    keep &= ~empty
    stats["removed_empty"] = int(empty.sum())
    if empty.any():
        log.warning("%s: %s: dropped %d empty texts", file or "<recipe>", key, int(empty.sum()))
    if not keep.any():
        raise UserError("no rows are left after dropping empty texts.", file=file, key=key)
    rows, ids, meta = _select_rows(spec, table, keep, stats, seed=seed, file=file, key=key)
    return SourceData(
        source_id=str(spec.id), label=spec.label, ids=ids,
        texts=select(texts_all, rows), meta=meta, stats=stats, origin=origin)


def _select_rows(spec: SourceSpec, table: dict[str, Sequence[Any]], keep: np.ndarray,
                 stats: dict[str, int], *, seed: int, file: str | None, key: str
                 ) -> tuple[np.ndarray, Sequence[str], dict[str, Sequence[Any]]]:
    """``limit``, seeded ``sample``, ids and scalar metadata columns for the kept rows.

    Arrow columns come back as views (:mod:`embedforensics.sources.columns`); lists as
    lists.
    """
    rows = np.flatnonzero(keep)
    if spec.limit is not None:
        rows = rows[: spec.limit]
    if spec.sample is not None and spec.sample < len(rows):
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(rows, size=spec.sample, replace=False))
    stats["rows_kept"] = int(len(rows))
    ids: Sequence[str]
    if spec.id_column:
        column = table[spec.id_column]
        ids = (ArrowColumn(column.column, column.rows, convert=str).select(rows)
               if isinstance(column, ArrowColumn) else [str(column[int(i)]) for i in rows])
        dup = first_duplicate(ids)
        if dup is not None:
            raise UserError(f"id column '{spec.id_column}' repeats the id '{dup}'.",
                            file=file, key=f"{key}.id_column")
    else:
        ids = RowIds(str(spec.id), rows)
    meta: dict[str, Sequence[Any]] = {}
    content = spec.image_column if spec.modality == "image" else spec.text_column
    for column_name, values in table.items():
        if column_name == content or len(meta) >= _META_MAX_COLUMNS:
            continue
        if isinstance(values, ArrowColumn):
            if is_scalar_type(values.type):
                meta[column_name] = values.select(rows)
            continue
        picked = [values[int(i)] for i in rows]
        if all(v is None or isinstance(v, (str, int, float, bool)) for v in picked):
            meta[column_name] = picked
    return rows, ids, meta


def _where_mask(spec: SourceSpec, table: dict[str, Any], n_rows: int, *, file: str | None,
                key: str, origin: dict[str, Any]) -> tuple[np.ndarray, dict[str, int]]:
    """Rows kept by ``spec.where`` and the counts behind it; an empty source, or a filter
    that leaves nothing, is a UserError."""
    stats = {"rows_loaded": n_rows}
    if n_rows == 0:
        raise UserError(f"the source is empty ({origin.get('description', '')}).",
                        file=file, key=key)
    keep = np.ones(n_rows, dtype=bool)
    for column, clause in spec.where.items():
        keep &= _mask_for(table[column], clause, column=column, file=file, key=key)
    stats["removed_by_where"] = int(n_rows - keep.sum())
    if spec.where and not keep.any():
        raise UserError(f"no rows are left after the 'where' filter ({n_rows} rows before).",
                        file=file, key=f"{key}.where")
    return keep, stats


def _build_image_source_data(spec: SourceSpec, table: dict[str, list[Any]], *, seed: int,
                             file: str | None, key: str, origin: dict[str, Any],
                             image_base: Path | None) -> SourceData:
    values = table[spec.image_column]
    n_rows = len(values)
    keep, stats = _where_mask(spec, table, n_rows, file=file, key=key, origin=origin)
    missing = values.missing() if isinstance(values, ArrowImageColumn) else \
        np.array([v is None or v == "" for v in values], dtype=bool)
    empty = keep & missing
    if empty.any() and not spec.drop_empty:
        i = int(np.flatnonzero(empty)[0])
        raise UserError(f"row {i} has no image (set drop_empty: true to drop such rows).",
                        file=file, key=f"{key}.image_column")
    keep &= ~empty
    stats["removed_empty"] = int(empty.sum())
    if not keep.any():
        raise UserError("no rows with an image are left.", file=file, key=key)
    rows, ids, meta = _select_rows(spec, table, keep, stats, seed=seed, file=file, key=key)
    images = [make_image_ref(values[i], base_dir=image_base, row=int(i), file=file,
                             key=f"{key}.{'images' if spec.images is not None else 'image_column'}")
              for i in rows]
    # a few file paths for the report's example thumbnails (made when the report is written)
    origin = {**origin, "example_images": [r.path for r in images if r.path][:_N_EXAMPLES]}
    return SourceData(
        source_id=str(spec.id), label=spec.label, ids=ids, texts=[r.name for r in images],
        meta=meta, stats=stats, origin=origin, modality="image", images=images)


def _check_arrow_columns(ds: Any, spec: SourceSpec, resolved: ResolvedSource, *,
                         file: str | None, key: str) -> None:
    """Refuse data that would fail (or be silently misread) later: text columns holding
    bytes that are not UTF-8 (Arrow's JSON reader does not check), and a text column of
    mixed JSON values (``datasets`` keeps those as JSON strings, so dicts and lists would be
    embedded as their JSON text)."""
    import pyarrow as pa

    for name in ds.column_names:
        column = ds.data.column(name)
        col_key = f"{key}.text_column" if name == spec.text_column else key
        if name == spec.text_column and spec.modality != "image" and isinstance(
                column.type, pa.BaseExtensionType):
            row, value = next(((i, v) for i, v in enumerate(_json_values(column))
                               if not isinstance(v, str)), (0, None))
            shown = repr(value)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise UserError(
                f"column '{name}' of {resolved.description} must hold text; row {row} holds "
                f"{type(value).__name__} {shown}.", file=file, key=col_key)
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            continue
        try:
            column.validate(full=True)
        except pa.ArrowInvalid:
            bad = _find_undecodable(resolved.local_files)
            where = (f"'{bad[0]}' has bytes that are not UTF-8 (at byte {bad[1]}, in column "
                     f"'{name}')" if bad else
                     f"column '{name}' of {resolved.description} has bytes that are not UTF-8")
            raise UserError(f"{where}; re-encode the file as UTF-8.", file=file,
                            key=col_key) from None


def _json_values(column: Any) -> Any:
    """The values of an Arrow JSON-extension column, decoded one by one."""
    for chunk in column.chunks:
        storage = getattr(chunk, "storage", chunk)
        for text in storage.to_pylist():
            yield None if text is None else json.loads(text)


class ArrowImageColumn(ArrowColumn):
    """An image column (``{'bytes', 'path'}`` structs or path strings) read row by row from
    Arrow, so only the rows a source keeps are turned into Python objects."""

    def missing(self) -> np.ndarray:
        """True where a row has no image: null, an empty path, or neither bytes nor path."""
        import pyarrow as pa
        import pyarrow.compute as pc

        col = self.column
        out = pc.is_null(col)
        if pa.types.is_struct(col.type):
            names = {f.name for f in col.type}
            if {"bytes", "path"} <= names:
                no_bytes = pc.is_null(pc.struct_field(col, "bytes"))
                no_path = pc.or_kleene(pc.is_null(pc.struct_field(col, "path")),
                                       pc.equal(pc.struct_field(col, "path"), ""))
                out = pc.or_kleene(out, pc.and_kleene(no_bytes, no_path))
        elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            out = pc.or_kleene(out, pc.equal(col, ""))
        return np.asarray(pc.fill_null(out, True).to_numpy(zero_copy_only=False), dtype=bool)


def _resolve_modality(spec: SourceSpec, resolved: ResolvedSource, ds: Any, *,
                      file: str | None, key: str) -> SourceSpec:
    """Settle ``modality``: image for image folders/files, or for a data set with an Image
    column ``image_column`` and no ``text_column``; text otherwise."""
    import datasets

    columns = list(ds.column_names)
    modality = spec.modality
    if modality is None:
        is_image_col = isinstance(ds.features.get(spec.image_column), datasets.Image)
        modality = "image" if resolved.builder == "imagefolder" or (
            spec.text_column not in columns and is_image_col) else "text"
    if modality == "image" and spec.image_column not in columns:
        raise UserError(
            f"image column '{spec.image_column}' not found in {resolved.description}"
            f"{did_you_mean(spec.image_column, columns)}; columns: {', '.join(columns)}.",
            file=file, key=f"{key}.image_column")
    return spec.model_copy(update={"modality": modality})


def load_hf_source(spec: SourceSpec, base_dir: Path, *, seed: int, file: str | None, key: str
                   ) -> SourceData:
    """Load a hub dataset, a builder over data files, local files or package data."""
    resolved = resolve_files(spec, base_dir, file=file, key=key)
    ds = _load(resolved, spec, file=file, key=key)
    if len(ds) == 0:
        raise UserError(f"the source is empty ({resolved.description}).", file=file, key=key)
    spec = _resolve_modality(spec, resolved, ds, file=file, key=key)
    image_base = None
    if spec.modality == "image":
        import datasets

        if isinstance(ds.features[spec.image_column], datasets.Image):
            ds = ds.cast_column(spec.image_column, datasets.Image(decode=False))
        image_base = resolved.local_files[0].parent if resolved.local_files else base_dir
    elif spec.text_column not in ds.column_names:
        check_columns(list(ds.column_names), spec, file=file, key=key,
                      where_from=resolved.description)
    if getattr(ds, "_indices", None) is not None:
        ds = ds.flatten_indices()
    _check_arrow_columns(ds, spec, resolved, file=file, key=key)
    # every column stays in datasets' memory-mapped Arrow: filters read it block by block
    # and the source keeps views of the rows selected (embedforensics.sources.columns),
    # so a corpus of millions of rows is never turned into Python objects whole
    table: dict[str, Any] = {name: ArrowColumn(ds.data.column(name))
                             for name in ds.column_names}
    if spec.modality == "image":
        table[spec.image_column] = ArrowImageColumn(ds.data.column(spec.image_column))
    origin = {
        "description": resolved.description,
        "builder": resolved.builder,
        "files": [str(f) for f in resolved.local_files],
        "split": spec.split,
        "dataset_fingerprint": getattr(ds, "_fingerprint", None),
    }
    return build_source_data(spec, table, seed=seed, file=file, key=key, origin=origin,
                             image_base=image_base)


# The registry names these separately for `ls`; they share one implementation.
load_file_source = load_hf_source
load_package_source = load_hf_source
