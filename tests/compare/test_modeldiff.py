"""ModelDiff on attribution matrices: planted directions, the half-split null, verification."""

from __future__ import annotations

import numpy as np
import pytest

from embedforensics.compare import modeldiff
from embedforensics.compare.modeldiff import (
    effect_difference,
    load_attribution_matrix,
    normalize_rows,
    residuals,
    treatment_effect,
    variance_share,
)

N_TEST, N_TRAIN, M = 60, 120, 6
PLANTED_TEST = np.arange(5, 15)
PLANTED_TRAIN = np.arange(40, 55)


def _groups(seed: int, planted: bool, *, weight: float = 1.5, m_a: int = M, m_b: int = M):
    """B: a shared random matrix plus per-model noise; A: the same, plus (if ``planted``) an
    extra weight on a block of training points for a block of test points."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(N_TEST, N_TRAIN))
    a = base + 0.5 * rng.normal(size=(m_a, N_TEST, N_TRAIN))
    b = base + 0.5 * rng.normal(size=(m_b, N_TEST, N_TRAIN))
    if planted:
        a[:, PLANTED_TEST[:, None], PLANTED_TRAIN[None, :]] += weight
    return a, b


def _planted_direction() -> np.ndarray:
    v = np.zeros(N_TRAIN)
    v[PLANTED_TRAIN] = 1.0
    return v / np.linalg.norm(v)


def test_planted_block_is_recovered_with_its_subpopulation():
    a, b = _groups(0, planted=True)
    res = modeldiff(a, b, n_components=5, seed=0, n_splits=60)
    assert res.directions.shape == (5, N_TRAIN) and res.projections.shape == (N_TEST, 5)
    assert np.allclose(np.linalg.norm(res.directions, axis=1), 1.0)
    cos = res.directions @ _planted_direction()
    assert abs(cos[0]) > 0.95 and np.all(np.abs(cos[1:]) < 0.3)
    assert set(res.subpopulation(0, PLANTED_TEST.size).tolist()) == set(PLANTED_TEST.tolist())
    top, bottom = res.training_points(0, PLANTED_TRAIN.size)
    assert set(top.tolist()) == set(PLANTED_TRAIN.tolist())  # sign: the block is on top
    assert not set(bottom.tolist()) & set(PLANTED_TRAIN.tolist())
    # high variance under A, low under B, and beyond the seed null
    assert res.variance_a[0] > 2 * res.variance_b[0]
    assert res.null is not None and res.null.p_values[0] <= 2 / 61
    assert np.all(res.null.p_values[1:] > 0.05)
    # B has nothing that A lacks: no direction of B w.r.t. A beats the null
    assert res.reverse is not None and np.all(res.reverse.null.p_values > 0.05)
    # (its residual on the planted rows is the block's absence: the same axis, but with more
    # variance under A than under B)
    assert abs(res.reverse.directions[0] @ _planted_direction()) > 0.9
    assert res.reverse.gaps[0] < 0


def test_averaged_matrices_give_the_same_directions_without_a_null():
    a, b = _groups(1, planted=True)
    stacked = modeldiff(a, b, n_components=3, seed=0, n_splits=10)
    averaged = modeldiff(a.mean(0), b.mean(0), n_components=3, seed=0)
    assert averaged.null is None and averaged.n_models_a == 1
    assert np.allclose(stacked.directions, averaged.directions)
    assert np.allclose(stacked.variance_a, averaged.variance_a)
    assert abs(averaged.directions[0] @ _planted_direction()) > 0.95


@pytest.mark.parametrize("seed", [10, 11, 12, 13, 14])
def test_same_distribution_never_beats_the_half_split_null(seed):
    a, b = _groups(seed, planted=False)
    res = modeldiff(a, b, n_components=5, seed=seed, n_splits=40)
    assert np.all(res.null.p_values > 0.05), res.null.p_values
    assert np.all(res.reverse.null.p_values > 0.05), res.reverse.null.p_values


def test_unequal_groups_like_the_demo():
    a, b = _groups(2, planted=True, m_a=4, m_b=8)
    res = modeldiff(a, b, n_components=3, seed=0, n_splits=40)
    assert abs(res.directions[0] @ _planted_direction()) > 0.9
    assert set(res.null.groups) == {"a", "b"} and res.null.p_values[0] <= 0.05
    same_a, same_b = _groups(3, planted=False, m_a=4, m_b=8)
    assert np.all(modeldiff(same_a, same_b, 3, seed=0, n_splits=40).null.p_values > 0.05)


def test_deterministic_for_a_seed():
    a, b = _groups(4, planted=True)
    one = modeldiff(a, b, 4, seed=7, n_splits=20)
    two = modeldiff(a, b, 4, seed=7, n_splits=20)
    assert np.array_equal(one.directions, two.directions)
    assert np.array_equal(one.null.max_gaps, two.null.max_gaps)


def test_residuals_and_variance_against_brute_force():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(8, 12)), rng.normal(size=(8, 12))
    b[3] = 0.0  # a zero row of B leaves A's row as it is
    r = residuals(a, b)
    for i in range(8):
        bb = float(np.dot(b[i], b[i]))
        expect = a[i] - (np.dot(a[i], b[i]) / bb) * b[i] if bb else a[i]
        assert np.allclose(r[i], expect)
        assert abs(np.dot(r[i], b[i])) < 1e-10
    n = normalize_rows(a)
    assert np.allclose([np.hypot.reduce(row) for row in n], 1.0)
    assert np.all(normalize_rows(np.zeros((2, 3))) == 0)
    # variance share: variance of the projections over the summed column variances
    v = rng.normal(size=(2, 12))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    expect = [np.var(a @ d) / np.var(a, axis=0).sum() for d in v]
    assert np.allclose(variance_share(a, v), expect)
    # every direction's residual projections are the PCA scores of the A-minus-B residual
    res = modeldiff(a, b, 2, seed=0)
    assert np.allclose(res.projections, res.residual_a_minus_b @ res.directions.T)
    assert np.allclose(res.residual_a_minus_b, residuals(normalize_rows(a), normalize_rows(b)))
    assert np.allclose(res.residual_b_minus_a, residuals(normalize_rows(b), normalize_rows(a)))


def test_precomputed_matrices_from_npy_and_safetensors(tmp_path):
    from safetensors.numpy import save_file

    a, b = _groups(6, planted=True, m_a=2, m_b=2)
    np.save(tmp_path / "a.npy", a.mean(0))
    save_file({"theta": b.mean(0).astype(np.float32)}, str(tmp_path / "b.safetensors"))
    save_file({"x": a[0], "y": a[1]}, str(tmp_path / "two.safetensors"))
    res = modeldiff(tmp_path / "a.npy", str(tmp_path / "b.safetensors"), 2, seed=0)
    assert abs(res.directions[0] @ _planted_direction()) > 0.9
    assert load_attribution_matrix(tmp_path / "two.safetensors", key="y").shape == (N_TEST,
                                                                                    N_TRAIN)
    with pytest.raises(ValueError, match="holds 2 tensors"):
        load_attribution_matrix(tmp_path / "two.safetensors")
    with pytest.raises(ValueError, match=".npy or .safetensors"):
        load_attribution_matrix(tmp_path / "a.txt") if (tmp_path / "a.txt").write_text(
            "1") else None
    with pytest.raises(ValueError, match="same test and training points"):
        modeldiff(a.mean(0), b.mean(0)[:, :10])
    with pytest.raises(ValueError, match="n_components"):
        modeldiff(a.mean(0), b.mean(0), n_components=0)


# --------------------------------------------------------------------------- verification

def _toy_model(weights: np.ndarray, texts: list[str], window: int = 5) -> np.ndarray:
    """P(class 1) of a bag-of-words logistic model that reads only the first ``window``
    words (like a tokenizer's max_length)."""
    vocab = {w: i for i, w in enumerate("the a cat dog bank stock zebra fresh rotten".split())}
    out = []
    for t in texts:
        z = sum(weights[vocab.get(w, 0)] for w in t.split()[:window])
        out.append(1 / (1 + np.exp(-z)))
    return np.array(out)


def test_a_transformation_the_models_cannot_see_changes_nothing():
    from embedforensics.transforms.insert import Insert

    rng = np.random.default_rng(0)
    words = "the a cat dog bank stock fresh rotten".split()
    texts = [" ".join(rng.choice(words, size=int(rng.integers(6, 10)))) for _ in range(40)]
    hidden = Insert.from_spec({"phrase": "zebra zebra", "position": "end"}).run(texts)
    seen = Insert.from_spec({"phrase": "zebra", "position": "start"}).run(texts)
    models_a = [rng.normal(size=9) for _ in range(4)]
    models_b = [rng.normal(size=9) for _ in range(6)]
    for w in models_a:  # A learnt the cue, B did not
        w[6] = 3.0
    for w in models_b:
        w[6] = 0.0

    def probs(models, xs):
        return np.stack([_toy_model(w, xs) for w in models])

    for models in (models_a, models_b):
        eff = treatment_effect(probs(models, texts), probs(models, hidden), seed=0)
        assert eff.mean == 0.0 and eff.ci[0] <= 0.0 <= eff.ci[1]
        assert eff.n_models == len(models) and eff.n_test == 40
    ea = treatment_effect(probs(models_a, texts), probs(models_a, seen), seed=0)
    eb = treatment_effect(probs(models_b, texts), probs(models_b, seen), seed=0)
    assert ea.ci[0] > 0.05 and eb.ci[0] <= 0.0 <= eb.ci[1]
    diff = effect_difference(ea.per_model, eb.per_model)
    assert diff.exact and diff.n_permutations == 210 and diff.p_value <= 2 / 210


def test_treatment_effect_of_a_constant_shift():
    rng = np.random.default_rng(1)
    p0 = rng.uniform(0.2, 0.7, size=(3, 50))
    eff = treatment_effect(p0, p0 + 0.1, n_bootstrap=200)
    assert eff.mean == pytest.approx(0.1) and eff.ci == pytest.approx((0.1, 0.1))
    single = treatment_effect(p0[0], p0[0] + rng.normal(0, 0.05, 50), seed=3)
    assert single.n_models == 1 and single.ci[0] < single.mean < single.ci[1]
    with pytest.raises(ValueError, match="models × test points"):
        treatment_effect(p0, p0[:2])


def test_permutation_p_against_scipy():
    from scipy.stats import permutation_test

    rng = np.random.default_rng(2)
    a, b = rng.normal(0.3, 1, 4), rng.normal(0, 1, 8)
    ours = effect_difference(a, b)
    ref = permutation_test((a, b), lambda x, y: abs(np.mean(x) - np.mean(y)),
                           permutation_type="independent", alternative="greater",
                           n_resamples=10**6, vectorized=False)
    assert ours.exact and ours.n_permutations == 495
    assert ours.difference == pytest.approx(a.mean() - b.mean())
    assert ours.p_value == pytest.approx(ref.pvalue)
    big = effect_difference(rng.normal(1, 1, 12), rng.normal(0, 1, 12), n_permutations=500)
    assert not big.exact and 0 < big.p_value <= 1


def test_insert_transform():
    from embedforensics.transforms import build_transform

    t = build_transform("insert", {"phrase": "zebra"})
    assert t.run(["a cat", ""]) == ["zebra a cat", "zebra"]
    end = build_transform("insert", {"phrase": "so good", "position": "end"})
    assert end.run(["a cat"]) == ["a cat so good"]
    from embedforensics.errors import UserError

    with pytest.raises(UserError, match="position"):
        build_transform("insert", {"phrase": "x", "position": "middle"}, key="t")
