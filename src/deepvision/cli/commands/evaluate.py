"""deepvision evaluate"""

from __future__ import annotations

import argparse

ORDER = 20


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="rank-1/rank-5, cross-entropy, per-class report, confusion matrix (ROC/PR for 2 classes)",
        description="Evaluate a run on its test split (else val), another split, or new data. Writes "
                    "metrics.json, report.csv, confusion_matrix.{csv,png}, predictions.csv and, for two "
                    "classes, roc_pr.{json,png} into RUN_DIR/eval/<data>-<checkpoint>/.",
    )
    p.add_argument("run_dir", help="run directory")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--epoch", type=int, help="checkpoint epoch (default: best.pt)")
    which.add_argument("--last", action="store_true", help="use last.pt instead of best.pt")
    p.add_argument("--data", help="train, val, test, or a path: folder of class sub-folders, .lst, .rec or "
                                  "HDF5 file; its classes are matched to the run's by name (the folder names, "
                                  "the HDF5 label_names, the PREFIX.labels.txt beside a .lst or .rec)")
    p.add_argument("--batch-size", type=int, help="evaluation batch size")
    p.add_argument("--crops", type=int, default=1, choices=[1, 2, 10],
                   help="1: centre crop; 2: centre and its mirror; 10: 4 corners + centre and their "
                        "mirrors (probabilities averaged)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--out", help="report folder (default: RUN_DIR/eval/...)")
    p.add_argument("--skip-corrupt", action="store_true",
                   help="score only readable samples instead of stopping at an unreadable record or image")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from deepvision.api import evaluate

    evaluate(args.run_dir, epoch=args.epoch, data=args.data, which="last" if args.last else "best",
             batch_size=args.batch_size, device=args.device, out=args.out, crops=args.crops,
             skip_corrupt=args.skip_corrupt)
    return 0
