"""The ``modeldiff`` comparator: what group A's models learn that group B's do not.

ModelDiff (Shah et al., arXiv 2211.12491; :mod:`embedforensics.compare.modeldiff`) on the
checkpoints of a ``compare`` recipe:

1. **Attribution matrices.** Seeded stratified samples of ``n_train`` training and
   ``n_test`` test points (as the ``trntk`` comparator draws them); for each of up to
   ``max_models`` models of groups A and B (named among ``reference`` and the candidate
   groups): the trNTK kernel, a kernel GLM fit on the training block with the true labels,
   and the contribution of each training point to the *true*-class surrogate logit of each
   test point (``[n_test × n_train]``; :mod:`.trntk`, :mod:`.kglm`).
2. **Directions.** :func:`~.modeldiff.modeldiff` on the two groups' stacks: residual PCA of
   the row-normalised group means, each direction's variance share under A and under B, and
   the half-split seed null (halves of A's and of B's own models) with a rank p per
   direction; both A-minus-B and B-minus-A.
3. **Texts.** For each direction, the test texts with the largest residual projections (the
   subpopulation) and the training texts with the largest and smallest weights, with labels
   and the class shares at each end.
4. **Verified transformations.** Each entry of ``transforms`` (any registered text
   transform, e.g. ``{name: insert, phrase: zebra}``) is applied to a seeded sample of
   ``n_effect`` test texts; per model, the change in the probability of ``effect_class``
   (default: the recipe's first class); per group the mean with a two-way bootstrap CI over
   models and test points, and A − B with a permutation p over model labels.

By default the kernel is computed on the texts as the recipe has them. A group whose
*training texts* were altered (the fine-tune ``shortcut:`` option inserts a token into one
class's training reviews) is then attributed over the unaltered texts: the directions say
which training reviews the models lean on, not how the altered tokens act.
``train_texts: as_trained`` plants each model's recorded shortcut again, exactly as
``finetune train`` did, so its kernel sees the training texts it was trained on.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from embedforensics.compare.checkpoints import model_name, softmax
from embedforensics.errors import UserError
from embedforensics.recipe.compare_spec import KernelSettings
from embedforensics.results import AnalysisResult, Metric
from embedforensics.study.analysis import Comparator, Outcome

log = logging.getLogger(__name__)

RANK_P_LEVEL = 0.05


class ModelDiffParams(KernelSettings):
    """The ``modeldiff`` comparator's parameters; the kernel settings (kind, params,
    projection_dim, projection, reg_c, batch_size) are those of ``compare.trntk``."""

    group_a: str = Field(description="Group A: 'reference' or a compare.candidates name.")
    group_b: str = Field("reference", description="Group B (default the reference).")
    n_components: int = Field(3, ge=1, description="Directions per comparison.")
    n_train: int = Field(200, ge=4, description="Training points (seeded stratified sample "
                         "of the training split).")
    n_test: int = Field(100, ge=4, description="Test points attributed (seeded stratified "
                        "sample of the compare test set).")
    max_models: int = Field(8, ge=1, description="Models per group, first by path.")
    batch_size: int = Field(64, ge=1, description="Examples per vmap batch of the kernel, "
                            "and texts per forward pass of the verification.")
    n_splits: int = Field(100, ge=0, description="Random half splits of each group's models "
                          "for the seed null (0 = no null).")
    subpopulation: int = Field(5, ge=1, description="Test texts shown per direction.")
    show_train: int = Field(5, ge=1, description="Training texts shown at each end of a "
                            "direction.")
    transforms: list[dict[str, Any]] = Field(
        default_factory=list, description="Candidate transformations to verify: text "
        "transforms as in sources, e.g. {name: insert, phrase: zebra}.")
    effect_class: str | None = Field(None, description="Class whose probability change is "
                                     "measured (default: the recipe's first class).")
    n_effect: int = Field(200, ge=2, description="Test texts transformed (seeded sample; all "
                          "when fewer).")
    n_bootstrap: int = Field(2000, ge=10, description="Bootstrap resamples of the effect CI.")
    n_permutations: int = Field(10000, ge=10, description="Label permutations for the A − B "
                                "p-value (exact when the relabellings are fewer).")
    train_texts: Literal["recipe", "as_trained"] = Field(
        "recipe", description="Training texts the kernel sees: as the recipe has them, or as "
        "each fine-tuned model was trained on them (its record's shortcut planted again "
        "exactly as finetune train did, checked against the record's fingerprints).")
    seed: int | None = Field(None, description="Seed (default: the recipe seed).")

    @field_validator("transforms")
    @classmethod
    def _named(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for item in value:
            if not isinstance(item.get("name"), str):
                raise ValueError("each transform needs a 'name' (e.g. {name: insert, "
                                 "phrase: zebra})")
        return value


def _snippet(text: str) -> str:
    return text if len(text) <= 200 else text[:197] + "…"


class ModelDiffComparator(Comparator):
    """ModelDiff: training-data directions that distinguish two checkpoint groups' trNTK
    attributions, against a half-split seed null, with verified text transformations."""

    name = "modeldiff"
    Params = ModelDiffParams

    def _err(self, inputs: Any, message: str, sub: str | None = None) -> UserError:
        key = f"{self.key}.{sub}" if sub else self.key
        return UserError(message, file=inputs.ctx.file_of(self.key), key=key)

    def _group(self, inputs: Any, name: str, which: str) -> list[Any]:
        groups = {"reference": list(inputs.reference), **{g: list(v) for g, v in
                                                          inputs.candidates.items()}}
        if name not in groups:
            raise self._err(inputs, f"group '{name}' is not among the compared groups "
                            f"({', '.join(groups)}).", which)
        models = groups[name][: self.params.max_models]
        if not models:
            raise self._err(inputs, f"group '{name}' has no models.", which)
        return models

    # ------------------------------------------------------------------ attribution

    def _attributions(self, inputs: Any, models: list[Any], group: str, tr: np.ndarray,
                      te: np.ndarray, test_pos: np.ndarray, seed: int,
                      max_length: int | None) -> tuple[np.ndarray, list[Any]]:
        from embedforensics.compare.trntk_comparator import _one_model
        from embedforensics.recipe.compare_spec import TrntkSpec

        p = self.params
        spec = TrntkSpec(kind=p.kind, params=p.params, projection_dim=p.projection_dim,
                         projection=p.projection, n_train=p.n_train, n_test=p.n_test,
                         reg_c=p.reg_c, top_k=1, target="true", batch_size=p.batch_size)
        key = "compare.reference" if group == "reference" else f"compare.candidates.{group}"
        done = []
        for s in models:
            data = inputs.prepared
            if self.params.train_texts == "as_trained":
                data = self._as_trained(inputs, s, tr)
            done.append(_one_model(group, s, data, tr, te, test_pos, spec, seed,
                                   max_length, key))
            # the kernel's wrapper (a new nn.Module, in training mode) restores *its* mode
            # on exit, which puts the checkpoint into training mode (dropout on): back to eval
            module = s.scorer.torch_module()[0]
            if hasattr(module, "eval"):
                module.eval()
        log.info("modeldiff %s: %d attribution matrices in %.1f s", group, len(done),
                 sum(m.seconds for m in done))
        return np.stack([m.contrib_true for m in done]), done

    def _as_trained(self, inputs: Any, scored: Any, tr: np.ndarray) -> Any:
        """The prepared data with the training texts as ``scored`` was trained on them: a
        fine-tune record's ``shortcut`` planted again exactly as ``finetune train`` did (the
        same training rows, seeded subsample, noised labels and seeded choice of texts),
        checked against the record's fingerprints. ``tr`` (the sample) only documents which
        rows the kernel reads."""
        import json
        from pathlib import Path
        from types import SimpleNamespace

        from embedforensics.compare.checkpoints import _sha256_json
        from embedforensics.compare.finetune import plant_shortcut
        from embedforensics.compare.heads import prepare_training_labels
        from embedforensics.recipe.compare_spec import ShortcutSpec

        data = inputs.prepared
        path = Path(scored.path) / "embedforensics-finetune.json"
        if not path.is_file():
            return data
        record = json.loads(path.read_text(encoding="utf-8"))
        settings = record.get("settings") or {}
        if not settings.get("shortcut"):
            return data
        name = model_name(scored.path)
        train_idx = np.asarray(data.train_idx)
        texts_tr = [str(data.texts[i]) for i in train_idx]
        y_tr = data.y[train_idx]
        if _sha256_json({"texts": texts_tr, "labels": y_tr.tolist(),
                         "classes": data.classes}) != record.get("train_data_fingerprint"):
            raise self._err(inputs, f"train_texts: as_trained: '{name}' was fine-tuned on "
                            "other training rows than this recipe's split; use train_texts: "
                            "recipe.", "train_texts")
        seed = int(record["seed"])
        idx, labels = prepare_training_labels(
            y_tr, len(data.classes), label_noise=float(settings.get("label_noise") or 0.0),
            train_fraction=float(settings.get("train_fraction") or 1.0), seed=seed)
        if _sha256_json([idx.tolist(), labels.tolist()]) != (
                record.get("training") or {}).get("train_rows_fingerprint"):
            raise self._err(inputs, f"train_texts: as_trained cannot rebuild the training "
                            f"rows of '{name}' (its record's fingerprint differs); use "
                            "train_texts: recipe.", "train_texts")
        planted = plant_shortcut([texts_tr[i] for i in idx], labels, data.classes,
                                 ShortcutSpec(**settings["shortcut"]), seed)
        texts = list(data.texts)
        for k, i in enumerate(idx):
            texts[int(train_idx[i])] = planted[k]
        return SimpleNamespace(embeddings=data.embeddings, texts=texts, y=data.y,
                               classes=data.classes)

    # ------------------------------------------------------------------ verification

    def _probabilities(self, inputs: Any, models: list[Any], texts: list[str], column: int,
                       max_length: int | None) -> np.ndarray:
        data = inputs.prepared
        out = []
        for s in models:
            order = [s.scorer.classes.index(c) for c in data.classes]
            z = s.scorer.logits(texts=texts, batch_size=self.params.batch_size,
                                max_length=max_length)
            out.append(softmax(np.asarray(z, dtype=np.float64)[:, order])[:, column])
        return np.stack(out)

    def _transforms(self, inputs: Any) -> tuple[str, list[tuple[str, Any]]]:
        """The effect class and the built transforms (checked before anything slow runs)."""
        from embedforensics.transforms import build_transform

        p, data = self.params, inputs.prepared
        cls = p.effect_class if p.effect_class is not None else data.classes[0]
        if cls not in data.classes:
            raise self._err(inputs, f"effect_class '{cls}' is not one of the classes "
                            f"{data.classes}.", "effect_class")
        built = []
        for t, raw in enumerate(p.transforms):
            params = {k: v for k, v in raw.items() if k != "name"}
            built.append((raw["name"] + "(" + ", ".join(f"{k}={v}" for k, v in params.items())
                          + ")", build_transform(raw["name"], params,
                                                 file=inputs.ctx.file_of(self.key),
                                                 key=f"{self.key}.transforms[{t}]")))
        return cls, built

    def _verify(self, inputs: Any, groups: dict[str, list[Any]], seed: int,
                max_length: int | None, cls: str, transforms: list[tuple[str, Any]]
                ) -> tuple[list[list[Any]], dict[str, Any], list[dict[str, Any]]]:
        from embedforensics.compare.modeldiff import effect_difference, treatment_effect
        from embedforensics.transforms import apply_transform

        p, data = self.params, inputs.prepared
        column = data.classes.index(cls)
        test = np.asarray(data.test_idx)
        rng = np.random.default_rng([seed, 0xEFF])
        rows = np.sort(rng.choice(test, size=min(p.n_effect, test.size), replace=False))
        texts = [data.texts[i] for i in rows]
        (name_a, models_a), (name_b, models_b) = groups.items()
        base = {g: self._probabilities(inputs, ms, texts, column, max_length)
                for g, ms in groups.items()}
        table: list[list[Any]] = []
        detail: list[dict[str, Any]] = []
        for label, transform in transforms:
            changed, info = apply_transform(transform, texts, cache_dir=None)
            effects = {}
            for g, ms in groups.items():
                moved = self._probabilities(inputs, ms, changed, column, max_length)
                effects[g] = treatment_effect(base[g], moved, n_bootstrap=p.n_bootstrap,
                                              seed=seed)
            diff = effect_difference(effects[name_a].per_model, effects[name_b].per_model,
                                     n_permutations=p.n_permutations, seed=seed)
            for g in groups:
                e = effects[g]
                table.append([label, g, e.mean, e.ci[0], e.ci[1], e.n_models, e.n_test,
                              None, None])
            table.append([label, f"{name_a} − {name_b}", diff.difference, None, None,
                          effects[name_a].n_models + effects[name_b].n_models,
                          len(texts), diff.p_value, diff.exact])
            detail.append({"transform": label, "effect_class": cls,
                           "transform_info": {k: info[k] for k in ("name", "settings",
                                                                   "output_fingerprint")},
                           "effects": {g: e.to_dict() for g, e in effects.items()},
                           "difference": diff.to_dict(),
                           "example": {"original": texts[0], "transformed": changed[0]}})
        return table, {"effect_class": cls, "test_ids": [str(data.ids[i]) for i in rows]}, \
            detail

    # ------------------------------------------------------------------ run

    def run(self, inputs: Any) -> Outcome:
        from embedforensics.compare.modeldiff import modeldiff
        from embedforensics.compare.trntk_comparator import stratified_sample

        started = time.perf_counter()
        p, ctx, data = self.params, inputs.ctx, inputs.prepared
        seed = p.seed if p.seed is not None else int(ctx.recipe.seed)
        if p.group_a == p.group_b:
            raise self._err(inputs, f"group_a and group_b are both '{p.group_a}'; ModelDiff "
                            "compares two different groups.", "group_b")
        models_a = self._group(inputs, p.group_a, "group_a")
        models_b = self._group(inputs, p.group_b, "group_b")
        effect_class, transforms = self._transforms(inputs)
        heads = [model_name(s.path) for s in [*models_a, *models_b] if s.scorer.input != "texts"]
        if transforms and heads:
            raise self._err(inputs, f"'{heads[0]}' is a head on embeddings; text "
                            "transformations can only be verified on checkpoints that read "
                            "texts.", "transforms")
        max_length = ctx.recipe.compare.max_length or (
            ctx.recipe.model.max_length if ctx.recipe.model else None)
        tr = stratified_sample(data.train_idx, data.y, p.n_train, seed, 0x7A1)
        te = stratified_sample(np.asarray(data.test_idx), data.y, p.n_test, seed, 0x7E5)
        if len(np.unique(data.y[tr])) < 2:
            raise self._err(inputs, "the training sample has one class; raise n_train.",
                            "n_train")
        k = min(p.n_components, tr.size, te.size)
        position = {int(v): i for i, v in enumerate(data.test_idx)}
        test_pos = np.array([position[int(i)] for i in te])
        stack_a, done_a = self._attributions(inputs, models_a, p.group_a, tr, te, test_pos,
                                             seed, max_length)
        stack_b, done_b = self._attributions(inputs, models_b, p.group_b, tr, te, test_pos,
                                             seed, max_length)
        res = modeldiff(stack_a, stack_b, k, seed, n_splits=p.n_splits)

        classes, texts, ids, y = data.classes, data.texts, list(data.ids), data.y
        dir_rows: list[list[Any]] = []
        sub_rows: list[list[Any]] = []
        train_rows: list[list[Any]] = []
        metrics: dict[str, Metric] = {}
        detail: list[dict[str, Any]] = []
        for tag, r, (hi, lo) in ((f"{p.group_a}−{p.group_b}", res, (p.group_a, p.group_b)),
                                 (f"{p.group_b}−{p.group_a}", res.reverse,
                                  (p.group_b, p.group_a))):
            if r is None:  # modeldiff always computes the reverse comparison
                continue
            for c in range(k):
                name = f"{tag} #{c + 1}"
                top, bottom = r.training_points(c, p.show_train)
                sub = r.subpopulation(c, p.subpopulation)
                rank_p = float(r.null.p_values[c]) if r.null is not None else None
                p_text = f"{rank_p:.3g}" if rank_p is not None else "n/a"
                null95 = float(np.quantile(r.null.max_gaps, 0.95)) if r.null is not None \
                    else None

                def shares(idx: np.ndarray) -> str:
                    labels = [classes[int(y[tr[j]])] for j in idx]
                    return ", ".join(f"{cl} {labels.count(cl)}/{len(labels)}"
                                     for cl in classes if labels.count(cl))

                # variance under hi/lo is the variance under A/B of this comparison
                dir_rows.append([name, float(r.variance_a[c]), float(r.variance_b[c]),
                                 float(r.gaps[c]), null95, rank_p,
                                 float(r.explained_variance_ratio[c]), shares(top),
                                 shares(bottom)])
                for rank, i in enumerate(sub):
                    row = int(te[i])
                    sub_rows.append([name, rank + 1, ids[row], classes[int(y[row])],
                                     float(r.projections[i, c]), _snippet(texts[row])])
                for end, idx in (("top", top), ("bottom", bottom)):
                    for rank, j in enumerate(idx):
                        row = int(tr[j])
                        train_rows.append([name, end, rank + 1, ids[row],
                                           classes[int(y[row])],
                                           float(r.directions[c, j]), _snippet(texts[row])])
                slug = f"{hi}_vs_{lo}_{c + 1}"
                metrics[f"variance_gap_{slug}"] = Metric(
                    value=float(r.gaps[c]), n=int(te.size),
                    method=f"share of {hi}'s minus share of {lo}'s attribution variance "
                           f"along direction {c + 1}; rank p {p_text} "
                           f"among {r.null.n_splits if r.null else 0} half splits' "
                           "largest gaps",
                    description=f"ModelDiff direction {c + 1} of {hi} w.r.t. {lo}")
                detail.append({"direction": name, "weights": r.directions[c].tolist(),
                               "projections": r.projections[:, c].tolist()})
            metrics[f"rank_p_{hi}_vs_{lo}"] = Metric(
                value=float(r.null.p_values.min()) if r.null is not None else None,
                n=int(r.null.n_splits) if r.null is not None else 0,
                method="smallest rank p over the directions; null = largest variance gap "
                       "of each random half split of one group's own models",
                description=f"does any direction of {hi} w.r.t. {lo} exceed seed noise?")

        best = int(np.argmax(res.gaps))
        best_p = f"{res.null.p_values[best]:.3g}" if res.null is not None else "n/a"
        headline = {"largest_variance_gap": Metric(
            value=float(res.gaps[best]), n=int(te.size),
            method=f"direction {best + 1} of {p.group_a} w.r.t. {p.group_b}: share of "
                   f"{p.group_a}'s minus share of {p.group_b}'s attribution variance; rank p "
                   f"{best_p}",
            description=f"the largest variance gap of a ModelDiff direction of {p.group_a} "
                        f"w.r.t. {p.group_b}")}
        if res.null is not None:
            headline["largest_variance_gap_null"] = Metric(
                value=float(np.quantile(res.null.max_gaps, 0.95)), n=res.null.n_splits,
                range=(float(res.null.max_gaps.min()), float(res.null.max_gaps.max())),
                method="95th percentile of the largest gap of each random half split of one "
                       "group's own models",
                description="seed-noise null of the largest variance gap")
        metrics = {**headline, **metrics}
        tables: dict[str, Any] = {
            "modeldiff_directions": {
                "columns": ["direction (X−Y #k)", "variance share under X",
                            "variance share under Y", "gap", "null 95% largest gap",
                            "rank p", "residual PCA explained ratio",
                            f"top {p.show_train} training labels",
                            f"bottom {p.show_train} training labels"],
                "rows": dir_rows},
            "modeldiff_subpopulations": {
                "columns": ["direction", "rank", "test id", "label", "projection", "text"],
                "rows": sub_rows},
            "modeldiff_training_points": {
                "columns": ["direction", "end", "rank", "train id", "label", "weight",
                            "text"], "rows": train_rows},
            "modeldiff_kglm_faithfulness": {
                "columns": ["group", "model", "accuracy network", "accuracy kGLM",
                            "Kendall τ"],
                "rows": [[m.group, m.name, m.faithfulness.accuracy_network,
                          m.faithfulness.accuracy_kglm, m.faithfulness.kendall_tau]
                         for m in [*done_a, *done_b]]},
        }
        verify: list[dict[str, Any]] = []
        verify_meta: dict[str, Any] = {}
        if p.transforms:
            effect_rows, verify_meta, verify = self._verify(inputs, {p.group_a: models_a,
                                                        p.group_b: models_b}, seed,
                                               max_length, effect_class, transforms)
            tables["modeldiff_verified_transformations"] = {
                "columns": ["transformation", "group", f"mean Δ p({verify_meta['effect_class']})",
                            "CI low", "CI high", "models", "test texts",
                            "permutation p (A − B)", "exact"],
                "rows": effect_rows}
            for t, d in enumerate(verify):
                for g, e in d["effects"].items():
                    metrics[f"effect_{g}_transform_{t}"] = Metric(
                        value=e["mean"], n=e["n_test"], ci=tuple(e["ci"]),
                        ci_level=e["level"],
                        method=f"mean change of p({d['effect_class']}); bootstrap over "
                               f"{e['n_models']} models and {e['n_test']} test texts",
                        description=f"{g}: treatment effect of {d['transform']}")
        summary = self._summary(res, k)
        for d in verify:
            eff, diff = d["effects"], d["difference"]
            summary += (f" {d['transform']}: Δp({d['effect_class']}) "
                        + ", ".join(f"{g} {e['mean']:+.3f} [{e['ci'][0]:+.3f}, "
                                    f"{e['ci'][1]:+.3f}]" for g, e in eff.items())
                        + f"; A − B {diff['difference']:+.3f}, permutation p "
                        f"{diff['p_value']:.3g}.")
        entry = AnalysisResult(
            probe=f"modeldiff-{p.group_a}-vs-{p.group_b}", summary=summary,
            params={**p.model_dump(mode="json"), "seed": seed, "n_train_used": int(tr.size),
                    "n_test_used": int(te.size)},
            metrics=metrics, tables=tables, headline="largest_variance_gap")
        provenance = {f"modeldiff-{p.group_a}-vs-{p.group_b}": {
            "seed": seed, "seconds": round(time.perf_counter() - started, 2),
            "attribution_seconds": {m.name: round(m.seconds, 2) for m in [*done_a, *done_b]},
            "group_a": p.group_a, "group_b": p.group_b,
            "models_a": [m.name for m in done_a], "models_b": [m.name for m in done_b],
            "train_ids": [str(ids[i]) for i in tr], "test_ids": [str(ids[i]) for i in te],
            "a_vs_b": res.to_dict(), "b_vs_a": res.reverse.to_dict() if res.reverse else None,
            "directions": detail, "verification": {**verify_meta, "transforms": verify}}}
        return Outcome([entry], provenance=provenance)

    def _summary(self, res: Any, k: int) -> str:
        p = self.params
        parts = []
        for hi, lo, r in ((p.group_a, p.group_b, res), (p.group_b, p.group_a, res.reverse)):
            best = int(np.argmax(r.gaps))
            ptxt = (f", rank p {r.null.p_values[best]:.3g} vs {r.null.n_splits} half splits"
                    if r.null is not None else ", no seed null (one model per group)")
            sig = [c + 1 for c in range(k) if r.null is not None
                   and r.null.p_values[c] <= RANK_P_LEVEL]
            parts.append(f"{hi} w.r.t. {lo}: largest variance gap {r.gaps[best]:+.4f} "
                         f"(direction {best + 1}: {r.variance_a[best]:.4f} vs "
                         f"{r.variance_b[best]:.4f}{ptxt}); "
                         + (f"direction(s) {sig} beyond seed noise (p ≤ {RANK_P_LEVEL})"
                            if sig else "no direction beyond seed noise"))
        seen = " (training texts as trained)" if p.train_texts == "as_trained" else ""
        return (f"ModelDiff on trNTK true-class attributions{seen} ({res.n_models_a} vs "
                f"{res.n_models_b} models): " + "; ".join(parts) + ".")
