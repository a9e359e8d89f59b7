"""`deepvision cars show`: the vehicle-identification visualiser (docs/transfer.md).

Unlike the reference's: RGB input, a descending top-5 over the whole label vector, and the run's one
evaluation transform.

Samples `sample_size` images of the run's test split (without replacement unless asked; the reference
drew with replacement), prints `[INFO] actual=<make:model>` and the top 5 in descending probability,
and writes each image with its top-1 label `"<make> <model>: <p>%"` drawn in green at (10, 30) (Hershey
simplex, scale 0.6, thickness 2) on a display copy resized to width min(500, w). The model input comes
from the run's one evaluation transform on RGB pixels (the same tensors `deepvision evaluate` and
`predict` produce), and the class names from the run's label table as a whole vector.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from deepvision.errors import UserError
from deepvision.fileio import atomic_write_text, write_image, written_whole
from deepvision.placement import refuse_output_inside, refuse_unlisted, require_own_folder
from deepvision.safeload import check_range

MAX_SAMPLES = 10_000  # annotated PNGs one call writes


@dataclass
class CarPrediction:
    index: int  # position in the test split
    actual: str
    top: list[tuple[str, float]]  # descending
    image: str | None = None  # the annotated PNG

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "actual": self.actual, "image": self.image,
                "top": [{"class": c, "probability": p} for c, p in self.top]}


def _cv2():
    try:
        import cv2
    except ImportError:
        raise UserError("drawing the labels needs OpenCV: pip install 'deepvision[records]'") from None
    return cv2


def annotate(img: Image.Image, text: str) -> np.ndarray:
    """An RGB display copy (width min(500, w)) with `text` drawn as the reference drew it."""
    cv2 = _cv2()
    w, h = img.size
    width = min(500, w)
    display = img.convert("RGB")
    if width != w:
        display = display.resize((width, max(1, round(h * width / w))), Image.BILINEAR)
    arr = np.array(display)  # a writable copy
    cv2.putText(arr, text, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 0), 2)  # green in RGB order
    return arr


def image_folders(split: Any) -> list[Path]:
    """The folders of a split's image files (none for records or tensors), a subset's through its data set."""
    while hasattr(split, "dataset"):
        split = split.dataset
    return sorted({Path(p).parent for p in getattr(split, "paths", ())})


def show_cars(run_dir: str | Path, *, sample_size: int = 10, out: str | Path | None = None, seed: int | None = None,
              replace: bool = False, epoch: int | None = None, device: str = "auto",
              quiet: bool = False) -> list[CarPrediction]:
    """Predict a sample of the run's test images; write the annotated PNGs and predictions.json to `out`."""
    from deepvision.data.sources import TensorSplit, load_data
    from deepvision.engine.distributed import resolve_device
    from deepvision.engine.resolve import refuse_output_in_data
    from deepvision.inference.predict import predict_tensors
    from deepvision.runs.loading import load_run, refuse_split_edit
    from deepvision.runs.rundir import RunDir

    check_range("--sample-size", sample_size, 1, MAX_SAMPLES)  # each sample is a PNG: a visualiser, not a sweep
    say = (lambda *_: None) if quiet else print
    run = RunDir.open(run_dir)
    out_dir = Path(out) if out else run.folder("eval", "cars-show", create=False)
    # its NNN_sampleK.png and predictions.json replace only an earlier show's, never a run's or a user's files
    require_own_folder(out_dir, "predictions.json", '[{"index":', "cars show")
    refuse_output_in_data(run.read_config(), out_dir)
    loaded = load_run(run_dir, epoch=epoch, device=resolve_device(device), classifier=True)
    cfg = loaded.cfg
    cfg.data.channels = loaded.pre.channels
    bundle = load_data(cfg.data, roles=("test",))
    # the test split is drawn as the run's was
    refuse_split_edit(loaded.run, loaded.cfg, loaded.checkpoint, loaded.trained, loaded.data_splits, bundle=bundle)
    split = bundle.test
    if split is None:
        raise UserError(f"the run's data has no test split ({cfg.data.test}); the visualiser samples test images")
    if isinstance(split, TensorSplit):
        raise UserError("cars show reads image files or records; this run trained on in-memory tensors")
    for folder in image_folders(split):  # the annotated copies would join the test images as data
        refuse_output_inside(out_dir, folder, "the image folder of the run's test split")
    n = len(split)
    if not replace and sample_size > n:
        raise UserError(f"--sample-size {sample_size} exceeds the {n} test images (use --with-replacement)")
    rng = np.random.default_rng(seed)
    picks = rng.choice(n, sample_size, replace=replace).tolist()
    paths = [out_dir / f"{k:03d}_sample{i}.png" for k, i in enumerate(picks)]
    earlier = _earlier_images(out_dir)
    refuse_unlisted(out_dir, paths, earlier, "predictions.json", "cars show")
    targets = np.asarray(split.targets)
    results: list[CarPrediction] = []
    cv2 = _cv2()
    # the drawings land with predictions.json at the end, the earlier sample's then removed: a stop or a
    # failure leaves the folder as it was (each image is written to the hidden folder as it is made)
    with written_whole(out_dir, last="predictions.json", stale=earlier) as tmp:
        for k, i in enumerate(picks):
            img, _ = split[int(i)]
            top = predict_tensors(loaded, loaded.pre.load(img).unsqueeze(0), 5)[0]
            r = CarPrediction(int(i), loaded.classes[int(targets[i])], top)
            results.append(r)
            say(f"[INFO] actual={r.actual}")
            for name, p in top:
                say(f"\tpredicted={name}, probability={p * 100:.2f}%")
            r.image = str(paths[k])
            text = f"{top[0][0].replace(':', ' ')}: {top[0][1] * 100:.2f}%"
            write_image(tmp / paths[k].name, cv2.cvtColor(annotate(img, text), cv2.COLOR_RGB2BGR))
        atomic_write_text(tmp / "predictions.json", json.dumps([r.to_dict() for r in results], indent=2) + "\n")
    say(f"[INFO] {len(results)} annotated images written to {out_dir}")
    return results


_DRAWING = re.compile(r"\d{3,}_sample\d+\.png")  # the names show gives its drawings


def _earlier_images(out_dir: Path) -> list[str]:
    """The names of the annotated images an earlier show's predictions.json in `out_dir` lists."""
    from deepvision.safeload import read_json

    try:
        doc = read_json(out_dir / "predictions.json", "an earlier cars show's predictions.json")
    except (FileNotFoundError, UserError):
        return []
    entries = doc if isinstance(doc, list) else []
    names = [Path(e["image"]).name for e in entries if isinstance(e, dict) and isinstance(e.get("image"), str)]
    return [n for n in names if _DRAWING.fullmatch(n)]  # a hand-edited entry never names another file
