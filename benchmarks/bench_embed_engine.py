"""Engine benchmarks on the default recipe: cold vs warm cache, and 1 vs 2 processes.

1. Cold vs warm: a fresh child process loads ``recipes/default.yaml``, reads its sources and
   times the embedding stage (``study.pipeline.embed_records_of``: model fingerprint,
   cache lookup, model load and encoding on a miss) with an empty cache; a second fresh
   child does the same with the cache the first one filled. Ratio cold / warm per repeat,
   median reported.
2. Processes: ``embedforensics embed --no-cache recipes/default.yaml`` with
   ``--num-processes 1`` (one process, 2 torch threads) and ``2`` (torchrun + gloo, one
   thread each, as torchrun sets); wall time of the whole command and the embedding
   seconds from the export manifest; the two exports must be bit-identical.

::

    python benchmarks/bench_embed_engine.py --output benchmarks/results/embed_engine.md
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "default.yaml"

CHILD = """
import json, sys, time
t_start = time.perf_counter()
from embedforensics.sources import load_sources
from embedforensics.study.context import StudyContext
from embedforensics.study.pipeline import embed_records_of
ctx = StudyContext.open(sys.argv[1], use_cache=True, progress=False)
records = load_sources(ctx.loaded)
t0 = time.perf_counter()
emb = embed_records_of(ctx, records)
t1 = time.perf_counter()
status = sorted({v["cache"] for v in emb.provenance["embedding"]["per_source"].values()})
print(json.dumps({"embed_s": t1 - t0, "rows": len(emb), "status": status,
                  "n_tokens": sum(v["n_tokens"] for v in
                                  emb.provenance["embedding"]["per_source"].values()),
                  "before_embed_s": t0 - t_start}))
"""


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _env(cache: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "EMBEDFORENSICS_CACHE": cache,
            "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def cold_warm(repeats: int) -> tuple[list[str], list[dict]]:
    rows = []
    for r in range(repeats):
        with tempfile.TemporaryDirectory() as cache:
            out = {}
            for phase in ("cold", "warm"):
                t0 = time.perf_counter()
                proc = subprocess.run([sys.executable, "-c", CHILD, str(RECIPE)],
                                      env=_env(cache), capture_output=True, text=True,
                                      check=True, cwd=str(ROOT))
                info = json.loads(proc.stdout.strip().splitlines()[-1])
                info["process_s"] = time.perf_counter() - t0
                out[phase] = info
                print(f"repeat {r + 1} {phase}: embed {info['embed_s']:.2f} s {info['status']}",
                      file=sys.stderr)
            rows.append(out)
    ratios = [o["cold"]["embed_s"] / o["warm"]["embed_s"] for o in rows]
    med = statistics.median
    lines = [
        "## Cold vs warm cache, default recipe (embedding stage)",
        "",
        f"{rows[0]['cold']['rows']} texts, {rows[0]['cold']['n_tokens']:,} tokens, bundled "
        "all-MiniLM-L6-v2, float32, CPU; each phase a fresh process; "
        f"{repeats} repeats.",
        "",
        "| phase | embedding stage (s), median | per repeat | cache status | "
        "whole process (s), median |",
        "|---|---:|---|---|---:|",
    ]
    for phase in ("cold", "warm"):
        lines.append(f"| {phase} | {med(o[phase]['embed_s'] for o in rows):.3f} | "
                     + ", ".join(f"{o[phase]['embed_s']:.3f}" for o in rows)
                     + f" | {', '.join(rows[0][phase]['status'])} | "
                     f"{med(o[phase]['process_s'] for o in rows):.1f} |")
    lines += ["", f"- Same-run ratio cold / warm: median **{med(ratios):.0f}x** (per repeat: "
              + ", ".join(f"{x:.0f}x" for x in ratios) + "; target >= 20x)", ""]
    return lines, rows


def processes(repeats: int, overrides: list[str]) -> list[str]:
    from safetensors.numpy import load_file

    times: dict[int, list[float]] = {1: [], 2: []}
    embed_s: dict[int, list[float]] = {1: [], 2: []}
    identical = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            outs = {}
            for n in ((1, 2) if r % 2 == 0 else (2, 1)):
                out = os.path.join(tmp, f"out-{n}-{r}")
                t0 = time.perf_counter()
                sets = [a for o in overrides for a in ("--set", o)]
                subprocess.run([sys.executable, "-m", "embedforensics", "-q", "embed",
                                "--no-cache", "--num-processes", str(n), str(RECIPE),
                                "-o", out, *sets], env=_env(os.path.join(tmp, "unused")),
                               check=True, cwd=str(ROOT), capture_output=True)
                times[n].append(time.perf_counter() - t0)
                manifest = json.loads(Path(out, "manifest.json").read_text())
                per = manifest["provenance"]["embedding"]["per_source"]
                embed_s[n].append(sum(v["seconds"] for v in per.values()))
                assert manifest["provenance"]["embedding"]["processes"] == n
                outs[n] = load_file(os.path.join(out, "embeddings.safetensors"))["embeddings"]
                print(f"repeat {r + 1} processes {n}: {times[n][-1]:.1f} s", file=sys.stderr)
            identical.append(bool(np.array_equal(outs[1], outs[2])))
    med = statistics.median
    return [
        "## 1 vs 2 processes on the CPU, default recipe (`embed --no-cache`)",
        "",
        "1 process uses 2 torch threads; 2 processes (torchrun + gloo) use 1 thread each. "
        f"Overrides: {', '.join(overrides) if overrides else 'none'}; {repeats} repeat(s).",
        "",
        "| processes | whole command (s), median | per repeat | embedding (s), median |",
        "|---:|---:|---|---:|",
        *[f"| {n} | {med(times[n]):.1f} | {', '.join(f'{x:.1f}' for x in times[n])} | "
          f"{med(embed_s[n]):.1f} |" for n in (1, 2)],
        "",
        f"- Outputs bit-identical (1 vs 2 processes) in every repeat: **{all(identical)}** "
        f"({identical})",
        f"- Same-run ratio 1-process / 2-process command time: median "
        f"**{med(a / b for a, b in zip(times[1], times[2], strict=True)):.2f}**",
        "",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2, help="cold/warm repeats")
    ap.add_argument("--process-repeats", type=int, default=2)
    ap.add_argument("--skip", choices=["cache", "processes"], action="append", default=[])
    ap.add_argument("--process-set", action="append", default=[], metavar="KEY=VALUE",
                    help="recipe overrides for the processes comparison (e.g. a smaller "
                         "sample on a busy machine)")
    ap.add_argument("--output", type=Path)
    args = ap.parse_args()
    command = "python " + " ".join(shlex.quote(a) for a in
                                   [os.path.relpath(__file__, ROOT), *sys.argv[1:]])
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    import platform

    import torch

    lines = ["# Embedding engine: cache and processes", "",
             f"- Command: `{command}`",
             f"- Machine: {os.cpu_count()} logical CPUs, {platform.platform()}; torch "
             f"{torch.__version__}",
             f"- `uptime` at start: {uptime}", ""]
    if "cache" not in args.skip:
        lines += cold_warm(args.repeats)[0]
    if "processes" not in args.skip:
        lines += processes(args.process_repeats, args.process_set)
    lines.append(f"- Load average at end: {loadavg()}")
    report = "\n".join(lines) + "\n"
    print(report)
    if args.output:
        args.output.write_text(report, encoding="utf-8")


if __name__ == "__main__":
    main()
