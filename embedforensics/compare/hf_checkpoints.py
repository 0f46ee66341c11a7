"""Hugging Face classifier checkpoints in every common on-disk format, loaded as Scorers.

``compare`` scores fine-tuned ``AutoModelForSequenceClassification`` checkpoints however
they were saved. The format is read from the folder's files (:func:`checkpoint_format`), in
transformers' own order of preference:

- ``safetensors``: ``model.safetensors``;
- ``safetensors-sharded``: ``model.safetensors.index.json`` and the shards its
  ``weight_map`` names;
- ``bin`` / ``bin-sharded``: ``pytorch_model.bin`` (or its index and shards), read with
  ``torch.load(weights_only=True)`` — tensors only, never arbitrary pickled objects (we pass
  ``weights_only=True`` to ``from_pretrained`` explicitly rather than rely on its default);
- ``peft-adapter``: ``adapter_config.json`` + ``adapter_model.safetensors`` (or ``.bin``),
  loaded with ``peft.PeftModel.from_pretrained`` on its base
  ``AutoModelForSequenceClassification`` (the recipe's ``compare.base_model`` when given,
  else the adapter's ``base_model_name_or_path``) and scored merged
  (``merge_and_unload``: the same function, with the parameter names of a full fine-tune,
  which the trNTK comparator's ``params`` refer to). Its classes are the ``id2label`` of a
  ``config.json`` in the adapter folder when there is one (that is the fine-tune's own
  config), else the base model's.

A ``Trainer`` ``checkpoint-N`` folder is one of these plus ``optimizer.pt``,
``scheduler.pt``, ``rng_state.pth``, ``trainer_state.json`` and ``training_args.bin``, which
are never opened. A hub model is written ``hub:org/name@revision`` (revision optional,
default ``main``; a branch, tag or commit) and is read offline from the local Hugging Face
cache — never downloaded — so a comparison is reproducible and a missing model is one
sentence saying how to download it.

**Tokenizers.** transformers silently builds a 5-token default tokenizer for a folder
without tokenizer files (every text becomes ``[UNK]``), so the tokenizer is chosen here,
explicitly, in this order: the checkpoint's own tokenizer files; else its stated base
model's (``compare.base_model``, an adapter's base, or a ``_name_or_path`` in
``config.json`` — written by transformers 4 — when it names a folder or a cached hub
model); else the recipe's ``model:``. The choice is recorded in
``Scorer.config["tokenizer"]["source"]`` (``checkpoint``, ``base:<id>`` or
``recipe model:<id>``) and logged once per recipe entry; with none of them the checkpoint
is a UserError naming the folder.

**Fingerprint** (the soft-output cache key): every weight file and shard index, the
config, the tokenizer files actually used, and for an adapter its files plus the base
model's weights and config, hashed with :func:`embedforensics.fileio.file_sha256` through
:func:`embedforensics.compare.heads.files_fingerprint`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedforensics.compare.heads import Scorer, files_fingerprint
from embedforensics.errors import UserError, first_line
from embedforensics.models.hub import cached_file

log = logging.getLogger(__name__)

HUB_PREFIX = "hub:"
#: weight layouts in transformers' order of preference: (format, file, is an index)
WEIGHT_LAYOUTS = (("safetensors", "model.safetensors", False),
                  ("safetensors-sharded", "model.safetensors.index.json", True),
                  ("bin", "pytorch_model.bin", False),
                  ("bin-sharded", "pytorch_model.bin.index.json", True))
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
#: files that hold a vocabulary: a folder with one of them has a tokenizer of its own
VOCAB_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model",
               "sentencepiece.bpe.model", "sentencepiece.model", "source.spm")
#: every file that changes how a tokenizer splits text (all are hashed when present)
TOKENIZER_FILES = (*VOCAB_FILES, "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "merges.txt", "target.spm")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


# --------------------------------------------------------------------------- references


@dataclass(frozen=True)
class LoadHints:
    """What a recipe says about loading its checkpoints, beyond the folders themselves.

    ``base_dir`` is the recipe's folder (relative base-model folders), ``base_model`` the
    ``compare.base_model`` entry, ``recipe_model_id`` the recipe's ``model.id`` and
    ``recipe_model`` a callable giving that model's local folder (resolved only when a
    checkpoint needs its tokenizer, since resolving may convert a bundled model).
    """

    base_dir: Path
    base_model: str | None = None
    recipe_model_id: str | None = None
    recipe_model: Callable[[], Path | None] | None = field(default=None, compare=False)


class CheckpointPath(type(Path())):  # type: ignore[misc]
    """A checkpoint folder as the recipe named it: a ``Path`` (so every stage that takes
    folders takes it) carrying the recipe's :class:`LoadHints` and, for a hub model, the
    ``hub:`` reference it came from. Paths derived from it (``/``, ``parent``) are plain."""

    hints: LoadHints | None = None
    reference: str | None = None


def checkpoint_path(folder: str | Path, hints: LoadHints | None,
                    reference: str | None = None) -> CheckpointPath:
    """``folder`` as a :class:`CheckpointPath` carrying ``hints`` (and its hub reference)."""
    path = CheckpointPath(folder)
    path.hints = hints
    path.reference = reference
    return path


def recipe_hints(ctx: Any) -> LoadHints:
    """The :class:`LoadHints` of a study context's recipe (``compare.base_model`` and the
    recipe's ``model:``, whose folder is located only when a checkpoint needs it)."""
    recipe = ctx.recipe
    cmp = getattr(recipe, "compare", None)
    model = getattr(recipe, "model", None)

    def recipe_model() -> Path | None:
        resolved = ctx.resolved
        return locate_model(resolved.location, resolved.revision, [ctx.loaded.base_dir])

    return LoadHints(base_dir=ctx.loaded.base_dir,
                     base_model=getattr(cmp, "base_model", None) if cmp else None,
                     recipe_model_id=model.id if model is not None else None,
                     recipe_model=recipe_model if model is not None else None)


