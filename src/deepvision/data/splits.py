"""Stratified, seeded splits (scikit-learn `train_test_split` semantics)."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from deepvision.errors import UserError


def stratified_split(labels, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out) with `fraction` of the samples held out, stratified by label (unstratified when a
    class has a single sample)."""
    labels = np.asarray(labels)
    n = len(labels)
    idx = np.arange(n)
    if fraction <= 0:
        return idx, idx[:0]
    n_out = int(round(fraction * n)) if isinstance(fraction, float) else int(fraction)
    if n_out < 1 or n_out >= n:
        raise UserError(f"cannot hold out {fraction} of {n} samples; use a fraction that leaves both parts non-empty")
    _, counts = np.unique(labels, return_counts=True)
    stratify = labels if counts.min() >= 2 and n_out >= len(counts) and n - n_out >= len(counts) else None
    keep, out = train_test_split(idx, test_size=n_out, random_state=seed, shuffle=True, stratify=stratify)
    return np.asarray(keep), np.asarray(out)
