"""Model stitching (compare/stitching.py) on tiny models, against known answers."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def tiny_bert_classifier(hidden: int = 32, layers: int = 3, seed: int = 0):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=60, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=32, num_labels=2)
    return BertForSequenceClassification(config).eval()


def token_batches(n_batches: int = 3, size: int = 8, length: int = 10, seed: int = 1):
    """Random token batches with padding (the second half of each batch is shorter)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        ids = torch.randint(5, 60, (size, length), generator=g)
        ids[:, 0] = 2
        mask = torch.ones_like(ids)
        mask[size // 2:, length - 3:] = 0
        ids[mask == 0] = 0
        out.append({"input_ids": ids, "attention_mask": mask,
                    "labels": torch.randint(0, 2, (size,), generator=g)})
    return out


def vector_batches(X: np.ndarray, y: np.ndarray, size: int):
    return [{"inputs": torch.tensor(X[k:k + size], dtype=torch.float32),
             "labels": torch.tensor(y[k:k + size])} for k in range(0, len(X), size)]


# --------------------------------------------------------------------------- direct


def test_direct_recovers_an_invertible_affine_map():
    """B's hidden state 1 is M·(A's hidden state 1) + c with M invertible: `direct` finds
    (M, c) and the stitched model is B exactly (penalty 0, agreement 1, KL 0)."""
    from torch import nn

    from embedforensics.compare.stitching import stitch

    torch.manual_seed(0)
    A = nn.Sequential(nn.Linear(6, 5), nn.Identity(), nn.ReLU(), nn.Linear(5, 3)).eval()
    rng = np.random.default_rng(0)
    M = rng.normal(size=(5, 5)) + 3 * np.eye(5)
    c = rng.normal(size=5)
    B = nn.Sequential(nn.Linear(6, 5), nn.Identity(), nn.Linear(5, 7), nn.Tanh(),
                      nn.Linear(7, 3)).eval()
    with torch.no_grad():
        W1, b1 = A[0].weight.double().numpy(), A[0].bias.double().numpy()
        B[0].weight.copy_(torch.tensor(M @ W1))
        B[0].bias.copy_(torch.tensor(M @ b1 + c))
    X = rng.normal(size=(120, 6))
    with torch.no_grad():
        y = B(torch.tensor(X, dtype=torch.float32)).argmax(1).numpy()
    y[::7] = (y[::7] + 1) % 3  # B is not perfect, so its accuracy is not trivially 1
    fit, test = vector_batches(X[:80], y[:80], 16), vector_batches(X[80:], y[80:], 20)
    r = stitch(A, B, fit, test_batches=test, layer_a=1, layer_b=1, method="direct")
    assert np.allclose(r.weight, M, atol=1e-4) and np.allclose(r.bias, c, atol=1e-4)
    assert r.penalty == 0.0 and r.agreement == 1.0 and r.kl < 1e-9
    assert r.accuracy == r.accuracy_b < 1.0
    assert r.n_fit == 80 and r.n_test == 40 and r.fit_loss < 1e-8


def test_hidden_sizes_may_differ():
    from embedforensics.compare.stitching import stitch

    A, B = tiny_bert_classifier(hidden=32), tiny_bert_classifier(hidden=48, seed=1)
    batches = token_batches(2)
    r = stitch(A, B, batches, layer_a=2, layer_b=1, method="task", steps=3)
    assert r.weight.shape == (48, 32) and r.bias.shape == (48,)
    assert len(r.losses) == 3 and r.probs.shape == (16, 2)
    back = stitch(B, A, batches, layer_a=1, layer_b=2, method="direct")
    assert back.weight.shape == (32, 48)


# --------------------------------------------------------------------------- self-stitch


@pytest.mark.parametrize("method", ["direct", "task", "soft", "fula"])
def test_self_stitch_has_no_penalty(method):
    """A model stitched to itself: T starts at the identity (the least-squares solution)
    and every method keeps the stitched model's predictions equal to the model's own."""
    from embedforensics.compare.stitching import stitch

    A = tiny_bert_classifier()
    batches = token_batches(3)
    with torch.no_grad():  # labels the model gets right (a random model's logits are
        for batch in batches:  # nearly tied, and task loss would fit random labels)
            batch["labels"] = A(input_ids=batch["input_ids"],
                                attention_mask=batch["attention_mask"]).logits.argmax(1)
    r = stitch(A, A, batches, layer_a=2, layer_b=2, method=method, steps=10, lr=1e-3)
    assert r.accuracy_b == 1.0
    assert r.penalty == 0.0 and r.agreement == 1.0 and r.kl < 1e-4
    # T maps the model's own hidden vectors (nearly) onto themselves. W itself need not be
    # the identity: LayerNorm outputs satisfy one linear constraint, so [X, 1] has rank d
    # and least squares returns the minimum-norm solution among the exact ones.
    with torch.no_grad():
        X = torch.cat([A(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                         output_hidden_states=True).hidden_states[2][b["attention_mask"] == 1]
                       for b in batches]).double().numpy()
    moved = np.abs(X @ r.weight.T + r.bias - X).max()
    if method != "task":  # soft and fula start at their optimum; task sharpens margins
        assert moved < (1e-6 if method == "direct" else 0.05 * np.abs(X).max())
    if method == "direct":
        assert r.fit_loss < 1e-10


def test_embeddings_and_last_layer_stitch_points():
    """j = 0 (all of B's blocks after the stitch) and j = n (only pooler + classifier)."""
    from embedforensics.compare.stitching import stitch

    A = tiny_bert_classifier()
    batches = token_batches(2)
    for layer in (0, 3, -1):
        r = stitch(A, A, batches, layer_a=layer, layer_b=layer, method="fula", steps=2)
        assert r.penalty == 0.0 and r.agreement == 1.0
    assert r.layer_a == 3 and len(r.fula_terms) == 2  # stitch point + logits


# --------------------------------------------------------------------------- random init


def test_random_init_front_has_a_large_penalty():
    """B solves sign(x·u) in 20 dimensions. A trained front with a 2-unit hidden layer
    carries the needed direction (small penalty); a randomly initialised one keeps two
    random directions, so no affine stitch can recover B's accuracy (large penalty)."""
    from torch import nn

    from embedforensics.compare.stitching import stitch

    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 20))
    u = rng.normal(size=20)
    y = (X @ u > 0).astype(int)
    Xt, yt = torch.tensor(X[:400], dtype=torch.float32), torch.tensor(y[:400])

    def trained(width: int, seed: int) -> nn.Sequential:
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(20, width), nn.ReLU(), nn.Linear(width, 2))
        opt = torch.optim.Adam(net.parameters(), lr=0.02)
        for _ in range(300):
            opt.zero_grad()
            nn.functional.cross_entropy(net(Xt), yt).backward()
            opt.step()
        return net.eval()

    B = trained(16, 0)
    A_trained = trained(2, 1)
    torch.manual_seed(2)
    A_random = nn.Sequential(nn.Linear(20, 2), nn.ReLU(), nn.Linear(2, 2)).eval()
    fit, test = vector_batches(X[:400], y[:400], 50), vector_batches(X[400:], y[400:], 200)
    kw = {"test_batches": test, "layer_a": 1, "layer_b": 1, "method": "task", "steps": 300,
          "lr": 0.05, "seed": 0}
    good = stitch(A_trained, B, fit, **kw)
    bad = stitch(A_random, B, fit, **kw)
    assert good.accuracy_b > 0.9
    assert good.penalty < 0.1
    assert bad.penalty > 0.25 and bad.penalty_ci[0] > 0.15
    assert bad.agreement < good.agreement and bad.kl > good.kl


