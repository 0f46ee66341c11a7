"""Spectral forensics of checkpoint groups: which training procedure made this checkpoint?

For every model (the reference ensemble and each candidate group, ``max_models`` each) the
spectra of its ``nn.Linear`` weights, and of ``ΔW = W − W₀`` against its base model (the
``base.location`` in a fine-tune's ``embedforensics-finetune.json`` record, or ``base:``),
are measured with :mod:`embedforensics.compare.spectra`: MP bulk fit, λ_max / edge, outliers
beyond a Tracy–Widom margin, stable rank, power-law α (CSN). Then:

- a **table per group** of each statistic's median and spread (min–max) over seeds, per
  layer;
- each **candidate's rank** among the reference seeds on each statistic, two-sided,
  ``p = min(1, 2·min(1 + #{ref ≤ c}, 1 + #{ref ≥ c}) / (M + 1))``, and the share of
  (layer, statistic) cells where the candidates' median lies outside the reference range;
- a **cross-validated classifier** (standardised ridge classifier over the ``n_select``
  spectral features with the largest ANOVA F in each training fold, from every spectrum all
  models have) that names the group of a held-out
  checkpoint, reference vs each candidate group and over all groups at once, with a
  label-permutation p-value (:func:`procedure_classifier`).

Only the weights are read: no input passes through the models (``kinds: [ck]`` adds the
conjugate kernel of each layer's inputs on a seeded sample of the test rows, and the squared
cosine of its top eigenvector with the label direction of those rows, ``label_alignment``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from embedforensics.compare.checkpoints import model_name
from embedforensics.errors import UserError
from embedforensics.results import AnalysisResult, Metric, jsonable
from embedforensics.study.analysis import Comparator, Outcome

STATS = ("lambda_max_over_edge", "n_outliers", "stable_rank", "alpha", "sigma2",
         "label_alignment")


class SpectraParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    layers: list[str] | None = Field(None, description="Names or name parts of the nn.Linear "
                                     "modules to measure (as in trNTK params), e.g. "
                                     "['encoder.layer.5']; default: every nn.Linear with "
                                     "both dimensions ≥ min_dim.")
    min_dim: int = Field(16, ge=2, description="Smallest matrix dimension measured.")
    kinds: list[Literal["weight", "delta", "ck"]] = Field(
        default_factory=lambda: ["weight", "delta"], min_length=1,
        description="weight: W; delta: W − W₀ against the base model; ck: the conjugate "
                    "kernel of each layer's inputs on sampled test rows.")
    base: str | None = Field(None, description="Base model folder (Hugging Face, with "
                             "model.safetensors) for ΔW; default: each fine-tune's record.")
    level: float = Field(0.99, description="Tracy–Widom level of the outlier threshold "
                                           "(0.9, 0.95, 0.975 or 0.99).")
    n_bootstrap: int = Field(0, ge=0, description="Bootstrap resamples for each α CI "
                                                  "(0: Wald interval).")
    n_inputs: int = Field(64, ge=4, description="Test rows for the conjugate kernel.")
    max_models: int = Field(8, ge=1, description="Models per group, first in order.")
    n_permutations: int = Field(200, ge=10, description="Label permutations of the "
                                                         "classifier's p-value.")
    n_select: int = Field(5, ge=1, description="Features the classifier keeps in each "
                                               "training fold (largest ANOVA F).")
    batch_size: int = Field(32, ge=1, description="Texts per forward pass (ck).")
    seed: int | None = Field(None, description="Seed (default: the recipe's seed).")


# --------------------------------------------------------------------------- classifier


def _f_scores(A: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """One-way ANOVA F of each column of ``A`` across the classes (``f_classif``)."""
    n = A.shape[0]
    grand = A.mean(0)
    between = np.zeros(A.shape[1])
    within = np.zeros(A.shape[1])
    present = 0
    for c in range(n_classes):
        Ac = A[y == c]
        if Ac.shape[0] == 0:
            continue
        present += 1
        mc = Ac.mean(0)
        between += Ac.shape[0] * (mc - grand) ** 2
        within += ((Ac - mc) ** 2).sum(0)
    dfb, dfw = max(present - 1, 1), max(n - present, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = (between / dfb) / (within / dfw)
    return np.where(np.isfinite(f), f, np.where(between > 0, np.inf, 0.0))


def _ridge_cv(X: np.ndarray, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]],
              n_classes: int, alpha: float, n_select: int | None = None) -> np.ndarray:
    """Cross-validated predictions of scikit-learn's ``make_pipeline(StandardScaler(),
    SelectKBest(f_classif, k=n_select), RidgeClassifier(alpha))`` (±1 targets, intercept;
    the features chosen on each training fold only), in closed form: thousands of
    permutation refits take milliseconds instead of the pipeline's ~15 ms each."""
    pred = np.empty(y.size, dtype=np.int64)
    for train, test in folds:
        mu = X[train].mean(0)
        sd = X[train].std(0)
        sd[sd == 0] = 1.0
        A = (X[train] - mu) / sd
        B = (X[test] - mu) / sd
        if n_select is not None and n_select < A.shape[1]:
            keep = np.sort(np.argsort(-_f_scores(A, y[train], n_classes),
                                      kind="stable")[:n_select])
            A, B = A[:, keep], B[:, keep]
        Y = -np.ones((train.size, n_classes))
        Y[np.arange(train.size), y[train]] = 1.0
        ym = Y.mean(0)
        Yc = Y - ym
        if A.shape[1] <= A.shape[0]:
            W = np.linalg.solve(A.T @ A + alpha * np.eye(A.shape[1]), A.T @ Yc)
        else:  # the dual form when features outnumber models
            W = A.T @ np.linalg.solve(A @ A.T + alpha * np.eye(A.shape[0]), Yc)
        pred[test] = np.argmax(B @ W + ym, axis=1)
    return pred


