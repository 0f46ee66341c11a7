"""Functional similarity by model stitching, against a seed null (issue 17).

For each stitch point (a ``hidden_states`` index, the same on both sides) and fitting
method (:mod:`embedforensics.compare.stitching`: ``direct``, ``task``, ``soft``, ``fula``):

- the **null**: every ordered pair of reference models ``(a, b)``, ``a ≠ b``, is stitched
  ``b_{>j} ∘ T ∘ a_{≤j}`` and its stitching penalty (b's accuracy minus the stitched
  model's, on a seeded sample of the compare test rows) measured; each reference model's
  leave-one-out value is the mean penalty of the stitches it takes part in (either side);
- each **candidate** is stitched with every reference model in both directions
  (candidate→reference: the candidate's front, the reference's back; reference→candidate:
  the other way); its value is the mean penalty over references, directions and fitting
  seeds, ranked among the references' leave-one-out values: ``rank p = (1 + #{loo ≥ c}) /
  (M + 1)`` (a larger penalty than the seeds' = low p);
- intervals: the range over stitch-fitting seeds, and a 95% percentile bootstrap over the
  test inputs (paired: each input's "B right − stitched right", averaged over stitches);
- **controls**, always shown: the first reference stitched to itself (penalty ≈ 0 with
  every method) and a randomly initialised copy of its architecture as the front (a large
  penalty where the representation matters);
- optionally a **cross-layer matrix** (reference 0's layer i into the first candidate's
  layer j, one method) drawn as a heatmap; per-layer curves per group.

The fitting rows are a seeded sample of the compare *training* rows (the models' own fit
data, never the test rows), so the stitch is judged on inputs it was not fitted on; with
``compare.test: all`` (no training rows) the test rows are split in two, disjoint halves.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from embedforensics.compare.checkpoints import model_name
from embedforensics.errors import UserError
from embedforensics.results import AnalysisResult, Metric
from embedforensics.study.analysis import Comparator, Outcome

log = logging.getLogger(__name__)
MethodName = Literal["direct", "task", "soft", "fula"]
N_BOOTSTRAP = 1000
RANK_P_LEVEL = 0.1


class StitchingParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    layers: list[int] = Field(default_factory=lambda: [-2], min_length=1,
                              description="Stitch points, hidden_states indices (0 = "
                                          "embeddings output, k = after k blocks, negative "
                                          "from the end); heads: 0 = input, 1 = hidden.")
    methods: list[MethodName] = Field(default_factory=lambda: ["task", "fula"], min_length=1,
                                      description="Ways to fit the affine stitch.")
    steps: int = Field(50, ge=0, description="Adam steps for task/soft/fula (one fitting "
                                             "batch each).")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate.")
    batch_size: int = Field(16, ge=1, description="Fitting batch size (and forward batch).")
    temperature: float = Field(1.0, gt=0, description="Softmax temperature of 'soft'.")
    fula_weighting: Literal["linear", "uniform"] = Field(
        "linear", description="FuLA depth weights: ∝ depth after the stitch + 1, or equal.")
    n_fit: int = Field(128, ge=4, description="Seeded sample of the training rows to fit on "
                                              "(more tokens than hidden dimensions + 1, "
                                              "else direct is underdetermined).")
    n_test: int = Field(128, ge=4, description="Seeded sample of the test rows to measure on.")
    seeds: int = Field(2, ge=1, description="Stitch-fitting seeds (batch order).")
    max_models: int = Field(4, ge=1, description="Models used per group (reference and each "
                                                 "candidate group), first in order.")
    controls: bool = Field(True, description="Self-stitch and random-init controls.")
    matrix: bool = Field(False, description="Cross-layer matrix for reference 0 → the first "
                                            "candidate.")
    matrix_layers: list[int] | None = Field(None, description="Layers of the matrix "
                                                              "(default: layers).")
    matrix_method: MethodName = Field("direct", description="Method of the matrix stitches.")
    max_length: int | None = Field(None, ge=2, description="Tokens per text (default: "
                                                           "compare.max_length).")
    seed: int | None = Field(None, description="Sampling seed (default: the recipe's seed).")

    @field_validator("layers", "methods")
    @classmethod
    def _distinct(cls, value: list[Any]) -> list[Any]:
        if len(set(value)) != len(value):
            raise ValueError("entries must be distinct")
        return value


def _random_copy(module: Any, seed: int) -> Any:
    """A randomly initialised model of the same architecture (weights from ``seed``)."""
    import copy

    import torch

    torch.manual_seed(seed)
    if isinstance(module, torch.nn.Sequential):
        fresh = copy.deepcopy(module)
        for m in fresh.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
        return fresh.eval()
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_config(module.config).eval()


class StitchingComparator(Comparator):
    """Model stitching penalties (direct / task / soft / FuLA) of each candidate with the
    reference models, both directions, ranked among the reference seeds' own stitches."""

    name = "stitching"
    Params = StitchingParams

    def _err(self, inputs: Any, message: str, key: str = "") -> UserError:
        return UserError(message, file=inputs.ctx.file_of(self.key),
                         key=f"{self.key}.{key}" if key else self.key)

    # ------------------------------------------------------------------ features

    def _batches(self, inputs: Any, scored: Any, module: Any, tokenizer: Any,
                 rows: np.ndarray) -> list[dict[str, Any]]:
        import torch

        p = self.params
        y = np.asarray(inputs.prepared.y)[rows]
        order = np.array([list(scored.scorer.classes).index(c)
                          for c in inputs.prepared.classes])
        labels = order[y]
        out = []
        if scored.scorer.input == "embeddings":
            X = np.asarray(inputs.prepared.embeddings.X[rows], dtype=np.float32)
            for s in range(0, len(rows), p.batch_size):
                out.append({"inputs": torch.from_numpy(np.ascontiguousarray(X[s:s + p.batch_size])),
                            "labels": torch.from_numpy(labels[s:s + p.batch_size])})
            return out
        cmp = inputs.ctx.recipe.compare
        max_length = p.max_length or cmp.max_length or (
            inputs.ctx.recipe.model.max_length if inputs.ctx.recipe.model else None)
        texts = [inputs.prepared.texts[i] for i in rows]
        for s in range(0, len(texts), p.batch_size):
            enc = tokenizer(texts[s:s + p.batch_size], padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt")
            batch = dict(enc)
            batch["labels"] = torch.from_numpy(labels[s:s + p.batch_size])
            out.append(batch)
        return out

    # ------------------------------------------------------------------ run

    def run(self, inputs: Any) -> Outcome:  # noqa: C901 - one pass, kept in order
        import torch

        from embedforensics.compare.stitching import (
            as_stitchable,
            compute_features,
            resolve_layer,
            stitch_features,
        )

        p = self.params
        seed = p.seed if p.seed is not None else int(inputs.ctx.recipe.seed)
        rng = np.random.default_rng([seed, 0x5717])
        test = np.asarray(inputs.prepared.test_idx)
        train = np.setdiff1d(np.asarray(inputs.prepared.train_idx), test)
        if train.size < 4:  # compare.test: all — fit and measure on disjoint test rows
            if test.size < 8:
                raise self._err(inputs, "the stitching comparator needs at least 8 test rows "
                                        f"(no training rows); the compare set has {test.size}.")
            k = min(p.n_test, test.size // 2)
            perm = rng.permutation(test)
            test, train = perm[:k], perm[k:]
        if test.size < 4:
            raise self._err(inputs, "the stitching comparator needs at least 4 test rows; the "
                                    f"split has {test.size}.")
        fit_rows = np.sort(rng.choice(train, size=min(p.n_fit, train.size), replace=False))
        test_rows = np.sort(rng.choice(test, size=min(p.n_test, test.size), replace=False))
        # similar lengths together: less padding per fitting batch
        lengths = (np.array([len(inputs.prepared.texts[i]) for i in fit_rows])
                   if getattr(inputs.prepared, "texts", None) is not None else None)
        if lengths is not None:
            fit_rows = fit_rows[np.argsort(lengths, kind="stable")]
        reference = list(inputs.reference)[:p.max_models]
        M = len(reference)
        if M < 2:
            raise self._err(inputs, "the stitching comparator needs at least 2 reference "
                                    f"models for its null; the reference has {M}.")
        candidates = {g: list(v)[:p.max_models] for g, v in inputs.candidates.items()}

        feats: dict[str, tuple[Any, Any, Any]] = {}  # name -> (net, fit, test)
        ref_ids: list[Any] = []

        def load(scored: Any, name: str | None = None, module: Any = None) -> tuple[Any, ...]:
            name = name or model_name(scored.path)
            if name in feats:
                return feats[name]
            mod, tok = scored.scorer.torch_module()
            if module is not None:
                mod = module
            mod.eval()
            net = as_stitchable(mod)
            layers = []
            for layer in [*p.layers, *(p.matrix_layers or [])]:
                try:
                    layers.append(resolve_layer(layer, net.n_states))
                except ValueError as exc:
                    raise self._err(inputs, f"{exc} ('{name}').", "layers") from None
            keep = set(layers)
            if "fula" in p.methods or (p.matrix and p.matrix_method == "fula"):
                keep |= set(range(min(layers), net.n_states))
            fb = self._batches(inputs, scored, mod, tok, fit_rows)
            tb = self._batches(inputs, scored, mod, tok, test_rows)
            if "input_ids" in fb[0]:
                ids = [b["input_ids"] for b in fb[:1]]
                if not ref_ids:
                    ref_ids.extend(ids)
                elif not all(torch.equal(a, b) for a, b in zip(ref_ids, ids, strict=True)):
                    raise self._err(inputs, f"'{name}' tokenizes the texts differently from "
                                            "the first reference model; stitching needs "
                                            "models that share a tokenizer.")
            feats[name] = (net, compute_features(net, fb, keep), compute_features(net, tb, keep))
            return feats[name]

        kw = {"steps": p.steps, "lr": p.lr, "temperature": p.temperature,
              "fula_weighting": p.fula_weighting}

        def run_stitch(a: tuple[Any, ...], b: tuple[Any, ...], i: int, j: int, method: str,
                       s: int) -> Any:
            try:
                return stitch_features(b[0], a[1], b[1], a[2], b[2], layer_a=i, layer_b=j,
                                       method=method, seed=s, **kw)
            except ValueError as exc:
                raise self._err(inputs, f"stitching failed: {exc}.") from None

        ref_names = [model_name(s.path) for s in reference]
        refs = [load(s) for s in reference]
        warnings: list[str] = []
        fit0 = refs[0][1]
        n_tokens = int(sum(int(m.sum()) for m in fit0.masks))
        width = max(int(h.shape[-1]) for h in fit0.states[0].values())
        if n_tokens <= width + 1:
            warnings.append(
                f"stitching: {n_tokens} fitting tokens for hidden vectors of up to {width} "
                "dimensions: the least-squares stitch is underdetermined (minimum-norm), so "
                "even a self-stitch can cost accuracy on the test rows; raise n_fit.")
        records: list[dict[str, Any]] = []

        def diff_vector(r: Any, y: np.ndarray, back: tuple[Any, ...]) -> np.ndarray:
            pred_b = torch.cat(back[2].logits).numpy().argmax(1)
            return (pred_b == y).astype(float) - (r.probs.argmax(1) == y).astype(float)

        def labels_of(back: tuple[Any, ...]) -> np.ndarray:
            return torch.cat(back[2].labels).numpy()

        # null: ordered reference pairs
        null: dict[tuple[int, str], np.ndarray] = {}  # (layer, method) -> [M, M] penalties
        started = time.perf_counter()
        for layer in p.layers:
            for method in p.methods:
                P = np.full((M, M), np.nan)
                for a in range(M):
                    for b in range(M):
                        if a == b:
                            continue
                        vals = []
                        for s in range(p.seeds):
                            r = run_stitch(refs[a], refs[b], layer, layer, method, s)
                            vals.append(r.penalty)
                            records.append({"a": ref_names[a], "b": ref_names[b],
                                            "role": "null", **r.to_dict()})
                        P[a, b] = float(np.mean(vals))
                null[(layer, method)] = P
                log.info("stitching null (%d reference pairs), layer %d, %s: %.1f s so far",
                         M * (M - 1), layer, method, time.perf_counter() - started)
        loo = {k: np.array([(np.nansum(P[m]) + np.nansum(P[:, m])) / (2 * (M - 1))
                            for m in range(M)]) for k, P in null.items()}

        results: list[AnalysisResult] = []
        for group, members in candidates.items():
            if not members:
                continue
            metrics: dict[str, Metric] = {}
            table_rows: list[list[Any]] = []
            verdict: dict[tuple[int, str], float] = {}
            curves: dict[str, dict[str, list[float]]] = {
                m: {"null": [], "cand": []} for m in p.methods}
            for layer in p.layers:
                for method in p.methods:
                    pairs_null = null[(layer, method)][~np.eye(M, dtype=bool)]
                    ref_med = float(np.median(pairs_null))
                    cand_vals, cand_ranks, cand_diffs = [], [], []
                    agree_all, kl_all = [], []
                    per_dir: dict[str, list[float]] = {"to_reference": [],
                                                       "from_reference": []}
                    for scored in members:
                        name = model_name(scored.path)
                        cand = load(scored)
                        by_seed = {d: np.zeros(p.seeds) for d in per_dir}
                        diffs, agree, kls = [], [], []
                        for r_idx, ref in enumerate(refs):
                            for direction, (a, b) in (("to_reference", (cand, ref)),
                                                      ("from_reference", (ref, cand))):
                                for s in range(p.seeds):
                                    r = run_stitch(a, b, layer, layer, method, s)
                                    by_seed[direction][s] += r.penalty / M
                                    diffs.append(diff_vector(r, labels_of(b), b))
                                    agree.append(r.agreement)
                                    kls.append(r.kl)
                                    records.append({
                                        "a": name if direction == "to_reference"
                                        else ref_names[r_idx],
                                        "b": ref_names[r_idx] if direction == "to_reference"
                                        else name, "role": group, **r.to_dict()})
                        value = float(np.mean([by_seed[d].mean() for d in by_seed]))
                        rank = (1 + int(np.sum(loo[(layer, method)] >= value))) / (M + 1)
                        seed_vals = (by_seed["to_reference"] + by_seed["from_reference"]) / 2
                        dmean = np.mean(diffs, axis=0)
                        brng = np.random.default_rng([seed, 0xB007, len(table_rows)])
                        idx = brng.integers(0, dmean.size, size=(N_BOOTSTRAP, dmean.size))
                        boot = dmean[idx].mean(1)
                        ci = (float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975)))
                        for d in per_dir:
                            per_dir[d].append(float(by_seed[d].mean()))
                        table_rows.append([
                            name, layer, method, value, float(by_seed["to_reference"].mean()),
                            float(by_seed["from_reference"].mean()), float(seed_vals.min()),
                            float(seed_vals.max()), ci[0], ci[1], float(np.mean(agree)),
                            float(np.mean(kls)), rank, ref_med])
                        cand_vals.append(value)
                        cand_ranks.append(rank)
                        cand_diffs.append(dmean)
                        agree_all.append(float(np.mean(agree)))
                        kl_all.append(float(np.mean(kls)))
                    med = float(np.median(cand_vals))
                    group_rank = (1 + int(np.sum(loo[(layer, method)] >= med))) / (M + 1)
                    gd = np.mean(cand_diffs, axis=0)
                    brng = np.random.default_rng([seed, 0xB00C, layer % 997, len(metrics)])
                    idx = brng.integers(0, gd.size, size=(N_BOOTSTRAP, gd.size))
                    boot = gd[idx].mean(1)
                    n_test = int(gd.size)
                    metrics[f"penalty_{method}_layer_{layer}"] = Metric(
                        value=med, n=n_test, range=(min(cand_vals), max(cand_vals)),
                        ci=(float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))),
                        ci_level=0.95, reference_median=ref_med,
                        method=f"{method} stitch at hidden state {layer}; median over "
                               f"{len(cand_vals)} candidates of the mean penalty over {M} "
                               f"reference models × 2 directions × {p.seeds} seeds; CI: "
                               f"percentile bootstrap over the {n_test} test inputs of the "
                               "group's mean penalty; range over candidates",
                        description="stitching penalty (back model's accuracy minus the "
                                    f"stitched model's); reference pairs: median {ref_med:.3f}")
                    for d, label in (("to_reference", "candidate→reference"),
                                     ("from_reference", "reference→candidate")):
                        metrics[f"penalty_{d}_{method}_layer_{layer}"] = Metric(
                            value=float(np.median(per_dir[d])), n=n_test,
                            range=(min(per_dir[d]), max(per_dir[d])),
                            method=f"{label} only; median over candidates",
                            description=f"stitching penalty, {label}")
                    metrics[f"agreement_{method}_layer_{layer}"] = Metric(
                        value=float(np.median(agree_all)), n=n_test,
                        range=(min(agree_all), max(agree_all)),
                        method="share of test inputs where the stitched model predicts the "
                               "back model's class; median over candidates of the mean over "
                               "stitches", description="agreement with the back model")
                    metrics[f"kl_{method}_layer_{layer}"] = Metric(
                        value=float(np.median(kl_all)), n=n_test,
                        range=(min(kl_all), max(kl_all)),
                        method="mean KL(p_back ‖ p_stitched) in nats; median over candidates",
                        description="KL divergence of the stitched outputs from the back "
                                    "model's")
                    metrics[f"rank_p_{method}_layer_{layer}"] = Metric(
                        value=group_rank, n=M, range=(min(cand_ranks), max(cand_ranks)),
                        method="rank of the median candidate among the reference models' "
                               "leave-one-out mean penalties, (1 + #{loo ≥ c}) / (M + 1); "
                               "range over candidates",
                        description="low = stitching with the ensemble costs more than "
                                    "between its own seeds")
                    log.info("stitching %s, layer %d, %s: %.1f s so far", group, layer, method,
                             time.perf_counter() - started)
                    curves[method]["null"].append(ref_med)
                    curves[method]["cand"].append(med)
                    verdict[(layer, method)] = group_rank
            parts = [f"{method} at layer {layer}: "
                     f"{'worse' if r <= RANK_P_LEVEL else 'not worse'} (rank p {r:.2f})"
                     for (layer, method), r in verdict.items()]
            summary = (f"{group}: does stitching the candidates with the reference models cost "
                       f"more accuracy than stitching the reference seeds with each other "
                       f"(rank p ≤ {RANK_P_LEVEL}, {len(test_rows)} test inputs)? "
                       + "; ".join(parts) + ".")
            if 1 / (M + 1) > RANK_P_LEVEL:
                summary += (f" With {M} reference models the smallest rank p is "
                            f"{1 / (M + 1):.2f}, so no candidate can be called worse.")
            x = list(range(len(p.layers)))
            series = []
            for method in p.methods:
                series.append({"label": f"reference pairs, median ({method})", "x": x,
                               "y": curves[method]["null"], "marker": True, "dashed": True})
                series.append({"label": f"{group} vs reference, median ({method})", "x": x,
                               "y": curves[method]["cand"], "marker": True})
            results.append(AnalysisResult(
                probe=f"stitching-{group}", summary=summary,
                params={**p.model_dump(), "seed": seed}, metrics=metrics,
                tables={"stitching": {
                    "columns": ["candidate", "layer", "method", "penalty",
                                "penalty_to_reference", "penalty_from_reference",
                                "seed_min", "seed_max", "ci_low", "ci_high", "agreement", "kl",
                                "rank_p", "reference_pairs_median"],
                    "rows": table_rows}},
                plots=[{"kind": "lines", "title": f"{group}: stitching penalty against layer",
                        "xlabel": "stitch point (hidden state)", "ylabel": "penalty",
                        "data": {"series": series, "xticks": [str(v) for v in p.layers]}}]))

        if p.controls:
            results.append(self._controls(inputs, reference[0], ref_names[0], refs[0], load,
                                          run_stitch, records, seed))
        if p.matrix:
            other = next((v[0] for v in candidates.values() if v), reference[1])
            results.append(self._matrix(inputs, ref_names[0], refs[0], model_name(other.path),
                                        load(other), run_stitch, records))
        provenance = {"stitching": {
            "seed": seed, "n_fit": int(len(fit_rows)), "n_test": int(len(test_rows)),
            "fit_ids": [str(inputs.prepared.ids[i]) for i in np.sort(fit_rows)],
            "test_ids": [str(inputs.prepared.ids[i]) for i in test_rows],
            "reference": ref_names,
            "candidates": {g: [model_name(s.path) for s in v] for g, v in candidates.items()},
            "stitches": [{k: v for k, v in r.items() if k != "losses"} for r in records]}}
        return Outcome(results, provenance=provenance, warnings=warnings)

    # ------------------------------------------------------------------ controls

    def _controls(self, inputs: Any, scored: Any, name: str, ref: tuple[Any, ...], load: Any,
                  run_stitch: Any, records: list[dict[str, Any]], seed: int) -> AnalysisResult:
        p = self.params
        module, _ = scored.scorer.torch_module()
        rand = load(scored, name=f"{name} (random init)", module=_random_copy(module, seed))
        metrics: dict[str, Metric] = {}
        rows = []
        for layer in p.layers:
            for method in p.methods:
                for label, front in (("self", ref), ("random_init", rand)):
                    r = run_stitch(front, ref, layer, layer, method, 0)
                    records.append({"a": name if label == "self" else f"{name} (random init)",
                                    "b": name, "role": f"control-{label}", **r.to_dict()})
                    rows.append([label, layer, method, r.penalty, r.penalty_ci[0],
                                 r.penalty_ci[1], r.accuracy, r.accuracy_b, r.agreement, r.kl])
                    metrics[f"{label}_penalty_{method}_layer_{layer}"] = Metric(
                        value=r.penalty, n=r.n_test, ci=r.penalty_ci, ci_level=0.95,
                        method="paired percentile bootstrap over test inputs (seed 0 stitch)",
                        description=("the first reference stitched to itself (expected ≈ 0)"
                                     if label == "self" else
                                     "a randomly initialised copy of the first reference as "
                                     "the front (expected large where features matter)"))
        selfs = [r[3] for r in rows if r[0] == "self"]
        rands = [r[3] for r in rows if r[0] == "random_init"]
        summary = (f"Controls on {name}: stitched to itself the penalty is at most "
                   f"{max(abs(v) for v in selfs):.3f}; with a randomly initialised front it is "
                   f"{min(rands):.3f} to {max(rands):.3f}.")
        return AnalysisResult(
            probe="stitching-controls", summary=summary, params={"reference": name},
            metrics=metrics,
            tables={"controls": {"columns": ["control", "layer", "method", "penalty", "ci_low",
                                             "ci_high", "accuracy", "accuracy_back",
                                             "agreement", "kl"], "rows": rows}})

    def _matrix(self, inputs: Any, name_a: str, a: tuple[Any, ...], name_b: str,
                b: tuple[Any, ...], run_stitch: Any,
                records: list[dict[str, Any]]) -> AnalysisResult:
        p = self.params
        layers = p.matrix_layers or p.layers
        values = np.zeros((len(layers), len(layers)))
        for r_i, i in enumerate(layers):
            for c_j, j in enumerate(layers):
                r = run_stitch(a, b, i, j, p.matrix_method, 0)
                values[r_i, c_j] = r.penalty
                records.append({"a": name_a, "b": name_b, "role": "matrix", **r.to_dict()})
        best = [layers[int(np.argmin(values[r]))] for r in range(len(layers))]
        summary = (f"Cross-layer {p.matrix_method} stitching, {name_a} (rows: its layer i) into "
                   f"{name_b} (columns: its layer j); the cheapest j per i: "
                   + ", ".join(f"{i}→{j}" for i, j in zip(layers, best, strict=True)) + ".")
        return AnalysisResult(
            probe="stitching-matrix", summary=summary,
            params={"a": name_a, "b": name_b, "method": p.matrix_method, "layers": layers},
            metrics={"diagonal_mean_penalty": Metric(
                value=float(np.mean(np.diag(values))), n=int(len(layers)),
                method="mean of the matrix diagonal (i = j)")},
            tables={"matrix": {"columns": ["layer_a", *[f"to_{j}" for j in layers]],
                               "rows": [[i, *map(float, values[r])]
                                        for r, i in enumerate(layers)]}},
            plots=[{"kind": "matrix", "title": f"stitching penalty, {name_a} layer i → "
                    f"{name_b} layer j ({p.matrix_method})",
                    "data": {"values": values.tolist(), "row_labels": layers,
                             "col_labels": layers}}])
