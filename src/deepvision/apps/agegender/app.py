"""Age and gender deployment (docs/faces.md).

Images outside the dataset (`--image FILE|FOLDER`, a folder in sorted order): resize to width 800,
detect every face (dlib HOG upsampled once when dlib is installed, else the Haar cascade), locate
the eyes (68 landmarks, MTCNN points, eye cascade or box), align to 256 x 256, 10-crop at each run's
input size with each run's mean (RGB, as the run was trained), average the probabilities. Test samples
(`--sample-size N` rows of the age test list): resize to the input size (bicubic), one crop.
Writes the input with green face boxes, the aligned faces and one probability canvas per task as
PNG files (headless), or shows them in windows.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepvision.apps.agegender.adience import display_label
from deepvision.apps.classifier import Classifier, load_classifier
from deepvision.data.imageio import read_bgr
from deepvision.errors import UserError
from deepvision.evaluation.tencrop import ten_crop
from deepvision.fileio import atomic_write_text, input_file, output_subfolder, write_image, written_whole
from deepvision.inference.faces.align import align_face
from deepvision.inference.faces.detect import create_detector, cv2_module
from deepvision.inference.faces.draw import GREEN, RED, draw_face, probability_canvas, resize_to_width
from deepvision.inference.faces.landmarks import EyeFinder
from deepvision.placement import (
    distinct_stems,
    enclosing,
    listed_in,
    refuse_output_folder_over_inputs,
    refuse_output_in_input_folders,
    refuse_unlisted,
    require_own_folder,
)
from deepvision.safeload import image_files, spreadsheet_cell

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class FaceResult:
    image: str
    face: int
    box: tuple[int, int, int, int]  # in the original image's pixels
    eyes: str  # the eye source used for alignment
    age: dict[str, float]
    gender: dict[str, float]

    @property
    def age_label(self) -> str:
        return max(self.age, key=self.age.get)

    @property
    def gender_label(self) -> str:
        return max(self.gender, key=self.gender.get)


@dataclass
class AgeGenderReport:
    faces: list[FaceResult] = field(default_factory=list)
    no_face: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)


def face_probabilities(clf: Classifier, aligned_bgr: np.ndarray) -> np.ndarray:
    """Ten-crop scoring of an aligned face: resize to the run's resize side (bicubic), 10 crops, mean of the softmaxes.

    A run without a resize side scores one bicubic resize to its input size instead.
    """
    cv2 = cv2_module()
    rgb = cv2.cvtColor(aligned_bgr, cv2.COLOR_BGR2RGB) if clf.pre.channels == 3 else \
        cv2.cvtColor(aligned_bgr, cv2.COLOR_BGR2GRAY)[:, :, None]
    h, w = clf.pre.size
    side = clf.pre.resize
    if side and side >= max(h, w):
        img = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_CUBIC).reshape(side, side, -1)
        crops = ten_crop(torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))), (h, w))
        return clf.probabilities(crops).mean(0)
    img = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_CUBIC).reshape(h, w, -1)
    return clf.probabilities(torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None])[0]


def list_images(image: str | Path) -> list[Path]:
    path = Path(image)
    if path.is_dir():
        found = image_files(path, IMAGE_EXTS, recursive=False)
        if not found:
            raise UserError(f"no image ({', '.join(IMAGE_EXTS)}) in {path}")
        return found
    return [input_file(path, "image")]  # a FIFO or a device is named as such, never opened


class _Output:
    """Images go to files under `out` (headless) or to windows (any key for the next image)."""

    def __init__(self, out: Path | None) -> None:  # `out`: the caller's `fileio.written_whole` folder
        self.cv2, self.out = cv2_module(), out
        self.written: list[str] = []  # under `out`, for results.json's list of outputs

    def show(self, name: str, image: np.ndarray) -> None:
        if self.out is not None:
            path = self.out / f"{name}.png"
            output_subfolder(self.out, Path(name).parent)  # a link planted at a sub-folder is refused
            write_image(path, image)  # temporary file + rename: a planted link is replaced, never followed
            self.written.append(f"{name}.png")
            return
        try:
            self.cv2.imshow(name, image)
        except self.cv2.error:
            raise UserError("this OpenCV build cannot open windows (opencv-python-headless); give --out DIR") from None

    def wait(self) -> None:
        if self.out is None:
            self.cv2.waitKey(0)
            self.cv2.destroyAllWindows()


def _models(run_age, run_gender, device: str) -> tuple[Classifier, Classifier]:
    age = run_age if isinstance(run_age, Classifier) else load_classifier(run_age, device=device)
    gender = run_gender if isinstance(run_gender, Classifier) else load_classifier(run_gender, device=device)
    return age, gender


def predict_agegender(run_age: str | Path | Classifier, run_gender: str | Path | Classifier, image: str | Path, *,
                      out: str | Path | None = None, detector: str = "auto", landmarks: str | Path | None = None,
                      eyes: str = "auto", device: str = "cpu") -> AgeGenderReport:
    """Every face of an image (or of each image of a folder, sorted): box, aligned face, age and gender."""
    paths = list_images(image)
    if out is not None:  # its sub-folders and results.csv would land among (and over) the photos
        refuse_output_in_input_folders(out, [image])
        refuse_output_folder_over_inputs(out, paths)
        inside = next((p for p in paths if enclosing(Path(p), [Path(out)]) is not None), None)
        if inside is not None:  # OUT/<stem>/ may be the folder the photo is in
            raise UserError(f"--out {out} holds the input {inside}; its outputs could replace it, so choose a "
                            f"folder that holds none of the photos")
        require_own_folder(out, "results.csv", _HEADER, "agegender")
    # a photo's folder never takes the name of the tables written beside the folders
    names = [f"{n}_photo" if n in ("results.csv", "results.json") else n for n in distinct_stems(paths)]
    if out is not None:
        _refuse_unlisted_drawings(Path(out), names)
    age_clf, gender_clf = _models(run_age, run_gender, device)
    det = create_detector(detector)  # dlib: HOG upsampled once
    finder = EyeFinder(eyes, landmarks)
    # the drawings land with the tables at the end: a stop, failure or refusal leaves --out as it was
    with written_whole(out, last="results.csv") if out is not None else contextlib.nullcontext() as folder:
        output = _Output(folder)
        report = AgeGenderReport()
        for path, name in zip(paths, names):
            frame = read_bgr(path)
            small, factor = resize_to_width(frame, 800)
            faces = det.detect(small)
            if not faces:
                print(f"no face found in {path}")
                report.no_face.append(str(path))
                continue
            shown = small.copy()
            for k, face in enumerate(faces):
                found = finder(small, face)
                aligned = align_face(small, found)
                p_age, p_gender = face_probabilities(age_clf, aligned), face_probabilities(gender_clf, aligned)
                box = tuple(int(round(v / factor)) for v in face.box)
                result = FaceResult(str(path), k, box, found.source,  # type: ignore[arg-type]
                                    dict(zip(age_clf.classes, map(float, p_age))),
                                    dict(zip(gender_clf.classes, map(float, p_gender))))
                report.faces.append(result)
                draw_face(shown, face.box, None, GREEN)
                stem = f"{name}/face{k}"
                output.show(f"{stem}_aligned", aligned)
                output.show(f"{stem}_age", _canvas(age_clf, p_age))
                output.show(f"{stem}_gender", _canvas(gender_clf, p_gender))
            output.show(f"{name}/input", shown)
            output.wait()
        if out is not None:
            report.files = _write_results(folder, report, output.written, Path(out))
        return report


def sample_agegender(run_age: str | Path | Classifier, run_gender: str | Path | Classifier, *, sample_size: int = 10,
                     test_list: str | Path | None = None, root: str | Path | None = None,
                     out: str | Path | None = None, seed: int | None = None, device: str = "cpu") -> AgeGenderReport:
    """`sample_size` rows of the age test list, sampled without replacement: image with the actual age, canvases."""
    from deepvision.data.lst import read_lst

    if sample_size <= 0:
        raise UserError(f"--sample-size is a number of samples and must be positive, got {sample_size}")
    if out is not None:
        require_own_folder(out, "results.csv", _HEADER, "agegender")
    age_clf, gender_clf = _models(run_age, run_gender, device)
    lst = Path(test_list) if test_list else _default_test_list(run_age)
    entries = read_lst(lst)
    if not entries:
        raise UserError(f"{lst} lists no image")
    rows = random.Random(seed).sample(entries, min(sample_size, len(entries)))
    base = Path(root) if root else lst.parent
    if out is not None:
        _refuse_unlisted_drawings(Path(out), [f"sample{n:03d}" for n in range(len(rows))])
    # the drawings land with the tables at the end: a stop, failure or refusal leaves --out as it was
    with written_whole(out, last="results.csv") if out is not None else contextlib.nullcontext() as folder:
        output = _Output(folder)
        report = AgeGenderReport()
        cv2 = cv2_module()
        for n, entry in enumerate(rows):
            path = base / entry.path
            try:
                image = read_bgr(path)
            except UserError as exc:
                raise UserError(f"{exc} (give the Adience folder with --root)") from None
            p_age = _single(age_clf, image)
            p_gender = _single(gender_clf, image)
            actual = age_clf.classes[int(entry.label)] if 0 <= int(entry.label) < len(age_clf.classes) else "?"
            shown, _ = resize_to_width(image, 400)
            shown = shown.copy()
            cv2.putText(shown, f"Actual: {display_label(actual)}", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.7, RED, 3)
            output.show(f"sample{n:03d}/image", shown)
            output.show(f"sample{n:03d}/age", _canvas(age_clf, p_age))
            output.show(f"sample{n:03d}/gender", _canvas(gender_clf, p_gender))
            output.wait()
            report.faces.append(FaceResult(str(path), 0, (0, 0, image.shape[1], image.shape[0]), f"actual {actual}",
                                           dict(zip(age_clf.classes, map(float, p_age))),
                                           dict(zip(gender_clf.classes, map(float, p_gender)))))
        if out is not None:
            report.files = _write_results(folder, report, output.written, Path(out))
        return report


def _canvas(clf: Classifier, probs: np.ndarray) -> np.ndarray:
    return probability_canvas([display_label(c) for c in clf.classes], probs)


def _single(clf: Classifier, image_bgr: np.ndarray) -> np.ndarray:
    cv2 = cv2_module()
    h, w = clf.pre.size
    img = cv2.resize(image_bgr, (w, h), interpolation=cv2.INTER_CUBIC)
    return clf.probabilities(clf.prepare(img))[0]


def _default_test_list(run_age: Any) -> Path:
    if isinstance(run_age, (str, Path)) and Path(run_age).is_dir():
        from deepvision.runs.rundir import RunDir

        cfg = RunDir.open(run_age).read_config()
        if cfg.data.test:
            candidate = Path(cfg.data.test).with_suffix(".lst")
            if not candidate.is_absolute() and cfg.data.root:
                candidate = Path(cfg.data.root) / candidate
            if candidate.is_file():
                return candidate
    raise UserError("give the age test list with --list (written by `deepvision adience lists`)")


_HEADER = "image,face,x,y,w,h,eyes,age,age_probability,gender,gender_probability"  # results.csv


_DRAWING = re.compile(r"(input|image|age|gender|face\d+_(aligned|age|gender))\.png")  # as `_Output` names them


def _refuse_unlisted_drawings(out: Path, folders: list[str]) -> None:
    """Refuse, before any work, a file in `out/<folder>/` named like a drawing of this command that the
    earlier results.json does not list among its outputs (a file put there since is not this command's)."""
    drawn = [p for f in folders if (out / f).is_dir() for p in sorted((out / f).iterdir())
             if _DRAWING.fullmatch(p.name)]
    refuse_unlisted(out, drawn, listed_in(out / "results.json", "outputs"), "results.json", "agegender")


def _write_results(folder: Path, report: AgeGenderReport, outputs: list[str], out: Path) -> dict[str, str]:
    """results.csv and results.json written into `folder`, named as they land in `out`."""
    faces = report.faces
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(_HEADER.split(","))
    for f in faces:
        w.writerow([spreadsheet_cell(f.image), f.face, *f.box, f.eyes, spreadsheet_cell(f.age_label),
                    f"{f.age[f.age_label]:.4f}", spreadsheet_cell(f.gender_label), f"{f.gender[f.gender_label]:.4f}"])
    atomic_write_text(folder / "results.csv", buf.getvalue())
    payload = {"faces": [f.__dict__ for f in faces], "no_face": report.no_face, "outputs": outputs}
    atomic_write_text(folder / "results.json", json.dumps(payload, indent=1, default=list) + "\n")
    return {"csv": str(out / "results.csv"), "json": str(out / "results.json")}
