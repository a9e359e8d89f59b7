"""Emotion case study (docs/faces.md): FER2013 to HDF5 and real-time recognition from a camera or video."""

from deepvision.apps.emotion.app import EmotionRecognizer, EmotionSummary, FrameResult, run_emotion
from deepvision.apps.emotion.fer2013 import build_fer2013, make_fake_fer_csv

__all__ = ["EmotionRecognizer", "EmotionSummary", "FrameResult", "build_fer2013", "make_fake_fer_csv", "run_emotion"]
