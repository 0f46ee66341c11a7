"""Run a recipe end to end: sources → embeddings → probes → reports.

One direction, each stage consuming the previous stage's plain data object. A probe that
fails on the data (too few rows for its folds, say) does not discard the others: its error
is recorded, the reports are still written, and the run ends with a UserError so the exit
code says something went wrong.
"""

from __future__ import annotations

import datetime as _dt
import logging
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from embedforensics.errors import UserError
from embedforensics.recipe.loader import LoadedRecipe, load_recipe

log = logging.getLogger(__name__)

_VERSIONED = ("embedforensics", "torch", "transformers", "datasets", "accelerate",
              "scikit-learn", "scipy", "numpy", "pydantic", "safetensors")


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def git_commit(path: Path) -> str | None:
    """The commit of the git checkout containing ``path`` (with '+dirty'), if any."""
    try:
        commit = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=5, check=True)
        dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


@dataclass
class RunResults:
    """What ``run`` returns: the results object, the embeddings and where reports went."""

    results: Any  # embedforensics.report.schema.Results
    embeddings: Any  # embedforensics.engine.embed.EmbeddingSet
    output_dir: Path | None

    def __getitem__(self, key: str) -> Any:
        return self.results.model_dump(by_alias=True)[key]

    def metric(self, probe: str, name: str) -> float | None:
        """Shortcut: the value of metric ``name`` of the first probe called ``probe``."""
        for p in self.results.probes:
            if p.probe == probe and name in p.metrics:
                return p.metrics[name].value
        raise KeyError(f"no metric {name!r} for probe {probe!r}")


def _length_stats(texts: list[str], token_info: dict[str, Any]) -> dict[str, float]:
    """Per-source text lengths: characters (mean, sd, quartiles, range), words, tokens."""
    chars = np.array([len(t) for t in texts], dtype=float)
    words = np.array([len(t.split()) for t in texts], dtype=float)
    q25, q75 = np.quantile(chars, [0.25, 0.75])
    return {
        "chars_mean": float(chars.mean()), "chars_median": float(np.median(chars)),
        "chars_sd": float(chars.std(ddof=1)) if len(chars) > 1 else 0.0,
        "chars_q25": float(q25), "chars_q75": float(q75),
        "chars_min": float(chars.min()), "chars_max": float(chars.max()),
        "words_mean": float(words.mean()),
        "tokens_mean": float(token_info.get("mean_tokens", float("nan"))),
        "truncated": float(token_info.get("n_truncated", 0)),
    }


def _embed(loaded: LoadedRecipe, records: Any, *, use_cache: bool | None, progress: bool,
           mmap_bytes: int | None = None, assemble: bool = True) -> Any:
    from embedforensics.engine.cache import default_cache_dir
    from embedforensics.engine.embed import embed_records
    from embedforensics.models.resolve import effective_spec, resolve_model

    spec = loaded.recipe
    resolved = resolve_model(spec.model, base_dir=loaded.base_dir,
                             file=loaded.file_of("model.id"))
    cache_on = spec.output.cache if use_cache is None else use_cache
    cache_dir = None
    if cache_on:
        cache_dir = Path(spec.output.cache_dir).expanduser() if spec.output.cache_dir \
            else default_cache_dir()
    model, auto = effective_spec(spec.model, resolved, file=loaded.file_of("model.pooling"))
    embeddings = embed_records(records, model, resolved, cache_dir=cache_dir,
                               progress=progress, mmap_bytes=mmap_bytes,
                               assemble=assemble)
    # which settings came from the model family's defaults (embedforensics.models.defaults)
    # (image-text embedders name their own family: open_clip or transformers)
    embeddings.provenance["model"].setdefault("family", resolved.family)
    embeddings.provenance["model"]["auto_settings"] = auto
    return embeddings


def embed(recipe: LoadedRecipe | str | Path, *, overrides: list[str] | None = None,
          use_cache: bool | None = None, progress: bool = True,
          mmap_bytes: int | None = None, assemble: bool = True) -> Any:
    """Load a recipe's sources and embed them (through the cache); no probes, no reports.

    Returns an :class:`~embedforensics.engine.embed.EmbeddingSet`. Results larger than
    ``mmap_bytes`` (default 4 GiB) are assembled in memory-mapped files, not in RAM.
    ``assemble=False`` only fills the cache (an accelerate worker that is not the main
    process does this); the returned set then has no rows in ``X``.
    """
    from embedforensics.sources import load_sources

    loaded = recipe if isinstance(recipe, LoadedRecipe) else load_recipe(recipe, overrides)
    return _embed(loaded, load_sources(loaded, use_cache=use_cache), use_cache=use_cache,
                  progress=progress, mmap_bytes=mmap_bytes, assemble=assemble)


