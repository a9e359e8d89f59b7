"""Evaluation metrics over a whole split (numpy in, plain Python out)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import (
    auc,
    average_precision_score,
    classification_report,
    confusion_matrix,
    precision_recall_curve,
    roc_curve,
)

from deepvision.engine.tasks.age import bucket_order, is_age_buckets


def rank_k(probs: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of samples whose true label is among the k highest scores."""
    k = min(k, probs.shape[1])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean()) if len(labels) else float("nan")


def cross_entropy(probs: np.ndarray, labels: np.ndarray) -> float:
    p = np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0)
    return float(-np.log(p).mean()) if len(labels) else float("nan")


def per_class_report(probs: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Precision, recall, F1 and support per class plus averages (scikit-learn's report)."""
    pred = probs.argmax(1)
    ids = list(range(len(classes)))
    return classification_report(labels, pred, labels=ids, target_names=classes, output_dict=True, zero_division=0)


def confusion(probs: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    return confusion_matrix(labels, probs.argmax(1), labels=list(range(num_classes)))


def binary_curves(probs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """ROC (AUC by the trapezoid rule) and precision-recall (average precision) for class 1."""
    score = probs[:, 1]
    if len(np.unique(labels)) < 2:
        return {"roc_auc": None, "average_precision": None, "note": "only one class present"}
    fpr, tpr, roc_thr = roc_curve(labels, score)
    precision, recall, pr_thr = precision_recall_curve(labels, score)
    return {
        "roc_auc": round(float(auc(fpr, tpr)), 4),
        "average_precision": round(float(average_precision_score(labels, score)), 4),
        "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": np.nan_to_num(roc_thr, posinf=1.0).tolist()},
        "pr": {"precision": precision.tolist(), "recall": recall.tolist(), "thresholds": pr_thr.tolist()},
    }


# Adience age buckets (docs/faces.md), in numeric order; class ids follow the run's own label order


def one_off(probs: np.ndarray, labels: np.ndarray, classes: list[str]) -> float:
    """One-off accuracy: the arg-max bucket is the true one or its neighbour in age order.

    Only the arg-max counts; buckets are ordered by their numeric lower bound whatever the class ids.
    """
    if not is_age_buckets(classes):
        raise ValueError(f"one-off accuracy needs the 8 Adience age buckets as classes, got {classes}")
    order = np.array(bucket_order(classes))
    if not len(labels):
        return float("nan")
    return float((np.abs(order[probs.argmax(1)] - order[labels]) <= 1).mean())
