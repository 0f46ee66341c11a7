"""The ``outputs`` comparator: α̂ (trimmed KS), accuracy, churn and calibration.

For every candidate group against the reference ensemble, on the soft outputs of one test
set (a logit or logit gap, never probabilities): α̂ for each method with its critical value,
accuracy with a Clopper–Pearson CI, churn against each reference model and the majority
vote, ECE with a reliability diagram, and the eCDFs of candidate, reference and optimal
trimming. Each candidate group becomes one ``compare-<group>`` result, with its spread
(median α̂, fraction flagged) in the metrics; every candidate's full results go to
``provenance.compare.per_model``.

Its parameters are the ``compare:`` section's ``soft_output``, ``level``, ``methods``,
``n_bootstrap`` and ``ece_bins`` (:class:`embedforensics.recipe.compare_spec.OutputsSpec`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from embedforensics.compare.checkpoints import (
    CheckpointData,
    Scored,
    model_name,
    soft_outputs,
    softmax,
)
from embedforensics.compare.power import MethodPower, assess
from embedforensics.errors import UserError
from embedforensics.recipe.compare_spec import OutputsSpec
from embedforensics.results import AnalysisResult
from embedforensics.study.analysis import Comparator, Outcome


class OutputsComparator(Comparator):
    """α̂ (trimmed KS) of each candidate's soft outputs against the reference ensemble,
    with accuracy, churn and calibration, per candidate group."""

    name = "outputs"
    Params = OutputsSpec

    def run(self, inputs: CheckpointData) -> Outcome:
        cmp = self.params
        ctx = inputs.ctx
        y = inputs.y_test
        try:
            ref_soft = np.stack([soft_outputs(s.logits, y, cmp.soft_output)
                                 for s in inputs.reference])
        except ValueError as exc:
            raise UserError(f"{exc}.", file=ctx.file_of("compare.soft_output"),
                            key="compare.soft_output") from None
        ref_pred = np.stack([s.logits.argmax(1) for s in inputs.reference])
        ref_summary, ref_cal = _reference_summary(inputs.reference, y, cmp)
        M, n = len(inputs.reference), int(y.size)
        # a method that cannot reject with this M (leave-one-out's rank) is not computed
        power = {m: assess(m, n_reference=M, n_test=n, level=cmp.level) for m in cmp.methods}
        computed = [m for m in cmp.methods if power[m].can_reject is not False]
        results = []
        per_model: dict[str, list[dict[str, Any]]] = {}
        for name, scored in inputs.candidates.items():
            evals = [_evaluate(s, soft_outputs(s.logits, y, cmp.soft_output), ref_soft,
                               ref_pred, y, cmp, ctx.recipe.seed, computed) for s in scored]
            for m in computed:  # the critical value depends on the reference only
                power[m] = assess(m, n_reference=M, n_test=n, level=cmp.level,
                                  critical_value=evals[0]["alpha"][m].critical_value)
            results.append(AnalysisResult(**_group_entry(name, evals, ref_summary, cmp, n,
                                                         ref_cal, power)))
            per_model[name] = [{"model": e["path"], "seed": e["seed"],
                                "alpha_hat": {m: r.to_dict() for m, r in e["alpha"].items()},
                                "accuracy": e["accuracy"].to_dict(),
                                "churn": e["churn"].to_dict(),
                                "calibration": e["calibration"].to_dict()} for e in evals]
        warnings = [f"compare: {p.reason}." for p in power.values() if p.can_reject is False]
        return Outcome(results, provenance={
            "reference_summary": ref_summary, "per_model": per_model,
            "power": {m: p.to_dict() for m, p in power.items()}}, warnings=warnings)


def _evaluate(scored: Scored, soft: np.ndarray, ref_soft: np.ndarray, ref_pred: np.ndarray,
              y: np.ndarray, cmp: Any, seed: int, methods: list[str]) -> dict[str, Any]:
    from embedforensics.compare import (
        accuracy,
        alpha_hat,
        churn_against_ensemble,
        expected_calibration_error,
    )

    pred = scored.logits.argmax(axis=1)
    alphas = {}
    for method in methods:
        try:
            res = alpha_hat(soft, ref_soft, level=cmp.level, method=method,
                            n_bootstrap=cmp.n_bootstrap, seed=seed)
        except ValueError as exc:
            raise UserError(f"α̂ ({method}): {exc}.", key="compare.methods") from None
        alphas[method] = res
    acc = accuracy(y, pred)
    ch = churn_against_ensemble(pred, ref_pred)
    cal = expected_calibration_error(softmax(scored.logits), y, n_bins=cmp.ece_bins)
    return {"name": model_name(scored.path), "path": str(scored.path),
            "seed": scored.scorer.config.get("seed"), "cached": scored.cached,
            "alpha": alphas, "accuracy": acc, "churn": ch, "calibration": cal, "soft": soft}


def _median_range(values: list[float]) -> tuple[float, list[float]]:
    arr = np.asarray(values, dtype=float)
    return float(np.median(arr)), [float(arr.min()), float(arr.max())]


def _metric(values: list[float], n: int, method: str, description: str, **extra: Any
            ) -> dict[str, Any]:
    med, rng = _median_range(values)
    return {"value": med, "n": n, "range": rng, "method": method, "description": description,
            **extra}


def _downsample(n: int, k: int = 400) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(int))


def _ecdf_plot(ev: dict[str, Any], method: str, group: str) -> dict[str, Any]:
    res = ev["alpha"][method]
    alpha = res.alpha_hat if res.attainable else None
    fit = res.trimming(alpha) if alpha is not None else res.trimming(0.0)
    keep = _downsample(fit.grid.size)
    x = [float(v) for v in fit.grid[keep]]
    series = [
        {"label": f"reference (pooled, m={res.m})", "x": x,
         "y": [float(v) for v in fit.reference_cdf[keep]], "step": True},
        {"label": f"candidate {ev['name']} (n={res.n})", "x": x,
         "y": [float(v) for v in fit.candidate_cdf[keep]], "step": True},
    ]
    if alpha is not None and alpha > 0:
        series.append({"label": f"optimal {alpha:.3f}-trimming of the candidate", "x": x,
                       "y": [float(v) for v in fit.trimmed_cdf[keep]], "step": True})
    return {"kind": "lines", "title": f"{group}: eCDF of soft outputs, median-α̂ candidate "
            f"({method} α̂ = {res.alpha_hat:.3f})", "xlabel": "soft output",
            "ylabel": "cumulative fraction", "data": {"series": series}}


def _reliability_plot(ev: dict[str, Any], ref_cal: Any, group: str) -> dict[str, Any]:
    def line(cal: Any, label: str) -> dict[str, Any]:
        ok = ~np.isnan(cal.bin_confidence)
        return {"label": label, "x": [float(v) for v in cal.bin_confidence[ok]],
                "y": [float(v) for v in cal.bin_accuracy[ok]], "step": False, "marker": True}

    cal = ev["calibration"]
    return {"kind": "lines", "title": f"{group}: reliability diagram ({cal.n_bins} bins)",
            "xlabel": "mean confidence in bin", "ylabel": "accuracy in bin",
            "data": {"series": [
                {"label": "perfect calibration", "x": [0.0, 1.0], "y": [0.0, 1.0],
                 "step": False, "dashed": True},
                line(ref_cal, f"reference model {ref_cal.name} (ECE {ref_cal.ece:.3f})"),
                line(cal, f"candidate {ev['name']} (ECE {cal.ece:.3f})")]}}


def _group_entry(name: str, evals: list[dict[str, Any]], ref_summary: dict[str, Any],
                 cmp: Any, n_test: int, ref_cal: Any, power: dict[str, MethodPower]
                 ) -> dict[str, Any]:
    k = len(evals)
    methods = list(cmp.methods)
    computed = [m for m in methods if m in evals[0]["alpha"]]
    able = [m for m in computed if power[m].can_reject]
    metrics: dict[str, Any] = {}
    for method in methods:
        if not power[method].can_reject:  # its α̂ and "flagged" would say nothing
            why = power[method].reason
            metrics[f"alpha_hat_{method}"] = {
                "value": None, "n": k, "method": "cannot reject here",
                "description": f"α̂ ({method}, level {cmp.level}) not reported: it cannot "
                               f"reject here ({why})"}
            metrics[f"flagged_{method}"] = {
                "value": None, "n": k, "method": "cannot reject here",
                "description": f"fraction flagged ({method}) not reported: it cannot reject "
                               f"here ({why})"}
            continue
        values = [e["alpha"][method].alpha_hat for e in evals]
        flagged = [e["alpha"][method].alpha_hat > 0 for e in evals]
        metrics[f"alpha_hat_{method}"] = _metric(
            values, k, f"median over {k} candidates; range min–max",
            f"α̂ ({method} critical value, level {cmp.level}): smallest fraction of the "
            "candidate's soft outputs to trim before a KS test accepts it as the reference")
        metrics[f"flagged_{method}"] = {
            "value": float(np.mean(flagged)), "n": k, "method": "fraction of candidates",
            "description": f"fraction of candidates with α̂ > 0 (untrimmed KS test rejects at "
                           f"level {cmp.level}, {method})"}
    acc = [e["accuracy"] for e in evals]
    med_acc, rng_acc = _median_range([a.accuracy for a in acc])
    metrics["accuracy"] = {
        "value": med_acc, "n": n_test, "range": rng_acc,
        "ci": [float(np.median([a.ci_low for a in acc])),
               float(np.median([a.ci_high for a in acc]))], "ci_level": 0.95,
        "method": f"median over {k} candidates; CI: median of per-candidate Clopper–Pearson",
        "description": "test accuracy"}
    metrics["reference_accuracy"] = ref_summary["accuracy"]
    metrics["churn_vs_majority"] = _metric(
        [e["churn"].against_majority for e in evals], n_test,
        f"median over {k} candidates", "fraction of test points where the candidate's "
        "prediction differs from the reference ensemble's majority vote")
    metrics["churn_vs_reference_mean"] = _metric(
        [e["churn"].mean for e in evals], n_test, f"median over {k} candidates",
        "mean churn against each reference model")
    metrics["reference_pairwise_churn"] = ref_summary["pairwise_churn"]
    metrics["ece"] = _metric([e["calibration"].ece for e in evals], n_test,
                             f"median over {k} candidates, {cmp.ece_bins} equal bins",
                             "expected calibration error of the softmax top-label confidence")
    metrics["reference_ece"] = ref_summary["ece"]

    # the headline method: the last listed one that can reject (none: say so first)
    first = able[-1] if able else (computed[-1] if computed else None)
    rows = []
    for e in evals:
        row: list[Any] = [e["name"], e["seed"]]
        for method in methods:
            res = e["alpha"].get(method)
            if res is None:
                row += ["n/a", "n/a (cannot reject)", "n/a"]
                continue
            flag = ("yes" if res.alpha_hat > 0 else "no") if power[method].can_reject \
                else "n/a (cannot reject)"
            row += [res.alpha_hat, flag, res.p_value_at_zero]
        a, c = e["accuracy"], e["churn"]
        row += [a.accuracy, f"{a.ci_low:.3f}–{a.ci_high:.3f}", c.against_majority, c.mean,
                f"{c.min:.3f}–{c.max:.3f}", e["calibration"].ece]
        rows.append(row)
    columns = ["model", "seed"]
    for method in methods:
        columns += [f"α̂ {method}", f"flagged ({method})", f"KS p ({method})"]
    columns += ["accuracy", "95% CI", "churn vs majority", "churn vs refs (mean)",
                "churn vs refs (min–max)", "ECE"]
    crit_rows = [[m, evals[0]["alpha"][m].critical_value, evals[0]["alpha"][m].threshold,
                  cmp.level, evals[0]["alpha"][m].n, evals[0]["alpha"][m].m,
                  evals[0]["alpha"][m].n_bootstrap,
                  "yes" if power[m].can_reject else "no"] for m in computed]
    crit_rows += [[m, None, None, cmp.level, n_test, None, None, "no"]
                  for m in methods if m not in computed]
    rest = (f"accuracy {med_acc:.3f} vs reference {ref_summary['accuracy']['value']:.3f}; churn "
            f"vs majority {metrics['churn_vs_majority']['value']:.3f}")
    plots = []
    if able:
        order = np.argsort([e["alpha"][first].alpha_hat for e in evals], kind="stable")
        median_ev = evals[int(order[(k - 1) // 2])]
        flagged_frac = metrics[f"flagged_{first}"]["value"]
        others = ", ".join(f"{m} {metrics[f'alpha_hat_{m}']['value']:.3f}" if m in able
                           else f"{m} cannot reject here" for m in methods if m != first)
        summary = (
            f"{name}: median α̂ {metrics[f'alpha_hat_{first}']['value']:.3f} ({first}"
            + (f"; {others}" if others else "")
            + f"), {flagged_frac:.0%} of {k} candidates flagged at level {cmp.level}; {rest}.")
        plots.append(_ecdf_plot(median_ev, first, name))
    else:
        M = next(iter(power.values())).n_reference
        median_ev = evals[(k - 1) // 2]
        summary = (f"{name}: no chosen method can reject at level {cmp.level} with "
                   f"{M} reference models and {n_test} test points "
                   f"({', '.join(methods)}; see the critical values), so α̂ cannot flag any "
                   f"of the {k} candidates — use more reference seeds; {rest}.")
        if first is not None:
            plots.append(_ecdf_plot(median_ev, first, name))
    return {
        "probe": f"compare-{name}", "summary": summary,
        "params": {"candidates": k, "methods": methods, "level": cmp.level,
                   "n_bootstrap": cmp.n_bootstrap, "soft_output": cmp.soft_output,
                   "models": [e["path"] for e in evals]},
        "metrics": metrics,
        "tables": {"candidates": {"columns": columns, "rows": rows},
                   "critical_values": {"columns": ["method", "critical value (scaled)",
                                                   "threshold τ (distance)", "level", "n", "m",
                                                   "bootstrap replicates", "can reject"],
                                       "rows": crit_rows}},
        "plots": [*plots, _reliability_plot(median_ev, ref_cal, name)],
    }


def _reference_summary(ref: list[Scored], y: np.ndarray, cmp: Any) -> tuple[dict, Any]:
    from embedforensics.compare import accuracy, churn_against_ensemble, expected_calibration_error

    M = len(ref)
    accs = [accuracy(y, s.logits.argmax(1)) for s in ref]
    cals = [expected_calibration_error(softmax(s.logits), y, n_bins=cmp.ece_bins)
            for s in ref]
    preds = np.stack([s.logits.argmax(1) for s in ref])
    pair = churn_against_ensemble(preds[0], preds).reference_pairwise_mean if M >= 2 else None
    med_acc, rng_acc = _median_range([a.accuracy for a in accs])
    summary = {
        "accuracy": {"value": med_acc, "n": int(y.size), "range": rng_acc,
                     "ci": [float(np.median([a.ci_low for a in accs])),
                            float(np.median([a.ci_high for a in accs]))], "ci_level": 0.95,
                     "method": f"median over {M} reference models",
                     "description": "reference models' test accuracy"},
        "pairwise_churn": {"value": pair, "n": int(y.size),
                           "method": f"mean over {M * (M - 1) // 2} reference pairs",
                           "description": "churn between two reference models: the baseline "
                                          "for a candidate's churn"},
        "ece": _metric([c.ece for c in cals], int(y.size), f"median over {M} reference models",
                       "reference models' ECE"),
    }
    mid = int(np.argsort([c.ece for c in cals])[(M - 1) // 2])
    return summary, _NamedCal(cals[mid], model_name(ref[mid].path))


class _NamedCal:
    """A CalibrationResult with the model name, for plot legends."""

    def __init__(self, cal: Any, name: str):
        self._cal, self.name = cal, name

    def __getattr__(self, item: str) -> Any:
        return getattr(self._cal, item)
