r"""The linear-width study of Wang et al. (NeurIPS 2023, arXiv 2211.06506), at CPU size.

Setting: inputs ``x ~ N(0, I_d)``; a single-index teacher ``y = σ*(⟨β, x⟩) + ε`` with
``‖β‖ = 1``, ``σ*(z) = z + (z² − 1)/2`` (first and second Hermite components) and noise
``ε ~ N(0, noise²)``; a two-layer student ``f(x) = aᵀ tanh(W x) / √h`` with ``W`` (``h × d``)
initialised ``N(0, 1/d)`` and fixed second layer ``a ∈ {±1}^h``; ``n``, ``d`` and ``h`` of the
same order (the linear-width regime). Only ``W`` trains, on the squared loss, with

- ``gd``: full-batch gradient descent, learning rate ``lr_small · √h``;
- ``sgd_small``: minibatch SGD (``batch``), the same small learning rate;
- ``sgd_large``: minibatch SGD with ``lr_large · √h``;
- ``adam``: minibatch Adam with ``lr_adam``;

for ``epochs`` passes over the data and several seeds (the seed sets the initialisation and
the minibatch order; the data and teacher are shared). The ``√h`` learning-rate scale is the
one under which a step moves ``W`` by O(1) in operator norm (Ba et al. 2022).

Spectra at initialisation and after training (:mod:`embedforensics.compare.spectra`):

- **weight**: ``WᵀW/h`` (``h ≥ d``), its MP bulk at the edge implied by the initialisation
  scale ``σ² = 1/d`` and fitted, outliers beyond the Tracy–Widom margin, power-law α with a
  bootstrap CI, the squared cosine of the top right singular vector with ``β`` and the
  share of ``β`` in the span of the outliers' singular vectors (``‖P_out β‖²``; outliers
  counted against the initialisation edge);
- **ck**: the conjugate kernel ``ΦΦᵀ/h`` of ``Φ = tanh(W X_test)`` on held-out inputs;
- **ntk**: the empirical NTK of the trained layer, ``(X Xᵀ/d) ⊙ (D diag(a²) Dᵀ/h)`` with
  ``D = tanh'(X Wᵀ)``, on the same inputs;

each kernel's λ_max, its ratio to the same seed's kernel at initialisation, the number of
eigenvalues above the initial λ_max (the kernels are not MP-distributed, so their initial
spectrum is the bulk) and the squared cosine of its top eigenvector with the centred test
targets. Run ``python -m embedforensics.compare.linear_width
--out DIR`` (see ``--help``); it writes ``results.json``, ``summary.md`` and ``spectra.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

OPTIMIZERS = ("gd", "sgd_small", "sgd_large", "adam")


@dataclass
class LinearWidthConfig:
    """Sizes and training settings of the study (defaults: CPU size, minutes)."""

    n: int = 1000
    d: int = 250
    h: int = 500
    n_test: int = 500
    noise: float = 0.1
    epochs: int = 10
    batch: int = 50
    lr_small: float = 0.02
    lr_large: float = 0.1
    lr_adam: float = 3e-3
    seeds: int = 3
    data_seed: int = 0
    n_bootstrap: int = 100
    optimizers: tuple[str, ...] = OPTIMIZERS


def teacher_data(cfg: LinearWidthConfig) -> dict[str, np.ndarray]:
    """Training and test inputs, targets and the teacher direction β (seeded)."""
    rng = np.random.default_rng([cfg.data_seed, 0x11AE])
    beta = rng.standard_normal(cfg.d)
    beta /= np.linalg.norm(beta)

    def draw(m: int) -> tuple[np.ndarray, np.ndarray]:
        X = rng.standard_normal((m, cfg.d))
        z = X @ beta
        return X, z + (z * z - 1) / 2 + cfg.noise * rng.standard_normal(m)

    X, y = draw(cfg.n)
    Xt, yt = draw(cfg.n_test)
    return {"X": X, "y": y, "X_test": Xt, "y_test": yt, "beta": beta}


def train(cfg: LinearWidthConfig, optimizer: str, seed: int, data: dict[str, np.ndarray]
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, float]]:
    """Train ``W`` of the student with ``optimizer``; returns (W₀, W, a, losses)."""
    import torch

    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    g = torch.Generator().manual_seed(int(seed))
    W0 = torch.randn(cfg.h, cfg.d, generator=g, dtype=torch.float64) / math.sqrt(cfg.d)
    a = torch.where(torch.rand(cfg.h, generator=g) < 0.5, -1.0, 1.0).to(torch.float64)
    W = W0.clone().requires_grad_(True)
    X = torch.from_numpy(data["X"])
    y = torch.from_numpy(data["y"])
    root_h = math.sqrt(cfg.h)
    if optimizer == "adam":
        opt = torch.optim.Adam([W], lr=cfg.lr_adam)
    else:
        lr = (cfg.lr_large if optimizer == "sgd_large" else cfg.lr_small) * root_h
        opt = torch.optim.SGD([W], lr=lr)
    batch = cfg.n if optimizer == "gd" else cfg.batch

    def loss_on(Xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((torch.tanh(Xb @ W.T) @ a / root_h - yb) ** 2).mean()

    with torch.no_grad():
        initial_loss = float(loss_on(X, y))
    for _ in range(cfg.epochs):
        order = torch.randperm(cfg.n, generator=g)
        for s in range(0, cfg.n, batch):
            idx = order[s:s + batch]
            opt.zero_grad()
            loss_on(X[idx], y[idx]).backward()
            opt.step()
    with torch.no_grad():
        losses = {"train_initial": initial_loss, "train": float(loss_on(X, y)),
                  "test": float(loss_on(torch.from_numpy(data["X_test"]),
                                        torch.from_numpy(data["y_test"])))}
    if not all(math.isfinite(v) for v in losses.values()):
        raise FloatingPointError(f"{optimizer} diverged (seed {seed}); lower its learning "
                                 "rate")
    return W0.numpy(), W.detach().numpy(), a.numpy(), losses


def kernels(W: np.ndarray, a: np.ndarray, X: np.ndarray) -> dict[str, np.ndarray]:
    """The conjugate kernel and the trained layer's empirical NTK on inputs ``X``."""
    h, d = W.shape
    pre = X @ W.T
    phi = np.tanh(pre)
    D = (1 - phi ** 2) * np.abs(a)[None, :]
    ck = phi @ phi.T / h
    ntk = (X @ X.T / d) * (D @ D.T / h)
    return {"ck": ck, "ntk": ntk}


