"""The study pipeline: recipe → context → sources → embeddings → analyses → results → reports.

Every command goes through these stages: ``run`` (probes), ``embed`` (stops after the
embeddings), ``heads train`` and ``compare`` (checkpoint comparators,
:mod:`embedforensics.compare.checkpoints`). Each stage consumes the previous stage's plain
data object; :func:`assemble_results` is the one place ``results.json`` is put together, so
every command writes the same provenance shape, and :func:`write_outputs` the one place it
is written (atomically, once, after the reports).

An analysis that fails on the data does not discard the others: its error is recorded, the
reports are still written, and the run ends with :class:`AnalysisFailures` so the exit code
says something went wrong.
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

from embedforensics.engine.embed import EmbeddingSet, embed_records
from embedforensics.errors import UserError
from embedforensics.fileio import atomic_write
from embedforensics.probes.matching import RUN_OPTIONS
from embedforensics.registry import PROBES
from embedforensics.report import write_reports
from embedforensics.report.confounds import surface_warnings
from embedforensics.report.outdir import staged_output
from embedforensics.report.schema import DataOut, RecipeOut, Results, SourceOut
from embedforensics.report.view import ResultsView
from embedforensics.results import AnalysisResult
from embedforensics.sources import Records, load_sources
from embedforensics.study.analysis import EmbeddedData, Outcome, ProbeAnalysis
from embedforensics.study.context import StudyContext
from embedforensics.study.layer_sweep import LayerSweep

log = logging.getLogger(__name__)

_VERSIONED = ("embedforensics", "torch", "transformers", "datasets", "accelerate",
              "scikit-learn", "scipy", "numpy", "pydantic", "safetensors")


# --------------------------------------------------------------------------- stages


@dataclass
class StudyData:
    """The records of every source and their embeddings (rows in record order; None when
    the command needs no embedding, e.g. comparing checkpoints that read the texts)."""

    records: Records
    embeddings: EmbeddingSet | None


def embed_records_of(ctx: StudyContext, records: Records, *, mmap_bytes: int | None = None,
                     assemble: bool = True) -> EmbeddingSet:
    """Embed ``records`` with the context's model and settings, through the cache."""
    embeddings = embed_records(records, ctx.model, ctx.resolved, cache_dir=ctx.cache_root,
                               progress=ctx.progress, mmap_bytes=mmap_bytes,
                               assemble=assemble, settings=ctx.settings_key)
    model = embeddings.provenance["model"]
    # image-text embedders name their own family (open_clip or transformers)
    model.setdefault("family", ctx.resolved.family)
    # which settings came from the model family's defaults
    model["auto_settings"] = ctx.auto_settings
    embeddings.provenance["embedding"]["fingerprint"] = ctx.embedding_fingerprint
    return embeddings


def load_data(ctx: StudyContext, *, mmap_bytes: int | None = None, assemble: bool = True,
              embed: bool = True) -> StudyData:
    """Load the sources and embed them (timed as ``sources`` and ``embed``); ``embed=False``
    (or a recipe without a model) stops after the sources."""
    with ctx.timed("sources"):
        records = load_sources(ctx.loaded, use_cache=ctx.use_cache)
    if not embed or ctx.recipe.model is None:
        return StudyData(records, None)
    with ctx.timed("embed"):
        embeddings = embed_records_of(ctx, records, mmap_bytes=mmap_bytes, assemble=assemble)
    return StudyData(records, embeddings)


def records_meta(records: Records) -> dict[str, list[Any]]:
    """The sources' metadata columns as one list per column in record order (None where a
    source lacks the column); probes receive it as the ``meta`` context."""
    columns = sorted({c for s in records.sources for c in s.meta})
    return {c: [v for s in records.sources
                for v in (s.meta.get(c) or [None] * len(s))] for c in columns}


