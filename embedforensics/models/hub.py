"""Where model files are and what identifies them: the helpers every model family shares.

One place for: the offline check (Hugging Face's own notion, read at call time), the local
Hugging Face cache lookups, small-file readers over a folder / the hub cache / the hub and
the one JSON reading of them (:func:`read_json`), content fingerprints of model folders and
files, and locating a ``from_pretrained`` model (a local folder or a hub id) with its
fingerprint. Nothing here imports torch or transformers, and nothing here knows about a
particular family.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from embedforensics.errors import UserError
from embedforensics.fileio import file_sha256

#: reads a file of the model (config.json, modules.json, ...) → its text, or None
FileReader = Callable[[str], "str | None"]

FULL_HASH_LIMIT = 2 << 30  # hash whole weight files up to 2 GiB; larger ones are sampled


# ------------------------------------------------------------------ offline, versions
def offline() -> bool:
    """Is the Hugging Face hub off limits? huggingface_hub's own rule, evaluated now.

    ``huggingface_hub.constants.HF_HUB_OFFLINE`` is read once at import; the library then
    refuses every request, so that value counts. The variables are read again here with
    the library's own parser (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``), so a value
    set after import (a test, a notebook) is honoured too.
    """
    from huggingface_hub import constants

    now = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    return bool(constants.HF_HUB_OFFLINE) or constants._is_true(now)


def library_version(name: str) -> str | None:
    """The installed version of the distribution ``name``, or None."""
    try:
        return version(name)
    except PackageNotFoundError:
        return None


# ------------------------------------------------------------------ hashes
def file_digest(path: Path) -> str:
    """sha256 of a model file (files over 2 GiB are sampled; see fileio.file_sha256)."""
    return file_sha256(path, sample_above=FULL_HASH_LIMIT)


def bytes_sha256(path: Path) -> str:
    """sha256 of a small file (a config) read whole."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def directory_fingerprint(path: Path, *, weights: bool = True) -> tuple[str, str | None]:
    """(fingerprint of the whole folder, sha256 of config.json) for a local model folder.

    The fingerprint covers **every regular file** in the folder and its subfolders (names
    and contents), except those that cannot change an embedding (:func:`fingerprinted`):
    hidden entries (``.git``, ``.cache``, ...), documentation (``README*``, ``*.md``,
    ``LICENSE*``), training state (``optimizer.pt``, ``trainer_state.json``, ...) and
    ``checkpoint-N``/``runs`` folders of a Trainer output. So a change to weights, configs
    (``sentence_bert_config.json``, a module's ``config.json``, generation or preprocessor
    configs), tokenizer files of any name (``vocab.txt``, ``merges.txt``, ``*.model``,
    ``special_tokens_map.json``, ``added_tokens.json``), sentence-transformers module
    folders or custom ``*.py`` code changes the key. Files over 2 GiB are sampled
    (:func:`file_digest`), so a folder of large weights still hashes in milliseconds.
    Symlinked files and folders (a Hugging Face snapshot) are followed, each folder once.

    ``weights=False`` returns only the config hash (for folders whose files are already
    identified, such as converted bundled models).
    """
    h = hashlib.sha256()
    config = path / "config.json"
    config_hash = bytes_sha256(config) if config.is_file() else None
    h.update((config_hash or "").encode())
    if not weights:
        return "", config_hash
    for rel, f in fingerprinted(path):
        h.update(b"\x00" + rel.encode("utf-8", "surrogateescape") + b"\x00")
        h.update(file_digest(f).encode())
    return h.hexdigest(), config_hash


#: file names that never change what a model computes (matched case-insensitively)
IGNORED_NAMES = frozenset({
    # training state a transformers Trainer / accelerate writes next to the weights
    "optimizer.pt", "optimizer.bin", "scheduler.pt", "scaler.pt", "rng_state.pth",
    "trainer_state.json", "training_args.bin", "all_results.json", "train_results.json",
    "eval_results.json", "emissions.csv",
    # folder clutter
    "thumbs.db", "desktop.ini"})
#: name prefixes / suffixes of documentation and of per-process training state
IGNORED_PREFIXES = ("readme", "license", "licence", "notice", "copying", "rng_state_")
IGNORED_SUFFIXES = (".md", ".lock", ".log")
#: subfolders that are never part of the model a folder loads (Trainer checkpoints, logs)
IGNORED_DIRS = re.compile(r"^(checkpoint-\d+|runs|logs|wandb|__pycache__)$", re.IGNORECASE)


