"""Representational similarity of two embedding models on one recipe's texts."""

from __future__ import annotations

import numpy as np
import pytest

from embedforensics.compare.model_similarity import model_similarity, similarity_matrix
from tests.compare.test_workflow import ANIMAL, FINANCE, _texts
from tests.conftest import build_tiny_bert


def test_similarity_matrix_is_symmetric_with_known_answers():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 8))
    Q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    sim = similarity_matrix([X, 3.0 * X @ Q, rng.normal(size=(60, 5))], ["a", "rot", "noise"])
    for m in ("linear_cka", "debiased_cka", "procrustes", "svcca"):
        M = sim.matrix(m)
        np.testing.assert_allclose(M, M.T)
        assert M[0, 1] == pytest.approx(1.0, abs=1e-9)  # rotation and scaling
    assert abs(sim.matrix("debiased_cka")[0, 2]) < 0.2  # independent
    lo, hi = sim.ci[(0, 2)]
    assert lo <= sim.matrix("debiased_cka")[0, 2] <= hi
    rows = sim.to_result().tables["pairs"]["rows"]
    assert [r[:2] for r in rows] == [["a", "rot"], ["a", "noise"], ["rot", "noise"]]


def test_two_tiny_models_on_a_recipe(tmp_path):
    a = build_tiny_bert(tmp_path / "a", seed=0)
    b = build_tiny_bert(tmp_path / "b", seed=1)
    recipe = {"version": 1, "name": "sim", "seed": 0, "model": {"id": str(a)},
              "sources": [{"label": "animals", "texts": _texts(ANIMAL, 20, 1, (2, 9))},
                          {"label": "finance", "texts": _texts(FINANCE, 20, 2, (6, 13))}],
              "output": {"cache_dir": str(tmp_path / "cache")}}
    sim = model_similarity(recipe, [str(a), str(b), str(a)], progress=False)
    assert sim.n == 40
    M = sim.matrix("linear_cka")
    assert M[0, 2] == pytest.approx(1.0, abs=1e-9)  # the same model twice
    assert 0 < M[0, 1] < 0.999  # two random models: related (same tokens), not equal
