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

    from embedforensics.probes.pca import eta_squared

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
