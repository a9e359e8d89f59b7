"""The experiment journal: one row per run found under a folder."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from deepvision.errors import UserError
from deepvision.runs.history import describe_lrs
from deepvision.runs.rundir import RunDir

COLUMNS = [
    ("name", "run"), ("model", "model"), ("data", "data"), ("epochs", "epochs"), ("lr_schedule", "lr schedule"),
    ("best_val_acc", "best val r1"), ("best_val_top5", "best val r5"), ("best_epoch", "best epoch"),
    ("last_val_acc", "last val r1"), ("last_val_top5", "last val r5"), ("s_per_epoch", "s/epoch"),
    ("samples_per_s", "samples/s"), ("status", "status"),
]


def find_runs(root: str | Path) -> list[RunDir]:
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"runs folder not found: {root}")
    found = [RunDir(p.parent) for p in sorted(root.rglob("config.yaml")) if (p.parent / "run.json").is_file()]
    return sorted(found, key=lambda r: r.path.stat().st_mtime)


def _finite(values: list[Any]) -> list[float]:
    return [v for v in values if isinstance(v, (int, float)) and not math.isnan(v)]


def run_row(run: RunDir) -> dict[str, Any]:
    hist = run.read_history()
    status = run.status()
    try:
        cfg = run.read_config()
        model, data = cfg.model.name, f"{cfg.data.source}:{cfg.data.train}"
    except UserError:
        model = data = "?"
    row: dict[str, Any] = {"name": run.path.name, "path": str(run.path), "model": model, "data": data,
                           "epochs": len(hist), "status": status}
    lrs = [r["lr"] for r in hist if r.get("lr") is not None]
    row["lr_schedule"] = describe_lrs(lrs) if lrs else ""
    scored = [r for r in hist if r.get("val_acc") is not None]
    if scored:
        best = max(scored, key=lambda r: r["val_acc"])
        row.update(best_val_acc=best["val_acc"], best_val_top5=best.get("val_top5"), best_epoch=best["epoch"],
                   last_val_acc=scored[-1]["val_acc"], last_val_top5=scored[-1].get("val_top5"))
    test = _test_metrics(run)
    if test:
        row.update(test_acc=test.get("rank1"), test_top5=test.get("rank5"), test_crops=test.get("crops", 1))
    secs = _finite([r.get("seconds") for r in hist])
    speed = _finite([r.get("samples_per_s") for r in hist])
    row["s_per_epoch"] = sum(secs) / len(secs) if secs else None
    row["samples_per_s"] = sum(speed) / len(speed) if speed else None
    return row


def _test_metrics(run: RunDir) -> dict[str, Any] | None:
    """The test-split evaluation to report: single centre crop of best.pt (the reference's protocol),
    else the newest single-crop one, else the newest of any kind."""
    found = []
    for path in sorted(run.eval_dir.glob("test-*/metrics.json"), key=lambda p: p.stat().st_mtime):
        try:
            found.append((path.parent.name, json.loads(path.read_text())))
        except ValueError:
            continue
    for wanted in (lambda name, m: name == "test-best", lambda name, m: m.get("crops", 1) == 1, lambda name, m: True):
        matches = [m for name, m in found if wanted(name, m)]
        if matches:
            return matches[-1]
    return None


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


def _cell(key: str, v: Any) -> str:
    if v is None or v == "":
        return "-"
    if key.endswith(("acc", "top5")):
        return f"{v * 100:.2f}"
    if key in ("s_per_epoch",):
        return f"{v:.1f}"
    if key == "samples_per_s":
        return f"{v:,.0f}"
    return str(v)


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=[k for k, _ in COLUMNS] + ["path"], extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return buf.getvalue()


def crops(row: dict[str, Any]) -> str:
    return " (10-crop)" if row.get("test_crops") == 10 else ""


def to_markdown(rows: list[dict[str, Any]]) -> str:
    """The reference's journal table: experiment, epochs, schedule by epoch range, rank-1/rank-5."""
    head = "| Experiment | Model | Epochs | LR schedule | Val rank-1 | Val rank-5 | Test rank-1 | Test rank-5 |"
    # test figures are single centre crop unless marked "(10-crop)"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['model']} | {r['epochs']} | {r['lr_schedule'] or '-'} | "
                     f"{_cell('acc', r.get('last_val_acc'))} | {_cell('top5', r.get('last_val_top5'))} | "
                     f"{_cell('acc', r.get('test_acc'))}{crops(r)} | {_cell('top5', r.get('test_top5'))}{crops(r)} |")
    return "\n".join(lines) + "\n"


def print_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} run(s)")
    text_columns = ("name", "model", "data", "lr_schedule", "status")
    for key, title in COLUMNS:
        table.add_column(title, justify="left" if key in text_columns else "right")
    for r in rows:
        table.add_row(*[_cell(k, r.get(k)) for k, _ in COLUMNS])
    Console().print(table)
