r"""Kernel GLM surrogates, their faithfulness to the network, and kernel attributions.

Engel et al. (ICLR 2024, arXiv 2305.14585) fit a kernel general linear model (kGLM) on a
network's trNTK (:func:`embedforensics.compare.trntk.trntk_kernel`) and ask how faithfully it
mimics the network; a faithful surrogate explains each test prediction as a sum over training
points, and two models whose explanations differ are different models.

* :func:`fit_kglm` — multinomial logistic regression (scikit-learn, seeded) on the rows
  of the normalised ``train × train`` kernel with the ground-truth labels. Test logits are
  ``z_c(x) = Σ_j W[c, j] K(x, x_j) + b_c``. For two classes scikit-learn fits one logit
  ``z``; it is reported as the pair ``(−z/2, +z/2)`` so that the softmax equals
  ``predict_proba`` and the per-class decomposition below stays exact.
* :func:`faithfulness` — TAD = test accuracy(kGLM) − test accuracy(network); Kendall τ
  (``scipy.stats.kendalltau``, τ-b) between the two models' scores (see below); Jaccard
  overlap of the misclassified sets (1.0 when both sets are empty); all with ``n``.

**The paper's conventions (defaults here).** Established from the authors' code,
pnnl/projection_ntk (``scripts/smallmodeltrain/Analyze_multiple_NTK_MLP_MNIST2.py``, which
fits the kGLM, and ``experiments/create_table_metrics.ipynb``, whose ``make_no_forward_fit``
computes the τ = 0.7077 ± 0.0034 reported for the MNIST2 MLP; ± is the standard error over
100 seeds, so the seed standard deviation is about 0.034):

* *Which scores.* τ is computed between the kGLM's score of **class 1** (its logit through a
  monotone map, so equivalently its probability) and the network's **sigmoid output for
  class 1**, over all test points, after **dropping points whose network output is
  saturated** (exactly 0 or 1 in float32; the BERT notebook also drops saturated kGLM
  scores, the MNIST2-MLP analysis only the network's, whose float32 sigmoid saturates above
  a logit of about 16.6). It is not the true-class probability: for a binary model
  the true-class probability folds the two halves of the test set onto each other (a point
  of class 0 scored 0.1 and one of class 1 scored 0.9 become ties), which is why the former
  default here gave τ far below the paper's. ``tau_scores="class"`` (default) does the
  paper's: for two classes the class-1 column; for more classes (not covered by that code)
  the mean over classes of the per-class τ. ``tau_scores="true_class"`` keeps the former
  convention (no saturation mask unless asked).
* *Which kGLM.* ``SGDClassifier(loss="log_loss", penalty="l2", alpha=1e-4,
  fit_intercept=True, class_weight="balanced")`` on the cosine-normalised train kernel:
  per-sample L2 strength ``α = 1e-4``, i.e. the objective ``mean(loss) + α/2 ‖w‖²``, which
  is scikit-learn's ``LogisticRegression`` with ``C = 1 / (α n_train)`` (C = 1 at the
  paper's 10,000 training points; about 40 at 250). The regularisation therefore weakens as
  the training set shrinks; a fixed ``C`` does not. Defaults here: ``alpha=1e-4``,
  ``class_weight="balanced"``, ``solver="sgd"`` — the authors' stochastic fit, which stops
  early (scikit-learn's defaults ``max_iter=1000, tol=1e-3``; seeded here).
  ``solver="lbfgs"`` solves the same objective to convergence (deterministic) but is *not*
  the paper's surrogate: on digits (benchmarks/bench_trntk_faithfulness.py) it gave a
  lower τ than the early-stopped fit. ``reg_c`` sets ``C`` directly (the former default
  was ``reg_c=1.0, class_weight=None, solver="lbfgs"``).
* :func:`kernel_contributions` / :func:`attribute` — contribution of training point ``j`` to
  the logit of class ``c`` at test point ``x``: ``W[c, j] K(x, x_j)``; contributions plus the
  intercept sum to the surrogate logit. :func:`attribute` returns the top-k indices + scores
  for the predicted (or true) class.
* :func:`compare_attributions` — Spearman or Kendall rank correlation of two models'
  contribution vectors at the same test points (same training set), with mean, spread and n.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats
from sklearn.linear_model import LogisticRegression


def _as_2d(name: str, k: Any) -> np.ndarray:
    arr = np.asarray(k, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D kernel matrix, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has non-finite entries")
    return arr


@dataclass
class KernelGLM:
    """A fitted kernel GLM: ``logits = K(test, train) @ coef.T + intercept`` (``[n, C]``)."""

    coef: np.ndarray  # [C, n_train]
    intercept: np.ndarray  # [C]
    classes: np.ndarray  # [C] label values
    n_train: int
    reg_c: float  # the effective inverse L2 strength C (= 1 / (alpha * n_train))
    seed: int
    alpha: float = float("nan")  # the effective per-sample L2 strength
    solver: str = "lbfgs"
    class_weight: str | None = None

    def logits(self, k_test_train: Any) -> np.ndarray:
        """Per-class surrogate logits ``[n_test, C]`` from the ``test × train`` kernel."""
        k = _as_2d("k_test_train", k_test_train)
        if k.shape[1] != self.n_train:
            raise ValueError(f"kernel has {k.shape[1]} train columns, the kGLM {self.n_train}")
        return k @ self.coef.T + self.intercept

    def predict_proba(self, k_test_train: Any) -> np.ndarray:
        """Softmax of :meth:`logits` (equals scikit-learn's ``predict_proba``)."""
        z = self.logits(k_test_train)
        z = z - z.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)

    def predict(self, k_test_train: Any) -> np.ndarray:
        """Predicted label values."""
        return self.classes[np.argmax(self.logits(k_test_train), 1)]


