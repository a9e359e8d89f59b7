"""One-off accuracy: the arg-max bucket is the true one or a neighbour in age order."""

import numpy as np
import pytest

from deepvision.engine.tasks.age import AGE_BUCKETS, is_age_buckets
from deepvision.evaluation.metrics import one_off

ENCODER = ["0_2", "15_20", "25_32", "38_43", "48_53", "4_6", "60_inf", "8_13"]  # the label encoder's order


def _score(truth: str, predicted: str, classes=ENCODER) -> float:
    probs = np.full((1, 8), 0.01)
    probs[0, classes.index(predicted)] = 0.9
    return one_off(probs, np.array([classes.index(truth)]), classes)


@pytest.mark.parametrize(("truth", "predicted", "right"), [
    ("48_53", "4_6", False), ("48_53", "38_43", True), ("0_2", "4_6", True), ("0_2", "8_13", False),
    ("60_inf", "48_53", True), ("60_inf", "60_inf", True), ("25_32", "8_13", False),
])
def test_worked_examples(truth, predicted, right):
    assert _score(truth, predicted) == float(right)


def test_accepted_set_for_25_32_and_argmax_only():
    accepted = {p for p in AGE_BUCKETS if _score("25_32", p) == 1.0}
    assert accepted == {"15_20", "25_32", "38_43"}
    probs = np.array([[0.0, 0.0, 0.45, 0.0, 0.0, 0.0, 0.0, 0.55]])  # second-ranked 25_32 never counts
    assert one_off(probs, np.array([ENCODER.index("25_32")]), ENCODER) == 0.0
    assert _score("25_32", "38_43", list(AGE_BUCKETS)) == 1.0  # any class order


def test_only_for_age_buckets():
    assert is_age_buckets(ENCODER) and not is_age_buckets(["male", "female"])
    with pytest.raises(ValueError):
        one_off(np.zeros((1, 2)), np.zeros(1, int), ["male", "female"])
