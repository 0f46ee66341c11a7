"""Sources read from plain text and HTML files that ``datasets`` has no builder for.

- ``type: records``: text files holding many records separated by a separator line (the
  ``%`` lines of fortune files, ``---`` lines, ...). Columns: ``text``, ``file`` (the file's
  name without extension), ``position`` (the record's number in its file).
- ``type: html``: the text of every ``<p>`` element (or ``options.tag``) of HTML files,
  whitespace-normalised. Columns: ``text``, ``file``, ``position``. With
  ``options.parallel`` (a glob of the same documents in another language, paired with the
  files in sorted order) every paragraph also gets ``parallel_text``, the paragraph at the
  same position of the paired file, and ``same_as_parallel`` (whether the two are equal, e.g.
  an untranslated copy), so ``where: {same_as_parallel: false}`` keeps real translations.
  Files whose paragraph counts differ cannot be aligned by position and are left out
  (counted in the source's stats as ``files_unaligned``).

Files are found like other sources' files: ``data_files`` globs relative to the recipe or,
with ``package:``, inside an installed package, or absolute paths (``/usr/share/...``).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from embedforensics.errors import UserError, did_you_mean
from embedforensics.recipe.schema import SourceSpec
from embedforensics.sources.base import SourceData


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    encoding: str = "utf-8"
    encoding_errors: str = "strict"


class RecordsOptions(_Options):
    separator: str = Field("%", description="A regular expression matching a whole "
                           "separator line.")
    drop_lines: str | None = Field(None, description="A regular expression; lines inside a "
                                   "record that match it are removed (e.g. attributions).")

    @field_validator("separator", "drop_lines")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression ({exc})") from None
        return value


class HtmlOptions(_Options):
    tag: str = Field("p", description="The element whose text makes a record.")
    parallel: str | list[str] | None = Field(
        None, description="Glob(s) of the same documents in another language, paired with "
        "data_files in sorted order.")


def parse_options(spec: SourceSpec, *, file: str | None, key: str) -> Any:
    model = RecordsOptions if spec.type == "records" else HtmlOptions
    try:
        return model.model_validate(spec.options)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = ".".join(str(p) for p in err["loc"])
        allowed = list(model.model_fields)
        if err["type"] == "extra_forbidden":
            message = (f"unknown option '{name}' for a {spec.type} source"
                       f"{did_you_mean(name, allowed)}; options: {', '.join(allowed)}.")
        else:
            message = f"{err['msg'].removeprefix('Value error, ')}; found {err.get('input')!r}."
        raise UserError(message, file=file, key=f"{key}.options.{name}") from None


def find_files(spec: SourceSpec, base_dir: Path, patterns: list[str] | None = None, *,
               file: str | None, key: str) -> list[Path]:
    """The files a records/html source reads (globs, relative to the recipe or package)."""
    from embedforensics.sources.hf import _expand, _patterns, package_dir

    base = package_dir(str(spec.package), file=file, key=f"{key}.package") \
        if spec.package else base_dir
    sub = "data_files" if spec.data_files is not None else "path"
    files = _expand(patterns or _patterns(spec), base, file=file, key=f"{key}.{sub}")
    dirs = [f for f in files if f.is_dir()]
    if dirs:
        raise UserError(f"'{dirs[0]}' is a folder; give file globs such as '{dirs[0]}/*'.",
                        file=file, key=f"{key}.{sub}")
    return files


def _read(path: Path, options: _Options, *, file: str | None, key: str) -> str:
    try:
        return path.read_text(encoding=options.encoding, errors=options.encoding_errors)
    except UnicodeDecodeError as exc:
        raise UserError(f"'{path}' is not {options.encoding} text (byte {exc.start}); set "
                        "options.encoding (e.g. latin-1) or options.encoding_errors: replace.",
                        file=file, key=key) from None
    except LookupError:
        raise UserError(f"unknown encoding '{options.encoding}'.", file=file,
                        key=f"{key}.options.encoding") from None


def split_records(text: str, separator: str, drop_lines: str | None = None) -> list[str]:
    """Split ``text`` on lines that fully match ``separator``; strip each record."""
    sep = re.compile(separator)
    drop = re.compile(drop_lines) if drop_lines else None
    records: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if sep.fullmatch(line.strip()):
            records.append("\n".join(current).strip())
            current = []
        elif drop is None or not drop.search(line):
            current.append(line)
    records.append("\n".join(current).strip())
    return [r for r in records if r]


class _Paragraphs(HTMLParser):
    """Collect the text of every ``tag`` element (nested markup flattened)."""

    def __init__(self, tag: str):
        super().__init__(convert_charrefs=True)
        self.tag = tag
        self.depth = 0
        self.parts: list[str] = []
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == self.tag:
            if self.depth == 0:
                self.parts = []
            self.depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == self.tag and self.depth:
            self.depth -= 1
            if self.depth == 0:
                self.found.append(" ".join("".join(self.parts).split()))

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.parts.append(data)


def html_paragraphs(text: str, tag: str = "p") -> list[str]:
    """The whitespace-normalised text of every ``tag`` element, in document order."""
    parser = _Paragraphs(tag)
    parser.feed(text)
    parser.close()
    return parser.found


def _stem(path: Path) -> str:
    return path.name.split(".")[0]


def _table(spec: SourceSpec, base_dir: Path, *, file: str | None, key: str
           ) -> tuple[dict[str, list[Any]], dict[str, Any], dict[str, int]]:
    options = parse_options(spec, file=file, key=key)
    files = find_files(spec, base_dir, file=file, key=key)
    table: dict[str, list[Any]] = {"text": [], "file": [], "position": []}
    extra_stats: dict[str, int] = {}
    if spec.type == "records":
        for path in files:
            for pos, rec in enumerate(split_records(_read(path, options, file=file, key=key),
                                                    options.separator, options.drop_lines)):
                table["text"].append(rec)
                table["file"].append(_stem(path))
                table["position"].append(pos)
    else:
        pairs: list[Path | None] = [None] * len(files)
        if options.parallel is not None:
            pats = [options.parallel] if isinstance(options.parallel, str) else options.parallel
            other = find_files(spec, base_dir, pats, file=file, key=f"{key}.options.parallel")
            if len(other) != len(files):
                raise UserError(
                    f"options.parallel matches {len(other)} files but data_files matches "
                    f"{len(files)}; they are paired in sorted order, so the counts must agree.",
                    file=file, key=f"{key}.options.parallel")
            pairs = list(other)
            table["parallel_text"] = []
            table["same_as_parallel"] = []
        unaligned = 0
        for path, pair in zip(files, pairs, strict=True):
            paras = html_paragraphs(_read(path, options, file=file, key=key), options.tag)
            if pair is not None:
                other_paras = html_paragraphs(_read(pair, options, file=file, key=key),
                                              options.tag)
                if len(other_paras) != len(paras):
                    unaligned += 1
                    continue
                table["parallel_text"].extend(other_paras)
                table["same_as_parallel"].extend(
                    a == b for a, b in zip(paras, other_paras, strict=True))
            table["text"].extend(paras)
            table["file"].extend([_stem(path)] * len(paras))
            table["position"].extend(range(len(paras)))
        if options.parallel is not None:
            extra_stats["files_unaligned"] = unaligned
    shown = ", ".join(str(f) for f in files[:3]) + (f" (+{len(files) - 3} more)"
                                                    if len(files) > 3 else "")
    origin = {"description": f"{spec.type} from {shown}", "builder": spec.type,
              "files": [str(f) for f in files], "options": options.model_dump()}
    return table, origin, extra_stats


def load_text_source(spec: SourceSpec, base_dir: Path, *, seed: int, file: str | None,
                     key: str) -> SourceData:
    """Load a ``records`` or ``html`` source, then filter and sample as every source does."""
    from embedforensics.sources.hf import build_source_data

    table, origin, extra = _table(spec, base_dir, file=file, key=key)
    if not table["text"]:
        raise UserError(f"no records found in {origin['description']}.", file=file, key=key)
    data = build_source_data(spec, table, seed=seed, file=file, key=key, origin=origin)
    data.stats.update(extra)
    return data


def check_text_source(spec: SourceSpec, base_dir: Path, *, file: str | None, key: str) -> None:
    """Validation: options are valid, files exist, and the columns used are ones we make."""
    from embedforensics.sources.hf import check_columns

    options = parse_options(spec, file=file, key=key)
    find_files(spec, base_dir, file=file, key=key)
    columns = ["text", "file", "position"]
    if spec.type == "html" and options.parallel is not None:
        columns += ["parallel_text", "same_as_parallel"]
    check_columns(columns, spec, file=file, key=key, where_from=f"a {spec.type} source")
