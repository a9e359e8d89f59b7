"""`deepvision classify`: top-k classes of image files or folders with a pretrained network or a run.

Each network brings its own evaluation transform (torchvision weights: their documented resize, crop,
mean/std and interpolation) and class table (ImageNet synsets `n07920052 espresso` for ImageNet
weights). Images decode in background threads and go through the model in batches on the device.
Every result comes back before anything is written, so a file that is not an image stops the command
with one line and leaves no partial output.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from deepvision.errors import UserError
from deepvision.fileio import atomic_write_text
from deepvision.inference.backbones import LoadedModel
from deepvision.inference.batching import batches, expand_images
from deepvision.inference.predict import Prediction, check_top
from deepvision.models.outputs import class_probabilities
from deepvision.placement import (
    begins_with,
    refuse_output_in_input_folders,
    refuse_output_over_inputs,
    refuse_replacing,
)
from deepvision.safeload import read_json, spreadsheet_cell


def classify_tensors(loaded: LoadedModel, batch: torch.Tensor, top: int) -> list[list[tuple[str, float]]]:
    """Top-k (class, probability) lists for a uint8 N x C x H x W batch from `loaded.pre.load`."""
    with torch.inference_mode():
        x = loaded.pre.normalize(batch.to(loaded.device, non_blocking=True))
        probs = class_probabilities(loaded.model(x)).cpu()
    k = min(top, probs.shape[1])
    values, indices = probs.topk(k, dim=1)  # descending, the first is the top-1
    names = loaded.classes
    return [[(names[i] if i < len(names) else str(i), float(v)) for v, i in zip(vs.tolist(), ids.tolist())]
            for vs, ids in zip(values, indices)]


def classify_images(
    loaded: LoadedModel,
    inputs: Sequence[str | Path],
    *,
    top: int = 5,
    batch_size: int = 32,
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Prediction]:
    """Classify image files and every image under the given folders, in batches."""
    check_top(top, "top")
    paths = expand_images(inputs)
    results: list[Prediction] = []
    for chunk, batch in batches(paths, loaded.pre.load, batch_size, threads):
        for path, top_k in zip(chunk, classify_tensors(loaded, batch, top)):
            results.append(Prediction(str(path), top_k))
        if progress is not None:
            progress(len(results), len(paths))
    return results


PREDICTION_SUFFIXES = (".csv", ".json")  # what `write_predictions` writes, by the file's suffix
_CSV_HEADER = "image,rank,class,probability"


def _written_here(path: Path) -> bool:
    """Whether an existing file is empty, a CSV beginning with `write_predictions`' header, or a JSON list of
    exactly its items ({"image", "top"}; an annotation export also begins `[{"image":`): only such a file
    is replaced."""
    if path.stat().st_size == 0 or begins_with(path, _CSV_HEADER):
        return True
    if not begins_with(path, "["):
        return False
    try:
        items = read_json(path, "predictions file")
    except (UserError, OSError):
        return False
    return isinstance(items, list) and all(isinstance(i, dict) and set(i) == {"image", "top"} for i in items)


def check_predictions_out(path: str | Path, inputs: Sequence[str | Path] = (), read: Sequence[str | Path] = (),
                          option: str = "--out") -> Path:
    """Refuse, before any model loads, a predictions file `write_predictions` would not write (a suffix
    other than .csv or .json: `photos/new.jpg` would be a CSV named like a photo), one inside an input
    folder of `inputs`, one that is an input or a file the command reads (`read`), or an existing file
    that is not a table classify wrote (another run's history.csv, a report's predictions.csv)."""
    path = Path(path)
    if path.suffix.lower() not in PREDICTION_SUFFIXES:
        given = f"'{path.suffix}'" if path.suffix else "none"
        raise UserError(f"{option} {path}: give a .csv or .json file (the results are written as CSV or JSON); "
                        f"its suffix is {given}")
    refuse_output_in_input_folders(path, inputs, option, file=True)
    refuse_output_over_inputs(path, [*inputs, *read], option)
    refuse_replacing(path, _written_here, "a table classify wrote", option)
    return path


def write_predictions(results: list[Prediction], path: str | Path) -> Path:
    """Write predictions as JSON (`.json`) or CSV (`.csv`: image, rank, class, probability)."""
    path = check_predictions_out(path)
    if path.suffix.lower() == ".json":
        atomic_write_text(path, json.dumps([r.to_dict() for r in results], indent=2) + "\n", parents=True)
        return path
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(_CSV_HEADER.split(","))
    for r in results:
        for rank, (name, prob) in enumerate(r.top, 1):
            w.writerow([spreadsheet_cell(r.image), rank, spreadsheet_cell(name), f"{prob:.6f}"])
    atomic_write_text(path, buf.getvalue(), parents=True)
    return path
