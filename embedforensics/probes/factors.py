"""Crossed designs: labels that name several factors, and the list-valued probe parameters.

A recipe with a crossed design gives each source a label such as ``de/computer``: language
``de`` x topic ``computer``. The ``pca`` and ``cluster`` probes take ``factors: [language,
topic]`` to name the ``/``-separated parts of every label and then analyse each factor on
its own (η² of each factor on the principal components; k-means with k = the factor's
number of levels). This module holds what both probes share: validation of the names,
splitting the labels into one array of levels per factor with a clear error when a label
does not split into the named number of parts, and the check for parameters whose value
is a list of strings (the base probe's kinds are scalars only).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from embedforensics.probes.base import ProbeParameterError, _check_param

SEPARATOR = "/"
"""Separates the factor levels inside a label: ``de/computer``."""

STR_LIST = "str_list_or_none"
"""``_param_specs`` kind of a parameter that is None or a list of non-empty strings."""

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def check_params(probe: Any) -> None:
    """Validate every declared parameter of ``probe``: the base kinds through the base
    check, ``STR_LIST`` here (None, or a list/tuple of distinct non-empty strings)."""
    owner = type(probe).__name__
    for pname, (kind, low, high, options) in probe._param_specs.items():
        value = getattr(probe, pname)
        if kind != STR_LIST:
            _check_param(owner, pname, value, kind, low, high, options)
            continue
        if value is None:
            continue
        if (not isinstance(value, (list, tuple)) or not value
                or not all(isinstance(v, str) and v.strip() for v in value)
                or len(set(value)) != len(value)):
            raise ProbeParameterError(
                f"The '{pname}' parameter of {owner} must be a non-empty list of distinct, "
                f"non-empty strings or None. Got {value!r} instead.")


def check_factor_names(owner: str, names: Sequence[str] | None) -> None:
    """Factor names become parts of metric keys (``factor_language_eta2``), so each must be
    an identifier (letter first, then letters, digits, ``_``), distinct ignoring case."""
    if names is None:
        return
    bad = [n for n in names if not _NAME.match(n)]
    lowered = [n.lower() for n in names]
    if bad or len(set(lowered)) != len(lowered):
        raise ProbeParameterError(
            f"The 'factors' parameter of {owner} must be a list of distinct names made of "
            f"letters, digits and '_' (starting with a letter), one per '{SEPARATOR}'-"
            f"separated part of the labels, e.g. ['language', 'topic']. Got {list(names)!r} "
            f"instead.")


def split_factors(owner: str, labels: Sequence[str] | np.ndarray, names: Sequence[str]
                  ) -> dict[str, np.ndarray]:
    """One array of levels per factor, in row order: ``de/computer`` -> language ``de``,
    topic ``computer``. Raises when a label does not split into ``len(names)`` parts or a
    factor has a single level (η² and ARI of a constant mean nothing)."""
    labels = np.asarray(labels).astype(str)
    distinct = np.unique(labels)
    for label in distinct:
        parts = label.split(SEPARATOR)
        if len(parts) != len(names) or not all(parts):
            raise ProbeParameterError(
                f"{owner}: factors {list(names)} need every label to split at "
                f"'{SEPARATOR}' into {len(names)} non-empty parts "
                f"(e.g. '{SEPARATOR.join(f'<{n}>' for n in names)}'); label '{label}' has "
                f"{len(parts)} part{'s' if len(parts) != 1 else ''}. Labels: "
                f"{', '.join(distinct[:10])}{', ...' if len(distinct) > 10 else ''}.")
    split = np.array([label.split(SEPARATOR) for label in labels], dtype=object)
    out = {name: split[:, i].astype(str) for i, name in enumerate(names)}
    for name, levels in out.items():
        if len(np.unique(levels)) < 2:
            raise ProbeParameterError(
                f"{owner}: factor '{name}' has a single level ('{levels[0]}') in the data; "
                f"a factor needs at least 2 levels to explain anything.")
    return out


def key(text: str) -> str:
    """A label or factor name as part of a metric key: lower case, runs of other
    characters as one '_' ('en-to-es' -> 'en_to_es')."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "x"
