"""The emotion app's face detector: MTCNN by default when facenet-pytorch is installed (it found 92% of
the faces of a real clip against Haar's 31%: docs/faces.md), else the reference's Haar cascade with a
one-line note; `--detector` picks any of them and results.json records the one used."""

from __future__ import annotations

import json

import pytest

from deepvision.apps.emotion import app
from deepvision.apps.emotion.app import default_detector, detector_note, run_emotion
from tests.apps.test_emotion import astronaut_video, fer_run  # noqa: F401 (fixtures)
from tests.faces.facetools import expected_box, iou


@pytest.fixture
def no_mtcnn(monkeypatch):
    from deepvision.inference.faces import detect

    monkeypatch.setattr(detect, "available_detectors", lambda: ["haar"])


def test_mtcnn_is_the_default_when_installed():
    pytest.importorskip("facenet_pytorch")
    assert default_detector() == "mtcnn" == app.PREFERRED_DETECTOR
    assert detector_note(None) is None


def test_haar_without_facenet_pytorch_and_a_note_says_how_to_get_mtcnn(no_mtcnn):
    assert default_detector() == "haar"
    note = detector_note(None)
    assert note.startswith("face detector: haar") and "pip install --no-deps facenet-pytorch" in note
    assert len(note) <= 80
    assert detector_note("haar") is None  # asked for by name: nothing to say


def test_the_default_runs_mtcnn_and_records_it(astronaut_video, fer_run, tmp_path, run_cli):  # noqa: F811
    pytest.importorskip("facenet_pytorch")
    video, plan = astronaut_video
    code, _, err = run_cli("emotion", fer_run, "--video", video, "--headless", "--out", tmp_path / "o",
                           "--max-frames", "3")
    assert code == 0 and "face detector" not in err  # no note (a busy machine may add a line on threads)
    doc = json.loads((tmp_path / "o" / "results.json").read_text())
    assert doc["detector"] == "mtcnn" and doc["no_face"] == 0
    for result, step in zip(doc["results"], plan):  # the same face as the cascade's, give or take the margins
        assert iou(tuple(result["box"]), expected_box(*step)) > 0.4


@pytest.mark.parametrize("name", ["haar", "mtcnn"])
def test_detector_by_name(astronaut_video, fer_run, tmp_path, name):  # noqa: F811
    if name == "mtcnn":
        pytest.importorskip("facenet_pytorch")
    video, _ = astronaut_video
    summary = run_emotion(fer_run, video=video, headless=True, out=tmp_path / "o", max_frames=2, detector=name)
    doc = json.loads((tmp_path / "o" / "results.json").read_text())
    assert doc["detector"] == name and summary.no_face == 0


def test_fallback_is_said_on_stderr_and_used(astronaut_video, fer_run, tmp_path, run_cli, no_mtcnn):  # noqa: F811
    video, _ = astronaut_video
    code, _, err = run_cli("emotion", fer_run, "--video", video, "--headless", "--out", tmp_path / "o",
                           "--max-frames", "2")
    assert code == 0
    notes = [line for line in err.splitlines() if "face detector" in line]
    assert notes == ["face detector: haar (for MTCNN: pip install --no-deps facenet-pytorch)"]
    assert json.loads((tmp_path / "o" / "results.json").read_text())["detector"] == "haar"


def test_an_unknown_detector_is_refused(fer_run, capsys):  # noqa: F811
    from deepvision.cli.main import main

    with pytest.raises(SystemExit) as exit_:
        main(["emotion", str(fer_run), "--video", "x.mp4", "--detector", "yolo"])
    assert exit_.value.code == 2 and "invalid choice: 'yolo'" in capsys.readouterr().err


def test_mtcnn_searches_every_kth_frame_and_carries_the_faces_in_between(astronaut_video, fer_run, tmp_path,  # noqa: F811
                                                                         run_cli):
    pytest.importorskip("facenet_pytorch")
    video, plan = astronaut_video  # 8 frames, the face moving about 10 pixels a frame at width 300; frame 5 blank
    code, _, err = run_cli("emotion", fer_run, "--video", video, "--headless", "--out", tmp_path / "o",
                           "--detect-every", "3")
    assert code == 0, err
    doc = json.loads((tmp_path / "o" / "results.json").read_text())
    assert doc["detector"] == "mtcnn" and doc["detect_every"] == 3 and doc["no_face"] == 1
    # searched: every 3rd frame, the blank frame 5 at once (its carried face was dropped) and frame 6 (none carried)
    assert [r["searched"] for r in doc["results"]] == [True, False, False, True, False, True, True, False]
    for i, (result, step) in enumerate(zip(doc["results"], plan)):
        if i == 5:
            assert result["box"] is None
            continue
        assert iou(tuple(result["box"]), expected_box(*step)) > 0.5, i  # carried boxes follow the face


def test_detect_every_must_be_positive(astronaut_video, fer_run, tmp_path, run_cli):  # noqa: F811
    video, _ = astronaut_video
    code, _, err = run_cli("emotion", fer_run, "--video", video, "--headless", "--out", tmp_path / "o",
                           "--detect-every", "0")
    assert code == 2 and err.strip() == "deepvision emotion: error: --detect-every must be at least 1, got 0"
    assert not (tmp_path / "o").exists()


def test_the_cli_default_is_the_apps():
    from deepvision.cli.main import build_parser
    from deepvision.inference.faces.track import DETECT_EVERY

    parser = build_parser()
    args = parser.parse_args(["emotion", "run", "--video", "x.mp4"])
    assert args.detect_every is None and DETECT_EVERY == app.DETECT_EVERY  # not given: the app's default
    emotion = next(a for a in parser._actions if a.dest == "command").choices["emotion"]
    assert f"(default {DETECT_EVERY})" in " ".join(emotion.format_help().split())
