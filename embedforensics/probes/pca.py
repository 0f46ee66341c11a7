"""PCA probe: how is the variance of the embeddings spread, and do labels sit apart on it?

Unsupervised, so it works with a single label: it reports the explained-variance ratios of
the leading principal components, a PC1/PC2 scatter coloured by label (a seeded, stratified
subsample so reports stay small), each label's mean position on PC1/PC2, and, when texts
are given, example texts from both ends of PC1 so a reader can see what the main axis of
variation *is*.

For each of the first ``n_interpret`` components it also says what the component is
associated with: the labels and every metadata column handed in as ``meta`` (plus text
length in characters when texts are given) — the correlation ratio η² with a one-way
ANOVA p-value for categorical columns, Spearman's ρ with its p-value for numeric ones,
Benjamini–Hochberg adjusted across the whole table — and example texts from both ends.

Memory-mapped embeddings (the engine assembles them on disk above
EMBEDFORENSICS_MMAP_BYTES) are never loaded whole: the components come from the streamed
covariance (:func:`embedforensics.probes.streaming.streaming_pca`, exact) and the scores
are computed chunk by chunk; only the ``directions`` bootstrap runs on an in-memory
seeded subsample (``params.directions_rows``).

Two optional analyses for designed comparisons:

- ``factors`` (crossed designs whose labels name several factors, ``de/computer`` =
  language x topic): for each computed component, η² of each factor with a permutation
  p-value (the factor's levels shuffled over rows ``n_permutations`` times, all components
  scored against the same shuffles in one vectorised pass), and a family-wise p over the
  components (the max-η² null), so "which components carry language, which carry topic"
  is answered with a null.
- ``directions`` (``"en->es: en-to-es, de"``): the unit direction from the mean embedding of
  one label to that of another, in the full embedding space, and where other labels' means
  fall on it (0 = at the first mean, 1 = at the second), with bootstrap intervals over rows;
  e.g. how far machine translation moves English texts towards Spanish ones.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from sklearn.decomposition import PCA

from embedforensics.errors import did_you_mean
from embedforensics.probes import factors as fx
from embedforensics.probes.base import (
    Metric,
    Plot,
    Probe,
    ProbeParameterError,
    ProbeResult,
    in_memory_rows,
)
from embedforensics.probes.stats import (
    CI_LEVEL,
    fmt_p,
    fmt_pct,
    plot_floats,
    stratified_subsample,
    truncate_text,
)
from embedforensics.probes.streaming import streaming_pca

N_EXAMPLES = 5
"""Example texts shown from each end of PC1."""

N_EXAMPLES_PER_PC = 3
"""Example texts from each end of every interpreted component."""

MAX_CATEGORIES = 50
"""Categorical columns with more distinct values than this (ids, free text) are skipped."""

MAX_CELLS = 4_000_000
"""Permutation and bootstrap batches hold at most this many numbers (bounds memory)."""


class PCAProbe(Probe):
    """Principal components: explained variance and a 2-D scatter coloured by label.

    Parameters
    ----------
    n_components : int, default 10
        Components to compute; clipped to ``min(n_rows, dim)`` (the clip is recorded in the
        result's params as ``n_components`` next to ``n_components_requested``).
    seed : int, default 0
        Seeds the randomized SVD solver and the plot subsample.
    max_points : int, default 2000
        At most this many points (stratified by label) go into the scatter plot; all rows are
        used for the components themselves.
    n_interpret : int, default 3
        Leading components described by their associations with labels and metadata and
        by example texts from both ends (0 skips).
    factors : list of str or None, default None
        Names of the ``/``-separated parts of every label in a crossed design, e.g.
        ``["language", "topic"]`` for labels like ``de/computer``. For every computed
        component: η² of each factor (share of the component's variance explained by the
        factor's level means; 1 = the component is that factor, 0 = unrelated) with a
        permutation p-value and a family-wise p-value over the components. None = off.
    directions : list of str or None, default None
        Each ``"A->B"`` or ``"A->B: C, D"`` with A, B, C, D labels: the unit direction
        from A's mean embedding to B's (full embedding space, not the components) and the
        position of each listed group's mean on it, ``(mean_C - mean_A) . (mean_B -
        mean_A) / |mean_B - mean_A|^2`` (0 = at A, 1 = at B, outside [0, 1] beyond them),
        with a bias-corrected percentile bootstrap interval (rows resampled within each
        group). Noise lengthens ``mean_B - mean_A`` in high dimension, so with small groups
        positions shrink slightly towards 0. None = off.
    n_permutations : int, default 999
        Shuffles of each factor's levels for the η² p-values (smallest p = 1 / (1 + this)).
    n_bootstrap : int, default 1000
        Bootstrap resamples for the direction intervals.
    """

    name: ClassVar[str] = "pca"
    description: ClassVar[str] = (
        "Principal components: explained variance and a 2-D scatter coloured by label."
    )
    min_labels: ClassVar[int] = 1
    headline: ClassVar[str | None] = "explained_variance_pc1"
    streams: ClassVar[bool] = True  # memory-mapped input: streaming_pca, chunked scores
    _param_specs: ClassVar[dict[str, tuple]] = {
        "n_components": ("int", 1, None, None),
        "seed": ("int", 0, 2**32 - 1, None),
        "max_points": ("int", 1, None, None),
        "n_interpret": ("int", 0, None, None),
        "factors": (fx.STR_LIST, None, None, None),
        "directions": (fx.STR_LIST, None, None, None),
        "n_permutations": ("int", 19, None, None),
        "n_bootstrap": ("int", 100, None, None),
    }

    def __init__(self, *, n_components: int = 10, seed: int = 0, max_points: int = 2000,
                 n_interpret: int = 3, factors: list[str] | None = None,
                 directions: list[str] | None = None, n_permutations: int = 999,
                 n_bootstrap: int = 1000):
        self.n_components = n_components
        self.seed = seed
        self.max_points = max_points
        self.n_interpret = n_interpret
        self.factors = factors
        self.directions = directions
        self.n_permutations = n_permutations
        self.n_bootstrap = n_bootstrap

    def _check_params(self) -> None:
        """The declared kinds, then the shapes of ``factors`` and ``directions`` (so recipe
        validation catches them before any model loads)."""
        fx.check_params(self)
        owner = type(self).__name__
        fx.check_factor_names(owner, self.factors)
        for text in self.directions or ():
            parse_direction(owner, text)

    def check_labels(self, labels: Any) -> None:
        """Raise ``ProbeParameterError`` unless ``factors`` split every label and
        ``directions`` name labels that exist; needs only the label names, so it can run
        before any embedding is computed."""
        owner = type(self).__name__
        distinct = sorted({str(v) for v in labels})
        if self.factors:
            fx.split_factors(owner, distinct, self.factors)
        for text in self.directions or ():
            a, b, cs = parse_direction(owner, text)
            for group in (a, b, *cs):
                if group not in distinct:
                    raise ProbeParameterError(
                        f"The 'directions' parameter of {owner} names label '{group}' in "
                        f"{text!r}, which is not in the data{did_you_mean(group, distinct)}; "
                        f"labels: {', '.join(distinct)}.")

    def _fit(self, X: np.ndarray, y: np.ndarray, **context: Any) -> ProbeResult:
        n, d = X.shape
        if n < 2:
            raise ProbeParameterError(f"PCAProbe needs at least 2 rows; got {n}.")
        zero_variance = ProbeParameterError(
            "PCAProbe: the embeddings have zero variance (all rows are identical), so "
            "there are no principal components to report.")
        if not self.out_of_core_ and not np.any(np.ptp(X, axis=0)):
            raise zero_variance
        self.check_labels(np.unique(y))
        k = min(self.n_components, n, d)
        if self.out_of_core_:
            # memory-mapped: exact PCA from the streamed covariance, scores chunk by chunk
            pca = streaming_pca(X, k)
            if not np.any(pca.explained_variance_ > 0):
                raise zero_variance
            scores = pca.transform(X)
            solver = "streamed covariance eigh (out of core)"
        else:
            # svd_solver="auto" picks the fastest exact-enough route: covariance eigh for
            # tall data, randomized SVD when few components of a large matrix are wanted,
            # else LAPACK.
            pca = PCA(n_components=k, svd_solver="auto", random_state=self.seed)
            scores = pca.fit_transform(X)
            solver = str(getattr(pca, "_fit_svd_solver", "auto"))  # the route "auto" chose
        ratios = np.asarray(pca.explained_variance_ratio_, dtype=float)
        self.pca_ = pca
        labels = [str(v) for v in np.unique(y)]
        y = y.astype(str)
        pc2 = scores[:, 1] if k >= 2 else np.zeros(n)
        cumulative = float(ratios.sum())

        metrics = {
            "explained_variance_pc1": Metric(
                value=float(ratios[0]), n=n, method=f"PCA ({solver} solver)",
                description="Share of the total variance along the first principal component "
                            "(a sample quantity; no interval).",
            ),
            "explained_variance_cumulative": Metric(
                value=cumulative, n=n, method=f"PCA ({solver} solver)",
                description=f"Share of the total variance in the first {k} principal "
                            f"components together.",
            ),
        }

        tables: dict[str, Any] = {
            "explained_variance": {
                "columns": ["component", "ratio", "cumulative"],
                "rows": [[f"PC{i + 1}", float(r), float(c)]
                         for i, (r, c) in enumerate(zip(ratios, np.cumsum(ratios), strict=True))],
            },
            "label_means": _label_means(scores[:, 0], pc2, y, labels),
        }
        texts = context.get("texts")
        if texts is not None:
            tables["pc1_examples"] = _pc1_examples(scores[:, 0], y, texts, context.get("ids"))

        n_pc = min(self.n_interpret, k)
        if n_pc:
            columns = _association_columns(y, texts, context.get("meta"))
            tables["pc_associations"] = _associations(scores[:, :n_pc], columns)
            if texts is not None:
                tables["pc_examples"] = _pc_examples(scores[:, :n_pc], y, texts,
                                                     context.get("ids"))
        idx = stratified_subsample(y, self.max_points, self.seed)
        pc2_name = (f"PC2 ({fmt_pct(ratios[1])} of variance)" if k >= 2
                    else "(no PC2: the data has one dimension)")
        plots = [
            Plot(kind="bar", title="Explained variance ratio per principal component",
                 data={"x": [f"PC{i + 1}" for i in range(k)], "y": [float(r) for r in ratios]},
                 xlabel="component", ylabel="explained variance ratio"),
            Plot(kind="scatter",
                 title=f"PC1 vs PC2 by label ({len(idx)} of {n} rows shown)",
                 data={"x": plot_floats(scores[idx, 0]), "y": plot_floats(pc2[idx]),
                       "labels": y[idx].tolist()},
                 xlabel=f"PC1 ({fmt_pct(ratios[0])} of variance)", ylabel=pc2_name),
        ]
        summary = (
            f"PC1 explains {fmt_pct(ratios[0])} of the variance and the first {k} "
            f"component{'s' if k > 1 else ''} {fmt_pct(cumulative)} "
            f"(n={n} rows, {d} dimensions, {len(labels)} label{'s' if len(labels) > 1 else ''})"
        )
        top = _top_association(tables.get("pc_associations"))
        clauses = [f"PC1 is most associated with {top}"] if top else []
        if self.factors:
            f_metrics, f_table, f_plot, f_clause = self._factor_analysis(scores, ratios, y)
            metrics.update(f_metrics)
            tables["factor_eta_squared"] = f_table
            plots.append(f_plot)
            clauses.append(f_clause)
        if self.directions:
            Xd, yd = X, y
            if self.out_of_core_:  # bootstrap of label means: on the in-memory budget
                Xd, yd, _, directions_rows = in_memory_rows(X, y, {}, seed=self.seed)
            d_metrics, d_table, d_plots, d_clauses = self._direction_analysis(Xd, yd)
            metrics.update(d_metrics)
            tables["directions"] = d_table
            plots.extend(d_plots)
            clauses.extend(d_clauses)
        summary += "".join(f"; {c}" for c in clauses) + "."
        params = {
            "n_components": k,
            "n_components_requested": self.n_components,
            "svd_solver": solver,
        }  # the constructor's parameters are added by fit
        if self.directions and self.out_of_core_:
            params["directions_rows"] = directions_rows
        return ProbeResult(probe=self.name, summary=summary, metrics=metrics, tables=tables,
                           plots=plots, params=params)

    def _factor_analysis(self, scores: np.ndarray, ratios: np.ndarray, y: np.ndarray
                         ) -> tuple[dict[str, Metric], dict[str, Any], Plot, str]:
        """η² of each factor on each component with permutation p-values: per factor a
        metric for its strongest component (family-wise p over components), a table of
        every (component, factor) pair and a components x factors η² matrix plot."""
        n, k = scores.shape
        levels = fx.split_factors(type(self).__name__, y, self.factors)
        how = (f"correlation ratio; p = (1 + #{{shuffled >= observed}}) / "
               f"(1 + {self.n_permutations}) over {self.n_permutations} shuffles of the "
               f"factor's levels across rows (seed {self.seed})")
        metrics: dict[str, Metric] = {}
        rows: list[list[Any]] = []
        eta_matrix = np.zeros((k, len(levels)))
        clauses = []
        for f, (name, values) in enumerate(levels.items()):
            codes = np.unique(values, return_inverse=True)[1]
            eta2, p, p_max = permutation_eta_squared(
                scores, codes, self.n_permutations, seed=[self.seed, f])
            eta_matrix[:, f] = eta2
            n_levels = int(codes.max()) + 1
            for j in range(k):
                rows.append([f"PC{j + 1}", float(ratios[j]), name, n_levels, float(eta2[j]),
                             float(p[j]), float(p_max[j]), n])
            best = int(np.argmax(eta2))
            metrics[f"factor_{fx.key(name)}_eta2"] = Metric(
                value=float(eta2[best]), n=n, method=how,
                description=f"Largest η² of factor '{name}' ({n_levels} levels) over the first "
                            f"{k} principal components, reached on PC{best + 1}: the share of "
                            f"that component's variance explained by the factor's level means.")
            metrics[f"factor_{fx.key(name)}_p"] = Metric(
                value=float(p_max[best]), n=n,
                method=f"max-η² permutation test over the {k} components, {how}",
                description=f"Family-wise p-value of factor '{name}' on PC{best + 1}: how often "
                            f"shuffled levels reach this η² on any of the {k} components.")
            clauses.append(f"{name} is carried most by PC{best + 1} (η² {eta2[best]:.2f}, "
                           f"{fmt_p(float(p_max[best]))})")
        table = {"columns": ["component", "variance ratio", "factor", "levels", "eta squared",
                             "p (permutation)", "p (family-wise over components)", "n"],
                 "rows": rows}
        plot = Plot(kind="matrix", title="η² of each factor on each principal component",
                    data={"values": eta_matrix.tolist(),
                          "row_labels": [f"PC{j + 1}" for j in range(k)],
                          "col_labels": list(levels)},
                    xlabel="factor", ylabel="component")
        return metrics, table, plot, ", ".join(clauses)

    def _direction_analysis(self, X: np.ndarray, y: np.ndarray
                            ) -> tuple[dict[str, Metric], dict[str, Any], list[Plot], list[str]]:
        """Positions of group means on each A->B direction with bootstrap intervals."""
        owner = type(self).__name__
        metrics: dict[str, Metric] = {}
        rows: list[list[Any]] = []
        plots: list[Plot] = []
        clauses: list[str] = []
        pct = f"{CI_LEVEL:.0%}"
        for i, text in enumerate(self.directions):
            a, b, cs = parse_direction(owner, text)
            res = direction_positions(X, y, a, b, cs, self.n_bootstrap, seed=[self.seed, i])
            stem = f"direction_{fx.key(a)}_to_{fx.key(b)}"
            how = (f"bias-corrected percentile bootstrap, {self.n_bootstrap} resamples of "
                   f"rows within each group (seed {self.seed})")
            length = res["length"]
            metrics[f"{stem}_length"] = Metric(
                value=length[0], n=res["n"][a] + res["n"][b], std=length[3],
                method=f"Euclidean norm of the difference of means; std over {how}",
                description=f"Distance between the mean embeddings of '{a}' and '{b}' (the "
                            f"direction's length; noise inflates it slightly).")
            for g in (a, b, *cs):
                pos, lo, hi, sd_rows = res["position"][g]
                dist, dlo, dhi, _ = res["distance_to_b"][g]
                fixed = g in (a, b)  # 0 and 1 by construction: no interval
                rows.append([f"{a} -> {b}", g, res["n"][g], pos, None if fixed else lo,
                             None if fixed else hi, sd_rows, dist, dlo if g != b else None,
                             dhi if g != b else None])
                if fixed:
                    continue
                n_rows = res["n"][a] + res["n"][b] + res["n"][g]
                metrics[f"{stem}_position_{fx.key(g)}"] = Metric(
                    value=pos, n=n_rows, ci=(min(lo, pos), max(hi, pos)), ci_level=CI_LEVEL,
                    method=how,
                    description=f"Where the mean of '{g}' falls on the direction from the "
                                f"mean of '{a}' (0) to the mean of '{b}' (1).")
                clauses.append(f"on {a} -> {b}, {g} sits at {pos:.2f} ({pct} CI "
                               f"{lo:.2f} to {hi:.2f})")
            plots.append(Plot(
                kind="bar", title=f"Position of each group's mean on {a} -> {b} "
                                  f"(0 = {a}, 1 = {b})",
                data={"x": [a, b, *cs], "y": [res["position"][g][0] for g in (a, b, *cs)]},
                xlabel="group", ylabel="position"))
        table = {"columns": ["direction", "group", "n", "position", "ci low", "ci high",
                             "sd over rows", "distance to B mean", "distance ci low",
                             "distance ci high"],
                 "rows": rows}
        return metrics, table, plots, clauses


def parse_direction(owner: str, text: str) -> tuple[str, str, list[str]]:
    """``"A->B"`` or ``"A->B: C, D"`` -> (A, B, [C, D]); spaces around parts are ignored."""
    head, _, tail = text.partition(":")
    ends = [p.strip() for p in head.split("->")]
    groups = [c.strip() for c in tail.split(",")] if tail.strip() else []
    if len(ends) != 2 or not all(ends) or not all(groups) or ends[0] == ends[1]:
        raise ProbeParameterError(
            f"The 'directions' parameter of {owner} must be a list of 'A->B' or "
            f"'A->B: C, D' with A, B, C, D labels (A != B), e.g. 'en->es: en-to-es'. "
            f"Got {text!r} instead.")
    return ends[0], ends[1], [g for g in dict.fromkeys(groups) if g not in ends]


def permutation_eta_squared(scores: np.ndarray, codes: np.ndarray, n_permutations: int,
                            seed: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """η² of one factor on every column of ``scores`` and two permutation p-values.

    ``codes`` are the factor's levels as 0..L-1. The null shuffles the rows against the
    levels (group sizes kept) ``n_permutations`` times; every column is scored against
    the same shuffles, all at once: rows are gathered in shuffled order, grouped by the
    sorted levels and summed with ``np.add.reduceat`` (batches bounded by ``MAX_CELLS``).
    Returns η² per column, the per-column p ``(1 + #{null >= observed}) / (1 + B)``, and
    the family-wise p of each column against the per-shuffle maximum over all columns
    (single-step max-T, so picking the strongest component is accounted for).
    """
    S = np.asarray(scores, dtype=float)
    S = S - S.mean(axis=0)
    n, k = S.shape
    total = np.sum(S**2, axis=0)
    safe = np.where(total > 0, total, 1.0)
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes).astype(float)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int)

    def eta(rows: np.ndarray) -> np.ndarray:
        """η² per column for each row order in ``rows`` (shape (b, n)) -> (b, k)."""
        sums = np.add.reduceat(S[rows], starts, axis=1)  # (b, L, k)
        between = np.sum(sums**2 / counts[None, :, None], axis=1)
        return np.where(total > 0, between / safe, 0.0)

    observed = eta(order[None, :])[0]
    rng = np.random.default_rng(seed)
    batch = max(1, MAX_CELLS // max(n * k, 1))
    null = []
    for start in range(0, n_permutations, batch):
        b = min(batch, n_permutations - start)
        null.append(eta(rng.permuted(np.tile(order, (b, 1)), axis=1)))
    null_arr = np.concatenate(null)
    tol = 1e-10  # η² equal up to rounding count as reaching the observed value
    reach = null_arr >= observed - tol
    p = (1 + reach.sum(axis=0)) / (1 + n_permutations)
    p_max = (1 + (null_arr.max(axis=1)[:, None] >= observed - tol).sum(axis=0)) \
        / (1 + n_permutations)
    return observed, p, p_max


def direction_positions(X: np.ndarray, y: np.ndarray, a: str, b: str, cs: list[str],
                        n_bootstrap: int, seed: Any) -> dict[str, Any]:
    """Positions of group means on the direction from mean(A) to mean(B), bootstrapped.

    Position of group g: ``(m_g - m_A) . (m_B - m_A) / |m_B - m_A|^2``. Each resample draws
    every involved group's rows with replacement within the group (multinomial weights, all
    resamples of a batch in one matrix product), recomputes all means and so also the
    direction. Returns ``n`` per group; ``position`` and ``distance_to_b`` per group as
    (estimate, ci low, ci high, sd over rows for positions / bootstrap sd for distances);
    ``length`` of the direction as the same tuple.
    """
    groups = list(dict.fromkeys([a, b, *cs]))
    rows = {g: np.asarray(X[y == g], dtype=float) for g in groups}
    means = {g: r.mean(axis=0) for g, r in rows.items()}
    d = means[b] - means[a]
    length = float(np.linalg.norm(d))
    if length == 0:
        raise ProbeParameterError(
            f"PCAProbe: the means of '{a}' and '{b}' coincide, so they define no direction.")

    def positions(m: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        dd = m[b] - m[a]
        return {g: np.sum((m[g] - m[a]) * dd, axis=-1) / np.sum(dd * dd, axis=-1)
                for g in groups}

    rng = np.random.default_rng(seed)
    widest = max(max(len(r) for r in rows.values()), X.shape[1])
    batch = max(1, MAX_CELLS // widest)
    boot: dict[str, list[np.ndarray]] = {f"{w}:{g}": [] for w in ("pos", "dist")
                                         for g in groups}
    boot_len = []
    for start in range(0, n_bootstrap, batch):
        r = min(batch, n_bootstrap - start)
        m = {}
        for g in groups:
            size = len(rows[g])
            weights = rng.multinomial(size, np.full(size, 1.0 / size), size=r)
            m[g] = weights @ rows[g] / size
        for g, v in positions(m).items():
            boot[f"pos:{g}"].append(v)
            boot[f"dist:{g}"].append(np.linalg.norm(m[g] - m[b], axis=1))
        boot_len.append(np.linalg.norm(m[b] - m[a], axis=1))
    point = positions(means)
    out: dict[str, Any] = {"n": {g: len(rows[g]) for g in groups}, "position": {},
                           "distance_to_b": {}}
    for g in groups:
        per_row = (rows[g] - means[a]) @ d / length**2
        sd_rows = float(np.std(per_row, ddof=1)) if len(per_row) > 1 else 0.0
        lo, hi, _ = bc_interval(np.concatenate(boot[f"pos:{g}"]), float(point[g]))
        out["position"][g] = (float(point[g]), lo, hi, sd_rows)
        dist = float(np.linalg.norm(means[g] - means[b]))
        out["distance_to_b"][g] = (dist, *bc_interval(np.concatenate(boot[f"dist:{g}"]), dist))
    out["length"] = (length, *bc_interval(np.concatenate(boot_len), length))
    return out


def bc_interval(boot: np.ndarray, estimate: float, level: float = CI_LEVEL
                ) -> tuple[float, float, float]:
    """Bias-corrected percentile bootstrap interval and the bootstrap sd.

    Norms and ratios of mean vectors are biased in high dimension (noise adds to
    ``|m_B - m_A|``), and resampling adds that bias a second time, so a plain percentile
    interval can sit beside the estimate. The bias correction (Efron's BC, without the
    jackknife acceleration of BCa) shifts the quantiles by ``z0 = Phi^-1(share of resamples
    below the estimate)``.
    """
    from scipy.stats import norm

    b = len(boot)
    below = (np.sum(boot < estimate) + 0.5 * np.sum(boot == estimate)) / b
    z0 = norm.ppf(np.clip(below, 0.5 / b, 1 - 0.5 / b))
    z = norm.ppf((1 - level) / 2)
    lo, hi = np.quantile(boot, [norm.cdf(2 * z0 + z), norm.cdf(2 * z0 - z)])
    return float(lo), float(hi), float(np.std(boot, ddof=1))


def _label_means(pc1: np.ndarray, pc2: np.ndarray, y: np.ndarray,
                 labels: list[str]) -> dict[str, Any]:
    """Per-label mean and sd on PC1/PC2 with the label's n (sd = 0 for a single row)."""
    def sd(v: np.ndarray) -> float:
        return float(np.std(v, ddof=1)) if len(v) > 1 else 0.0

    rows = []
    for label in labels:
        m = y == label
        rows.append([label, int(m.sum()), float(pc1[m].mean()), sd(pc1[m]),
                     float(pc2[m].mean()), sd(pc2[m])])
    return {"columns": ["label", "n", "pc1_mean", "pc1_sd", "pc2_mean", "pc2_sd"], "rows": rows}


def _pc1_examples(pc1: np.ndarray, y: np.ndarray, texts: Any, ids: Any) -> dict[str, Any]:
    """The texts with the lowest and the highest PC1 scores (truncated), with their labels."""
    order = np.argsort(pc1, kind="stable")
    m = min(N_EXAMPLES, len(order) // 2) or 1
    ends = [("low", order[:m]), ("high", order[::-1][:m])]
    rows = []
    for end, idx in ends:
        for i in idx:
            row_id = str(ids[i]) if ids is not None else str(i)
            rows.append([f"{end} PC1", float(pc1[i]), str(y[i]), row_id, truncate_text(texts[i])])
    return {"columns": ["end", "pc1", "label", "id", "text"], "rows": rows}


def _association_columns(y: np.ndarray, texts: Any, meta: dict[str, list[Any]] | None
                         ) -> list[tuple[str, str, np.ndarray]]:
    """(name, kind, values) of the variables a component is tested against: the label,
    text length, and usable metadata columns (numeric, or categorical with at most
    ``MAX_CATEGORIES`` values); values are an object array with None where missing."""
    out: list[tuple[str, str, np.ndarray]] = []
    if len(np.unique(y)) > 1:
        out.append(("label", "categorical", y.astype(object)))
    if texts is not None:
        out.append(("text length (chars)", "numeric",
                    np.array([len(str(t)) for t in texts], dtype=object)))
    for name, values in sorted((meta or {}).items()):
        vals = np.array(list(values), dtype=object)
        present = [v for v in vals if v is not None]
        if len(present) < 3:
            continue
        numeric = all(isinstance(v, (int, float, np.integer, np.floating))
                      and not isinstance(v, bool) for v in present)
        distinct = len({str(v) for v in present})
        if numeric and distinct > 2:
            out.append((f"meta: {name}", "numeric", vals))
        elif 1 < distinct <= MAX_CATEGORIES:
            out.append((f"meta: {name}", "categorical",
                        np.array([None if v is None else str(v) for v in vals], dtype=object)))
    return out


def eta_squared(values: np.ndarray, groups: np.ndarray) -> float:
    """Correlation ratio η² = between-group / total sum of squares of ``values`` split by
    ``groups`` (1 = the groups explain all the variance, 0 = none; 0 for constant values)."""
    values = np.asarray(values, dtype=float)
    groups = np.asarray(groups)
    total = float(np.sum((values - values.mean()) ** 2))
    parts = [values[groups == g] for g in sorted(set(groups.tolist()))]
    between = float(sum(len(p) * (p.mean() - values.mean()) ** 2 for p in parts))
    return between / total if total > 0 else 0.0


def eta_squared_anova(values: np.ndarray, groups: np.ndarray) -> tuple[float, float]:
    """η² (:func:`eta_squared`) and the one-way ANOVA p-value of the same partition (1.0
    when undefined: one group, no residual degrees of freedom, or constant values)."""
    from scipy.stats import f_oneway

    values = np.asarray(values, dtype=float)
    eta2 = eta_squared(values, groups)
    parts = [values[groups == g] for g in sorted(set(groups.tolist()))]
    if len(parts) < 2 or len(values) <= len(parts) or np.ptp(values) == 0:
        return eta2, 1.0
    with np.errstate(all="ignore"):
        p = float(f_oneway(*parts).pvalue)
    return eta2, p if np.isfinite(p) else 1.0


def _associations(scores: np.ndarray, columns: list[tuple[str, str, np.ndarray]]
                  ) -> dict[str, Any]:
    """One row per (component, variable): effect, p and BH-adjusted p, strongest first."""
    from scipy.stats import false_discovery_control, spearmanr

    rows = []
    for j in range(scores.shape[1]):
        for name, kind, values in columns:
            keep = np.array([v is not None for v in values])
            pc, vals = scores[keep, j], values[keep]
            if kind == "numeric":
                x = vals.astype(float)
                if np.ptp(x) == 0 or len(x) < 3:
                    continue
                rho, p = spearmanr(pc, x)
                rows.append([f"PC{j + 1}", name, "Spearman rho", float(rho),
                             float(p) if np.isfinite(p) else 1.0, int(keep.sum())])
            else:
                eta2, p = eta_squared_anova(pc, vals)
                rows.append([f"PC{j + 1}", name, "eta squared", eta2, p, int(keep.sum())])
    if rows:
        adjusted = false_discovery_control([r[4] for r in rows], method="bh")
        rows = [[*r[:5], float(a), r[5]] for r, a in zip(rows, adjusted, strict=True)]
    rows.sort(key=lambda r: (int(r[0][2:]), -abs(r[3])))
    return {"columns": ["component", "variable", "statistic", "value", "p", "p (BH)", "n"],
            "rows": rows}


def _top_association(table: dict[str, Any] | None) -> str:
    """'label (eta squared 0.62, p (BH)=1e-40)' for PC1, or '' when nothing is significant."""
    if not table:
        return ""
    for row in table["rows"]:
        if row[0] == "PC1" and row[5] < 0.05:
            return f"{row[1]} ({row[2]} {row[3]:.2f}, BH-adjusted {fmt_p(row[5])})"
    return ""


def _pc_examples(scores: np.ndarray, y: np.ndarray, texts: Any, ids: Any) -> dict[str, Any]:
    """Texts with the lowest and highest scores on each interpreted component."""
    rows = []
    for j in range(scores.shape[1]):
        order = np.argsort(scores[:, j], kind="stable")
        m = min(N_EXAMPLES_PER_PC, len(order) // 2) or 1
        for end, idx in (("low", order[:m]), ("high", order[::-1][:m])):
            for i in idx:
                row_id = str(ids[i]) if ids is not None else str(i)
                rows.append([f"PC{j + 1}", end, float(scores[i, j]), str(y[i]), row_id,
                             truncate_text(texts[i])])
    return {"columns": ["component", "end", "score", "label", "id", "text"], "rows": rows}
