"""A/B of the CPU kernel choices for the engine's encode, each in its own child process.

Variants (each timed in a fresh child process, so one cannot slow another):

- ``aten``: eager PyTorch, ``model.onednn_linear: false`` (MKL sgemm for float32 linear
  layers; the engine's only path before oneDNN linear layers were added);
- ``onednn``: eager with the recipe default ``model.onednn_linear: true`` (oneDNN kernels
  on pre-packed weights, :mod:`embedforensics.models.onednn`);
- ``compile``: ``torch.compile(model, dynamic=True)`` applied by hand to the aten model,
  inductor's defaults (what ``model.compile`` did before freezing was turned on);
- ``compile-freezing``: ``model.compile: true`` as shipped (on the CPU: dynamic shapes
  plus inductor freezing).

Each child loads the bundled model with the recipe defaults (batch 32, max length 256,
float32, ``--threads`` torch threads), runs a warm-up encode of 64 texts (the compiled
variants compile there; timed and reported), then times one encode of all the texts and
reads its peak RSS. Repeats rotate the variants' order; ratios are aten / variant within
each repeat, and their median is reported. Texts as in bench_embed.py.

An earlier version timed eager and compiled alternately inside one process and reported
1.14x for plain compile; in separate processes plain compile gains far less (see
results/compile.md), so that same-process figure was an artefact of sharing a process.

    python benchmarks/bench_compile.py --model e5 --n-texts 2000 --repeats 3 \\
        --output benchmarks/results/onednn.md
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_embed import (  # noqa: E402
    MAX_LENGTH,
    MODELS,
    cpu_model,
    load_texts,
    max_cosine_distance,
    model_path,
    version,
)

VARIANTS = ("aten", "onednn", "compile", "compile-freezing")
WARM_TEXTS = 64


def worker(variant: str, model: str, texts_file: str, out_prefix: str, threads: int) -> None:
    """Child process: build one variant, warm up, time one encode, write vectors + JSON."""
    import torch

    from embedforensics.models.hf_encoder import HFTextEmbedder
    from embedforensics.recipe.schema import ModelSpec

    torch.set_num_threads(threads)
    with open(texts_file, encoding="utf-8") as fh:
        texts: list[str] = json.load(fh)
    path, prefix = model_path(model), MODELS[model][1]
    defaults = ModelSpec(id=path)
    emb = HFTextEmbedder(path, batch_size=defaults.batch_size, max_length=MAX_LENGTH,
                         device="cpu", prefix=prefix,
                         batch_overhead=defaults.batch_overhead_tokens,
                         compile=variant == "compile-freezing",
                         onednn_linear=variant == "onednn").load()
    if variant == "compile":
        emb._model = torch.compile(emb._model, dynamic=True)  # noqa: SLF001 - the A/B
        emb.compile_status = "torch.compile(dynamic=True)"
    t0 = time.perf_counter()
    emb.encode(texts[:WARM_TEXTS], progress=False)
    warm_s = time.perf_counter() - t0
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    vectors, stats = emb.encode(texts, progress=False)
    encode_s = time.perf_counter() - t0
    np.save(out_prefix + ".npy", vectors)
    status = emb.compile_status or f"eager, linear kernels {emb.linear_kernels}"
    info = {"variant": variant, "status": status, "warm_s": warm_s,
            "encode_s": encode_s, "rss_before_kib": rss_before,
            "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "n_tokens": stats.n_tokens, "n_batches": stats.n_batches}
    with open(out_prefix + ".json", "w", encoding="utf-8") as fh:
        json.dump(info, fh)


def run_child(variant: str, model: str, texts_file: str, out_prefix: str,
              threads: int) -> tuple[dict, np.ndarray]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", variant,
           "--model", model, "--texts-file", texts_file, "--worker-out", out_prefix,
           "--threads", str(threads)]
    subprocess.run(cmd, check=True)
    with open(out_prefix + ".json", encoding="utf-8") as fh:
        return json.load(fh), np.load(out_prefix + ".npy")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(MODELS), default="minilm")
    ap.add_argument("--n-texts", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help=f"comma-separated subset of {', '.join(VARIANTS)} (aten first)")
    ap.add_argument("--output", type=Path)
    ap.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    ap.add_argument("--texts-file", help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.model, args.texts_file, args.worker_out, args.threads)
        return
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not variants or variants[0] != "aten" or set(variants) - set(VARIANTS):
        raise SystemExit(f"--variants must start with aten and name only {VARIANTS}")
    texts, mix = load_texts(args.n_texts, 0)
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    vectors: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        texts_file = os.path.join(tmp, "texts.json")
        with open(texts_file, "w", encoding="utf-8") as fh:
            json.dump(texts, fh)
        for r in range(args.repeats):
            order = variants[r % len(variants):] + variants[:r % len(variants)]
            for variant in order:
                info, vec = run_child(variant, args.model, texts_file,
                                      os.path.join(tmp, f"{variant}-{r}"), args.threads)
                runs[variant].append(info)
                vectors.setdefault(variant, vec)
                print(f"repeat {r + 1} {variant}: encode {info['encode_s']:.2f} s, "
                      f"warm-up {info['warm_s']:.1f} s", file=sys.stderr, flush=True)
    med = statistics.median
    ratios = {v: [e["encode_s"] / x["encode_s"] for e, x in zip(runs["aten"], runs[v],
                                                                  strict=True)]
              for v in variants[1:]}
    mib = 1024.0
    lines = [
        f"# CPU kernels on {args.model}: aten, oneDNN linear, torch.compile; separate processes",
        "",
        f"- Command: `python benchmarks/bench_compile.py {' '.join(sys.argv[1:])}`",
        f"- {cpu_model()}, {os.cpu_count()} logical CPUs, {args.threads} torch threads; "
        f"torch {version('torch')}, transformers {version('transformers')}",
        f"- Load average {load_start} at start, "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} at end",
        f"- {len(texts):,} texts ({', '.join(f'{v} {k}' for k, v in mix.items())}); "
        f"{runs['aten'][0]['n_tokens']:,} tokens; batch 32, max length {MAX_LENGTH}, "
        f"float32, {runs['aten'][0]['n_batches']} batches",
        f"- Each encode in a fresh process after a warm-up encode of {WARM_TEXTS} texts "
        f"(compilation happens there); {args.repeats} repeats, order rotating; medians.",
        "",
        "| variant | encode wall (s) | per repeat | warm-up (s) | peak RSS (MiB) | "
        "RSS before encode (MiB) |",
        "|---|---:|---|---:|---:|---:|",
        *[f"| {v} ({runs[v][0]['status'] or 'aten'}) | "
          f"{med(x['encode_s'] for x in runs[v]):.2f} | "
          + ", ".join(f"{x['encode_s']:.2f}" for x in runs[v])
          + f" | {med(x['warm_s'] for x in runs[v]):.1f} | "
          f"{med(x['peak_rss_kib'] for x in runs[v]) / mib:,.0f} | "
          f"{med(x['rss_before_kib'] for x in runs[v]) / mib:,.0f} |" for v in variants],
        "",
        *[f"- Same-repeat ratio aten / {v}: median **{med(rs):.3f}** "
          f"({', '.join(f'{x:.3f}' for x in rs)}); largest cosine distance to aten "
          f"{max_cosine_distance(vectors['aten'], vectors[v]):.2e}"
          for v, rs in ratios.items()],
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        args.output.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
