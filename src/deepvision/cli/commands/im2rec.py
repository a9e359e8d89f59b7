"""deepvision im2rec: MXNet's tools/im2rec.py, same arguments, same outputs."""

from __future__ import annotations

import argparse
import os

ORDER = 60

# Options one step would ignore (flag -> dest): a value other than the parser's default is refused in the other
# step. --recursive and --num-thread are taken by both, as im2rec.py users pass them to both steps (GluonCV's guide).
LIST_ONLY = {"--exts": "exts", "--chunks": "chunks", "--train-ratio": "train_ratio", "--test-ratio": "test_ratio",
             "--no-shuffle": "shuffle"}
PACK_ONLY = {"--pass-through": "pass_through", "--resize": "resize", "--center-crop": "center_crop",
             "--quality": "quality", "--color": "color", "--encoding": "encoding", "--pack-label": "pack_label",
             "--max-pixels": "max_pixels"}
RE_ENCODE_ONLY = ("--resize", "--center-crop", "--quality", "--color", "--encoding")  # --pass-through stores bytes


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "im2rec", help="make image lists (.lst) or pack them into record files (.rec/.idx), like MXNet's im2rec.py",
        description="Create an image list (--list) or make a record database by reading from an image list. "
                    "A drop-in for MXNet's tools/im2rec.py: the same arguments, defaults and output files. "
                    "Packing uses all cores (--num-thread), shows progress, skips unreadable images (listed "
                    "with the reason in PREFIX.skipped.txt) and writes outputs through temporary files.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("prefix", help="prefix of input/output lst and rec files.")
    p.add_argument("root", help="path to folder containing images.")
    c = p.add_argument_group("Options for creating image lists")
    c.add_argument("--list", action="store_true",
                   help="create image list(s) by traversing root and write <prefix>.lst; otherwise read "
                        "<prefix>*.lst and create <name>.rec/.idx for each")
    c.add_argument("--exts", nargs="+", default=[".jpeg", ".jpg", ".png"],
                   help="list of acceptable image extensions (png is .png).")
    c.add_argument("--chunks", type=int, default=1, help="number of chunks.")
    c.add_argument("--train-ratio", type=float, default=1.0, help="Ratio of images to use for training.")
    c.add_argument("--test-ratio", type=float, default=0, help="Ratio of images to use for testing.")
    c.add_argument("--recursive", action="store_true",
                   help="recursively walk through subdirs and assign an unique label to images in each folder; "
                        "otherwise only include images in the root folder and give them label 0.")
    c.add_argument("--no-shuffle", dest="shuffle", action="store_false",
                   help="do not randomize the image order in <prefix>.lst")
    r = p.add_argument_group("Options for creating database")
    r.add_argument("--pass-through", action="store_true", help="skip transformation and save image as is")
    r.add_argument("--resize", type=int, default=0,
                   help="resize the shorter edge of image to the newsize, original images will be packed by default.")
    r.add_argument("--center-crop", action="store_true",
                   help="crop the center of the image to make it square (before resizing).")
    r.add_argument("--quality", type=int, default=95,
                   help="JPEG quality for encoding, 1-100; or PNG compression for encoding, 1-9")
    r.add_argument("--num-thread", type=int, default=os.cpu_count() or 1,
                   help="number of worker processes for encoding (records are always in list order).")
    r.add_argument("--color", type=int, default=1, choices=[-1, 0, 1],
                   help="color mode of the loaded image. 1: color (transparency composited on white), "
                        "0: grayscale, -1: unchanged, including alpha.")
    r.add_argument("--encoding", type=str, default=".jpg", choices=[".jpg", ".png"],
                   help="specify the encoding of the images.")
    r.add_argument("--pack-label", action="store_true",
                   help="Whether to also pack multi dimensional label in the record file")
    r.add_argument("--max-pixels", type=float, default=None,
                   help="refuse (skip) images whose header announces more pixels than this, before decoding "
                        "them (default: $DEEPVISION_MAX_IMAGE_PIXELS, else Pillow's limit of 178,956,970)")
    p.set_defaults(func=run, step_defaults={dest: p.get_default(dest) for dest in (*LIST_ONLY.values(),
                                                                                 *PACK_ONLY.values())})


