"""PCA probe: how is the variance of the embeddings spread, and do labels sit apart on it?

Unsupervised, so it works with a single label: it reports the explained-variance ratios of
the leading principal components, a PC1/PC2 scatter coloured by label (a seeded, stratified
subsample so reports stay small), each label's mean position on PC1/PC2, and, when texts
are given, example texts from both ends of PC1 so a reader can see what the main axis of
variation *is*.

For each of the first ``n_interpret`` components it also says what the component is
associated with: the labels and every metadata column handed in as ``meta`` (plus text
length in characters when texts are given) — the correlation ratio η² with a one-way
ANOVA p-value for categorical columns, Spearman's ρ with its p-value for numeric ones,
Benjamini–Hochberg adjusted across the whole table — and example texts from both ends.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from sklearn.decomposition import PCA

from embedforensics.probes.base import Metric, Plot, Probe, ProbeParameterError, ProbeResult
from embedforensics.probes.stats import (
    fmt_p,
    fmt_pct,
    plot_floats,
    stratified_subsample,
    truncate_text,
)

N_EXAMPLES = 5
"""Example texts shown from each end of PC1."""

N_EXAMPLES_PER_PC = 3
"""Example texts from each end of every interpreted component."""

MAX_CATEGORIES = 50
"""Categorical columns with more distinct values than this (ids, free text) are skipped."""


class PCAProbe(Probe):
    """Principal components: explained variance and a 2-D scatter coloured by label.

    Parameters
    ----------
    n_components : int, default 10
        Components to compute; clipped to ``min(n_rows, dim)`` (the clip is recorded in the
        result's params as ``n_components`` next to ``n_components_requested``).
    seed : int, default 0
        Seeds the randomized SVD solver and the plot subsample.
    max_points : int, default 2000
        At most this many points (stratified by label) go into the scatter plot; all rows are
        used for the components themselves.
    n_interpret : int, default 3
        Leading components described by their associations with labels and metadata and
        by example texts from both ends (0 skips).
    """

    name: ClassVar[str] = "pca"
    description: ClassVar[str] = (
        "Principal components: explained variance and a 2-D scatter coloured by label."
    )
    min_labels: ClassVar[int] = 1
    headline: ClassVar[str | None] = "explained_variance_pc1"
    _param_specs: ClassVar[dict[str, tuple]] = {
        "n_components": ("int", 1, None, None),
        "seed": ("int", 0, 2**32 - 1, None),
        "max_points": ("int", 1, None, None),
        "n_interpret": ("int", 0, None, None),
    }

    def __init__(self, *, n_components: int = 10, seed: int = 0, max_points: int = 2000,
                 n_interpret: int = 3):
        self.n_components = n_components
        self.seed = seed
        self.max_points = max_points
        self.n_interpret = n_interpret

    def _fit(self, X: np.ndarray, y: np.ndarray, **context: Any) -> ProbeResult:
        n, d = X.shape
        if n < 2:
            raise ProbeParameterError(f"PCAProbe needs at least 2 rows; got {n}.")
        if not np.any(np.ptp(X, axis=0)):
            raise ProbeParameterError(
                "PCAProbe: the embeddings have zero variance (all rows are identical), so "
                "there are no principal components to report."
            )
        k = min(self.n_components, n, d)
        # svd_solver="auto" picks the fastest exact-enough route: covariance eigh for tall
        # data, randomized SVD when few components of a large matrix are wanted, else LAPACK.
        pca = PCA(n_components=k, svd_solver="auto", random_state=self.seed)
        scores = pca.fit_transform(X)
        ratios = np.asarray(pca.explained_variance_ratio_, dtype=float)
        self.pca_ = pca
        solver = str(getattr(pca, "_fit_svd_solver", "auto"))  # the route "auto" chose
        labels = [str(v) for v in np.unique(y)]
        y = y.astype(str)
        pc2 = scores[:, 1] if k >= 2 else np.zeros(n)
        cumulative = float(ratios.sum())

        metrics = {
            "explained_variance_pc1": Metric(
                value=float(ratios[0]), n=n, method=f"PCA ({solver} solver)",
                description="Share of the total variance along the first principal component "
                            "(a sample quantity; no interval).",
            ),
            "explained_variance_cumulative": Metric(
                value=cumulative, n=n, method=f"PCA ({solver} solver)",
                description=f"Share of the total variance in the first {k} principal "
                            f"components together.",
            ),
        }

        tables: dict[str, Any] = {
            "explained_variance": {
                "columns": ["component", "ratio", "cumulative"],
                "rows": [[f"PC{i + 1}", float(r), float(c)]
                         for i, (r, c) in enumerate(zip(ratios, np.cumsum(ratios), strict=True))],
            },
            "label_means": _label_means(scores[:, 0], pc2, y, labels),
        }
        texts = context.get("texts")
        if texts is not None:
            tables["pc1_examples"] = _pc1_examples(scores[:, 0], y, texts, context.get("ids"))

        n_pc = min(self.n_interpret, k)
        if n_pc:
            columns = _association_columns(y, texts, context.get("meta"))
            tables["pc_associations"] = _associations(scores[:, :n_pc], columns)
            if texts is not None:
                tables["pc_examples"] = _pc_examples(scores[:, :n_pc], y, texts,
                                                     context.get("ids"))
        idx = stratified_subsample(y, self.max_points, self.seed)
        pc2_name = (f"PC2 ({fmt_pct(ratios[1])} of variance)" if k >= 2
                    else "(no PC2: the data has one dimension)")
        plots = [
            Plot(kind="bar", title="Explained variance ratio per principal component",
                 data={"x": [f"PC{i + 1}" for i in range(k)], "y": [float(r) for r in ratios]},
                 xlabel="component", ylabel="explained variance ratio"),
            Plot(kind="scatter",
                 title=f"PC1 vs PC2 by label ({len(idx)} of {n} rows shown)",
                 data={"x": plot_floats(scores[idx, 0]), "y": plot_floats(pc2[idx]),
                       "labels": y[idx].tolist()},
                 xlabel=f"PC1 ({fmt_pct(ratios[0])} of variance)", ylabel=pc2_name),
        ]
        summary = (
            f"PC1 explains {fmt_pct(ratios[0])} of the variance and the first {k} "
            f"component{'s' if k > 1 else ''} {fmt_pct(cumulative)} "
            f"(n={n} rows, {d} dimensions, {len(labels)} label{'s' if len(labels) > 1 else ''})"
        )
        top = _top_association(tables.get("pc_associations"))
        summary += (f"; PC1 is most associated with {top}." if top else ".")
        params = {
            "n_components": k,
            "n_components_requested": self.n_components,
            "seed": self.seed,
            "max_points": self.max_points,
            "svd_solver": solver,
            "n_interpret": self.n_interpret,
        }
        return ProbeResult(probe=self.name, summary=summary, metrics=metrics, tables=tables,
                           plots=plots, params=params)


def _label_means(pc1: np.ndarray, pc2: np.ndarray, y: np.ndarray,
                 labels: list[str]) -> dict[str, Any]:
    """Per-label mean and sd on PC1/PC2 with the label's n (sd = 0 for a single row)."""
    def sd(v: np.ndarray) -> float:
        return float(np.std(v, ddof=1)) if len(v) > 1 else 0.0

    rows = []
    for label in labels:
        m = y == label
        rows.append([label, int(m.sum()), float(pc1[m].mean()), sd(pc1[m]),
                     float(pc2[m].mean()), sd(pc2[m])])
    return {"columns": ["label", "n", "pc1_mean", "pc1_sd", "pc2_mean", "pc2_sd"], "rows": rows}


def _pc1_examples(pc1: np.ndarray, y: np.ndarray, texts: Any, ids: Any) -> dict[str, Any]:
    """The texts with the lowest and the highest PC1 scores (truncated), with their labels."""
    order = np.argsort(pc1, kind="stable")
    m = min(N_EXAMPLES, len(order) // 2) or 1
    ends = [("low", order[:m]), ("high", order[::-1][:m])]
    rows = []
    for end, idx in ends:
        for i in idx:
            row_id = str(ids[i]) if ids is not None else str(i)
            rows.append([f"{end} PC1", float(pc1[i]), str(y[i]), row_id, truncate_text(texts[i])])
    return {"columns": ["end", "pc1", "label", "id", "text"], "rows": rows}


def _association_columns(y: np.ndarray, texts: Any, meta: dict[str, list[Any]] | None
                         ) -> list[tuple[str, str, np.ndarray]]:
    """(name, kind, values) of the variables a component is tested against: the label,
    text length, and usable metadata columns (numeric, or categorical with at most
    ``MAX_CATEGORIES`` values); values are an object array with None where missing."""
    out: list[tuple[str, str, np.ndarray]] = []
    if len(np.unique(y)) > 1:
        out.append(("label", "categorical", y.astype(object)))
    if texts is not None:
        out.append(("text length (chars)", "numeric",
                    np.array([len(str(t)) for t in texts], dtype=object)))
    for name, values in sorted((meta or {}).items()):
        vals = np.array(list(values), dtype=object)
        present = [v for v in vals if v is not None]
        if len(present) < 3:
            continue
        numeric = all(isinstance(v, (int, float, np.integer, np.floating))
                      and not isinstance(v, bool) for v in present)
        distinct = len({str(v) for v in present})
        if numeric and distinct > 2:
            out.append((f"meta: {name}", "numeric", vals))
        elif 1 < distinct <= MAX_CATEGORIES:
            out.append((f"meta: {name}", "categorical",
                        np.array([None if v is None else str(v) for v in vals], dtype=object)))
    return out


def eta_squared(values: np.ndarray, groups: np.ndarray) -> tuple[float, float]:
    """Correlation ratio η² = between-group / total sum of squares, and the one-way ANOVA
    p-value of the same partition (1.0 when undefined)."""
    from scipy.stats import f_oneway

    values = np.asarray(values, dtype=float)
    total = float(np.sum((values - values.mean()) ** 2))
    names = sorted(set(groups.tolist()))
    parts = [values[groups == g] for g in names]
    between = float(sum(len(p) * (p.mean() - values.mean()) ** 2 for p in parts))
    eta2 = between / total if total > 0 else 0.0
    if len(parts) < 2 or len(values) <= len(parts) or total == 0:
        return eta2, 1.0
    with np.errstate(all="ignore"):
        p = float(f_oneway(*parts).pvalue)
    return eta2, p if np.isfinite(p) else 1.0


def _associations(scores: np.ndarray, columns: list[tuple[str, str, np.ndarray]]
                  ) -> dict[str, Any]:
    """One row per (component, variable): effect, p and BH-adjusted p, strongest first."""
    from scipy.stats import false_discovery_control, spearmanr

    rows = []
    for j in range(scores.shape[1]):
        for name, kind, values in columns:
            keep = np.array([v is not None for v in values])
            pc, vals = scores[keep, j], values[keep]
            if kind == "numeric":
                x = vals.astype(float)
                if np.ptp(x) == 0 or len(x) < 3:
                    continue
                rho, p = spearmanr(pc, x)
                rows.append([f"PC{j + 1}", name, "Spearman rho", float(rho),
                             float(p) if np.isfinite(p) else 1.0, int(keep.sum())])
            else:
                eta2, p = eta_squared(pc, vals)
                rows.append([f"PC{j + 1}", name, "eta squared", eta2, p, int(keep.sum())])
    if rows:
        adjusted = false_discovery_control([r[4] for r in rows], method="bh")
        rows = [[*r[:5], float(a), r[5]] for r, a in zip(rows, adjusted, strict=True)]
    rows.sort(key=lambda r: (int(r[0][2:]), -abs(r[3])))
    return {"columns": ["component", "variable", "statistic", "value", "p", "p (BH)", "n"],
            "rows": rows}


def _top_association(table: dict[str, Any] | None) -> str:
    """'label (eta squared 0.62, p (BH)=1e-40)' for PC1, or '' when nothing is significant."""
    if not table:
        return ""
    for row in table["rows"]:
        if row[0] == "PC1" and row[5] < 0.05:
            return f"{row[1]} ({row[2]} {row[3]:.2f}, BH-adjusted {fmt_p(row[5])})"
    return ""


def _pc_examples(scores: np.ndarray, y: np.ndarray, texts: Any, ids: Any) -> dict[str, Any]:
    """Texts with the lowest and highest scores on each interpreted component."""
    rows = []
    for j in range(scores.shape[1]):
        order = np.argsort(scores[:, j], kind="stable")
        m = min(N_EXAMPLES_PER_PC, len(order) // 2) or 1
        for end, idx in (("low", order[:m]), ("high", order[::-1][:m])):
            for i in idx:
                row_id = str(ids[i]) if ids is not None else str(i)
                rows.append([f"PC{j + 1}", end, float(scores[i, j]), str(y[i]), row_id,
                             truncate_text(texts[i])])
    return {"columns": ["component", "end", "score", "label", "id", "text"], "rows": rows}
