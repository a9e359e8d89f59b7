"""deepvision import keras MODEL.h5|MODEL.keras"""

from __future__ import annotations

import argparse

FORMAT = "keras"

EPILOG = """examples:
  deepvision import keras model.keras --out runs/my-keras-net
  deepvision import keras model.weights.h5 --config model.json --out runs/my-net
  deepvision import keras emotion.h5 --model emotion_vgg \\
      --out runs/emotion-keras --data-root fer2013
  deepvision import keras fer/data/emotion_model.hdf5 --model auto \\
      --out runs/fer-mini-xception
  deepvision predict runs/fer-mini-xception face.png
  deepvision emotion runs/fer-mini-xception --video clip.mp4 --headless \\
      --out annotated.mp4
"""


def register(cmds: argparse._SubParsersAction) -> None:
    p = cmds.add_parser(
        FORMAT, help="a Keras .h5/.keras model or weights file -> a deepvision run (h5py, no TensorFlow)",
        description="Rebuild the network of a Keras file from the model config it stores\n"
                    "(Sequential, functional and nested models; docs/deploy.md lists the layers)\n"
                    "and write a run directory (config.yaml, keras-config.json, preprocess.json,\n"
                    "labels.txt, checkpoints/best.pt). With --model the weights are mapped onto a\n"
                    "deepvision architecture instead, and a file whose network differs from it\n"
                    "is refused, naming the first differing layer.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("h5", metavar="MODEL.h5", help="Keras file written by model.save() (.h5, .keras) or "
                                                  "model.save_weights() (.weights.h5, Keras 2 .h5)")
    p.add_argument("--model", help="map the weights onto this deepvision architecture (auto: the first of "
                                   "emotion_vgg, mini_xception, keras_mnist_cnn that fits); default: rebuild the "
                                   "file's own network")
    p.add_argument("--config", help="model config JSON (model.to_json()) for a weights-only file")
    p.add_argument("--out", required=True, help="the run directory to create (must not exist or be empty)")
    names = p.add_mutually_exclusive_group()
    names.add_argument("--classes", help="class names, comma-separated (default: FER names for emotion models, "
                                         "else 0..N-1)")
    names.add_argument("--labels", help="file with one class name per line")
    p.add_argument("--recipe", help="recipe or YAML whose data section the run keeps, so `deepvision evaluate` "
                                    "finds the data (default: the model's recipe, e.g. emotion_vgg_e4)")
    p.add_argument("--data-root", help="data.root of the run (e.g. the folder written by `deepvision fer2013 build`)")
    p.add_argument("--size", type=int, help="input side in pixels (default: the file's input shape or the model's)")
    p.add_argument("--scale", type=float, help="multiply pixel values by this (default 1/255, or 1 when the network "
                                                 "starts with Rescaling/Normalization)")
    p.add_argument("--mean", type=float, nargs="+", help="per-channel mean subtracted after scaling")
    p.add_argument("--std", type=float, nargs="+", help="per-channel std divided after the mean")
    p.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE",
                   help="builder option of the architecture (repeatable), e.g. --arg activation=relu")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from deepvision.config.io import parse_override
    from deepvision.errors import UserError
    from deepvision.interop.keras_import import import_keras
    from deepvision.safeload import check_class_names, comma_items, name_lines, read_text_file

    classes = None
    if args.classes:
        classes = comma_items(args.classes, "--classes", "name")
        check_class_names(classes, "--classes")  # named as the user gave them, not as a temporary file
    elif args.labels:
        text = read_text_file(args.labels, "labels file")
        classes = name_lines(text)
        check_class_names(classes, str(args.labels))
    model_args = {}
    for item in args.arg:
        if "=" not in item:
            raise UserError(f"--arg takes KEY=VALUE, got {item!r}")
        keys, value = parse_override(item)
        model_args[".".join(keys)] = value
    out = import_keras(args.h5, args.out, args.model, classes=classes, recipe=args.recipe, data_root=args.data_root,
                       size=args.size, scale=args.scale, mean=args.mean, std=args.std, model_args=model_args,
                       config=args.config)
    from deepvision.runs.loading import load_run

    loaded = load_run(out)
    pre = loaded.pre
    print(f"imported {Path(args.h5).name} as {loaded.cfg.model.name}, {len(loaded.classes)} classes")
    print(f"  classes: {', '.join(loaded.classes[:8])}{', ...' if len(loaded.classes) > 8 else ''}")
    print(f"  input:   {pre.channels}x{pre.size[0]}x{pre.size[1]}, scale {pre.scale:.6g}"
          + (f", mean {pre.mean}, std {pre.std}" if pre.mean else ""))
    print(f"  run:     {out}")
    return 0
