"""Cluster probe: does unsupervised k-means find the labels on its own?

A supervised probe says the labels *can* be told apart; this one asks whether they are the
dominant structure of the embedding space. k-means (one initialisation per seed, several
seeds, so the spread over initialisations is visible) is scored against the labels with the
adjusted Rand index, normalised mutual information and purity. The same clusterings scored
against randomly permuted labels give the chance level of each metric (ARI and NMI near 0;
purity near the majority share, not 0), so the reader sees what "no relation" looks like.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

from embedforensics.probes.base import Metric, Plot, Probe, ProbeParameterError, ProbeResult
from embedforensics.probes.stats import child_seeds, matrix_table, seed_spread


def purity(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Share of rows whose label is the most common label of their cluster."""
    table = contingency_matrix(labels, clusters)
    return float(table.max(axis=0).sum() / table.sum())


class ClusterProbe(Probe):
    """k-means (k = number of labels): does unsupervised clustering recover the labels?

    Parameters
    ----------
    n_clusters : int or None, default None
        k for k-means; None uses the number of distinct labels.
    n_seeds : int, default 5
        k-means runs, each with one initialisation (k-means++) from its own seed; metrics are
        reported as mean, sd and range over them. Each run also gets one label permutation
        for the null.
    seed : int, default 0
        Derives the per-run seeds.
    """

    name: ClassVar[str] = "cluster"
    description: ClassVar[str] = (
        "k-means (k = number of labels): does unsupervised clustering recover the labels? "
        "ARI and NMI over seeds."
    )
    min_labels: ClassVar[int] = 2
    headline: ClassVar[str | None] = "ari"
    _param_specs: ClassVar[dict[str, tuple]] = {
        "n_clusters": ("int_or_none", 2, None, None),
        "n_seeds": ("int", 1, None, None),
        "seed": ("int", 0, 2**32 - 1, None),
    }

    def __init__(self, *, n_clusters: int | None = None, n_seeds: int = 5, seed: int = 0):
        self.n_clusters = n_clusters
        self.n_seeds = n_seeds
        self.seed = seed

    def _fit(self, X: np.ndarray, y: np.ndarray, **context: Any) -> ProbeResult:
        n = len(y)
        y = y.astype(str)
        labels = [str(v) for v in np.unique(y)]
        k = len(labels) if self.n_clusters is None else self.n_clusters
        if k > n:
            raise ProbeParameterError(
                f"ClusterProbe: n_clusters is {k} but there are only {n} rows to cluster."
            )
        scores: dict[str, list[float]] = {m: [] for m in
                                          ("ari", "nmi", "purity", "ari_null", "nmi_null",
                                           "purity_null")}
        runs = []
        for run_seed in child_seeds(self.seed, self.n_seeds):
            km = KMeans(n_clusters=k, n_init=1, random_state=run_seed).fit(X)
            clusters = km.labels_
            permuted = np.random.default_rng(run_seed).permutation(y)
            for suffix, target in (("", y), ("_null", permuted)):
                scores["ari" + suffix].append(adjusted_rand_score(target, clusters))
                scores["nmi" + suffix].append(normalized_mutual_info_score(target, clusters))
                scores["purity" + suffix].append(purity(target, clusters))
            runs.append((float(km.inertia_), run_seed, clusters))

        descriptions = {
            "ari": "Adjusted Rand index between k-means clusters and the labels (0 = chance, "
                   "1 = identical partitions).",
            "nmi": "Normalised mutual information between k-means clusters and the labels "
                   "(0 = independent, 1 = identical partitions).",
            "purity": "Share of rows whose label is the majority label of their cluster.",
        }
        metrics: dict[str, Metric] = {}
        for key, values in scores.items():
            mean, sd, span = seed_spread(values)
            base = key.removesuffix("_null")
            desc = descriptions[base]
            if key.endswith("_null"):
                desc = (f"Null for {base}: the same clusterings scored against randomly "
                        f"permuted labels (one permutation per seed); what chance looks like.")
            metrics[key] = Metric(
                value=mean, n=n, std=sd, range=span,
                method=f"mean, sample sd and range over {self.n_seeds} k-means seed(s) "
                       f"(k={k}, one k-means++ initialisation each)",
                description=desc,
            )

        inertia, best_seed, best = min(runs, key=lambda r: r[0])
        table = contingency_matrix(y, best)
        cluster_names = [f"cluster {j}" for j in np.unique(best)]  # the columns' order
        tables = {
            "contingency": matrix_table(table, labels, cluster_names, "label \\ cluster"),
            "per_seed": {
                "columns": ["seed", "inertia", "ari", "nmi", "purity", "ari_null", "nmi_null",
                            "purity_null"],
                "rows": [[s, inertia_i, *(scores[m][i] for m in scores)]
                         for i, (inertia_i, s, _) in enumerate(runs)],
            },
        }
        plots = [Plot(kind="matrix",
                      title=f"Labels x k-means clusters (lowest-inertia run of {self.n_seeds})",
                      data={"values": table.tolist(), "row_labels": labels,
                            "col_labels": cluster_names},
                      xlabel="k-means cluster", ylabel="label")]

        ari, null = metrics["ari"], metrics["ari_null"]

        def pm(m: Metric) -> str:
            return f"{m.value:.2f}" + ("" if m.std is None else f" ± {m.std:.2f}")

        summary = (
            f"k-means with k={k} recovers the {len(labels)} labels with ARI {pm(ari)} "
            f"(mean ± sd over {self.n_seeds} seed{'s' if self.n_seeds > 1 else ''}, n={n}; "
            f"NMI {pm(metrics['nmi'])}), against ARI {pm(null)} for permuted labels."
        )
        params = {"n_clusters": k, "n_clusters_requested": self.n_clusters,
                  "n_seeds": self.n_seeds, "seed": self.seed, "best_run_seed": best_seed,
                  "best_run_inertia": inertia}
        return ProbeResult(probe=self.name, summary=summary, metrics=metrics, tables=tables,
                           plots=plots, params=params)
