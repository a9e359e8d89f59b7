"""FaceTracker: which frames are searched, the carried faces re-checked in between, the fast first
searches falling back to the full one; and MTCNN's own pieces it relies on (`refine`, a larger
`min_face_size`) on the astronaut photo."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from deepvision.errors import UserError
from deepvision.inference.faces.detect import Face, MtcnnDetector
from deepvision.inference.faces.track import FAST_FROM, FAST_RATIO, KEEP_SCORE, FaceTracker
from tests.faces.facetools import FACE, astronaut_bgr, iou

FRAME = np.zeros((30, 40, 3), np.uint8)


class _Script:
    """A detector with `refine`: search k finds one face at (k, 0); `refine` moves each face one pixel
    right, or finds nothing on the frames listed in `lose`."""

    name = "script"

    def __init__(self, lose: tuple[int, ...] = ()) -> None:
        self.calls: list[str] = []
        self.lose, self.frame = set(lose), -1

    def detect(self, image: np.ndarray) -> list[Face]:
        self.calls.append("search")
        return [Face((self.calls.count("search") * 10, 0, 8, 8), 1.0)]

    def refine(self, image: np.ndarray, faces: list[Face], min_score: float = 0.9) -> list[Face]:
        self.calls.append("refine")
        assert min_score == KEEP_SCORE
        if self.frame in self.lose:
            return []
        return [Face((f.box[0] + 1, *f.box[1:]), 1.0) for f in faces]


def _run(tracker: FaceTracker, det: _Script, frames: int) -> list[tuple[bool, tuple]]:
    seen = []
    for i in range(frames):
        det.frame = i
        faces = tracker(FRAME)
        seen.append((tracker.searched, faces[0].box))
    return seen


def test_a_search_every_kth_frame_and_the_faces_carried_in_between():
    det = _Script()
    seen = _run(FaceTracker(det, detect_every=3), det, 7)
    assert [s for s, _ in seen] == [True, False, False, True, False, False, True]
    # carried frames get the re-checked (moved) boxes of the frame before
    assert [b[0] for _, b in seen] == [10, 11, 12, 20, 21, 22, 30]
    assert det.calls == ["search", "refine", "refine"] * 2 + ["search"]


def test_a_frame_whose_carried_faces_are_all_dropped_is_searched_at_once():
    det = _Script(lose=(2,))
    seen = _run(FaceTracker(det, detect_every=4), det, 6)
    assert [s for s, _ in seen] == [True, False, True, False, False, False]
    assert det.calls[:4] == ["search", "refine", "refine", "search"]  # frame 2: refine found none, then a search
    assert [b[0] for _, b in seen] == [10, 11, 20, 21, 22, 23]


class _Empty(_Script):
    """A detector with `refine` whose searches find a face only on the frames listed in `faces_on`."""

    def __init__(self, faces_on: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.faces_on = set(faces_on)

    def detect(self, image: np.ndarray) -> list[Face]:
        self.calls.append("search")
        return [Face((10, 0, 8, 8), 1.0)] if self.frame in self.faces_on else []


def _searched(tracker: FaceTracker, det: _Script, frames: int) -> list[bool]:
    seen = []
    for i in range(frames):
        det.frame = i
        tracker(FRAME)
        seen.append(tracker.searched)
    return seen


def test_searches_that_find_nothing_back_off_to_every_kth_frame():
    det = _Empty()
    # empty searches in a row wait 0, 1, 3, then detect_every - 1 = 3 frames
    assert _searched(FaceTracker(det, detect_every=4), det, 12) == [True, True, False, True, False, False, False,
                                                                   True, False, False, False, True]
    assert "refine" not in det.calls  # nothing to carry


def test_a_face_lost_for_one_frame_is_searched_for_again_at_once_and_found():
    det = _Empty(faces_on=(0, 3, 4, 5))
    tracker = FaceTracker(det, detect_every=8)
    # 0: found; 1: refine keeps it; 2: refine loses it -> search (empty); 3: searched again at once, found
    det.lose = {2}
    assert _searched(tracker, det, 5) == [True, False, True, True, False]
    assert tracker.empty_searches == 0 and tracker.carried


def test_every_frame_is_searched_with_detect_every_1_or_a_detector_without_refine():
    det = _Script()
    assert all(s for s, _ in _run(FaceTracker(det, detect_every=1), det, 4)) and "refine" not in det.calls

    class NoRefine:
        name = "plain"
        detect = _Script.detect

        def __init__(self) -> None:
            self.calls: list[str] = []

    plain = NoRefine()
    tracker = FaceTracker(plain, detect_every=5)  # type: ignore[arg-type]
    for _ in range(4):
        tracker(FRAME)
        assert tracker.searched
    assert plain.calls == ["search"] * 4
    with pytest.raises(UserError, match="--detect-every must be at least 1"):
        FaceTracker(det, detect_every=0)


class _Sizes(MtcnnDetector):
    """An MtcnnDetector without the networks: records each search's minimum face size and finds a
    face only in the full search (`min_face_size` 20)."""

    def __init__(self, side: int) -> None:
        self.min_face_size, self.min_score, self.side, self.sizes = 20, 0.9, side, []

    def detect(self, image: np.ndarray, min_face_size: int | None = None) -> list[Face]:
        self.sizes.append(min_face_size or self.min_face_size)
        return [Face((0, 0, self.side, self.side), 0.99)] if self.sizes[-1] == 20 else []


def test_mtcnn_first_searches_for_faces_near_the_previous_size_then_falls_back_to_the_full_search():
    det = _Sizes(side=FAST_FROM + 20)
    tracker = FaceTracker(det, detect_every=1)
    tracker(FRAME)
    assert det.sizes == [20]  # no previous face: the full search only
    tracker(FRAME)
    assert det.sizes == [20, int((FAST_FROM + 20) * FAST_RATIO), 20]  # the fast one found nothing: the full one
    tracker.reset()
    tracker(FRAME)
    assert det.sizes[-1] == 20 and len(det.sizes) == 4
    small = _Sizes(side=FAST_FROM - 1)  # a face under FAST_FROM: every search is the full one
    tracker = FaceTracker(small, detect_every=1)
    tracker(FRAME), tracker(FRAME)
    assert small.sizes == [20, 20]
    slow = _Sizes(side=FAST_FROM + 20)
    tracker = FaceTracker(slow, detect_every=1, fast_detection=False)
    tracker(FRAME), tracker(FRAME)
    assert slow.sizes == [20, 20]


@pytest.fixture(scope="module")
def mtcnn():
    pytest.importorskip("facenet_pytorch")
    from deepvision.inference.faces.detect import create_detector

    return create_detector("mtcnn")


def test_mtcnn_refine_follows_a_moved_face_and_drops_a_non_face(mtcnn):
    photo = astronaut_bgr()
    faces = mtcnn.detect(photo)
    assert len(faces) == 1 and iou(faces[0].box, FACE) > 0.5
    moved = np.roll(photo, (9, 12), axis=(0, 1))  # the face 12 pixels right, 9 down
    truth = mtcnn.detect(moved)[0]
    refined = mtcnn.refine(moved, faces)
    assert len(refined) == 1 and refined[0].score >= 0.9 and refined[0].landmarks.shape == (5, 2)
    assert iou(refined[0].box, truth.box) > 0.8 > iou(faces[0].box, truth.box)
    assert np.abs(refined[0].landmarks - truth.landmarks).max() < 6
    assert mtcnn.refine(np.full_like(photo, 90), faces) == []  # no face there any more
    assert mtcnn.refine(photo, []) == []


def test_mtcnn_min_face_size_per_search(mtcnn):
    photo = astronaut_bgr()  # the face about 95 pixels
    assert len(mtcnn.detect(photo, min_face_size=60)) == 1
    small = cv2.resize(photo, (160, 160), interpolation=cv2.INTER_AREA)  # the face about 30 pixels
    assert len(mtcnn.detect(small)) == 1 and mtcnn.detect(small, min_face_size=80) == []
    assert isinstance(mtcnn.detect(small, min_face_size=1000), list)  # larger than the image: no error
    assert mtcnn.detect(small[:10]) == []  # smaller than P-Net's 12 x 12 window
    assert mtcnn.model.min_face_size == mtcnn.min_face_size == 20  # restored after the search
    with pytest.raises(UserError, match="at least 12"):
        MtcnnDetector(min_face_size=8)
    with pytest.raises(UserError, match="three MTCNN thresholds"):
        MtcnnDetector(thresholds=(0.6, 0.7))  # type: ignore[arg-type]