def _kernel_stats(K: np.ndarray, target: np.ndarray,
                  init_top: float | None = None) -> dict[str, Any]:
    """λ_max, trace, eigenvalues above the initial kernel's λ_max (``init_top``: the same
    seed's kernel at initialisation; the CK and NTK are not MP-distributed, so their own
    initial spectrum is the bulk they are compared with) and the top eigenvector's squared
    cosine with the centred targets."""
    from embedforensics.compare.spectra import alignment, stable_rank

    w, v = np.linalg.eigh(0.5 * (K + K.T))
    order = np.argsort(w)[::-1]
    w, v = np.clip(w[order], 0, None), v[:, order]
    t = target - target.mean()
    top = float(w[0])
    return {"lambda_max": top, "trace": float(w.sum()), "stable_rank": stable_rank(w),
            "lambda_max_over_init": top / init_top if init_top else 1.0,
            "n_above_init_max": int(np.sum(w > init_top)) if init_top else 0,
            "alignment_top_with_targets": float(alignment(v[:, :1], t)[0]),
            "eigenvalues": w}


def _weight_stats(W: np.ndarray, beta: np.ndarray, d: int, n_bootstrap: int,
                  seed: int) -> dict[str, Any]:
    from scipy.linalg import svd

    from embedforensics.compare.spectra import alignment, mp_fit, powerlaw_fit, stable_rank

    X = W if W.shape[0] >= W.shape[1] else W.T
    _, s, vt = svd(X, full_matrices=False)
    lam = s * s / X.shape[0]
    Q = X.shape[0] / X.shape[1]
    init = mp_fit(lam, Q, sigma2=1.0 / d)
    fitted = mp_fit(lam, Q)
    pl = powerlaw_fit(lam, n_bootstrap=n_bootstrap, seed=seed)
    if pl.power_law and fitted.n_outliers == 0:  # as spectral_stats: a bulk-only spectrum
        pl.power_law = False
    right = W.shape[0] >= W.shape[1]  # then vt holds right singular vectors (in R^d)
    top = vt[:3].T if right else None
    k_out = init.n_outliers
    span = float(np.sum(alignment(vt[:k_out].T, beta))) if right and k_out else 0.0
    return {"lambda_max": float(lam[0]),
            "lambda_max_over_init_edge": init.lambda_max_over_edge,
            "n_outliers_init_edge": init.n_outliers,
            "lambda_max_over_fitted_edge": fitted.lambda_max_over_edge,
            "n_outliers_fitted": fitted.n_outliers, "sigma2_fitted": fitted.sigma2,
            "tw_z_init": init.tw_z,
            "alpha": pl.alpha, "alpha_ci": list(pl.ci) if pl.ci else None,
            "xmin": pl.xmin, "n_tail": pl.n_tail, "power_law": pl.power_law,
            "stable_rank": stable_rank(lam),
            "alignment_top_with_beta": float(alignment(top[:, :1], beta)[0])
            if top is not None else None,
            "beta_in_outlier_span": span,
            "eigenvalues": lam}


