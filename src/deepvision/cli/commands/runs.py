"""deepvision runs"""

from __future__ import annotations

import argparse

ORDER = 31


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "runs", help="the experiment journal (one row per run), or `runs compare A B ...` to overlay curves",
        description="`deepvision runs [DIR]` lists every run under DIR (default: runs) in a table that fits 80 "
                    "columns: the run, epochs, the learning-rate schedule actually used (by epoch range), the best "
                    "epoch's val rank-1 and rank-5 (rank-5 only with more than 5 classes), checkpoint disk use and "
                    "status (model, best epoch and test rank-1 too when they fit). Runs that monitor another "
                    "metric (detection: val_map50) get a column with its best value, and test mAP50/mAP "
                    "(after training or `deepvision evaluate`). --wide shows every column once, "
                    "--columns chooses them. It also writes DIR/journal.csv with every column (when DIR holds runs; "
                    "a journal.csv deepvision did not write is left alone). "
                    "`deepvision runs compare RUN_A RUN_B ... [--out FILE.png]` overlays their curves in one PNG. "
                    "`deepvision runs prune RUN_OR_DIR ... [--keep N] [--discarded] [--dry-run]` deletes the "
                    "periodic checkpoints of a run (or of every run under DIR) but the newest N (default 0), "
                    "keeping last.pt and best.pt; --discarded also deletes what resumes set aside.",
        epilog="columns: name, model, data, epochs, lr_schedule, best_val_acc, best_val_top5, best_epoch, "
               "last_val_acc, last_val_top5, test_acc, test_top5, monitor, best_value, test_value, test_map50, "
               "test_map, s_per_epoch, samples_per_s, ckpt_bytes, status")
    p.add_argument("args", nargs="*", metavar="DIR | compare RUN... | prune RUN_OR_DIR...",
                   help="runs folder, or `compare` and run dirs, or `prune` and runs or runs folders")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--markdown", action="store_true", help="print the reference-style markdown table")
    fmt.add_argument("--csv", action="store_true", help="print CSV")
    p.add_argument("--wide", action="store_true", help="every column, as wide as it needs")
    p.add_argument("--columns", metavar="A,B,...", help="these columns, in this order (see below)")
    p.add_argument("--out", help="compare: output PNG (default: compare.png beside the first run)")
    p.add_argument("--metrics", nargs="+",
                   help="compare: history columns to plot (default: val_acc val_loss; detection: val_map50 "
                        "train_loss; training columns where the runs have no val split)")
    p.add_argument("--keep", type=int, metavar="N",
                   help="prune: keep the newest N periodic checkpoints too (default 0: last.pt and best.pt only)")
    p.add_argument("--discarded", action="store_true",
                   help="prune: also delete checkpoints/discarded-*/ (set aside by resumes from earlier epochs)")
    p.add_argument("--dry-run", action="store_true", help="prune: list what would go, delete nothing")
    p.set_defaults(func=run)


MODES = {"table": ("`runs [DIR]` (the table)", ("--markdown", "--csv", "--wide", "--columns")),
         "compare": ("`runs compare`", ("--out", "--metrics")),
         "prune": ("`runs prune`", ("--keep", "--discarded", "--dry-run"))}


def run(args: argparse.Namespace) -> int:
    from deepvision.errors import UserError

    mode = args.args[0] if args.args and args.args[0] in ("compare", "prune") else "table"
    if mode == "table" and args.out is not None:  # the table itself is printed
        raise UserError("--out is for `runs compare`; to keep the table, print it with --csv (or --markdown) "
                        "and redirect it: deepvision runs DIR --csv > runs.csv")
    refuse_other_modes(args, mode)
    if mode == "compare":
        return compare(args.args[1:], args.out, args.metrics)
    if mode == "prune":
        return prune(args.args[1:], args.keep or 0, args.discarded, args.dry_run)
    if len(args.args) > 1:
        raise UserError("give one runs folder (or `compare RUN_A RUN_B ...`)")
    from deepvision.safeload import comma_items

    columns = comma_items(args.columns, "--columns", "column") if args.columns else None
    return table(args.args[0] if args.args else "runs", args.markdown, args.csv, wide=args.wide, columns=columns)


