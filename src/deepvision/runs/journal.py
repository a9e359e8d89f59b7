"""The experiment journal: one row per run found under a folder.

The terminal table fits 80 columns by default: whole run names, the schedule summarised by epoch
range (`1-50: 0.01; 51-65: 0.001`, `1-8: cosine 0.05→0.000546`), the best epoch's val rank-1/rank-5
and the checkpoints' disk use; `--wide` or `--columns` show more. Rank-5 is left out for runs with
5 classes or fewer, where it is always 100%. Runs that monitor another metric (detection: val_map50)
get a column with its best value, and the test split's mAP (test_metrics.json or `deepvision evaluate`).

Why one module of ~525 lines: the rows, the column layout and the three renderings (table, CSV,
Markdown) all follow the one `COLUMNS` table, and a change to a column touches each of them.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepvision.errors import UserError
from deepvision.fileio import atomic_write_text, not_a_folder, open_regular_file
from deepvision.runs.history import describe_lrs
from deepvision.runs.rundir import RunDir, bytes_freed
from deepvision.safeload import printable, shell_word, spreadsheet_cell

# key -> (table header, kind); kind: "text" (wraps), "name" (kept whole), "num" (right-aligned, never cut)
COLUMNS: dict[str, tuple[str, str]] = {
    "name": ("run", "name"), "model": ("model", "text"), "data": ("data", "text"), "epochs": ("ep", "num"),
    "lr_schedule": ("lr schedule", "text"), "best_val_acc": ("val r1", "num"), "best_val_top5": ("val r5", "num"),
    "best_epoch": ("best", "num"), "last_val_acc": ("last r1", "num"), "last_val_top5": ("last r5", "num"),
    "test_acc": ("test r1", "num"), "test_top5": ("test r5", "num"), "monitor": ("monitor", "text"),
    "best_value": ("val best", "num"), "test_value": ("test best", "num"), "test_map50": ("test mAP50", "num"),
    "test_map": ("test mAP", "num"), "s_per_epoch": ("s/ep", "num"), "samples_per_s": ("img/s", "num"),
    "ckpt_bytes": ("ckpt", "num"), "status": ("status", "text"),
}
DEFAULT_COLUMNS = ("name", "epochs", "lr_schedule", "best_val_acc", "best_val_top5", "best_value", "test_map50",
                   "ckpt_bytes", "status")
OPTIONAL_COLUMNS = ("model", "best_epoch", "test_acc", "test_map")  # added by default while the table still fits
PERCENT_METRICS = ("acc", "top5", "map", "map50", "map75")  # shown in per cent
WIDTH = 80
SCHEDULE_MIN = 12  # the schedule column wraps, but not narrower than this
STATUS = {"finished": "done", "interrupted": "stopped"}  # short words in the table (run.json keeps its own)


def find_runs(root: str | Path) -> list[RunDir]:
    root = Path(root)
    if not root.is_dir():
        raise UserError(not_a_folder(root, "runs folder"))
    found = [RunDir(p.parent) for p in sorted(root.rglob("config.yaml")) if os.path.lexists(p.parent / "run.json")]
    return sorted(found, key=lambda r: r.path.stat().st_mtime)


def _finite(values: list[Any]) -> list[float]:
    return [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def run_row(run: RunDir) -> dict[str, Any]:
    hist = run.read_history()
    run.has_config()  # a FIFO in its place marks the run damaged (below, a bad config only blanks the model)
    status = run.status()
    schedule, classes, monitor = None, None, "val_acc"
    try:
        cfg = run.read_config()
        model, data = cfg.model.name, f"{cfg.data.source}:{cfg.data.train}"
        schedule, classes, topk = cfg.schedule.name, cfg.model.num_classes, cfg.train.topk
        monitor = cfg.checkpoint.monitor or ("val_map50" if cfg.task == "detection" else "val_acc")
    except UserError:
        model, data, topk = "?", "?", 5
    if run.has_labels():
        classes = len(run.read_labels())
    with_rank5 = classes is None or classes > topk
    row: dict[str, Any] = {"name": run.path.name, "path": str(run.path), "model": model, "data": data,
                           "epochs": len(hist), "status": status, "classes": classes}
    lrs = [r["lr"] for r in hist if r.get("lr") is not None]
    row["lr_schedule"] = describe_lrs(lrs, schedule) if lrs else ""
    scored = [r for r in hist if r.get("val_acc") is not None]
    if scored:  # a NaN or inf epoch (a diverged one) is never the best while another has a number
        finite = [r for r in scored if math.isfinite(r["val_acc"])]
        best = max(finite or scored, key=lambda r: r["val_acc"])
        row.update(best_val_acc=best["val_acc"], best_val_top5=best.get("val_top5"), best_epoch=best["epoch"],
                   last_val_acc=scored[-1]["val_acc"], last_val_top5=scored[-1].get("val_top5"))
    row.update(_monitored(run, hist, monitor))
    row.update(_test_scores(run, monitor))
    if not with_rank5:
        for key in ("best_val_top5", "last_val_top5", "test_top5"):
            row[key] = None
    secs = _finite([r.get("seconds") for r in hist])
    speed = _finite([r.get("samples_per_s") for r in hist])
    row["s_per_epoch"] = sum(secs) / len(secs) if secs else None
    row["samples_per_s"] = sum(speed) / len(speed) if speed else None
    disk = run.checkpoint_disk_use()
    row["ckpt_bytes"], row["ckpt_discarded_bytes"] = disk["total"], disk["discarded"]
    row["ckpt_prunable_bytes"] = bytes_freed(run.prunable(0))
    return row


def _monitored(run: RunDir, hist: list[dict[str, Any]], monitor: str) -> dict[str, Any]:
    """The monitored metric (checkpoint.monitor, whatever it is named) at the best epoch: the one best.pt
    holds (run.json), else the best value in the history."""
    values = {r["epoch"]: r.get(monitor) for r in hist if isinstance(r.get(monitor), (int, float))}
    values = {e: v for e, v in values.items() if math.isfinite(v)}
    if not values:
        return {"monitor": monitor}
    best = run.read_state().get("best_epoch")
    if best not in values:
        lower = monitor.endswith("loss")
        best = (min if lower else max)(values, key=lambda e: values[e])
    out: dict[str, Any] = {"monitor": monitor, "best_value": values[best]}
    if monitor != "val_acc":
        out["best_epoch"] = best
    return out


def _test_scores(run: RunDir, monitor: str) -> dict[str, Any]:
    """Test-split numbers of best.pt, the run's test score: `deepvision evaluate` reports under eval/ first,
    then the trainer's test_metrics.json (train.test). A report of another checkpoint (`--last`, `--epoch`),
    of an earlier best.pt, or of another run (copied in, or written here by `evaluate OTHER --out`) is not it.
    test_value is the monitored metric on the test split."""
    out: dict[str, Any] = {}
    trained = run.read_test_metrics() or {}
    if not _trainers_own(run, trained):
        trained = {}
    test = _test_metrics(run)
    if test:
        out.update(test_acc=test.get("rank1"), test_top5=test.get("rank5"), test_crops=test.get("crops", 1))
    elif trained.get("test_acc") is not None:
        out.update(test_acc=trained["test_acc"], test_top5=trained.get("test_top5"))
    detection = _detection_metrics(run)
    if detection:
        out.update(test_map50=detection.get("voc_map50"), test_map=detection.get("coco", {}).get("map"))
    elif trained.get("test_map50") is not None:
        out.update(test_map50=trained["test_map50"], test_map=trained.get("test_map"))
    metric = monitor.removeprefix("val_")
    out["test_value"] = {"acc": out.get("test_acc"), "top5": out.get("test_top5"), "map50": out.get("test_map50"),
                         "map": out.get("test_map")}.get(metric, trained.get(f"test_{metric}"))
    return out


def _trainers_own(run: RunDir, trained: dict[str, Any]) -> bool:
    """Whether test_metrics.json is this run's as it is now: its run id (when it has one), its epoch count
    (run.json's epochs_done) and, for best.pt, its epoch (run.json's best_epoch) agree with the run's."""
    state = run.read_state()
    return run.wrote(trained) and all(
        mine is None or theirs is None or mine == theirs
        for mine, theirs in ((state.get("epochs_done"), trained.get("epochs")),
                             (state.get("best_epoch"), trained.get("epoch") if trained.get("checkpoint") == "best"
                              else None)))


