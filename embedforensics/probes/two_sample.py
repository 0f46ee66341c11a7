"""Two-sample tests between every pair of labels, with Benjamini–Hochberg correction.

For each pair of labels (a, b) three tests of "are the two embedding distributions the
same?":

* **MMD** with a Gaussian kernel (bandwidth: the median pairwise distance of the pooled
  pair, the usual heuristic) — the V-statistic ``MMD² = sᵀKs`` with ``s = 1/n_a`` on rows of
  ``a`` and ``−1/n_b`` on rows of ``b``;
* **energy distance** ``2E|A−B| − E|A−A′| − E|B−B′| = −sᵀDs`` with Euclidean distances ``D``;
* **classifier two-sample test**: out-of-fold accuracy of a ridge (least-squares, i.e.
  ridge-regularised Fisher) discriminant on the pair, with a permutation p-value whose
  every permutation *refits* the folds (vectorised: the fitted weights are linear in the
  labels; :func:`embedforensics.probes.scalable.ridge_c2st`). Until 0.1 this test used a
  binomial p-value on logistic-regression accuracy, which measured anti-conservative on
  real embeddings (false-positive rate 0.09 at level 0.05; benchmarks/README.md).

MMD and energy p-values come from a permutation test of the labels within the pair,
``p = (1 + #{T_perm ≥ T_obs}) / (1 + B)``, which is valid (never anti-conservative) at any
sample size; every test's statistic is one function of the labeling, applied to the
observed and the permuted labelings alike. Permutations are evaluated in blocks
(``diag(SᵀMS)`` for a block of permutation vectors ``S``), so no per-permutation Python loop
runs, and by default each test stops sequentially (Besag–Clifford, ``stop_after``) once
its p-value is clearly large; the permutations each test ran are recorded per pair, and a
progress bar counts them. The exact statistics
need the ``n × n`` matrices, so with ``method="auto"`` a pair with more than
``exact_max_rows`` rows switches to the linear-memory estimators of
:mod:`embedforensics.probes.scalable` (random-Fourier-feature MMD, sliced energy distance);
the method used is recorded per pair. ``max_per_label`` optionally subsamples (seeded).
P-values of each test are adjusted across all pairs with Benjamini–Hochberg
(``scipy.stats.false_discovery_control``).
"""

from __future__ import annotations

import logging
from itertools import combinations
from typing import Any, ClassVar

import numpy as np
from scipy.spatial.distance import cdist
from scipy.stats import false_discovery_control

from embedforensics.probes import progress
from embedforensics.probes.base import Metric, Plot, Probe, ProbeParameterError, ProbeResult
from embedforensics.probes.scalable import (
    permutation_test,
    rff_mmd_test,
    ridge_c2st,
    sliced_energy_test,
    test_fields,
)
from embedforensics.probes.stats import fmt_p

log = logging.getLogger(__name__)

WARN_PAIRS = 100
"""Above this many label pairs (15 labels) the probe warns that it will take a while."""
EXACT_LIMIT = 20_000
"""Largest pair the exact n × n computation accepts (three float64 matrices ≈ 9 GiB)."""


class QuadraticForm:
    """``sᵀMs`` for blocks of labelings, ``s = 1/n_a`` on the 'a' rows and ``−1/n_b`` on
    the others: MMD² for a kernel matrix ``M``, minus the energy distance for a distance
    matrix."""

    def __init__(self, M: np.ndarray, n_a: int):
        self.M, self.n_a, self.n_b = M, n_a, M.shape[0] - n_a

    def __call__(self, labels: np.ndarray) -> np.ndarray:
        S = np.where(labels.T, 1.0 / self.n_a, -1.0 / self.n_b)  # n × k
        return np.einsum("ij,ij->j", S, self.M @ S)


def mmd_energy_tests(A: np.ndarray, B: np.ndarray, *, n_permutations: int, seed: int,
                     stop_after: int | None = None, progress: Any = None
                     ) -> dict[str, Any]:
    """MMD² (Gaussian, median bandwidth) and energy distance with permutation p-values
    (:func:`embedforensics.probes.scalable.permutation_test`; the energy test's
    permutations are seeded with ``seed + 1``)."""
    Z = np.concatenate([A, B]).astype(np.float64)
    D = cdist(Z, Z)
    upper = D[np.triu_indices_from(D, k=1)]
    bandwidth = float(np.median(upper)) if upper.size else 1.0
    bandwidth = bandwidth if bandwidth > 0 else 1.0
    K = np.exp(-(D ** 2) / (2 * bandwidth ** 2))
    n, n_a = len(Z), len(A)
    mmd = permutation_test(QuadraticForm(K, n_a), n, n_a, n_permutations=n_permutations,
                           seed=seed, stop_after=stop_after, progress=progress)
    del K
    D *= -1.0  # the energy distance is −sᵀDs: larger is more different
    energy = permutation_test(QuadraticForm(D, n_a), n, n_a, n_permutations=n_permutations,
                              seed=seed + 1, stop_after=stop_after, progress=progress)
    return {"mmd2": mmd.observed, **test_fields("mmd", mmd), "energy": energy.observed,
            **test_fields("energy", energy), "bandwidth": bandwidth,
            "mmd_method": "exact (Gaussian kernel matrix)",
            "energy_method": "exact (distance matrix)"}