# --------------------------------------------------------------------------- FuLA


def test_fula_loss_equals_its_definition_on_a_head():
    """The FuLA objective (T fixed at the direct solution, steps=0) against a numpy
    forward of B's tail and the definition written out term by term."""
    from torch import nn

    from embedforensics.compare.stitching import stitch

    torch.manual_seed(3)
    A = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2)).eval()
    B = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 5), nn.Tanh(),
                      nn.Linear(5, 2)).eval()
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 4))
    y = rng.integers(0, 2, 30)
    batches = vector_batches(X, y, 30)  # one batch: the objective over the whole set
    for weighting in ("linear", "uniform"):
        r = stitch(A, B, batches, layer_a=1, layer_b=1, method="fula", steps=0,
                   fula_weighting=weighting)
        P = {k: v.double().numpy() for k, v in B.state_dict().items()}
        a = np.tanh(X @ A[0].weight.detach().double().numpy().T
                   + A[0].bias.detach().double().numpy())
        b1 = np.maximum(X @ P["0.weight"].T + P["0.bias"], 0)
        b2 = np.tanh(b1 @ P["2.weight"].T + P["2.bias"])
        z = b2 @ P["4.weight"].T + P["4.bias"]
        s1 = a @ r.weight.T + r.bias
        s2 = np.tanh(s1 @ P["2.weight"].T + P["2.bias"])
        zs = s2 @ P["4.weight"].T + P["4.bias"]
        terms = []
        for mine, theirs in ((s1, b1), (s2, b2), (zs, z)):
            err = np.mean([np.sum((mine[n] - theirs[n]) ** 2) for n in range(30)])
            var = np.mean([np.sum((theirs[n] - theirs.mean(0)) ** 2) for n in range(30)])
            terms.append(err / var)
        w = np.array([1.0, 2.0, 3.0]) if weighting == "linear" else np.ones(3)
        expected = float(np.dot(w / w.sum(), terms))
        assert r.fula_terms == pytest.approx(terms, rel=1e-4)
        assert r.fit_loss == pytest.approx(expected, rel=1e-4)


