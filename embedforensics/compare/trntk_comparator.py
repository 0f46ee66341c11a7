"""The ``trntk`` comparator (``compare.trntk``): kernel surrogates and attributions.

Question answered: *does each model explain its test predictions through the same training
points as the reference models do?* Engel et al. (ICLR 2024, arXiv 2305.14585): a kernel GLM
fit on a network's trace-NTK is a faithful surrogate whose logit at a test point is a sum of
per-training-point contributions; "if the explanations differ, the models differ".

Steps (all bounded and seeded; the subsamples are recorded in ``results.json``):

1. A stratified sample of ``n_train`` points from the heads' training split and ``n_test``
   points from the compare test set.
2. For up to ``max_models`` reference models and ``max_models`` models per candidate group:
   the kernel over train ∪ test in one call (features computed once), a kGLM fit on the
   ``train × train`` block with the true labels, and its faithfulness on the test block
   against the network's own logits (TAD, Kendall τ, Jaccard of misclassified sets).
3. Attributions: per test point the ``top_k`` training points by contribution
   ``W[c, j] K(x, x_j)`` to the surrogate logit of the predicted (or true) class, with their
   texts and labels.
4. Agreement: Spearman (or Kendall) correlation, per test point, of two models' contribution
   vectors to the *true*-class logit over the same training points, averaged over the test
   points. Each candidate's mean agreement with the reference models is set against each
   reference model's mean agreement with the other reference models (the null of "trained the
   same way, other seed"); the rank of the candidate among them is reported.

A logistic-regression head has a trNTK that does not depend on its weights (the gradient of
a linear logit is the input), so every such head gets the same kernel and the same kGLM: the
comparison is only informative for heads with a hidden layer and for fine-tuned networks.
The summary says so when it sees identical kernels.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from embedforensics.compare.checkpoints import model_name
from embedforensics.errors import UserError
from embedforensics.recipe.compare_spec import TrntkSpec
from embedforensics.results import AnalysisResult
from embedforensics.study.analysis import Comparator, Outcome

log = logging.getLogger(__name__)


def stratified_sample(idx: np.ndarray, y: np.ndarray, n: int, seed: int, salt: int
                      ) -> np.ndarray:
    """At most ``n`` of the rows ``idx`` (labels ``y[idx]``), stratified, seeded, sorted."""
    idx = np.asarray(idx)
    if idx.size <= n:
        return np.sort(idx)
    rng = np.random.default_rng([int(seed), int(salt)])
    labels = y[idx]
    classes, counts = np.unique(labels, return_counts=True)
    want = np.floor(counts / counts.sum() * n).astype(int)
    # hand the remainder to the classes with the largest fractional parts
    rest = n - want.sum()
    frac = counts / counts.sum() * n - want
    for i in np.argsort(-frac, kind="stable")[:rest]:
        want[i] += 1
    picked = [rng.permutation(idx[labels == c])[:k] for c, k in zip(classes, want, strict=True)]
    return np.sort(np.concatenate(picked))


@dataclass
class ModelTrntk:
    """One model's surrogate: faithfulness, attribution and true-class contributions."""

    group: str
    name: str
    path: str
    faithfulness: Any
    attribution: Any
    contrib_true: np.ndarray  # [n_test, n_train]
    kernel_digest: str
    seconds: float


def _module_inputs(scored: Any, X: np.ndarray, texts: list[str], rows: np.ndarray,
                   max_length: int | None) -> tuple[Any, Any]:
    import torch

    from embedforensics.compare.trntk import HFClassifierLogits

    module, tokenizer = scored.scorer.torch_module()
    if scored.scorer.input == "embeddings":
        return module, torch.from_numpy(np.ascontiguousarray(X[rows], dtype=np.float32))
    enc = tokenizer([texts[i] for i in rows], padding=True, truncation=True,
                    max_length=max_length, return_tensors="pt")
    inputs = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
    return HFClassifierLogits(module), inputs


def length_sorted_kernel(module: Any, inputs: Any, **kwargs: Any) -> np.ndarray:
    """:func:`~.trntk.trntk_kernel` of ``inputs`` with itself, token inputs processed in
    order of length (batches then carry less padding, which is trimmed per batch); the
    result is in the original order."""
    from embedforensics.compare.trntk import trntk_kernel

    if not (isinstance(inputs, dict) and "attention_mask" in inputs):
        return trntk_kernel(module, inputs, **kwargs)
    order = np.argsort(inputs["attention_mask"].sum(1).numpy(), kind="stable")
    kern = trntk_kernel(module, {k: v[order] for k, v in inputs.items()}, **kwargs)
    back = np.argsort(order)
    return kern[np.ix_(back, back)]


