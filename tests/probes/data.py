"""Synthetic labelled embeddings shared by the probe tests."""

from __future__ import annotations

import numpy as np


def gaussians(n_per: int | list[int], d: int, shift: float, labels: tuple = ("a", "b"),
              seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One Gaussian per label, label i shifted by ``shift`` along axis i."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.array(labels), n_per)
    X = rng.normal(size=(len(y), d))
    X[:, : len(labels)] += shift * np.eye(len(labels))[np.searchsorted(labels, y)]
    return X.astype(np.float32), y