def is_hub_reference(item: str) -> bool:
    """Whether a recipe model reference names a hub model (``hub:org/name[@revision]``)."""
    return item.startswith(HUB_PREFIX)


def parse_hub_reference(item: str) -> tuple[str, str | None]:
    """``hub:org/name@revision`` → ``(org/name, revision)`` (revision None when absent);
    ValueError when the repository id is malformed."""
    body = item[len(HUB_PREFIX):] if is_hub_reference(item) else item
    repo, at, revision = body.partition("@")
    if not _REPO_ID.match(repo) or (at and not revision):
        raise ValueError(f"'{item}' is not a hub reference of the form "
                         "hub:org/name or hub:org/name@revision")
    return repo, revision or None


def hub_snapshot(repo_id: str, revision: str | None) -> Path | None:
    """The local Hugging Face cache folder of ``repo_id`` at ``revision`` (a branch, tag or
    commit; default ``main``), or None when it is not cached. Never downloads."""
    for name in ("config.json", ADAPTER_CONFIG):
        hit = cached_file(repo_id, name, revision)
        if hit is not None:
            return hit.parent
    return None


def resolve_hub_checkpoint(item: str, hints: LoadHints | None, *, file: str | None,
                           key: str) -> CheckpointPath:
    """The cached snapshot folder a ``hub:org/name@revision`` reference names; a
    one-sentence UserError when it is malformed or not in the Hugging Face cache."""
    try:
        repo, revision = parse_hub_reference(item)
    except ValueError as exc:
        raise UserError(f"{exc}.", file=file, key=key) from None
    folder = hub_snapshot(repo, revision)
    if folder is None:
        from huggingface_hub import constants

        rev = f" --revision {revision}" if revision else ""
        raise UserError(
            f"hub model '{repo}' at revision '{revision or 'main'}' is not in the local "
            f"Hugging Face cache ({constants.HF_HUB_CACHE}); checkpoints are read offline, so "
            f"download it first with 'hf download {repo}{rev}'.", file=file, key=key)
    return checkpoint_path(folder, hints, item)


