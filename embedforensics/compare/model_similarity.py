"""How alike are two *embedding models* on one recipe's texts? (Representational similarity
from the data-forensics side.)

The checkpoint comparators ask whether a candidate model differs from a seed ensemble; this
asks the question a data team asks before swapping encoders: on *my* texts, do
all-MiniLM-L6-v2 and multilingual-e5-small represent the rows alike? Each model embeds the
recipe's sources through the engine (batched and cached exactly as ``run`` does, with the
recipe's model settings and only ``model.id`` replaced), rows are matched by record id, and
every pair of models gets each similarity measure of :mod:`.representations`; debiased CKA
also gets its delete-one jackknife 95 % CI over the texts (see
:func:`~embedforensics.compare.representations.jackknife_interval`).

    from embedforensics.compare.model_similarity import model_similarity
    sim = model_similarity("recipes/default.yaml",
                           ["bundled:all-MiniLM-L6-v2", "bundled:multilingual-e5-small"])
    sim.matrix("debiased_cka"); sim.to_result()
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embedforensics.errors import UserError

DEFAULT_MEASURES = ("linear_cka", "debiased_cka", "svcca", "procrustes")


@dataclass
class ModelSimilarity:
    """Pairwise similarities of embedding models on the same texts."""

    models: list[str]
    n: int
    values: dict[str, np.ndarray]  # measure -> models × models
    ci: dict[tuple[int, int], tuple[float, float]] = field(default_factory=dict)

    def matrix(self, measure: str) -> np.ndarray:
        """The models × models matrix of ``measure`` (1 on the diagonal)."""
        return self.values[measure]

    def to_result(self) -> Any:
        """An :class:`~embedforensics.results.AnalysisResult`: one table row per pair."""
        from embedforensics.results import AnalysisResult, Metric

        rows, metrics = [], {}
        measures = list(self.values)
        for i in range(len(self.models)):
            for j in range(i + 1, len(self.models)):
                ci = self.ci.get((i, j))
                rows.append([self.models[i], self.models[j],
                             *[float(self.values[m][i, j]) for m in measures],
                             None if ci is None else ci[0], None if ci is None else ci[1]])
                if "debiased_cka" in self.values:
                    metrics[f"debiased_cka_{i}_{j}"] = Metric(
                        value=float(self.values["debiased_cka"][i, j]), n=self.n, ci=ci,
                        ci_level=0.95 if ci else None,
                        method="debiased linear CKA; delete-one jackknife 95% CI over texts",
                        description=f"{self.models[i]} vs {self.models[j]}")
        return AnalysisResult(
            probe="model-similarity",
            summary=f"Representational similarity of {len(self.models)} embedding models on "
                    f"the same {self.n} texts.",
            params={"models": self.models, "measures": measures}, metrics=metrics,
            tables={"pairs": {"columns": ["model_a", "model_b", *measures,
                                          "debiased_cka_ci_low", "debiased_cka_ci_high"],
                              "rows": rows}})


def similarity_matrix(embeddings: list[np.ndarray], names: list[str],
                      measures: tuple[str, ...] | list[str] = DEFAULT_MEASURES
                      ) -> ModelSimilarity:
    """Every measure between every pair of row-aligned embedding matrices."""
    from embedforensics.compare.representations import (
        debiased_cka_leave_one_out,
        jackknife_interval,
        similarity,
    )

    if len(embeddings) < 2:
        raise ValueError("need at least two models to compare")
    n = embeddings[0].shape[0]
    if any(e.shape[0] != n for e in embeddings):
        raise ValueError("the embeddings must have the same rows")
    k = len(embeddings)
    values = {m: np.eye(k) for m in measures}
    ci: dict[tuple[int, int], tuple[float, float]] = {}
    X = [np.asarray(e, dtype=np.float64) for e in embeddings]
    for i in range(k):
        for j in range(i + 1, k):
            for m in measures:
                values[m][i, j] = values[m][j, i] = similarity(m, X[i], X[j])
            if "debiased_cka" in measures:
                ci[(i, j)] = jackknife_interval(values["debiased_cka"][i, j],
                                                debiased_cka_leave_one_out(X[i], X[j]))
    return ModelSimilarity(list(names), n, values, ci)


def model_similarity(recipe: Any, models: list[str], *,
                     measures: tuple[str, ...] | list[str] = DEFAULT_MEASURES,
                     overrides: list[str] | None = None, max_rows: int | None = 5000,
                     seed: int = 0, use_cache: bool | None = None,
                     progress: bool = True) -> ModelSimilarity:
    """Embed a recipe's texts with each of ``models`` (``model.id`` values) and compare every
    pair of models on the same rows (matched by record id).

    ``max_rows`` caps the rows compared (a seeded sample; the Gram-matrix measures are
    O(n²)); None compares all.
    """
    from embedforensics.runner import embed

    if len(models) < 2:
        raise UserError("model_similarity needs at least two models.", key="model.id")
    sets = [embed(recipe, overrides=[*(overrides or []), f"model.id={m}"],
                  use_cache=use_cache, progress=progress) for m in models]
    ids = [list(map(str, s.ids)) for s in sets]
    common = sorted(set(ids[0]).intersection(*ids[1:]))
    if len(common) < 6:
        raise UserError(f"the models embedded only {len(common)} common rows; the "
                        "similarity needs at least 6.", key="sources")
    if max_rows is not None and len(common) > max_rows:
        rng = np.random.default_rng(seed)
        common = sorted(rng.choice(common, size=max_rows, replace=False).tolist())
    X = []
    for s, id_list in zip(sets, ids, strict=True):
        where = {v: i for i, v in enumerate(id_list)}
        X.append(np.asarray(s.X[[where[v] for v in common]], dtype=np.float64))
    return similarity_matrix(X, list(models), measures)
