"""`deepvision orientation apply`: predict how each photo was turned and write it upright (docs/transfer.md).

MODEL is a `deepvision logreg` output (folder or model.npz) fitted on an orientation feature file. The
features are extracted again exactly as the file recorded (network, weights, layer, pooling, flatten
order, preprocessing); the predicted class maps to an angle through `label_names`, and the image is
corrected by turning it clockwise by (360 - angle) mod 360. Corrected images keep their file names under
OUT; `predictions.csv` lists each image's angle and probability and `sheet.png` shows originals beside
their corrections. Every prediction is made before the first file is written.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from deepvision.apps.orientation.dataset import ANGLES
from deepvision.errors import UserError
from deepvision.fileio import atomic_path, atomic_write_text, written_whole
from deepvision.placement import refuse_output_folder_over_inputs, refuse_output_in_input_folders, replace_only_own
from deepvision.safeload import csv_rows, read_text_file, spreadsheet_row


@dataclass
class OrientationPrediction:
    image: str
    angle: int  # how the image is turned (clockwise), as predicted
    probability: float
    corrected: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, "angle": self.angle, "probability": self.probability,
                "corrected": self.corrected}


def load_orientation_model(model: str | Path, device: str = "auto") -> tuple[Any, Any]:
    """(LinearModel, FeatureExtractor) rebuilt from a logreg model fitted on a deepvision feature file."""
    from deepvision.apps.transfer.linear_model import LinearModel
    from deepvision.data.preprocess import Preprocess
    from deepvision.inference.backbones import load_model
    from deepvision.inference.features import FeatureExtractor

    clf = LinearModel.load(model)
    feat = clf.info.get("features") or {}
    if not isinstance(feat, dict) or not feat:
        raise UserError(f"{model} was fitted on a feature file without extraction metadata; extract the features "
                        f"with `deepvision features` so the same network can be applied to new images")
    try:
        angles = [int(n) for n in clf.label_names]
    except ValueError:
        raise UserError(f"{model} predicts classes {', '.join(clf.label_names)}, not rotation angles; fit it on "
                        f"`deepvision orientation dataset` features") from None
    if any(a not in ANGLES for a in angles) or len(set(angles)) != len(angles):  # -90 and 270: one turn twice
        raise UserError(f"{model} predicts angles {angles}; orientation models predict 0, 90, 180 and 270")
    reachable = sorted({angles[int(c)] for c in clf.classes})
    if len(reachable) != len(ANGLES):  # fitted on features of two turns: the others are never answered
        raise UserError(f"{model} answers only {', '.join(map(str, reachable))} degrees; an orientation model "
                        f"answers all four turns (fit it on an `orientation dataset` of all four)")
    loaded = load_model(feat.get("model"), feat.get("weights"), run=feat.get("run"), epoch=feat.get("epoch"),
                        device=device)
    fitted_on = feat.get("run_id")
    if fitted_on and loaded.run_id and loaded.run_id != fitted_on:
        raise UserError(f"{model} was fitted on features of run {str(fitted_on)[:8]}, but {feat.get('run')} now "
                        f"holds run {loaded.run_id[:8]}; extract the features from it again and refit")
    if feat.get("preprocess"):
        try:  # exactly the transform of the training features
            loaded.pre = Preprocess.from_dict(feat["preprocess"])
        except (TypeError, KeyError, ValueError):
            raise UserError(f"{model}: the preprocessing in its info is damaged; fit the model again") from None
        except UserError as exc:
            raise UserError(f"{model} info: {exc}") from None
    extractor = FeatureExtractor(loaded, feat.get("layer"), pool=feat.get("pool"),
                                 flatten=feat.get("flatten", "channels_last"))
    check_extractor(model, clf, extractor)
    return clf, extractor


def check_extractor(model: str | Path, clf: Any, extractor: Any) -> None:
    """One blank image through the network, before any real one: the preprocessing recorded in the model's
    info must fit the network it names (channels, size) and give as many features as the model takes."""
    import torch

    from deepvision.runs.loading import first_conv

    pre, source = extractor.loaded.pre, extractor.loaded.title
    stem = first_conv(extractor.loaded.model)
    if stem is not None and stem[1].in_channels != pre.channels:
        raise UserError(f"{model}: its info gives {pre.channels} channel(s) but {source} takes "
                        f"{stem[1].in_channels}; the model was fitted on another network's features")
    try:
        width = extractor(torch.zeros((1, pre.channels, *pre.size), dtype=torch.uint8)).shape[1]
    except RuntimeError as exc:
        raise UserError(f"{model}: {source} cannot take its info's input {pre.channels}x{pre.size[0]}x"
                        f"{pre.size[1]} ({str(exc).splitlines()[0][:100]}); the model was fitted on another "
                        f"network's features") from None
    if width != clf.n_features:
        raise UserError(f"{model} takes {clf.n_features} features but {source} gives {width} at layer "
                        f"{extractor.layer}; the model was fitted on another network's features")


def predict_orientation(clf: Any, extractor: Any, paths: Sequence[Path], *, batch_size: int = 32,
                        progress: Callable[[int, int], None] | None = None) -> list[OrientationPrediction]:
    from deepvision.inference.batching import batches

    out: list[OrientationPrediction] = []
    for chunk, batch in batches(list(paths), extractor.loaded.pre.load, batch_size):
        rows = extractor(batch)
        if rows.shape[1] != clf.n_features:
            raise UserError(f"the network gives {rows.shape[1]} features but the model takes {clf.n_features}")
        probs = clf.predict_proba(rows)
        for path, p in zip(chunk, probs):
            k = int(p.argmax())
            out.append(OrientationPrediction(str(path), int(clf.label_names[int(clf.classes[k])]), float(p[k])))
        if progress is not None:
            progress(len(out), len(paths))
    return out


_HEADER = "image,angle,probability,corrected"  # predictions.csv


def apply_orientation(
    model: str | Path,
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    sample: int | None = None,
    seed: int = 42,
    batch_size: int = 32,
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> list[OrientationPrediction]:
    """Predict the angle of each image (or of `sample` drawn without replacement) and write corrections."""
    from deepvision.apps.orientation.dataset import SAVE_FORMATS, _save, correction_angle, rotate_clockwise
    from deepvision.data.preprocess import open_image
    from deepvision.inference.batching import expand_images

    paths = expand_images(inputs)
    if sample is not None:
        if sample < 1:
            raise UserError(f"--sample must be a positive number of images, got {sample}")
        if sample < len(paths):
            rng = np.random.default_rng(seed)
            paths = [paths[i] for i in sorted(rng.choice(len(paths), sample, replace=False))]
    out = Path(out)
    refuse_output_in_input_folders(out, inputs)  # the corrected copies would be corrected again next time
    refuse_output_folder_over_inputs(out, paths, [out / "predictions.csv", out / "sheet.png"])
    names = _output_names(paths, SAVE_FORMATS)
    replace_only_own(out, [out / n for n in names], _earlier_outputs(out), "predictions.csv", _HEADER,
                     "orientation apply")
    clf, extractor = load_orientation_model(model, device)
    results = predict_orientation(clf, extractor, paths, batch_size=batch_size, progress=progress)
    # the corrections land with their table, all at the end: a stop or a failure leaves --out as it was
    with written_whole(out, last="predictions.csv") as tmp:
        pairs = []
        for r, name in zip(results, names):
            src = Path(r.image)
            img = open_image(src, 3)
            fixed = rotate_clockwise(img, correction_angle(r.angle))
            _save(fixed, tmp / name, 95)
            r.corrected = str(out / name)
            if len(pairs) < 40:  # the sheet shows the first 40
                small = [im.copy() for im in (img, fixed)]
                for im in small:
                    im.thumbnail((160, 160))
                pairs.append((small[0], small[1], r))
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(_HEADER.split(","))
        for r in results:
            w.writerow(spreadsheet_row([r.image, r.angle, f"{r.probability:.6f}", r.corrected]))
        atomic_write_text(tmp / "predictions.csv", buf.getvalue())
        side_by_side_sheet(pairs, tmp / "sheet.png")
    return results


def _output_names(paths: list[Path], formats: Iterable[str]) -> list[str]:
    """The file name each corrected image gets: its own (PNG where its format cannot be saved), numbered
    when names repeat across folders; an input photo named sheet.png becomes sheet_1.png."""
    used, names = {"predictions.csv", "sheet.png"}, []
    for src in map(Path, paths):
        name = src.name if src.suffix.lower() in formats else f"{src.stem}.png"
        stem, suffix = Path(name).stem, Path(name).suffix
        k = 1
        while name in used:
            name, k = f"{stem}_{k}{suffix}", k + 1
        used.add(name)
        names.append(name)
    return names


def _earlier_outputs(out: Path) -> list[str]:
    """The corrected images an earlier apply's predictions.csv in `out` lists (its `corrected` column)."""
    path = out / "predictions.csv"
    try:
        rows = list(csv_rows(csv.reader(io.StringIO(read_text_file(path, "an earlier predictions.csv"))), path))
    except (FileNotFoundError, UserError):
        return []
    return [Path(row[3]).name for row in rows[1:] if len(row) == 4]


