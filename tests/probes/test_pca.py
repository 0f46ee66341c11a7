"""PCAProbe: explained variance equals an SVD computed by hand; plots and tables are right."""

from __future__ import annotations

import numpy as np
import pytest

from embedforensics.probes.base import ProbeParameterError
from embedforensics.probes.pca import PCAProbe


def svd_ratios(X: np.ndarray) -> np.ndarray:
    """Explained-variance ratios from numpy's SVD of the centred data, in float64."""
    Xc = X.astype(np.float64) - X.astype(np.float64).mean(axis=0)
    s = np.linalg.svd(Xc, compute_uv=False)
    return s**2 / np.sum(s**2)


def spectrum_data(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Gaussian data with a decaying spectrum (distinct, well-separated variances)."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, d)) * (0.9 ** np.arange(d))).astype(np.float32)


@pytest.mark.parametrize(("n", "d", "k", "solver"), [
    (150, 20, 5, "full"),
    (1000, 600, 10, "randomized"),
    (3000, 40, 10, "covariance_eigh"),
])
def test_ratios_equal_numpy_svd(n: int, d: int, k: int, solver: str) -> None:
    X = spectrum_data(n, d)
    y = np.array(["a", "b"])[np.arange(n) % 2]
    result = PCAProbe(n_components=k).fit(X, y).result_
    assert result.params["svd_solver"] == solver  # the route "auto" picked for this shape
    want = svd_ratios(X)[:k]
    got = np.array([row[1] for row in result.tables["explained_variance"]["rows"]])
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(result.plots[0].data["y"], want, atol=1e-5)
    assert result.metrics["explained_variance_pc1"].value == pytest.approx(want[0], abs=1e-5)
    assert result.metrics["explained_variance_cumulative"].value == pytest.approx(
        want.sum(), abs=1e-5)


def test_n_components_is_clipped_and_recorded() -> None:
    X = spectrum_data(6, 3)
    result = PCAProbe(n_components=10).fit(X, np.array(["a"] * 6)).result_
    assert result.params["n_components"] == 3
    assert result.params["n_components_requested"] == 10
    assert result.metrics["explained_variance_cumulative"].value == pytest.approx(1.0)
    assert result.plots[0].data["x"] == ["PC1", "PC2", "PC3"]


def test_one_dimensional_data_still_plots() -> None:
    X = np.arange(10, dtype=np.float32)[:, None]
    result = PCAProbe().fit(X, np.array(["a", "b"] * 5)).result_
    assert result.metrics["explained_variance_pc1"].value == pytest.approx(1.0)
    assert result.plots[1].data["y"] == [0.0] * 10


def test_label_means_and_scatter_recover_a_shift_along_pc1() -> None:
    rng = np.random.default_rng(1)
    y = np.repeat(np.array(["left", "right", "tiny"]), [3000, 1000, 20])
    X = rng.normal(scale=0.5, size=(len(y), 8))
    X[y == "left", 0] -= 5.0
    X[y == "right", 0] += 5.0
    result = PCAProbe(max_points=500, seed=3).fit(X.astype(np.float32), y).result_

    means = {row[0]: row for row in result.tables["label_means"]["rows"]}
    assert result.tables["label_means"]["columns"][:3] == ["label", "n", "pc1_mean"]
    assert means["left"][1] == 3000 and means["tiny"][1] == 20
    # PC1 is the shift axis: the two big labels sit about 10 apart on it, up to PCA's sign.
    assert abs(means["right"][2] - means["left"][2]) == pytest.approx(10.0, abs=0.1)
    assert means["left"][3] == pytest.approx(0.5, abs=0.05)  # sd on PC1 = the noise

    scatter = result.plots[1]
    labels = np.array(scatter.data["labels"])
    assert len(labels) == 500
    assert {lab: int(np.sum(labels == lab)) for lab in means} == {
        "left": 373, "right": 124, "tiny": 3}  # proportional, rare label kept
    assert "500 of 4020" in scatter.title


def test_pc1_examples_come_from_both_ends() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat(np.array(["neg", "pos"]), 50)
    X = rng.normal(scale=0.1, size=(100, 4))
    X[:, 0] += np.where(y == "neg", -3.0, 3.0)
    texts = [("long " * 100) if lab == "neg" else f"short {i}" for i, lab in enumerate(y)]
    ids = [f"id{i}" for i in range(100)]
    result = PCAProbe().fit(X.astype(np.float32), y, texts=texts, ids=ids).result_
    table = result.tables["pc1_examples"]
    assert table["columns"] == ["end", "pc1", "label", "id", "text"]
    rows = table["rows"]
    assert len(rows) == 10
    low = [r for r in rows if r[0] == "low PC1"]
    high = [r for r in rows if r[0] == "high PC1"]
    assert len({r[2] for r in low}) == len({r[2] for r in high}) == 1
    assert {low[0][2], high[0][2]} == {"neg", "pos"}
    assert all(len(r[4]) <= 200 for r in rows)
    assert [r[1] for r in low] == sorted(r[1] for r in low)
    assert all(r[3].startswith("id") for r in rows)
    assert "pc1_examples" not in PCAProbe().fit(X.astype(np.float32), y).result_.tables


def test_parameter_and_data_errors() -> None:
    X = spectrum_data(20, 5)
    y = np.array(["a"] * 20)
    with pytest.raises(ProbeParameterError, match=r"'n_components' parameter of PCAProbe must "
                                                  r"be an int in \[1, inf\)\. Got 0 instead"):
        PCAProbe(n_components=0).fit(X, y)
    with pytest.raises(ProbeParameterError, match="'max_points'"):
        PCAProbe(max_points=0).fit(X, y)
    with pytest.raises(ProbeParameterError, match="zero variance"):
        PCAProbe().fit(np.ones((5, 3), dtype=np.float32), y[:5])
    with pytest.raises(ProbeParameterError, match="at least 2 rows"):
        PCAProbe().fit(X[:1], y[:1])


def test_components_are_explained_by_labels_and_metadata() -> None:
    from scipy.stats import f_oneway, spearmanr

    from embedforensics.probes.pca import eta_squared_anova as eta_squared

    rng = np.random.default_rng(0)
    n = 200
    year = rng.integers(1990, 2020, n)
    party = rng.choice(["x", "y"], n)
    y = np.repeat(np.array(["a", "b"]), n // 2)
    X = rng.normal(size=(n, 6)) * 0.3
    X[:, 0] += 4.0 * (y == "b")                  # PC1: the label
    X[:, 1] += 0.15 * (year - year.mean())       # PC2: the year (numeric)
    texts = [f"text {i}" for i in range(n)]
    meta = {"year": year.tolist(), "party": party.tolist(),
            "row_id": [f"id{i}" for i in range(n)],  # > MAX_CATEGORIES values: skipped
            "sparse": [None] * n}
    result = PCAProbe(n_components=3, n_interpret=2).fit(X, y, texts=texts,
                                                         meta=meta).result_
    rows = result.tables["pc_associations"]["rows"]
    assert {r[1] for r in rows} == {"label", "text length (chars)", "meta: year",
                                    "meta: party"}
    first = {r[0]: r for r in rows[::-1]}  # strongest row per component (rows sorted)
    assert first["PC1"][1] == "label" and first["PC1"][3] > 0.9
    assert first["PC2"][1] == "meta: year" and abs(first["PC2"][3]) > 0.8
    scores = result.to_dict()  # JSON-ready
    assert scores["tables"]["pc_examples"]["rows"][0][:2] == ["PC1", "low"]
    assert "PC1 is most associated with label" in result.summary
    # the statistics against scipy on one row
    pc1 = PCAProbe(n_components=3).fit(X, y).pca_.transform(X)[:, 0]
    label_row = next(r for r in rows if r[0] == "PC1" and r[1] == "label")
    eta2, p = eta_squared(pc1, y)
    assert label_row[3] == pytest.approx(eta2)
    assert p == pytest.approx(f_oneway(pc1[y == "a"], pc1[y == "b"]).pvalue)
    year_row = next(r for r in rows if r[0] == "PC1" and r[1] == "meta: year")
    assert year_row[3] == pytest.approx(spearmanr(pc1, year).statistic)
    assert eta_squared(np.array([1.0, 2, 3, 4]), np.array(["u", "u", "v", "v"]))[0] == \
        pytest.approx(0.8)  # between 4 * 1.0 of total 5.0


def test_no_interpretation_when_asked_for_none() -> None:
    X = np.random.default_rng(1).normal(size=(30, 4))
    y = np.array(["a", "b"] * 15)
    result = PCAProbe(n_components=2, n_interpret=0).fit(X, y).result_
    assert "pc_associations" not in result.tables


# ---- factors of a crossed design and directions between groups ----------------------------
def crossed_labels(n_per_cell: int, languages=("de", "es", "it"), topics=("comp", "law")
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Balanced language x topic design: labels 'de/comp', ... and the two factors."""
    lang = np.repeat(np.array(languages), n_per_cell * len(topics))
    topic = np.tile(np.repeat(np.array(topics), n_per_cell), len(languages))
    return np.char.add(np.char.add(lang, "/"), topic), lang, topic


def test_public_eta_squared_is_a_float_and_anova_adds_the_p_value() -> None:
    from scipy.stats import f_oneway

    from embedforensics.probes.pca import eta_squared, eta_squared_anova

    g = np.array(["a", "a", "b", "b", "b"])
    v = np.array([1.0, 2.0, 4.0, 5.0, 6.0])
    assert isinstance(eta_squared(v, g), float)
    eta2, p = eta_squared_anova(v, g)
    assert eta2 == eta_squared(v, g)
    assert p == pytest.approx(f_oneway(v[:2], v[2:]).pvalue)
    assert eta_squared_anova(np.ones(5), g) == (0.0, 1.0)


def test_a_component_that_is_exactly_one_factor() -> None:
    y, lang, topic = crossed_labels(20)
    rng = np.random.default_rng(0)
    X = rng.normal(scale=0.01, size=(len(y), 5))
    X[:, 0] = 10.0 * np.searchsorted(["de", "es", "it"], lang)  # no noise: PC1 = language
    X[:, 1] += 1.0 * (topic == "law")  # PC2 mostly topic
    result = PCAProbe(n_components=3, factors=["language", "topic"],
                      n_permutations=199).fit(X, y).result_
    rows = {(r[0], r[2]): r for r in result.tables["factor_eta_squared"]["rows"]}
    assert result.tables["factor_eta_squared"]["columns"][4:7] == [
        "eta squared", "p (permutation)", "p (family-wise over components)"]
    assert rows["PC1", "language"][4] == pytest.approx(1.0, abs=1e-6)
    assert rows["PC1", "topic"][4] == pytest.approx(0.0, abs=1e-6)  # balanced: no topic at all
    assert rows["PC1", "language"][5] == rows["PC1", "language"][6] == 1 / 200
    assert rows["PC1", "topic"][5] > 0.5
    assert rows["PC2", "topic"][4] > 0.95 and rows["PC2", "language"][4] < 0.05
    assert rows["PC1", "language"][3] == 3 and rows["PC1", "topic"][3] == 2
    m = result.metrics
    assert m["factor_language_eta2"].value == pytest.approx(1.0, abs=1e-6)
    assert "PC1" in m["factor_language_eta2"].description
    assert m["factor_topic_eta2"].value > 0.95 and "PC2" in m["factor_topic_eta2"].description
    assert m["factor_language_p"].value == m["factor_topic_p"].value == 1 / 200
    assert m["factor_language_p"].n == len(y)
    assert "language is carried most by PC1" in result.summary
    assert "topic is carried most by PC2" in result.summary
    plot = result.plots[-1]
    assert plot.kind == "matrix" and plot.data["col_labels"] == ["language", "topic"]
    assert np.asarray(plot.data["values"]).shape == (3, 2)
    assert result.params["factors"] == ["language", "topic"]


def test_permutation_eta_squared_equals_a_loop_over_the_same_shuffles() -> None:
    from embedforensics.probes.pca import eta_squared, permutation_eta_squared

    rng = np.random.default_rng(4)
    scores = rng.normal(size=(30, 3))
    codes = rng.integers(0, 3, 30)
    scores[:, 1] += codes  # one column with a real effect
    B = 49
    observed, p, p_max = permutation_eta_squared(scores, codes, B, seed=11)
    assert observed == pytest.approx([eta_squared(scores[:, j], codes) for j in range(3)])
    # The same shuffles by hand: rows in shuffled order take the sorted levels.
    order = np.argsort(codes, kind="stable")
    shuffled = np.random.default_rng(11).permuted(np.tile(order, (B, 1)), axis=1)
    null = np.array([[eta_squared(scores[rows, j], codes[order]) for j in range(3)]
                     for rows in shuffled])
    assert p == pytest.approx((1 + (null >= observed - 1e-10).sum(axis=0)) / (B + 1))
    assert p_max == pytest.approx(
        (1 + (null.max(axis=1)[:, None] >= observed - 1e-10).sum(axis=0)) / (B + 1))
    assert p[1] == 1 / (B + 1) and np.all(p_max >= p)


def test_factor_p_values_are_calibrated_under_the_null() -> None:
    """No factor effect at all: over many data sets the permutation p of PC1 is uniform."""
    from scipy.stats import kstest

    y, _, _ = crossed_labels(8)
    p_pc1, p_family = [], []
    for seed in range(200):
        X = np.random.default_rng(seed).normal(size=(len(y), 4))
        result = PCAProbe(n_components=3, n_interpret=0, factors=["language", "topic"],
                          n_permutations=99, seed=seed).fit(X, y).result_
        rows = result.tables["factor_eta_squared"]["rows"]
        p_pc1.append(next(r[5] for r in rows if r[0] == "PC1" and r[2] == "language"))
        p_family.append(result.metrics["factor_topic_p"].value)
    p_pc1, p_family = np.array(p_pc1), np.array(p_family)
    # p is on the grid k / 100, so P(p <= 0.05) = 0.05 exactly under the null; 200 draws
    # put the count in [3, 19] with probability > 0.99.
    assert 3 <= np.sum(p_pc1 <= 0.05) <= 19
    assert 3 <= np.sum(p_family <= 0.05) <= 19
    assert kstest(p_pc1, "uniform").pvalue > 0.01
    assert kstest(p_family, "uniform").pvalue > 0.01


def test_labels_that_do_not_split_into_the_factors_are_rejected() -> None:
    X = spectrum_data(40, 5)
    y = np.array(["de/comp", "de", "es/comp", "es/law"] * 10)
    with pytest.raises(ProbeParameterError, match=r"factors \['language', 'topic'\] need every "
                                                  r"label to split at '/' into 2 non-empty "
                                                  r"parts .*label 'de' has 1 part\."):
        PCAProbe(factors=["language", "topic"]).fit(X, y)
    with pytest.raises(ProbeParameterError, match="label 'de/comp' has 2 parts"):
        PCAProbe(factors=["a", "b", "c"]).check_labels(["de/comp", "es/law"])
    with pytest.raises(ProbeParameterError, match="factor 'topic' has a single level"):
        PCAProbe(factors=["language", "topic"]).check_labels(["de/comp", "es/comp"])
    for bad in ("language", [], ["language", "language"], ["language", 3], ["two words"]):
        with pytest.raises(ProbeParameterError, match="'factors' parameter of PCAProbe"):
            PCAProbe(factors=bad).fit(X, np.array(["a/b", "c/d"] * 20))


def test_direction_positions_on_constructed_data() -> None:
    rng = np.random.default_rng(2)
    d = 8
    centre = {"en": np.zeros(d), "es": np.r_[4.0, np.zeros(d - 1)]}
    centre["en-to-es"] = 0.75 * centre["es"]  # three quarters of the way
    centre["far"] = np.r_[2.0, 5.0, np.zeros(d - 2)]  # half way, far off the axis
    y = np.repeat(np.array(list(centre)), [100, 120, 100, 80])
    X = np.stack([centre[g] for g in y]) + rng.normal(scale=0.3, size=(len(y), d))
    result = PCAProbe(directions=["en -> es: en-to-es, far"], n_bootstrap=400,
                      seed=1).fit(X, y).result_
    m = result.metrics
    pos = m["direction_en_to_es_position_en_to_es"]
    assert pos.value == pytest.approx(0.75, abs=0.02)
    assert pos.ci[0] < 0.75 < pos.ci[1] and pos.ci[1] - pos.ci[0] < 0.05
    assert pos.n == 320 and pos.ci_level == 0.95 and "bootstrap" in pos.method
    far = m["direction_en_to_es_position_far"]
    assert far.value == pytest.approx(0.5, abs=0.03) and far.ci[0] < 0.5 < far.ci[1]
    assert m["direction_en_to_es_length"].value == pytest.approx(4.0, abs=0.1)
    # Exact value on the data, by hand.
    mean = {g: X[y == g].mean(axis=0) for g in centre}
    axis = mean["es"] - mean["en"]
    assert pos.value == pytest.approx((mean["en-to-es"] - mean["en"]) @ axis / (axis @ axis))
    table = result.tables["directions"]
    rows = {r[1]: r for r in table["rows"]}
    assert [rows[g][3] for g in ("en", "es")] == [0.0, 1.0]  # by construction
    assert rows["en"][4] is None and rows["far"][2] == 80
    assert rows["far"][7] == pytest.approx(np.linalg.norm(mean["far"] - mean["es"]))
    assert rows["en"][6] == pytest.approx(0.3 / 4.0, rel=0.2)  # sd over rows on the axis
    assert f"on en -> es, en-to-es sits at {pos.value:.2f} (95% CI" in result.summary
    assert result.plots[-1].kind == "bar" and result.plots[-1].data["x"] == [
        "en", "es", "en-to-es", "far"]


def test_bad_directions_are_rejected_before_and_during_fit() -> None:
    for bad in (["en"], ["en->en"], ["en->es: a,,b"], ["->es"], "en->es"):
        with pytest.raises(ProbeParameterError, match="'directions' parameter of PCAProbe"):
            PCAProbe(directions=bad)._check_params()  # what recipe validation calls
    X = spectrum_data(20, 4)
    y = np.array(["english", "spanish"] * 10)
    with pytest.raises(ProbeParameterError, match=r"names label 'spansh'.*did you mean "
                                                  r"'spanish'.*labels: english, spanish\."):
        PCAProbe(directions=["english->spansh"]).fit(X, y)
