"""Optimiser attribution from weight spectra on tiny MLPs against a seed null (issue 18)."""

from __future__ import annotations

import numpy as np
import pytest

from embedforensics.compare.spectra import layer_spectra, spectral_stats
from embedforensics.compare.spectra_comparator import procedure_classifier, rank_p


def _train(seed: int, optimizer: str, steps: int = 60) -> object:
    """A 32-64-64-2 MLP trained full-batch on a seeded two-class problem (the data are the
    same for every model; the seed sets the initialisation)."""
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(1234)
    X = torch.randn(256, 32, generator=g)
    y = (X[:, :4].sum(1) > 0).long()
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                        nn.Linear(64, 2))
    opt = (torch.optim.Adam(net.parameters(), lr=3e-3) if optimizer == "adam"
           else torch.optim.SGD(net.parameters(), lr=0.05))
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(net(X), y).backward()
        opt.step()
    return net


def _features(net: object) -> list[float]:
    row: list[float] = []
    for sp in layer_spectra(net, kinds=("weight",), min_dim=16):
        row += list(spectral_stats(sp.eigenvalues, sp.aspect_ratio).features().values())
    return row


@pytest.fixture(scope="module")
def study():
    import torch

    torch.set_num_threads(1)
    adam = [_features(_train(s, "adam")) for s in range(8)]
    gd = [_features(_train(100 + s, "gd")) for s in range(16)]
    return np.array(adam), np.array(gd)


def test_adam_and_gd_are_told_apart(study):
    adam, gd = study
    X = np.vstack([adam, gd[:8]])
    y = ["adam"] * 8 + ["gd"] * 8
    out = procedure_classifier(X, y, seed=0, n_permutations=200)
    assert out["accuracy"] >= 0.9 and out["chance"] == 0.5
    assert out["p_value"] < 0.05
    assert out["n_splits"] == 5 and len(out["predictions"]) == 16


def test_null_split_of_one_procedure_is_not(study):
    _, gd = study
    y = ["a", "b"] * 8  # one procedure, two arbitrary seed groups
    out = procedure_classifier(gd, y, seed=0, n_permutations=200)
    assert out["p_value"] > 0.05


def test_classifier_needs_two_models_per_group():
    out = procedure_classifier(np.zeros((3, 2)), ["a", "a", "b"])
    assert out["accuracy"] is None and "≥ 2" in out["reason"]


def test_rank_p_two_sided():
    ref = np.arange(8.0)
    assert rank_p(100.0, ref) == pytest.approx(2 / 9)
    assert rank_p(-1.0, ref) == pytest.approx(2 / 9)
    assert rank_p(3.5, ref) == 1.0


def test_closed_form_ridge_matches_scikit_learn():
    from sklearn.feature_selection import SelectKBest, f_classif
    from sklearn.linear_model import RidgeClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from embedforensics.compare.spectra_comparator import _ridge_cv

    rng = np.random.default_rng(0)
    for n_features, n_classes in [(4, 2), (30, 3)]:  # primal and dual forms
        X = rng.standard_normal((18, n_features))
        y = np.repeat(np.arange(n_classes), 18 // n_classes)
        X[:, 0] += y
        folds = list(StratifiedKFold(3, shuffle=True, random_state=1).split(X, y))
        ours = _ridge_cv(X, y, folds, n_classes, 1.0)
        ref = cross_val_predict(make_pipeline(StandardScaler(), RidgeClassifier(alpha=1.0)),
                                X, y, cv=folds)
        assert np.array_equal(ours, ref)
        ours = _ridge_cv(X, y, folds, n_classes, 1.0, n_select=3)
        ref = cross_val_predict(make_pipeline(StandardScaler(), SelectKBest(f_classif, k=3),
                                              RidgeClassifier(alpha=1.0)), X, y, cv=folds)
        assert np.array_equal(ours, ref)
