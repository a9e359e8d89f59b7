"""deepvision predict"""

from __future__ import annotations

import argparse

ORDER = 21


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="top-k classes of image files, with the run's preprocessing",
                       description="Print the top-k class names with probabilities for each image.")
    p.add_argument("run_dir", metavar="RUN", help="run directory, or a .onnx file written by `deepvision export`")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--top", type=int, default=5, help="how many classes to show (default 5)")
    p.add_argument("--epoch", type=int, help="checkpoint epoch (default: best.pt)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from deepvision.api import predict
    from deepvision.errors import UserError

    if args.top < 1:
        raise UserError("--top must be at least 1")
    results = predict(args.run_dir, args.images, top=args.top, epoch=args.epoch, device=args.device)
    from deepvision.cli.output import print_top_k

    print_top_k(results, args.json, name_width=64)  # "  10. NAME: 100.00%" in 80 columns
    return 0