def procedure_classifier(features: np.ndarray, labels: list[str] | np.ndarray, *,
                         seed: int = 0, n_permutations: int = 200, n_splits: int = 5,
                         alpha: float = 1.0, n_select: int | None = 5) -> dict[str, Any]:
    """Cross-validated accuracy of a standardised ridge classifier on the ``n_select``
    features with the largest ANOVA F in each training fold (None: all) naming each model's
    group from its spectral ``features`` (``models × features``), with the label-permutation
    p-value ``(1 + #{permuted ≥ observed}) / (1 + n_permutations)``: the labels are permuted
    over the same stratified folds (``min(n_splits, smallest group)``, shuffled with
    ``seed``) and the classifier refitted.

    Returns accuracy, chance (the largest group's share), p-value, the cross-validated
    predictions and the number of folds; ``None`` accuracy when a group has < 2 models."""
    from sklearn.model_selection import StratifiedKFold

    X = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    classes, y_idx, counts = np.unique(y, return_inverse=True, return_counts=True)
    out: dict[str, Any] = {"n_models": int(y.size), "n_features": int(X.shape[1]),
                           "groups": {str(c): int(k) for c, k in zip(classes, counts,
                                                                        strict=True)},
                           "chance": float(counts.max() / y.size) if y.size else None}
    if classes.size < 2 or counts.min() < 2 or X.shape[1] == 0:
        out.update(accuracy=None, p_value=None, predictions=None, n_splits=0,
                   reason="needs ≥ 2 groups of ≥ 2 models and ≥ 1 feature")
        return out
    X = np.where(np.isfinite(X), X, 0.0)
    k = int(min(n_splits, counts.min()))
    folds = list(StratifiedKFold(n_splits=k, shuffle=True,
                                 random_state=int(seed)).split(X, y_idx))
    pred = _ridge_cv(X, y_idx, folds, classes.size, alpha, n_select)
    score = float(np.mean(pred == y_idx))
    rng = np.random.default_rng([int(seed), 0x9E2])
    perm = np.array([np.mean(_ridge_cv(X, yp, folds, classes.size, alpha, n_select) == yp)
                     for yp in (rng.permutation(y_idx) for _ in range(int(n_permutations)))])
    p = (1 + int(np.sum(perm >= score))) / (1 + int(n_permutations))
    out.update(accuracy=score, p_value=float(p), n_splits=k, n_select=n_select,
               permuted_mean=float(perm.mean()),
               predictions=[str(classes[v]) for v in pred], reason="")
    return out


def rank_p(value: float, reference: np.ndarray) -> float:
    """Two-sided rank p of ``value`` among ``reference`` values (see the module docstring)."""
    r = np.asarray(reference, dtype=np.float64)
    lo = 1 + int(np.sum(r <= value))
    hi = 1 + int(np.sum(r >= value))
    return float(min(1.0, 2 * min(lo, hi) / (r.size + 1)))


def _stat_values(stats: Any) -> dict[str, float]:
    a = stats.powerlaw.alpha
    return {"lambda_max_over_edge": stats.mp.lambda_max_over_edge,
            "n_outliers": float(stats.mp.n_outliers), "stable_rank": stats.stable_rank,
            "alpha": float(a) if math.isfinite(a) else float("nan"),
            "sigma2": stats.mp.sigma2, "label_alignment": float("nan")}