def probe_analyses(ctx: StudyContext) -> list[ProbeAnalysis]:
    """One :class:`ProbeAnalysis` per recipe probe, in recipe order."""
    out = []
    for i, spec in enumerate(ctx.recipe.probes):
        key = f"probes[{i}]"
        params = {k: v for k, v in spec.params.items() if k not in RUN_OPTIONS}
        out.append(ProbeAnalysis(PROBES.get(spec.name), params, seed=ctx.recipe.seed,
                                 length_match=bool(spec.params.get("length_match", False)),
                                 where=f"{ctx.file_of(key)}: {key}"))
    return out


def run_probes(ctx: StudyContext, embeddings: EmbeddingSet,
               meta: dict[str, list[Any]] | None = None) -> Outcome:
    """Fit every recipe probe (once per captured layer); with several layers a
    ``layer_sweep`` result follows."""
    from embedforensics.probes.progress import probe_progress

    inputs = EmbeddedData(embeddings, meta or {})
    outcome = Outcome()
    analyses = probe_analyses(ctx)
    for i, analysis in enumerate(analyses, 1):
        # one line as each probe starts and ends, so a long probe is not taken for a hang;
        # the wall time is also in results.json (each result's params.seconds, per layer)
        log.info("probe %d/%d %s: started (%d rows)", i, len(analyses), analysis.name,
                 len(embeddings.labels))
        t0 = time.perf_counter()
        with probe_progress(ctx.progress):
            one = analysis.run(inputs)
        log.info("probe %d/%d %s: %s in %.1f s", i, len(analyses), analysis.name,
                 "failed" if one.failures else "done", time.perf_counter() - t0)
        outcome.results += one.results
        outcome.failures += one.failures
    layers = [layer for layer, _ in inputs.layers()]
    if len(layers) > 1:
        outcome.results += LayerSweep(layers=layers).run(outcome.results).results
    return outcome


# --------------------------------------------------------------------------- results


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


def platform_info() -> dict[str, Any]:
    """The machine the run used (threads, CUDA, GPU name)."""
    import torch

    cuda = torch.cuda.is_available()
    return {"system": platform.platform(), "machine": platform.machine(),
            "processor": platform.processor(), "cpu_threads": torch.get_num_threads(),
            "cuda": cuda, "gpu": torch.cuda.get_device_name(0) if cuda else None}


def length_stats(texts: list[str], token_info: dict[str, Any]) -> dict[str, float]:
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
        **({} if token_info.get("unk_share") is None
           else {"unk_share": float(token_info["unk_share"])}),
    }


def data_summary(data: StudyData) -> DataOut:
    """The ``data`` part of results.json: counts, per-source stats and surface warnings."""
    records = data.records
    per_source = (data.embeddings.provenance["embedding"]["per_source"]
                  if data.embeddings is not None else {})
    out = DataOut(
        n=len(records), counts_by_label=records.counts_by_label(),
        sources=[SourceOut(id=s.source_id, label=s.label, rows=len(s), fingerprint=s.fingerprint,
                           stats=s.stats, origin=s.origin,
                           lengths=length_stats(s.texts, per_source.get(s.source_id, {})))
                 for s in records.sources])
    out.warnings = surface_warnings(out.sources)
    return out


def assemble_results(ctx: StudyContext, data: StudyData, results: list[AnalysisResult],
                     extra_provenance: dict[str, Any] | None = None) -> Results:
    """The one ``results.json`` object of every command: recipe, data, analysis results,
    provenance (model, embedding, versions, git commits, platform, command, cache) and
    timings."""
    cache_dir = None if ctx.cache_root is None else str(ctx.cache_root)
    provenance = {
        **(data.embeddings.provenance if data.embeddings is not None
           else {"model": None, "embedding": None}),
        "seed": ctx.recipe.seed,
        "versions": package_versions(),
        "git_commit": git_commit(Path(__file__).parent),
        "recipe_git_commit": git_commit(ctx.loaded.base_dir),
        "platform": platform_info(),
        "command": " ".join(sys.argv),
        "started": ctx.started.isoformat(timespec="seconds"),
        "cache": {"enabled": cache_dir is not None, "dir": cache_dir},
        **(extra_provenance or {}),
    }
    return Results(recipe=RecipeOut.from_loaded(ctx.loaded), data=data_summary(data),
                   probes=results, provenance=provenance, timings=dict(ctx.timings))


