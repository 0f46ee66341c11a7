"""Tests for the exact trimmed KS distance d(α) and α̂ (embedforensics.compare.alpha_hat).

The distance is checked against an independent brute-force linear program, α̂ against its
defining property (accepts at α̂, rejects just below) and against an LP-driven bisection, and
the statistics against known calibration behaviour.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from scipy import stats
from scipy.optimize import linprog

from embedforensics.compare import (
    AlphaHatResult,
    alpha_hat,
    asymptotic_critical_value,
    bootstrap_critical_value,
    leave_one_out_critical_value,
    optimal_trimming,
    trimmed_ks_curve,
    trimmed_ks_distance,
)

ALPHAS = (0.0, 0.05, 0.2, 0.37, 0.5, 0.8, 0.95)


def lp_trimmed_ks(candidate: np.ndarray, reference: np.ndarray, alpha: float) -> float:
    """Brute force: min d s.t. |F̂0(x) − Σ_{c_i ≤ x} w_i| ≤ d at every pooled grid point,
    both the value and the left limit, 0 ≤ w_i ≤ 1/(n(1−α)), Σ w_i = 1 (per-point weights, so
    tied candidate values pool their capacity automatically)."""
    c = np.asarray(candidate, dtype=float)
    r = np.asarray(reference, dtype=float).ravel()
    n = c.size
    rows, rhs = [], []
    for x in np.unique(np.r_[c, r]):
        for below, f0 in ((c <= x, np.mean(r <= x)), (c < x, np.mean(r < x))):
            ind = below.astype(float)
            rows.append(np.r_[-ind, -1.0])  # F0 − Σw ≤ d
            rhs.append(-f0)
            rows.append(np.r_[ind, -1.0])  # Σw − F0 ≤ d
            rhs.append(f0)
    res = linprog(
        np.r_[np.zeros(n), 1.0],
        A_ub=np.array(rows),
        b_ub=np.array(rhs),
        A_eq=np.r_[np.ones(n), 0.0][None, :],
        b_eq=[1.0],
        bounds=[(0.0, 1.0 / (n * (1.0 - alpha)))] * n + [(0.0, None)],
        method="highs",
        options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10},
    )
    assert res.status == 0, res.message
    return float(res.fun)


def random_case(rng: np.random.Generator, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Small random cases; every other one integer-valued (many ties within and across)."""
    n = int(rng.integers(1, 13))
    m = int(rng.integers(1, 25))
    if i % 2:
        k = int(rng.integers(2, 7))
        return (
            rng.integers(0, k, n).astype(float),
            rng.integers(0, k, m).astype(float) + rng.integers(0, 2),
        )
    return rng.normal(rng.normal(0, 1), rng.uniform(0.3, 2), n), rng.normal(0, 1, m)


# --------------------------------------------------------------------------- d(α)


def test_distance_matches_linear_program_on_random_cases_with_ties():
    rng = np.random.default_rng(20240608)
    worst = 0.0
    for i in range(240):
        c, r = random_case(rng, i)
        alphas = rng.choice(ALPHAS, size=3, replace=False)
        for a in alphas:
            fast = trimmed_ks_distance(c, r, float(a))
            slow = lp_trimmed_ks(c, r, float(a))
            worst = max(worst, abs(fast - slow))
            assert fast == pytest.approx(slow, abs=1e-9), (c, r, a)
    assert worst < 1e-9


def test_distance_matches_lp_for_two_d_reference_and_unsorted_input():
    rng = np.random.default_rng(3)
    ref = rng.integers(0, 5, (3, 6)).astype(float)
    cand = rng.integers(0, 6, 8).astype(float)
    for a in (0.0, 0.3, 0.6):
        assert trimmed_ks_distance(cand, ref, a) == trimmed_ks_distance(cand, ref.ravel(), a)
        assert trimmed_ks_distance(cand, ref, a) == pytest.approx(
            lp_trimmed_ks(cand, ref, a), abs=1e-9
        )


@pytest.mark.filterwarnings("ignore:ks_2samp. Exact calculation unsuccessful")
def test_distance_at_zero_is_the_ks_statistic():
    rng = np.random.default_rng(11)
    for i in range(200):
        c, r = random_case(rng, i)
        assert trimmed_ks_distance(c, r, 0.0) == stats.ks_2samp(c, r).statistic
    # a large case (scipy switches to its asymptotic mode, a float difference of CDFs)
    c, r = rng.normal(0.1, 1, 3000), rng.normal(0, 1, (3, 5000))
    assert trimmed_ks_distance(c, r, 0.0) == pytest.approx(
        stats.ks_2samp(c, r.ravel()).statistic, abs=1e-15
    )