def _one_model(group: str, scored: Any, data: Any, tr: np.ndarray, te: np.ndarray,
               test_pos: np.ndarray, spec: Any, seed: int, max_length: int | None,
               key: str) -> ModelTrntk:
    from embedforensics.compare.kglm import attribute, faithfulness, fit_kglm

    started = time.perf_counter()
    rows = np.concatenate([tr, te])
    X = data.embeddings.X if data.embeddings is not None else None
    module, inputs = _module_inputs(scored, X, data.texts,
                                    rows, max_length)
    try:
        kern = length_sorted_kernel(module, inputs, kind=spec.kind, params=spec.params,
                                    projection_dim=spec.projection_dim,
                                    projection=spec.projection, seed=seed,
                                    batch_size=spec.batch_size)
    except ValueError as exc:
        raise UserError(f"trNTK of '{scored.path}': {exc}.", key=key) from None
    n_tr = tr.size
    k_train, k_test = kern[:n_tr, :n_tr], kern[n_tr:, :n_tr]
    y_tr, y_te = data.y[tr], data.y[te]
    glm = fit_kglm(k_train, y_tr, reg_c=spec.reg_c, seed=seed)
    faith = faithfulness(glm.predict_proba(k_test), scored.logits[test_pos], y_te,
                         classes=np.arange(len(data.classes)))
    att = attribute(glm, k_test, top_k=min(spec.top_k, n_tr), target=spec.target, y_test=y_te)
    true = attribute(glm, k_test, top_k=1, target="true", y_test=y_te)
    digest = hashlib.sha256(np.round(kern, 10).tobytes()).hexdigest()[:16]
    return ModelTrntk(group, model_name(scored.path), str(scored.path),
                      faith, att, true.contributions, digest, time.perf_counter() - started)


def _row_ranks(c: np.ndarray, method: str) -> np.ndarray:
    from scipy.stats import rankdata

    r = rankdata(c, axis=1) if method == "spearman" else c
    r = r - r.mean(1, keepdims=True)
    norm = np.linalg.norm(r, axis=1, keepdims=True)
    return np.divide(r, norm, out=np.full_like(r, np.nan), where=norm > 0)


def _agreement(a: ModelTrntk, b: ModelTrntk, method: str) -> float:
    """Mean over test points of the per-point rank correlation of two contribution vectors."""
    if method == "spearman":  # Pearson of average ranks == Spearman's rho, vectorised
        vals = np.sum(_row_ranks(a.contrib_true, method) * _row_ranks(b.contrib_true, method), 1)
    else:
        from embedforensics.compare.kglm import compare_attributions

        return compare_attributions(a.contrib_true, b.contrib_true, method=method).mean
    ok = vals[np.isfinite(vals)]
    return float(ok.mean()) if ok.size else float("nan")


class TrntkComparator(Comparator):
    """trNTK kernel surrogates of each model: faithfulness, training-data attributions and
    their agreement with the reference models, against reference-vs-reference agreement."""

    name = "trntk"
    Params = TrntkSpec

    def run(self, inputs: Any) -> Outcome:
        entry, provenance = run_trntk(inputs, self.params)
        return Outcome([AnalysisResult(**entry)], provenance={"trntk": provenance})


def run_trntk(inputs: Any, spec: TrntkSpec) -> tuple[dict[str, Any], dict[str, Any]]:
    """The trNTK result entry (for ``results.json``/reports) and its provenance block.

    ``inputs`` is the :class:`~.checkpoints.CheckpointData` of ``compare``: the prepared
    data and split and the scored models (logits on the test rows, recipe class order).
    """
    ctx, data = inputs.ctx, inputs.prepared
    test_idx = data.test_idx
    seed = ctx.recipe.seed if spec.seed is None else spec.seed
    max_length = ctx.recipe.compare.max_length or (
        ctx.recipe.model.max_length if ctx.recipe.model else None)
    tr = stratified_sample(data.train_idx, data.y, spec.n_train, seed, 0x7A1)
    te = stratified_sample(test_idx, data.y, spec.n_test, seed, 0x7E5)
    if len(np.unique(data.y[tr])) < 2:
        raise UserError("the trNTK training sample has one class; raise n_train.",
                        file=ctx.file_of("compare.trntk"), key="compare.trntk.n_train")
    position = {int(v): i for i, v in enumerate(test_idx)}
    test_pos = np.array([position[int(i)] for i in te])
    groups: dict[str, list[Any]] = {"reference": inputs.reference[: spec.max_models]}
    for name, scored in inputs.candidates.items():
        groups[name] = scored[: spec.max_models]
    results: dict[str, list[ModelTrntk]] = {}
    for group, models in groups.items():
        key = "compare.reference" if group == "reference" else f"compare.candidates.{group}"
        results[group] = [_one_model(group, s, data, tr, te, test_pos, spec, seed, max_length,
                                     key) for s in models]
        log.info("trNTK %s: %d models in %.1f s", group, len(models),
                 sum(m.seconds for m in results[group]))
    return _probe_entry(results, data, tr, te, spec, seed)