def refuse_other_modes(args: argparse.Namespace, mode: str) -> None:
    """Refuse an option of another mode than `mode` (`--keep` when listing): taken, it would be ignored
    without a word (a listing given --dry-run still writes journal.csv)."""
    from deepvision.errors import UserError

    given = {"--markdown": args.markdown, "--csv": args.csv, "--wide": args.wide, "--columns": args.columns is not None,
             "--out": args.out is not None, "--metrics": args.metrics is not None, "--keep": args.keep is not None,
             "--discarded": args.discarded, "--dry-run": args.dry_run}
    for other, (name, options) in MODES.items():
        unused = next((o for o in options if given[o]), None) if other != mode else None
        if unused is not None:
            raise UserError(f"{unused} applies to {name} only, not to {MODES[mode][0]}; leave it out")


def table(folder: str, markdown: bool, as_csv: bool, wide: bool = False, columns: list[str] | None = None) -> int:
    import sys

    from deepvision.cli.output import shown
    from deepvision.runs.journal import (
        format_bytes,
        journal,
        print_table,
        to_csv,
        to_markdown,
        wide_columns,
        write_journal_csv,
    )
    from deepvision.safeload import shell_word

    rows = journal(folder)
    problem = write_journal_csv(folder, rows)
    if problem:  # a read-only folder, a full disk, a user's own journal.csv: the table is still printed
        sys.stderr.write(f"deepvision runs: warning: {problem}; listing the runs anyway\n")
    if markdown:
        print(to_markdown(rows), end="")
    elif as_csv:
        print(to_csv(rows), end="")
    elif not rows:
        print(f"no runs under {shown(folder)} (a run directory holds config.yaml and run.json)")
    else:
        if wide and not columns:
            columns = wide_columns(rows)
        n = len(rows)
        print_table(rows, columns, wide=wide, title=f"{n} run{'s' if n != 1 else ''} in {shown(folder)}")
        total = sum(r.get("ckpt_bytes") or 0 for r in rows)
        prunable = sum(r.get("ckpt_prunable_bytes") or 0 for r in rows)
        if prunable:
            command = f"best.pt of each run: deepvision runs prune {shell_word(folder)}"
            if len(command) > 80:  # the title names the folder
                command = "best.pt of each run: deepvision runs prune FOLDER (the folder above)"
            print(f"checkpoints take {format_bytes(total)}, {format_bytes(prunable)} of it older epochs; to keep "
                  f"only last.pt and\n{command}")
    return 0


def prune(targets: list[str], keep: int, discarded: bool, dry_run: bool) -> int:
    """Delete older checkpoints of each run given, or of every run under each folder given."""
    from pathlib import Path

    from deepvision.cli.output import shown
    from deepvision.errors import UserError
    from deepvision.fileio import not_a_folder
    from deepvision.runs.journal import epoch_ranges, find_runs, format_bytes
    from deepvision.runs.rundir import RunDir

    if not targets:
        raise UserError("give the runs to prune: `deepvision runs prune RUN_OR_DIR ...` (e.g. runs)")
    runs: list[Path] = []
    for target in map(Path, targets):
        if (target / "config.yaml").is_file():
            runs.append(target)
        elif target.is_dir():
            found = sorted(run.path for run in find_runs(target))  # the runs `runs` lists: links not followed
            if not found:
                raise UserError(f"{target} is neither a run directory nor a folder of runs (a link to a run "
                                f"is not followed: name the run itself)")
            runs += found
        else:
            raise UserError(not_a_folder(target, "run directory or folder of runs"))
    unique: dict[Path, Path] = {}
    for path in runs:  # a run named twice, or named and inside a folder named: pruned and counted once
        unique.setdefault(path.resolve(), path)
    runs = list(unique.values())
    opened = [RunDir.open(path) for path in runs]
    for run in opened:  # a run whose checkpoint names cannot be read is refused before any run is pruned
        run.checkpoint_prefix()
    total = 0
    for path, run in zip(runs, opened):
        saved = run.saved_epochs()
        files, freed = run.prune(keep, discarded, dry_run)
        total += freed
        if files:
            epochs = [e for e, p in saved.items() if p in files]
            parts = [f"epoch{'s' if len(epochs) > 1 else ''} {epoch_ranges(epochs)}"] if epochs else []
            aside = len(files) - len(epochs)
            parts += [f"{aside} set-aside file{'s' if aside > 1 else ''}"] if aside else []
            named = f"{shown(path)} (a link to {shown(path.resolve())})" if path.is_symlink() else shown(path)
            print(f"{named}: {'would delete' if dry_run else 'deleted'} {' and '.join(parts)} "
                  f"({format_bytes(freed)})")
    verb = "would free" if dry_run else "freed"
    print(f"{len(runs)} run{'s' if len(runs) != 1 else ''}: {verb} {format_bytes(total)}")
    return 0