def fingerprinted(path: Path) -> list[tuple[str, Path]]:
    """``(relative path, file)`` of every file :func:`directory_fingerprint` hashes, sorted
    by relative path (``/``-separated on every system)."""
    found: list[tuple[str, Path]] = []
    seen: set[str] = set()
    for top, dirs, files in os.walk(path, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:  # a symlink loop, or a folder reached twice
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs
                         if not d.startswith(".") and not IGNORED_DIRS.match(d))
        for name in files:
            low = name.lower()
            if (name.startswith(".") or low in IGNORED_NAMES or low.startswith(IGNORED_PREFIXES)
                    or low.endswith(IGNORED_SUFFIXES) or low.endswith(".pyc")):
                continue
            f = Path(top) / name
            if f.is_file():  # follows a symlinked file (hub snapshots); skips sockets etc.
                found.append((f.relative_to(path).as_posix(), f))
    return sorted(found)


def hub_fingerprint(model_id: str, commit: str) -> str:
    """The fingerprint of a hub model at a commit (the commit names its files exactly)."""
    return hashlib.sha256(f"{model_id}@{commit}".encode()).hexdigest()


# ------------------------------------------------------------------ the hub cache
def cached_file(repo_id: str, name: str, revision: str | None) -> Path | None:
    """``name`` of hub repo ``repo_id`` in the local Hugging Face cache, or None (never
    downloads; a malformed id is None too, reported by the caller)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(repo_id, name, revision=revision)
    except Exception:  # noqa: BLE001 - malformed ids are reported by the caller
        return None
    return Path(hit) if isinstance(hit, str) else None


def hub_file(repo_id: str, name: str, revision: str | None) -> Path | None:
    """``name`` of hub repo ``repo_id`` from the cache, or downloaded when online (as
    from_pretrained would), or None (no such file, or offline and not cached)."""
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id, name, revision=revision))
    except Exception:  # noqa: BLE001 - missing file or no network: nothing to read
        return None


def model_file(location: str, revision: str | None, name: str) -> Path | None:
    """A file of a located model (a local folder, or a hub id: :func:`hub_file`), or None
    when the model has no such file."""
    local = Path(location)
    return _folder_file(local, name) if local.is_dir() else hub_file(location, name, revision)


def _folder_file(path: Path, name: str) -> Path | None:
    target = path / name
    return target if target.is_file() else None


def _text_reader(locate: Callable[[str], Path | None],
                 unreadable: tuple[type[Exception], ...] = (OSError,)) -> FileReader:
    """A FileReader: the UTF-8 text of the file ``locate`` finds, None when there is none
    or reading it raises one of ``unreadable``."""

    def read(name: str) -> str | None:
        path = locate(name)
        try:
            return path.read_text(encoding="utf-8") if path is not None else None
        except unreadable:
            return None

    return read


def folder_reader(path: Path) -> FileReader:
    """A FileReader over a local model folder."""
    return _text_reader(lambda name: _folder_file(path, name))


def hub_cache_reader(repo_id: str, revision: str | None) -> FileReader:
    """A FileReader over the local Hugging Face cache (never downloads)."""
    return _text_reader(lambda name: cached_file(repo_id, name, revision))


def hub_download_reader(repo_id: str, revision: str | None) -> FileReader:
    """A FileReader that downloads small files of a hub model (online, uncached models)."""
    # a downloaded file that is not UTF-8 text gives no hint, like a failed download
    return _text_reader(lambda name: hub_file(repo_id, name, revision),
                        unreadable=(OSError, ValueError))


def location_reader(location: str, revision: str | None) -> FileReader:
    """A FileReader over a located model (a local folder, or a hub id read from the cache
    or, online, downloaded): :func:`model_file`'s files as text."""
    return _text_reader(lambda name: model_file(location, revision, name))


def read_json(read: FileReader, name: str, *, invalid: Any = None) -> Any:
    """The parsed JSON of the model's file ``name``: None when it is not there, ``invalid``
    when it is not JSON."""
    text = read(name)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return invalid


# ------------------------------------------------------------------ from_pretrained models
def local_dir(model_id: str, base_dir: Path) -> Path | None:
    """The folder ``model_id`` names (as written, or relative to the recipe), or None."""
    for candidate in (Path(model_id).expanduser(), base_dir / model_id):
        if candidate.is_dir():
            return candidate.resolve()
    return None


