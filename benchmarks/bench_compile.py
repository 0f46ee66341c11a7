"""Same-run A/B of ``model.compile``: the engine's encode, eager vs torch.compile.

Both embedders (the same bundled model, the recipe defaults, 2 torch threads) live in one
process; each encodes the full text set once as a warm-up (the compiled one compiles
then), then they alternate for ``--repeats`` timed encodes. Texts as in bench_embed.py.

    python benchmarks/bench_compile.py --n-texts 3000 --repeats 3 \
        --output benchmarks/results/compile.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_embed import MAX_LENGTH, MODELS, load_texts, model_path  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(MODELS), default="minilm")
    ap.add_argument("--n-texts", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--output", type=Path)
    args = ap.parse_args()
    import torch

    from embedforensics.models.hf_encoder import HFTextEmbedder
    from embedforensics.recipe.schema import ModelSpec

    torch.set_num_threads(args.threads)
    texts, mix = load_texts(args.n_texts, 0)
    path, prefix = model_path(args.model), MODELS[args.model][1]
    defaults = ModelSpec(id=path)
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    embedders, warm, times, vectors = {}, {}, {"eager": [], "compiled": []}, {}
    for name in ("eager", "compiled"):
        embedders[name] = HFTextEmbedder(
            path, batch_size=32, max_length=MAX_LENGTH, device="cpu", prefix=prefix,
            batch_overhead=defaults.batch_overhead_tokens, compile=name == "compiled").load()
        t0 = time.perf_counter()
        vectors[name] = embedders[name].encode(texts, progress=False)[0]
        warm[name] = time.perf_counter() - t0
    for r in range(args.repeats):
        for name in (("eager", "compiled") if r % 2 == 0 else ("compiled", "eager")):
            t0 = time.perf_counter()
            embedders[name].encode(texts, progress=False)
            times[name].append(time.perf_counter() - t0)
            print(name, round(times[name][-1], 2), flush=True)
    cos = np.sum(vectors["eager"] * vectors["compiled"], axis=1)
    med = statistics.median
    ratios = [a / b for a, b in zip(times["eager"], times["compiled"], strict=True)]
    lines = [
        "# model.compile: eager vs torch.compile, same process, alternating",
        "",
        f"- Command: `python benchmarks/bench_compile.py {' '.join(sys.argv[1:])}`",
        f"- torch {torch.__version__}, {os.cpu_count()} logical CPUs, {args.threads} threads; "
        f"load average {load_start} at start, "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} at end",
        f"- Model {args.model}; {len(texts):,} texts "
        f"({', '.join(f'{v} {k}' for k, v in mix.items())}); "
        f"batch 32, max length {MAX_LENGTH}, float32",
        f"- Warm-up encode of all texts (compilation included for the compiled one): eager "
        f"{warm['eager']:.1f} s, compiled {warm['compiled']:.1f} s",
        "",
        "| embedder | encode wall (s), median | per repeat |",
        "|---|---:|---|",
        *[f"| {n} | {med(t):.2f} | {', '.join(f'{x:.2f}' for x in t)} |" for n, t in times.items()],
        "",
        f"- Same-run ratio eager / compiled: median **{med(ratios):.3f}** "
        f"({', '.join(f'{x:.3f}' for x in ratios)})",
        f"- Largest cosine distance eager vs compiled: {float(np.max(1 - cos)):.2e}",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        args.output.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
