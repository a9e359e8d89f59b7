"""deepvision export"""

from __future__ import annotations

import argparse

ORDER = 41


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="write a run's model to one ONNX or TorchScript file, verified against PyTorch",
        description="Export a run's model, its normalisation included (input: 0..255 pixels,\n"
                    "N x C x H x W), with the class names and preprocessing in the file's metadata;\n"
                    "then run the file (onnxruntime / torch.jit) on real images and fail unless it\n"
                    "matches PyTorch. Detection runs: one uint8 RGB image (3 x H x W, any size) in;\n"
                    "boxes, scores and labels out, checked against PyTorch detection by detection.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  deepvision export runs/lenet-mnist --format onnx --dynamic-batch\n"
               "  deepvision export runs/resnet --format torchscript --out resnet.torchscript\n"
               "  deepvision export runs/ssdlite-fake --format onnx   (a detection run)")
    p.add_argument("run_dir", metavar="RUN", help="run directory")
    p.add_argument("--format", default="onnx", choices=["onnx", "torchscript"], help="file format (default onnx)")
    p.add_argument("--dynamic-batch", action="store_true",
                   help="any batch size (default: batch 1; classification only)")
    p.add_argument("--opset", type=int, help="ONNX opset version (default: the exporter's)")
    p.add_argument("--out", metavar="FILE", help="output file (default: RUN/export/RUN_NAME.onnx|.torchscript)")
    p.add_argument("--epoch", type=int, help="checkpoint epoch (default: best.pt)")
    p.add_argument("--images", nargs="+", metavar="IMAGE",
                   help="images for the parity check (default: up to 8 under data.root, else synthetic; "
                        "detection: the run's test images)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from deepvision.export.export import export_run

    export_run(args.run_dir, format=args.format, out=args.out, dynamic_batch=args.dynamic_batch, opset=args.opset,
               epoch=args.epoch, images=args.images)
    return 0
