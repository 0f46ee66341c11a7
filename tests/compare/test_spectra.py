"""Spectral measures (issue 18) against known answers and references written differently."""

from __future__ import annotations

import math

import numpy as np
import pytest

from embedforensics.compare import layer_spectra, mp_fit, powerlaw_fit
from embedforensics.compare.spectra import (
    alignment,
    esd,
    mp_density,
    mp_quantile,
    spectral_stats,
    spike_location,
    spike_overlap,
    stable_rank,
)


def test_esd_matches_eigvalsh():
    rng = np.random.default_rng(0)
    for shape in [(50, 20), (20, 50), (33, 33)]:
        W = rng.standard_normal(shape)
        X = W if shape[0] >= shape[1] else W.T
        ref = np.sort(np.linalg.eigvalsh(X.T @ X / X.shape[0]))[::-1]
        assert np.allclose(esd(W), ref, rtol=1e-10, atol=1e-12)
    lam = esd(rng.standard_normal((40, 10)))
    assert stable_rank(lam) == pytest.approx(lam.sum() / lam.max())


def _brute_force(x: np.ndarray, min_tail: int) -> tuple[float, float, float]:
    """CSN by explicit loops: every distinct value as x_min, MLE α, KS with the
    (0..n−1)/n empirical CDF; the smallest KS wins."""
    best = (math.inf, math.nan, math.nan)
    for xmin in sorted(set(x.tolist())):
        tail = sorted(v for v in x.tolist() if v >= xmin)
        n = len(tail)
        if n < min_tail:
            continue
        alpha = 1 + n / sum(math.log(v / xmin) for v in tail)
        ks = max(abs((1 - (v / xmin) ** (1 - alpha)) - i / n) for i, v in enumerate(tail))
        if ks < best[0]:
            best = (ks, alpha, xmin)
    return best[1], best[2], best[0]


def test_powerlaw_matches_brute_force_xmin_search():
    rng = np.random.default_rng(3)
    # a lognormal body and a Pareto tail, so x_min is not the smallest value
    x = np.concatenate([rng.lognormal(0, 0.3, 40), 2 * (1 - rng.random(60)) ** (-1 / 1.5)])
    alpha, xmin, ks = _brute_force(x, 10)
    fit = powerlaw_fit(x, min_tail=10, n_bootstrap=0)
    assert fit.alpha == pytest.approx(alpha, rel=1e-10)
    assert fit.xmin == pytest.approx(xmin, rel=1e-12)
    assert fit.ks_distance == pytest.approx(ks, rel=1e-9)
    assert fit.n_tail == int(np.sum(x >= xmin))
    given = powerlaw_fit(x, xmin=xmin, n_bootstrap=0)  # a given x_min is used as is
    assert given.alpha == pytest.approx(alpha, rel=1e-10)


@pytest.mark.parametrize("alpha", [2.0, 3.5])
def test_powerlaw_recovers_pareto_alpha_within_ci(alpha):
    rng = np.random.default_rng(int(alpha * 10))
    x = 0.7 * (1 - rng.random(800)) ** (-1 / (alpha - 1))  # Pareto, x_min = 0.7
    fit = powerlaw_fit(x, n_bootstrap=60, seed=1)
    assert fit.power_law and fit.ci is not None
    assert fit.ci[0] <= alpha <= fit.ci[1]
    assert fit.ci[1] - fit.ci[0] < 1.0
    wald = powerlaw_fit(x, n_bootstrap=0)
    assert wald.ci[0] <= alpha <= wald.ci[1] and wald.alpha == fit.alpha
    assert fit.to_dict()["ci"] == list(fit.ci)


def test_powerlaw_refuses_a_bulk_only_spectrum():
    rng = np.random.default_rng(5)
    fit = powerlaw_fit(esd(rng.standard_normal((1000, 250))), n_bootstrap=0)
    assert not fit.power_law and "no heavy tail" in fit.reason
    few = powerlaw_fit([1.0, 2.0, 3.0])
    assert not few.power_law and math.isnan(few.alpha)


