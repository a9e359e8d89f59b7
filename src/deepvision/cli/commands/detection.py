"""deepvision detection"""

from __future__ import annotations

import argparse

ORDER = 70

BUILD_EPILOG = """inputs per format:
  lisa    ROOT/allAnnotations.csv
            split 75/25 by image, seed 42; default classes pedestrianCrossing,
            signalAhead,stop (--classes all keeps all)
  imglab  training.xml testing.xml
            or SPLIT=FILE; ignore boxes skipped, boxes clipped to the image
  voc     VOCdevkit/VOC2007
            ImageSets/Main splits; or a LabelImg dataset: the folder holding
            annotations/*.xml and images/, the annotations/ folder itself, or
            XML files beside their photos (--images DIR: photos elsewhere)
  coco    instances_train2017.json instances_val2017.json
            or SPLIT=FILE; images found in the standard layout or --images DIR
  yolo    data.yaml
            Ultralytics YAML, or a folder with images/, labels/, classes.txt
then train on it:  deepvision train CONFIG --set data.root=OUT
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detection", help="detection datasets (build, fake, show), evaluation and export",
                       description="Object-detection datasets (build, fake, show), evaluation and export; "
                                   "see also `deepvision detect`.")
    cmds = p.add_subparsers(dest="detection_command", metavar="<action>")

    b = cmds.add_parser("build", help="convert annotations into a dataset index (label map + split files)",
                        description="Read annotations, check them, and write the dataset index:\n"
                                    "dataset.json, label_map.pbtxt, classes.txt and one SPLIT.json per split\n"
                                    "(per image: file, size, normalised boxes, class ids from 1, difficult).",
                        epilog=BUILD_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("format", choices=("lisa", "imglab", "voc", "coco", "yolo"), help="annotation format")
    b.add_argument("inputs", nargs="+", metavar="INPUT", help="annotation file(s) or folder (see below)")
    b.add_argument("--out", required=True,
                   help="output folder of the built dataset (never an input folder or one holding an input)")
    b.add_argument("--classes", help="class names in id order: a comma list, classes.txt or label_map.pbtxt "
                                     "(default: the format's own order, else sorted; LISA: the 3 classes)")
    b.add_argument("--fix", choices=("clip", "drop"), help="repair boxes that are empty or outside the image")
    b.add_argument("--test-fraction", type=float,
                   help="test share when the annotations come as one set (default 0.25; refused when they come "
                        "split)")
    b.add_argument("--seed", type=int, help="seed of that split (default 42)")
    b.add_argument("--images", metavar="DIR",
                   help="voc, coco: the folder holding the images (default: found from the annotation files)")
    b.add_argument("--reference-clip", action="store_true",
                   help="imglab: compute a clipped box's end from the clipped start (the reference's rule)")
    b.add_argument("--strict", action="store_true", help="missing images and unknown classes are errors")
    b.set_defaults(func=build)

    f = cmds.add_parser("fake", help="write synthetic images with known objects in a given format",
                        description="Write textured images with shapes (the class is the shape) and their "
                                    "annotations as the format's own tool writes them, for tests and benchmarks.")
    f.add_argument("--format", required=True, choices=("voc", "coco", "lisa", "imglab", "yolo"))
    f.add_argument("--out", required=True, help="output folder")
    f.add_argument("--images", type=int, default=40, help="number of images (default 40)")
    f.add_argument("--size", type=int, default=128, help="image width in pixels (default 128)")
    f.add_argument("--seed", type=int, default=0)
    f.set_defaults(func=fake)

    s = cmds.add_parser("show", help="draw the boxes of sampled images of a built dataset into PNG files",
                        description="The visual check of a built dataset: boxes and labels in green (difficult ones "
                                    "in orange) on randomly sampled images.")
    s.add_argument("root", metavar="DIR", help="built dataset folder")
    s.add_argument("--split", help="split to sample (default: the first)")
    s.add_argument("--count", type=int, default=8, help="number of images (default 8)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", help="output folder (default DIR/show)")
    s.set_defaults(func=show)

    e = cmds.add_parser("evaluate", help="VOC AP@0.5 (all-point and 11-point) and COCO mAP of a detection run",
                        description="Score a detection run on a split: PASCAL VOC AP@0.5 per class and mAP "
                                    "(all-point VOC2010+ and 11-point VOC2007, difficult boxes ignored) and COCO "
                                    "mAP@[.5:.95], mAP50, mAP75, small/medium/large (pycocotools). Writes "
                                    "metrics.json, per_class_ap.csv and pr_curves.png under RUN/eval/.")
    e.add_argument("run_dir", help="detection run directory")
    e.add_argument("--split", default="test", help="split to score (default test)")
    e.add_argument("--data", help="another built dataset (same classes) to score instead of the run's")
    e.add_argument("--epoch", type=int, help="checkpoint epoch (default: best.pt)")
    e.add_argument("--device", default="auto")
    e.add_argument("--out", help="output folder (default RUN/eval/detection-SPLIT-CHECKPOINT, with --data "
                                 "RUN/eval/detection-DIR-SPLIT-CHECKPOINT; -2, -3, ... when that holds the "
                                 "report of other data or another split)")
    e.set_defaults(func=evaluate)

    x = cmds.add_parser("export", help="write a detection run as TorchScript or ONNX, checked against PyTorch",
                        description="Export the run's detector (uint8 RGB image in; boxes, scores, labels out; "
                                    "class names embedded) and check boxes, scores and labels against PyTorch on "
                                    "the run's test images. ONNX uses the TorchScript-based exporter. "
                                    "`deepvision export RUN` does the same for detection runs.")
    x.add_argument("run_dir", help="detection run directory")
    x.add_argument("--format", choices=("torchscript", "onnx"), default="torchscript")
    x.add_argument("--out", help="output file (default RUN/export/RUN_NAME.torchscript or .onnx)")
    x.add_argument("--images", nargs="+", help="images for the parity check (default: the run's test images)")
    x.add_argument("--epoch", type=int, help="checkpoint epoch (default: best.pt)")
    x.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    x.add_argument("--no-check", action="store_true", help="skip the parity check")
    x.set_defaults(func=export)
    p.set_defaults(func=lambda args: p.print_help() or 0)


def evaluate(args: argparse.Namespace) -> int:
    from deepvision.evaluation.detection import evaluate_detection_run

    result = evaluate_detection_run(args.run_dir, args.split, data=args.data, epoch=args.epoch, device=args.device,
                                    out=args.out)
    for line in result.lines():
        print(line)
    return 0


def export(args: argparse.Namespace) -> int:
    from deepvision.export.export import export_run

    export_run(args.run_dir, format=args.format, out=args.out, check=not args.no_check, images=args.images,
               opset=args.opset if args.format == "onnx" else None, epoch=args.epoch)
    return 0


def build(args: argparse.Namespace) -> int:
    import sys

    from deepvision.datasets.detection.build import build_from_files

    command = "deepvision detection " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else ""
    report = build_from_files(args.format, args.inputs, args.out, classes=args.classes, fix=args.fix,
                              test_fraction=args.test_fraction, seed=args.seed, images_dir=args.images,
                              reference_clip=args.reference_clip, strict=args.strict, command=command)
    for line in report.lines():
        print(line)
    return 0


def fake(args: argparse.Namespace) -> int:
    from deepvision.datasets.detection.fake import make_fake
    from deepvision.safeload import shell_word

    result = make_fake(args.out, args.format, images=args.images, size=args.size, seed=args.seed)
    objects = sum(len(i.objects) for imgs in result.splits.values() for i in imgs)
    images = sum(len(imgs) for imgs in result.splits.values())
    print(f"wrote {images} images with {objects} objects ({', '.join(result.classes)}) in {args.format} format "
          f"to {result.out}")
    print(f"build it with:\n  deepvision detection build {' '.join(map(shell_word, result.build_args))} --out "
          f"{shell_word(f'{result.out}-built')}")
    return 0


def show(args: argparse.Namespace) -> int:
    from deepvision.datasets.detection.show import show_dataset

    paths = show_dataset(args.root, args.out, args.split, args.count, args.seed)
    print(f"drew {len(paths)} images into {paths[0].parent}/")
    return 0