def locate_model(ref: str, revision: str | None, search_dirs: list[Path]) -> Path | None:
    """The local folder of a ``from_pretrained`` reference, or None when it cannot be had
    offline: a folder (relative to the first of ``search_dirs`` that has it, else to the
    working folder), else a hub id (``org/name``, ``org/name@revision`` or
    ``hub:org/name@revision``) in the local cache."""
    if not ref:
        return None
    if not is_hub_reference(ref):
        written = Path(ref).expanduser()
        for candidate in (*(d / written for d in search_dirs), written):
            if candidate.is_dir():
                return candidate.resolve()
    try:
        repo, rev = parse_hub_reference(ref)
    except ValueError:
        return None
    return hub_snapshot(repo, rev or revision)


# --------------------------------------------------------------------------- formats


def checkpoint_format(folder: Path) -> str | None:
    """The weight layout of a checkpoint folder (see the module docstring), or None."""
    for fmt, name, _ in WEIGHT_LAYOUTS:
        if (folder / name).is_file():
            return fmt
    if (folder / ADAPTER_CONFIG).is_file() and any((folder / w).is_file()
                                                   for w in ADAPTER_WEIGHTS):
        return "peft-adapter"
    return None


def weight_files(folder: Path, fmt: str, *, file: str | None = None,
                 key: str | None = None) -> list[Path]:
    """Every file holding the weights of a full checkpoint: the single file, or the index
    and each shard it names (a UserError when the index is unreadable or a shard missing)."""
    name, is_index = next((n, i) for f, n, i in WEIGHT_LAYOUTS if f == fmt)
    if not is_index:
        return [folder / name]
    try:
        weight_map = json.loads((folder / name).read_text(encoding="utf-8"))["weight_map"]
        shards = sorted(set(map(str, weight_map.values())))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise UserError(f"checkpoint '{folder}' has an unreadable {name} (no weight_map).",
                        file=file, key=key) from None
    missing = [s for s in shards if not (folder / s).is_file()]
    if missing:
        raise UserError(f"checkpoint '{folder}' is missing the shard '{missing[0]}' that its "
                        f"{name} names.", file=file, key=key)
    return [folder / name, *(folder / s for s in shards)]


def has_tokenizer(folder: Path | None) -> bool:
    """Whether a folder holds a tokenizer's vocabulary (not only a tokenizer config)."""
    return folder is not None and any((folder / f).is_file() for f in VOCAB_FILES)


def tokenizer_files(folder: Path) -> list[Path]:
    """The tokenizer files of a folder that exist, in a fixed order (for the fingerprint)."""
    return [folder / f for f in TOKENIZER_FILES if (folder / f).is_file()]


def _read_json(path: Path, *, file: str | None, key: str | None) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read '{path}': {str(exc).splitlines()[0]}.", file=file,
                        key=key) from None
    if not isinstance(data, dict):
        raise UserError(f"'{path}' is not a JSON object.", file=file, key=key)
    return data


def _classes(config_dir: Path, *, file: str | None, key: str | None
             ) -> tuple[list[str], str | None]:
    """``(classes in id order, model_type)`` from a folder's config (transformers' own
    reading, so a config without ``id2label`` gets transformers' defaults)."""
    from transformers import AutoConfig

    try:
        # never runs a folder's own code (and never prompts for it): refused below
        config = AutoConfig.from_pretrained(str(config_dir), trust_remote_code=False)
        id2label = {int(k): str(v) for k, v in config.id2label.items()}
        classes = [id2label[i] for i in range(len(id2label))]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        _refuse_custom_code(exc, config_dir, file=file, key=key)
        raise UserError(f"cannot read the config of '{config_dir}': "
                        f"{first_line(exc)}", file=file, key=key) from None
    return classes, config.model_type


def _refuse_custom_code(exc: BaseException, folder: Path, *, file: str | None,
                        key: str | None) -> None:
    """Raise the one sentence for a checkpoint that needs its own Python code, which
    ``compare`` never runs (transformers' trust_remote_code), when ``exc`` says so."""
    if "trust_remote_code" in str(exc) or "custom code" in str(exc):
        raise UserError(f"'{folder}' needs its own Python code to load (an auto_map naming "
                        "modeling files, i.e. trust_remote_code); compare never runs a "
                        "checkpoint's code: save it as a standard transformers architecture "
                        "instead.", file=file, key=key) from None


