"""FER2013 label conventions (docs/faces.md), shared by the CSV builder, the Keras importer and the emotion app."""

from __future__ import annotations

FER7_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
# 6-class mode: disgust merged into angry, labels renumbered; the reference's deployment names
FER6_LABELS = ("angry", "scared", "happy", "sad", "surprised", "neutral")
FER6_MAP = {0: 0, 1: 0, 2: 1, 3: 2, 4: 3, 5: 4, 6: 5}


def emotion_labels(num_classes: int) -> list[str] | None:
    """The FER label names for a 6- or 7-class emotion model, else None."""
    return list(FER6_LABELS if num_classes == 6 else FER7_LABELS) if num_classes in (6, 7) else None
