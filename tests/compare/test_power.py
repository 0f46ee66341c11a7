"""Small reference ensembles: a method that cannot reject is never reported as "0 % flagged"."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from embedforensics.cli import main
from embedforensics.compare.checkpoints import CheckpointData, Scored
from embedforensics.compare.outputs_comparator import OutputsComparator
from embedforensics.compare.power import assess, loo_min_models
from tests.compare.test_workflow import _recipe


def test_assess_known_answers():
    # asymptotic: c = 1.358 at 0.05; the largest statistic is sqrt(n·Mn/(n + Mn))
    assert assess("asymptotic", n_reference=4, n_test=10, level=0.05).can_reject
    tiny = assess("asymptotic", n_reference=2, n_test=2, level=0.05)
    assert not tiny.can_reject and math.isclose(tiny.max_statistic, math.sqrt(4 / 3))
    # leave-one-out: the smallest p-value is 1/(M + 1)
    assert loo_min_models(0.05) == 19 and loo_min_models(0.1) == 9
    assert assess("leave-one-out", n_reference=18, n_test=100, level=0.05).can_reject is False
    assert assess("leave-one-out", n_reference=19, n_test=100, level=0.05).can_reject is None
    # the measured case: a bootstrap critical value of 6.67 with M = 4, n = 10
    boot = assess("bootstrap", n_reference=4, n_test=10, level=0.05, critical_value=6.67)
    assert boot.can_reject is False and "6.67" in boot.reason
    assert assess("bootstrap", n_reference=4, n_test=10, level=0.05,
                  critical_value=2.0).can_reject


def _scored(name: str, logits: np.ndarray) -> Scored:
    scorer = SimpleNamespace(config={"seed": 0}, fingerprint=name, kind="head")
    return Scored(Path("/models") / name, scorer, logits, cached=False)


def _inputs(M: int, n: int, n_cand: int = 2, seed: int = 0) -> CheckpointData:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2

    def logits() -> np.ndarray:
        z = rng.normal(size=(n, 2))
        z[np.arange(n), y] += 1.0
        return z

    ctx = SimpleNamespace(recipe=SimpleNamespace(seed=0), file_of=lambda key: "r.yaml")
    prepared = SimpleNamespace(y=y, test_idx=np.arange(n))
    return CheckpointData(ctx, prepared, [_scored(f"ref/seed-{i}", logits()) for i in range(M)],
                          {"cand": [_scored(f"cand/seed-{i}", logits()) for i in range(n_cand)]})


def _run(inputs: CheckpointData, methods: list[str]):
    params = OutputsComparator.validate_params({"methods": methods, "n_bootstrap": 50})
    return OutputsComparator(params).run(inputs)


def test_an_impotent_method_is_not_reported_as_flagging_nothing():
    outcome = _run(_inputs(M=4, n=10), ["asymptotic", "leave-one-out"])
    (result,) = outcome.results
    m = result.metrics
    assert m["flagged_leave-one-out"].value is None and m["alpha_hat_leave-one-out"].value is None
    assert "cannot reject" in m["flagged_leave-one-out"].description
    assert m["flagged_asymptotic"].value is not None
    # the headline leads with the method that can reject and names the one that cannot
    assert result.summary.startswith("cand: median α̂") and "(asymptotic;" in result.summary
    assert "leave-one-out cannot reject here" in result.summary
    assert any("leave-one-out needs at least 19 reference models" in w
               for w in outcome.warnings)
    power = outcome.provenance["power"]
    assert power["asymptotic"]["can_reject"] and not power["leave-one-out"]["can_reject"]


def test_when_no_method_can_reject_the_headline_says_so():
    outcome = _run(_inputs(M=2, n=2), ["asymptotic", "leave-one-out"])
    (result,) = outcome.results
    assert result.summary.startswith("cand: no chosen method can reject at level 0.05 with 2 "
                                     "reference models and 2 test points")
    assert "% of" not in result.summary and "flagged" not in result.summary
    assert all(result.metrics[f"flagged_{m}"].value is None
               for m in ("asymptotic", "leave-one-out"))
    rows = result.tables["critical_values"]["rows"]
    assert [r[-1] for r in rows] == ["no", "no"]
    assert len(outcome.warnings) == 2


@pytest.mark.parametrize("seeds,warned", [(4, True), (19, False)])
def test_validate_warns_about_a_too_small_reference_group(write_recipe, tmp_path, capsys,
                                                          seeds, warned):
    recipe = _recipe(write_recipe, tmp_path, heads={"groups": [
        {"name": "ref", "seeds": seeds}, {"name": "same", "seeds": 2, "seed_offset": 100}]},
        compare={"reference": "ref", "candidates": {"same": "same"},
                 "methods": ["asymptotic", "leave-one-out"]})
    assert main(["validate", str(recipe)]) == 0
    err = capsys.readouterr().err
    assert ("warning: compare.methods: leave-one-out needs at least 19" in err) == warned
