"""Fine-tuning groups: one Hugging Face model fine-tuned over seeds, one checkpoint per seed.

``embedforensics finetune train`` trains every group of a recipe's ``finetune:`` section
(:class:`~embedforensics.recipe.compare_spec.FinetuneGroupSpec`) on the recipe's training
split (the split ``heads train`` and ``compare`` use, :func:`checkpoints.prepare`), with
``transformers.Trainer`` — so the same recipe runs data parallel under ``accelerate
launch`` — and writes each model as a standard folder ``<dir>/<group>/seed-NNNN/``:

- ``config.json`` + ``model.safetensors`` (``save_pretrained`` of an
  ``AutoModelForSequenceClassification``, ``id2label`` = the recipe's classes) and the
  tokenizer files. LoRA groups are saved **merged** (adapters folded into the weights with
  ``merge_and_unload``): every checkpoint is then a plain folder that ``compare``, the trNTK
  comparator and any ``from_pretrained`` read without peft or the base model, at the cost
  of a full-size folder per seed;
- ``embedforensics-finetune.json``: the group's settings, the seed, the base model's id,
  location and fingerprint, the split and training-data fingerprints, the training rows
  (count, noised labels), the Trainer's log (loss, learning rate, steps), the wall time,
  and the sha256 of every other file of the folder.

A folder is written to a temporary sibling and renamed into place, so a killed run leaves
either the finished checkpoint or none. A rerun keeps a checkpoint whose record matches
(settings, seed, classes, base fingerprint, data) and whose files still hash as recorded;
training is deterministic given the seed (``set_seed`` before the new head is made,
``TrainingArguments(seed, data_seed, full_determinism)``), so a run killed mid-group
resumes at the first unfinished seed and ends with the checkpoints an uninterrupted run
writes (byte-identical weights on the same machine and software).

Which weights train (``train``): ``all``; ``head`` — the parameters outside the base model
(``classifier``) plus the base model's pooler (BERT's pooler only feeds the classifier);
or ``k`` — the last ``k`` transformer blocks and the head. With ``lora`` the adapters go
into the targeted modules of all blocks (or the last ``k``), and peft trains the
classification head in full beside them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedforensics.compare.checkpoints import _sha256_json, finetune_dir, prepare
from embedforensics.compare.heads import prepare_training_labels
from embedforensics.errors import UserError
from embedforensics.fileio import file_sha256
from embedforensics.recipe.compare_spec import FinetuneGroupSpec, ShortcutSpec
from embedforensics.study.context import StudyContext

log = logging.getLogger(__name__)

FINETUNE_FORMAT = "embedforensics-finetune-v1"
RECORD_FILE = "embedforensics-finetune.json"
_STALE_TMP_SECONDS = 3600
#: record keys that must match for a checkpoint to be kept on a rerun
_MATCH_KEYS = ("format", "seed", "classes", "settings", "base_fingerprint",
               "train_data_fingerprint", "split")


@dataclass
class Base:
    """Where a group's base model is and what identifies its weights."""

    id: str
    location: str
    revision: str | None
    fingerprint: str | None


def resolve_base(ctx: StudyContext, group: FinetuneGroupSpec, key: str, *,
                 fingerprint: bool = True) -> Base:
    """Locate ``group.base`` like ``model.id`` (bundled ids, hub ids, folders); nothing is
    loaded. ``fingerprint=False`` (validation) only locates it."""
    from embedforensics.models.resolve import resolve_model
    from embedforensics.recipe.schema import ModelSpec

    resolved = resolve_model(ModelSpec(id=group.base, revision=group.revision),
                             base_dir=Path(ctx.loaded.base_dir), file=ctx.file_of(key),
                             key=key, fingerprint=fingerprint)
    return Base(group.base, resolved.location, resolved.revision,
                resolved.fingerprint or resolved.commit)


