"""``heads train`` and ``compare``: train heads over seeds, then compare checkpoints with α̂.

``train_heads`` embeds the recipe's records (through the embedding cache), splits them into a
seeded stratified train/test split, and trains every ``heads:`` group, one head per seed.

``run_compare`` scores the reference ensemble and every candidate on the test set once
(logits cached by model file hash + test-data fingerprint), turns logits into soft outputs
(a logit or logit gap, never probabilities), and reports per candidate: α̂ for each method
with its critical value, accuracy with a Clopper–Pearson CI, churn against each reference
model and the majority vote, ECE with a reliability diagram, and the eCDFs of candidate,
reference and optimal trimming. Each candidate group becomes one entry of ``probes`` in
``results.json``, with its spread (median α̂, fraction flagged) in the metrics. With a
``compare.trntk`` section, :mod:`.trntk_workflow` adds a ``trntk`` entry (kernel surrogates,
faithfulness, attributions and their agreement between models).
"""

from __future__ import annotations

import datetime as _dt
import glob
import hashlib
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedforensics.compare.heads import Scorer, is_checkpoint, load_scorer
from embedforensics.errors import UserError, did_you_mean
from embedforensics.recipe.loader import LoadedRecipe

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

    records: Any
    embeddings: Any
    classes: list[str]
    y: np.ndarray
    train_idx: np.ndarray
    test_idx: np.ndarray
    embedding_fingerprint: str
    split: dict[str, Any]


def prepare(loaded: LoadedRecipe, *, use_cache: bool | None = None, progress: bool = True
            ) -> Prepared:
    """Load and embed the sources (cached) and compute the seeded train/test split."""
    from embedforensics.runner import _embed
    from embedforensics.sources import load_sources

    spec = loaded.recipe
    classes = spec.labels
    if len(classes) < 2:
        raise UserError(f"comparing classifiers needs at least two labels; found {classes}.",
                        file=loaded.file_of("sources"), key="sources")
    records = load_sources(loaded)
    embeddings = _embed(loaded, records, use_cache=use_cache, progress=progress)
    code = {c: i for i, c in enumerate(classes)}
    y = np.array([code[str(v)] for v in embeddings.labels], dtype=np.int64)
    heads = spec.heads
    fraction = heads.test_fraction if heads else 0.3
    split_seed = heads.split_seed if heads and heads.split_seed is not None else spec.seed
    train_idx, test_idx = stratified_split(y, fraction, split_seed)
    model = embeddings.provenance["model"]
    emb_fp = _sha256_json({
        "model": model.get("fingerprint") or model.get("location"),
        **spec.model.model_dump(include={"pooling", "normalize", "prefix", "max_length",
                                         "dtype"})})
    ids = list(embeddings.ids)
    split = {
        "test_fraction": fraction, "seed": split_seed, "n_train": int(train_idx.size),
        "n_test": int(test_idx.size),
        "train_fingerprint": _sha256_json([[ids[i], int(y[i])] for i in train_idx]),
        "test_fingerprint": _sha256_json([[ids[i], int(y[i])] for i in test_idx]),
    }
    return Prepared(records, embeddings, classes, y, train_idx, test_idx, emb_fp, split)


def heads_dir(loaded: LoadedRecipe) -> Path:
    """``heads.dir`` (relative to the recipe) or ``runs/<name>/heads``."""
    heads = loaded.recipe.heads
    if heads is not None and heads.dir:
        path = Path(heads.dir).expanduser()
        return path if path.is_absolute() else loaded.base_dir / path
    return Path(f"runs/{loaded.recipe.name}/heads")


# --------------------------------------------------------------------------- training


def train_heads(loaded: LoadedRecipe, *, use_cache: bool | None = None,
                progress: bool = True) -> list[Path]:
    """Train every ``heads:`` group over its seeds; returns the saved head folders.

    A head whose folder already holds the same settings, seed, classes and training data is
    kept rather than retrained (training is deterministic, so it would come out the same).
    """
    from embedforensics.compare.heads import save_head, train_head

    spec = loaded.recipe.heads
    if spec is None:
        raise UserError("the recipe has no 'heads:' section; add one with at least one group.",
                        file=loaded.file_of("heads"), key="heads")
    data = prepare(loaded, use_cache=use_cache, progress=progress)
    X = data.embeddings.X[data.train_idx]
    y = data.y[data.train_idx]
    root = heads_dir(loaded)
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
                "recipe": loaded.recipe.name,
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


