"""Tests for trace-NTK kernels (embedforensics.compare.trntk) and kGLM surrogates (.kglm)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

from embedforensics.compare import (
    HFClassifierLogits,
    attribute,
    compare_attributions,
    faithfulness,
    fit_kglm,
    gradient_features,
    kernel_contributions,
    naive_trntk_kernel,
    network_probabilities,
    projection_error,
    select_parameters,
    trntk_kernel,
)

RTOL = 1e-6


def _mlp(n_out: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(),
                         nn.Linear(8, n_out)).double()


def _x(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.fixture(scope="module")
def tiny_bert() -> tuple[HFClassifierLogits, dict[str, torch.Tensor]]:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, vocab_size=100, num_labels=3)
    model = HFClassifierLogits(BertForSequenceClassification(cfg).double())
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 100, (5, 7), generator=gen)
    mask = torch.ones(5, 7, dtype=torch.long)
    mask[0, 5:] = 0
    mask[3, 2:] = 0
    return model, {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("kind", ["trntk", "trntk0", "pntk"])
@pytest.mark.parametrize("params", ["all", "head", 2, ["0"]])
def test_mlp_matches_naive_autograd_loop(kind: str, params: object) -> None:
    model = _mlp()
    xa, xb = _x(6, 1), _x(4, 2)
    fast = trntk_kernel(model, xa, xb, kind=kind, params=params, batch_size=4)
    slow = naive_trntk_kernel(model, xa, xb, kind=kind, params=params)
    assert fast.shape == (6, 4)
    assert _rel(fast, slow) < RTOL


def test_binary_one_output_network_has_c_equal_one() -> None:
    model = _mlp(n_out=1)
    x = _x(5, 3)
    fast = trntk_kernel(model, x, kind="trntk0")
    slow = naive_trntk_kernel(model, x, kind="trntk0")
    assert _rel(fast, slow) < RTOL
    # with C = 1 the pNTK and the unnormalised trNTK coincide
    np.testing.assert_allclose(trntk_kernel(model, x, kind="pntk"), fast, rtol=1e-12)


def test_parameter_subsets_select_expected_names(tiny_bert) -> None:
    model = _mlp()
    assert select_parameters(model, "head") == ["4.weight", "4.bias"]
    assert select_parameters(model, 2) == ["2.weight", "2.bias", "4.weight", "4.bias"]
    assert select_parameters(model, "all") == [n for n, _ in model.named_parameters()]
    bert, _ = tiny_bert
    assert select_parameters(bert, "head") == ["model.classifier.weight", "model.classifier.bias"]
    names = select_parameters(bert, ["layer.1", "classifier"])
    assert names and all(".layer.1." in n or ".classifier." in n for n in names)
    with pytest.raises(ValueError, match="matches no"):
        select_parameters(model, ["nope"])
    with pytest.raises(ValueError, match="k <="):
        select_parameters(model, 4)
    with pytest.raises(ValueError):
        select_parameters(model, "some")


@pytest.mark.parametrize("kind,params", [("trntk", "all"), ("trntk0", ["layer.1", "classifier"]),
                                         ("pntk", "head"), ("trntk", 3)])
def test_tiny_hf_classifier_matches_naive_loop(tiny_bert, kind: str, params: object) -> None:
    model, inputs = tiny_bert
    model.train()  # trntk_kernel must switch to eval (no dropout under vmap) and restore
    fast = trntk_kernel(model, inputs, kind=kind, params=params, batch_size=2)
    assert model.training
    slow = naive_trntk_kernel(model, inputs, kind=kind, params=params)
    assert model.training
    model.eval()
    assert _rel(fast, slow) < RTOL


@pytest.mark.parametrize("params", [["layer.1", "classifier"], "head", ["layer.0", "pooler"]])
def test_hf_prefix_split_and_padding_trim_give_the_same_kernel(tiny_bert, params) -> None:
    model, inputs = tiny_bert
    names = select_parameters(model, params)
    plan = model.gradient_split(names)
    assert plan is not None  # the BERT suffix holds every selected parameter
    prefix, suffix = plan
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(suffix(prefix(inputs)), model(inputs), rtol=1e-10,
                                   atol=1e-10)
    # extra all-padding columns and a split prefix change nothing
    padded = {"input_ids": torch.cat([inputs["input_ids"], torch.zeros(5, 4).long()], 1),
              "attention_mask": torch.cat([inputs["attention_mask"],
                                           torch.zeros(5, 4).long()], 1)}
    split = trntk_kernel(model, padded, kind="trntk0", params=params, batch_size=2)
    whole = gradient_features(model, inputs, kind="trntk0", params=params, split=False)
    whole_k = (whole.reshape(5, -1) @ whole.reshape(5, -1).T).numpy()
    assert _rel(split, whole_k) < RTOL
    assert _rel(split, naive_trntk_kernel(model, inputs, kind="trntk0", params=params)) < RTOL
    # a selected embedding parameter cannot be split off: the whole model is used
    assert model.gradient_split(select_parameters(model, "all")) is None


def test_hf_wrapper_mask_matches_plain_model(tiny_bert) -> None:
    model, inputs = tiny_bert
    model.eval()
    with torch.no_grad():
        ours = model(inputs)
        ref = model.model(**inputs).logits
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


def test_normalised_kernel_symmetric_psd_unit_diagonal(tiny_bert) -> None:
    for model, x in [(_mlp(), _x(8, 4)), tiny_bert]:
        k = trntk_kernel(model, x, kind="trntk", batch_size=3)
        np.testing.assert_array_equal(k, k.T)
        np.testing.assert_allclose(np.diag(k), 1.0, atol=1e-12)
        assert np.linalg.eigvalsh(k).min() > -1e-10
        assert np.all(np.abs(k) <= 1 + 1e-12)


def test_conjugate_and_embedding_kernels(tiny_bert) -> None:
    model = _mlp()
    xa, xb = _x(6, 5), _x(3, 6)
    with torch.no_grad():
        fa, fb = model[:-1](xa).numpy(), model[:-1](xb).numpy()
    np.testing.assert_allclose(trntk_kernel(model, xa, xb, kind="conjugate"), fa @ fb.T,
                               rtol=1e-12)
    np.testing.assert_allclose(trntk_kernel(model, xa, kind="embedding"),
                               xa.numpy() @ xa.numpy().T, rtol=1e-12)
    bert, inputs = tiny_bert
    bert.eval()
    with torch.no_grad():
        out = bert.model(**inputs, output_hidden_states=True)
        pooled = bert.model.bert.pooler(out.hidden_states[-1]).numpy()
        emb = bert.model.get_input_embeddings()(inputs["input_ids"])
        m = inputs["attention_mask"].double()[..., None]
        mean = ((emb * m).sum(1) / m.sum(1)).numpy()
    np.testing.assert_allclose(trntk_kernel(bert, inputs, kind="conjugate"), pooled @ pooled.T,
                               rtol=1e-10)
    np.testing.assert_allclose(trntk_kernel(bert, inputs, kind="embedding"), mean @ mean.T,
                               rtol=1e-10)


def test_inputs_b_none_equals_explicit_b() -> None:
    model, x = _mlp(), _x(5, 7)
    np.testing.assert_allclose(trntk_kernel(model, x), trntk_kernel(model, x, x), atol=1e-14)


@pytest.mark.parametrize("projection", ["rademacher", "gaussian"])
def test_projection_converges_and_is_unbiased(projection: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 40), nn.Tanh(), nn.Linear(40, 3)).double()  # P = 363
    x = _x(6, 8)
    exact = trntk_kernel(model, x, kind="trntk0")
    errs = []
    for k in (8, 64, 512, 4096):
        errs.append(np.mean([projection_error(exact, trntk_kernel(
            model, x, kind="trntk0", projection_dim=k, projection=projection, seed=s,
            chunk_rows=100))["rel_fro"] for s in range(2)]))
    assert all(a > b for a, b in zip(errs, errs[1:], strict=False)), errs
    assert errs[-1] < 0.05
    # unbiased: the mean over seeds of a small-k kernel is much closer than one draw
    draws = [trntk_kernel(model, x, kind="trntk0", projection_dim=16, projection=projection,
                          seed=s) for s in range(32)]
    single = np.mean([projection_error(exact, d)["rel_fro"] for d in draws])
    mean_err = projection_error(exact, np.mean(draws, 0))["rel_fro"]
    assert mean_err < single / 3, (mean_err, single)  # 1/sqrt(32) ~ 0.18 if unbiased
    # deterministic given the seed, different across seeds
    a = trntk_kernel(model, x, projection_dim=32, projection=projection, seed=3)
    np.testing.assert_array_equal(a, trntk_kernel(model, x, projection_dim=32,
                                                  projection=projection, seed=3))
    assert not np.allclose(a, trntk_kernel(model, x, projection_dim=32, projection=projection,
                                           seed=4))


def test_projection_equals_documented_chunked_matrix() -> None:
    from embedforensics.compare.trntk import _projection_chunk, gradient_features

    model, x = _mlp(), _x(7, 10)
    exact = gradient_features(model, x, kind="trntk", params=2)  # [7, 3, P] float64
    k, rows = 24, 5
    blocks = []
    for index, name in enumerate(select_parameters(model, 2)):
        size = dict(model.named_parameters())[name].numel()
        blocks += [_projection_chunk(11, index, c, min(size, r0 + rows) - r0, k, "gaussian",
                                     torch.float64, torch.device("cpu"))
                   for c, r0 in enumerate(range(0, size, rows))]
    r = torch.cat(blocks)
    proj = gradient_features(model, x, kind="trntk", params=2, projection_dim=k,
                             projection="gaussian", seed=11, chunk_rows=rows, batch_size=3)
    torch.testing.assert_close(proj, exact @ r, rtol=1e-10, atol=1e-12)
    # the per-call projection cache changes nothing
    uncached = gradient_features(model, x, kind="trntk", params=2, projection_dim=k,
                                 projection="gaussian", seed=11, chunk_rows=rows, batch_size=3,
                                 projection_cache_bytes=0)
    torch.testing.assert_close(proj, uncached, rtol=0, atol=0)


def test_kernel_input_validation() -> None:
    model, x = _mlp(), _x(4, 9)
    with pytest.raises(ValueError, match="kind"):
        trntk_kernel(model, x, kind="ntk")
    with pytest.raises(ValueError, match="projection_dim"):
        trntk_kernel(model, x, projection_dim=0)
    with pytest.raises(ValueError, match="projection"):
        trntk_kernel(model, x, projection_dim=4, projection="sparse")
    with pytest.raises(ValueError, match="max_bytes"):
        trntk_kernel(model, x, max_bytes=10)
    with pytest.raises(ValueError, match="batch sizes"):
        trntk_kernel(model, {"a": torch.zeros(3, 2), "b": torch.zeros(4, 2)})
    with pytest.raises(ValueError, match="tensor"):
        trntk_kernel(model, [1, 2, 3])


# ----------------------------------------------------------------------------- kGLM


@pytest.fixture(scope="module")
def small_problem() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    x = torch.tensor(rng.normal(size=(60, 5)))
    y = (x[:, 0] + 0.5 * x[:, 1] ** 2 > 0.4).long().numpy()
    model = _mlp(n_out=2)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[:40]), torch.tensor(y[:40])).backward()
        opt.step()
    k_train = trntk_kernel(model, x[:40])
    k_test = trntk_kernel(model, x[40:], x[:40])
    with torch.no_grad():
        logits = model(x[40:]).numpy()
    return {"k_train": k_train, "k_test": k_test, "y_train": y[:40], "y_test": y[40:],
            "logits": logits}


def test_kglm_matches_sklearn_and_attributions_sum_to_logit(small_problem) -> None:
    p = small_problem
    # the former default convention, now named options (the default is the paper's SGD fit)
    glm = fit_kglm(p["k_train"], p["y_train"], seed=0, reg_c=1.0, class_weight=None,
                   solver="lbfgs")
    clf = LogisticRegression(C=1.0, max_iter=2000, tol=1e-8).fit(p["k_train"], p["y_train"])
    np.testing.assert_allclose(glm.predict_proba(p["k_test"]), clf.predict_proba(p["k_test"]),
                               atol=1e-10)
    logits = glm.logits(p["k_test"])
    for target in ("predicted", "true"):
        att = attribute(glm, p["k_test"], top_k=5, target=target, y_test=p["y_test"])
        rows = np.arange(len(att.logit))
        np.testing.assert_allclose(att.contributions.sum(1) + att.intercept,
                                   logits[rows, att.class_index], atol=1e-10)
        np.testing.assert_allclose(att.logit, logits[rows, att.class_index], atol=1e-10)
        assert att.indices.shape == (20, 5)
        assert np.all(np.diff(att.scores, axis=1) <= 0)
        np.testing.assert_allclose(att.scores[:, 0], att.contributions.max(1))
    att = attribute(glm, p["k_test"], target="predicted")
    np.testing.assert_array_equal(glm.classes[att.class_index], glm.predict(p["k_test"]))
    res = faithfulness(glm.predict_proba(p["k_test"]), p["logits"], p["y_test"])
    d = res.to_dict()
    assert d["n_test"] == 20 and -1 <= d["kendall_tau"] <= 1
    assert d["tad"] == pytest.approx(d["accuracy_kglm"] - d["accuracy_network"])


def test_multiclass_kglm_contributions() -> None:
    rng = np.random.default_rng(1)
    f = rng.normal(size=(30, 4))
    k = f @ f.T
    y = rng.integers(0, 3, size=30)
    glm = fit_kglm(k, y, reg_c=0.5)
    assert glm.coef.shape == (3, 30)
    c = rng.integers(0, 3, size=30)
    contrib = kernel_contributions(glm, k, c)
    np.testing.assert_allclose(contrib.sum(1) + glm.intercept[c],
                               glm.logits(k)[np.arange(30), c], atol=1e-10)
    with pytest.raises(ValueError):
        fit_kglm(k, np.zeros(30))
    with pytest.raises(ValueError):
        fit_kglm(k[:, :5], y)


def test_faithfulness_hand_computed() -> None:
    y = np.array([0, 1, 1, 0, 1])
    ps = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.1, 0.9]])
    # network: one logit; wrong on points 2 and 4
    z = np.array([-2.0, 1.0, -0.5, -1.0, -0.1])
    res = faithfulness(ps, z, y, tau_scores="true_class")  # τ on true-class probabilities
    assert res.accuracy_kglm == pytest.approx(0.6)  # wrong on 2, 3
    assert res.accuracy_network == pytest.approx(0.6)  # wrong on 2, 4
    assert res.tad == pytest.approx(0.0)
    assert res.jaccard_misclassified == pytest.approx(1 / 3)
    assert (res.n_misclassified_both, res.n_misclassified_either) == (1, 3)
    pn = network_probabilities(z)
    from scipy.stats import kendalltau

    rows = np.arange(5)
    assert res.kendall_tau == pytest.approx(kendalltau(ps[rows, y], pn[rows, y]).statistic)
    perfect = faithfulness(np.eye(2)[y], np.eye(2)[y] * 5, y)
    assert perfect.jaccard_misclassified == 1.0 and perfect.tad == 0.0
    with pytest.raises(ValueError, match="not among"):
        faithfulness(ps, z, np.array([0, 1, 2, 0, 1]))


def test_compare_attributions() -> None:
    rng = np.random.default_rng(2)
    a = rng.normal(size=(10, 30))
    same = compare_attributions(a, a)
    assert same.mean == pytest.approx(1.0) and same.std == pytest.approx(0.0)
    rev = compare_attributions(a, -a, method="kendall")
    assert rev.mean == pytest.approx(-1.0)
    noisy = compare_attributions(a, a + rng.normal(size=a.shape), method="spearman")
    assert 0.3 < noisy.mean < 0.95 and noisy.n_test == 10 and noisy.std > 0
    assert set(noisy.to_dict()) >= {"mean", "std", "median", "q25", "q75", "n_test"}
    with pytest.raises(ValueError):
        compare_attributions(a, a[:, :5])
    with pytest.raises(ValueError):
        compare_attributions(a, a, method="pearson")


@pytest.mark.parametrize("kind", ["trntk", "trntk0", "pntk"])
@pytest.mark.parametrize("max_bytes", [3000, 12_000])
def test_blockwise_exact_kernel_matches_in_memory_path(kind: str, max_bytes: int) -> None:
    from embedforensics.compare.trntk import _exact_blocks

    model, xa, xb = _mlp(), _x(9, 12), _x(5, 13)
    full_aa = trntk_kernel(model, xa, kind=kind, batch_size=4)
    full_ab = trntk_kernel(model, xa, xb, kind=kind, batch_size=4)
    # P = 187 parameters, C = 3: 9 + 5 rows need 14 * 3 * 187 * 8 B = 63 kB in memory
    blocks = _exact_blocks(model, xa, xb, kind, "all", max_bytes)
    assert blocks is not None and len(blocks) > 1
    if max_bytes == 3000:  # some tensor is split over example blocks too
        assert any(rows < 14 for _, rows in blocks)
    streamed_aa = trntk_kernel(model, xa, kind=kind, batch_size=4, max_bytes=max_bytes)
    streamed_ab = trntk_kernel(model, xa, xb, kind=kind, batch_size=4, max_bytes=max_bytes)
    np.testing.assert_allclose(streamed_aa, full_aa, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(streamed_ab, full_ab, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(streamed_aa, streamed_aa.T)
    assert _rel(streamed_ab, naive_trntk_kernel(model, xa, xb, kind=kind)) < RTOL


def test_blockwise_exact_kernel_on_hf_split(tiny_bert) -> None:
    model, inputs = tiny_bert
    params = ["layer.1", "classifier"]
    full = trntk_kernel(model, inputs, kind="trntk", params=params, batch_size=2)
    streamed = trntk_kernel(model, inputs, kind="trntk", params=params, batch_size=2,
                            max_bytes=120_000)
    np.testing.assert_allclose(streamed, full, rtol=1e-10, atol=1e-12)


def test_wrapper_keeps_the_models_mode_through_a_kernel(tmp_path):
    """Kernels restore the module's mode afterwards; wrapping an eval-mode checkpoint must
    not leave it in training mode (dropout on) for the comparators that run next."""
    from transformers import BertConfig, BertForSequenceClassification

    from embedforensics.compare.trntk import HFClassifierLogits, trntk_kernel

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, num_labels=2)).eval()
    wrapper = HFClassifierLogits(model)
    assert not wrapper.training
    ids = torch.randint(5, 30, (3, 6))
    trntk_kernel(wrapper, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    assert not model.training and not any(m.training for m in model.modules())