def test_distance_is_non_increasing_and_convex_in_t():
    rng = np.random.default_rng(5)
    alphas = np.r_[np.linspace(0.0, 0.99, 60), 0.999, 0.9999]
    for i in range(40):
        c, r = random_case(rng, i)
        d = trimmed_ks_curve(c, r, alphas)
        assert np.all(np.diff(d) <= 1e-12)
        # a max of affine functions of t = 1/(1−α): convex on an evenly spaced t grid
        t = np.linspace(1.0, 30.0, 50)
        dt = trimmed_ks_curve(c, r, 1.0 - 1.0 / t)
        assert np.all(dt[:-2] + dt[2:] - 2 * dt[1:-1] >= -1e-12)


def test_curve_matches_pointwise_distance():
    rng = np.random.default_rng(8)
    c, r = rng.normal(0.5, 1, 40), rng.normal(0, 1, 90)
    alphas = [0.0, 0.1, 0.45, 0.9]
    assert list(trimmed_ks_curve(c, r, alphas)) == [trimmed_ks_distance(c, r, a) for a in alphas]


def test_limit_as_alpha_to_one_is_positive_for_continuous_outputs():
    # candidate atoms at 0 and 10; half the reference lies strictly between them, a quarter
    # below: trimming can re-weight the atoms but never move them
    c = np.array([0.0, 10.0])
    r = np.array([-1.0, 0.0, 5.0, 5.0])
    res = alpha_hat(c, r)
    # d(1⁻) = max(1/4 below, 0 above, ½ · 2/4 between)
    assert res.limit_distance == pytest.approx(0.25)
    assert trimmed_ks_distance(c, r, 1 - 1e-9) == pytest.approx(0.25, abs=1e-6)


def test_single_candidate_value_cannot_be_reweighted():
    r = np.array([0.0, 1.0, 2.0, 3.0])
    d = trimmed_ks_curve([1.5], r, [0.0, 0.5, 0.9])
    assert np.all(d == d[0])
    assert d[0] == pytest.approx(0.5)


def test_discrete_outputs_covering_the_support_trim_to_zero():
    # reference uniform on {0,1,2}; candidate over-represents 0
    c = np.array([0, 0, 0, 0, 1, 2], dtype=float)
    r = np.array([0, 1, 2] * 10, dtype=float)
    # uniform needs mass 1/3 on the single 1 and the single 2: weight cap 1/(6(1−α)) ≥ 1/3,
    # i.e. α ≥ 1/2 (then the four 0s share 1/3)
    assert trimmed_ks_distance(c, r, 0.5) == pytest.approx(0.0, abs=1e-15)
    assert trimmed_ks_distance(c, r, 0.45) > 0.0
    assert trimmed_ks_distance(c, r, 0.45) == pytest.approx(lp_trimmed_ks(c, r, 0.45), abs=1e-9)
    # the same shape with more data: rejected at α = 0, accepted before the exact fix at 1/2
    res = alpha_hat(np.repeat(c, 10), np.repeat(r, 10))
    assert res.limit_distance == 0.0 and res.rejects_at_zero
    assert 0.0 < res.alpha_hat < 0.5


def test_optimal_trimming_attains_the_distance_with_valid_weights():
    rng = np.random.default_rng(21)
    for i in range(60):
        c, r = random_case(rng, i)
        for a in (0.0, 0.25, 0.7):
            fit = optimal_trimming(c, r, a)
            n = c.size
            assert fit.distance == pytest.approx(trimmed_ks_distance(c, r, a), abs=0)
            assert fit.achieved == pytest.approx(fit.distance, abs=1e-12)
            assert fit.weights.shape == c.shape
            assert np.all(fit.weights >= 0.0)
            assert np.all(fit.weights <= 1.0 / (n * (1.0 - a)) + 1e-12)
            assert fit.weights.sum() == pytest.approx(1.0, abs=1e-12)
            assert fit.trimmed_fraction <= a + 1e-12
            # the returned CDF is that of the weights
            cdf = np.array([fit.weights[c <= z].sum() for z in fit.grid])
            np.testing.assert_allclose(cdf, fit.trimmed_cdf, atol=1e-12)


def test_optimal_trimming_removes_outliers():
    rng = np.random.default_rng(1)
    r = rng.normal(0, 1, 2000)
    c = np.r_[rng.normal(0, 1, 180), np.full(20, 50.0)]  # 10 % far outliers
    fit = optimal_trimming(c, r, 0.1)
    # F̂0 = 1 well below 50, so the trimmed CDF may leave at most d(α) of mass out there
    assert fit.weights[-20:].sum() <= fit.distance + 1e-12
    assert fit.distance < 0.5 * trimmed_ks_distance(c, r, 0.0)