@dataclass
class Pretrained:
    """A ``from_pretrained`` model located (not loaded): where it is, what identifies it,
    and a reader for its small files (config.json, modules.json, ...)."""

    location: str  # a local directory or the hub id
    revision: str | None
    fingerprint: str  # "" when not computed, or for an online hub model not cached yet
    source: str  # "local" or "hub"
    config_hash: str | None
    commit: str | None
    name: str  # what family rules match names against: the folder name or the hub id
    read: FileReader


def model_reader(model_id: str, base_dir: Path, revision: str | None) -> FileReader | None:
    """A FileReader over a ``from_pretrained`` model's files without fingerprinting it: its
    folder, the hub cache, or (online) the hub; None when it cannot be had at all."""
    folder = local_dir(model_id, base_dir)
    if folder is not None:
        return folder_reader(folder)
    if model_id.startswith((".", "/", "~")):
        return None
    if cached_file(model_id, "config.json", revision) is not None:
        return hub_cache_reader(model_id, revision)
    return None if offline() else hub_download_reader(model_id, revision)


def cached_revisions(model_id: str) -> list[str]:
    """The revisions of hub repo ``model_id`` in the local Hugging Face cache (branch and
    tag names first, then commit hashes); empty when none is cached."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - a dependency of transformers
        return []
    repo = Path(constants.HF_HUB_CACHE) / ("models--" + model_id.replace("/", "--"))
    refs = sorted(p.name for p in (repo / "refs").glob("*") if p.is_file()) \
        if (repo / "refs").is_dir() else []
    snaps = sorted(p.name for p in (repo / "snapshots").glob("*") if p.is_dir()) \
        if (repo / "snapshots").is_dir() else []
    return refs + [s for s in snaps if s not in refs]


def offline_message(model_id: str, revision: str | None) -> str:
    """Why a hub model cannot be had offline and the one command that fetches it: the
    whole model is missing, or only the requested revision is (other revisions cached)."""
    command = f"hf download {model_id}" + (f" --revision {revision}" if revision else "")
    cached = cached_revisions(model_id)
    if revision and cached:
        shown = ", ".join(c[:12] for c in cached[:4]) + (" ..." if len(cached) > 4 else "")
        return (f"model '{model_id}' is in the Hugging Face cache but not at revision "
                f"'{revision}' (cached: {shown}), and HF_HUB_OFFLINE=1 forbids downloading it; "
                f"fetch that revision with '{command}' while online, or set model.revision to "
                "a cached one.")
    return (f"model '{model_id}' is not available offline (not in the Hugging Face cache "
            f"and HF_HUB_OFFLINE=1); download it with '{command}' while online, point "
            "model.id at a local folder, or use a bundled model ('embedforensics models "
            "ls').")


def locate_pretrained(model_id: str, *, base_dir: Path, revision: str | None,
                      file: str | None, key: str, fingerprint: bool = True) -> Pretrained:
    """Find a ``from_pretrained`` model: a local folder (fingerprinted from its files) or a
    hub id (fingerprinted by the cached commit); raise a one-sentence UserError when it
    cannot be had (a missing folder, or offline and not in the Hugging Face cache)."""
    folder = local_dir(model_id, base_dir)
    if folder is not None:
        if not (folder / "config.json").is_file() and not any(folder.glob("*.gguf")):
            raise UserError(f"the folder '{folder}' has no config.json, so it is not a "
                            "Hugging Face model folder.", file=file, key=key)
        fp, cfg = directory_fingerprint(folder) if fingerprint else ("", None)
        return Pretrained(str(folder), None, fp, "local", cfg, None, folder.name,
                          folder_reader(folder))
    if model_id.startswith((".", "/", "~")):
        raise UserError(f"the model folder '{model_id}' does not exist.", file=file, key=key)
    cached = cached_file(model_id, "config.json", revision)
    if cached is None:
        if offline():
            raise UserError(offline_message(model_id, revision), file=file, key=key)
        return Pretrained(model_id, revision, "", "hub", None, None, model_id,
                          hub_download_reader(model_id, revision))
    commit = cached.parent.name
    return Pretrained(model_id, revision or commit, hub_fingerprint(model_id, commit), "hub",
                      bytes_sha256(cached), commit, model_id,
                      hub_cache_reader(model_id, revision))
