"""Representational similarity of candidates to the reference ensemble, against a seed null.

For a seeded sample of the compare test rows, every model's hidden representation is
computed once per requested layer (Hugging Face checkpoints: ``hidden_states`` of one
forward pass, pooled over tokens; heads: the activation before their last ``Linear``, or
the input embeddings for a logistic head). Per layer and measure:

- the **null**: the similarity of every reference-vs-reference pair, and for each
  reference model its leave-one-out mean similarity to the others;
- each **candidate**: its mean similarity to the reference models, its rank p among the
  reference models' leave-one-out values, ``(1 + #{loo ≤ candidate}) / (M + 1)`` (low
  similarity = low p), and for the CKA measures a 95 % CI over the sampled inputs.

The CI is a delete-one jackknife over the inputs of the *debiased* CKA (unbiased HSIC),
with a normal approximation, and it is a CI for the population CKA whichever CKA measure is
shown. A percentile bootstrap is wrong here: a resample repeats inputs, and repeated rows
raise CKA, so the bootstrap distribution sits above the estimate (it covered the population
value in 1 of 100 simulated studies at n = 200), and the biased estimator itself overstates
CKA at small n (+0.02 at n = 200, +0.06 at n = 60 in the same simulation); the jackknife on
the debiased estimator covered it in 94–98 % (``benchmarks/bench_cka_interval.py``).

Every measure is a similarity (higher = more alike); Procrustes is reported as
``1 − d²/2`` (the nuclear norm of the normalised cross-covariance, in [0, 1]).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from embedforensics.compare.checkpoints import model_name
from embedforensics.compare.hidden_states import model_states
from embedforensics.compare.representations import (
    debiased_cka_leave_one_out,
    jackknife_interval,
    linear_cka,
    similarity,
)
from embedforensics.errors import UserError
from embedforensics.results import AnalysisResult, Metric
from embedforensics.study.analysis import Comparator, Outcome

Measure = Literal["linear_cka", "debiased_cka", "svcca", "pwcca", "procrustes"]
_CI_MEASURES = ("linear_cka", "debiased_cka")
_CI_METHOD = ("95% CI for the population CKA: delete-one jackknife over the inputs on the "
              "debiased (unbiased-HSIC) estimator, normal approximation; the biased "
              "linear CKA overstates CKA at small n, so its point value can lie above it")
RANK_P_LEVEL = 0.1


class RepresentationsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    layers: list[int] = Field(default_factory=lambda: [-1], min_length=1,
                              description="hidden_states indices (0 = embeddings output, "
                                          "-1 = last layer); heads: 0 = input embeddings, "
                                          "-1 = hidden layer.")
    pooling: Literal["mean", "cls", "last"] = Field(
        "mean", description="Masked mean over tokens, the first token, or the last real "
                            "token (decoder models).")
    measures: list[Measure] = Field(default_factory=lambda: ["linear_cka"], min_length=1,
                                    description="Similarity measures.")
    n_inputs: int = Field(200, ge=4, description="Seeded sample of the compare test rows.")
    max_models: int = Field(8, ge=1, description="Models used per group (reference and "
                                                  "each candidate group), first in order.")
    batch_size: int = Field(32, ge=1, description="Texts per forward pass.")
    seed: int | None = Field(None, description="Input sampling seed (default: the "
                                               "recipe's seed).")
    cross_layer: bool = Field(True, description="Per candidate group, a heatmap of the first "
                              "measure between every hidden state of the first reference "
                              "model and every hidden state of the group's first candidate.")
    multiplicity: bool = Field(True, description="Representational vs predictive "
                               "multiplicity: per model, dissimilarity to the reference "
                               "models beside churn, α̂ and the prediction deviation, with "
                               "their rank correlations across models.")

    @field_validator("layers", "measures")
    @classmethod
    def _distinct(cls, value: list[Any]) -> list[Any]:
        if len(set(value)) != len(value):
            raise ValueError("entries must be distinct")
        return value


_METHODS = {
    "linear_cka": "linear CKA (biased HSIC)",
    "debiased_cka": "linear CKA (unbiased HSIC)",
    "svcca": "SVCCA (99% variance kept), mean canonical correlation",
    "pwcca": "PWCCA, mean of both weighting orders",
    "procrustes": "1 − d²/2 of the orthogonal Procrustes distance",
}


class RepresentationsComparator(Comparator):
    """Hidden-representation similarity (CKA, SVCCA, PWCCA, Procrustes) of each candidate to
    the reference ensemble, ranked among the reference seeds' leave-one-out similarities."""

    name = "representations"
    Params = RepresentationsParams

    # ------------------------------------------------------------------ hidden states

    def _layer_error(self, inputs: Any, layer: int, name: str, n_states: int) -> UserError:
        return UserError(
            f"layer {layer} is not a layer of '{name}': it has hidden states 0..{n_states - 1} "
            f"(or -{n_states}..-1; 0 = the embeddings output, for a head 0 = its input "
            "embeddings).", file=inputs.ctx.file_of(self.key), key=f"{self.key}.layers")

    def _states(self, inputs: Any, scored: Any, rows: np.ndarray) -> tuple[list[np.ndarray],
                                                                          bool]:
        """Every hidden state of one model on the sampled rows (pooled, through the
        hidden-state cache), and whether it is a head without a hidden layer."""
        ctx = inputs.ctx
        model = ctx.recipe.model
        max_length = ctx.recipe.compare.max_length or (
            model.max_length if model is not None else None)
        return model_states(ctx, scored, rows, texts=inputs.prepared.texts,
                            embeddings=inputs.prepared.embeddings,
                            pooling=self.params.pooling, batch_size=self.params.batch_size,
                            max_length=max_length)

    # ------------------------------------------------------------------ extras

    def _cross_layer(self, inputs: Any, a: Any, b: Any, rows: np.ndarray,
                     sim: Any) -> dict[str, Any]:
        """Heatmap of the first measure between every hidden state of ``a`` (rows) and of
        ``b`` (columns); states come from the cache, so this costs only the similarities."""
        measure = self.params.measures[0]
        sa, _ = self._states(inputs, a, rows)
        sb, _ = self._states(inputs, b, rows)
        na, nb = model_name(a.path), model_name(b.path)
        values = [[sim(measure, x, y, na, nb) for y in sb] for x in sa]
        return {"kind": "matrix", "title": f"{measure}: {na} hidden state i (rows) vs {nb} "
                "hidden state j (columns)",
                "data": {"values": values, "row_labels": list(range(len(sa))),
                         "col_labels": list(range(len(sb)))}}

    def _multiplicity(self, inputs: Any, null: dict[tuple[int, str], dict[str, Any]],
                      ref_names: list[str], reference: list[Any],
                      candidates: dict[str, list[Any]],
                      cand_reps: dict[str, list[tuple[str, Any]]],
                      pairs: list[dict[str, Any]], k: int) -> AnalysisResult:
        """Representational vs predictive multiplicity (Heljakka et al., arXiv 2206.08890).

        Per model (reference models left out of their own reference): representational
        dissimilarity ``1 −`` mean similarity to the reference models at the deepest listed
        layer (first measure); churn against the reference majority vote; α̂ (asymptotic) of
        its soft outputs against the reference's; and the prediction deviation, the mean
        over test rows of ``(p − p̄_ref)²`` for the probability of the true class. Spearman
        rank correlations across all models say whether representations and predictions
        diverge together.
        """
        from scipy.stats import spearmanr

        from embedforensics.compare.alpha_hat import alpha_hat
        from embedforensics.compare.checkpoints import softmax
        from embedforensics.compare.metrics import churn, majority_vote

        p = self.params
        layer, measure = p.layers[-1], p.measures[0]
        y = np.asarray(inputs.prepared.y)[np.asarray(inputs.prepared.test_idx)]
        cols = np.arange(y.size)

        def true_prob(scored: Any) -> np.ndarray:
            return softmax(np.asarray(scored.logits, dtype=np.float64))[cols, y]

        ref_prob = np.stack([true_prob(s) for s in reference])
        ref_pred = np.stack([np.asarray(s.logits).argmax(1) for s in reference])
        loo = null[(layer, measure)]["loo"]
        rows: list[list[Any]] = []

        def add(group: str, name: str, similarity: float, prob: np.ndarray,
                pred: np.ndarray, others: np.ndarray) -> None:
            others_prob = ref_prob[others]
            alpha = alpha_hat(prob, others_prob, method="asymptotic").alpha_hat
            rows.append([group, name, 1.0 - similarity,
                         churn(pred, majority_vote(ref_pred[others])), float(alpha),
                         float(np.mean((prob - others_prob.mean(0)) ** 2))])

        everyone = np.arange(len(reference))
        for i in range(len(reference)):
            add("reference", ref_names[i], float(loo[i]), ref_prob[i], ref_pred[i],
                everyone[everyone != i])
        for group, members in candidates.items():
            for s, (name, _) in zip(members, cand_reps[group], strict=True):
                values = [q["value"] for q in pairs if q["a"] == name and q["layer"] == layer
                          and q["measure"] == measure and q["b"] in ref_names]
                add(group, name, float(np.mean(values)), true_prob(s),
                    np.asarray(s.logits).argmax(1), everyone)
        table = np.array([r[2:] for r in rows], dtype=np.float64)
        metrics: dict[str, Metric] = {}
        names = {"churn": 1, "alpha_hat": 2, "prediction_deviation": 3}
        for label, col in names.items():
            if np.ptp(table[:, 0]) == 0 or np.ptp(table[:, col]) == 0:
                continue
            rho, pval = spearmanr(table[:, 0], table[:, col])
            metrics[f"spearman_{label}"] = Metric(
                value=float(rho), n=len(rows), p_value=float(pval),
                method="Spearman rank correlation across models (reference models in "
                       "leave-one-out), scipy.stats.spearmanr p-value (models of one "
                       "ensemble are not independent: read it as descriptive)",
                description=f"representational dissimilarity vs {label.replace('_', ' ')}")
        groups = ["reference", *candidates]
        medians = []
        for g in groups:
            sel = table[[r[0] == g for r in rows]]
            if sel.size:
                medians.append([g, int(sel.shape[0]), *np.median(sel, axis=0).tolist()])
        rho = metrics.get("spearman_churn")
        summary = (f"Representational vs predictive multiplicity ({measure}, layer {layer}, "
                   f"{len(rows)} models): " + (
                       f"dissimilarity and churn rank-correlate at ρ = {rho.value:.2f}"
                       if rho is not None else "churn or dissimilarity does not vary")
                   + "; group medians in the table.")
        columns = ["group", "model", "dissimilarity", "churn_vs_majority", "alpha_hat",
                   "prediction_deviation"]
        return AnalysisResult(
            probe="representations-multiplicity", summary=summary,
            headline="spearman_churn" if "spearman_churn" in metrics else None,
            params={"layer": layer, "measure": measure, "n_inputs": k},
            metrics=metrics,
            tables={"groups": {"columns": ["group", "models", *columns[2:]],
                               "rows": medians},
                    "models": {"columns": columns, "rows": rows}},
            plots=[{"kind": "scatter", "title": "representational dissimilarity vs churn",
                    "xlabel": f"1 − {measure} to the reference (layer {layer})",
                    "ylabel": "churn vs reference majority",
                    "data": {"x": table[:, 0].tolist(), "y": table[:, 1].tolist(),
                             "labels": [r[0] for r in rows]}}])

    # ------------------------------------------------------------------ run

    def run(self, inputs: Any) -> Outcome:
        p = self.params
        seed = p.seed if p.seed is not None else int(inputs.ctx.recipe.seed)
        test = np.asarray(inputs.prepared.test_idx)
        rng = np.random.default_rng([seed, 0x2E9])
        k = min(p.n_inputs, test.size)
        if k < 4:
            raise UserError(f"the representations comparator needs at least 4 test rows; "
                            f"the compare test set has {test.size}.",
                            file=inputs.ctx.file_of(self.key), key=self.key)
        rows = np.sort(rng.choice(test, size=k, replace=False))
        reference = list(inputs.reference)[:p.max_models]
        M = len(reference)
        if M < 2:
            raise UserError("the representations comparator needs at least 2 reference "
                            f"models for its null; the reference has {M}.",
                            file=inputs.ctx.file_of(self.key), key=self.key)
        candidates = {g: list(v)[:p.max_models] for g, v in inputs.candidates.items()}

        reps: dict[str, dict[int, np.ndarray]] = {}
        no_hidden: list[str] = []

        def represent(scored: Any) -> dict[int, np.ndarray]:
            name = model_name(scored.path)
            if name not in reps:
                states, plain = self._states(inputs, scored, rows)
                if plain:
                    no_hidden.append(name)
                chosen = {}
                for layer in p.layers:
                    if not -len(states) <= layer < len(states):
                        raise self._layer_error(inputs, layer, name, len(states))
                    chosen[layer] = states[layer]
                reps[name] = chosen
            return reps[name]

        ref_names = [model_name(s.path) for s in reference]
        ref_reps = [represent(s) for s in reference]
        cand_reps = {g: [(model_name(s.path), represent(s)) for s in v]
                     for g, v in candidates.items()}

        def sim(measure: str, X: np.ndarray, Y: np.ndarray, a: str, b: str) -> float:
            try:
                return float(similarity(measure, X, Y))
            except ValueError as exc:
                raise UserError(f"{measure} of '{a}' vs '{b}' failed on the {k} sampled "
                                f"inputs: {exc}.", file=inputs.ctx.file_of(self.key),
                                key=self.key) from None

        pairs: list[dict[str, Any]] = []
        # null: reference pairs and leave-one-out means, per (layer, measure)
        null: dict[tuple[int, str], dict[str, Any]] = {}
        for layer in p.layers:
            for measure in p.measures:
                S = np.eye(M)
                for i in range(M):
                    for j in range(i + 1, M):
                        S[i, j] = S[j, i] = sim(measure, ref_reps[i][layer],
                                                ref_reps[j][layer], ref_names[i], ref_names[j])
                        pairs.append({"a": ref_names[i], "b": ref_names[j], "layer": layer,
                                      "measure": measure, "value": S[i, j]})
                loo = (S.sum(1) - 1.0) / (M - 1)
                iu = np.triu_indices(M, 1)
                null[(layer, measure)] = {"pairs": S[iu], "loo": loo}

        results = []
        for group, members in cand_reps.items():
            if not members:
                continue
            table_rows = []
            metrics: dict[str, Metric] = {}
            verdict: dict[int, tuple[float, float | None]] = {}
            plot_ref: dict[str, list[float]] = {m: [] for m in p.measures}
            plot_cand: dict[str, list[float]] = {m: [] for m in p.measures}
            for layer in p.layers:
                for measure in p.measures:
                    nl = null[(layer, measure)]
                    values, ranks, jack = [], [], []
                    for name, rep in members:
                        s = [sim(measure, rep[layer], r[layer], name, rn)
                             for r, rn in zip(ref_reps, ref_names, strict=True)]
                        for rn, v in zip(ref_names, s, strict=True):
                            pairs.append({"a": name, "b": rn, "layer": layer,
                                          "measure": measure, "value": v})
                        value = float(np.mean(s))
                        rank = (1 + int(np.sum(nl["loo"] <= value))) / (M + 1)
                        ci = None
                        if measure in _CI_MEASURES:
                            # jackknife over the inputs, on the debiased estimator (see
                            # module docstring); the mean over the reference models
                            loo = np.mean([debiased_cka_leave_one_out(rep[layer], r[layer])
                                           for r in ref_reps], axis=0)
                            est = float(np.mean([linear_cka(rep[layer], r[layer],
                                                            debiased=True)
                                                 for r in ref_reps]))
                            jack.append((est, loo))
                            ci = jackknife_interval(est, loo)
                        values.append(value)
                        ranks.append(rank)
                        table_rows.append([name, layer, measure, value, rank,
                                           None if ci is None else ci[0],
                                           None if ci is None else ci[1],
                                           float(np.median(nl["pairs"])),
                                           float(np.median(nl["loo"]))])
                    med = float(np.median(values))
                    ref_med = float(np.median(nl["pairs"]))
                    group_rank = (1 + int(np.sum(nl["loo"] <= med))) / (M + 1)
                    ci = None
                    if jack:
                        ci = jackknife_interval(
                            float(np.median([b[0] for b in jack])),
                            np.median(np.stack([b[1] for b in jack]), axis=0))
                    method = (f"{_METHODS[measure]}; median over {len(values)} candidates of "
                              f"each one's mean similarity to the {M} reference models; "
                              + (_CI_METHOD if ci is not None
                                 else "no CI (jackknife CI only for the CKA measures)"))
                    metrics[f"{measure}_layer_{layer}"] = Metric(
                        value=med, n=k, range=(min(values), max(values)), ci=ci,
                        ci_level=0.95 if ci is not None else None, method=method,
                        description=f"{measure} similarity to the reference models at layer "
                                    f"{layer} (reference pairs: median {ref_med:.3f})",
                        reference_median=ref_med)
                    metrics[f"rank_p_{measure}_layer_{layer}"] = Metric(
                        value=group_rank, n=M, range=(min(ranks), max(ranks)),
                        method="rank of the median candidate among the reference models' "
                               "leave-one-out mean similarities, (1 + #{loo ≤ c}) / (M + 1); "
                               "range over candidates",
                        description="low = candidates less similar to the ensemble than its "
                                    "own seeds are to each other")
                    plot_ref[measure].append(ref_med)
                    plot_cand[measure].append(med)
                    if measure == p.measures[0]:
                        verdict[layer] = (group_rank, med)
            first = p.measures[0]
            parts = [f"layer {layer}: {'farther' if r <= RANK_P_LEVEL else 'not farther'} "
                     f"(rank p {r:.2f})" for layer, (r, _) in verdict.items()]
            summary = (f"{group}: are the candidates' representations farther from the "
                       f"reference ensemble than its seeds are from each other ({first}, "
                       f"rank p ≤ {RANK_P_LEVEL}, {k} inputs)? " + "; ".join(parts) + ".")
            if 1 / (M + 1) > RANK_P_LEVEL:
                summary += (f" With {M} reference models the smallest rank p is "
                            f"{1 / (M + 1):.2f}, so no candidate can be called farther.")
            if no_hidden:
                summary += (" Logistic heads have no hidden layer: their representation is "
                            "the input embeddings, identical for every such head ("
                            + ", ".join(sorted(set(no_hidden))) + ").")
            x = list(range(len(p.layers)))
            series = []
            for measure in p.measures:
                series.append({"label": f"reference pairs, median ({measure})", "x": x,
                               "y": plot_ref[measure], "marker": True})
                series.append({"label": f"{group} candidates vs reference, median ({measure})",
                               "x": x, "y": plot_cand[measure], "marker": True})
            plots = [{"kind": "lines", "title": f"{group}: representational similarity "
                      "against layer", "xlabel": "layer", "ylabel": "similarity",
                      "data": {"series": series, "xticks": [str(v) for v in p.layers]}}]
            if p.cross_layer:
                plots.append(self._cross_layer(inputs, reference[0], candidates[group][0],
                                               rows, sim))
            results.append(AnalysisResult(
                probe=f"representations-{group}", summary=summary,
                headline=f"{p.measures[0]}_layer_{p.layers[-1]}",
                params={**p.model_dump(), "seed": seed},
                metrics=metrics,
                tables={"similarity": {
                    "columns": ["candidate", "layer", "measure", "similarity", "rank_p",
                                "ci_low", "ci_high", "reference_pairs_median",
                                "reference_loo_median"],
                    "rows": table_rows}},
                plots=plots))
        if p.multiplicity and any(cand_reps.values()):
            results.append(self._multiplicity(inputs, null, ref_names, reference, candidates,
                                              cand_reps, pairs, k))
        provenance = {"representations": {
            "seed": seed, "n_inputs": k, "pooling": p.pooling,
            "sample_ids": [str(inputs.prepared.ids[i]) for i in rows],
            "reference": ref_names,
            "candidates": {g: [n for n, _ in v] for g, v in cand_reps.items()},
            "max_models": p.max_models, "no_hidden_layer": sorted(set(no_hidden)),
            "pairs": pairs}}
        return Outcome(results, provenance=provenance)
