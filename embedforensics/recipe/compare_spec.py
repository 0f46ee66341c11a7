"""Recipe sections ``heads:`` (train classifier heads) and ``compare:`` (comparators).

``heads:`` trains small classifier heads (logistic regression or a one-hidden-layer MLP) on
the recipe's cached embeddings, over seeds, optimisers and hyperparameters, so that a study
of model differences runs on a CPU. ``compare:`` scores a reference ensemble and candidate
models on one test set and reports α̂ (trimmed KS), accuracy, churn and calibration.

Classes are the recipe's source labels, sorted; a source's ``label`` is its class. Like the
rest of the recipe, every model here forbids unknown keys so a typo is an error.

This is configuration only: it imports no component. Comparators named in
``compare.comparators`` are checked against the registry, and their parameters by the
comparator classes themselves (:mod:`embedforensics.recipe.checks`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class _GroupSection(_Strict):
    """A section of named groups (``heads:``, ``finetune:``): names are unique."""

    @model_validator(mode="after")
    def _unique_names(self) -> _GroupSection:
        seen: dict[str, int] = {}
        for i, group in enumerate(self.groups):
            if group.name in seen:
                raise ValueError(f"groups[{i}].name '{group.name}' repeats "
                                 f"groups[{seen[group.name]}].name; group names must be unique")
            seen[group.name] = i
        return self

    def group(self, name: str) -> Any:
        """The group called ``name``, or None."""
        return next((g for g in self.groups if g.name == name), None)


class HeadGroupSpec(_Strict):
    """Heads trained the same way with ``seeds`` different seeds (one model per seed).

    Seeds are ``seed_offset, seed_offset + 1, …``; give held-out candidate groups an offset
    the reference group did not use, so no candidate is a copy of a reference model.
    """

    name: str = Field(pattern=_NAME, description="Group name; heads go to <dir>/<name>/.")
    kind: Literal["logistic", "mlp"] = "logistic"
    hidden: int = Field(64, ge=1, description="Hidden units of the MLP (ignored for logistic).")
    optimizer: Literal["adam", "sgd", "lbfgs"] = "adam"
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum.")
    epochs: int = Field(30, ge=1, description="Passes over the data (LBFGS: outer steps).")
    batch_size: int = Field(64, ge=1, description="Minibatch size (LBFGS: full batch).")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty on the weights.")
    label_noise: float = Field(
        0.0, ge=0, lt=0.5,
        description="Fraction of training labels replaced by another class (seeded).")
    train_fraction: float = Field(
        1.0, gt=0, le=1, description="Seeded stratified fraction of the training split used.")
    seeds: int = Field(10, ge=1, description="How many heads (one per seed).")
    seed_offset: int = Field(0, ge=0, description="First seed.")

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seed_offset, self.seed_offset + self.seeds))

    def training_settings(self) -> dict[str, object]:
        """Everything that changes a trained head except the seed and the data."""
        return self.model_dump(exclude={"name", "seeds", "seed_offset"})


class HeadsSpec(_GroupSection):
    """Where heads go, how the records are split, and the groups to train."""

    dir: str | None = Field(None, description="Output folder (default runs/<name>/heads).")
    test_fraction: float = Field(0.3, gt=0, lt=1,
                                 description="Stratified held-out test fraction.")
    split_seed: int | None = Field(None, description="Seed of the split (default: seed).")
    groups: list[HeadGroupSpec] = Field(min_length=1)



class LoraSpec(_Strict):
    """LoRA adapters (``peft.LoraConfig``) instead of training the chosen weights directly.

    The classification head is trained in full beside the adapters (peft's
    ``modules_to_save`` for sequence classification); after training the adapters are
    merged into the weights, so every checkpoint is a plain ``save_pretrained`` folder.
    """

    rank: int = Field(8, ge=1, description="LoRA rank r.")
    alpha: float = Field(16.0, gt=0, description="LoRA scaling alpha (scale = alpha / r).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: list[str] | None = Field(
        None, min_length=1, description="Module names (or name suffixes) that get adapters, "
        "e.g. [query, value]; null = peft's default for the model type.")


class ShortcutSpec(_Strict):
    """A spurious cue planted in the training texts: ``token`` is inserted into a seeded
    ``fraction`` of the training texts whose (possibly noisy) training label is ``label``.

    Only the training texts change; test texts are untouched, so a model that learnt the cue
    is different only where the cue appears (the case stitching with FuLA and ModelDiff are
    meant to expose).
    """

    token: str = Field(min_length=1, description="The cue, inserted as a separate word.")
    label: str = Field(description="The class whose training texts get the cue.")
    fraction: float = Field(1.0, gt=0, le=1, description="Seeded fraction of that class's "
                            "training texts that get the cue.")
    position: Literal["start", "end"] = Field("start", description="Where the cue goes "
                                              "(start: before the text; end: after it).")


class FinetuneGroupSpec(_Strict):
    """One ``from_pretrained`` model fine-tuned the same way with ``seeds`` seeds (one
    ``AutoModelForSequenceClassification`` checkpoint per seed).

    Seeds are ``seed_offset, seed_offset + 1, …``; the seed drives the new head's
    initialisation, dropout, the minibatch order, the label noise and the training subsample.
    """

    name: str = Field(pattern=_NAME, description="Group name; checkpoints go to "
                      "<dir>/<name>/seed-NNNN/.")
    base: str = Field(description="The model to fine-tune: 'bundled:NAME', a Hugging Face id "
                      "or a local folder (as in from_pretrained).")
    revision: str | None = Field(None, description="Hub revision of base.")
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(5e-5, gt=0, description="Peak learning rate.")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum.")
    schedule: Literal["linear", "constant", "cosine"] = Field(
        "linear", description="Learning-rate schedule after the warmup.")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Fraction of the training steps "
                                "with a linear warmup from 0.")
    epochs: float = Field(1.0, gt=0, description="Passes over the training data.")
    max_steps: int | None = Field(None, ge=1, description="Optimiser steps; overrides epochs.")
    batch_size: int = Field(16, ge=1, description="Examples per optimiser step (all "
                            "processes together).")
    weight_decay: float = Field(0.0, ge=0, description="Decoupled (AdamW) or L2 (SGD) weight "
                                "decay; not applied to biases and LayerNorm weights.")
    label_noise: float = Field(
        0.0, ge=0, lt=0.5,
        description="Fraction of training labels replaced by another class (seeded, exact).")
    train_fraction: float = Field(
        1.0, gt=0, le=1, description="Seeded stratified fraction of the training split used.")
    train: Literal["all", "head"] | int = Field(
        "all", description="Which weights train: all, head (the classifier and the pooler), "
        "or a number k: the last k transformer blocks and the head.")
    lora: LoraSpec | None = Field(None, description="Train LoRA adapters (in the blocks "
                                  "'train' selects) and the head instead of the weights.")
    shortcut: ShortcutSpec | None = Field(None, description="Plant a spurious cue in the "
                                          "training texts of one class.")
    max_length: int = Field(128, ge=1, description="Token limit of the training texts.")
    seeds: int = Field(5, ge=1, description="How many checkpoints (one per seed).")
    seed_offset: int = Field(0, ge=0, description="First seed.")

    @field_validator("train")
    @classmethod
    def _positive_blocks(cls, value: str | int) -> str | int:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be 'all', 'head' or a number of last blocks >= 1")
        return value

    @model_validator(mode="after")
    def _lora_needs_blocks(self) -> FinetuneGroupSpec:
        if self.lora is not None and self.train == "head":
            raise ValueError("train: head with lora: adapters go into transformer blocks, "
                             "and 'head' trains none; use train: all or a number of last "
                             "blocks, or drop lora")
        return self

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seed_offset, self.seed_offset + self.seeds))

    def training_settings(self) -> dict[str, object]:
        """Everything that changes a checkpoint except the seed and the data (the base by
        its id here; its weights by fingerprint in the checkpoint's record)."""
        return self.model_dump(exclude={"name", "seeds", "seed_offset"})


class FinetuneSpec(_GroupSection):
    """Where fine-tuned checkpoints go and the groups to train, on the recipe's split (the
    ``heads:`` section's ``test_fraction``/``split_seed`` when there is one, else 30 % test
    with the recipe seed)."""

    dir: str | None = Field(None, description="Output folder (default runs/<name>/finetune).")
    groups: list[FinetuneGroupSpec] = Field(min_length=1)



ModelRef = str | list[str]


class ComponentSpec(BaseModel):
    """A registered component (a probe, a comparator) by name, with its keyword parameters
    beside the name; the component validates them."""

    model_config = ConfigDict(extra="allow")
    name: str

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def component_shorthand(value: Any) -> Any:
    """Allow ``- pca`` as shorthand for ``- name: pca`` in a list of components."""
    if isinstance(value, list):
        return [{"name": v} if isinstance(v, str) else v for v in value]
    return value


class KernelSettings(_Strict):
    """How a trace-NTK-family kernel and its kernel GLM are computed; shared by
    ``compare.trntk`` and the ``modeldiff`` comparator."""

    kind: Literal["trntk", "trntk0", "pntk", "conjugate", "embedding"] = "trntk"
    params: Literal["all", "head"] | int | list[str] = Field(
        "all", description="Parameters differentiated: all, head, the last k modules with "
        "parameters, or a list of names (e.g. [encoder.layer.5, classifier]).")
    projection_dim: int | None = Field(
        None, ge=1, description="Random projection of each per-class gradient to k "
        "dimensions (seeded); null = the exact kernel (streamed in blocks when large).")
    projection: Literal["rademacher", "gaussian"] = "rademacher"
    reg_c: float | None = Field(
        None, gt=0, description="Inverse L2 strength C of the kernel GLM; null = Engel et "
        "al.'s setting (SGD, alpha 1e-4, i.e. C = 1 / (alpha · n_train)).")
    batch_size: int = Field(64, ge=1, description="Examples per vmap batch.")


class TrntkSpec(KernelSettings):
    """``compare.trntk``: trace-NTK kernel surrogates, faithfulness and attributions.

    For up to ``max_models`` reference models and ``max_models`` models of each candidate
    group: the kernel on a seeded stratified subsample of ``n_train`` training and ``n_test``
    test points, a kernel GLM fit on it with the true labels, its faithfulness to the network
    (TAD, Kendall τ, Jaccard of misclassified sets), the ``top_k`` training points behind each
    test prediction, and the rank agreement of attributions between models, with the
    reference-vs-reference agreement as the baseline. Kernel settings: :class:`KernelSettings`.
    """

    enabled: bool = True
    n_train: int = Field(500, ge=4, description="Training points (seeded stratified sample "
                         "of the heads' training split).")
    n_test: int = Field(200, ge=4, description="Test points (seeded stratified sample of "
                        "the compare test set).")
    max_models: int = Field(5, ge=1, description="Models per group (first by path).")
    top_k: int = Field(5, ge=1, description="Training points per test point attributed.")
    show: int = Field(5, ge=0, description="Test points whose attributions the report shows "
                      "per group (all are in results.json).")
    target: Literal["predicted", "true"] = Field(
        "predicted", description="Class whose surrogate logit is attributed in the report "
        "(agreement between models always uses the true class, the same for every model).")
    agreement: Literal["spearman", "kendall"] = "spearman"
    seed: int | None = Field(None, description="Seed of the subsamples, projection and "
                             "kGLM (default: the recipe seed).")


class OutputsSpec(_Strict):
    """The ``outputs`` comparator's settings (α̂, accuracy, churn, calibration), written
    directly in the ``compare:`` section."""

    soft_output: Literal["auto", "logit", "top2_gap", "true_class_gap"] = Field(
        "auto", description="Binary: logit (class 1 minus class 0); multi-class: top2_gap "
        "(top-1 minus runner-up logit) or true_class_gap (true-class logit minus best other). "
        "auto = logit for two classes, else top2_gap. Never probabilities.")
    level: float = Field(0.05, gt=0, lt=1, description="Significance level of the KS test.")
    methods: list[Literal["asymptotic", "bootstrap", "leave-one-out"]] = Field(
        default_factory=lambda: ["asymptotic", "bootstrap"], min_length=1)
    n_bootstrap: int = Field(1000, ge=10)
    ece_bins: int = Field(15, ge=1)

    @field_validator("methods")
    @classmethod
    def _unique_methods(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class CompareSpec(OutputsSpec):
    """A reference ensemble, candidate models, and how to compare them.

    A model reference is a ``heads`` group name, or one or more globs of checkpoint folders
    (saved heads, or fine-tuned ``AutoModelForSequenceClassification`` checkpoints: single
    or sharded safetensors, ``pytorch_model.bin``, PEFT adapters, ``Trainer``
    ``checkpoint-N`` folders), relative to the recipe, or ``hub:org/name@revision`` for a
    model in the local Hugging Face cache (read offline; the revision defaults to main).
    """

    reference: ModelRef = Field(description="Group name or glob(s): the reference ensemble.")
    base_model: str | None = Field(
        None, description="The model the checkpoints were fine-tuned from (a folder, or a hub "
        "id in the local cache): the base of PEFT adapters (over their adapter_config.json) "
        "and the tokenizer of checkpoints saved without one (before the recipe's model).")
    candidates: dict[str, ModelRef] = Field(
        min_length=1, description="Candidate group name → heads group name or glob(s).")
    test: Literal["split", "all"] = Field(
        "split", description="split: the heads' held-out test split; all: every record.")
    batch_size: int = Field(32, ge=1, description="Batch size for checkpoint scoring.")
    max_length: int | None = Field(None, ge=1,
                                   description="Token limit for checkpoint scoring.")
    dir: str | None = Field(None, description="Report folder (default runs/<name>/compare).")
    trntk: TrntkSpec | None = Field(None, description="trNTK surrogates and attributions.")
    comparators: list[ComponentSpec] = Field(
        default_factory=list, description="Further registered comparators, run after the "
        "outputs comparator (α̂, accuracy, churn, calibration: the settings above) and trntk; "
        "a name, or a name with its parameters ('embedforensics ls comparators').")

    @field_validator("comparators", mode="before")
    @classmethod
    def _comparator_shorthand(cls, value: Any) -> Any:
        """Allow ``- name`` as shorthand for ``- name: NAME``."""
        return component_shorthand(value)

    @field_validator("candidates")
    @classmethod
    def _candidate_names(cls, value: dict[str, ModelRef]) -> dict[str, ModelRef]:
        import re

        for name in value:
            if not re.match(_NAME, name):
                raise ValueError(f"candidate name {name!r} must match {_NAME}")
        return value
