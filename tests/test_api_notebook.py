"""The notebook side of the Python API (issue 21): names a notebook can find, a recipe given
as a dict, short reprs, the summary table as HTML, metrics with their interval, a pandas
frame and matplotlib figures."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

import embedforensics as ef
from embedforensics.results import Metric, MetricValue


def test_dir_lists_the_entry_points_without_importing_them():
    code = ("import sys, embedforensics as ef; names = dir(ef); "
            "print(names); print(sorted(m for m in ('torch', 'sklearn', 'pandas') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    for name in ("run", "compare", "embed", "load_recipe", "UserError", "train_heads",
                 "finetune"):
        assert repr(name) in out[0]
    assert "'Any'" not in out[0] and "'annotations'" not in out[0]
    assert out[1] == "[]"


def test_metric_value_is_a_float_that_carries_its_interval():
    m = Metric(value=0.9, n=20, ci=(0.7, 0.97), ci_level=0.95, method="Wilson")
    v = MetricValue(m, name="accuracy", probe="linear")
    assert v == 0.9 and isinstance(v, float) and v + 0.1 == pytest.approx(1.0)
    assert v.ci == (0.7, 0.97) and v.interval == v.ci and v.n == 20 and v.method == "Wilson"
    assert repr(v) == "<linear.accuracy = 0.9, 95% CI 0.7–0.97, n=20; Wilson>"
    back = pickle.loads(pickle.dumps(v))
    assert back == v and back.ci == v.ci and back.name == "accuracy"
    with pytest.raises(ValueError):
        MetricValue(Metric(value=None, n=0))


@pytest.fixture
def dict_result(write_recipe, tmp_path, tiny_bert):
    from tests.conftest import TEXTS_A, TEXTS_B

    recipe = {"version": 1, "name": "notebook", "model": {"id": str(tiny_bert)},
              "sources": [{"label": "animals", "texts": TEXTS_A},
                          {"label": "finance", "texts": TEXTS_B}],
              "probes": ["pca", {"name": "lda", "n_folds": 2}]}
    return ef.run(recipe, output=tmp_path / "nb", progress=False)


def test_run_takes_a_dict_and_shows_itself_briefly(dict_result, tmp_path):
    r = dict_result
    assert r.output_dir == tmp_path / "nb" and (tmp_path / "nb" / "report.html").is_file()
    text = repr(r)
    assert text.startswith("<RunResults 'notebook': 20 rows, 2 labels, 2 results (pca, lda)")
    assert len(text) < 300 and "array" not in text
    html = r._repr_html_()
    assert "<table id=ef-summary" in html and "headline metric" in html
    assert "lda" in html and "<script" not in html
    assert "Small sample" in r.verdict  # 10 rows a label: the caveat leads
    assert str(r).startswith(r.verdict)


def test_metrics_frame_and_figures(dict_result):
    r = dict_result
    acc = r.metric("lda", "accuracy")
    assert isinstance(acc, MetricValue) and 0 <= acc <= 1
    assert acc.ci is not None and acc.ci[0] <= acc <= acc.ci[1] and acc.n == 20
    assert acc.method
    assert set(r.metrics("lda")) >= {"accuracy"}
    with pytest.raises(KeyError, match="no analysis 'nope'"):
        r.analysis("nope")
    frame = r.to_frame()
    assert list(frame.columns[:4]) == ["analysis", "layer", "metric", "value"]
    row = frame[(frame.analysis == "lda") & (frame.metric == "accuracy")].iloc[0]
    assert row.value == pytest.approx(float(acc)) and row.ci_low == acc.ci[0]
    assert bool(row.headline) and row.n == 20
    from matplotlib.figure import Figure

    figures = r.figures("lda")
    assert figures and all(isinstance(f, Figure) for f in figures)
    assert isinstance(r.figure("pca"), Figure)


def test_loaded_recipe_with_overrides_applies_them(write_recipe):
    from embedforensics.runner import as_recipe

    loaded = ef.load_recipe(write_recipe())
    again = as_recipe(loaded, ["sources[0].limit=3"])
    assert again.recipe.sources[0].limit == 3 and again.path == loaded.path
    assert as_recipe(loaded) is loaded
    with pytest.raises(TypeError, match="YAML path, a dict"):
        as_recipe(42)  # type: ignore[arg-type]


def test_compare_results_have_the_same_notebook_view(write_recipe, tmp_path):
    from tests.compare.test_workflow import _recipe

    recipe = _recipe(write_recipe, tmp_path)
    assert len(ef.train_heads(recipe, progress=False)) == 14
    r = ef.compare(ef.load_recipe(recipe), output=tmp_path / "cmp", progress=False)
    assert repr(r).startswith("<RunResults 'tiny': 140 rows, 2 labels, 2 results "
                              "(compare-same, compare-noisy)")
    assert "compare-noisy" in r._repr_html_()
    churn = r.metric("compare-noisy", "churn_vs_majority")
    assert churn.n == 56 and churn.method
    frame = r.to_frame()
    assert set(frame.analysis) == {"compare-same", "compare-noisy"}
    assert len(r.figures("compare-same")) == 2
