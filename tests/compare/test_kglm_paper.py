"""kGLM defaults follow Engel et al.'s code (issue 23): the per-sample L2 objective with
balanced class weights, and Kendall τ on class-1 scores with saturated outputs dropped."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit
from scipy.stats import kendalltau

from embedforensics.compare.kglm import KGLM_ALPHA, faithfulness, fit_kglm


def _kernel(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(n, 5))
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    y = (f[:, 0] + 0.5 * rng.normal(size=n) > 0.4).astype(int)  # unbalanced classes
    return f @ f.T, y


def test_lbfgs_solves_the_papers_objective():
    """At the lbfgs fit, the gradient of mean_i(s_i * logloss_i) + alpha/2 |w|^2 (s_i the
    balanced class weights, intercept unpenalised) vanishes — checked with numpy."""
    k, y = _kernel(80, 0)
    n = len(y)
    assert 0.15 < y.mean() < 0.45
    glm = fit_kglm(k, y, solver="lbfgs")
    assert glm.alpha == pytest.approx(KGLM_ALPHA)
    assert glm.reg_c == pytest.approx(1 / (KGLM_ALPHA * n))
    assert glm.solver == "lbfgs" and glm.class_weight == "balanced"
    w = glm.coef[1] - glm.coef[0]
    b = glm.intercept[1] - glm.intercept[0]
    s = n / (2 * np.bincount(y))[y]
    r = s * (expit(k @ w + b) - y)
    grad_w = k.T @ r / n + KGLM_ALPHA * w
    grad_b = r.mean()
    scale = np.abs(k.T @ np.abs(r)).max() / n + 1e-12
    assert np.abs(grad_w).max() < 1e-4 * max(scale, 1.0)
    assert abs(grad_b) < 1e-6
    # reg_c sets C directly; the former default is reg_c=1, class_weight=None
    old = fit_kglm(k, y, reg_c=1.0, class_weight=None, solver="lbfgs")
    assert old.reg_c == 1.0 and old.alpha == pytest.approx(1 / n)
    assert not np.allclose(old.coef, glm.coef)


def test_default_is_the_authors_sgd_fit_and_seeded():
    """Default = SGDClassifier(loss='log_loss', penalty='l2', alpha=1e-4,
    class_weight='balanced'), as in pnnl/projection_ntk; compared with a direct call."""
    from sklearn.linear_model import SGDClassifier

    k, y = _kernel(60, 1)
    a = fit_kglm(k, y, seed=3)
    b = fit_kglm(k, y, solver="sgd", seed=3)
    np.testing.assert_array_equal(a.coef, b.coef)
    assert a.solver == "sgd" and a.alpha == pytest.approx(KGLM_ALPHA)
    ref = SGDClassifier(loss="log_loss", penalty="l2", alpha=1e-4, fit_intercept=True,
                        class_weight="balanced", random_state=3).fit(k, y)
    np.testing.assert_allclose(a.coef[1] - a.coef[0], ref.coef_[0], atol=1e-12)
    np.testing.assert_allclose(a.predict_proba(k), ref.predict_proba(k), atol=1e-12)
    assert np.mean(a.predict(k) == y) > 0.8
    with pytest.raises(ValueError, match="solver"):
        fit_kglm(k, y, solver="newton")
    with pytest.raises(ValueError, match="alpha"):
        fit_kglm(k, y, alpha=0.0)


def test_default_tau_is_on_class_one_scores_without_saturated_outputs():
    y = np.array([0, 0, 1, 1, 0, 1, 1])
    p1 = np.array([0.10, 0.40, 0.70, 0.60, 0.30, 0.90, 0.20])
    ps = np.column_stack([1 - p1, p1])
    # network logit 20: sigmoid is 1 - 2e-9 in float64 but exactly 1.0 in float32 -> dropped
    z = np.array([-2.0, -0.3, 1.5, 20.0, -1.0, 2.5, 0.1])
    res = faithfulness(ps, z, y)
    keep = np.array([0, 1, 2, 4, 5, 6])
    assert res.tau_scores == "class" and res.n_tau == 6
    assert res.kendall_tau == pytest.approx(kendalltau(p1[keep], expit(z[keep])).statistic)
    unmasked = faithfulness(ps, z, y, mask_saturated=False)
    assert unmasked.n_tau == 7
    assert unmasked.kendall_tau == pytest.approx(kendalltau(p1, z).statistic)
    rows = np.arange(7)
    pn = np.column_stack([1 - expit(z), expit(z)])
    old = faithfulness(ps, z, y, tau_scores="true_class")
    assert old.kendall_tau == pytest.approx(
        kendalltau(ps[rows, y], pn[rows, y]).statistic)
    assert res.kendall_tau_true_class == pytest.approx(old.kendall_tau)
    with pytest.raises(ValueError, match="tau_scores"):
        faithfulness(ps, z, y, tau_scores="logit")


def test_true_class_scores_fold_the_two_classes_together():
    """Same ranking of class-1 scores in both models gives class-1 τ = 1, but the
    true-class probabilities of the two classes interleave, so that τ is below 1."""
    y = np.array([0, 0, 1, 1])
    net1 = np.array([0.1, 0.3, 0.6, 0.95])
    glm1 = np.array([0.2, 0.25, 0.9, 0.91])
    z = np.log(net1 / (1 - net1))
    res = faithfulness(np.column_stack([1 - glm1, glm1]), z, y)
    assert res.kendall_tau == pytest.approx(1.0)
    assert res.kendall_tau_true_class < 0.5


def test_multiclass_tau_is_the_mean_of_per_class_taus():
    rng = np.random.default_rng(4)
    logits_net = rng.normal(size=(30, 3)) * 2
    logits_glm = logits_net + rng.normal(size=(30, 3))
    ps = np.exp(logits_glm) / np.exp(logits_glm).sum(1, keepdims=True)
    pn = np.exp(logits_net) / np.exp(logits_net).sum(1, keepdims=True)
    y = rng.integers(0, 3, 30)
    res = faithfulness(ps, logits_net, y)
    expected = np.mean([kendalltau(ps[:, c], pn[:, c]).statistic for c in range(3)])
    assert res.kendall_tau == pytest.approx(expected)
    assert res.n_tau == 90