# --------------------------------------------------------------------------- α̂


def lp_alpha_hat(c: np.ndarray, r: np.ndarray, tau: float, tol: float = 1e-7) -> float:
    """Independent α̂: bisection on α with the brute-force LP distance."""
    lo, hi = 0.0, 0.999
    if lp_trimmed_ks(c, r, lo) <= tau:
        return 0.0
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if lp_trimmed_ks(c, r, mid) <= tau:
            hi = mid
        else:
            lo = mid
    return hi


def test_alpha_hat_agrees_with_lp_bisection():
    rng = np.random.default_rng(99)
    checked = 0
    for i in range(12):
        n, m = int(rng.integers(6, 14)), int(rng.integers(10, 30))
        if i % 2:
            c = rng.integers(0, 5, n).astype(float)
            r = rng.integers(1, 5, m).astype(float)
        else:
            c, r = rng.normal(1.5, 1, n), rng.normal(0, 1, m)
        res = alpha_hat(c, r, level=0.2)
        if not res.attainable:
            continue
        assert res.alpha_hat == pytest.approx(lp_alpha_hat(c, r, res.threshold), abs=2e-7)
        checked += 1
    assert checked >= 6


def brute_force_t_star(c: np.ndarray, r: np.ndarray, tau: float) -> float:
    """t* = max(1, max over affine pieces (p − t·q)/s with q > 0 of (p − sτ)/q), all O(K²)
    pieces enumerated: left tail (a_k, F_k, 1), right tail (1 − a_k, 1 − F_k, 1) and gaps
    (a_k − a_j, F_k − F_j, 2) for j < k."""
    grid = np.unique(np.r_[c, r])
    a = np.searchsorted(np.sort(r), grid, side="right") / r.size
    f = np.searchsorted(np.sort(c), grid, side="right") / c.size
    pieces = [(a[k], f[k], 1.0) for k in range(grid.size)]
    pieces += [(1 - a[k], 1 - f[k], 1.0) for k in range(grid.size)]
    pieces += [(a[k] - a[j], f[k] - f[j], 2.0) for k in range(grid.size) for j in range(k)]
    return max([1.0] + [(p - s * tau) / q for p, q, s in pieces if q > 0])


def test_alpha_hat_equals_closed_form_over_all_pieces():
    rng = np.random.default_rng(31)
    positive = 0
    for i in range(150):
        c, r = random_case(rng, i)
        c, r = np.repeat(c, 6), np.repeat(r, 6)  # more data so that the test can reject
        res = alpha_hat(c, r, level=0.1)
        if not res.attainable:
            continue
        t_star = brute_force_t_star(c, r, res.threshold)
        assert res.alpha_hat == pytest.approx((t_star - 1) / t_star, abs=1e-12)
        positive += res.alpha_hat > 0
    assert positive > 40


def test_alpha_hat_is_the_smallest_accepting_trimming():
    rng = np.random.default_rng(7)
    positive = 0
    for i in range(300):
        n, m = int(rng.integers(2, 80)), int(rng.integers(2, 300))
        if i % 3 == 0:
            c = rng.integers(0, 8, n).astype(float)
            r = rng.integers(0, 8, m).astype(float)
        else:
            c = rng.normal(rng.uniform(0, 2.5), rng.uniform(0.5, 2), n)
            r = rng.normal(0, 1, m)
        level = float(rng.choice([0.01, 0.05, 0.2, 0.5]))
        res = alpha_hat(c, r, level=level)
        scale = math.sqrt(n * m / (n + m))
        assert res.threshold == pytest.approx(res.critical_value / scale)
        if not res.attainable:
            assert res.alpha_hat == 1.0
            assert res.limit_distance > res.threshold
            continue
        assert scale * trimmed_ks_distance(c, r, res.alpha_hat) <= res.critical_value
        assert res.distance_at_alpha_hat <= res.threshold
        if res.alpha_hat > 0:
            positive += 1
            assert trimmed_ks_distance(c, r, res.alpha_hat - 1e-9) > res.threshold
        else:
            assert res.statistic_at_zero <= res.critical_value
    assert positive > 100


def test_alpha_hat_not_attainable_is_reported():
    c = np.linspace(0.0, 1.0, 200)
    r = np.linspace(-5, 6, 1000)  # most reference mass lies outside the candidate's range
    res = alpha_hat(c, r)
    assert not res.attainable and res.alpha_hat == 1.0
    assert res.rejects_at_zero
    with pytest.raises(ValueError, match="not attainable"):
        res.trimming()
    assert res.trimming(0.5).alpha == 0.5


