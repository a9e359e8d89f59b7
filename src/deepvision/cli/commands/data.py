"""deepvision data"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deepvision.config.schema import Config

ORDER = 50


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="fetch datasets (MNIST) and inspect a config's data",
                       description="Dataset utilities.")
    cmds = p.add_subparsers(dest="data_command", metavar="<action>")
    dl = cmds.add_parser("download", help="download a dataset from its official mirrors",
                         description="Download MNIST's idx files (checked by MD5) into --root.")
    dl.add_argument("dataset", choices=["mnist"], help="dataset to fetch")
    dl.add_argument("--root", required=True, help="destination folder")
    dl.add_argument("--splits", nargs="+", default=["train", "test"], choices=["train", "test"])
    dl.set_defaults(func=download)
    info = cmds.add_parser("info", help="load a config's data and print the split sizes and classes",
                           description="Load the data a config describes (no training) and summarise it.")
    info.add_argument("config", help="YAML config or recipe name")
    info.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    info.set_defaults(func=show_info)
    p.set_defaults(func=lambda args: p.print_help() or 0)


def download(args: argparse.Namespace) -> int:
    from deepvision.datasets.mnist import download

    root = download(args.root, tuple(args.splits))
    print(f"MNIST {', '.join(args.splits)} files in {root}")
    return 0


def show_info(args: argparse.Namespace) -> int:
    import numpy as np

    from deepvision.cli.output import shown
    from deepvision.config.io import load_config
    from deepvision.data.mean_file import read_mean_rgb
    from deepvision.data.source_registry import resolve_path, task_of_source
    from deepvision.data.sources import load_data
    from deepvision.engine.tasks.classification import overlap_notes
    from deepvision.recipes import resolve_config_arg

    cfg = load_config(resolve_config_arg(args.config), args.overrides)
    if task_of_source(cfg.data.source) == "detection":  # not classification splits: summarised by their own rule
        return _detection_info(cfg)
    mean = mean_path = None
    if isinstance(cfg.data.mean, str):  # the mean file training subtracts, read and checked the same way
        mean_path = resolve_path(cfg.data.root, cfg.data.mean)
        mean = read_mean_rgb(mean_path)
    bundle = load_data(cfg.data)
    print(f"source {cfg.data.source}: {len(bundle.classes)} classes ({', '.join(bundle.classes[:10])}"
          f"{', ...' if len(bundle.classes) > 10 else ''}), {bundle.channels} channel(s), "
          f"stored size {bundle.size or 'mixed'}")
    for role, n in bundle.counts().items():
        counts = np.bincount(np.asarray(bundle.role(role).targets), minlength=len(bundle.classes))
        print(f"  {role:5s} {n:8,d} samples; per class min {counts.min()}, max {counts.max()}")
    if mean is not None:
        print(f"  mean  R {mean[0]:.2f}, G {mean[1]:.2f}, B {mean[2]:.2f} (0..255, {shown(mean_path.name)})")
    for note in overlap_notes(bundle):  # what training warns about, said before it starts
        print(note)
    return 0


def _detection_info(cfg: Config) -> int:
    """The built detection dataset a config reads, by role as training reads it: images, boxes per class."""
    import numpy as np

    from deepvision.data.detection.loader import load_detection_data
    from deepvision.data.preprocess import Preprocess
    from deepvision.engine.tasks.detection import detection_overlap_notes
    from deepvision.safeload import printable

    # the preprocess only records the model's input; nothing here resizes an image
    data = load_detection_data(cfg.data, ("train", "val", "test"), Preprocess(channels=3, size=(800, 800)))
    names = ", ".join(map(printable, data.classes[:10])) + (", ..." if len(data.classes) > 10 else "")
    print(f"source detection: {len(data.classes)} classes ({names}), built dataset {printable(cfg.data.root)}")
    for role in (r for r in ("train", "val", "test") if r in data.splits):
        images = data.splits[role]
        labels = np.concatenate([im.labels for im in images]) if images else np.zeros(0, np.int64)
        difficult = sum(int(im.difficult.sum()) for im in images)
        per_class = np.bincount(labels, minlength=len(data.classes) + 1)[1:]
        print(f"  {role:5s} {len(images):8,d} images, {labels.size:,} boxes"
              + (f" ({difficult:,} difficult)" if difficult else "") + "; per class "
              + ", ".join(f"{printable(k)} {n:,}" for k, n in zip(data.classes, per_class.tolist())))
    for note in detection_overlap_notes(data):  # what training warns about, said before it starts
        print(note)
    return 0