# --------------------------------------------------------------------------- locating


@dataclass
class TokenizerSource:
    """Where a checkpoint's tokenizer comes from: ``source`` as recorded in
    ``Scorer.config["tokenizer"]``, the folder it loads from, and the files hashed."""

    source: str
    folder: Path
    files: list[Path]

    def describe(self) -> dict[str, str]:
        return {"source": self.source, "folder": str(self.folder)}


@dataclass
class Located:
    """A checkpoint found on disk and checked, with nothing loaded: its format, the files
    that make its function (weights, config, adapter, base) and its tokenizer."""

    folder: Path
    format: str
    files: list[Path]  # weights (+ index), config, adapter files, base weights and config
    config_dir: Path  # the folder whose config.json gives the classes
    tokenizer: TokenizerSource
    base: Path | None = None  # an adapter's base model folder
    base_ref: str | None = None
    adapter_weights: Path | None = None
    reference: str | None = None  # hub:org/name@revision when it came from the hub


def locate_checkpoint(directory: str | Path, *, file: str | None = None,
                      key: str | None = None) -> Located:
    """Check a Hugging Face checkpoint folder and find everything it needs (format, shards,
    adapter base, tokenizer) without loading weights; a one-sentence UserError naming the
    folder when something is missing. ``directory`` may be a :class:`CheckpointPath`."""
    hints = getattr(directory, "hints", None) or LoadHints(base_dir=Path.cwd())
    reference = getattr(directory, "reference", None)
    folder = Path(directory)
    fmt = checkpoint_format(folder)
    if fmt is None:
        what = "an adapter_config.json" if (folder / ADAPTER_CONFIG).is_file() \
            else "a config.json"
        raise UserError(f"'{folder}' has {what} but no model.safetensors, sharded index "
                        "(model.safetensors.index.json), pytorch_model.bin or PEFT "
                        "adapter_model.safetensors.", file=file, key=key)
    if fmt == "peft-adapter":
        return _locate_adapter(folder, hints, reference, file=file, key=key)
    config = _read_json(folder / "config.json", file=file, key=key)
    bases: list[str] = []
    if hints.base_model:
        bases.append(hints.base_model)
    name_or_path = config.get("_name_or_path")
    if isinstance(name_or_path, str) and name_or_path and name_or_path not in bases:
        bases.append(name_or_path)
    tokenizer = choose_tokenizer(folder, hints, bases, file=file, key=key)
    files = [*weight_files(folder, fmt, file=file, key=key), folder / "config.json"]
    return Located(folder, fmt, files, folder, tokenizer, reference=reference)


def _locate_adapter(folder: Path, hints: LoadHints, reference: str | None, *,
                    file: str | None, key: str | None) -> Located:
    adapter = _read_json(folder / ADAPTER_CONFIG, file=file, key=key)
    base_ref = hints.base_model or adapter.get("base_model_name_or_path")
    if not isinstance(base_ref, str) or not base_ref:
        raise UserError(f"adapter '{folder}' names no base model (its adapter_config.json has "
                        "no base_model_name_or_path); state it as compare.base_model.",
                        file=file, key=key)
    revision = adapter.get("revision") if base_ref != hints.base_model else None
    base = locate_model(base_ref, revision, [hints.base_dir, folder])
    if base is None:
        raise UserError(f"the base model '{base_ref}' of adapter '{folder}' is neither a folder "
                        "nor in the local Hugging Face cache; download it with "
                        f"'hf download {base_ref}' or state a local folder as "
                        "compare.base_model.", file=file, key=key)
    base_fmt = checkpoint_format(base)
    if base_fmt is None or base_fmt == "peft-adapter" or not (base / "config.json").is_file():
        raise UserError(f"the base model '{base_ref}' of adapter '{folder}' ({base}) is not a "
                        "full Hugging Face model folder (config.json and weights).",
                        file=file, key=key)
    tokenizer = choose_tokenizer(folder, hints, [base_ref], located={base_ref: base},
                                 file=file, key=key)
    weights = next(folder / w for w in ADAPTER_WEIGHTS if (folder / w).is_file())
    own_config = folder / "config.json"
    files = [folder / ADAPTER_CONFIG, weights,
             *([own_config] if own_config.is_file() else []),
             *weight_files(base, base_fmt, file=file, key=key), base / "config.json"]
    config_dir = folder if own_config.is_file() else base
    return Located(folder, "peft-adapter", files, config_dir, tokenizer, base, base_ref,
                   weights, reference)