def test_alpha_hat_zero_when_identical():
    x = np.arange(50, dtype=float)
    res = alpha_hat(x, np.tile(x, (4, 1)))
    assert res.alpha_hat == 0.0 and res.distance_at_zero == 0.0
    assert res.n == 50 and res.m == 200 and res.n_models == 4


def test_result_fields_dict_and_frozen():
    rng = np.random.default_rng(0)
    c, r = rng.normal(1, 1, 300), rng.normal(0, 1, (5, 300))
    res = alpha_hat(c, r, level=0.05)
    assert isinstance(res, AlphaHatResult)
    assert res.method == "asymptotic" and res.level == 0.05
    assert res.critical_value == pytest.approx(stats.kstwobign.ppf(0.95))
    assert res.critical_value == asymptotic_critical_value(0.05)
    assert res.distance_at_zero == stats.ks_2samp(c, r.ravel()).statistic
    assert res.p_value_at_zero == pytest.approx(stats.kstwobign.sf(res.statistic_at_zero))
    d = res.to_dict()
    json.dumps(d)
    for key in ("alpha_hat", "distance_at_zero", "critical_value", "level", "method", "n", "m"):
        assert d[key] == getattr(res, key)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.alpha_hat = 0.0  # type: ignore[misc]
    fit = res.trimming()
    assert fit.alpha == res.alpha_hat
    assert fit.distance <= res.threshold


def test_calibration_same_distribution_rejects_at_about_level():
    rng = np.random.default_rng(2024)
    reps, level = 300, 0.1
    rejections, alphas = 0, []
    for _ in range(reps):
        res = alpha_hat(rng.normal(0, 1, 150), rng.normal(0, 1, 600), level=level)
        rejections += res.rejects_at_zero
        alphas.append(res.alpha_hat)
    rate = rejections / reps
    assert 0.05 <= rate <= 0.16, rate  # binomial sd ≈ 0.017 around ≈ 0.1
    assert np.median(alphas) == 0.0
    assert np.quantile(alphas, 0.95) < 0.1


def test_alpha_hat_grows_with_shift():
    rng = np.random.default_rng(5)
    z_c, z_r = rng.normal(0, 1, 2000), rng.normal(0, 1, (10, 2000))
    values = [alpha_hat(z_c + s, z_r).alpha_hat for s in (0.0, 0.2, 0.5, 1.0, 2.0)]
    assert values[0] == 0.0
    assert all(b > a for a, b in zip(values, values[1:], strict=False))
    assert values[-1] > 0.6


@pytest.mark.parametrize("eps", [0.05, 0.1, 0.2, 0.4])
def test_alpha_hat_recovers_contamination_fraction(eps):
    rng = np.random.default_rng(int(eps * 1000))
    n = 4000
    k = int(round(eps * n))
    c = np.r_[rng.normal(0, 1, n - k), rng.normal(8, 1, k)]
    r = rng.normal(0, 1, (8, n))
    res = alpha_hat(c, r)
    assert eps - 0.04 <= res.alpha_hat <= eps + 0.005, res.alpha_hat


# --------------------------------------------------------------------------- critical values


def test_bootstrap_is_seeded_and_matches_a_direct_replicate():
    rng = np.random.default_rng(4)
    ref = rng.normal(0, 1, (4, 60)).round(1)  # ties across models and points
    a = bootstrap_critical_value(ref, 0.1, n_bootstrap=50, seed=3)
    assert a == bootstrap_critical_value(ref, 0.1, n_bootstrap=50, seed=3)
    assert a != bootstrap_critical_value(ref, 0.1, n_bootstrap=50, seed=4)
    # recompute the replicates with scipy on explicitly resampled arrays
    M, T = ref.shape
    g = np.random.default_rng(3)
    sims = []
    for _ in range(50):
        j = int(g.integers(M))
        idx = g.integers(0, T, size=T)
        others = np.delete(ref, j, axis=0)[:, idx].ravel()
        d = stats.ks_2samp(ref[j, idx], others, method="asymp").statistic
        sims.append(math.sqrt(T * others.size / (T + others.size)) * d)
    assert a == pytest.approx(np.quantile(sims, 0.9, method="higher"), abs=1e-12)