def compare(runs: list[str], out: str | None, metrics: list[str] | None) -> int:
    from pathlib import Path

    from deepvision.cli.output import shown
    from deepvision.errors import UserError
    from deepvision.placement import drawn_as, refuse_figure_among_images, refuse_output_over_inputs, refuse_replacing
    from deepvision.runs.plots import COMPARE_FIGURE, plot_compare
    from deepvision.runs.rundir import RunDir

    if len(runs) < 2:
        raise UserError("runs compare needs at least two run directories")
    seen: dict[Path, str] = {}
    for path in runs:  # one run named twice (or under two spellings) would be drawn twice
        key = Path(path).resolve()
        if key in seen:
            raise UserError(f"runs compare: {path} names the run {seen[key]} again; name each run once")
        seen[key] = path
    histories = {}
    opened = [RunDir.open(path) for path in runs]
    tasks = [run.read_config().task for run in opened]
    if (other := next((i for i, task in enumerate(tasks) if task != tasks[0]), None)) is not None:
        # a detection loss would be drawn on the cross-entropy axis of classification runs
        raise UserError(f"runs compare: {shown(opened[0].path)} is a {tasks[0]} run and "
                        f"{shown(opened[other].path)} a {tasks[other]} run: their losses and metrics are other "
                        f"quantities; compare runs of one task")
    for run in opened:
        name = run.path.name
        history = run.read_history()
        if not history:  # as `plot` says: a run with no epoch would be drawn as a name without a curve
            raise UserError(f"runs compare: {run.history_path} holds no completed epoch yet; compare it once an "
                            f"epoch is done")
        histories[name if name not in histories else str(run.path)] = history
    # the columns some run holds a value in (detection runs have val_map50, train_loss_classifier, ...): a metric
    # no run has would be an empty panel
    known = list(dict.fromkeys(k for h in histories.values() for r in h for k, v in r.items()
                               if v is not None and k != "epoch"))
    if metrics is None:  # the task's own: validation where the runs have it, else training
        wanted = ("val_map50", "train_loss") if tasks[0] == "detection" else ("val_acc", "val_loss")
        metrics = [m if m in known else m.replace("val_", "train_") for m in wanted]
        metrics = list(dict.fromkeys(m for m in metrics if m in known)) or ["train_loss"]
    bad = [m for m in metrics if m not in known]
    if bad:
        raise UserError(f"unknown metric '{bad[0]}'; the runs hold {', '.join(known)}")
    target = Path(out) if out else Path(runs[0]).parent / "compare.png"
    if target.suffix.lower() not in (".png", ".pdf", ".svg", ".jpg"):
        raise UserError(f"--out {target}: give an image file name ending in .png, .pdf, .svg or .jpg")
    folder = target.parent
    if not folder.is_dir():  # never create folders nobody asked for (a typo would make a tree of them)
        what = "is not a folder" if folder.exists() else "does not exist"
        raise UserError(f"--out {target}: the folder {folder} {what}; create it first (mkdir -p {folder}) "
                        "or choose a file in an existing folder")
    if target.is_dir():
        raise UserError(f"--out {target} is a folder; give a file name such as {target / 'compare.png'}")
    for run in opened:  # the plot never replaces a file of a compared run (its sample image, its plots)
        refuse_output_over_inputs(target, run.path.rglob("*"))
    refuse_replacing(target, drawn_as(COMPARE_FIGURE), "a figure runs compare drew")
    refuse_figure_among_images(target)
    print(shown(plot_compare(histories, target, tuple(metrics), task=tasks[0])))
    return 0
