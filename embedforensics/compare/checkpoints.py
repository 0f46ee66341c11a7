"""Checkpoints as a study: heads training, model references, scoring, and comparators.

``heads train`` and ``compare`` run through the study pipeline
(:mod:`embedforensics.study.pipeline`): the recipe's records are loaded and embedded
(cached), split into a seeded stratified train/test split (:func:`prepare`), and then

- :func:`train_heads` trains every ``heads:`` group over its seeds;
- :func:`run_comparison` scores the reference ensemble and every candidate on the test set
  once (logits cached by model file hash + test-data fingerprint, :func:`score_models`),
  hands the scored models to every comparator of the recipe (:class:`CheckpointData`), and
  assembles one ``results.json`` from their results.

Comparators are registered in ``COMPARATORS`` (:mod:`embedforensics.registry`): ``outputs``
(α̂, accuracy, churn, calibration; always run, with the ``compare:`` section's settings),
``trntk`` (with a ``compare.trntk`` section), and any listed in ``compare.comparators``.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedforensics.compare.heads import Scorer, is_checkpoint, is_head, load_scorer
from embedforensics.compare.power import assess
from embedforensics.engine.cache import EmbeddingCache, cache_key
from embedforensics.errors import UserError, did_you_mean
from embedforensics.recipe.compare_spec import OutputsSpec
from embedforensics.registry import COMPARATORS
from embedforensics.study.analysis import Comparator, Outcome
from embedforensics.study.context import StudyContext
from embedforensics.study.pipeline import (
    RunResults,
    StudyData,
    default_output_dir,
    finish,
    load_data,
)

log = logging.getLogger(__name__)

SOFT_CACHE_VERSION = "embedforensics-soft-outputs-v1"
_GLOB_CHARS = set("*?[/\\")


# --------------------------------------------------------------------------- data


def _sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode("utf-8")
                          ).hexdigest()


def stratified_split(y: np.ndarray, test_fraction: float, seed: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split of row indices into (train, test), both sorted."""
    rng = np.random.default_rng([int(seed), 0x5B17])
    test: list[np.ndarray] = []
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        k = int(round(test_fraction * rows.size))
        k = min(max(k, 1), rows.size - 1) if rows.size >= 2 else 0
        test.append(rows[:k])
    test_idx = np.sort(np.concatenate(test)) if test else np.zeros(0, dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(y.size), test_idx)
    return train_idx, test_idx


@dataclass
class Prepared:
    """Records embedded, classes coded, and the split: what both commands start from."""

    data: StudyData
    classes: list[str]
    y: np.ndarray
    train_idx: np.ndarray
    test_idx: np.ndarray
    embedding_fingerprint: str | None
    split: dict[str, Any]

    @property
    def records(self) -> Any:
        return self.data.records

    @property
    def embeddings(self) -> Any:
        return self.data.embeddings

    @property
    def texts(self) -> Any:
        """Every record's text (image rows: the file name), in record order."""
        return self.data.records.texts

    @property
    def ids(self) -> Any:
        return self.data.records.ids


def prepare(ctx: StudyContext, *, embed: bool = True) -> Prepared:
    """Load the sources, embed them (cached; ``embed=False``: not), and compute the seeded
    stratified train/test split."""
    spec = ctx.recipe
    classes = spec.labels
    if len(classes) < 2:
        raise UserError(f"comparing classifiers needs at least two labels; found {classes}.",
                        file=ctx.file_of("sources"), key="sources")
    data = load_data(ctx, embed=embed)
    code = {c: i for i, c in enumerate(classes)}
    y = np.array([code[str(v)] for v in data.records.labels], dtype=np.int64)
    heads = spec.heads
    fraction = heads.test_fraction if heads else 0.3
    split_seed = heads.split_seed if heads and heads.split_seed is not None else spec.seed
    train_idx, test_idx = stratified_split(y, fraction, split_seed)
    ids = list(data.records.ids)
    split = {
        "test_fraction": fraction, "seed": split_seed, "n_train": int(train_idx.size),
        "n_test": int(test_idx.size),
        "train_fingerprint": _sha256_json([[ids[i], int(y[i])] for i in train_idx]),
        "test_fingerprint": _sha256_json([[ids[i], int(y[i])] for i in test_idx]),
    }
    fingerprint = ctx.embedding_fingerprint if data.embeddings is not None else None
    return Prepared(data, classes, y, train_idx, test_idx, fingerprint, split)


