"""Calibration of the representations comparator's rank p: a candidate trained with the
reference recipe (another seed) must not look "farther" more often than its level says.

110 MLP heads (real ``train_head``) of one recipe on synthetic embeddings; 200 times, 10 of
them drawn at random are the reference ensemble and an eleventh the candidate, and the
comparator runs. Under this null the candidate's rank p among the reference models'
leave-one-out similarities is close to uniform on {1/11, …, 1} (marginally over ensembles:
for one fixed ensemble the candidates' rank ps are dependent, all compared with the same
10 values).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from embedforensics.compare.heads import train_head
from embedforensics.compare.representations_comparator import RepresentationsComparator

SETTINGS = {"kind": "mlp", "hidden": 12, "optimizer": "adam", "lr": 0.02, "momentum": 0.9,
            "epochs": 8, "batch_size": 64, "weight_decay": 0.0, "label_noise": 0.0,
            "train_fraction": 1.0}


def _scored(module, name: str) -> SimpleNamespace:
    scorer = SimpleNamespace(input="embeddings", torch_module=lambda: (module, None))
    return SimpleNamespace(path=Path("heads") / name, scorer=scorer)


@pytest.mark.slow
def test_rank_p_of_same_recipe_candidates_is_uniform_ish():
    rng = np.random.default_rng(0)
    n, d = 240, 10
    y = rng.integers(0, 2, n)
    X = (rng.normal(size=(n, d)) + 1.2 * y[:, None] * rng.normal(size=d)).astype(np.float32)
    train, test = np.arange(160), np.arange(160, n)
    heads = [train_head(X[train], y[train], 2, SETTINGS, seed)[0] for seed in range(110)]
    M = 10
    ctx = SimpleNamespace(recipe=SimpleNamespace(seed=0, model=None,
                                                 compare=SimpleNamespace(max_length=None)),
                          file_of=lambda key: None, cache_dir=lambda kind: None)
    prepared = SimpleNamespace(test_idx=test, embeddings=SimpleNamespace(X=X), texts=None,
                               ids=[str(i) for i in range(n)])
    comparator = RepresentationsComparator(RepresentationsComparator.validate_params(
        {"layers": [-1], "n_inputs": 80, "max_models": M, "cross_layer": False,
         "multiplicity": False}))
    draws = np.random.default_rng(1)
    ranks = []
    for _ in range(200):
        order = draws.permutation(len(heads))
        inputs = SimpleNamespace(
            ctx=ctx, prepared=prepared,
            reference=[_scored(heads[i], f"h-{i}") for i in order[:M]],
            candidates={"same": [_scored(heads[order[M]], f"h-{order[M]}")]})
        (result,) = comparator.run(inputs).results
        (row,) = result.tables["similarity"]["rows"]
        ranks.append(row[4])
    ranks = np.array(ranks)
    # P(rank p ≤ k/(M+1)) ≈ k/(M+1) under the null; 200 draws: binomial sd ≤ 0.036
    for k in range(1, M + 1):
        assert abs(np.mean(ranks <= k / (M + 1) + 1e-12) - k / (M + 1)) <= 0.1, k
    assert np.mean(ranks <= 1 / (M + 1) + 1e-12) <= 1 / (M + 1) + 0.06