def _agreements(results: dict[str, list[ModelTrntk]], method: str) -> dict[str, Any]:
    refs = results["reference"]
    M = len(refs)
    rr = np.full((M, M), np.nan)
    for i in range(M):
        for j in range(i + 1, M):
            rr[i, j] = rr[j, i] = _agreement(refs[i], refs[j], method)
    baseline = [_finite_mean(np.delete(rr[i], i)) for i in range(M)] if M >= 2 else []
    pairs = [float(rr[i, j]) for i in range(M) for j in range(i + 1, M)]
    out: dict[str, Any] = {"reference_pairs": pairs, "reference_loo": baseline, "groups": {}}
    for group, models in results.items():
        if group == "reference":
            continue
        per = []
        for m in models:
            vals = [_agreement(m, r, method) for r in refs]
            mean = _finite_mean(np.asarray(vals))
            # rank among the reference models' agreement with the other references
            p_rank = (1 + sum(b <= mean for b in baseline)) / (len(baseline) + 1) \
                if baseline and np.isfinite(mean) else None
            per.append({"model": m.name, "mean": mean, "per_reference": vals,
                        "p_rank": p_rank})
        out["groups"][group] = per
    return out


def _probe_entry(results: dict[str, list[ModelTrntk]], data: Any, tr: np.ndarray,
                 te: np.ndarray, spec: Any, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    classes = data.classes
    texts = data.texts
    ids = list(data.ids)
    agree = _agreements(results, spec.agreement)
    n_te, n_tr = int(te.size), int(tr.size)

    def med(values: list[float]) -> tuple[float | None, list[float] | None]:
        arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], float)
        if not arr.size:
            return None, None
        return float(np.median(arr)), [float(arr.min()), float(arr.max())]

    metrics: dict[str, Any] = {}
    faith_rows = []
    for group, models in results.items():
        for m in models:
            f = m.faithfulness
            faith_rows.append([group, m.name, f.accuracy_network, f.accuracy_kglm, f.tad,
                               f.kendall_tau, f.jaccard_misclassified,
                               f"{f.n_misclassified_both}/{f.n_misclassified_either}",
                               f.n_test, m.kernel_digest, round(m.seconds, 2)])
        for field, desc in (("kendall_tau", "Kendall τ between the kGLM's and the network's "
                                            "class scores (Engel et al.'s convention: class-1 "
                                            "score, saturated network outputs dropped)"),
                            ("tad", "test accuracy(kGLM) − test accuracy(network)"),
                            ("jaccard_misclassified", "Jaccard overlap of the misclassified "
                                                      "sets of kGLM and network")):
            value, rng = med([getattr(m.faithfulness, field) for m in models])
            metrics[f"{group}_{field}"] = {
                "value": value, "n": n_te, "range": rng,
                "method": f"median over {len(models)} models; n = test points",
                "description": f"{group}: {desc}"}
    base_value, base_rng = med(agree["reference_pairs"])
    n_pairs = len(agree["reference_pairs"])
    metrics["reference_attribution_agreement"] = {
        "value": base_value, "n": n_te, "range": base_rng,
        "method": f"median over {n_pairs} reference pairs of the mean per-test-point "
                  f"{spec.agreement} correlation (n = test points, {n_tr} training points)",
        "description": "agreement of true-class attributions between two reference models: "
                       "the baseline (null) for a candidate's agreement"}
    agree_rows = [["reference vs reference", "(pairs)", base_value,
                   f"{base_rng[0]:.3f}–{base_rng[1]:.3f}" if base_rng else "", n_pairs, None]]
    summaries = []
    for group, per in agree["groups"].items():
        value, rng = med([p["mean"] for p in per])
        p_med, _ = med([p["p_rank"] for p in per])
        metrics[f"{group}_attribution_agreement"] = {
            "value": value, "n": n_te, "range": rng,
            "method": f"median over {len(per)} candidates of the mean agreement with "
                      f"{len(results['reference'])} reference models",
            "description": f"{group}: agreement of true-class attributions with the reference "
                           "models (lower than the reference baseline = explained by other "
                           "training points)"}
        for p in per:
            agree_rows.append([group, p["model"], p["mean"],
                               f"{min(p['per_reference']):.3f}–{max(p['per_reference']):.3f}",
                               len(p["per_reference"]), p["p_rank"]])
        if value is not None:
            summaries.append(f"{group} {value:.3f}" + (f" (rank p {p_med:.2f})"
                                                       if p_med is not None else ""))
    ref_tau, _ = med([m.faithfulness.kendall_tau for m in results["reference"]])
    ref_tad, _ = med([m.faithfulness.tad for m in results["reference"]])
    same_kernel = len({m.kernel_digest for ms in results.values() for m in ms}) == 1
    summary = (f"trNTK ({spec.kind}, params {spec.params}, "
               f"{'exact' if spec.projection_dim is None else f'k={spec.projection_dim}'}; "
               f"{n_tr} train / {n_te} test points): reference kGLM faithfulness τ "
               f"{_fmt(ref_tau)}, TAD {_fmt(ref_tad)}; attribution agreement with the "
               f"reference ({spec.agreement}): reference pairs {_fmt(base_value)}"
               + ("; " + ", ".join(summaries) if summaries else "") + ".")
    if same_kernel:
        summary += (" Every model has the same kernel (e.g. linear heads, whose gradient "
                    "kernel does not depend on the weights): the attribution comparison "
                    "cannot tell these models apart.")
    tables: dict[str, Any] = {
        "trntk_faithfulness": {
            "columns": ["group", "model", "accuracy network", "accuracy kGLM", "TAD",
                        "Kendall τ", "Jaccard misclassified", "misclassified both/either",
                        "n test", "kernel digest", "seconds"], "rows": faith_rows},
        "trntk_attribution_agreement": {
            "columns": ["group", "model", f"mean {spec.agreement} vs references",
                        "range over references", "n references",
                        "rank p (vs reference leave-one-out)"], "rows": agree_rows},
    }

    def snippet(i: int) -> str:
        t = texts[i] if texts else ids[i]
        return t if len(t) <= 300 else t[:297] + "…"

    for group, models in results.items():
        m = models[0]
        att = m.attribution
        rows = []
        for t in range(min(spec.show, n_te)):
            test_row = int(te[t])
            for r in range(att.indices.shape[1]):
                j = int(att.indices[t, r])
                rows.append([t if r == 0 else "", snippet(test_row) if r == 0 else "",
                             classes[int(data.y[test_row])] if r == 0 else "",
                             classes[int(att.class_index[t])] if r == 0 else "",
                             r + 1, snippet(int(tr[j])), classes[int(data.y[tr[j]])],
                             float(att.scores[t, r])])
        tables[f"trntk_attributions_{group} (model {m.name})"] = {
            "columns": ["test #", "test text", "true label", "class explained", "rank",
                        "training text", "training label", "contribution"],
            "rows": rows}
    provenance = {
        "kind": spec.kind, "params": spec.params, "projection_dim": spec.projection_dim,
        "projection": spec.projection, "reg_c": spec.reg_c, "seed": seed,
        "target": spec.target, "agreement": spec.agreement,
        "train_ids": [ids[i] for i in tr], "test_ids": [ids[i] for i in te],
        "agreement_detail": agree,
        "per_model": {group: [{
            "model": m.path, "kernel_digest": m.kernel_digest, "seconds": m.seconds,
            "faithfulness": m.faithfulness.to_dict(),
            "top_k_train_ids": [[ids[int(tr[j])] for j in row] for row in m.attribution.indices],
            "top_k_scores": m.attribution.scores.tolist(),
            "class_explained": [classes[int(c)] for c in m.attribution.class_index],
            "surrogate_logit": m.attribution.logit.tolist()} for m in models]
            for group, models in results.items()},
    }
    entry = {"probe": "trntk", "summary": summary,
             "params": spec.model_dump(mode="json") | {"seed": seed, "n_train_used": n_tr,
                                                       "n_test_used": n_te},
             "metrics": metrics, "tables": tables, "plots": []}
    return entry, provenance


def _finite_mean(values: np.ndarray) -> float:
    """Mean of the finite values (NaN when none: a model with constant attributions)."""
    ok = values[np.isfinite(values)]
    return float(ok.mean()) if ok.size else float("nan")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