def default_output_dir(ctx: StudyContext, configured: str | None, default: str) -> Path:
    """A configured folder or else ``default``, both relative to the recipe's folder like
    every other relative path in a recipe (a recipe given as a dict: the working
    directory)."""
    path = Path(configured or default).expanduser()
    return path if path.is_absolute() else ctx.loaded.base_dir / path


def write_outputs(ctx: StudyContext, results: Results, embeddings: EmbeddingSet | None,
                  out_dir: Path) -> Path:
    """Write the reports, then ``results.json`` once, atomically, with the report timing."""
    results.provenance["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(
        timespec="seconds")
    # written into a staging folder, then moved in: never two runs' files in one folder
    with staged_output(out_dir) as stage:
        with ctx.timed("report"):
            write_reports(results, embeddings, stage)
        results.timings = dict(ctx.timings)
        text = results.to_json()
        atomic_write(stage / "results.json",
                     lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), suffix=".json")
    return out_dir


@dataclass(repr=False)
class RunResults(ResultsView):
    """What ``run`` and ``compare`` return: the results object, the embeddings and where
    reports went. In a notebook it shows the verdict and the summary table; ``metric``,
    ``metrics``, ``to_frame`` and ``figures`` come from
    :class:`~embedforensics.report.view.ResultsView`."""

    results: Results
    embeddings: EmbeddingSet | None
    output_dir: Path | None

    def __getitem__(self, key: str) -> Any:
        return self.results.model_dump(by_alias=True)[key]


class AnalysisFailures(UserError):
    """Some analyses failed; carries the results of everything else."""

    def __init__(self, message: str, results: RunResults):
        super().__init__(message)
        self.results = results


def finish(ctx: StudyContext, data: StudyData, outcome: Outcome, *, out_dir: Path | None,
           extra_provenance: dict[str, Any] | None = None) -> RunResults:
    """Assemble the results, write them to ``out_dir`` (None: write nothing), and raise
    :class:`AnalysisFailures` afterwards if any analysis failed."""
    results = assemble_results(ctx, data, outcome.results, extra_provenance)
    results.data.warnings = [*outcome.warnings, *results.data.warnings]
    if out_dir is not None:
        write_outputs(ctx, results, data.embeddings, out_dir)
    run_results = RunResults(results, data.embeddings, out_dir)
    if outcome.failures:
        where = f"; the other results are in {out_dir}" if out_dir else ""
        raise AnalysisFailures("; ".join(outcome.failures) + where, run_results)
    return run_results


# --------------------------------------------------------------------------- commands


THREADS_VAR = "EMBEDFORENSICS_THREADS"
"""Set by ``--num-processes``: the threads the command had before torchrun started its
processes with ``OMP_NUM_THREADS=1``."""


def restore_threads() -> None:
    """After a data-parallel embedding, give the (main process's) probes the machine's
    threads back: torchrun starts every process single-threaded, which suits N embedding
    processes but not the probes that run in one of them afterwards."""
    import os

    from embedforensics.engine.distributed import launched

    want = os.environ.get(THREADS_VAR, "")
    if not want.isdigit() or int(want) < 1 or not launched():
        return
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(int(want))
    threadpool_limits(limits=int(want))
    log.info("probes use %s threads again (the embedding processes used one each)", want)


def run_study(ctx: StudyContext, *, output: str | Path | None = None,
              write_reports: bool = True) -> RunResults:
    """``run``: sources → embeddings → probes → results.json + reports."""
    data = load_data(ctx)
    restore_threads()
    with ctx.timed("probes"):
        outcome = run_probes(ctx, data.embeddings, meta=records_meta(data.records))
    out_dir = None
    if write_reports:
        out_dir = Path(output) if output else default_output_dir(
            ctx, ctx.recipe.output.dir, f"runs/{ctx.recipe.name}")
    return finish(ctx, data, outcome, out_dir=out_dir)
