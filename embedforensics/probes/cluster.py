"""Cluster probe: does unsupervised clustering find the labels on its own?

A supervised probe says the labels *can* be told apart; this one asks whether they are the
dominant structure of the embedding space. k-means (one initialisation per seed, several
seeds, so the spread over initialisations is visible) is scored against the labels with the
adjusted Rand index, normalised mutual information and purity. The same clusterings scored
against randomly permuted labels give the chance level of each metric (ARI and NMI near 0;
purity near the majority share, not 0), so the reader sees what "no relation" looks like.

With ``methods="all"`` (the default) three more algorithms from scikit-learn run beside
k-means and are scored the same way: a Gaussian mixture (diagonal covariances, one
initialisation per seed), agglomerative clustering (Ward linkage, deterministic) and
HDBSCAN (density-based; chooses its own number of clusters and may call rows noise, which
are scored as one extra "noise" cluster and counted). Agglomerative and HDBSCAN need
quadratic memory, so above ``max_rows`` rows each seed clusters its own stratified
subsample of ``max_rows`` rows; their spread over seeds is then the subsampling spread,
and without subsampling they run once (no sd).

For crossed designs whose labels name several factors (``de/computer`` = language x
topic), ``factors: [language, topic]`` adds, per factor, k-means with k = that factor's
number of levels over the same seeds, scored with ARI against that factor, against its
shuffled levels (chance) and against every other factor and the full labels — so one sees
whether the dominant two-way split of the space is the topic or something else.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from sklearn.cluster import HDBSCAN, AgglomerativeClustering, KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix
from sklearn.mixture import GaussianMixture

from embedforensics.probes import factors as fx
from embedforensics.probes import progress
from embedforensics.probes.base import Metric, Plot, Probe, ProbeParameterError, ProbeResult
from embedforensics.probes.stats import (
    child_seeds,
    matrix_table,
    seed_spread,
    stratified_subsample,
)

METHODS = ("kmeans", "gmm", "agglomerative", "hdbscan")


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
    methods : {"all", "kmeans", "gmm", "agglomerative", "hdbscan"}, default "all"
        Which algorithms run besides the k-means headline ("kmeans" runs k-means only).
    max_rows : int, default 3000
        Row cap for agglomerative clustering and HDBSCAN (stratified subsample per seed).
    min_cluster_size : int, default 10
        HDBSCAN's smallest cluster.
    factors : list of str or None, default None
        Names of the ``/``-separated parts of every label in a crossed design, e.g.
        ``["language", "topic"]`` for labels like ``de/computer``: for each factor, k-means
        with k = its number of levels over the ``n_seeds`` seeds, ARI against the factor
        and against its shuffled levels (one shuffle per seed). None = off.
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
        "methods": ("str", None, None, ("all", *METHODS)),
        "max_rows": ("int", 10, None, None),
        "min_cluster_size": ("int", 2, None, None),
        "factors": (fx.STR_LIST, None, None, None),
    }

    def __init__(self, *, n_clusters: int | None = None, n_seeds: int = 5, seed: int = 0,
                 methods: str = "all", max_rows: int = 3000, min_cluster_size: int = 10,
                 factors: list[str] | None = None):
        self.n_clusters = n_clusters
        self.n_seeds = n_seeds
        self.seed = seed
        self.methods = methods
        self.max_rows = max_rows
        self.min_cluster_size = min_cluster_size
        self.factors = factors

    def _check_params(self) -> None:
        """The declared kinds, then the form of the factor names."""
        fx.check_params(self)
        fx.check_factor_names(type(self).__name__, self.factors)

    def check_labels(self, labels: Any) -> None:
        """Raise ``ProbeParameterError`` unless ``factors`` split every label; needs only
        the label names, so it can run before any embedding is computed."""
        if self.factors:
            fx.split_factors(type(self).__name__, sorted({str(v) for v in labels}),
                             self.factors)

    def _factor_analysis(self, X: np.ndarray, y: np.ndarray,
                         kmeans_runs: dict[int, list[np.ndarray]]
                         ) -> tuple[dict[str, Metric], dict[str, Any], str]:
        """k-means with k = each factor's levels, scored against every factor and the labels.

        ``kmeans_runs`` maps k to the clusterings of the seeds already fitted (the headline
        run's k is there), so a k shared by two factors or by the labels is fitted once.
        """
        levels = fx.split_factors(type(self).__name__, y, self.factors)
        targets = {**levels, "label": y}
        seeds = child_seeds(self.seed, self.n_seeds)
        metrics: dict[str, Metric] = {}
        rows: list[list[Any]] = []
        clauses = []
        for f, (name, values) in enumerate(levels.items()):
            k = len(np.unique(values))
            if k not in kmeans_runs:
                kmeans_runs[k] = [KMeans(n_clusters=k, n_init=1, random_state=s).fit(X).labels_
                                  for s in seeds]
            runs = kmeans_runs[k]
            null = [adjusted_rand_score(np.random.default_rng([s, f]).permutation(values), c)
                    for s, c in zip(seeds, runs, strict=True)]
            null_mean, null_sd, null_span = seed_spread(null)
            how = (f"mean, sample sd and range over {self.n_seeds} k-means seed(s) (k={k}, one "
                   f"k-means++ initialisation each)")
            for against, target in targets.items():
                ari = [adjusted_rand_score(target, c) for c in runs]
                nmi = [normalized_mutual_info_score(target, c) for c in runs]
                mean, sd, span = seed_spread(ari)
                rows.append([k, name, against, mean, sd, span[0], span[1],
                             seed_spread(nmi)[0],
                             null_mean if against == name else None,
                             null_sd if against == name else None])
                if against != name:
                    continue
                metrics[f"factor_{fx.key(name)}_ari"] = Metric(
                    value=mean, n=len(y), std=sd, range=span, method=how,
                    description=f"Adjusted Rand index between k-means clusters with k = the "
                                f"{k} levels of factor '{name}' and that factor.")
                metrics[f"factor_{fx.key(name)}_ari_null"] = Metric(
                    value=null_mean, n=len(y), std=null_sd, range=null_span, method=how,
                    description=f"Null for factor_{fx.key(name)}_ari: the same clusterings "
                                f"scored against the factor's levels shuffled over rows (one "
                                f"shuffle per seed); what chance looks like.")
                sd_text = "" if sd is None else f" ± {sd:.2f}"
                clauses.append(f"{name} (k={k}) {mean:.2f}{sd_text}")
        table = {"columns": ["k-means k", "k = levels of", "against", "ari mean", "ari sd",
                             "ari min", "ari max", "nmi mean", "ari shuffled mean",
                             "ari shuffled sd"],
                 "rows": rows}
        clause = ("k-means with k = the levels of each factor recovers "
                  + ", ".join(clauses) + " (ARI)")
        return metrics, table, clause

    _bar: Any = None  # the progress bar of a running fit (probes/progress.py)

    def _other_methods(self, X: np.ndarray, y: np.ndarray, k: int
                       ) -> tuple[dict[str, Metric], list[list[Any]]]:
        """GMM / agglomerative / HDBSCAN scored like k-means: metrics and a summary table."""
        wanted = [m for m in METHODS[1:] if self.methods in ("all", m)]
        metrics: dict[str, Metric] = {}
        rows: list[list[Any]] = []
        self.skipped_: list[str] = []
        for method in wanted:
            deterministic = method in ("agglomerative", "hdbscan")
            capped = deterministic and len(y) > self.max_rows
            if method == "hdbscan" and min(len(y), self.max_rows) < self.min_cluster_size:
                # HDBSCAN cannot form a cluster of min_cluster_size from fewer rows
                # (scikit-learn raises); say so instead of failing the whole probe
                self.skipped_.append(
                    f"HDBSCAN skipped: {len(y)} rows, fewer than min_cluster_size "
                    f"{self.min_cluster_size}")
                continue
            seeds = child_seeds(self.seed + 1, self.n_seeds if (capped or not deterministic)
                                else 1)
            scores: dict[str, list[float]] = {m: [] for m in ("ari", "nmi", "purity",
                                                              "ari_null")}
            found, noise, n_used = [], [], 0
            for run_seed in seeds:
                if self._bar is not None:
                    self._bar.set_postfix_str(method)
                    self._bar.update(1)
                idx = (stratified_subsample(y, self.max_rows, run_seed) if capped
                       else np.arange(len(y)))
                Xs, ys = X[idx], y[idx]
                n_used = len(idx)
                if method == "gmm":
                    clusters = GaussianMixture(n_components=k, covariance_type="diag",
                                               random_state=run_seed).fit(Xs).predict(Xs)
                elif method == "agglomerative":
                    clusters = AgglomerativeClustering(n_clusters=k).fit(Xs).labels_
                else:
                    # brute force: one BLAS distance matrix (max_rows² floats) instead of
                    # tree queries, which degrade in high dimension; same clusters, 14x less
                    # CPU at 3,000 × 384 (benchmarks/README.md)
                    clusters = HDBSCAN(min_cluster_size=self.min_cluster_size, copy=True,
                                       algorithm="brute").fit(Xs).labels_
                noise.append(float(np.mean(clusters == -1)))
                found.append(len(set(clusters.tolist()) - {-1}))
                permuted = np.random.default_rng(run_seed).permutation(ys)
                scores["ari"].append(adjusted_rand_score(ys, clusters))
                scores["nmi"].append(normalized_mutual_info_score(ys, clusters))
                scores["purity"].append(purity(ys, clusters))
                scores["ari_null"].append(adjusted_rand_score(permuted, clusters))
            how = (f"mean, sample sd and range over {len(seeds)} run(s) of {method}"
                   + (f" on stratified subsamples of {n_used} rows" if capped else "")
                   + (" (deterministic; one run)" if deterministic and not capped else ""))
            for key, values in scores.items():
                mean, sd, span = seed_spread(values)
                base = key.removesuffix("_null")
                desc = (f"{base.upper() if base != 'purity' else 'Purity'} of {method} "
                        f"clusters against the labels"
                        + (" scored against permuted labels (chance level)"
                           if key.endswith("_null") else "") + ".")
                metrics[f"{method}_{key}"] = Metric(value=mean, n=n_used, std=sd, range=span,
                                                    method=how, description=desc)
            if method == "hdbscan":
                metrics["hdbscan_noise_share"] = Metric(
                    value=float(np.mean(noise)), n=n_used, method=how,
                    description="Share of rows HDBSCAN calls noise (scored as one extra "
                                "cluster).")
                metrics["hdbscan_clusters"] = Metric(
                    value=float(np.mean(found)), n=n_used, method=how,
                    description="Clusters HDBSCAN found (it chooses the number itself).")
            m = {key: seed_spread(v) for key, v in scores.items()}
            rows.append([method, len(seeds), n_used, m["ari"][0], m["ari"][1], m["nmi"][0],
                         m["nmi"][1], m["purity"][0], m["ari_null"][0], float(np.mean(found)),
                         float(np.mean(noise))])
        return metrics, rows

    def _fit(self, X: np.ndarray, y: np.ndarray, **context: Any) -> ProbeResult:
        n = len(y)
        y = y.astype(str)
        labels = [str(v) for v in np.unique(y)]
        k = len(labels) if self.n_clusters is None else self.n_clusters
        self.check_labels(labels)
        if k > n:
            raise ProbeParameterError(
                f"ClusterProbe: n_clusters is {k} but there are only {n} rows to cluster."
            )
        scores: dict[str, list[float]] = {m: [] for m in
                                          ("ari", "nmi", "purity", "ari_null", "nmi_null",
                                           "purity_null")}
        runs = []
        n_other = sum(self.methods in ("all", m) for m in METHODS[1:])
        self._bar = progress.bar(self.n_seeds * (1 + n_other), "cluster: runs", "run")
        for run_seed in child_seeds(self.seed, self.n_seeds):
            self._bar.update(1)
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

        try:
            other_metrics, other_rows = self._other_methods(X, y, k)
        finally:
            self._bar.close()
            self._bar = None
        metrics.update(other_metrics)
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
        if other_rows:
            km = {key: seed_spread(v) for key, v in scores.items()}
            tables["methods"] = {
                "columns": ["method", "runs", "rows per run", "ari mean", "ari sd",
                            "nmi mean", "nmi sd", "purity mean", "ari null mean",
                            "clusters found", "noise share"],
                "rows": [["kmeans", self.n_seeds, n, km["ari"][0], km["ari"][1], km["nmi"][0],
                          km["nmi"][1], km["purity"][0], km["ari_null"][0], k, 0.0],
                         *other_rows]}
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
        if other_rows:
            others = ", ".join(f"{r[0]} {r[3]:.2f}" for r in other_rows)
            summary = summary[:-1] + f"; other methods' ARI: {others}."
        if self.skipped_:
            summary = summary[:-1] + "; " + "; ".join(self.skipped_) + "."
        if self.factors:
            f_metrics, tables["factors"], clause = self._factor_analysis(
                X, y, {k: [run[2] for run in runs]})
            metrics.update(f_metrics)
            summary = summary[:-1] + f"; {clause}."
        # the constructor's parameters are added by fit; n_clusters is the k used
        params = {"n_clusters": k, "n_clusters_requested": self.n_clusters,
                  "best_run_seed": best_seed,
                  "best_run_inertia": inertia}
        return ProbeResult(probe=self.name, summary=summary, metrics=metrics, tables=tables,
                           plots=plots, params=params)
