"""Memory of oneDNN linear layers: the load-time peak and what stays resident.

Each (model, kernels) pair loads in its own child process, which reports from
``/proc/self/status``: the peak resident set during load (VmHWM), then VmRSS, RssAnon
(private heap) and RssFile (memory-mapped file pages) after the load and after encoding
256 texts.

Two models, because where the weights live decides the answer:
- ``e5``: the bundled multilingual-e5-small, a float32 safetensors checkpoint that
  transformers memory-maps, so PyTorch's own (aten) kernels read the weights straight
  from the page cache (RssFile), while oneDNN's packed copies are private (RssAnon);
- ``bf16-bert``: a random 8-layer, 1024-d BERT saved in bfloat16 and loaded as float32,
  so every weight is a private copy in both cases (like a bf16 LLM run in float32 on a
  CPU). Its linear weights are 388 MiB in float32: the load peak shows whether the swap
  holds two copies of them at once.

``--checkout LABEL=PATH`` (repeatable) runs another checkout's package (e.g. an older
commit in a git worktree) on the same inputs.

    python benchmarks/bench_onednn_memory.py --output benchmarks/results/onednn_memory.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
N_TEXTS = 256


def status_mib() -> dict[str, int]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            fields[name] = int(value.split()[0]) // 1024
    return fields


def bf16_bert(path: Path) -> Path:
    """A random BERT saved in bfloat16 (MiniLM's tokenizer), built once."""
    if (path / "config.json").is_file():
        return path
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from embedforensics.models import bundled

    torch.manual_seed(0)
    config = BertConfig(hidden_size=1024, num_hidden_layers=8, num_attention_heads=16,
                        intermediate_size=4096, vocab_size=30522)
    BertModel(config).to(torch.bfloat16).save_pretrained(path)
    AutoTokenizer.from_pretrained(str(bundled.minilm_path())).save_pretrained(path)
    return path


def child(model: str, onednn: bool, workdir: Path) -> None:
    import torch

    from embedforensics.models import bundled
    from embedforensics.models.hf_encoder import HFTextEmbedder

    torch.set_num_threads(2)
    path = str(bundled.e5_path()) if model == "e5" else str(workdir / "bf16-bert")
    emb = HFTextEmbedder(path, dtype="float32", device="cpu", batch_size=32,
                         max_length=128, onednn_linear=onednn).load()
    loaded = status_mib()
    texts = [f"query: text number {i} about {'cats and mats ' * (i % 9)}"
             for i in range(N_TEXTS)]
    emb.encode(texts, progress=False)
    print(json.dumps({"kernels": emb.linear_kernels, "load": loaded,
                      "encoded": status_mib()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", action="append", default=[],
                        help="LABEL=PATH of another checkout to run too")
    parser.add_argument("--workdir", default="/tmp/ef-bench-onednn-memory")
    parser.add_argument("--output")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    workdir = Path(args.workdir)
    if args.child:
        child(args.child[0], args.child[1] == "1", workdir)
        return
    workdir.mkdir(parents=True, exist_ok=True)
    bf16_bert(workdir / "bf16-bert")
    checkouts = [("this checkout", ROOT)] + [
        (c.split("=", 1)[0], Path(c.split("=", 1)[1]).resolve()) for c in args.checkout]
    rows = []
    for label, repo in checkouts:
        for model in ("e5", "bf16-bert"):
            for onednn in (False, True):
                out = subprocess.run(
                    [sys.executable, str(Path(__file__).resolve()), "--workdir", str(workdir),
                     "--child", model, str(int(onednn))],
                    cwd=repo, env={**os.environ, "PYTHONPATH": str(repo),
                                   "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"},
                    capture_output=True, text=True, check=True)
                row = {"checkout": label, "model": model,
                       **json.loads(out.stdout.strip().splitlines()[-1])}
                print(json.dumps(row), flush=True)
                rows.append(row)
    if args.output:
        write_markdown(Path(args.output), rows)


def write_markdown(path: Path, rows: list[dict]) -> None:
    import torch

    lines = [
        "# Memory of oneDNN linear layers (`model.onednn_linear`)",
        "",
        f"- Machine: {platform.machine()}, {os.cpu_count()} logical CPUs; Python "
        f"{platform.python_version()}, torch {torch.__version__}",
        "- Command: `python benchmarks/bench_onednn_memory.py` (see its docstring); each row "
        f"is one child process: load, then encode {N_TEXTS} short texts (MiB).",
        "",
        "| checkout | model | kernels | load peak (VmHWM) | after load VmRSS | RssAnon | "
        "RssFile | after encode VmRSS | RssAnon | RssFile |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ld, enc = r["load"], r["encoded"]
        lines.append(f"| {r['checkout']} | {r['model']} | {r['kernels']} | {ld['VmHWM']:,} | "
                     f"{ld['VmRSS']:,} | {ld['RssAnon']:,} | {ld['RssFile']:,} | "
                     f"{enc['VmRSS']:,} | {enc['RssAnon']:,} | {enc['RssFile']:,} |")
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