def run_study(cfg: LinearWidthConfig, out: Path | None = None) -> dict[str, Any]:
    """Train every optimiser over the seeds and measure the spectra at initialisation and
    after training; with ``out``, write ``results.json``, ``summary.md`` and
    ``spectra.png``. Returns the results (eigenvalues as lists for seed 0 only)."""
    data = teacher_data(cfg)
    runs: list[dict[str, Any]] = []
    spectra_seed0: dict[str, dict[str, list[float]]] = {}
    for opt in cfg.optimizers:
        for s in range(cfg.seeds):
            t0 = time.perf_counter()
            W0, W, a, losses = train(cfg, opt, 1000 * (OPTIMIZERS.index(opt) + 1) + s, data)
            row: dict[str, Any] = {"optimizer": opt, "seed": s, "losses": losses,
                                   "seconds": round(time.perf_counter() - t0, 2)}
            tops: dict[str, float] = {}
            for stage, M in (("init", W0), ("trained", W)):
                ws = _weight_stats(M, data["beta"], cfg.d, cfg.n_bootstrap, s)
                ks = kernels(M, a, data["X_test"])
                kst = {k: _kernel_stats(v, data["y_test"], tops.get(k))
                       for k, v in ks.items()}
                tops = {k: v["lambda_max"] for k, v in kst.items()} if stage == "init" \
                    else tops
                if s == 0:
                    spectra_seed0.setdefault(opt, {})[f"weight/{stage}"] = \
                        ws["eigenvalues"].tolist()
                    for k, v in kst.items():
                        spectra_seed0[opt][f"{k}/{stage}"] = v["eigenvalues"].tolist()
                row[stage] = {"weight": {k: v for k, v in ws.items() if k != "eigenvalues"},
                              **{k: {q: w for q, w in v.items() if q != "eigenvalues"}
                                 for k, v in kst.items()}}
            runs.append(row)
    result = {"config": asdict(cfg), "runs": runs, "summary": summarize(runs),
              "spectra_seed0": spectra_seed0}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        from embedforensics.results import jsonable

        (out / "results.json").write_text(json.dumps(jsonable(result), indent=1),
                                          encoding="utf-8")
        (out / "summary.md").write_text(summary_markdown(result), encoding="utf-8")
        plot_spectra(result, out / "spectra.png")
    return result


