"""The linear-width study (issue 18) at toy size: it runs, writes its outputs, is seeded."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedforensics.compare.linear_width import (
    LinearWidthConfig,
    kernels,
    main,
    run_study,
    teacher_data,
    train,
)

TINY = dict(n=120, d=30, h=60, n_test=40, epochs=3, batch=20, seeds=2, n_bootstrap=10)


def test_study_runs_and_writes(tmp_path):
    out = tmp_path / "lw"
    result = run_study(LinearWidthConfig(**TINY), out)
    assert {"results.json", "summary.md", "spectra.png"} <= {p.name for p in out.iterdir()}
    saved = json.loads((out / "results.json").read_text())
    assert len(saved["runs"]) == 4 * 2
    summary = result["summary"]
    assert list(summary) == ["gd", "sgd_small", "sgd_large", "adam"]
    for opt, entry in summary.items():
        # at initialisation λ_max sits near the MP edge implied by the init scale 1/d
        med, lo, hi = entry["init.weight.lambda_max_over_init_edge"]
        assert 0.7 < lo <= med <= hi < 1.3, opt
        assert entry["loss.train"] < entry["loss.train_initial"], opt
    # a 5× larger step moves the top of the weight spectrum further than small-step GD
    assert (summary["sgd_large"]["trained.weight.lambda_max_over_init_edge"][0]
            > summary["gd"]["trained.weight.lambda_max_over_init_edge"][0])
    assert "| trained.weight.n_outliers_init_edge |" in (out / "summary.md").read_text()


def test_training_is_seeded_and_kernels_match_definitions():
    cfg = LinearWidthConfig(**TINY)
    data = teacher_data(cfg)
    W0, W, a, losses = train(cfg, "sgd_small", 3, data)
    W0b, Wb, _, losses_b = train(cfg, "sgd_small", 3, data)
    assert np.array_equal(W, Wb) and losses == losses_b and np.array_equal(W0, W0b)
    X = data["X_test"][:5]
    K = kernels(W, a, X)
    i, j = 1, 3
    phi = np.tanh(W @ X[i]), np.tanh(W @ X[j])
    assert K["ck"][i, j] == pytest.approx(phi[0] @ phi[1] / cfg.h)
    # NTK of the first layer: Σ_k a_k² tanh'(w_k·x) tanh'(w_k·x') (x·x') / (d h)
    g = (1 - phi[0] ** 2) * a, (1 - phi[1] ** 2) * a
    assert K["ntk"][i, j] == pytest.approx((g[0] @ g[1]) * (X[i] @ X[j]) / (cfg.d * cfg.h))
    with pytest.raises(ValueError, match="optimizer"):
        train(cfg, "lbfgs", 0, data)


def test_command_line(tmp_path, capsys):
    args = ["--out", str(tmp_path / "o"), "--n", "60", "--d", "20", "--h", "40", "--n-test",
            "30", "--epochs", "1", "--seeds", "1", "--n-bootstrap", "0", "--optimizers", "gd"]
    assert main(args) == 0
    assert "| statistic | gd |" in capsys.readouterr().out