def test_fula_loss_equals_its_definition_on_bert():
    """The same on a BERT classifier with padding: the brute force runs the stitched model
    through transformers' own forward (a hook puts T(A's state) in place of B's block
    output) and averages over the non-padding tokens one by one."""
    from embedforensics.compare.stitching import stitch

    A, B = tiny_bert_classifier(seed=0), tiny_bert_classifier(seed=5)
    (batch,) = token_batches(1, size=6, length=9, seed=4)
    j = 1
    r = stitch(A, B, [batch], layer_a=2, layer_b=j, method="fula", steps=0)
    W, b = torch.tensor(r.weight, dtype=torch.float32), torch.tensor(r.bias,
                                                                      dtype=torch.float32)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        a = A(**inputs, output_hidden_states=True).hidden_states[2]
        own = B(**inputs, output_hidden_states=True)
        targets = [own.hidden_states[d] for d in range(j, 4)] + [own.logits]
        seen = []

        def replace(module, args, output):
            new = a @ W.T + b
            seen.append(new)
            return (new, *output[1:]) if isinstance(output, tuple) else new

        def collect(module, args, output):
            seen.append(output[0] if isinstance(output, tuple) else output)

        layers = B.bert.encoder.layer
        handles = [layers[j - 1].register_forward_hook(replace)]
        handles += [layer.register_forward_hook(collect) for layer in layers[j:]]
        try:
            stitched_logits = B(**inputs).logits
        finally:
            for h in handles:
                h.remove()
    mask = batch["attention_mask"].numpy()
    terms = []
    for mine, theirs in zip([*seen, stitched_logits], targets, strict=True):
        mine, theirs = mine.double().numpy(), theirs.double().numpy()
        if theirs.ndim == 2:
            rows_t, rows_m = list(theirs), list(mine)
        else:
            rows_t = [theirs[n, t] for n in range(6) for t in range(9) if mask[n, t]]
            rows_m = [mine[n, t] for n in range(6) for t in range(9) if mask[n, t]]
        mean = np.mean(rows_t, axis=0)
        err = np.mean([np.sum((m - t) ** 2) for m, t in zip(rows_m, rows_t, strict=True)])
        var = np.mean([np.sum((t - mean) ** 2) for t in rows_t])
        terms.append(err / var)
    w = np.arange(1, len(terms) + 1) / np.arange(1, len(terms) + 1).sum()
    assert len(terms) == 4  # stitch point, blocks 2 and 3, logits
    assert r.fula_terms == pytest.approx(terms, rel=1e-3)
    assert r.fit_loss == pytest.approx(float(np.dot(w, terms)), rel=1e-3)


# --------------------------------------------------------------------------- seeds


def test_seeded_runs_repeat_exactly():
    from embedforensics.compare.stitching import stitch

    A, B = tiny_bert_classifier(seed=0), tiny_bert_classifier(seed=1)
    batches = token_batches(3)
    runs = [stitch(A, B, batches, layer_a=2, layer_b=2, method=m, steps=6, lr=1e-2,
                   seed=s) for m, s in (("soft", 7), ("soft", 7), ("soft", 8))]
    first, again, other = runs
    assert first.losses == again.losses and np.array_equal(first.weight, again.weight)
    assert first.to_dict() == again.to_dict()
    assert first.losses != other.losses  # another seed visits the batches in another order


def test_bad_arguments():
    from embedforensics.compare.stitching import stitch

    A = tiny_bert_classifier()
    batches = token_batches(1)
    with pytest.raises(ValueError, match="unknown stitching method 'fulla'"):
        stitch(A, A, batches, layer_a=1, layer_b=1, method="fulla")
    with pytest.raises(ValueError, match="layer 9 is not a hidden state"):
        stitch(A, A, batches, layer_a=9, layer_b=1)
    no_labels = [{k: v for k, v in batches[0].items() if k != "labels"}]
    with pytest.raises(ValueError, match="needs labels"):
        stitch(A, A, no_labels, layer_a=1, layer_b=1, method="task", steps=1)
    r = stitch(A, A, no_labels, layer_a=1, layer_b=1, method="soft", steps=1)
    assert r.accuracy is None and r.penalty is None and r.agreement == 1.0