KGLM_ALPHA = 1e-4
"""Per-sample L2 strength of the kGLM in Engel et al.'s code (``SGDClassifier(alpha=1e-4)``)."""


def fit_kglm(k_train: Any, y_train: Any, *, reg_c: float | None = None,
             alpha: float = KGLM_ALPHA, class_weight: str | None = "balanced",
             solver: str = "sgd", seed: int = 0, max_iter: int = 2000) -> KernelGLM:
    """Fit a (multinomial) logistic regression on the rows of the ``train × train`` kernel.

    Default: the paper's kGLM — scikit-learn's ``SGDClassifier`` with log-loss, L2 strength
    ``alpha`` per sample, balanced class weights, as the authors' code fits it (stochastic,
    stops at ``tol=1e-3``; seeded by ``seed``). ``solver="lbfgs"``: ``LogisticRegression``
    with ``C = 1/(alpha n)``, the same objective solved to convergence (``max_iter``).
    ``reg_c`` sets ``C`` directly instead of ``alpha`` (``alpha = 1/(reg_c n)`` for SGD).
    """
    k = _as_2d("k_train", k_train)
    y = np.asarray(y_train)
    if k.shape[0] != k.shape[1]:
        raise ValueError(f"k_train must be square, got {k.shape}")
    if y.shape != (k.shape[0],):
        raise ValueError(f"y_train must have shape ({k.shape[0]},), got {y.shape}")
    if len(np.unique(y)) < 2:
        raise ValueError("y_train needs at least two classes")
    if reg_c is not None and not reg_c > 0:
        raise ValueError(f"reg_c must be positive, got {reg_c}")
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    if class_weight not in (None, "balanced"):
        raise ValueError(f"class_weight must be None or 'balanced', got {class_weight!r}")
    n = k.shape[0]
    c_eff = float(reg_c) if reg_c is not None else 1.0 / (alpha * n)
    a_eff = 1.0 / (c_eff * n)
    if solver == "lbfgs":
        clf = LogisticRegression(C=c_eff, class_weight=class_weight, max_iter=max_iter,
                                 random_state=seed, tol=1e-8)
    elif solver == "sgd":
        from sklearn.linear_model import SGDClassifier

        clf = SGDClassifier(loss="log_loss", penalty="l2", alpha=a_eff, fit_intercept=True,
                            class_weight=class_weight, random_state=seed)
    else:
        raise ValueError(f"solver must be 'lbfgs' or 'sgd', got {solver!r}")
    clf.fit(k, y)
    coef, intercept = clf.coef_.astype(np.float64), clf.intercept_.astype(np.float64)
    if coef.shape[0] == 1:  # binary: one logit z -> (-z/2, z/2)
        coef = np.vstack([-coef / 2, coef / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    return KernelGLM(coef=coef, intercept=intercept, classes=clf.classes_, n_train=n,
                     reg_c=c_eff, seed=int(seed), alpha=a_eff, solver=solver,
                     class_weight=class_weight)


def network_probabilities(logits: Any) -> np.ndarray:
    """Class probabilities ``[n, C]`` from network logits ``[n, C]``, or ``[n]``/``[n, 1]``
    (one binary logit, ``p(class 1) = σ(z)``)."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 2 and z.shape[1] == 1:
        z = z[:, 0]
    if z.ndim == 1:
        p1 = 1.0 / (1.0 + np.exp(-z))
        return np.stack([1 - p1, p1], 1)
    if z.ndim != 2:
        raise ValueError(f"logits must be [n], [n, 1] or [n, C], got shape {z.shape}")
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


@dataclass
class FaithfulnessResult:
    """How faithfully a kGLM mimics the network on a test set (Engel et al., §3)."""

    tad: float  # test accuracy(kGLM) - test accuracy(network)
    kendall_tau: float  # on the scores named by tau_scores
    kendall_pvalue: float
    jaccard_misclassified: float
    accuracy_network: float
    accuracy_kglm: float
    n_test: int
    n_misclassified_network: int
    n_misclassified_kglm: int
    n_misclassified_both: int
    n_misclassified_either: int
    tau_scores: str = "true_class"
    n_tau: int = 0  # scores the τ used (after dropping saturated ones), summed over classes
    kendall_tau_true_class: float = float("nan")  # the former convention, for comparison

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for JSON reports."""
        return asdict(self)


TAU_SCORES = ("class", "true_class")


def _saturated(p: np.ndarray) -> np.ndarray:
    """Scores that are exactly 0 or 1 once rounded to float32 (the paper's outputs were)."""
    p32 = p.astype(np.float32)
    return (p32 == 0) | (p32 == 1)


def _kendall(a: np.ndarray, b: np.ndarray, mask: bool) -> tuple[float, float, int]:
    """τ-b of kGLM scores ``a`` and network scores ``b``, dropping saturated network scores
    when ``mask`` (as the MNIST2-MLP analysis did; its kGLM scores went through a monotone
    map that never reaches 0 or 1)."""
    keep = ~_saturated(b) if mask else np.ones(a.shape, bool)
    if keep.sum() < 2:
        return float("nan"), float("nan"), int(keep.sum())
    res = stats.kendalltau(a[keep], b[keep])
    return float(res.statistic), float(res.pvalue), int(keep.sum())


def faithfulness(kglm_probs: Any, network_logits: Any, y_test: Any,
                 classes: Any | None = None, *, tau_scores: str = "class",
                 mask_saturated: bool | None = None) -> FaithfulnessResult:
    """TAD, Kendall τ between the two models' scores, and Jaccard of misclassified sets.

    ``kglm_probs`` ``[n, C]`` (e.g. :meth:`KernelGLM.predict_proba`); ``network_logits`` as in
    :func:`network_probabilities`; ``y_test`` label values, mapped to columns by ``classes``
    (default ``0..C-1``). ``tau_scores``: ``"class"`` (default; Engel et al.'s: class-1
    probabilities for two classes, else the mean over classes of per-class τ) or
    ``"true_class"`` (each point's true-class probability). ``mask_saturated`` drops
    points whose network score is exactly 0 or 1 in float32 (default: on for ``"class"``,
    as in the paper's code; off for ``"true_class"``).
    """
    if tau_scores not in TAU_SCORES:
        raise ValueError(f"tau_scores must be one of {TAU_SCORES}, got {tau_scores!r}")
    if mask_saturated is None:
        mask_saturated = tau_scores == "class"
    ps = np.asarray(kglm_probs, dtype=np.float64)
    pn = network_probabilities(network_logits)
    y = np.asarray(y_test)
    if ps.ndim != 2 or ps.shape != pn.shape:
        raise ValueError(f"kglm_probs {ps.shape} and network probabilities {pn.shape} differ")
    if y.shape != (ps.shape[0],) or ps.shape[0] < 2:
        raise ValueError(f"y_test must have shape ({ps.shape[0]},) with n >= 2")
    cls = np.arange(ps.shape[1]) if classes is None else np.asarray(classes)
    lookup = {c: i for i, c in enumerate(cls.tolist())}
    try:
        yi = np.array([lookup[v] for v in y.tolist()])
    except KeyError as err:
        raise ValueError(f"label {err.args[0]!r} is not among classes {cls.tolist()}") from None
    rows = np.arange(len(yi))
    wrong_s = np.argmax(ps, 1) != yi
    wrong_n = np.argmax(pn, 1) != yi
    true_tau = stats.kendalltau(ps[rows, yi], pn[rows, yi])
    if tau_scores == "true_class":
        tau, tau_p, n_tau = _kendall(ps[rows, yi], pn[rows, yi], mask_saturated)
    elif ps.shape[1] == 2:
        tau, tau_p, n_tau = _kendall(ps[:, 1], pn[:, 1], mask_saturated)
    else:
        per = [_kendall(ps[:, c], pn[:, c], mask_saturated) for c in range(ps.shape[1])]
        ok = [v for v in per if np.isfinite(v[0])]
        tau = float(np.mean([v[0] for v in ok])) if ok else float("nan")
        tau_p = float("nan")  # no single test for a mean of per-class τ
        n_tau = int(sum(v[2] for v in per))
    either = int(np.sum(wrong_s | wrong_n))
    both = int(np.sum(wrong_s & wrong_n))
    acc_s, acc_n = float(1 - wrong_s.mean()), float(1 - wrong_n.mean())
    return FaithfulnessResult(
        tad=acc_s - acc_n, kendall_tau=float(tau), kendall_pvalue=float(tau_p),
        jaccard_misclassified=1.0 if either == 0 else both / either,
        accuracy_network=acc_n, accuracy_kglm=acc_s, n_test=int(len(yi)),
        n_misclassified_network=int(wrong_n.sum()), n_misclassified_kglm=int(wrong_s.sum()),
        n_misclassified_both=both, n_misclassified_either=either, tau_scores=tau_scores,
        n_tau=n_tau, kendall_tau_true_class=float(true_tau.statistic))


def kernel_contributions(kglm: KernelGLM, k_test_train: Any, class_index: Any) -> np.ndarray:
    """``[n_test, n_train]`` contributions ``W[c_i, j] K(x_i, x_j)`` to the logit of class
    column ``c_i`` at each test point; each row plus ``kglm.intercept[c_i]`` is the logit."""
    k = _as_2d("k_test_train", k_test_train)
    c = np.asarray(class_index, dtype=np.int64)
    if c.shape != (k.shape[0],) or c.min(initial=0) < 0 or c.max(initial=0) >= len(kglm.classes):
        raise ValueError("class_index must give one valid class column per test point")
    if k.shape[1] != kglm.n_train:
        raise ValueError(f"kernel has {k.shape[1]} train columns, the kGLM {kglm.n_train}")
    return k * kglm.coef[c]


@dataclass
class Attribution:
    """Top-k training points per test point by contribution to the surrogate logit."""

    indices: np.ndarray  # [n_test, k] training indices, highest contribution first
    scores: np.ndarray  # [n_test, k] contributions
    class_index: np.ndarray  # [n_test] class column explained
    logit: np.ndarray  # [n_test] surrogate logit of that class
    intercept: np.ndarray  # [n_test] intercept of that class
    contributions: np.ndarray = field(repr=False)  # [n_test, n_train] all contributions

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (lists), without the full contribution matrix."""
        return {"indices": self.indices.tolist(), "scores": self.scores.tolist(),
                "class_index": self.class_index.tolist(), "logit": self.logit.tolist(),
                "intercept": self.intercept.tolist()}


def attribute(kglm: KernelGLM, k_test_train: Any, *, top_k: int = 10, target: str = "predicted",
              y_test: Any | None = None) -> Attribution:
    """Top-``top_k`` training points by contribution to the predicted (or true) class logit."""
    k = _as_2d("k_test_train", k_test_train)
    if not 1 <= int(top_k) <= kglm.n_train:
        raise ValueError(f"top_k must be in [1, {kglm.n_train}], got {top_k}")
    if target == "predicted":
        c = np.argmax(kglm.logits(k), 1)
    elif target == "true":
        if y_test is None:
            raise ValueError("target='true' needs y_test")
        lookup = {v: i for i, v in enumerate(kglm.classes.tolist())}
        try:
            c = np.array([lookup[v] for v in np.asarray(y_test).tolist()])
        except KeyError as err:
            raise ValueError(f"label {err.args[0]!r} not among {kglm.classes.tolist()}") from None
        if c.shape != (k.shape[0],):
            raise ValueError("y_test needs one label per test point")
    else:
        raise ValueError(f"target must be 'predicted' or 'true', got {target!r}")
    contrib = kernel_contributions(kglm, k, c)
    order = np.argsort(-contrib, axis=1, kind="stable")[:, : int(top_k)]
    intercept = kglm.intercept[c]
    return Attribution(indices=order, scores=np.take_along_axis(contrib, order, 1),
                       class_index=c, logit=contrib.sum(1) + intercept, intercept=intercept,
                       contributions=contrib)


@dataclass
class AttributionAgreement:
    """Rank agreement of two models' attribution vectors over the same test points."""

    method: str
    mean: float
    std: float
    median: float
    q25: float
    q75: float
    n_test: int
    n_train: int
    per_point: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (without the per-point values)."""
        d = asdict(self)
        d.pop("per_point")
        return d


def compare_attributions(contrib_a: Any, contrib_b: Any, *,
                         method: str = "spearman") -> AttributionAgreement:
    """Per-test-point Spearman/Kendall correlation of two ``[n_test, n_train]`` contribution
    matrices (e.g. :attr:`Attribution.contributions`), summarised with spread.

    "If the explanations differ, the models differ": low agreement flags models that reach
    their predictions through different training points. Constant rows give NaN and are
    dropped from the summary (``n_test`` counts the rest).
    """
    a = _as_2d("contrib_a", contrib_a)
    b = _as_2d("contrib_b", contrib_b)
    if a.shape != b.shape or a.shape[1] < 2:
        raise ValueError(f"contribution matrices must match with >= 2 columns: {a.shape} {b.shape}")
    if method not in ("spearman", "kendall"):
        raise ValueError(f"method must be 'spearman' or 'kendall', got {method!r}")
    fn = stats.spearmanr if method == "spearman" else stats.kendalltau
    vals = np.array([fn(a[i], b[i]).statistic for i in range(a.shape[0])], dtype=np.float64)
    ok = vals[np.isfinite(vals)]
    if ok.size == 0:
        raise ValueError("every test point has a constant attribution vector")
    return AttributionAgreement(
        method=method, mean=float(ok.mean()), std=float(ok.std(ddof=1)) if ok.size > 1 else 0.0,
        median=float(np.median(ok)), q25=float(np.quantile(ok, 0.25)),
        q75=float(np.quantile(ok, 0.75)), n_test=int(ok.size), n_train=int(a.shape[1]),
        per_point=vals)
