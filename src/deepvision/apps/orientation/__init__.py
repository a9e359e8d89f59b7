"""Image-orientation correction (docs/transfer.md): rotated data set, features + logistic regression, apply.

Python twins of `deepvision orientation dataset` and `deepvision orientation apply`.
"""

from deepvision.apps.orientation.apply import OrientationPrediction, apply_orientation, load_orientation_model
from deepvision.apps.orientation.dataset import (
    ANGLES,
    OrientationDataset,
    build_orientation_dataset,
    correction_angle,
    rotate_clockwise,
)

__all__ = ["ANGLES", "OrientationDataset", "OrientationPrediction", "apply_orientation", "build_orientation_dataset",
           "correction_angle", "load_orientation_model", "rotate_clockwise"]
