"""trNTK kGLM faithfulness: Engel et al.'s MNIST2-MLP protocol on scikit-learn's digits.

Engel et al. (ICLR 2024, arXiv 2305.14585) report for a 2-class MNIST MLP a Kendall τ of
0.708 ± 0.003 (± = standard error over 100 seeds; seed sd ≈ 0.034) between the kGLM's and
the network's scores, TAD +0.03 pp (network 99.64 %, kGLM 99.67 %). Their protocol, read
from pnnl/projection_ntk (``scripts/smallmodeltrain/Analyze_multiple_NTK_MLP_MNIST2.py`` and
``experiments/create_table_metrics.ipynb``), reproduced here as closely as the data allow:

* data: digits 0 vs 1, pixels / max (MNIST: /255); paper 5,000 + 5,000 training and
  980 + 980 test images of 28×28; here scikit-learn's bundled ``load_digits`` (8×8, 178 + 182
  images), a stratified 70/30 split per seed (``--split-seed`` fixes it instead);
* network: in-100-100-100-1 ReLU MLP in the NTK parameterisation — weights and biases
  N(0, 1), pre-activations divided by √100, √100 and 10, as in their ``Model``; seeded
  with ``torch.manual_seed(seed)``;
* training: sigmoid output, MSE loss against 0/1, plain SGD lr 1e-3, batch 4, shuffled,
  100 epochs;
* kernel: the NTK of the single output logit over all parameters, cosine-normalised
  (= trNTK for one output; ``trntk_kernel(kind="trntk")``);
* kGLM and τ: the package defaults (:mod:`embedforensics.compare.kglm`) = the authors':
  ``SGDClassifier`` log-loss, L2 per sample α = 1e-4, balanced class weights (seeded); τ
  between class-1 scores, saturated network outputs dropped. Beside them: the same
  objective solved exactly (lbfgs), the former defaults (C = 1, true-class τ) and fixed C.

Misclassification overlap is the Jaccard index of the two models' misclassified test sets
(1.0 when both are empty, which is what an easy pair gives; the count of seeds where either
model errs is shown).

    OMP_NUM_THREADS=1 heavy .venv/bin/python benchmarks/bench_trntk_faithfulness.py \\
        --seeds 20 --output benchmarks/results/trntk_faithfulness.md
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np
import scipy
import sklearn
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from embedforensics.compare.kglm import faithfulness, fit_kglm
from embedforensics.compare.trntk import trntk_kernel

PAPER_TAU = 0.708


class PaperMLP(nn.Module):
    """Engel et al.'s MNIST2 MLP (NTK parameterisation), input width ``d_in``."""

    def __init__(self, d_in: int, width: int = 100) -> None:
        super().__init__()
        self.l1, self.l2 = nn.Linear(d_in, width), nn.Linear(width, width)
        self.l3, self.l4 = nn.Linear(width, width), nn.Linear(width, 1)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight)
                nn.init.normal_(m.bias)
        self.scale = float(np.sqrt(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.l1(x) / self.scale)  # as in their code: / sqrt(100), not sqrt(784)
        y = torch.relu(self.l2(y) / self.scale)
        y = torch.relu(self.l3(y) / 10.0)
        return self.l4(y)


def data(pair: tuple[int, int], split_seed: int):
    """Digits of the pair, scaled to [0, 1], stratified 70/30 split."""
    d = load_digits()
    keep = np.isin(d.target, pair)
    x = d.data[keep] / 16.0
    y = (d.target[keep] == pair[1]).astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, stratify=y,
                                          random_state=split_seed)
    return (torch.tensor(xtr, dtype=torch.float32), ytr,
            torch.tensor(xte, dtype=torch.float32), yte)


def train(model: nn.Module, x: torch.Tensor, y: np.ndarray, epochs: int, lr: float,
          batch: int) -> float:
    """Their loop: sigmoid output, MSE to 0/1, plain SGD; returns the final training loss."""
    opt = torch.optim.SGD(model.parameters(), lr)
    yt = torch.tensor(y, dtype=torch.float32)
    loss = torch.tensor(float("nan"))
    for _ in range(epochs):
        perm = torch.randperm(len(yt))
        for s in range(0, len(yt), batch):
            idx = perm[s:s + batch]
            opt.zero_grad()
            loss = nn.functional.mse_loss(torch.sigmoid(model(x[idx])[:, 0]), yt[idx])
            loss.backward()
            opt.step()
    return float(loss)


VARIANTS = {
    # label: (fit_kglm kwargs, faithfulness kwargs)
    "default = authors' fit (SGDClassifier α=1e-4, balanced; class-1 τ, saturated "
    "dropped)": ({}, {}),
    "same objective solved exactly (lbfgs, C=1/(α n)); class-1 τ": ({"solver": "lbfgs"}, {}),
    "default kGLM, true-class τ (former τ convention)": ({}, {"tau_scores": "true_class"}),
    "former defaults (lbfgs C=1, no class weights; true-class τ)": (
        {"reg_c": 1.0, "class_weight": None, "solver": "lbfgs"}, {"tau_scores": "true_class"}),
    "lbfgs C=1 (the paper's C at 10,000 points), balanced; class-1 τ": (
        {"reg_c": 1.0, "solver": "lbfgs"}, {}),
    "lbfgs C=1e4, balanced; class-1 τ": ({"reg_c": 1e4, "solver": "lbfgs"}, {}),
}


