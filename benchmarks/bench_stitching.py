"""Benchmark model stitching (embedforensics.compare.stitching): time per stitch on the CPU.

Two fine-tuned all-MiniLM-L6-v2 checkpoints (``--a``/``--b``, default: reference seeds 0
and 1 of ``recipes/compare-finetunes.yaml``; a random 6-block BERT of the same size when
they are absent) on ``--n-fit`` + ``--n-test`` synthetic review-like sentences (seeded
words, ``--words`` per sentence, tokenised at most 64 tokens). Reported:

* the one-off forward pass of each model over all sentences, keeping every hidden state
  (the comparator does this once per model and reuses it for every stitch);
* per stitch point (hidden state ``j``) and method, the wall time of one
  :func:`~embedforensics.compare.stitching.stitch_features` call (``direct`` least squares,
  then ``--steps`` Adam steps of one ``--batch`` each for task/soft/fula, and the
  evaluation on the test sentences), median of ``--repeats``.

    OMP_NUM_THREADS=2 python benchmarks/bench_stitching.py \
        --output benchmarks/results/stitching.md
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_alpha_hat import cpu_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "compare-finetunes" / "finetune" / "reference"
WORDS = ("the film a movie is was great dull plot actor story funny boring smart "
         "script never always director best worst moments charm slow fresh tired "
         "ending cast heart mess clever visual score feels too much little").split()


def load(path: Path | None, seed: int):
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        BertConfig,
        BertForSequenceClassification,
        BertTokenizerFast,
    )

    if path is not None and (path / "config.json").exists():
        model = AutoModelForSequenceClassification.from_pretrained(path).eval()
        return model, AutoTokenizer.from_pretrained(path), str(path.resolve().relative_to(ROOT))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=384, num_hidden_layers=6,
                        num_attention_heads=12, intermediate_size=1536, num_labels=2)
    return BertForSequenceClassification(config).eval(), tok, f"random BERT (seed {seed})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", type=Path, default=RUNS / "seed-0000")
    ap.add_argument("--b", type=Path, default=RUNS / "seed-0001")
    ap.add_argument("--n-fit", type=int, default=128)
    ap.add_argument("--n-test", type=int, default=128)
    ap.add_argument("--words", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--layers", type=int, nargs="+", default=[4, 5, 6])
    ap.add_argument("--methods", nargs="+", default=["direct", "task", "soft", "fula"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--output", type=Path)
    args = ap.parse_args()

    import torch

    from embedforensics.compare.stitching import compute_features, stitch_features

    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, size=args.words)) for _ in range(args.n_fit
                                                                         + args.n_test)]
    labels = rng.integers(0, 2, len(texts))
    A, tok, name_a = load(args.a, 0)
    B, _, name_b = load(args.b, 1)

    def batches(lo: int, hi: int) -> list[dict]:
        out = []
        for s in range(lo, hi, args.batch):
            enc = dict(tok(texts[s:min(s + args.batch, hi)], padding=True, truncation=True,
                           max_length=64, return_tensors="pt"))
            enc["labels"] = torch.tensor(labels[s:min(s + args.batch, hi)])
            out.append(enc)
        return out

    fit, test = batches(0, args.n_fit), batches(args.n_fit, args.n_fit + args.n_test)
    t0 = time.perf_counter()
    fa, ta = compute_features(A, fit), compute_features(A, test)
    t_feat = time.perf_counter() - t0
    fb, tb = compute_features(B, fit), compute_features(B, test)
    rows = []
    for layer in args.layers:
        for method in args.methods:
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                r = stitch_features(B, fa, fb, ta, tb, layer_a=layer, layer_b=layer,
                                    method=method, steps=args.steps, seed=0)
                times.append(time.perf_counter() - t)
            rows.append((layer, method, statistics.median(times), min(times), r.penalty,
                         r.agreement))
            print(f"layer {layer} {method:6s} {statistics.median(times):7.3f} s "
                  f"(penalty {r.penalty:+.3f}, agreement {r.agreement:.3f})", flush=True)
    tokens = int(sum(int(m.sum()) for m in fa.masks))
    lines = [
        "# Model stitching: time per stitch (CPU)", "",
        f"`{' '.join(shlex.quote(a) for a in sys.argv)}`", "",
        f"CPU: {cpu_model()} · threads: torch {torch.get_num_threads()} "
        f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}) · "
        f"Python {platform.python_version()} · torch {torch.__version__}", "",
        f"A = {name_a}, B = {name_b}; {args.n_fit} fitting + {args.n_test} test sentences of "
        f"{args.words} words ({tokens} non-padding fitting tokens), fitting batch "
        f"{args.batch}, {args.steps} Adam steps for task/soft/fula; median of "
        f"{args.repeats}.", "",
        f"One-off forward of one model over the {args.n_fit + args.n_test} sentences, all "
        f"hidden states kept: {t_feat:.2f} s.", "",
        "| stitch point (hidden state) | method | median s | min s | penalty | agreement |",
        "|---|---|---|---|---|---|",
        *[f"| {lay} | {m} | {med:.3f} | {mn:.3f} | {pen:+.3f} | {agr:.3f} |"
          for lay, m, med, mn, pen, agr in rows],
        "", "Labels are random (a timing run): the penalties are not a finding.", ""]
    text = "\n".join(lines)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