def _of_best(run: RunDir, name: str, report: dict[str, Any], base: str) -> bool:
    """Whether an evaluation report scored this run's best.pt as it is now: its checkpoint is best.pt (a report
    naming none: its folder is BASEbest) of run.json's best_epoch, and the run wrote it (`RunDir.wrote`)."""
    checkpoint = report.get("checkpoint")
    if checkpoint is not None:
        is_best = Path(checkpoint).name == "best.pt"
    else:
        is_best = name == f"{base}best" or name.startswith(f"{base}best-")
    best, epoch = run.read_state().get("best_epoch"), report.get("epoch")
    return is_best and (best is None or epoch is None or best == epoch) and run.wrote(report)


def _detection_metrics(run: RunDir) -> dict[str, Any] | None:
    """The newest `deepvision evaluate` report of best.pt on a detection run's test split."""
    found = _own_test_reports(run, "detection-test-*")
    return ([m for name, m in found if _of_best(run, name, m, "detection-test-")] or [None])[-1]


def _own_test_reports(run: RunDir, folders: str) -> list[tuple[str, dict[str, Any]]]:
    """(folder name, report) of the readable RUN/eval/FOLDERS/metrics.json, oldest first, that score the run's
    own test split: a report of other data (`evaluate --data DIR`), or of another split of it, is not the run's
    test score."""
    found = []
    for path in sorted(run.eval_dir.glob(f"{folders}/metrics.json"), key=lambda p: p.stat().st_mtime):
        report = run.read_report(path)
        if report is not None and report.get("data", "test") == report.get("split", "test") == "test":
            found.append((path.parent.name, report))
    return found