def choose_tokenizer(folder: Path, hints: LoadHints, bases: list[str], *,
                     located: dict[str, Path] | None = None, file: str | None = None,
                     key: str | None = None) -> TokenizerSource:
    """The tokenizer rule: the checkpoint's own files, else the first stated base model
    that has tokenizer files offline, else the recipe's ``model:``; else a UserError."""
    if has_tokenizer(folder):
        return TokenizerSource("checkpoint", folder, tokenizer_files(folder))
    tried: list[str] = []
    for ref in bases:
        base = (located or {}).get(ref) or locate_model(ref, None, [hints.base_dir, folder])
        if has_tokenizer(base):
            return TokenizerSource(f"base:{ref}", base, tokenizer_files(base))
        tried.append(f"its base model '{ref}' ("
                     f"{'has no tokenizer files' if base else 'not found offline'})")
    if hints.recipe_model is not None:
        model = hints.recipe_model()
        if has_tokenizer(model):
            return TokenizerSource(f"recipe model:{hints.recipe_model_id}", model,
                                   tokenizer_files(model))
        tried.append(f"the recipe model '{hints.recipe_model_id}' (has no tokenizer files)")
    else:
        tried.append("the recipe has no model:")
    raise UserError(f"checkpoint '{folder}' has no tokenizer files and no other source has "
                    f"one ({'; '.join(tried)}); save the tokenizer into the folder or name "
                    "the model it was fine-tuned from as compare.base_model.",
                    file=file, key=key)


def announce_tokenizers(paths: list[Path], *, file: str | None, key: str) -> None:
    """Check the tokenizer of every Hugging Face checkpoint among ``paths`` (a UserError
    when one has none) and log, once per source, those that take a tokenizer other than
    their own — the one place a user learns that a checkpoint borrowed its tokenizer."""
    from embedforensics.compare.heads import is_head

    borrowed: dict[str, list[Path]] = {}
    for path in paths:
        if is_head(Path(path)):
            continue
        source = locate_checkpoint(path, file=file, key=key).tokenizer.source
        if source != "checkpoint":
            borrowed.setdefault(source, []).append(Path(path))
    for source, folders in borrowed.items():
        names = ", ".join(f"'{p}'" for p in folders[:3]) + (" …" if len(folders) > 3 else "")
        kind, _, ref = source.partition(":")
        whose = f"base model '{ref}'" if kind == "base" else f"recipe's model '{ref}'"
        log.warning("%s: %d checkpoint(s) without tokenizer files (%s) use the tokenizer of "
                    "the %s", key, len(folders), names, whose)


# --------------------------------------------------------------------------- loading


def load_hf_checkpoint(directory: str | Path, *, file: str | None = None,
                       key: str | None = None) -> Scorer:
    """A Hugging Face sequence-classification checkpoint (any format above) as a
    :class:`Scorer` scoring texts; the weights load on first use, so a comparison whose
    logits are cached never loads them."""
    found = locate_checkpoint(directory, file=file, key=key)
    classes, model_type = _classes(found.config_dir, file=file, key=key)
    fingerprint = files_fingerprint(*found.files, *found.tokenizer.files)
    config: dict[str, Any] = {"model_type": model_type, "classes": classes,
                              "format": found.format, "tokenizer": found.tokenizer.describe()}
    if found.base is not None:
        config["base_model"] = {"id": found.base_ref, "folder": str(found.base)}
    if found.reference:
        config["hub"] = found.reference
    kind = "hf-peft-adapter" if found.format == "peft-adapter" else "hf-sequence-classification"

    def load() -> tuple[Any, Any]:
        model = _load_model(found, classes, file=file, key=key)
        return model.eval(), _load_tokenizer(found, file=file, key=key)

    return Scorer(Path(directory), kind, classes, fingerprint, "texts", config, _load=load)