class TwoSampleProbe(Probe):
    """MMD, energy-distance and classifier two-sample tests for every pair of labels.

    Parameters
    ----------
    n_permutations : int, default 999
        Label permutations per pair for every test (the classifier test refits per
        permutation).
    stop_after : int or None, default 10
        Sequential stopping of every permutation test (Besag–Clifford): a test stops once
        this many permuted statistics reach the observed one and reports p = stop_after /
        permutations run (valid, and most of the work saved when p is clearly large). The
        permutations each test ran are in the pairs table. None runs every permutation.
    max_per_label : int or None, default None
        Rows per label used by the tests (seeded subsample above this); None uses all.
    n_folds : int, default 5
        Folds of the classifier two-sample test.
    seed : int, default 0
    method : {"auto", "exact", "scalable"}, default "auto"
        MMD / energy estimator: "exact" uses the n × n matrices, "scalable" random Fourier
        features and sliced energy (memory linear in n), "auto" exact up to
        ``exact_max_rows`` rows in the pair and scalable above.
    exact_max_rows : int, default 4000
        Largest pair (n_a + n_b) that "auto" computes exactly.
    n_features : int, default 512
        Random Fourier features of the scalable MMD.
    n_directions : int, default 64
        Random directions of the sliced energy distance.
    c2st_ridge : float, default 1.0
        Ridge penalty of the classifier test, as a multiple of the training rows.
    max_pairs : int, default 300
        Most label pairs tested (k labels make k(k-1)/2 pairs: 300 is 25 labels); more are
        refused, before anything is embedded, unless this is raised. Above 100 pairs the
        probe warns.
    """

    name: ClassVar[str] = "two_sample"
    description: ClassVar[str] = (
        "MMD, energy-distance and classifier two-sample tests for every pair of labels, "
        "Benjamini–Hochberg adjusted; N×N matrices.")
    min_labels: ClassVar[int] = 2
    headline: ClassVar[str | None] = "mean_c2st_accuracy"
    _param_specs: ClassVar[dict[str, tuple]] = {
        "n_permutations": ("int", 19, None, None),
        "stop_after": ("int_or_none", 1, None, None),
        "max_per_label": ("int_or_none", 5, None, None),
        "n_folds": ("int", 2, None, None),
        "seed": ("int", 0, 2**32 - 1, None),
        "method": ("str", None, None, ("auto", "exact", "scalable")),
        "exact_max_rows": ("int", 4, None, None),
        "n_features": ("int", 1, None, None),
        "n_directions": ("int", 1, None, None),
        "c2st_ridge": ("positive_float", None, None, None),
        "max_pairs": ("int", 1, None, None),
    }

    def __init__(self, *, n_permutations: int = 999, stop_after: int | None = 10,
                 max_per_label: int | None = None, n_folds: int = 5, seed: int = 0,
                 method: str = "auto", exact_max_rows: int = 4000, n_features: int = 512,
                 n_directions: int = 64, c2st_ridge: float = 1.0, max_pairs: int = 300):
        self.n_permutations = n_permutations
        self.stop_after = stop_after
        self.max_per_label = max_per_label
        self.n_folds = n_folds
        self.seed = seed
        self.method = method
        self.exact_max_rows = exact_max_rows
        self.n_features = n_features
        self.n_directions = n_directions
        self.c2st_ridge = c2st_ridge
        self.max_pairs = max_pairs

    def check_labels(self, labels: Any) -> None:
        """Refuse more label pairs than ``max_pairs`` (recipe validation runs this)."""
        self._check_pairs(len(set(map(str, labels))), warn=False)

    def _check_pairs(self, k: int, *, warn: bool = True) -> int:
        n_pairs = k * (k - 1) // 2
        if n_pairs > self.max_pairs:
            raise ProbeParameterError(
                f"TwoSampleProbe: {k} labels make {n_pairs:,} label pairs, more than "
                f"max_pairs={self.max_pairs} (each pair runs three permutation tests); "
                f"merge labels, or set the 'max_pairs' parameter to at least {n_pairs}.")
        if warn and n_pairs > WARN_PAIRS:
            log.warning("two_sample: %d labels make %d label pairs, each with three "
                        "permutation tests (%d permutations); this may take a long time",
                        k, n_pairs, self.n_permutations)
        return n_pairs

    def _pair_rows(self, y: np.ndarray, label: str, rng: np.random.Generator) -> np.ndarray:
        rows = np.flatnonzero(y == label)
        if self.max_per_label is not None and len(rows) > self.max_per_label:
            rows = np.sort(rng.choice(rows, self.max_per_label, replace=False))
        return rows

    def _fmt_floor(self, p: float) -> str:
        """A permutation p-value at its floor as 'p ≤ 0.001 (floor with 999 permutations)',
        never as an exact-looking 'p=0.001' (issue 23); otherwise :func:`fmt_p`."""
        floor = 1 / (1 + self.n_permutations)
        if p <= floor * (1 + 1e-9):
            return f"p ≤ {floor:.2g} (floor with {self.n_permutations} permutations)"
        return fmt_p(p)

    def _perms_text(self) -> str:
        if self.stop_after is None:
            return f"{self.n_permutations} permutations"
        return (f"up to {self.n_permutations} permutations, stopped sequentially once "
                f"{self.stop_after} permuted statistics reach the observed one")

    def pair_tests(self, A: np.ndarray, B: np.ndarray, seed: int, bar: Any = None
                   ) -> dict[str, Any]:
        """All three tests for one pair (rows of ``A`` against rows of ``B``); ``bar``, a
        tqdm-like progress bar, advances by one per permutation evaluated."""
        scalable = self.method == "scalable" or (
            self.method == "auto" and len(A) + len(B) > self.exact_max_rows)
        perms = {"n_permutations": self.n_permutations, "stop_after": self.stop_after,
                 "progress": bar}
        if scalable:
            tests = {**rff_mmd_test(A, B, seed=seed, n_features=self.n_features, **perms),
                     **sliced_energy_test(A, B, seed=seed + 1,
                                          n_directions=self.n_directions, **perms)}
        else:
            n = len(A) + len(B)
            if n > EXACT_LIMIT:
                raise ProbeParameterError(
                    f"TwoSampleProbe: method='exact' needs {n} × {n} matrices "
                    f"(~{3 * 8 * n * n / 2**30:.0f} GiB) for this pair; use method='auto' or "
                    f"'scalable', or set max_per_label.")
            tests = mmd_energy_tests(A, B, seed=seed, **perms)
        folds = int(min(self.n_folds, len(A), len(B)))
        if folds >= 2:
            is_a = np.r_[np.ones(len(A), bool), np.zeros(len(B), bool)]
            tests.update(ridge_c2st(np.concatenate([A, B]), is_a, n_folds=folds,
                                    seed=seed + 2, ridge=self.c2st_ridge, **perms))
        else:
            tests.update({"c2st_accuracy": float("nan"), "c2st_p": 1.0,
                          "c2st_null_mean": float("nan"), "c2st_n": len(A) + len(B),
                          "c2st_permutations_run": 0, "c2st_stopped_early": False})
            if bar is not None:
                bar.update(self.n_permutations)
        return tests

    def _fit(self, X: np.ndarray, y: np.ndarray, **context: Any) -> ProbeResult:
        y = np.asarray(y).astype(str)
        labels = [str(v) for v in np.unique(y)]
        self._check_pairs(len(labels))
        rng = np.random.default_rng(self.seed)
        rows = {label: self._pair_rows(y, label, rng) for label in labels}
        pairs = list(combinations(labels, 2))
        records = []
        with progress.bar(len(pairs), "two_sample: label pairs", "pair") as bar:
            for i, (a, b) in enumerate(pairs):
                ra, rb = rows[a], rows[b]
                with progress.bar(3 * self.n_permutations,
                                  f"two_sample: {a} vs {b}, permutations of 3 tests",
                                  "perm") as perm_bar:
                    tests = self.pair_tests(X[ra], X[rb], self.seed + 7919 * (i + 1),
                                            perm_bar)
                records.append({"a": a, "b": b, "n_a": len(ra), "n_b": len(rb), **tests})
                bar.update(1)
        for test in ("mmd", "energy", "c2st"):
            raw = np.array([r[f"{test}_p"] for r in records])
            adjusted = false_discovery_control(raw, method="bh") if len(raw) > 1 else raw
            for r, p_adj in zip(records, adjusted, strict=True):
                r[f"{test}_p_adj"] = float(p_adj)

        k = len(labels)
        index = {label: j for j, label in enumerate(labels)}

        def matrix(key: str, diagonal: float) -> list[list[float]]:
            m = np.full((k, k), diagonal, dtype=float)
            for r in records:
                m[index[r["a"]], index[r["b"]]] = m[index[r["b"]], index[r["a"]]] = r[key]
            return m.round(6).tolist()

        level = 0.05
        perms = self._perms_text()
        n_sig = {t: sum(r[f"{t}_p_adj"] < level for r in records) for t in ("mmd", "energy",
                                                                              "c2st")}
        min_p = min(r["mmd_p_adj"] for r in records)
        c2st_values = [r["c2st_accuracy"] for r in records if np.isfinite(r["c2st_accuracy"])]
        metrics = {
            "pairs": Metric(value=len(records), n=len(y), method="count",
                            description="Pairs of labels tested."),
            "mean_c2st_accuracy": Metric(
                value=float(np.mean(c2st_values)) if c2st_values else 0.5, n=len(y),
                method=f"mean over pairs of the {self.n_folds}-fold ridge discriminant's "
                       f"out-of-fold accuracy",
                description="How well a linear classifier tells pairs of labels apart, on "
                            "average (0.5 = not at all for balanced pairs; see each pair's "
                            "null mean in the table)."),
            "mmd_pairs_significant": Metric(
                value=n_sig["mmd"], n=len(records),
                method=f"permutation test ({perms}), BH-adjusted p < {level}",
                description="Pairs whose distributions differ by MMD."),
            "energy_pairs_significant": Metric(
                value=n_sig["energy"], n=len(records),
                method=f"permutation test ({perms}), BH-adjusted p < {level}",
                description="Pairs whose distributions differ by energy distance."),
            "c2st_pairs_significant": Metric(
                value=n_sig["c2st"], n=len(records),
                method=f"{self.n_folds}-fold ridge discriminant, permutation test with refits "
                       f"({perms}), BH-adjusted p < {level}",
                description="Pairs a classifier tells apart better than the majority rate."),
            "min_mmd_p_adjusted": Metric(
                value=min_p, n=len(records), method="minimum over pairs",
                description="Smallest BH-adjusted MMD p-value; the permutation test cannot "
                            f"go below 1/(1+{self.n_permutations}).")}
        columns = ["label a", "label b", "n a", "n b", "MMD²", "MMD p (BH)", "energy",
                   "energy p (BH)", "C2ST accuracy", "C2ST p (BH)", "C2ST null mean",
                   "MMD method", "energy method", "MMD permutations run",
                   "energy permutations run", "C2ST permutations run"]
        table_rows = [[r["a"], r["b"], r["n_a"], r["n_b"], r["mmd2"], r["mmd_p_adj"],
                       r["energy"], r["energy_p_adj"], r["c2st_accuracy"], r["c2st_p_adj"],
                       r["c2st_null_mean"], r["mmd_method"], r["energy_method"],
                       r["mmd_permutations_run"], r["energy_permutations_run"],
                       r["c2st_permutations_run"]]
                      for r in records]
        plots = [Plot(kind="matrix", title="Classifier two-sample accuracy per pair",
                      data={"values": matrix("c2st_accuracy", float("nan")),
                            "row_labels": labels, "col_labels": labels}),
                 Plot(kind="matrix", title="MMD² per pair (Gaussian kernel, median bandwidth)",
                      data={"values": matrix("mmd2", 0.0), "row_labels": labels,
                            "col_labels": labels})]
        tables = {"pairs": {"columns": columns, "rows": table_rows},
                  "mmd2_matrix": {"columns": ["", *labels],
                                  "rows": [[lab, *row] for lab, row in
                                           zip(labels, matrix("mmd2", 0.0), strict=True)]},
                  "mmd_p_adjusted_matrix": {"columns": ["", *labels],
                                            "rows": [[lab, *row] for lab, row in
                                                     zip(labels, matrix("mmd_p_adj", 1.0),
                                                         strict=True)]}}
        summary = (
            f"Two-sample tests over {len(records)} label pair(s) (BH-adjusted, level {level}): "
            f"MMD finds {n_sig['mmd']}, energy distance {n_sig['energy']} and the classifier "
            f"test {n_sig['c2st']} pair(s) different (smallest MMD {self._fmt_floor(min_p)}; "
            f"{perms}, "
            f"{'all' if self.max_per_label is None else f'≤{self.max_per_label}'} rows per "
            f"label, n={len(y)}).")
        # the constructor's parameters are added by fit
        params = {"methods_used": sorted({f"MMD: {r['mmd_method']}; energy: "
                                          f"{r['energy_method']}" for r in records}),
                  "bandwidths": {f"{r['a']}|{r['b']}": r["bandwidth"] for r in records},
                  "permutations_run": {f"{r['a']}|{r['b']}": {
                      t: r[f"{t}_permutations_run"] for t in ("mmd", "energy", "c2st")}
                      for r in records}}
        return ProbeResult(probe=self.name, summary=summary, metrics=metrics, tables=tables,
                           plots=plots, params=params)