def _test_metrics(run: RunDir) -> dict[str, Any] | None:
    """The evaluation of best.pt on the test split to report: single centre crop (the reference's protocol),
    else the newest of any kind."""
    found = [m for name, m in _own_test_reports(run, "test-*") if _of_best(run, name, m, "test-")]
    single = [m for m in found if m.get("crops", 1) == 1]
    return (single or found or [None])[-1]


def journal(root: str | Path) -> list[dict[str, Any]]:
    """One row per run; a run whose files are damaged gets a row that says so (the others are listed)."""
    rows = []
    for run in find_runs(root):
        try:
            rows.append(run_row(run))
        except UserError as exc:
            rows.append({"name": run.path.name, "path": str(run.path), "model": "?", "data": "?", "epochs": None,
                         "status": f"damaged: {exc}"})
    return rows


def format_bytes(n: int | float | None) -> str:
    """1234567 -> '1.2 MB' (decimal units, like `du --si`)."""
    if n is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" or n >= 100 else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def epoch_ranges(epochs: Sequence[int]) -> str:
    """[1, 2, 3, 7, 9, 10] -> '1-3, 7, 9-10'."""
    parts: list[str] = []
    values = sorted(epochs)
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        parts.append(str(values[i]) if i == j else f"{values[i]}-{values[j]}")
        i = j + 1
    return ", ".join(parts)


def checkpoint_note(run_dir: str | Path, indent: str = "") -> str:
    """'checkpoints: 8.6 MB (last.pt, best.pt, epochs 7-8; checkpoint.keep 2)' for the run summary, a
    line for what resumes from earlier epochs set aside, and the `runs prune` command when older epochs
    take space."""
    run = RunDir(run_dir)
    disk = run.checkpoint_disk_use()
    saved = list(run.saved_epochs())
    named = [n for n in ("last.pt", "best.pt") if (run.checkpoints / n).is_file()]
    what = ", ".join(named + ([f"epochs {epoch_ranges(saved)}"] if saved else []))
    keep = None
    with contextlib.suppress(UserError):
        keep = run.read_config().checkpoint.keep
    rule = "checkpoint.keep: all" if keep is None else f"checkpoint.keep {keep}"
    text = f"{indent}checkpoints: {format_bytes(disk['total'])} ({what}; {rule})"
    if disk["discarded"]:
        text += (f"\n{indent}  of which {format_bytes(disk['discarded'])} set aside by resumes in "
                 f"checkpoints/discarded-*/")
    aside = bool(disk["discarded"])
    freed = bytes_freed(run.prunable(0, discarded=aside))
    if freed:
        text += (f"\n{indent}  {format_bytes(freed)} of it is older epochs; to keep only last.pt and best.pt:"
                 f"\n{indent}  deepvision runs prune {shell_word(run.path)}{' --discarded' if aside else ''}")
    return text