def heads_dir(ctx: StudyContext) -> Path:
    """``heads.dir`` (relative to the recipe) or ``runs/<name>/heads``."""
    heads = ctx.recipe.heads
    return default_output_dir(ctx, heads.dir if heads else None,
                              f"runs/{ctx.recipe.name}/heads")


def finetune_dir(ctx: StudyContext) -> Path:
    """``finetune.dir`` (relative to the recipe) or ``runs/<name>/finetune``."""
    finetune = ctx.recipe.finetune
    return default_output_dir(ctx, finetune.dir if finetune else None,
                              f"runs/{ctx.recipe.name}/finetune")


# --------------------------------------------------------------------------- training


def train_heads(ctx: StudyContext) -> list[Path]:
    """Train every ``heads:`` group over its seeds; returns the saved head folders.

    A head whose folder already holds the same settings, seed, classes and training data is
    kept rather than retrained (training is deterministic, so it would come out the same).
    """
    from embedforensics.compare.heads import save_head, train_head

    spec = ctx.recipe.heads
    if spec is None:
        raise UserError("the recipe has no 'heads:' section; add one with at least one group.",
                        file=ctx.file_of("heads"), key="heads")
    data = prepare(ctx)
    X = data.embeddings.X[data.train_idx]
    y = data.y[data.train_idx]
    root = heads_dir(ctx)
    saved: list[Path] = []
    for group in spec.groups:
        settings = group.training_settings()
        started = time.perf_counter()
        reused = 0
        for seed in group.seed_list:
            out = root / group.name / f"seed-{seed:04d}"
            config = {
                "kind": group.kind, "input_dim": int(X.shape[1]), "classes": data.classes,
                "group": group.name, "seed": seed, "training": settings,
                "train_fingerprint": data.split["train_fingerprint"],
                "split": data.split, "embedding_fingerprint": data.embedding_fingerprint,
                "embedding_model": data.embeddings.provenance["model"].get("id"),
                "recipe": ctx.recipe.name,
            }
            if _same_head(out, config):
                reused += 1
                saved.append(out)
                continue
            module, info = train_head(X, y, len(data.classes), settings, seed)
            save_head(out, module, {**config, "train_info": info})
            saved.append(out)
        log.info("heads %s: %d seeds (%d reused) in %.1f s -> %s", group.name, group.seeds,
                 reused, time.perf_counter() - started, root / group.name)
    return saved


