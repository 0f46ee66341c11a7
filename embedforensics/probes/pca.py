"""PCA probe: how is the variance of the embeddings spread, and do labels sit apart on it?

Unsupervised, so it works with a single label: it reports the explained-variance ratios of
the leading principal components, a PC1/PC2 scatter coloured by label (a seeded, stratified
subsample so reports stay small), each label's mean position on PC1/PC2, and, when texts
are given, example texts from both ends of PC1 so a reader can see what the main axis of
variation *is*.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from sklearn.decomposition import PCA

from embedforensics.probes.base import Metric, Plot, Probe, ProbeParameterError, ProbeResult
from embedforensics.probes.stats import (
    fmt_pct,
    plot_floats,
    stratified_subsample,
    truncate_text,
)

N_EXAMPLES = 5
"""Example texts shown from each end of PC1."""


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
    }

    def __init__(self, *, n_components: int = 10, seed: int = 0, max_points: int = 2000):
        self.n_components = n_components
        self.seed = seed
        self.max_points = max_points

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
            f"(n={n} rows, {d} dimensions, {len(labels)} label{'s' if len(labels) > 1 else ''})."
        )
        params = {
            "n_components": k,
            "n_components_requested": self.n_components,
            "seed": self.seed,
            "max_points": self.max_points,
            "svd_solver": solver,
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