def test_mp_law_helpers():
    from scipy.integrate import quad

    Q = 3.0
    b = (1 + 1 / math.sqrt(Q)) ** 2
    total = quad(lambda t: float(mp_density(np.array([t]), 1.0, Q)[0]), 0, b, limit=200)[0]
    assert total == pytest.approx(1.0, abs=1e-6)
    rng = np.random.default_rng(2)
    lam = esd(rng.standard_normal((1800, 600)))
    assert np.median(lam) == pytest.approx(mp_quantile(0.5, Q), rel=0.01)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_gaussian_matrix_lambda_max_at_mp_edge(seed):
    rng = np.random.default_rng(seed)
    N, M, s2 = 1200, 300, 0.04
    lam = esd(math.sqrt(s2) * rng.standard_normal((N, M)))
    fit = mp_fit(lam, N / M)
    assert fit.sigma2 == pytest.approx(s2, rel=0.02)
    assert fit.edge == pytest.approx(s2 * 2.25, rel=0.02)
    # λ_max sits at the edge, within a few Tracy–Widom scales (TW₁: mean −1.21, sd 1.27)
    assert abs(fit.lambda_max - fit.tw_center) < 4 * fit.tw_scale
    assert abs(fit.lambda_max / fit.edge - 1) < 0.05
    assert fit.n_outliers == 0
    known = mp_fit(lam, N / M, sigma2=s2)  # the edge implied by the initialisation scale
    assert not known.fitted and known.n_outliers == 0 and known.sigma2 == s2
    with pytest.raises(ValueError, match="aspect_ratio"):
        mp_fit(lam, 0.5)


def test_planted_spike_above_bbp_counted_once_at_predicted_location():
    rng = np.random.default_rng(11)
    N, M, ell = 2000, 500, 1.5  # y = 1/4, threshold √y = 0.5
    v = rng.standard_normal(M)
    v /= np.linalg.norm(v)
    Z = rng.standard_normal((N, M))
    X = Z + (math.sqrt(1 + ell) - 1) * np.outer(Z @ v, v)  # rows ~ N(0, I + ℓvvᵀ)
    lam = esd(X)
    fit = mp_fit(lam, N / M)
    assert fit.n_outliers == 1
    predicted = spike_location(ell, N / M)
    assert predicted == pytest.approx((1 + ell) * (1 + 0.25 / ell))
    assert lam[0] == pytest.approx(predicted, rel=0.04)
    st = spectral_stats(lam, N / M, vectors=np.linalg.svd(X, full_matrices=False)[2][:1].T,
                        direction=v)
    assert st.alignment == pytest.approx(spike_overlap(ell, N / M), abs=0.06)
    # below the threshold: no outlier, the top eigenvalue at the edge
    Xw = Z + (math.sqrt(1 + 0.3) - 1) * np.outer(Z @ v, v)
    weak = mp_fit(esd(Xw), N / M)
    assert weak.n_outliers == 0
    assert spike_location(0.3, N / M) == pytest.approx(2.25)


def test_alignment():
    d = np.array([1.0, 0.0, 0.0])
    V = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    assert np.allclose(alignment(V, d), [1.0, 0.0])
    assert alignment(np.array([1.0, 1.0, 0.0]), d)[0] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        alignment(V, np.zeros(3))


def test_layer_spectra_on_a_module():
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 40), nn.ReLU(), nn.Linear(40, 30), nn.ReLU(),
                        nn.Linear(30, 2))
    init = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        net[0].weight.add_(0.1)
    x = torch.randn(25, 20)
    spectra = layer_spectra(net, x, init, kinds=("weight", "delta", "ck", "ntk"))
    by = {(s.kind, s.name): s for s in spectra}
    W = net[0].weight.detach().double().numpy()  # 40 × 20: rows ≥ columns already
    assert np.allclose(by[("weight", "0")].eigenvalues,
                       np.sort(np.linalg.eigvalsh(W.T @ W / 40))[::-1])
    assert by[("weight", "0")].shape == (40, 20)
    assert by[("weight", "2")].shape == (40, 30)  # 30 × 40 oriented
    assert ("delta", "0") in by and ("delta", "2") not in by  # ΔW = 0 is skipped
    assert by[("delta", "0")].eigenvalues[0] == pytest.approx(
        float(np.linalg.norm(np.full((40, 20), 0.1), 2) ** 2 / 40))
    assert ("weight", "4") not in by  # 2 × 30 is below min_dim
    # CK of layer 2's inputs: ReLU(first layer) on x
    phi = torch.relu(net[0](x)).detach().double().numpy()
    ck = np.sort(np.linalg.eigvalsh(phi @ phi.T / 40))[::-1][:25]
    assert np.allclose(by[("ck", "2")].eigenvalues, ck[:by[("ck", "2")].eigenvalues.size],
                       atol=1e-9)
    ntk = by[("ntk", "ntk")]
    assert ntk.eigenvalues.size == 25 and ntk.eigenvalues.sum() == pytest.approx(25)
    with pytest.raises(ValueError, match="unknown spectrum kinds"):
        layer_spectra(net, kinds=("hessian",))