def cell(key: str, v: Any, row: dict[str, Any] | None = None) -> str:
    if v is None or v == "":
        return "-"
    if key in ("best_value", "test_value"):  # formatted as the monitored metric is
        key = str((row or {}).get("monitor", ""))
    if key.rsplit("_", 1)[-1] in PERCENT_METRICS:
        return f"{v * 100:.2f}"
    if key.endswith("loss") and isinstance(v, float):
        return f"{v:.4f}"
    if key == "s_per_epoch":
        return f"{v:.1f}"
    if key == "samples_per_s":
        return f"{v:,.0f}"
    if key == "ckpt_bytes":
        return format_bytes(v).replace(" ", "")
    if key == "status":
        return printable(STATUS.get(v, v))
    return printable(v)


def to_csv(rows: list[dict[str, Any]]) -> str:
    """The journal as CSV (`journal.csv`, `runs --csv`): every column; text cells spreadsheet-safe."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=JOURNAL_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: spreadsheet_cell(v) for k, v in r.items()})
    return buf.getvalue()


JOURNAL_FIELDS = [*COLUMNS, "classes", "ckpt_discarded_bytes", "ckpt_prunable_bytes", "path"]


def _is_journal(path: Path) -> bool:
    """Whether `path` starts with a journal's header: the columns `to_csv` writes (an older release's
    journal has fewer of them, but always starts with `name` and ends with `path`)."""
    try:
        with open_regular_file(path) as f:
            first = f.readline(4096).decode("utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError):
        return False
    fields = first.split(",")
    return fields[0] == "name" and fields[-1] == "path" and set(fields) <= set(JOURNAL_FIELDS)


def write_journal_csv(folder: str | Path, rows: list[dict[str, Any]]) -> str | None:
    """Write FOLDER/journal.csv with every column; returns why it was not written, or None. Nothing is
    written without runs, and a journal.csv that is not one deepvision wrote (a user's own CSV) is kept."""
    if not rows:
        return None
    path = Path(folder) / "journal.csv"
    if os.path.lexists(path) and not _is_journal(path):
        return f"{path} is not a deepvision journal; left as it is (move it away to have the journal written)"
    try:
        atomic_write_text(path, to_csv(rows))
    except UserError as exc:  # a read-only folder, a full disk
        return str(exc)
    return None


def crops(row: dict[str, Any]) -> str:
    return {2: " (flip)", 10: " (10-crop)"}.get(row.get("test_crops"), "")


def to_markdown(rows: list[dict[str, Any]]) -> str:
    """The reference's journal table: experiment, epochs, schedule by epoch range, the best epoch's
    val rank-1/rank-5, test rank-1/rank-5 (single centre crop unless marked)."""
    head = "| Experiment | Model | Epochs | LR schedule | Val rank-1 | Val rank-5 | Test rank-1 | Test rank-5 |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        name, model = printable(r["name"]), printable(r["model"])
        lines.append(f"| {name} | {model} | {r['epochs']} | {r['lr_schedule'] or '-'} | "
                     f"{cell('acc', r.get('best_val_acc'))} | {cell('top5', r.get('best_val_top5'))} | "
                     f"{cell('acc', r.get('test_acc'))}{crops(r)} | {cell('top5', r.get('test_top5'))}{crops(r)} |")
    lines += ["", "Val: the epoch with the best val rank-1. Rank-5 is omitted (-) with 5 classes or fewer."]
    return "\n".join(lines) + "\n"


def _widest(key: str, rows: list[dict[str, Any]], stacked: bool = False) -> int:
    title = header(key, rows, stacked)
    return max([len(cell(key, r.get(key), r)) for r in rows] + [len(line) for line in title.splitlines()])


def _longest_word(key: str, rows: list[dict[str, Any]]) -> int:
    """The longest unbreakable piece of a text column ('0.002→0.000546'): the column is never narrower,
    so a number is never split across lines."""
    return max([len(word) for r in rows for word in cell(key, r.get(key), r).split()] + [0])


def header(key: str, rows: list[dict[str, Any]], stacked: bool = False) -> str:
    """The column's title; the monitored-metric columns name the metric when every run monitors the same one.
    `stacked`: a number column's title on two lines ('val\nr1'), so the column is only as wide as its numbers."""
    title = COLUMNS[key][0]
    if key in ("best_value", "test_value"):
        monitors = {r.get("monitor") for r in rows if r.get(key) is not None}
        if len(monitors) == 1:
            metric = str(monitors.pop()).removeprefix("val_").replace("map", "mAP")
            title = f"{'val' if key == 'best_value' else 'test'} {metric}"
    if stacked and COLUMNS[key][1] == "num":
        title = title.replace(" ", "\n", 1)
    return title


# a monitored-metric column repeats a dedicated one when every run monitors that metric
_DEDICATED = {"best_value": ("val_acc", "val_top5"), "test_value": ("val_acc", "val_top5", "val_map50", "val_map")}


def wide_columns(rows: list[dict[str, Any]]) -> list[str]:
    """Every column (`runs --wide`) except a monitored-metric column that only repeats a dedicated one."""
    return [k for k in COLUMNS if k not in _DEDICATED or any(r.get("monitor") not in _DEDICATED[k] for r in rows)]


def layout(rows: list[dict[str, Any]], columns: Sequence[str] | None = None,
           width: int | None = WIDTH, stacked: bool = False) -> tuple[list[str], dict[str, int], bool]:
    """Columns and their widths. Numbers and statuses are never cut; the run name gets what it needs
    (folded at '-', '_' or '.' only when it cannot fit), the schedule wraps in what is left, never inside
    a number. Without `columns`: the default ones (empty ones dropped) plus optional ones while the names
    stay whole. Where names would fold otherwise, number columns get two-line titles (see `header`); the
    third value says so."""
    if columns:
        unknown = [c for c in columns if c not in COLUMNS]
        if unknown:
            raise UserError(f"unknown journal column '{unknown[0]}'; choose from {', '.join(COLUMNS)}")
        chosen = list(dict.fromkeys(columns))
    else:
        # status only when some run did not finish; rank-5 and disk use only when some run has them
        # the monitored metric's column only when some run monitors another metric than val rank-1
        chosen = [k for k in DEFAULT_COLUMNS if k in ("name", "epochs", "lr_schedule")
                  or (k == "status" and any(r.get("status") != "finished" for r in rows))
                  or (k == "best_value" and any(r.get(k) is not None and r.get("monitor") != "val_acc" for r in rows))
                  or (k not in ("status", "best_value") and any(r.get(k) is not None for r in rows))]

    def widths(keys: list[str]) -> dict[str, int]:
        w = {k: _widest(k, rows, stacked) for k in keys}
        if width is None:
            return w
        floors = {k: max(SCHEDULE_MIN, _longest_word(k, rows)) for k in keys}
        flexible = [k for k in keys if COLUMNS[k][1] != "num" and k != "status"]
        room = width - 2 * (len(keys) - 1) - sum(w[k] for k in keys if k not in flexible)
        others = [k for k in flexible if k != "name"]
        if "name" in w:  # whole names first, leaving the others a readable width, else their minimum
            names = [len(str(r.get("name", ""))) for r in rows] or [0]
            for floor in (20, 16, SCHEDULE_MIN):
                spare = room - sum(min(w[k], max(floor, floors[k])) for k in others)
                if max(names) <= spare:
                    break
            else:  # some name folds anyway: keep the schedule readable, fold in what is left
                spare = room - sum(min(w[k], max(16, floors[k])) for k in others)
            w["name"] = max(12, min(max(names), spare))
            room -= w["name"]
        for k in others:
            w[k] = max(min(w[k], floors[k]), room // max(len(others), 1))
        return w

    if not columns and width is not None:
        for k in OPTIONAL_COLUMNS:
            if any(r.get(k) is not None for r in rows):
                trial = sorted([*chosen, k], key=list(COLUMNS).index)
                w = widths(trial)
                if w.get("name", 0) >= _widest("name", rows) and w.get("lr_schedule", 99) >= 20 and \
                        sum(w.values()) + 2 * (len(trial) - 1) <= width:
                    chosen = trial
    w = widths(chosen)
    if not stacked and width is not None and w.get("name", 0) < _widest("name", rows):
        # names would fold: two-line titles make the number columns only as wide as their numbers
        stacked_layout = layout(rows, columns, width, stacked=True)
        if stacked_layout[1].get("name", 0) > w["name"]:
            return stacked_layout
    return chosen, w, stacked


def wrap_schedule(text: str, width: int) -> str:
    """The schedule in lines of at most `width`, broken between its ranges ('1-40: 0.01;') where possible,
    else between words, never inside a number."""
    atoms = text.split("; ")
    pieces = [a + (";" if i < len(atoms) - 1 else "") for i, a in enumerate(atoms)]
    lines: list[str] = []
    current = ""
    for piece in pieces:
        joined = f"{current} {piece}" if current else piece
        if len(joined) <= width:
            current = joined
            continue
        if current:
            lines.append(current)
        parts = textwrap.wrap(piece, width, break_long_words=False, break_on_hyphens=False) or [piece]
        lines += parts[:-1]
        current = parts[-1]
    return "\n".join([*lines, current] if current else lines)


def fold_name(name: str, width: int) -> str:
    """Break a long run name into lines of at most `width`, after '-', '_' or '.' where possible."""
    lines, rest = [], name
    while len(rest) > width:
        cut = max(rest.rfind(c, 0, width) for c in "-_.") + 1
        cut = cut if cut > width // 3 else width
        lines.append(rest[:cut])
        rest = rest[cut:]
    return "\n".join([*lines, rest])


def render_table(rows: list[dict[str, Any]], columns: Sequence[str] | None = None, width: int | None = WIDTH,
                 title: str = "") -> str:
    """The journal as a text table of at most `width` columns (None: as wide as it needs)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    damage = []  # a damaged run's reason, a path and a sentence, goes below the table: the row stays in width
    if width is not None:
        shortened = []
        for r in rows:
            status = str(r.get("status") or "")
            if status.startswith("damaged: "):
                damage.append(f"{printable(r.get('name', ''))}: {printable(status.removeprefix('damaged: '))}")
                r = {**r, "status": "damaged"}
            shortened.append(r)
        rows = shortened
    chosen, widths, stacked = layout(rows, columns, width)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False,
                  padding=(0, 1), collapse_padding=True, show_edge=False)
    for key in chosen:
        kind = COLUMNS[key][1]
        table.add_column(header(key, rows, stacked), justify="right" if kind == "num" else "left",
                         width=widths[key], no_wrap=kind == "num", overflow="fold")
    for r in rows:
        values = [cell(k, r.get(k), r) for k in chosen]
        if "name" in chosen:
            i = chosen.index("name")
            values[i] = fold_name(values[i], widths["name"])
        if "lr_schedule" in chosen and width is not None:
            i = chosen.index("lr_schedule")
            values[i] = wrap_schedule(values[i], widths["lr_schedule"])
        table.add_row(*map(Text, values))  # Text: a run named '[bold]x' is shown as named, never as markup
    console = Console(file=io.StringIO(), width=sum(widths.values()) + 2 * len(widths) + 2,
                      force_terminal=False, color_system=None)
    console.print(table)
    notes = []
    if {"best_val_acc", "best_val_top5"} & set(chosen):
        notes.append("val r1/r5: rank-1/rank-5 of the best epoch, %")
    if "best_value" in chosen:
        notes.append("val <metric>: checkpoint.monitor at the best epoch (% for accuracy, mAP)")
    if {"test_map50", "test_map"} & set(chosen):
        notes.append("test mAP50/mAP: VOC mAP@0.5 and COCO mAP@[.5:.95], %")
    if "ckpt_bytes" in chosen:
        notes.append("ckpt: checkpoint disk use")
    if rows and "status" not in chosen and not columns:
        notes.append("all runs finished")
    died = [r["name"] for r in rows if r.get("status") in ("crashed", "killed")]
    if died:
        names = ", ".join(printable(d) for d in died)
        notes.append(f"{names}: the process died mid-run (a crash's report ends train.log); "
                     f"`deepvision resume RUN` goes on from the last completed epoch")
    text = console.file.getvalue()
    lines = ([title] if title else []) + [line.rstrip() for line in text.splitlines()]
    if notes:
        joined = "; ".join(notes)
        lines += [joined] if width is None or len(joined) <= width else [
            wrapped for note in notes for wrapped in textwrap.wrap(note, width, subsequent_indent="  ")]
    for note in damage:  # width is set: paths break anywhere rather than widen the output
        lines += textwrap.wrap(note, width, subsequent_indent="  ", break_on_hyphens=False)
    return "\n".join(lines) + "\n"


def print_table(rows: list[dict[str, Any]], columns: Sequence[str] | None = None, wide: bool = False,
                title: str = "") -> None:
    print(render_table(rows, columns, None if wide else WIDTH, title), end="")
