"""The Adience age buckets (docs/faces.md) and their order, shared by the age task and the evaluation."""

from __future__ import annotations

AGE_BUCKETS = ("0_2", "4_6", "8_13", "15_20", "25_32", "38_43", "48_53", "60_inf")


def is_age_buckets(classes: list[str]) -> bool:
    """True when the class names are exactly the 8 Adience age buckets (in any order)."""
    return len(classes) == len(AGE_BUCKETS) and set(classes) == set(AGE_BUCKETS)


def bucket_order(classes: list[str]) -> list[int]:
    """For each class id, its bucket's position in age order (class ids may be in any order)."""
    return [AGE_BUCKETS.index(c) for c in classes]