def test_leave_one_out_matches_direct_computation():
    rng = np.random.default_rng(6)
    ref = rng.normal(0, 1, (19, 40))
    M, T = ref.shape
    loo = []
    for j in range(M):
        others = np.delete(ref, j, axis=0).ravel()
        d = stats.ks_2samp(ref[j], others, method="asymp").statistic
        loo.append(math.sqrt(T * others.size / (T + others.size)) * d)
    # k = ⌈0.95 · 20⌉ = 19: the largest of 19
    assert leave_one_out_critical_value(ref, 0.05) == pytest.approx(max(loo), abs=1e-12)
    with pytest.raises(ValueError, match="at least 19 reference models"):
        leave_one_out_critical_value(ref[:18], 0.05)


def test_bootstrap_accounts_for_shared_test_points():
    rng = np.random.default_rng(12)
    T, M = 400, 10
    # pure noise: conservative, about √2 × the Kolmogorov quantile
    iid = bootstrap_critical_value(rng.normal(0, 1, (M, T)), 0.05, n_bootstrap=200, seed=0)
    assert 1.15 * asymptotic_critical_value(0.05) < iid < 1.7 * asymptotic_critical_value(0.05)
    # models agree point by point: the pooled outputs are far from independent
    f = rng.normal(0, 1, T)
    agree = f + 0.05 * rng.normal(0, 1, (M, T))
    crit = bootstrap_critical_value(agree, 0.05, n_bootstrap=200, seed=0)
    assert crit < 0.5 * asymptotic_critical_value(0.05)
    res = alpha_hat(f + 0.05 * rng.normal(0, 1, T), agree, method="bootstrap", n_bootstrap=200)
    assert res.method == "bootstrap" and res.n_bootstrap == 200 and res.seed == 0
    assert res.critical_value == crit


def test_leave_one_out_is_calibrated_when_seeds_shift_outputs():
    # each seed shifts the whole output distribution a little: the asymptotic test rejects
    # fresh seeds of the same recipe, the leave-one-out test keeps its level (1/20 here)
    rng = np.random.default_rng(77)
    T, M, reps = 150, 19, 150
    rej_loo = rej_asym = 0
    for _ in range(reps):
        f = rng.normal(0, 1, T)
        models = f + 0.3 * rng.normal(0, 1, (M + 1, T)) + 0.25 * rng.normal(0, 1, (M + 1, 1))
        loo = alpha_hat(models[0], models[1:], method="leave-one-out")
        rej_loo += loo.rejects_at_zero
        rej_asym += alpha_hat(models[0], models[1:]).rejects_at_zero
    assert rej_loo / reps <= 0.12
    assert rej_asym / reps > 0.25


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("cand", "ref", "match"),
    [
        ([], [1.0], "candidate is empty"),
        ([1.0], [], "reference is empty"),
        ([1.0, np.nan], [1.0], "non-finite"),
        ([1.0], [1.0, np.inf], "non-finite"),
        ([[1.0]], [1.0], "candidate must be 1-D"),
        ([1.0], np.ones((2, 2, 2)), "reference must be 1-D or 2-D"),
        (["a"], [1.0], "real numbers"),
    ],
)
def test_invalid_inputs(cand, ref, match):
    with pytest.raises(ValueError, match=match):
        trimmed_ks_distance(cand, ref, 0.1)
    with pytest.raises(ValueError, match=match):
        alpha_hat(cand, ref)


@pytest.mark.parametrize("alpha", [-0.1, 1.0, 1.5, np.nan])
def test_invalid_alpha(alpha):
    with pytest.raises(ValueError, match="alpha must lie in"):
        trimmed_ks_distance([1.0], [2.0], alpha)


@pytest.mark.parametrize("level", [0.0, 1.0, -0.5, 2.0, np.nan])
def test_invalid_level(level):
    with pytest.raises(ValueError, match="level must lie in"):
        alpha_hat([1.0], [2.0], level=level)


def test_invalid_methods_and_bootstrap_arguments():
    rng = np.random.default_rng(0)
    c, ref = rng.normal(size=20), rng.normal(size=(3, 20))
    with pytest.raises(ValueError, match="method must be"):
        alpha_hat(c, ref, method="permutation")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2-D array"):
        alpha_hat(c, ref.ravel(), method="bootstrap")
    with pytest.raises(ValueError, match="at least 2 reference models"):
        alpha_hat(c, ref[:1], method="bootstrap")
    with pytest.raises(ValueError, match="scored on the reference's test points"):
        alpha_hat(c[:10], ref, method="bootstrap")
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="n_bootstrap"):
            alpha_hat(c, ref, method="bootstrap", n_bootstrap=bad)
    with pytest.raises(ValueError, match="reference models"):
        alpha_hat(c, ref, method="leave-one-out")