_SUMMARY_KEYS = [
    ("weight", "lambda_max_over_init_edge"), ("weight", "n_outliers_init_edge"),
    ("weight", "n_outliers_fitted"), ("weight", "alpha"),
    ("weight", "alignment_top_with_beta"), ("weight", "beta_in_outlier_span"),
    ("weight", "stable_rank"),
    ("ck", "lambda_max"), ("ck", "lambda_max_over_init"), ("ck", "n_above_init_max"),
    ("ck", "alignment_top_with_targets"),
    ("ntk", "lambda_max"), ("ntk", "lambda_max_over_init"), ("ntk", "n_above_init_max"),
    ("ntk", "alignment_top_with_targets"),
]


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per optimiser and stage: median and (min, max) over seeds of each statistic, the
    α bootstrap CIs, the share of seeds with a power law, and the losses."""
    out: dict[str, Any] = {}
    for opt in dict.fromkeys(r["optimizer"] for r in runs):
        rows = [r for r in runs if r["optimizer"] == opt]
        entry: dict[str, Any] = {"seeds": len(rows)}
        for stage in ("init", "trained"):
            for kind, key in _SUMMARY_KEYS:
                v = np.array([r[stage][kind][key] for r in rows], dtype=np.float64)
                f = v[np.isfinite(v)]
                entry[f"{stage}.{kind}.{key}"] = (
                    [float(np.median(f)), float(f.min()), float(f.max())] if f.size else None)
            entry[f"{stage}.weight.alpha_ci"] = [r[stage]["weight"]["alpha_ci"] for r in rows]
            entry[f"{stage}.weight.power_law_share"] = float(np.mean(
                [bool(r[stage]["weight"]["power_law"]) for r in rows]))
        for k in ("train_initial", "train", "test"):
            entry[f"loss.{k}"] = float(np.median([r["losses"][k] for r in rows]))
        out[opt] = entry
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    med, lo, hi = v
    if float(med).is_integer() and float(lo).is_integer() and float(hi).is_integer():
        return f"{med:.0f} ({lo:.0f}–{hi:.0f})"
    return f"{med:.3g} ({lo:.3g}–{hi:.3g})"


def summary_markdown(result: dict[str, Any]) -> str:
    """The summary as a Markdown table: median (min–max over seeds) per optimiser."""
    cfg = result["config"]
    lines = [f"n = {cfg['n']}, d = {cfg['d']}, h = {cfg['h']}, {cfg['epochs']} epochs, "
             f"batch {cfg['batch']}, lr_small {cfg['lr_small']}·√h, lr_large "
             f"{cfg['lr_large']}·√h, Adam lr {cfg['lr_adam']}, {cfg['seeds']} seeds; "
             "median (min–max) over seeds.", "",
             "| statistic | " + " | ".join(result["summary"]) + " |",
             "|---|" + "---|" * len(result["summary"])]
    keys = ["loss.train_initial", "loss.train", "loss.test"]
    for stage in ("init", "trained"):
        keys += [f"{stage}.{k}.{q}" for k, q in _SUMMARY_KEYS]
        keys.append(f"{stage}.weight.power_law_share")
    for key in keys:
        cells = []
        for entry in result["summary"].values():
            v = entry.get(key)
            cells.append(f"{v:.3g}" if isinstance(v, float) else _fmt(v))
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines += ["", "α bootstrap 95% CIs (trained weight, per seed):", ""]
    for opt, entry in result["summary"].items():
        cis = ", ".join("–" if c is None else f"[{c[0]:.2f}, {c[1]:.2f}]"
                        for c in entry["trained.weight.alpha_ci"])
        lines.append(f"- {opt}: {cis}")
    return "\n".join(lines) + "\n"


def plot_spectra(result: dict[str, Any], path: Path) -> None:
    """Histograms (log density) of the weight, CK and NTK spectra of seed 0 at
    initialisation and after training, one row per optimiser."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spectra = result["spectra_seed0"]
    opts = list(spectra)
    fig, axes = plt.subplots(len(opts), 3, figsize=(12, 2.6 * len(opts)), squeeze=False)
    for i, opt in enumerate(opts):
        for j, kind in enumerate(("weight", "ck", "ntk")):
            ax = axes[i][j]
            init = np.asarray(spectra[opt][f"{kind}/init"])
            trained = np.asarray(spectra[opt][f"{kind}/trained"])
            top = max(init.max(), trained.max())
            bins = np.linspace(0, top * 1.02, 60)
            ax.hist(init, bins=bins, alpha=0.5, label="init", log=True)
            ax.hist(trained, bins=bins, alpha=0.5, label="trained", log=True)
            ax.set_title(f"{opt}: {kind}", fontsize=9)
            if i == 0 and j == 0:
                ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m embedforensics.compare.linear_width --out DIR [...]``."""
    defaults = LinearWidthConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder")
    for name in ("n", "d", "h", "n_test", "epochs", "batch", "seeds", "data_seed",
                 "n_bootstrap"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int,
                            default=getattr(defaults, name))
    for name in ("noise", "lr_small", "lr_large", "lr_adam"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=float,
                            default=getattr(defaults, name))
    parser.add_argument("--optimizers", nargs="+", choices=OPTIMIZERS, default=OPTIMIZERS)
    args = vars(parser.parse_args(argv))
    out = Path(args.pop("out"))
    args["optimizers"] = tuple(args["optimizers"])
    result = run_study(LinearWidthConfig(**args), out)
    print(summary_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
