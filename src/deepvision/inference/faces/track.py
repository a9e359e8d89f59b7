"""Faces frame after frame, cheaper than a full search of every frame (docs/faces.md, "Speed").

`FaceTracker` wraps a detector for a video:

- Haar: after a frame whose face was at least COARSE_FROM pixels, the frame is searched at half size
  first (the cascade's 24 x 24 window then covers 48 pixels: about a third of the time);
- MTCNN: after a frame whose face was at least FAST_FROM pixels, the frame is searched first for
  faces of at least FAST_RATIO of that size (`min_face_size`), which drops the pyramid's largest,
  costliest levels and most of the candidates R-Net and O-Net check;
- either way, a first search that finds nothing is followed at once by the full one;
- with a detector that can re-check a box (MTCNN's `refine`, its last stage on the box), only every
  `detect_every`-th frame is searched: in between, the previous frame's faces are re-checked, which
  moves each box with its face and drops those it scores under `keep_score` (MTCNN's own O-Net
  threshold, 0.7: a face already found only has to be still there; a new face needs the detector's
  `min_score`, 0.9); a frame where none is left is searched at once, so new faces are found at most
  `detect_every - 1` frames late;
- with such a detector, searches that keep finding nothing back off: after the n-th empty search in a
  row the next 2**(n-1) - 1 frames wait (none after the first, so a face lost for one frame is searched
  for again at once), up to `detect_every - 1`, so a stretch without a face costs a search every
  `detect_every`-th frame too.
"""

from __future__ import annotations

import numpy as np

from deepvision.errors import UserError
from deepvision.inference.faces.detect import Face, FaceDetector, HaarDetector, MtcnnDetector, largest_face

COARSE_SCALE = 0.5  # the Haar cascade's first search, on the frame at half size
COARSE_FROM = 60  # ... tried when the previous frame's face was at least this many pixels wide and high
FAST_RATIO = 0.7  # MTCNN's first search: faces of at least 0.7 of the previous frame's largest face ...
FAST_FROM = 40  # ... tried when that face was at least this many pixels (a first search from 28 pixels up)
DETECT_EVERY = 8  # MTCNN: a search every 8th frame, the faces re-checked in between
KEEP_SCORE = 0.7  # a carried face stays while `refine` scores it at least this (MTCNN's O-Net threshold)


class FaceTracker:
    """The faces of consecutive video frames with `detector` (see the module doc); `reset()` between videos.

    `fast_detection=False` makes every search a full one; `detect_every=1` searches every frame.
    After each call, `searched` says whether that frame was searched (else its faces were carried),
    and `fast` whether the fast first search alone gave its faces.
    """

    def __init__(self, detector: FaceDetector, detect_every: int = DETECT_EVERY, fast_detection: bool = True,
                 keep_score: float = KEEP_SCORE) -> None:
        if detect_every < 1:
            raise UserError(f"--detect-every must be at least 1, got {detect_every}")
        self.detector = detector
        self.keep_score = float(keep_score)
        self.detect_every = int(detect_every)
        self.fast_detection = fast_detection
        self.reset()

    def reset(self) -> None:
        """Forget the previous frames: the next frame is searched in full."""
        self.last_side = 0  # the smaller side of the previous frame's largest face, 0 when it had none
        self.carried: list[Face] = []  # the previous frame's faces
        self.since_search = 0  # frames since the last search
        self.empty_searches = 0  # searches in a row that found no face
        self.searched = self.fast = False

    def __call__(self, image: np.ndarray, gray: np.ndarray | None = None) -> list[Face]:
        """Faces in one 8-bit BGR frame (`gray`: the same frame in grayscale, when already at hand)."""
        faces: list[Face] = []
        refine = getattr(self.detector, "refine", None)
        if refine is not None and self.carried and self.since_search < self.detect_every - 1:
            faces = refine(image, self.carried, min_score=self.keep_score)
        if faces or (refine is not None and not self.carried and self.since_search < self.empty_wait()):
            self.since_search += 1
            self.searched = self.fast = False
        else:
            faces = self.search(image, gray)
            self.since_search, self.searched = 0, True
            self.empty_searches = 0 if faces else self.empty_searches + 1
        face = largest_face(faces)
        self.last_side = min(face.box[2:]) if face else 0
        self.carried = faces
        return faces

    def empty_wait(self) -> int:
        """Frames to wait after the last search when it found nothing (0 when it found a face)."""
        if self.empty_searches == 0:
            return 0
        return min(self.detect_every - 1, 2 ** (min(self.empty_searches, 16) - 1) - 1)

    def search(self, image: np.ndarray, gray: np.ndarray | None = None) -> list[Face]:
        """A search of the whole frame: the fast first search when it applies, else (or when it finds
        nothing) the detector's full one."""
        det, self.fast = self.detector, True
        if isinstance(det, HaarDetector):
            image = image if gray is None else gray
            if self.fast_detection and self.last_side >= COARSE_FROM:
                faces = det.detect_at(image, COARSE_SCALE)
                if faces:
                    return faces
            self.fast = False
            return det.detect(image)
        if isinstance(det, MtcnnDetector) and self.fast_detection and self.last_side >= FAST_FROM:
            faces = det.detect(image, min_face_size=max(det.min_face_size, int(self.last_side * FAST_RATIO)))
            if faces:
                return faces
        self.fast = False
        return det.detect(image)