def run(recipe: LoadedRecipe | str | Path, *, output: str | Path | None = None,
        overrides: list[str] | None = None, use_cache: bool | None = None,
        progress: bool = True, write_reports: bool = True) -> RunResults:
    """Run a recipe (a path or the result of ``load_recipe``) and write its reports.

    Returns a :class:`RunResults`. Raises :class:`~embedforensics.errors.UserError` for
    problems with the recipe or the data; any probe errors are raised after the reports
    are written.
    """
    from embedforensics.report.confounds import surface_warnings
    from embedforensics.report.schema import DataOut, ProbeOut, RecipeOut, Results, SourceOut
    from embedforensics.sources import load_sources

    started = _dt.datetime.now(_dt.timezone.utc)
    loaded = recipe if isinstance(recipe, LoadedRecipe) else load_recipe(recipe, overrides)
    spec = loaded.recipe
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    records = load_sources(loaded, use_cache=use_cache)
    timings["sources"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    embeddings = _embed(loaded, records, use_cache=use_cache, progress=progress)
    cache_dir = embeddings.provenance["embedding"]["cache_dir"]
    timings["embed"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    probe_outputs, failures = _run_probes(loaded, embeddings, meta=records_meta(records))
    timings["probes"] = time.perf_counter() - t0

    per_source = embeddings.provenance["embedding"]["per_source"]
    data = DataOut(
        n=len(records), counts_by_label=records.counts_by_label(),
        sources=[SourceOut(id=s.source_id, label=s.label, rows=len(s), fingerprint=s.fingerprint,
                           stats=s.stats, origin=s.origin,
                           lengths=_length_stats(s.texts, per_source.get(s.source_id, {})))
                 for s in records.sources])
    data.warnings = surface_warnings(data.sources)
    import torch

    provenance = {
        **embeddings.provenance,
        "seed": spec.seed,
        "versions": package_versions(),
        "git_commit": git_commit(Path(__file__).parent),
        "recipe_git_commit": git_commit(loaded.base_dir),
        "platform": {"system": platform.platform(), "machine": platform.machine(),
                     "processor": platform.processor(), "cpu_threads": torch.get_num_threads(),
                     "cuda": torch.cuda.is_available(),
                     "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "command": " ".join(sys.argv),
        "started": started.isoformat(timespec="seconds"),
        "cache": {"enabled": cache_dir is not None, "dir": cache_dir},
    }
    results = Results(
        recipe=RecipeOut.from_loaded(loaded),
        data=data, probes=[ProbeOut(**p) for p in probe_outputs], provenance=provenance,
        timings={k: round(v, 3) for k, v in timings.items()})

    out_dir = None
    if write_reports:
        from embedforensics.report import write_reports as _write

        out_dir = Path(output) if output else Path(spec.output.dir or f"runs/{spec.name}")
        if not out_dir.is_absolute() and output is None and spec.output.dir:
            out_dir = loaded.base_dir / out_dir
        t0 = time.perf_counter()
        results.provenance["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(
            timespec="seconds")
        _write(results, embeddings, out_dir)
        results.timings["report"] = round(time.perf_counter() - t0, 3)
        (out_dir / "results.json").write_text(results.to_json(), encoding="utf-8")
    run_results = RunResults(results, embeddings, out_dir)
    if failures:
        where = f"; the other results are in {out_dir}" if out_dir else ""
        raise ProbeFailures("; ".join(failures) + where, run_results)
    return run_results


class ProbeFailures(UserError):
    """Some probes failed; carries the results of everything else."""

    def __init__(self, message: str, results: RunResults):
        super().__init__(message)
        self.results = results


def records_meta(records: Any) -> dict[str, list[Any]]:
    """The sources' metadata columns as one list per column in record order (None where a
    source lacks the column); probes receive it as the ``meta`` context."""
    columns = sorted({c for s in records.sources for c in s.meta})
    return {c: [v for s in records.sources
                for v in (s.meta.get(c) or [None] * len(s))] for c in columns}


def _layers(embeddings: Any) -> list[tuple[str | None, np.ndarray]]:
    """(layer, X) pairs: every captured layer when there are several, else (None, X)."""
    per_layer = getattr(embeddings, "per_layer", None) or {}
    if len(per_layer) > 1:
        return [(str(k), v) for k, v in per_layer.items()]
    return [(None, embeddings.X)]


def _run_probes(loaded: LoadedRecipe, embeddings: Any, meta: dict[str, list[Any]] | None = None
                ) -> tuple[list[dict[str, Any]], list[str]]:
    """Fit every recipe probe (once per layer when several layers were captured).

    ``length_match: true`` beside a probe fits it on a length-matched subsample
    (:mod:`embedforensics.probes.matching`). With several layers, a ``layer_sweep`` entry
    follows with each probe's headline metric against layer depth.
    """
    from embedforensics.probes.matching import length_matched_rows
    from embedforensics.registry import PROBES

    outputs: list[dict[str, Any]] = []
    failures: list[str] = []
    layers = _layers(embeddings)
    # probes get plain lists (a large source's texts are views of Arrow columns until here)
    texts = list(embeddings.texts) if embeddings.texts is not None else None
    labels = np.asarray(embeddings.labels)
    ids = list(embeddings.ids)
    for i, spec in enumerate(loaded.recipe.probes):
        key = f"probes[{i}]"
        cls = PROBES.get(spec.name)
        params = dict(spec.params)
        length_match = bool(params.pop("length_match", False))
        if "seed" in cls._get_param_names() and "seed" not in params:
            params["seed"] = loaded.recipe.seed
        rows = np.arange(len(labels))
        matched: dict[str, Any] | None = None
        if length_match and texts is None:
            message = (f"{loaded.file_of(key)}: {key}.length_match needs the texts behind "
                       f"the embeddings, and this run has none.")
            failures.append(message)
            outputs.append({"probe": spec.name, "error": message, "params": params})
            continue
        if length_match:
            rows, matched = length_matched_rows([len(t) for t in texts], labels,
                                                seed=params.get("seed", loaded.recipe.seed))
        context = {"ids": [ids[r] for r in rows],
                   "texts": None if texts is None else [texts[r] for r in rows],
                   "meta": {c: [v[r] for r in rows] for c, v in (meta or {}).items()}}
        for layer, X in layers:
            t0 = time.perf_counter()
            extra = {} if layer is None else {"layer": layer}
            if matched is not None:
                extra["length_match"] = matched
            try:
                probe = cls(**params).fit(X[rows], labels[rows], **context)
            except UserError as exc:
                where = "" if layer is None else f" at layer {layer}"
                message = f"{loaded.file_of(key)}: {key} ({spec.name}){where}: {exc.message}"
                log.error(message)
                failures.append(message)
                outputs.append({"probe": spec.name, "error": exc.message,
                                "params": {**params, **extra}, "layer": layer})
                continue
            result = probe.result_.to_dict()
            result["params"] = {**params, **result.get("params", {}), **extra,
                                "seconds": round(time.perf_counter() - t0, 3)}
            result["layer"] = layer
            result["headline"] = getattr(cls, "headline", None)
            outputs.append(result)
    if len(layers) > 1:
        outputs.append(layer_sweep(outputs, [layer for layer, _ in layers]))
    return outputs, failures


def layer_order(layers: list[str]) -> list[str]:
    """Layers by depth: non-negative indices ascending, then negative ones (counted from
    the end) ascending, then any non-numeric names in their given order."""
    def key(name: str) -> tuple[int, float]:
        try:
            v = int(name)
        except ValueError:
            return (2, 0.0)
        return (0, v) if v >= 0 else (1, v)

    return sorted(layers, key=key)


def layer_sweep(outputs: list[dict[str, Any]], layers: list[str]) -> dict[str, Any]:
    """A results entry plotting each probe's headline metric against layer depth."""
    order = layer_order(layers)
    series, rows = [], []
    groups: dict[str, dict[str, float | None]] = {}
    for out in outputs:
        name, metric = out.get("probe"), out.get("headline")
        if out.get("error") or not metric or metric not in out.get("metrics", {}):
            continue
        m = out["metrics"][metric]
        groups.setdefault(f"{name}: {metric}", {})[out["layer"]] = m["value"]
        rows.append([name, metric, out["layer"], m["value"],
                     None if m.get("ci") is None else m["ci"][0],
                     None if m.get("ci") is None else m["ci"][1], m["n"]])
    for label, values in groups.items():
        xs = [j for j, layer in enumerate(order) if values.get(layer) is not None]
        series.append({"label": label, "x": xs, "y": [values[order[j]] for j in xs],
                       "marker": True})
    best = []
    for label, values in groups.items():
        top = max(values, key=lambda k: -np.inf if values[k] is None else values[k])
        best.append(f"{label} peaks at layer {top} ({values[top]:.3g})")
    summary = (f"Layer sweep over {len(order)} layers ({', '.join(order)}): "
               + ("; ".join(best) if best else "no probe produced a headline metric") + ".")
    return {"probe": "layer_sweep", "summary": summary, "layer": None,
            "params": {"layers": order},
            "tables": {"by_layer": {"columns": ["probe", "metric", "layer", "value", "ci_low",
                                                "ci_high", "n"], "rows": rows}},
            "plots": [{"kind": "lines", "title": "Headline metric per probe against layer depth",
                       "xlabel": "layer (shallow → deep)", "ylabel": "metric value",
                       "data": {"series": series, "xticks": order}}]}