def run_seed(pair: tuple[int, int], seed: int, args: argparse.Namespace) -> dict:
    xtr, ytr, xte, yte = data(pair, args.split_seed if args.split_seed >= 0 else seed)
    torch.manual_seed(seed)
    model = PaperMLP(xtr.shape[1], args.width)
    t0 = time.perf_counter()
    loss = train(model, xtr, ytr, args.epochs, args.lr, args.batch)
    model.eval()
    k_train = trntk_kernel(model, xtr, batch_size=128)
    k_test = trntk_kernel(model, xte, xtr, batch_size=128)
    with torch.no_grad():
        logits = model(xte).numpy()
    out = {"seconds": time.perf_counter() - t0, "loss": loss, "n_train": len(ytr),
           "n_test": len(yte),
           "saturated": int(np.sum(torch.sigmoid(torch.tensor(logits)).numpy() >= 1.0)
                            + np.sum(torch.sigmoid(torch.tensor(logits)).numpy() <= 0.0))}
    for label, (fit_kw, faith_kw) in VARIANTS.items():
        glm = fit_kglm(k_train, ytr, seed=seed, **fit_kw)
        out[label] = faithfulness(glm.predict_proba(k_test), logits, yte, **faith_kw)
    return out


def spread(values: list[float], scale: float = 1.0, sign: str = "") -> str:
    v = scale * np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "n/a"
    sd = np.std(v, ddof=1) if v.size > 1 else float("nan")
    return (f"{v.mean():{sign}.3f} ± {sd:.3f} (se {sd / np.sqrt(v.size):.3f}; "
            f"{v.min():{sign}.3f}…{v.max():{sign}.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--pairs", nargs="+", default=["0,1"],
                        help="digit pairs 'a,b' (the paper's MNIST2 is 0 vs 1)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--width", type=int, default=100)
    parser.add_argument("--split-seed", type=int, default=-1,
                        help="fix the train/test split (default: one split per seed)")
    parser.add_argument("--output")
    args = parser.parse_args()
    torch.set_num_threads(1)
    lines = [
        "# trNTK kGLM faithfulness: Engel et al.'s MNIST2-MLP protocol on digits", "",
        f"- command: `{' '.join([os.path.relpath(sys.executable), *sys.argv])}`",
        f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores "
        f"(shared; load average at start {os.getloadavg()[0]:.1f}); torch "
        f"{torch.__version__}, scikit-learn {sklearn.__version__}, scipy {scipy.__version__}, "
        f"numpy {np.__version__}; 1 torch thread",
        f"- protocol: ReLU MLP in-{args.width}-{args.width}-{args.width}-1 (NTK "
        f"parameterisation, N(0,1) init), sigmoid + MSE, SGD lr {args.lr:g}, batch "
        f"{args.batch}, {args.epochs} epochs; exact trNTK over all parameters; stratified "
        f"70/30 split ({'one per seed' if args.split_seed < 0 else f'seed {args.split_seed}'}"
        f"); seeds 0–{args.seeds - 1}",
        "- paper (MNIST2 MLP, 10,000 train / 1,960 test, 100 seeds): τ = 0.7077 ± 0.0034 "
        "(standard error; seed sd ≈ 0.034), network 99.64 %, kGLM 99.67 %, TAD +0.03 pp", "",
        "Cells: mean ± seed sd (standard error; min…max).", ""]
    for pair_text in args.pairs:
        pair = tuple(int(v) for v in pair_text.split(","))
        rows = [run_seed(pair, s, args) for s in range(args.seeds)]
        r0 = rows[0]
        lines += [f"## {pair[0]} vs {pair[1]} ({r0['n_train']} train / {r0['n_test']} test)",
                  "",
                  f"- network: final training loss {spread([r['loss'] for r in rows])}; "
                  f"test outputs saturated (sigmoid exactly 0 or 1 in float32) per seed: "
                  f"{spread([r['saturated'] for r in rows])}; seconds per seed (train + "
                  f"kernels): median {np.median([r['seconds'] for r in rows]):.1f}", "",
                  "| kGLM / τ convention | Kendall τ | within ±0.05 of 0.708 (seeds) | "
                  "TAD pp | acc net % | acc kGLM % | Jaccard misclassified | seeds with "
                  "an error | scores in τ |",
                  "|---|---|---:|---|---:|---:|---|---:|---:|"]
        for label in VARIANTS:
            fs = [r[label] for r in rows]
            taus = [f.kendall_tau for f in fs]
            within = sum(abs(t - PAPER_TAU) <= 0.05 for t in taus if np.isfinite(t))
            errs = sum(f.n_misclassified_either > 0 for f in fs)
            lines.append(
                f"| {label} | {spread(taus)} | {within}/{len(fs)} | "
                f"{spread([f.tad for f in fs], 100, '+')} | "
                f"{100 * np.mean([f.accuracy_network for f in fs]):.2f} | "
                f"{100 * np.mean([f.accuracy_kglm for f in fs]):.2f} | "
                f"{spread([f.jaccard_misclassified for f in fs])} | {errs}/{len(fs)} | "
                f"{np.mean([f.n_tau for f in fs]):.0f} |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
