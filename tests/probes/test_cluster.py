"""ClusterProbe: k-means recovers well-separated labels, the permuted null sits at chance."""

from __future__ import annotations

import numpy as np
import pytest

from embedforensics.probes.base import ProbeParameterError
from embedforensics.probes.cluster import ClusterProbe, purity
from tests.probes.data import gaussians


def blobs(n_per, d, shift, labels=("a", "b", "c"), seed=0):
    """Three labelled Gaussians by default."""
    return gaussians(n_per, d, shift, labels, seed)



def test_purity_known_value() -> None:
    labels = np.array(["a", "a", "a", "b", "b", "b"])
    clusters = np.array([0, 0, 1, 1, 1, 1])
    assert purity(labels, clusters) == pytest.approx(5 / 6)  # 2 of cluster 0 + 3 of cluster 1


def test_well_separated_labels_are_recovered() -> None:
    X, y = blobs([60, 50, 40], 8, shift=12.0)
    result = ClusterProbe(n_seeds=4).fit(X, y).result_
    m = result.metrics
    assert m["ari"].value == pytest.approx(1.0, abs=1e-9)
    assert m["nmi"].value == pytest.approx(1.0, abs=1e-9)
    assert m["purity"].value == 1.0
    assert m["ari"].std == pytest.approx(0.0, abs=1e-9) and m["ari"].range == (1.0, 1.0)
    # The null: same clusterings against permuted labels.
    assert abs(m["ari_null"].value) < 0.05 and m["nmi_null"].value < 0.05
    assert m["purity_null"].value == pytest.approx(60 / 150, abs=0.08)  # near majority share
    assert "k=3" in result.summary and "n=150" in result.summary
    table = result.tables["contingency"]
    assert table["columns"] == ["label \\ cluster", "cluster 0", "cluster 1", "cluster 2"]
    counts = np.array([row[1:] for row in table["rows"]])
    assert [row[0] for row in table["rows"]] == ["a", "b", "c"]
    assert sorted(counts.max(axis=1).tolist()) == [40, 50, 60]
    assert counts.sum() == 150 and np.count_nonzero(counts) == 3
    assert result.plots[0].kind == "matrix" and result.plots[0].data["values"] == counts.tolist()
    assert len(result.tables["per_seed"]["rows"]) == 4
    assert result.params["n_clusters"] == 3 and result.params["n_clusters_requested"] is None


def test_spread_over_seeds_is_reported() -> None:
    # Overlapping blobs: k-means initialisations disagree, so the sd is positive.
    X, y = blobs(60, 4, shift=1.5, seed=2)
    result = ClusterProbe(n_seeds=6, seed=1).fit(X, y).result_
    per_seed = np.array([row[2] for row in result.tables["per_seed"]["rows"]])
    ari = result.metrics["ari"]
    assert ari.value == pytest.approx(per_seed.mean())
    assert ari.std == pytest.approx(per_seed.std(ddof=1))
    assert ari.range == (per_seed.min(), per_seed.max())
    assert "6 k-means seed(s)" in ari.method
    best = min(result.tables["per_seed"]["rows"], key=lambda row: row[1])
    assert result.params["best_run_seed"] == best[0]
    single = ClusterProbe(n_seeds=1).fit(X, y).result_.metrics["ari"]
    assert single.std is None and single.range[0] == single.range[1] == single.value


def test_identical_distributions_look_like_the_null() -> None:
    X, y = blobs(40, 5, shift=0.0, labels=("a", "b"), seed=5)
    m = ClusterProbe(seed=5).fit(X, y).result_.metrics
    assert abs(m["ari"].value) < 0.05 and abs(m["ari_null"].value) < 0.05
    assert m["purity"].value < 0.65


def test_explicit_n_clusters() -> None:
    X, y = blobs(30, 4, shift=8.0, labels=("a", "b"))
    result = ClusterProbe(n_clusters=4, n_seeds=2).fit(X, y).result_
    assert result.params["n_clusters"] == 4 and result.params["n_clusters_requested"] == 4
    assert len(result.tables["contingency"]["columns"]) == 5
    assert result.metrics["purity"].value == 1.0  # splitting a label keeps clusters pure


def test_parameter_validation() -> None:
    X, y = blobs(5, 3, shift=1.0, labels=("a", "b"))
    with pytest.raises(ProbeParameterError, match=r"'n_clusters' parameter of ClusterProbe must "
                                                  r"be an int in \[2, inf\) or None\. Got 1"):
        ClusterProbe(n_clusters=1).fit(X, y)
    with pytest.raises(ProbeParameterError, match=r"n_clusters is 11 but there are only 10 rows"):
        ClusterProbe(n_clusters=11).fit(X, y)
    with pytest.raises(ProbeParameterError, match=r"'n_seeds'.*Got 0 instead"):
        ClusterProbe(n_seeds=0).fit(X, y)


