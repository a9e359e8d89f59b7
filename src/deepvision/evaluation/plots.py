"""Evaluation figures: confusion matrix, ROC and precision-recall curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deepvision.runs.plots import plt, save_figure


def plot_confusion(cm: np.ndarray, classes: list[str], path: Path, normalize: bool = True) -> Path:
    n = len(classes)
    size = min(4 + 0.35 * n, 30)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    data = cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalize else cm
    im = ax.imshow(data, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046)
    if n <= 30:
        ax.set_xticks(range(n), classes, rotation=90, fontsize=8)
        ax.set_yticks(range(n), classes, fontsize=8)
        if n <= 15:
            for i in range(n):
                for j in range(n):
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if data[i, j] > 0.5 else "black")
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix" + (" (row-normalised)" if normalize else ""))
    return save_figure(fig, path)


def plot_binary(curves: dict[str, Any], positive: str, path: Path, *, label: str = "",
                train: dict[str, Any] | None = None) -> Path:
    """ROC and Precision-Recall panels side by side, in the style of tutorial T1 (docs/stl10.md): 15x6
    inches, evaluation curves cyan and training curves (`train`, optional) magenta, alpha 0.6, legend
    upper left, the chance diagonal on the ROC panel, precision 0.5 marked and the PR y-axis 0.5-1.
    The PR curve's "AUC" is the average precision. T1 titled both panels "ROC"; each is named here."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(15, 6))
    runs = ([("train", train, "m")] if train and train.get("roc") else []) + [(label, curves, "c")]
    for name, c, color in runs:
        prefix = f"{name} " if name else ""
        ax1.plot(c["roc"]["fpr"], c["roc"]["tpr"], color=color, alpha=0.6, label=f"{prefix}AUC = {c['roc_auc']:.4f}")
        ax2.plot(c["pr"]["recall"], c["pr"]["precision"], color=color, alpha=0.6,
                 label=f"{prefix}AUC (average precision) = {c['average_precision']:.4f}")
    ax1.plot([0, 1], [0, 1], "k--", linewidth=0.8, label="chance")
    ax1.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC (positive: {positive})",
            xlim=(0, 1), ylim=(0, 1.01))
    ax2.axhline(0.5, color="k", linestyle="--", linewidth=0.8)
    ax2.set(xlabel="recall", ylabel="precision", title=f"Precision-Recall (positive: {positive})",
            xlim=(0, 1), ylim=(0.5, 1.01))
    for ax in (ax1, ax2):
        ax.legend(loc="upper left")
    return save_figure(fig, path)