def _base_state(path: Path, explicit: str | None, cache: dict[str, Any]) -> Any:
    """The base model's weights (a numpy state dict) for ΔW, or None."""
    location = explicit
    if location is None:
        record = Path(path) / "embedforensics-finetune.json"
        if record.is_file():
            try:
                location = json.loads(record.read_text(encoding="utf-8"))["base"]["location"]
            except (ValueError, KeyError, TypeError):
                location = None
    if location is None:
        return None
    if location not in cache:
        from safetensors.numpy import load_file

        f = Path(location) / "model.safetensors"
        cache[location] = load_file(str(f)) if f.is_file() else None
    return cache[location]


class SpectraComparator(Comparator):
    """Weight and ΔW spectra (MP edge, outliers, stable rank, power-law α) per layer against
    the reference seeds, and a cross-validated classifier naming the training procedure."""

    name = "spectra"
    Params = SpectraParams

    def _ck_inputs(self, inputs: Any, scored: Any, rows: np.ndarray) -> Any:
        import torch

        if scored.scorer.input == "embeddings":
            return torch.from_numpy(np.ascontiguousarray(
                inputs.prepared.embeddings.X[rows], dtype=np.float32))
        _, tokenizer = scored.scorer.torch_module()
        cmp = inputs.ctx.recipe.compare
        max_length = cmp.max_length or (inputs.ctx.recipe.model.max_length
                                        if inputs.ctx.recipe.model else None)
        enc = tokenizer([inputs.prepared.texts[i] for i in rows], padding=True,
                        truncation=True, max_length=max_length, return_tensors="pt")
        return dict(enc)

    def run(self, inputs: Any) -> Outcome:
        from embedforensics.compare.spectra import (
            TW1_QUANTILES,
            alignment,
            layer_spectra,
            spectral_stats,
        )

        p = self.params
        file = inputs.ctx.file_of(self.key)
        if p.level not in TW1_QUANTILES:
            raise UserError(f"level must be one of {sorted(TW1_QUANTILES)}; got {p.level}.",
                            file=file, key=f"{self.key}.level")
        if p.base is not None and not (Path(p.base) / "model.safetensors").is_file():
            raise UserError(f"base '{p.base}' has no model.safetensors.", file=file,
                            key=f"{self.key}.base")
        seed = p.seed if p.seed is not None else int(inputs.ctx.recipe.seed)
        reference = list(inputs.reference)[:p.max_models]
        M = len(reference)
        if M < 2:
            raise UserError("the spectra comparator needs at least 2 reference models for "
                            f"its seed null; the reference has {M}.", file=file, key=self.key)
        groups: dict[str, list[Any]] = {"reference": reference}
        for g, v in inputs.candidates.items():
            if v:
                groups[g if g != "reference" else "reference (candidates)"] = \
                    list(v)[:p.max_models]
        rows = None
        if "ck" in p.kinds:
            test = np.asarray(inputs.prepared.test_idx)
            rng = np.random.default_rng([seed, 0x5BEC])
            rows = np.sort(rng.choice(test, size=min(p.n_inputs, test.size), replace=False))

        base_cache: dict[str, Any] = {}
        # stats[group][model] = {(kind, layer): {stat: value}}; also the per-spectrum fits
        stats: dict[str, dict[str, dict[tuple[str, str], dict[str, float]]]] = {}
        fits: dict[str, dict[str, Any]] = {}
        hist: dict[tuple[str, str], tuple[np.ndarray, Any]] = {}
        for g, members in groups.items():
            stats[g] = {}
            for scored in members:
                name = model_name(scored.path)
                module, _tok = scored.scorer.torch_module()
                initial = _base_state(scored.path, p.base, base_cache) \
                    if "delta" in p.kinds else None
                ck_in = self._ck_inputs(inputs, scored, rows) if rows is not None else None
                spectra = layer_spectra(module, ck_in, initial, layers=p.layers,
                                        kinds=p.kinds, min_dim=p.min_dim, seed=seed,
                                        batch_size=p.batch_size)
                if not spectra:
                    raise UserError(f"no nn.Linear layer of '{name}' matches layers="
                                    f"{p.layers} with both dimensions ≥ {p.min_dim}.",
                                    file=file, key=f"{self.key}.layers")
                per: dict[tuple[str, str], dict[str, float]] = {}
                for i, sp in enumerate(spectra):
                    st = spectral_stats(sp.eigenvalues, sp.aspect_ratio, level=p.level,
                                        n_bootstrap=p.n_bootstrap, seed=seed + i,
                                        n_rows=sp.shape[0])
                    per[(sp.kind, sp.name)] = _stat_values(st)
                    if sp.kind == "ck" and sp.vectors is not None:
                        # the CK's top eigenvector (sample space) against the label
                        # direction: the largest squared cosine with a centred
                        # one-vs-rest indicator of the sampled rows' classes
                        y = np.asarray(inputs.prepared.y)[rows]
                        per[(sp.kind, sp.name)]["label_alignment"] = max(
                            (float(alignment(sp.vectors[:, :1], (y == c) - np.mean(y == c))[0])
                             for c in np.unique(y)), default=float("nan"))
                    fits.setdefault(name, {})[f"{sp.kind}:{sp.name}"] = st.to_dict()
                    if g == "reference" and (sp.kind, sp.name) not in hist:
                        hist[(sp.kind, sp.name)] = (sp.eigenvalues, st)
                stats[g][name] = per

        keys = sorted({k for g in stats.values() for per in g.values() for k in per})
        common = [k for k in keys if all(k in per for g in stats.values()
                                          for per in g.values())]

        def values(g: str, key: tuple[str, str], stat: str) -> np.ndarray:
            return np.array([per[key][stat] for per in stats[g].values() if key in per],
                            dtype=np.float64)

        # the per-group table of medians and seed spread
        table = []
        for key in keys:
            for g in groups:
                for stat in STATS:
                    v = values(g, key, stat)
                    f = v[np.isfinite(v)]
                    if f.size == 0:
                        continue
                    table.append([g, key[0], key[1], stat, v.size,
                                  float(np.median(f)) if f.size else None,
                                  float(f.min()) if f.size else None,
                                  float(f.max()) if f.size else None])

        def feature_matrix() -> tuple[np.ndarray, list[str]]:
            X, y = [], []
            for g, per_model in stats.items():
                for per in per_model.values():
                    row = []
                    for key in common:
                        s = per[key]
                        row += [math.log(max(s["lambda_max_over_edge"], 1e-300)),
                                s["n_outliers"], math.log(max(s["stable_rank"], 1e-300)),
                                min(s["alpha"], 20.0) if math.isfinite(s["alpha"]) else 20.0,
                                math.log(max(s["sigma2"], 1e-300))]
                    X.append(row)
                    y.append(g)
            return np.asarray(X, dtype=np.float64).reshape(len(y), -1), y

        Xall, yall = feature_matrix()
        overall = procedure_classifier(Xall, yall, seed=seed,
                                       n_permutations=p.n_permutations, n_select=p.n_select)

        results: list[AnalysisResult] = []
        provenance_groups: dict[str, Any] = {}
        for g in groups:
            if g == "reference":
                continue
            sel = [i for i, lab in enumerate(yall) if lab in ("reference", g)]
            binary = procedure_classifier(Xall[sel], [yall[i] for i in sel], seed=seed,
                                          n_permutations=p.n_permutations,
                                          n_select=p.n_select)
            rank_rows, outside, cells = [], 0, 0
            for key in keys:
                for stat in STATS:
                    ref = values("reference", key, stat)
                    cand = values(g, key, stat)
                    ref, cand_f = ref[np.isfinite(ref)], cand[np.isfinite(cand)]
                    if ref.size < 2 or cand_f.size == 0:
                        continue
                    med = float(np.median(cand_f))
                    cells += 1
                    out_of_range = bool(med < ref.min() or med > ref.max())
                    outside += out_of_range
                    for name, per in stats[g].items():
                        if key in per and math.isfinite(per[key][stat]):
                            rank_rows.append([name, key[0], key[1], stat, per[key][stat],
                                              rank_p(per[key][stat], ref),
                                              float(np.median(ref)), float(ref.min()),
                                              float(ref.max())])
            share = outside / cells if cells else float("nan")
            acc, pv = binary["accuracy"], binary["p_value"]
            metrics = {
                "outside_reference_range": Metric(
                    value=share, n=cells, method="share of (spectrum, statistic) cells whose "
                    "candidate median lies outside the reference seeds' min–max",
                    description="spectral statistics the candidates move beyond seed "
                                "variation")}
            if acc is not None:
                metrics["classifier_accuracy"] = Metric(
                    value=acc, n=binary["n_models"], p_value=pv,
                    method=f"{binary['n_splits']}-fold stratified CV of a standardised "
                           f"ridge classifier on the {p.n_select} of "
                           f"{binary['n_features']} spectral features with the largest F "
                           f"per fold; p from {p.n_permutations} label permutations",
                    description=f"reference vs {g}: how often a held-out checkpoint's group "
                                f"is named correctly (chance {binary['chance']:.2f})")
            verdict = ("told apart" if pv is not None and pv < 0.05 else
                       "not told apart" if pv is not None else "not classifiable")
            summary = (f"{g}: spectra of {len(stats[g])} candidates vs {M} reference seeds; "
                       f"{outside} of {cells} statistics ({share:.0%}) have the candidates' "
                       f"median outside the seed range; classifier "
                       + (f"accuracy {acc:.2f} (chance {binary['chance']:.2f}, permutation "
                          f"p {pv:.3f}): {verdict}." if acc is not None
                          else f"not run ({binary['reason']})."))
            if M + len(stats[g]) < 6:
                summary += " Few models: the permutation p cannot go far below 0.05."
            results.append(AnalysisResult(
                probe=f"spectra-{g}", summary=summary,
                params={**p.model_dump(), "seed": seed}, metrics=metrics,
                tables={"ranks": {"columns": ["candidate", "kind", "layer", "statistic",
                                              "value", "rank_p", "reference_median",
                                              "reference_min", "reference_max"],
                                  "rows": rank_rows}}))
            provenance_groups[g] = {"classifier": binary}

        # the overall result: the group table, the all-groups classifier, ESD plots
        plots = []
        for (kind, layer), (lam, st) in list(hist.items())[:6]:
            plots.append(_esd_plot(kind, layer, lam, st))
        acc = overall["accuracy"]
        metrics = {}
        if acc is not None:
            metrics["classifier_accuracy"] = Metric(
                value=acc, n=overall["n_models"], p_value=overall["p_value"],
                method=f"{overall['n_splits']}-fold stratified CV, all {len(groups)} groups; "
                       f"p from {p.n_permutations} label permutations",
                description=f"the group of a held-out checkpoint named correctly "
                            f"(chance {overall['chance']:.2f})")
        summary = (f"Spectra of {len(keys)} spectra per model ({len(common)} shared by every "
                   f"model feed the classifier) over {sum(len(v) for v in stats.values())} "
                   "models; " + (f"all-groups classifier accuracy {acc:.2f} (chance "
                                 f"{overall['chance']:.2f}, permutation p "
                                 f"{overall['p_value']:.3f})." if acc is not None
                                 else f"no classifier ({overall['reason']})."))
        results.insert(0, AnalysisResult(
            probe="spectra", summary=summary, params={**p.model_dump(), "seed": seed},
            metrics=metrics,
            tables={"groups": {"columns": ["group", "kind", "layer", "statistic", "n",
                                           "median", "min", "max"], "rows": table}},
            plots=plots))
        provenance = {"spectra": {"seed": seed, "groups": {g: list(v) for g, v in
                                                           stats.items()},
                                  "common_spectra": [f"{k}:{n}" for k, n in common],
                                  "classifier": overall, "per_group": provenance_groups,
                                  "fits": fits}}
        return Outcome(results, provenance=jsonable(provenance))