def _same_head(out: Path, config: dict[str, Any]) -> bool:
    try:
        old = json.loads((out / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not (out / "model.safetensors").is_file():
        return False
    keys = ("kind", "input_dim", "classes", "seed", "training", "train_fingerprint",
            "embedding_fingerprint")
    return all(json.dumps(old.get(k), sort_keys=True) == json.dumps(config[k], sort_keys=True)
               for k in keys)


# --------------------------------------------------------------------------- models


def resolve_models(ctx: StudyContext, ref: str | list[str], key: str, *,
                   require_trained: bool = True) -> list[Path]:
    """Checkpoint folders for a reference: a ``heads`` or ``finetune`` group name, or
    glob(s) of folders.

    With ``require_trained=False`` a group name is only checked to exist (so misspelt names
    are reported before a missing training run).
    """
    heads, finetune = ctx.recipe.heads, ctx.recipe.finetune
    # group name -> (kind, folder, command that trains it)
    by_name = {g.name: ("heads", heads_dir(ctx), "heads train")
               for g in (heads.groups if heads else [])}
    by_name.update({g.name: ("finetune", finetune_dir(ctx), "finetune train")
                    for g in (finetune.groups if finetune else [])})
    groups = list(by_name)
    file = ctx.file_of(key)
    base_dir = ctx.loaded.base_dir
    out: list[Path] = []
    for item in [ref] if isinstance(ref, str) else list(ref):
        if item in by_name:
            kind, root, command = by_name[item]
            folder = root / item
            found = sorted(p for p in folder.glob("seed-*") if is_checkpoint(p))
            if not found and require_trained:
                what = "trained heads" if kind == "heads" else "fine-tuned checkpoints"
                raise UserError(f"{kind} group '{item}' has no {what} in '{folder}'; "
                                f"run 'embedforensics {command}' on this recipe first.",
                                file=file, key=key)
        elif item.startswith("hub:") or _GLOB_CHARS & set(item) or (base_dir / item).exists():
            # checkpoint folders in any format, or hub:org/name@revision from the HF cache
            from embedforensics.compare import hf_checkpoints as hf

            hints = hf.recipe_hints(ctx)
            if hf.is_hub_reference(item):
                found = [hf.resolve_hub_checkpoint(item, hints, file=file, key=key)]
            else:
                pattern = str(Path(item).expanduser()) \
                    if Path(item).expanduser().is_absolute() else str(base_dir / item)
                found = sorted(hf.checkpoint_path(p, hints) for p in glob.glob(pattern)
                               if is_checkpoint(Path(p)))
                if not found:
                    hub = f"; for a hub model write 'hub:{item}@REVISION'" \
                        if item.count("/") == 1 and not (_GLOB_CHARS - {"/"}) & set(item) \
                        else ""
                    raise UserError(f"'{item}' matches no checkpoint folder (a folder with a "
                                    "config.json or adapter_config.json; looked for "
                                    f"{pattern}){hub}.", file=file, key=key)
            if require_trained:  # every checkpoint has a tokenizer; say which are borrowed
                hf.announce_tokenizers(found, file=file, key=key)
        else:
            hint = did_you_mean(item, groups)
            known = f"; groups: {', '.join(groups)}" if groups else \
                "; the recipe has no heads or finetune groups"
            raise UserError(f"unknown group '{item}'{hint}{known}. Use a group name or "
                            "a glob of checkpoint folders.", file=file, key=key)
        out.extend(p for p in found if p not in out)
    return out


@dataclass
class Scored:
    """One model's logits on the test set, columns in recipe class order."""

    path: Path
    scorer: Scorer
    logits: np.ndarray
    cached: bool


def _check_scorer(scorer: Scorer, data: Prepared, file: str, key: str) -> list[int]:
    if sorted(scorer.classes) != sorted(data.classes) or len(scorer.classes) != len(
            set(scorer.classes)):
        raise UserError(
            f"checkpoint '{scorer.path}' has classes {scorer.classes}, but the recipe's labels "
            f"(the classes) are {data.classes}; they must be the same names (for a Hugging "
            "Face checkpoint set config.id2label).", file=file, key=key)
    if scorer.input == "embeddings":
        if data.embeddings is None:
            raise UserError(f"head '{scorer.path}' scores embeddings, and this recipe has no "
                            "model: to embed with; add the model the head was trained on.",
                            file=file, key=key)
        dim = data.embeddings.X.shape[1]
        if int(scorer.config.get("input_dim", -1)) != dim:
            raise UserError(f"head '{scorer.path}' takes {scorer.config.get('input_dim')}-d "
                            f"inputs but the recipe's embeddings are {dim}-d.", file=file,
                            key=key)
        if scorer.config.get("embedding_fingerprint") != data.embedding_fingerprint:
            raise UserError(f"head '{scorer.path}' was trained on embeddings from another "
                            "model or other embedding settings than this recipe's.",
                            file=file, key=key)
    return [scorer.classes.index(c) for c in data.classes]


def score_models(ctx: StudyContext, paths: list[Path], data: Prepared, key: str,
                 cache: Any) -> list[Scored]:
    """Logits of every model on the test set, read from / written to the soft-output cache."""
    cmp = ctx.recipe.compare
    file = ctx.file_of(key)
    test = data.test_idx
    X = data.embeddings.X[test] if data.embeddings is not None else np.zeros((test.size, 0))
    texts = [data.texts[i] for i in test]
    max_length = cmp.max_length or (ctx.recipe.model.max_length if ctx.recipe.model else None)
    x_fp = hashlib.sha256(np.ascontiguousarray(X, dtype=np.float32).tobytes()).hexdigest()
    t_fp = _sha256_json({"texts": texts, "max_length": max_length})
    out: list[Scored] = []
    for path in paths:
        scorer = load_scorer(path, file=file, key=key)
        order = _check_scorer(scorer, data, file, key)
        data_fp = x_fp if scorer.input == "embeddings" else t_fp
        ck = cache_key(SOFT_CACHE_VERSION, scorer.fingerprint, data_fp)
        hit = cache.load(ck, expected_rows=test.size, text_fingerprint=data_fp) \
            if cache is not None else None
        if hit is not None and hit[0].shape[1] == len(order):
            logits, cached = hit[0], True
        else:
            try:
                logits = scorer.logits(X=X, texts=texts, batch_size=cmp.batch_size,
                                       max_length=max_length)
            except (RuntimeError, IndexError, ValueError) as exc:
                first = (str(exc).strip().splitlines() or [""])[0]
                raise UserError(f"the checkpoint '{path}' fails to score the test rows "
                                f"({type(exc).__name__}: {first}).", file=file,
                                key=key) from None
            bad = int(np.count_nonzero(~np.isfinite(logits)))
            if bad:  # blame the checkpoint, before anything is cached or compared
                raise UserError(f"the checkpoint '{path}' gives {bad} non-finite logit(s) "
                                f"(NaN or inf) on the {test.size} test rows; its weights are "
                                "broken (NaN/inf) or overflow in its dtype.", file=file,
                                key=key)
            cached = False
            if cache is not None:
                cache.save(ck, logits, text_fingerprint=data_fp,
                           info={"model": str(path), "classes": scorer.classes})
        out.append(Scored(path, scorer, np.asarray(logits, dtype=np.float64)[:, order], cached))
    return out


def soft_outputs(logits: np.ndarray, y: np.ndarray, mode: str) -> np.ndarray:
    """Soft outputs from logits ``[n, C]`` (columns in class order); never probabilities.

    ``logit``: class-1 minus class-0 logit (binary only); ``top2_gap``: top-1 minus
    runner-up logit; ``true_class_gap``: true-class logit minus the best other class.
    ``auto``: ``logit`` for two classes, else ``top2_gap``.
    """
    C = logits.shape[1]
    if mode == "auto":
        mode = "logit" if C == 2 else "top2_gap"
    if mode == "logit":
        if C != 2:
            raise ValueError("soft_output 'logit' needs exactly two classes")
        return logits[:, 1] - logits[:, 0]
    if mode == "top2_gap":
        top = np.sort(logits, axis=1)
        return top[:, -1] - top[:, -2]
    rows = np.arange(logits.shape[0])
    true = logits[rows, y]
    other = logits.copy()
    other[rows, y] = -np.inf
    return true - other.max(axis=1)


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of logits."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def model_name(path: Path) -> str:
    """How reports name a model: its ``hub:`` reference, else ``<group folder>/<folder>``."""
    reference = getattr(path, "reference", None)
    return reference if reference else f"{path.parent.name}/{path.name}"


# --------------------------------------------------------------------------- comparison


@dataclass
class CheckpointData:
    """What comparators consume: the prepared data and split, the scored reference
    ensemble and candidate groups (logits on the test rows, in recipe class order)."""

    ctx: StudyContext
    prepared: Prepared
    reference: list[Scored]
    candidates: dict[str, list[Scored]]
    soft_output_cache: str | None = None

    @property
    def y_test(self) -> np.ndarray:
        return self.prepared.y[self.prepared.test_idx]


def comparators(ctx: StudyContext) -> list[Comparator]:
    """The recipe's comparators, in order: ``outputs`` (always, with the ``compare:``
    settings), ``trntk`` (with an enabled ``compare.trntk`` section), then every entry of
    ``compare.comparators``; parameters validated by each comparator's class."""
    cmp = ctx.recipe.compare
    entries: list[tuple[str, dict[str, Any], str]] = [
        ("outputs", cmp.model_dump(include=set(OutputsSpec.model_fields)), "compare")]
    if cmp.trntk is not None and cmp.trntk.enabled:
        entries.append(("trntk", cmp.trntk.model_dump(), "compare.trntk"))
    entries += [(c.name, c.params, f"compare.comparators[{i}]")
                for i, c in enumerate(cmp.comparators)]
    out = []
    for name, raw, key in entries:
        cls = COMPARATORS.get(name)
        comparator = cls(cls.validate_params(raw, file=ctx.file_of(key), key=key))
        comparator.key = key
        out.append(comparator)
    return out


def load_checkpoints(ctx: StudyContext) -> CheckpointData:
    """Resolve the reference and candidate models, prepare the data and split, and score
    every model on the test rows once (through the soft-output cache)."""
    cmp = ctx.recipe.compare
    if cmp is None:
        raise UserError("the recipe has no 'compare:' section (reference and candidates).",
                        file=ctx.file_of("compare"), key="compare")
    # resolve every model before the (slow) embedding so naming mistakes fail fast:
    # names and globs first, then whether the named groups have been trained
    resolve_models(ctx, cmp.reference, "compare.reference", require_trained=False)
    for name, ref in cmp.candidates.items():
        resolve_models(ctx, ref, f"compare.candidates.{name}", require_trained=False)
    ref_paths = resolve_models(ctx, cmp.reference, "compare.reference")
    cand_paths = {name: resolve_models(ctx, ref, f"compare.candidates.{name}")
                  for name, ref in cmp.candidates.items()}
    if len(ref_paths) < 2 and ({"bootstrap", "leave-one-out"} & set(cmp.methods)):
        raise UserError(f"the reference has {len(ref_paths)} model; the bootstrap and "
                        "leave-one-out critical values need at least 2.",
                        file=ctx.file_of("compare.reference"), key="compare.reference")
    # embed only when a head is among the models (checkpoints read the texts themselves)
    heads = any(is_head(p) for p in [*ref_paths, *(p for v in cand_paths.values() for p in v)])
    prepared = prepare(ctx, embed=heads)
    if cmp.test == "all":
        prepared.test_idx = np.arange(prepared.y.size)
    for method in cmp.methods:  # say so before the (slow) scoring
        power = assess(method, n_reference=len(ref_paths), n_test=prepared.test_idx.size,
                       level=cmp.level)
        if power.can_reject is False:
            log.warning("compare: %s; the report says so.", power.reason)

    soft_dir = ctx.cache_dir("soft-outputs")
    cache = EmbeddingCache(soft_dir) if soft_dir is not None else None
    with ctx.timed("score"):
        ref = score_models(ctx, ref_paths, prepared, "compare.reference", cache)
        cands = {name: score_models(ctx, paths, prepared, f"compare.candidates.{name}", cache)
                 for name, paths in cand_paths.items()}
    _warn_overlap(ref + [s for v in cands.values() for s in v], prepared, cmp.test)
    return CheckpointData(ctx, prepared, ref, cands, str(cache.root) if cache else None)


def run_comparison(ctx: StudyContext, *, output: str | Path | None = None,
                   write_reports: bool = True) -> RunResults:
    """``compare``: score every model once, run every comparator, write the reports."""
    analyses = comparators(ctx) if ctx.recipe.compare is not None else []
    inputs = load_checkpoints(ctx)
    cmp, prepared = ctx.recipe.compare, inputs.prepared
    outcome = Outcome()
    compare_prov: dict[str, Any] = {"trntk": None}
    for analysis in analyses:
        # the outputs comparator's time is "compare", as before comparators were plug-ins
        with ctx.timed("compare" if analysis.name == "outputs" else analysis.name):
            one = analysis.run(inputs)
        outcome.results += one.results
        outcome.failures += one.failures
        outcome.warnings += one.warnings
        compare_prov.update(one.provenance)

    y = inputs.y_test
    provenance = {"compare": {
        "classes": prepared.classes, "soft_output": cmp.soft_output, "test": cmp.test,
        "split": prepared.split, "n_test": int(y.size),
        "test_counts": {c: int(np.count_nonzero(y == i))
                        for i, c in enumerate(prepared.classes)},
        "embedding_fingerprint": prepared.embedding_fingerprint,
        "reference": [_describe(s) for s in inputs.reference],
        "candidates": {name: [_describe(s) for s in v]
                       for name, v in inputs.candidates.items()},
        "soft_output_cache": inputs.soft_output_cache,
        "comparators": [a.name for a in analyses],
        **compare_prov,
    }}
    out_dir = None
    if write_reports:
        out_dir = Path(output) if output is not None else default_output_dir(
            ctx, cmp.dir, f"runs/{ctx.recipe.name}/compare")
    return finish(ctx, prepared.data, outcome, out_dir=out_dir, extra_provenance=provenance)


def _describe(s: Scored) -> dict[str, Any]:
    return {"model": str(s.path), "name": model_name(s.path),
            "fingerprint": s.scorer.fingerprint, "kind": s.scorer.kind, "cached": s.cached,
            "tokenizer": s.scorer.config.get("tokenizer")}


def _warn_overlap(scored: list[Scored], data: Prepared, test: str) -> None:
    """Warn when a head was trained on a split other than this test split (possible leak)."""
    for s in scored:
        split = s.scorer.config.get("split")
        if s.scorer.input != "embeddings" or not split:
            continue
        if test == "all" or split.get("test_fingerprint") != data.split["test_fingerprint"]:
            log.warning("head %s was trained on a different split than the test set used "
                        "here; its test points may include its training data", s.path)