def test_all_methods_recover_well_separated_labels() -> None:
    X, y = blobs([60, 50, 40], 8, shift=12.0)
    result = ClusterProbe(n_seeds=3, min_cluster_size=10).fit(X, y).result_
    m = result.metrics
    for method in ("gmm", "agglomerative", "hdbscan"):
        assert m[f"{method}_ari"].value > 0.95, method
        assert abs(m[f"{method}_ari_null"].value) < 0.1, method
    assert m["agglomerative_ari"].std is None  # deterministic, no subsample: one run
    assert m["gmm_ari"].std is not None        # one run per seed
    assert m["hdbscan_clusters"].value == 3 and m["hdbscan_noise_share"].value < 0.1
    methods = [row[0] for row in result.tables["methods"]["rows"]]
    assert methods == ["kmeans", "gmm", "agglomerative", "hdbscan"]
    assert "other methods' ARI" in result.summary


def test_agglomerative_and_hdbscan_subsample_above_max_rows() -> None:
    X, y = blobs(40, 4, shift=10.0, labels=("a", "b"))
    result = ClusterProbe(n_seeds=3, max_rows=30, methods="agglomerative").fit(X, y).result_
    m = result.metrics["agglomerative_ari"]
    assert m.n == 30 and "subsamples of 30 rows" in m.method
    assert "gmm_ari" not in result.metrics and "hdbscan_ari" not in result.metrics
    only = ClusterProbe(n_seeds=2, methods="kmeans").fit(X, y).result_
    assert "methods" not in only.tables


# ---- factors of a crossed design ----------------------------------------------------------
def crossed(n_per_cell: int, language_shift: float, topic_shift: float, seed: int = 0
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Labels 'de/comp' ... (3 languages x 2 topics); language and topic move the embedding
    along their own axes by the given shifts."""
    rng = np.random.default_rng(seed)
    lang = np.repeat(np.array(["de", "es", "it"]), 2 * n_per_cell)
    topic = np.tile(np.repeat(np.array(["comp", "law"]), n_per_cell), 3)
    y = np.char.add(np.char.add(lang, "/"), topic)
    X = rng.normal(size=(len(y), 6))
    X[:, :3] += language_shift * np.eye(3)[np.searchsorted(["de", "es", "it"], lang)]
    X[:, 3] += topic_shift * (topic == "law")
    return X.astype(np.float32), y, lang, topic


def test_kmeans_recovers_one_factor_and_not_the_other() -> None:
    from sklearn.metrics import adjusted_rand_score

    X, y, lang, topic = crossed(40, language_shift=12.0, topic_shift=0.0)
    result = ClusterProbe(n_seeds=4, methods="kmeans",
                          factors=["language", "topic"]).fit(X, y).result_
    m = result.metrics
    assert m["factor_language_ari"].value == pytest.approx(1.0)
    assert m["factor_language_ari"].std == pytest.approx(0.0) and m["factor_language_ari"].n == 240
    assert abs(m["factor_topic_ari"].value) < 0.05  # no topic signal: chance
    for name in ("language", "topic"):
        assert abs(m[f"factor_{name}_ari_null"].value) < 0.05
        assert "4 k-means seed(s) (k=" in m[f"factor_{name}_ari_null"].method
    table = result.tables["factors"]
    assert table["columns"][:4] == ["k-means k", "k = levels of", "against", "ari mean"]
    rows = {(r[1], r[2]): r for r in table["rows"]}
    assert set(rows) == {(f, g) for f in ("language", "topic")
                         for g in ("language", "topic", "label")}
    assert rows["language", "language"][0] == 3 and rows["topic", "topic"][0] == 2
    assert rows["language", "label"][3] == pytest.approx(
        adjusted_rand_score(y, lang))  # three pure language clusters against six cells
    assert rows["language", "topic"][8] is None  # the shuffled null is per factor itself
    assert "language (k=3) 1.00 ± 0.00" in result.summary
    assert result.params["factors"] == ["language", "topic"]
    # the same seeds as the headline run: with k = 6 = the cells nothing changes there
    plain = ClusterProbe(n_seeds=4, methods="kmeans").fit(X, y).result_
    assert plain.metrics["ari"].value == m["ari"].value


def test_kmeans_recovers_the_topic_when_it_dominates() -> None:
    X, y, _, _ = crossed(40, language_shift=0.0, topic_shift=12.0, seed=3)
    m = ClusterProbe(n_seeds=3, methods="kmeans", factors=["language", "topic"]
                     ).fit(X, y).result_.metrics
    assert m["factor_topic_ari"].value == pytest.approx(1.0)
    assert abs(m["factor_language_ari"].value) < 0.05


def test_labels_that_do_not_split_into_the_factors_are_rejected() -> None:
    X, y, _, _ = crossed(10, 5.0, 5.0)
    y = y.astype(object)
    y[y == "it/law"] = "it"
    with pytest.raises(ProbeParameterError, match=r"ClusterProbe: factors \['language', "
                                                  r"'topic'\] need every label.*label 'it' "
                                                  r"has 1 part"):
        ClusterProbe(factors=["language", "topic"]).fit(X, y)
    with pytest.raises(ProbeParameterError, match="'factors' parameter of ClusterProbe"):
        ClusterProbe(factors="language/topic").fit(X, y)
