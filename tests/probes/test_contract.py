"""Every probe honours the Probe contract: registry names, sklearn estimator API,
parameter validation, determinism, plot/table formats and JSON-ready results."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.base import clone

from embedforensics.probes.base import Probe, ProbeParameterError
from embedforensics.probes.baselines import SurfaceBaselineProbe
from embedforensics.probes.cluster import ClusterProbe
from embedforensics.probes.lda import LDAProbe
from embedforensics.probes.learning_curve import LearningCurveProbe
from embedforensics.probes.linear import LinearProbe
from embedforensics.probes.pca import PCAProbe
from embedforensics.probes.two_sample import TwoSampleProbe
from embedforensics.registry import PROBES

# Small settings keep the whole module fast; defaults are exercised in the per-probe tests.
FAST = {
    "pca": (PCAProbe, {"n_components": 3}),
    "lda": (LDAProbe, {"n_folds": 3, "n_permutations": 9}),
    "cluster": (ClusterProbe, {"n_seeds": 3}),
    "linear": (LinearProbe, {"n_folds": 3, "n_bootstrap": 50, "n_permutations": 9}),
    "learning_curve": (LearningCurveProbe, {"n_sizes": 3, "n_repeats": 3}),
    "two_sample": (TwoSampleProbe, {"n_permutations": 19, "n_folds": 3}),
    "baselines": (SurfaceBaselineProbe, {"n_folds": 3}),
}
NEEDS_TEXTS = {"baselines"}
NAMES = sorted(FAST)


def make_data(seed: int = 0, n_per: int = 30, d: int = 6, labels: tuple = ("a", "b", "c"),
              shift: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.array(labels), n_per)
    X = rng.normal(size=(len(y), d))
    X[:, 0] += shift * np.searchsorted(labels, y)
    return X.astype(np.float32), y


def make(name: str, **overrides: object) -> Probe:
    cls, params = FAST[name]
    return cls(**{**params, **overrides})


def test_every_registered_probe_is_covered_here() -> None:
    assert set(PROBES.names()) == set(FAST)


@pytest.mark.parametrize("name", NAMES)
def test_registry_points_at_the_class(name: str) -> None:
    cls = PROBES.get(name)
    assert cls is FAST[name][0]
    assert cls.name == name
    assert cls.description and "\n" not in cls.description
    assert cls.min_labels == (1 if name == "pca" else 2)


@pytest.mark.parametrize("name", NAMES)
def test_sklearn_estimator_api(name: str) -> None:
    probe = make(name, seed=7)
    params = probe.get_params()
    assert set(params) == set(type(probe)._param_specs)  # every parameter is validated
    assert "seed" in params and params["seed"] == 7
    twin = clone(probe)
    assert twin is not probe and twin.get_params() == params
    assert not hasattr(twin, "result_")
    twin.set_params(seed=3)
    assert twin.seed == 3 and probe.seed == 7
    assert type(probe).__name__ in repr(probe)
    with pytest.raises(TypeError):
        type(probe)(3)  # keyword-only


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [-1, 1.5, "0", True])
def test_seed_validation_names_the_parameter(name: str, bad: object) -> None:
    X, y = make_data()
    owner = type(make(name)).__name__
    with pytest.raises(ProbeParameterError, match=rf"'seed' parameter of {owner} must be an int"):
        make(name, seed=bad).fit(X, y)


@pytest.mark.parametrize("name", ["lda", "cluster", "linear"])
def test_one_label_where_two_are_needed(name: str) -> None:
    X, y = make_data(labels=("only",))
    with pytest.raises(ProbeParameterError, match=rf"probe '{name}' needs at least 2 distinct "
                                                  r"labels; the data has 1 \(only\)"):
        make(name).fit(X, y)


def test_pca_accepts_one_label() -> None:
    X, y = make_data(labels=("only",))
    assert make("pca").fit(X, y).result_.metrics["explained_variance_pc1"].value > 0


@pytest.mark.parametrize("name", NAMES)
def test_input_shape_errors(name: str) -> None:
    X, y = make_data()
    with pytest.raises(ProbeParameterError, match="2-D"):
        make(name).fit(X[:, 0], y)
    with pytest.raises(ProbeParameterError, match="rows but y has"):
        make(name).fit(X, y[:-1])


@pytest.mark.parametrize("name", NAMES)
def test_result_is_deterministic_and_json_ready(name: str) -> None:
    X, y = make_data()
    texts = [f"text number {i}" for i in range(len(y))]
    ids = [f"row-{i}" for i in range(len(y))]
    first = make(name, seed=5).fit(X, y, ids=ids, texts=texts).result_.to_dict()
    second = make(name, seed=5).fit(X, y, ids=ids, texts=texts).result_.to_dict()
    assert first == second
    text = json.dumps(first, allow_nan=False)  # strict JSON: no NaN/inf sneaks through
    assert json.loads(text) == first
    # Without context the probe still works (except those that need the texts).
    if name not in NEEDS_TEXTS:
        assert make(name, seed=5).fit(X, y).result_.to_dict()["metrics"] == first["metrics"]


@pytest.mark.parametrize("name", NAMES)
def test_result_shape(name: str) -> None:
    X, y = make_data()
    texts = [f"text {'x' * (i % 7)}" for i in range(len(y))]
    result = make(name).fit(X, y, texts=texts).result_
    assert result.probe == name
    s = result.summary
    assert s.endswith(".") and "n=" in s and s.count(". ") == 0  # one sentence
    assert result.metrics
    for key, metric in result.metrics.items():
        assert key == key.lower() and " " not in key
        assert 0 < metric.n <= len(y)  # the rows behind the number (a subset for some)
        assert np.isfinite(metric.value)
        if metric.ci is not None:
            assert metric.ci_level == 0.95
            assert metric.ci[0] <= metric.value + 1e-12 <= metric.ci[1] + 2e-12
        assert metric.method and metric.description
    for table in result.tables.values():
        assert all(len(row) == len(table["columns"]) for row in table["rows"])
    for plot in result.plots:
        data = plot.data
        if plot.kind == "scatter":
            assert len(data["x"]) == len(data["y"]) == len(data["labels"]) > 0
            assert set(data["labels"]) <= set(y)
        elif plot.kind == "bar":
            assert len(data["x"]) == len(data["y"])
        elif plot.kind == "matrix":
            values = np.asarray(data["values"])
            assert values.shape == (len(data["row_labels"]), len(data["col_labels"]))
        elif plot.kind == "lines":
            assert all(len(s["x"]) == len(s["y"] if "y" in s else s["low"])
                       for s in data["series"])
        else:  # pragma: no cover - a new kind must be added to the report first
            pytest.fail(f"unknown plot kind {plot.kind}")
        assert plot.title


@pytest.mark.parametrize("name", ["pca", "lda", "cluster", "linear"])
def test_non_finite_embeddings_are_rejected_clearly(name):
    from embedforensics.probes.base import ProbeParameterError
    from embedforensics.registry import PROBES

    X = np.random.default_rng(0).normal(size=(40, 3))
    X[7, 1] = np.nan
    y = np.array(["a", "b"] * 20)
    with pytest.raises(ProbeParameterError, match="NaN or infinite values .first at row 7"):
        PROBES.get(name)().fit(X, y)
