"""Training throughput of `resnet50_ref` and `tv:resnet50` at 224: synthetic tensors vs 256-pixel records.

Both paths run through the deepvision engine (`deepvision train`), with AMP and channels_last on a
GPU. The synthetic path holds uint8 tensors on the device (pure compute); the record path decodes
and augments (random 224 crop + mirror) 256-pixel JPEG records in worker processes. The ratio
records/synthetic shows whether the loader keeps the GPU busy (goal >= 0.9 on a GPU).

    python benchmarks/imagenet_throughput.py                     # CPU: small batch, proves the path
    python benchmarks/imagenet_throughput.py --device cuda --batch 256 --steps 60 --workers 16

Figures are images/s of the training phase of the last epoch (the first warms up), appended to
BENCHMARKS.md with the machine described.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
from pathlib import Path

import torch

from deepvision.api import train
from deepvision.apps.imagenet import build_lists, make_fake_imagenet
from deepvision.datasets.im2rec import PackOptions, pack_list
from deepvision.errors import UserError
from deepvision.safeload import MAX_FAKE_IMAGES, check_range

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe, write_section

MODELS = ("resnet50_ref", "tv:resnet50")
CLASSES = 10  # fake-ImageNet classes; each also gets one validation photo


def record_images(images: int | None, batch: int, steps: int) -> int:
    """The training photos to pack: `images`, else `batch` x `steps`; UserError when the fake data set
    would pass the fake-data ceiling (MAX_FAKE_IMAGES, its validation photos included)."""
    if images is None:
        images = batch * steps
        if images > MAX_FAKE_IMAGES - CLASSES:
            raise UserError(f"--batch {batch:,} x --steps {steps:,} asks for {images:,} record images; a fake "
                            f"data set holds at most {MAX_FAKE_IMAGES - CLASSES:,} (give --images)")
    return check_range("--images", images, 1, MAX_FAKE_IMAGES - CLASSES)


def make_records(folder: Path, images: int) -> Path:
    """A fake-ImageNet training list of about `images` photos-like JPEGs packed at shorter side 256."""
    classes = CLASSES
    root = make_fake_imagenet(folder / "ilsvrc", classes=classes, per_class=max(1, images // classes),
                              val_per_class=1, min_side=256, max_side=400)
    build_lists(root.root, folder / "lists", test_size=0)
    pack_list(folder / "lists" / "train.lst", PackOptions(root=str(root.images), resize=256, quality=95))
    return folder / "lists" / "train.rec"


def config(model: str, source: str, rec: Path | None, a: argparse.Namespace) -> dict:
    data: dict = {"batch_size": a.batch, "image_size": 224, "val": None, "test": None, "workers": a.workers,
                  "last_batch": "drop", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    if source == "synthetic":
        data.update(source="synthetic", train="train", options={"samples": a.batch * a.steps, "classes": 10})
    else:
        data.update(source="rec", train=str(rec), resize=256, augment={"rand_crop": True, "rand_mirror": True})
    return {
        "name": f"{model.replace(':', '_')}-{source}",
        "model": {"name": model, "num_classes": 10},
        "data": data,
        "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4},
        "train": {"epochs": 2, "max_steps": a.steps, "device": a.device, "amp": "auto", "channels_last": None,
                  "compile": a.compile, "tensorboard": False, "log_every": 10_000, "progress": "lines"},
        "checkpoint": {"period": 1000},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--batch", type=int, default=None, help="per-device batch (default: 256 on GPU, 8 on CPU)")
    p.add_argument("--steps", type=int, default=None, help="steps per epoch (default: 50 on GPU, 3 on CPU)")
    p.add_argument("--workers", type=int, default=None, help="loader processes (default: all cores)")
    p.add_argument("--images", type=int, default=None,
                   help="images in the record file (default: batch x steps; at most the fake-data ceiling)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--no-append", action="store_true")
    a = p.parse_args()
    gpu = torch.cuda.is_available() and a.device != "cpu"
    a.batch = a.batch or (256 if gpu else 8)
    a.steps = a.steps or (50 if gpu else 3)
    try:
        images = record_images(a.images, a.batch, a.steps)
    except UserError as exc:  # told before any photo is made
        print(f"imagenet_throughput.py: error: {exc}", file=sys.stderr)
        sys.exit(2)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        rec = make_records(Path(tmp), images)
        for model in MODELS:
            for source in ("synthetic", "records"):
                with contextlib.redirect_stdout(io.StringIO()):
                    run = train(config(model, source, rec, a), out=Path(tmp) / "runs")
                results[(model, source)] = run.history[-1]["samples_per_s"]
                print(f"{model:14s} {source:9s} {results[(model, source)]:10.1f} images/s", flush=True)
    lines = [f"Machine: {describe()}",
             f"Setting: 224x224 training, per-device batch {a.batch}, {a.steps} steps per epoch, 2 epochs (the "
             f"second is timed), SGD, {'AMP bf16 + channels_last' if gpu else 'fp32 (CPU)'}"
             f"{', torch.compile' if a.compile else ''}; records: 256-pixel JPEG q95, random crop + mirror, "
             f"{a.workers or 'all'} workers.", "",
             "| model | synthetic images/s | records images/s | records / synthetic |", "|---|---|---|---|"]
    for model in MODELS:
        syn, rec_speed = results[(model, "synthetic")], results[(model, "records")]
        lines.append(f"| {model} | {syn:,.1f} | {rec_speed:,.1f} | {rec_speed / syn:.2f} |")
    if not gpu:
        lines += ["", "CPU run: proves the path end to end; the >= 0.9 goal is about feeding a GPU (run with "
                      "--device cuda on a GPU machine)."]
    text = "\n".join(lines)
    print(text)
    if not a.no_append:
        write_section("ImageNet training throughput: synthetic vs records", text)


if __name__ == "__main__":
    main()
