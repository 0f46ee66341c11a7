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
    chars = np.array([len(t) for t in texts], dtype=float)
    return {
        "chars_mean": float(chars.mean()), "chars_median": float(np.median(chars)),
        "chars_min": float(chars.min()), "chars_max": float(chars.max()),
        "tokens_mean": float(token_info.get("mean_tokens", float("nan"))),
        "truncated": float(token_info.get("n_truncated", 0)),
    }


def _embed(loaded: LoadedRecipe, records: Any, *, use_cache: bool | None, progress: bool) -> Any:
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
                               progress=progress)
    # which settings came from the model family's defaults (embedforensics.models.defaults)
    embeddings.provenance["model"].update(family=resolved.family, auto_settings=auto)
    return embeddings


def embed(recipe: LoadedRecipe | str | Path, *, overrides: list[str] | None = None,
          use_cache: bool | None = None, progress: bool = True) -> Any:
    """Load a recipe's sources and embed them (through the cache); no probes, no reports.

    Returns an :class:`~embedforensics.engine.embed.EmbeddingSet`.
    """
    from embedforensics.sources import load_sources

    loaded = recipe if isinstance(recipe, LoadedRecipe) else load_recipe(recipe, overrides)
    return _embed(loaded, load_sources(loaded, use_cache=use_cache), use_cache=use_cache,
                  progress=progress)


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
    probe_outputs, failures = _run_probes(loaded, embeddings)
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


def _run_probes(loaded: LoadedRecipe, embeddings: Any) -> tuple[list[dict[str, Any]], list[str]]:
    from embedforensics.registry import PROBES

    outputs: list[dict[str, Any]] = []
    failures: list[str] = []
    for i, spec in enumerate(loaded.recipe.probes):
        key = f"probes[{i}]"
        cls = PROBES.get(spec.name)
        params = dict(spec.params)
        if "seed" in cls._get_param_names() and "seed" not in params:
            params["seed"] = loaded.recipe.seed
        t0 = time.perf_counter()
        try:
            probe = cls(**params).fit(embeddings.X, embeddings.labels, ids=embeddings.ids,
                                      texts=embeddings.texts)
        except UserError as exc:
            message = f"{loaded.file_of(key)}: {key} ({spec.name}): {exc.message}"
            log.error(message)
            failures.append(message)
            outputs.append({"probe": spec.name, "error": exc.message, "params": params})
            continue
        result = probe.result_.to_dict()
        result["params"] = {**params, **result.get("params", {}),
                            "seconds": round(time.perf_counter() - t0, 3)}
        outputs.append(result)
    return outputs, failures
