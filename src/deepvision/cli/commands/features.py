"""deepvision features"""

from __future__ import annotations

import argparse
import textwrap

ORDER = 23

EPILOG = """examples:
  deepvision features tv:vgg16 rotated/ --layer features.30 --out features.h5
  deepvision features tv:mobilenet_v2 data/ --weights IMAGENET1K_V1 \\
      --layer features.18 --pool 2 --out f.h5
  deepvision features runs/my_run test.lst --out f.h5   # input of its classifier
  deepvision features tv:resnet50 --list-layers
then: deepvision logreg features.h5
"""
# what extraction reads (name -> dest) and --list-layers does not: given beside it, refused
EXTRACTION = {"DATA": "data", "--out": "out", "--layer": "layer", "--pool": "pool", "--flatten": "flatten",
              "--no-crop": "crop", "--batch-size": "batch_size", "--buffer-size": "buffer_size",
              "--no-shuffle": "shuffle", "--seed": "seed", "--dtype": "dtype", "--labels": "labels",
              "--image-root": "image_root", "--device": "device"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("features", help="extract one layer's activations for a data set into HDF5",
                       description="Run every image of DATA (a folder of class sub-folders, a .lst, a .rec or "
                                   "an HDF5 file) through MODEL (tv:NAME, a registered model or a run directory) "
                                   "and store the activations of --layer as rows of an HDF5 file (features, "
                                   "labels, label_names). The images are shuffled first (seeded), so a plain "
                                   "slice splits train/test.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.description = textwrap.fill(p.description, 79)  # the epilog stays as written
    p.add_argument("model", metavar="MODEL_OR_RUN", help="tv:NAME, a registered model name or a run directory")
    p.add_argument("data", nargs="?", metavar="DATA", help="folder of class sub-folders, .lst, .rec or HDF5 file")
    p.add_argument("--out", help="HDF5 file to write (never overwritten)")
    p.add_argument("--layer", help="layer name (default: the input of the classifier head); see --list-layers")
    p.add_argument("--list-layers", action="store_true", help="print the valid layer names and exit")
    p.add_argument("--weights", help="tv: DEFAULT, a tag (IMAGENET1K_V1, torchvision:IMAGENET1K_V1) or a file; "
                   "registered models: a weights file")
    p.add_argument("--pool", type=int, help="average-pool 4-D activations to a K x K grid before flattening")
    p.add_argument("--flatten", choices=["channels_last", "channels_first"],
                   help="flatten order of 4-D activations (default channels_last, the reference's H, W, C)")
    p.add_argument("--no-crop", dest="crop", action="store_false",
                   help="resize whole images to the input size, ignoring aspect (the reference's way) instead of "
                        "resize + centre crop")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
    p.add_argument("--buffer-size", type=int, default=1000, help="rows buffered before each write (default 1000)")
    p.add_argument("--no-shuffle", dest="shuffle", action="store_false", help="keep the data's own order")
    p.add_argument("--seed", type=int, help="seed of the shuffle (default 42)")
    p.add_argument("--dtype", choices=["float64", "float32", "float16"], default="float64",
                   help="stored precision (default float64, the reference's)")
    p.add_argument("--labels", help="class names file for .lst/.rec data (one per line)")
    p.add_argument("--image-root", help="folder the paths of a .lst file are relative to (default: its folder)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(func=run, extraction_defaults={dest: p.get_default(dest) for dest in EXTRACTION.values()})


def run(args: argparse.Namespace) -> int:
    from deepvision.config.schema import MAX_BATCH
    from deepvision.errors import UserError
    from deepvision.safeload import check_range

    if args.list_layers:
        given = [name for name, dest in EXTRACTION.items() if getattr(args, dest) != args.extraction_defaults[dest]]
        if given:
            raise UserError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to extraction; "
                            f"--list-layers only lists the layers: leave {'it' if len(given) == 1 else 'them'} out")
        from deepvision.inference.backbones import load_model
        from deepvision.inference.features import default_layer, layer_names

        loaded = load_model(args.model, args.weights, device="cpu")
        names = layer_names(loaded.model)
        default = default_layer(loaded.model, names)
        for name in names:
            print(f"{name}{'   (default)' if name == default else ''}")
        return 0
    check_range("--batch-size", args.batch_size, 1, MAX_BATCH)
    if not args.data or not args.out:
        raise UserError("give DATA and --out (or --list-layers)")
    from deepvision.apps.transfer import features
    from deepvision.cli.terminate import sigterm_says
    from deepvision.datasets.im2rec import ProgressReporter

    bar = ProgressReporter("extracting features", every=1000)
    info: dict = {}  # what features() reports, kept for the summary line

    try:  # a SIGTERM unwinds like Ctrl+C: the unfinished file is removed, never left behind
        with sigterm_says("no feature file was left"):
            info.update(features(args.model, args.data, args.out, layer=args.layer, weights=args.weights,
                                 pool=args.pool, flatten=args.flatten, batch_size=args.batch_size,
                                 buffer_size=args.buffer_size, shuffle=args.shuffle, seed=args.seed, dtype=args.dtype,
                                 labels=args.labels, image_root=args.image_root, crop=args.crop, device=args.device,
                                 progress=bar))
    finally:
        bar.close()
    print(f"[INFO] {info['rows']:,} images x {info['dim']:,} features from layer {info['layer']} -> {info['path']} "
          f"({info['images_per_second']:.1f} images/s)")
    return 0
