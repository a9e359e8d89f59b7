import numpy as np
import pytest

from deepvision.evaluation import metrics as M


def test_rank_k_and_cross_entropy_numbers():
    probs = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1], [0.2, 0.5, 0.3]])
    labels = np.array([0, 0, 1, 2])
    assert M.rank_k(probs, labels, 1) == 0.25
    assert M.rank_k(probs, labels, 2) == 0.75  # sample 1's label 0 is its third choice
    assert M.rank_k(probs, labels, 5) == 1.0  # k beyond the class count counts everything
    assert M.cross_entropy(probs, labels) == pytest.approx(-np.mean(np.log([0.5, 0.1, 0.3, 0.3])))


def test_report_and_confusion():
    probs = np.eye(3)[[0, 1, 2, 2, 1]]
    labels = np.array([0, 1, 2, 1, 1])
    report = M.per_class_report(probs, labels, ["a", "b", "c"])
    assert report["b"]["recall"] == pytest.approx(2 / 3) and report["c"]["precision"] == 0.5
    assert report["b"]["support"] == 3
    assert M.confusion(probs, labels, 3).tolist() == [[1, 0, 0], [0, 2, 1], [0, 0, 1]]


def test_binary_curves():
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    probs = np.stack([1 - scores, scores], 1)
    curves = M.binary_curves(probs, labels)
    assert curves["roc_auc"] == 0.75  # the classic scikit-learn example
    assert curves["average_precision"] == pytest.approx(0.8333, abs=1e-4)
    assert M.binary_curves(probs[:2], labels[:2])["roc_auc"] is None