def _esd_plot(kind: str, layer: str, lam: np.ndarray, st: Any) -> dict[str, Any]:
    """An ESD histogram (density, as steps) with the fitted MP density and the power-law
    tail ``(α−1)/x_min (x/x_min)^−α`` scaled by the tail share."""
    from embedforensics.compare.spectra import mp_density

    lam = np.asarray(lam, dtype=np.float64)
    top = float(lam.max()) if lam.size else 1.0
    bins = np.linspace(0, top * 1.02, 41)
    h, edges = np.histogram(lam, bins=bins, density=True)
    xs = np.linspace(0, top * 1.02, 200)
    series = [{"label": f"ESD of {kind} (reference seed 1)", "x": edges[:-1].tolist(),
               "y": h.tolist(), "step": True},
              {"label": f"MP fit (σ² = {st.mp.sigma2:.3g}, {st.mp.n_outliers} outliers)",
               "x": xs.tolist(),
               "y": mp_density(xs, st.mp.sigma2, st.mp.aspect_ratio).tolist(),
               "dashed": True}]
    pl = st.powerlaw
    if pl.power_law and math.isfinite(pl.alpha):
        xt = np.linspace(pl.xmin, top, 60)
        share = pl.n_tail / max(pl.n, 1)
        series.append({"label": f"power law α = {pl.alpha:.2f} from x_min = {pl.xmin:.3g}",
                       "x": xt.tolist(),
                       "y": (share * (pl.alpha - 1) / pl.xmin
                             * (xt / pl.xmin) ** -pl.alpha).tolist()})
    return {"kind": "lines", "title": f"{kind} spectrum of {layer}", "xlabel": "eigenvalue",
            "ylabel": "density", "data": {"series": series}}
