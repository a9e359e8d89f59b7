"""deepvision import mxnet PREFIX EPOCH"""

from __future__ import annotations

import argparse
import math

FORMAT = "mxnet"

EPILOG = """examples:
  deepvision import mxnet checkpoints/resnet 90 --mean 123.68,116.779,103.939 \\
      --labels synset.txt
  deepvision import mxnet models/Inception-BN 126 --input-size 3x224x224
  deepvision import mxnet resnet18_v1 0 --model tv:resnet18 --scale 0.00392157 \\
      --mean 123.675,116.28,103.53 --std 58.395,57.12,57.375
  deepvision import mxnet alexnet 100 --model alexnet_ref --option fc_units=4096
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        FORMAT, help="PREFIX-symbol.json + PREFIX-NNNN.params (symbol API or Gluon export)",
        description="Import an MXNet checkpoint (no MXNet needed). Without --model the network is\n"
                    "built from the symbol graph; with --model the weights are mapped onto that\n"
                    "deepvision architecture and checked against the graph on a random batch.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("prefix", metavar="PREFIX", help="checkpoint prefix (PREFIX-symbol.json, PREFIX-NNNN.params)")
    p.add_argument("epoch", metavar="EPOCH", type=int, help="epoch number of the .params file")
    p.add_argument("--model", help="map the weights onto this deepvision model (e.g. resnet50_ref, tv:resnet18)")
    p.add_argument("--option", dest="options", action="append", default=[], metavar="KEY=VALUE",
                   help="builder option of the --model architecture (repeatable; needs --model; "
                        "`deepvision models show NAME` lists them), e.g. --option fc_units=1024")
    p.add_argument("--input-size", help="CxHxW the network takes (default: the model's, or inferred)")
    p.add_argument("--labels", help="class names, one per line (synset lines 'n01440764 tench' work)")
    p.add_argument("--scale", type=float, default=1.0, help="pixel scale before mean/std (default 1: raw 0..255)")
    p.add_argument("--mean", help="R,G,B means in 0..255 units, or a mean JSON file (default: none)")
    p.add_argument("--std", help="R,G,B standard deviations in 0..255 units (default: none)")
    p.add_argument("--resize", type=int, help="shorter side before the centre crop (default: resize to the input)")
    p.add_argument("--out", metavar="RUN_DIR", help="run directory to create (default: runs/mxnet-PREFIX-EPOCH)")
    p.set_defaults(func=run)


def _floats(text: str | None, flag: str) -> list[float] | None:
    from deepvision.errors import UserError
    from deepvision.safeload import comma_items, plain_float

    if text is None:
        return None
    try:  # ASCII numbers only: float() reads '١' as 1 and '1_2' as 12
        values = [plain_float(v) for v in comma_items(text, flag, "value")]
    except ValueError:
        raise UserError(f"{flag} must be comma-separated numbers like 123.68,116.779,103.939, got '{text}'") from None
    if not all(math.isfinite(v) for v in values):  # named here, before the checkpoint is read
        raise UserError(f"{flag} values must be finite numbers, got {text}")
    return values


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from deepvision.cli.commands.models import parse_input, parse_options
    from deepvision.interop.mxnet_import import import_mxnet

    size = parse_input(args.input_size, (3, 224, 224), "--input-size") if args.input_size else None
    mean = args.mean if args.mean and Path(args.mean).suffix == ".json" else _floats(args.mean, "--mean")
    import_mxnet(args.prefix, args.epoch, model=args.model, out=args.out, options=parse_options(args.options),
                 input_size=size, labels=args.labels, scale=args.scale, mean=mean, std=_floats(args.std, "--std"),
                 resize=args.resize)
    return 0