def _refused_pickle(exc: BaseException) -> bool:
    """Whether loading failed because torch.load(weights_only=True) met a non-tensor."""
    import pickle

    return isinstance(exc, pickle.UnpicklingError) or "Weights only load failed" in str(exc)


def _load_model(found: Located, classes: list[str], *, file: str | None,
                key: str | None) -> Any:
    import pickle

    from transformers import AutoModelForSequenceClassification

    errors = (OSError, ValueError, KeyError, RuntimeError, pickle.UnpicklingError)
    if found.base is None:
        try:
            # weights_only=True: a pytorch_model.bin may hold tensors only
            return AutoModelForSequenceClassification.from_pretrained(
                str(found.folder), weights_only=True, trust_remote_code=False)
        except errors as exc:
            _refuse_custom_code(exc, found.folder, file=file, key=key)
            if _refused_pickle(exc):
                raise UserError(f"'{found.folder}' holds more than tensors in its "
                                f"{found.files[0].name} (refused: .bin weights are read with "
                                "torch.load(weights_only=True)); convert it to safetensors "
                                "where you trust it.", file=file, key=key) from None
            raise UserError(f"cannot load '{found.folder}' as a sequence-classification "
                            f"checkpoint: {first_line(exc)}", file=file, key=key) from None
    from peft import PeftModel

    labels = dict(enumerate(classes))
    try:
        base, info = AutoModelForSequenceClassification.from_pretrained(
            str(found.base), weights_only=True, trust_remote_code=False,
            num_labels=len(classes), id2label=labels,
            label2id={v: k for k, v in labels.items()}, ignore_mismatched_sizes=True,
            output_loading_info=True)
        # a base classifier with another number of classes: its head is re-made (random)
        mismatched = [k[0] if isinstance(k, tuple) else k
                      for k in info.get("mismatched_keys", ())]
        _check_adapter_covers(found, [*info.get("missing_keys", ()), *mismatched],
                              file=file, key=key)
        model = PeftModel.from_pretrained(base, str(found.folder), is_trainable=False)
    except errors as exc:
        _refuse_custom_code(exc, found.base or found.folder, file=file, key=key)
        raise UserError(f"cannot load the adapter '{found.folder}' on its base model "
                        f"'{found.base_ref}': {first_line(exc)}", file=file, key=key) from None
    merge = getattr(model, "merge_and_unload", None)
    if merge is None:  # PEFT methods that cannot merge (prompt tuning) score unmerged
        return model
    try:
        return merge()
    except (ValueError, NotImplementedError, AttributeError):
        return model


def _check_adapter_covers(found: Located, missing: Any, *, file: str | None,
                          key: str | None) -> None:
    """Refuse an adapter whose base lacks weights (typically the classifier, when the base
    is a plain encoder) that the adapter does not bring either: they would stay random."""
    if not missing:
        return
    weights = found.adapter_weights
    if weights is None:
        return
    if weights.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as f:
            names = list(f.keys())
    else:
        import torch

        names = list(torch.load(str(weights), map_location="cpu", weights_only=True))
    saved = {re.sub(r"^base_model\.model\.", "", n) for n in names}
    uncovered = sorted(m for m in missing if m not in saved)
    if uncovered:
        raise UserError(f"adapter '{found.folder}' leaves '{uncovered[0]}' (and "
                        f"{len(uncovered) - 1} more) of its base '{found.base_ref}' randomly "
                        "initialised: the base has no such weights and the adapter does not "
                        "save them (modules_to_save).", file=file, key=key)


def _load_tokenizer(found: Located, *, file: str | None, key: str | None) -> Any:
    from transformers import AutoTokenizer

    tok = found.tokenizer
    try:
        return AutoTokenizer.from_pretrained(str(tok.folder), trust_remote_code=False)
    except (OSError, ValueError, KeyError) as exc:
        _refuse_custom_code(exc, Path(tok.folder), file=file, key=key)
        raise UserError(f"cannot load the tokenizer of '{found.folder}' from {tok.folder} "
                        f"({tok.source}): {first_line(exc)}", file=file, key=key) from None