def resolve_models(loaded: LoadedRecipe, ref: str | list[str], key: str, *,
                   require_trained: bool = True) -> list[Path]:
    """Checkpoint folders for a reference: a ``heads`` group name or glob(s) of folders.

    With ``require_trained=False`` a group name is only checked to exist (so misspelt names
    are reported before a missing training run).
    """
    heads = loaded.recipe.heads
    groups = [g.name for g in heads.groups] if heads else []
    file = loaded.file_of(key)
    out: list[Path] = []
    for item in [ref] if isinstance(ref, str) else list(ref):
        if item in groups:
            folder = heads_dir(loaded) / item
            found = sorted(p for p in folder.glob("seed-*") if is_checkpoint(p))
            if not found and require_trained:
                raise UserError(f"heads group '{item}' has no trained heads in '{folder}'; "
                                "run 'embedforensics heads train' on this recipe first.",
                                file=file, key=key)
        elif _GLOB_CHARS & set(item) or (loaded.base_dir / item).exists():
            pattern = str(Path(item).expanduser()) if Path(item).expanduser().is_absolute() \
                else str(loaded.base_dir / item)
            found = sorted(Path(p) for p in glob.glob(pattern) if is_checkpoint(Path(p)))
            if not found:
                raise UserError(f"'{item}' matches no checkpoint folder (a folder with a "
                                f"config.json; looked for {pattern}).", file=file, key=key)
        else:
            hint = did_you_mean(item, groups)
            known = f"; heads groups: {', '.join(groups)}" if groups else \
                "; the recipe has no heads groups"
            raise UserError(f"unknown heads group '{item}'{hint}{known}. Use a group name or "
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


def score_models(loaded: LoadedRecipe, paths: list[Path], data: Prepared, key: str,
                 cache: Any) -> list[Scored]:
    """Logits of every model on the test set, read from / written to the soft-output cache."""
    from embedforensics.engine.cache import cache_key

    cmp = loaded.recipe.compare
    file = loaded.file_of(key)
    test = data.test_idx
    X = data.embeddings.X[test]
    texts = [data.embeddings.texts[i] for i in test] if data.embeddings.texts else []
    max_length = cmp.max_length or loaded.recipe.model.max_length
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
            logits = scorer.logits(X=X, texts=texts, batch_size=cmp.batch_size,
                                   max_length=max_length)
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


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------- comparison


def _model_name(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def _evaluate(scored: Scored, soft: np.ndarray, ref_soft: np.ndarray, ref_pred: np.ndarray,
              y: np.ndarray, cmp: Any, seed: int) -> dict[str, Any]:
    from embedforensics.compare import (
        accuracy,
        alpha_hat,
        churn_against_ensemble,
        expected_calibration_error,
    )

    pred = scored.logits.argmax(axis=1)
    alphas = {}
    for method in cmp.methods:
        try:
            res = alpha_hat(soft, ref_soft, level=cmp.level, method=method,
                            n_bootstrap=cmp.n_bootstrap, seed=seed)
        except ValueError as exc:
            raise UserError(f"α̂ ({method}): {exc}.", key="compare.methods") from None
        alphas[method] = res
    acc = accuracy(y, pred)
    ch = churn_against_ensemble(pred, ref_pred)
    cal = expected_calibration_error(_softmax(scored.logits), y, n_bins=cmp.ece_bins)
    return {"name": _model_name(scored.path), "path": str(scored.path),
            "seed": scored.scorer.config.get("seed"), "cached": scored.cached,
            "alpha": alphas, "accuracy": acc, "churn": ch, "calibration": cal, "soft": soft}


def _median_range(values: list[float]) -> tuple[float, list[float]]:
    arr = np.asarray(values, dtype=float)
    return float(np.median(arr)), [float(arr.min()), float(arr.max())]


def _metric(values: list[float], n: int, method: str, description: str, **extra: Any
            ) -> dict[str, Any]:
    med, rng = _median_range(values)
    return {"value": med, "n": n, "range": rng, "method": method, "description": description,
            **extra}


def _downsample(n: int, k: int = 400) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(int))


def _ecdf_plot(ev: dict[str, Any], method: str, group: str) -> dict[str, Any]:
    res = ev["alpha"][method]
    alpha = res.alpha_hat if res.attainable else None
    fit = res.trimming(alpha) if alpha is not None else res.trimming(0.0)
    keep = _downsample(fit.grid.size)
    x = [float(v) for v in fit.grid[keep]]
    series = [
        {"label": f"reference (pooled, m={res.m})", "x": x,
         "y": [float(v) for v in fit.reference_cdf[keep]], "step": True},
        {"label": f"candidate {ev['name']} (n={res.n})", "x": x,
         "y": [float(v) for v in fit.candidate_cdf[keep]], "step": True},
    ]
    if alpha is not None and alpha > 0:
        series.append({"label": f"optimal {alpha:.3f}-trimming of the candidate", "x": x,
                       "y": [float(v) for v in fit.trimmed_cdf[keep]], "step": True})
    return {"kind": "lines", "title": f"{group}: eCDF of soft outputs, median-α̂ candidate "
            f"({method} α̂ = {res.alpha_hat:.3f})", "xlabel": "soft output",
            "ylabel": "cumulative fraction", "data": {"series": series}}


def _reliability_plot(ev: dict[str, Any], ref_cal: Any, group: str) -> dict[str, Any]:
    def line(cal: Any, label: str) -> dict[str, Any]:
        ok = ~np.isnan(cal.bin_confidence)
        return {"label": label, "x": [float(v) for v in cal.bin_confidence[ok]],
                "y": [float(v) for v in cal.bin_accuracy[ok]], "step": False, "marker": True}

    cal = ev["calibration"]
    return {"kind": "lines", "title": f"{group}: reliability diagram ({cal.n_bins} bins)",
            "xlabel": "mean confidence in bin", "ylabel": "accuracy in bin",
            "data": {"series": [
                {"label": "perfect calibration", "x": [0.0, 1.0], "y": [0.0, 1.0],
                 "step": False, "dashed": True},
                line(ref_cal, f"reference model {ref_cal.name} (ECE {ref_cal.ece:.3f})"),
                line(cal, f"candidate {ev['name']} (ECE {cal.ece:.3f})")]}}


def _group_entry(name: str, evals: list[dict[str, Any]], ref_summary: dict[str, Any],
                 cmp: Any, n_test: int, ref_cal: Any) -> dict[str, Any]:
    k = len(evals)
    methods = list(cmp.methods)
    metrics: dict[str, Any] = {}
    for method in methods:
        values = [e["alpha"][method].alpha_hat for e in evals]
        flagged = [e["alpha"][method].alpha_hat > 0 for e in evals]
        metrics[f"alpha_hat_{method}"] = _metric(
            values, k, f"median over {k} candidates; range min–max",
            f"α̂ ({method} critical value, level {cmp.level}): smallest fraction of the "
            "candidate's soft outputs to trim before a KS test accepts it as the reference")
        metrics[f"flagged_{method}"] = {
            "value": float(np.mean(flagged)), "n": k, "method": "fraction of candidates",
            "description": f"fraction of candidates with α̂ > 0 (untrimmed KS test rejects at "
                           f"level {cmp.level}, {method})"}
    acc = [e["accuracy"] for e in evals]
    med_acc, rng_acc = _median_range([a.accuracy for a in acc])
    metrics["accuracy"] = {
        "value": med_acc, "n": n_test, "range": rng_acc,
        "ci": [float(np.median([a.ci_low for a in acc])),
               float(np.median([a.ci_high for a in acc]))], "ci_level": 0.95,
        "method": f"median over {k} candidates; CI: median of per-candidate Clopper–Pearson",
        "description": "test accuracy"}
    metrics["reference_accuracy"] = ref_summary["accuracy"]
    metrics["churn_vs_majority"] = _metric(
        [e["churn"].against_majority for e in evals], n_test,
        f"median over {k} candidates", "fraction of test points where the candidate's "
        "prediction differs from the reference ensemble's majority vote")
    metrics["churn_vs_reference_mean"] = _metric(
        [e["churn"].mean for e in evals], n_test, f"median over {k} candidates",
        "mean churn against each reference model")
    metrics["reference_pairwise_churn"] = ref_summary["pairwise_churn"]
    metrics["ece"] = _metric([e["calibration"].ece for e in evals], n_test,
                             f"median over {k} candidates, {cmp.ece_bins} equal bins",
                             "expected calibration error of the softmax top-label confidence")
    metrics["reference_ece"] = ref_summary["ece"]

    first = methods[-1]
    rows = []
    for e in evals:
        row: list[Any] = [e["name"], e["seed"]]
        for method in methods:
            res = e["alpha"][method]
            row += [res.alpha_hat, "yes" if res.alpha_hat > 0 else "no", res.p_value_at_zero]
        a, c = e["accuracy"], e["churn"]
        row += [a.accuracy, f"{a.ci_low:.3f}–{a.ci_high:.3f}", c.against_majority, c.mean,
                f"{c.min:.3f}–{c.max:.3f}", e["calibration"].ece]
        rows.append(row)
    columns = ["model", "seed"]
    for method in methods:
        columns += [f"α̂ {method}", f"flagged ({method})", f"KS p ({method})"]
    columns += ["accuracy", "95% CI", "churn vs majority", "churn vs refs (mean)",
                "churn vs refs (min–max)", "ECE"]
    crit_rows = [[m, evals[0]["alpha"][m].critical_value, evals[0]["alpha"][m].threshold,
                  cmp.level, evals[0]["alpha"][m].n, evals[0]["alpha"][m].m,
                  evals[0]["alpha"][m].n_bootstrap] for m in methods]
    order = np.argsort([e["alpha"][first].alpha_hat for e in evals], kind="stable")
    median_ev = evals[int(order[(k - 1) // 2])]
    flagged_frac = metrics[f"flagged_{first}"]["value"]
    others = ", ".join(f"{m} {metrics[f'alpha_hat_{m}']['value']:.3f}" for m in methods
                       if m != first)
    summary = (
        f"{name}: median α̂ {metrics[f'alpha_hat_{first}']['value']:.3f} ({first}"
        + (f"; {others}" if others else "")
        + f"), {flagged_frac:.0%} of {k} candidates flagged at level {cmp.level}; accuracy "
        f"{med_acc:.3f} vs reference {ref_summary['accuracy']['value']:.3f}; churn vs majority "
        f"{metrics['churn_vs_majority']['value']:.3f}.")
    return {
        "probe": f"compare-{name}", "summary": summary,
        "params": {"candidates": k, "methods": methods, "level": cmp.level,
                   "n_bootstrap": cmp.n_bootstrap, "soft_output": cmp.soft_output,
                   "models": [e["path"] for e in evals]},
        "metrics": metrics,
        "tables": {"candidates": {"columns": columns, "rows": rows},
                   "critical_values": {"columns": ["method", "critical value (scaled)",
                                                   "threshold τ (distance)", "level", "n", "m",
                                                   "bootstrap replicates"],
                                       "rows": crit_rows}},
        "plots": [_ecdf_plot(median_ev, first, name),
                  _reliability_plot(median_ev, ref_cal, name)],
    }


def _reference_summary(ref: list[Scored], y: np.ndarray, cmp: Any) -> tuple[dict, Any]:
    from embedforensics.compare import accuracy, churn_against_ensemble, expected_calibration_error

    M = len(ref)
    accs = [accuracy(y, s.logits.argmax(1)) for s in ref]
    cals = [expected_calibration_error(_softmax(s.logits), y, n_bins=cmp.ece_bins)
            for s in ref]
    preds = np.stack([s.logits.argmax(1) for s in ref])
    pair = churn_against_ensemble(preds[0], preds).reference_pairwise_mean if M >= 2 else None
    med_acc, rng_acc = _median_range([a.accuracy for a in accs])
    summary = {
        "accuracy": {"value": med_acc, "n": int(y.size), "range": rng_acc,
                     "ci": [float(np.median([a.ci_low for a in accs])),
                            float(np.median([a.ci_high for a in accs]))], "ci_level": 0.95,
                     "method": f"median over {M} reference models",
                     "description": "reference models' test accuracy"},
        "pairwise_churn": {"value": pair, "n": int(y.size),
                           "method": f"mean over {M * (M - 1) // 2} reference pairs",
                           "description": "churn between two reference models: the baseline "
                                          "for a candidate's churn"},
        "ece": _metric([c.ece for c in cals], int(y.size), f"median over {M} reference models",
                       "reference models' ECE"),
    }
    mid = int(np.argsort([c.ece for c in cals])[(M - 1) // 2])
    return summary, _NamedCal(cals[mid], _model_name(ref[mid].path))


class _NamedCal:
    """A CalibrationResult with the model name, for plot legends."""

    def __init__(self, cal: Any, name: str):
        self._cal, self.name = cal, name

    def __getattr__(self, item: str) -> Any:
        return getattr(self._cal, item)


def run_compare(loaded: LoadedRecipe, output: str | Path | None = None, *,
                use_cache: bool | None = None, progress: bool = True,
                write_reports: bool = True) -> Any:
    """Compare every candidate group with the reference ensemble; write the reports.

    Returns :class:`embedforensics.runner.RunResults` (``results``, ``embeddings``,
    ``output_dir``).
    """
    from embedforensics.engine.cache import EmbeddingCache, default_cache_dir
    from embedforensics.report.schema import DataOut, ProbeOut, RecipeOut, Results, SourceOut
    from embedforensics.runner import RunResults, _length_stats, git_commit, package_versions

    spec = loaded.recipe
    cmp = spec.compare
    if cmp is None:
        raise UserError("the recipe has no 'compare:' section (reference and candidates).",
                        file=loaded.file_of("compare"), key="compare")
    started = _dt.datetime.now(_dt.timezone.utc)
    timings: dict[str, float] = {}
    # resolve every model before the (slow) embedding so naming mistakes fail fast:
    # names and globs first, then whether the named groups have been trained
    resolve_models(loaded, cmp.reference, "compare.reference", require_trained=False)
    for name, ref in cmp.candidates.items():
        resolve_models(loaded, ref, f"compare.candidates.{name}", require_trained=False)
    ref_paths = resolve_models(loaded, cmp.reference, "compare.reference")
    cand_paths = {name: resolve_models(loaded, ref, f"compare.candidates.{name}")
                  for name, ref in cmp.candidates.items()}
    if len(ref_paths) < 2 and ({"bootstrap", "leave-one-out"} & set(cmp.methods)):
        raise UserError(f"the reference has {len(ref_paths)} model; the bootstrap and "
                        "leave-one-out critical values need at least 2.",
                        file=loaded.file_of("compare.reference"), key="compare.reference")
    t0 = time.perf_counter()
    data = prepare(loaded, use_cache=use_cache, progress=progress)
    if cmp.test == "all":
        data.test_idx = np.arange(data.y.size)
    timings["embed"] = time.perf_counter() - t0

    cache_on = spec.output.cache if use_cache is None else use_cache
    cache = None
    if cache_on:
        root = Path(spec.output.cache_dir).expanduser() if spec.output.cache_dir \
            else default_cache_dir()
        cache = EmbeddingCache(root / "soft-outputs")
    t0 = time.perf_counter()
    y = data.y[data.test_idx]
    ref = score_models(loaded, ref_paths, data, "compare.reference", cache)
    cands = {name: score_models(loaded, paths, data, f"compare.candidates.{name}", cache)
             for name, paths in cand_paths.items()}
    timings["score"] = time.perf_counter() - t0
    _warn_overlap(ref + [s for v in cands.values() for s in v], data, cmp.test)

    t0 = time.perf_counter()
    try:
        ref_soft = np.stack([soft_outputs(s.logits, y, cmp.soft_output) for s in ref])
    except ValueError as exc:
        raise UserError(f"{exc}.", file=loaded.file_of("compare.soft_output"),
                        key="compare.soft_output") from None
    ref_pred = np.stack([s.logits.argmax(1) for s in ref])
    ref_summary, ref_cal = _reference_summary(ref, y, cmp)
    probes = []
    per_model: dict[str, list[dict[str, Any]]] = {}
    for name, scored in cands.items():
        evals = [_evaluate(s, soft_outputs(s.logits, y, cmp.soft_output), ref_soft, ref_pred,
                           y, cmp, spec.seed) for s in scored]
        probes.append(_group_entry(name, evals, ref_summary, cmp, int(y.size), ref_cal))
        per_model[name] = [{"model": e["path"], "seed": e["seed"],
                            "alpha_hat": {m: r.to_dict() for m, r in e["alpha"].items()},
                            "accuracy": e["accuracy"].to_dict(),
                            "churn": e["churn"].to_dict(),
                            "calibration": e["calibration"].to_dict()} for e in evals]
    timings["compare"] = time.perf_counter() - t0
    trntk_prov = None
    if cmp.trntk is not None and cmp.trntk.enabled:
        from embedforensics.compare.trntk_workflow import run_trntk

        t0 = time.perf_counter()
        entry, trntk_prov = run_trntk(loaded, data, ref, cands, data.test_idx)
        probes.append(entry)
        timings["trntk"] = time.perf_counter() - t0

    records = data.records
    per_source = data.embeddings.provenance["embedding"]["per_source"]
    data_out = DataOut(
        n=len(records), counts_by_label=records.counts_by_label(),
        sources=[SourceOut(id=s.source_id, label=s.label, rows=len(s), fingerprint=s.fingerprint,
                           stats=s.stats, origin=s.origin,
                           lengths=_length_stats(s.texts, per_source.get(s.source_id, {})))
                 for s in records.sources])
    test_counts = {c: int(np.count_nonzero(y == i)) for i, c in enumerate(data.classes)}
    provenance = {
        **data.embeddings.provenance,
        "seed": spec.seed, "versions": package_versions(),
        "git_commit": git_commit(Path(__file__).parent),
        "command": " ".join(sys.argv), "started": started.isoformat(timespec="seconds"),
        "compare": {
            "classes": data.classes, "soft_output": cmp.soft_output, "test": cmp.test,
            "split": data.split, "n_test": int(y.size), "test_counts": test_counts,
            "embedding_fingerprint": data.embedding_fingerprint,
            "reference": [{"model": str(s.path), "fingerprint": s.scorer.fingerprint,
                           "kind": s.scorer.kind, "cached": s.cached} for s in ref],
            "candidates": {name: [{"model": str(s.path), "fingerprint": s.scorer.fingerprint,
                                   "kind": s.scorer.kind, "cached": s.cached} for s in v]
                           for name, v in cands.items()},
            "reference_summary": ref_summary,
            "per_model": per_model,
            "soft_output_cache": str(cache.root) if cache else None,
            "trntk": trntk_prov,
        },
    }
    results = Results(
        recipe=RecipeOut.from_loaded(loaded),
        data=data_out, probes=[ProbeOut(**p) for p in probes], provenance=provenance,
        timings={k: round(v, 3) for k, v in timings.items()})
    out_dir = None
    if write_reports:
        from embedforensics.report import write_reports as _write

        out_dir = _compare_dir(loaded, output)
        results.provenance["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(
            timespec="seconds")
        _write(results, data.embeddings, out_dir)
    return RunResults(results, data.embeddings, out_dir)


def _compare_dir(loaded: LoadedRecipe, output: str | Path | None) -> Path:
    if output is not None:
        return Path(output)
    cmp = loaded.recipe.compare
    if cmp is not None and cmp.dir:
        path = Path(cmp.dir).expanduser()
        return path if path.is_absolute() else loaded.base_dir / path
    return Path(f"runs/{loaded.recipe.name}/compare")


def _warn_overlap(scored: list[Scored], data: Prepared, test: str) -> None:
    """Warn when a head was trained on a split other than this test split (possible leak)."""
    for s in scored:
        split = s.scorer.config.get("split")
        if s.scorer.input != "embeddings" or not split:
            continue
        if test == "all" or split.get("test_fingerprint") != data.split["test_fingerprint"]:
            log.warning("head %s was trained on a different split than the test set used "
                        "here; its test points may include its training data", s.path)