def check_recipe_finetune(loaded: Any) -> list[UserError]:
    """Validation (``CHECKS``): every group's base model can be located and, for a local
    folder, has at least as many transformer blocks as ``train`` names; nothing loaded."""
    spec = loaded.recipe.finetune
    if spec is None:
        return []
    ctx = StudyContext(loaded)
    problems: list[UserError] = []
    for i, group in enumerate(spec.groups):
        key = f"finetune.groups[{i}]"
        try:
            base = resolve_base(ctx, group, f"{key}.base", fingerprint=False)
        except UserError as exc:
            problems.append(exc)
            continue
        labels = sorted({str(src.label) for src in loaded.recipe.sources})
        if group.shortcut is not None and group.shortcut.label not in labels:
            problems.append(UserError(
                f"shortcut label '{group.shortcut.label}' is not one of the sources' labels "
                f"{labels}.", file=loaded.file_of(f"{key}.shortcut.label"),
                key=f"{key}.shortcut.label"))
        if isinstance(group.train, int):
            layers = _config_layers(Path(base.location))
            if layers is not None and group.train > layers:
                problems.append(UserError(
                    f"{group.train} last blocks, but '{group.base}' has "
                    f"{layers} transformer blocks.", file=loaded.file_of(f"{key}.train"),
                    key=f"{key}.train"))
    return problems


def _config_layers(folder: Path) -> int | None:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = config.get("num_hidden_layers") if isinstance(config, dict) else None
    return value if isinstance(value, int) else None


# --------------------------------------------------------------------------- the command


def train_finetunes(ctx: StudyContext) -> list[Path]:
    """Train every ``finetune:`` group over its seeds; returns the checkpoint folders.

    A checkpoint whose record matches (see the module docstring) is kept, not retrained.
    """
    spec = ctx.recipe.finetune
    if spec is None:
        raise UserError("the recipe has no 'finetune:' section; add one with at least one "
                        "group.", file=ctx.file_of("finetune"), key="finetune")
    bases = [resolve_base(ctx, g, f"finetune.groups[{i}].base")
             for i, g in enumerate(spec.groups)]  # fail before loading any data
    data = prepare(ctx, embed=False)
    texts = [str(data.texts[i]) for i in data.train_idx]
    y = data.y[data.train_idx]
    train_fp = _sha256_json({"texts": texts, "labels": y.tolist(), "classes": data.classes})
    root = finetune_dir(ctx)
    main = _is_main_process()
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    if not (ctx.progress and main):  # quiet: no loading/saving bars from transformers either
        hf_logging.disable_progress_bar()
    try:
        return _train_groups(ctx, spec.groups, bases, data, texts, y, train_fp, root, main)
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def _train_groups(ctx: StudyContext, groups: list[FinetuneGroupSpec], bases: list[Base],
                  data: Any, texts: list[str], y: np.ndarray, train_fp: str, root: Path,
                  main: bool) -> list[Path]:
    from tqdm.auto import tqdm

    saved: list[Path] = []
    for i, (group, base) in enumerate(zip(groups, bases, strict=True)):
        key = f"finetune.groups[{i}]"
        folder = root / group.name
        if main:
            _remove_stale_tmp(folder)
        started = time.perf_counter()
        reused = 0
        seeds = tqdm(group.seed_list, desc=f"finetune {group.name}", unit="seed",
                     disable=not (ctx.progress and main))
        for seed in seeds:
            out = folder / f"seed-{seed:04d}"
            record = {
                "format": FINETUNE_FORMAT, "recipe": ctx.recipe.name, "group": group.name,
                "seed": seed, "classes": data.classes, "settings": group.training_settings(),
                "base": {"id": base.id, "location": base.location, "revision": base.revision},
                "base_fingerprint": base.fingerprint, "train_data_fingerprint": train_fp,
                "split": data.split,
            }
            if same_checkpoint(out, record):
                reused += 1
            else:
                train_checkpoint(out, texts, y, data.classes, group, base, seed, record,
                                 progress=ctx.progress and main, key=key,
                                 file=ctx.file_of(key))
            saved.append(out)
        log.info("finetune %s: %d seeds (%d reused) in %.1f s -> %s", group.name,
                 group.seeds, reused, time.perf_counter() - started, folder)
    return saved