def run(args: argparse.Namespace) -> int:
    from deepvision.cli.terminate import sigterm_says

    with sigterm_says("unfinished record files were removed"):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    import sys

    from deepvision.data.lst import labels_file_for
    from deepvision.datasets.im2rec import (
        PackOptions,
        ProgressReporter,
        find_lists,
        make_list,
        pack_list,
        refuse_outputs_over_inputs,
    )
    from deepvision.errors import UserError
    from deepvision.safeload import check_workers

    # the other step's options, or the re-encoding ones beside --pass-through, would be ignored without a word
    _refuse_given(args, PACK_ONLY if args.list else LIST_ONLY,
                  "packing (without --list)" if args.list else "making lists (--list)")
    if args.pass_through:
        _refuse_given(args, {flag: PACK_ONLY[flag] for flag in RE_ENCODE_ONLY}, "packing without --pass-through",
                      " (--pass-through stores each image file as it is)")
    check_workers("--num-thread", args.num_thread)  # taken by both steps, so checked in both
    prefix = os.path.abspath(args.prefix)
    root = os.path.abspath(args.root)
    if args.list:
        categories: dict[str, int] = {}
        loops: list[str] = []
        rejected: list[str] = []
        written = make_list(prefix, root, recursive=args.recursive, exts=args.exts, shuffle=args.shuffle,
                            chunks=args.chunks, train_ratio=args.train_ratio, test_ratio=args.test_ratio,
                            categories=categories, loops=loops, rejected=rejected)
        for folder, label in sorted(categories.items(), key=lambda kv: kv[1]):
            print(folder, label)
        for path in written:
            count = len(path.read_text(encoding="utf-8").splitlines())
            print(f"wrote {path} ({count} images)", file=sys.stderr)
        if loops:
            print(f"not followed: {len(loops)} directory link(s) that loop back to their own parent folders: "
                  f"{', '.join(loops[:3])}{', ...' if len(loops) > 3 else ''}", file=sys.stderr)
        if rejected:
            shown = ", ".join(repr(r) for r in rejected[:3]) + (", ..." if len(rejected) > 3 else "")
            print(f"left out: {len(rejected)} file(s) whose names hold a tab or a line break, which a .lst line "
                  f"cannot hold (rename them): {shown}", file=sys.stderr)
        if args.recursive and categories:
            n = len(categories)
            print(f"wrote {labels_file_for(prefix)} ({n} class name{'s' if n != 1 else ''}; training from these "
                  f"lists or their .rec files reads it)", file=sys.stderr)
        return 0
    if args.max_pixels is not None:
        import math

        from deepvision.safeload.images import ENV_MAX_PIXELS, set_max_image_pixels

        if not (math.isfinite(args.max_pixels) and args.max_pixels >= 1):
            raise UserError(f"--max-pixels must be a positive number of pixels, got {args.max_pixels:g}")
        os.environ[ENV_MAX_PIXELS] = str(int(args.max_pixels))  # for worker processes, however they start
        set_max_image_pixels(int(args.max_pixels))
    if not os.path.isdir(root):
        raise UserError(f"image folder not found: {root}")
    if args.encoding == ".jpg":
        from deepvision.fileio import check_jpeg_quality

        check_jpeg_quality(args.quality)
    options = PackOptions(root=root, resize=args.resize, center_crop=args.center_crop, quality=args.quality,
                          color=args.color, encoding=args.encoding, pass_through=args.pass_through,
                          pack_label=args.pack_label)
    working, lists = find_lists(prefix)
    if not lists:
        raise UserError(f"did not find any list file with prefix {prefix} (make one with `deepvision im2rec "
                        f"--list {args.prefix} {args.root}`)")
    refuse_outputs_over_inputs([(lst, working / (lst.stem + ".rec")) for lst in lists], root, args.pack_label)
    for lst in lists:
        print(f"Creating .rec file from {lst} in {working}", file=sys.stderr)
        reporter = ProgressReporter(lst.stem)
        try:
            result = pack_list(lst, options, rec=working / (lst.stem + ".rec"), workers=args.num_thread,
                               progress=reporter)
        finally:
            reporter.close()
        line = (f"packed {result.packed} images into {result.rec} ({result.nbytes / 1e6:.1f} MB) in "
                f"{result.seconds:.1f} s ({result.images_per_s:.0f} images/s)")
        if result.skipped:
            line += f"; skipped {len(result.skipped)}, listed in {result.skipped_file}"
        print(line)
    return 0


def _refuse_given(args: argparse.Namespace, options: dict[str, str], step: str, why: str = "") -> None:
    """Refuse the `options` (flag -> dest) given away from their defaults: only `step` reads them."""
    from deepvision.errors import UserError

    given = [flag for flag, dest in options.items() if getattr(args, dest) != args.step_defaults[dest]]
    if given:
        raise UserError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to {step} only{why}; "
                        f"leave {'it' if len(given) == 1 else 'them'} out here")
