"""Age and gender case study (docs/faces.md): Adience lists, and deployment with face alignment."""

from deepvision.apps.agegender.adience import (
    AGE_CLASSES,
    GENDER_CLASSES,
    age_bucket,
    build_adience_lists,
    make_fake_adience,
    write_task_means,
)
from deepvision.apps.agegender.app import AgeGenderReport, FaceResult, predict_agegender, sample_agegender

__all__ = ["AGE_CLASSES", "GENDER_CLASSES", "AgeGenderReport", "FaceResult", "age_bucket", "build_adience_lists",
           "make_fake_adience", "predict_agegender", "sample_agegender", "write_task_means"]
