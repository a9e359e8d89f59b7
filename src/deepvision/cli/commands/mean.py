"""deepvision mean: the reference's mean file (mean R, G, B as JSON) from a list or a record file."""

from __future__ import annotations

import argparse
import os

ORDER = 61


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "mean", help="compute the mean R, G, B of a .lst or .rec as a mean file (JSON)",
        description="Compute the per-channel mean of a training set: the unweighted mean of the per-image R, G "
                    "and B means, in 0-255 units, from the original images of a .lst (paths relative to --root) "
                    "or from the images stored in a .rec. Prints {\"R\": .., \"G\": .., \"B\": ..} or writes it "
                    "to --out. Use it as data.mean in a config, or mean_json= in ImageRecordIter.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="LST_OR_REC", help="a list file (.lst) or a record file (.rec)")
    p.add_argument("--root", help="folder the list's relative paths start from (default: the list's folder); "
                   "a .lst only")
    p.add_argument("--out", "-o", help="write the JSON here (atomically) instead of printing it")
    p.add_argument("--num-thread", type=int, default=os.cpu_count() or 1,
                   help="worker processes (default: all cores)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from deepvision.datasets.im2rec import ProgressReporter
    from deepvision.datasets.mean import compute_mean, write_mean_json
    from deepvision.safeload import check_workers

    check_workers("--num-thread", args.num_thread)
    reporter = ProgressReporter("mean")
    try:
        result = compute_mean(args.source, root=args.root, workers=args.num_thread, progress=reporter,
                              out=args.out)
    finally:
        reporter.close()
    if result.skipped:
        where, reason = result.skipped[0]
        print(f"skipped {len(result.skipped)} unreadable image(s); first: {where}: {reason}", file=sys.stderr)
    print(f"mean of {result.count} images in {result.seconds:.1f} s", file=sys.stderr)
    if args.out:
        print(write_mean_json(args.out, result))
    else:
        print(json.dumps(result.to_dict()))
    return 0