def side_by_side_sheet(pairs: list[tuple[Image.Image, Image.Image, OrientationPrediction]], path: Path,
                       thumb: int = 160, max_rows: int = 40) -> Path:
    """A PNG with one row per image: the input and its correction, labelled with the predicted angle."""
    from PIL import ImageDraw

    pairs = pairs[:max_rows]
    label_h = 16
    cols = 2 if len(pairs) <= 10 else 4  # image pairs per row
    rows = math.ceil(len(pairs) / (cols // 2))
    sheet = Image.new("RGB", (cols * (thumb + 8) + 8, rows * (thumb + label_h + 8) + 8), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (orig, fixed, r) in enumerate(pairs):
        row, pair = divmod(i, cols // 2)
        for j, (img, text) in enumerate(((orig, f"turned {r.angle}"), (fixed, f"corrected ({r.probability:.0%})"))):
            t = img.copy()
            t.thumbnail((thumb, thumb))
            x = 8 + (pair * 2 + j) * (thumb + 8)
            y = 8 + row * (thumb + label_h + 8)
            sheet.paste(t, (x + (thumb - t.width) // 2, y + label_h + (thumb - t.height) // 2))
            draw.text((x, y), text, fill=(0, 0, 0))
    with atomic_path(path) as tmp:
        sheet.save(tmp, "PNG")
    return path