def same_checkpoint(out: Path, record: dict[str, Any]) -> bool:
    """Whether ``out`` holds a finished checkpoint trained with ``record``'s settings, seed,
    base and data, and its files still hash as recorded (a damaged one is retrained)."""
    try:
        old = json.loads((out / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(old, dict) or not isinstance(old.get("files"), dict):
        return False
    if any(json.dumps(old.get(k), sort_keys=True, default=str)
           != json.dumps(record[k], sort_keys=True, default=str) for k in _MATCH_KEYS):
        return False
    try:
        return all(file_sha256(out / name) == digest for name, digest in old["files"].items())
    except OSError:
        return False


def _is_main_process() -> bool:
    from embedforensics.engine.distributed import Workers

    return Workers().is_main


def _remove_stale_tmp(folder: Path) -> None:
    """Delete temporary checkpoint folders a killed run left, once they are an hour old
    (a younger one may belong to a run still writing)."""
    if not folder.is_dir():
        return
    now = time.time()
    for tmp in folder.glob(".tmp-*"):
        try:
            if now - tmp.stat().st_mtime > _STALE_TMP_SECONDS:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass


# --------------------------------------------------------------------------- one seed


def train_checkpoint(out: Path, texts: list[str], y: np.ndarray, classes: list[str],
                     group: FinetuneGroupSpec, base: Base, seed: int,
                     record: dict[str, Any], *, progress: bool = True,
                     key: str = "finetune", file: str | None = None) -> Path:
    """Fine-tune ``base`` on ``texts``/``y`` with ``group``'s settings and ``seed`` and write
    the checkpoint folder ``out`` atomically (on the main process); returns ``out``."""
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        PrinterCallback,
        ProgressCallback,
        Trainer,
        TrainingArguments,
        set_seed,
    )
    from transformers.utils import logging as hf_logging

    started = time.perf_counter()
    idx, labels = prepare_training_labels(
        y, len(classes), label_noise=group.label_noise, train_fraction=group.train_fraction,
        seed=seed)
    revision = {"revision": base.revision} if base.revision and not Path(
        base.location).is_dir() else {}
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized: classifier" is the point here
    try:
        tokenizer = AutoTokenizer.from_pretrained(base.location, **revision)
        set_seed(seed)  # the new head's initial weights
        model = AutoModelForSequenceClassification.from_pretrained(
            base.location, num_labels=len(classes), id2label=dict(enumerate(classes)),
            label2id={c: i for i, c in enumerate(classes)}, ignore_mismatched_sizes=True,
            **revision)
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"cannot load '{base.id}' as a sequence classifier to fine-tune: "
                        f"{str(exc).splitlines()[0]}", file=file, key=f"{key}.base") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    model = _select_trainable(model, group, key=key, file=file)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())

    from datasets import Dataset

    train_texts = [texts[i] for i in idx]
    if group.shortcut is not None:
        train_texts = plant_shortcut(train_texts, labels, classes, group.shortcut, seed,
                                     key=f"{key}.shortcut", file=file)
    enc = tokenizer(train_texts, truncation=True, max_length=group.max_length)
    dataset = Dataset.from_dict({**{k: list(v) for k, v in enc.items()},
                                 "labels": labels.tolist()})

    from embedforensics.engine.distributed import Workers

    world = Workers().world  # processes under accelerate launch / torchrun (1 otherwise)
    if group.batch_size % world:
        raise UserError(f"{key}.batch_size {group.batch_size} is not divisible by the "
                        f"{world} processes; choose a multiple of {world}.", file=file,
                        key=f"{key}.batch_size")
    per_device = group.batch_size // world
    steps_per_epoch = -(-len(idx) // group.batch_size)
    total_steps = group.max_steps or int(np.ceil(steps_per_epoch * group.epochs))
    work = out.parent / f".tmp-{out.name}-{os.getpid()}"
    optimizer = None
    if group.optimizer == "sgd":
        optimizer = (torch.optim.SGD, {"lr": group.lr, "momentum": group.momentum})
    schedule = {"constant": "constant_with_warmup"}.get(group.schedule, group.schedule)
    args = TrainingArguments(
        output_dir=str(work / "trainer"), seed=seed, data_seed=seed, full_determinism=True,
        per_device_train_batch_size=per_device, num_train_epochs=group.epochs,
        max_steps=group.max_steps or -1, learning_rate=group.lr, lr_scheduler_type=schedule,
        warmup_steps=int(round(group.warmup_ratio * total_steps)),
        weight_decay=group.weight_decay, optim="adamw_torch", save_strategy="no",
        logging_strategy="steps", logging_steps=max(1, min(50, total_steps // 20)),
        report_to=[], use_cpu=not torch.cuda.is_available(), disable_tqdm=not progress,
        dataloader_num_workers=0, remove_unused_columns=False)
    class StepBar(ProgressCallback):
        """Trainer's progress bar over steps, without printing every log line."""

        def on_log(self, *args: Any, **kwargs: Any) -> None:
            return None

    deterministic = torch.are_deterministic_algorithms_enabled()
    try:  # the temporary folder goes whatever happens (a SIGKILL leaves it: see _remove_stale_tmp)
        try:
            trainer = Trainer(model=model, args=args, train_dataset=dataset,
                              data_collator=DataCollatorWithPadding(tokenizer),
                              optimizer_cls_and_kwargs=optimizer)
            # the loss log goes to the record; the step bar stays, without printed logs
            trainer.remove_callback(PrinterCallback)
            if trainer.pop_callback(ProgressCallback) is not None:
                trainer.add_callback(StepBar())
            result = trainer.train()
        finally:
            torch.use_deterministic_algorithms(deterministic)
        _finish(out, work, trainer, result, tokenizer, group, record, idx, labels, y,
                trainable, total, world, started)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def plant_shortcut(texts: list[str], labels: np.ndarray, classes: list[str],
                   shortcut: ShortcutSpec, seed: int, *, key: str = "shortcut",
                   file: str | None = None) -> list[str]:
    """Insert ``shortcut.token`` into a seeded ``shortcut.fraction`` of the texts whose
    training label is ``shortcut.label`` (at the start or the end, as a separate word).

    The selection is exact (``round(fraction × count)`` texts) and depends on ``seed``
    only, so the same seed plants the cue in the same texts.
    """
    if shortcut.label not in classes:
        raise UserError(f"shortcut label '{shortcut.label}' is not one of the classes "
                        f"{classes}.", file=file, key=f"{key}.label")
    target = classes.index(shortcut.label)
    rows = np.flatnonzero(np.asarray(labels) == target)
    rng = np.random.default_rng([int(seed), 0x5C07])
    n = int(round(shortcut.fraction * rows.size))
    chosen = set(rng.permutation(rows)[:n].tolist())
    out = list(texts)
    for i in chosen:
        out[i] = (f"{shortcut.token} {out[i]}" if shortcut.position == "start"
                  else f"{out[i]} {shortcut.token}")
    return out


def _finish(out: Path, work: Path, trainer: Any, result: Any, tokenizer: Any,
            group: FinetuneGroupSpec, record: dict[str, Any], idx: np.ndarray,
            labels: np.ndarray, y: np.ndarray, trainable: int, total: int, world: int,
            started: float) -> None:
    """Merge LoRA adapters, and on the main process write the checkpoint and its record."""
    model = trainer.model
    if group.lora is not None:
        model = model.merge_and_unload()
    if trainer.is_world_process_zero():
        info = {
            "n_train": int(idx.size), "n_noisy_labels": int(np.count_nonzero(labels != y[idx])),
            "train_rows_fingerprint": _sha256_json([idx.tolist(), labels.tolist()]),
            "steps": int(trainer.state.global_step), "epochs": trainer.state.epoch,
            "final_loss": result.training_loss, "trainable_parameters": int(trainable),
            "parameters": int(total), "world_size": world,
            "device": str(trainer.args.device),
            "log": [{k: v for k, v in row.items()} for row in trainer.state.log_history],
            "wall_seconds": round(time.perf_counter() - started, 3),
            "versions": _versions(),
        }
        _write_checkpoint(out, work, model, tokenizer, {**record, "training": info})
    trainer.accelerator.wait_for_everyone()


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in ("torch", "transformers", "peft", "accelerate"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _write_checkpoint(out: Path, work: Path, model: Any, tokenizer: Any,
                      record: dict[str, Any]) -> None:
    """Save into the temporary folder ``work``, record every file's sha256, then move it to
    ``out`` (an old ``out`` is moved aside first and deleted after)."""
    final = work / "checkpoint"
    model.save_pretrained(str(final))
    tokenizer.save_pretrained(str(final))
    record["files"] = {p.name: file_sha256(p) for p in sorted(final.iterdir()) if p.is_file()}
    (final / RECORD_FILE).write_text(
        json.dumps(record, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    for path in final.iterdir():
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    old = None
    if out.exists():
        old = out.parent / f".tmp-old-{out.name}-{os.getpid()}"
        os.replace(out, old)
    os.replace(final, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _select_trainable(model: Any, group: FinetuneGroupSpec, *, key: str,
                      file: str | None) -> Any:
    """Freeze what ``group.train`` leaves out, or wrap the model with LoRA adapters."""
    n_blocks, block_names = _blocks(model)
    k = group.train if isinstance(group.train, int) else None
    if k is not None and (n_blocks is None or k > n_blocks):
        have = "no list of transformer blocks" if n_blocks is None else f"{n_blocks} blocks"
        raise UserError(f"{k} last blocks, but '{group.base}' has {have}.",
                        file=file, key=f"{key}.train")
    if group.lora is not None:
        from peft import LoraConfig, TaskType, get_peft_model

        config = LoraConfig(
            task_type=TaskType.SEQ_CLS, r=group.lora.rank, lora_alpha=group.lora.alpha,
            lora_dropout=group.lora.dropout, target_modules=group.lora.target_modules,
            layers_to_transform=list(range(n_blocks - k, n_blocks)) if k else None)
        try:
            return get_peft_model(model, config)
        except ValueError as exc:
            raise UserError(f"peft refused the adapters: {str(exc).splitlines()[0]}",
                            file=file, key=f"{key}.lora") from None
    if group.train == "all":
        return model
    prefix = getattr(model, "base_model_prefix", "")
    keep = [f"{prefix}.pooler."] + [f"{prefix}.{name}." for name in block_names[
        len(block_names) - (k or 0):]]
    for name, param in model.named_parameters():
        head = not (prefix and name.startswith(prefix + "."))
        param.requires_grad_(head or any(name.startswith(p) for p in keep))
    return model


def _blocks(model: Any) -> tuple[int | None, list[str]]:
    """The transformer blocks of the base model: the ``ModuleList`` with
    ``config.num_hidden_layers`` entries (e.g. BERT's ``encoder.layer``), as names relative
    to the base model."""
    from torch import nn

    n = getattr(model.config, "num_hidden_layers", None)
    base = getattr(model, "base_model", model)
    for name, module in base.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0 and (
                n is None or len(module) == n):
            return len(module), [f"{name}.{i}" for i in range(len(module))]
    return None, []
