"""The T1 evaluation report (docs/stl10.md): ROC and precision-recall of the training split (scored
without augmentation) and the test split in one figure, plus T1's per-class correct counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deepvision.engine.resolve import refuse_output_in_data
from deepvision.errors import UserError
from deepvision.evaluation.evaluate import evaluate_run
from deepvision.evaluation.plots import plot_binary
from deepvision.fileio import atomic_write_text
from deepvision.placement import refuse_mixed_reports
from deepvision.runs.rundir import RunDir
from deepvision.safeload import read_json


def t1_report(run_dir: str | Path, *, epoch: int | None = None, which: str = "best", data: str = "test",
              device: str = "auto", out: str | Path | None = None, quiet: bool = False) -> dict[str, Any]:
    """Evaluate a two-class run on the training split and on `data` (test by default), and write
    roc_pr.png (training curves magenta, `data` cyan) and t1_report.json into `out` (default:
    RUN/eval/t1-<checkpoint>/). Returns the report: per split, samples, accuracy, per-class correct
    counts, ROC AUC and average precision."""
    if out is not None:  # before evaluating: the figure would become an image of the run's own data
        refuse_output_in_data(RunDir.open(run_dir).read_config(), out)
        refuse_mixed_reports(out, ("metrics.json", "predictions.csv"), "an evaluate report")
    results = {}
    for split in ("train", data):
        results[split] = evaluate_run(run_dir, epoch=epoch, which=which, data=split, device=device, quiet=True)
    evaluated = results[data]
    classes = list(evaluated["per_class"])
    if len(classes) != 2:
        raise UserError(f"{run_dir} classifies {len(classes)} classes; the T1 report is for two-class runs")
    checkpoint = Path(evaluated["checkpoint"]).stem
    folder = Path(out) if out else RunDir(evaluated["run"]).folder("eval", f"t1-{checkpoint}", create=False)
    curves = {split: read_json(r["files"]["curves_json"], "curves file") if "curves_json" in r["files"]
              else None for split, r in results.items()}
    if curves[data] is None:
        raise UserError(f"the {data} split holds a single class; ROC and precision-recall need both")
    report: dict[str, Any] = {"run": evaluated["run"], "checkpoint": evaluated["checkpoint"],
                              "epoch": evaluated["epoch"], "positive": classes[1], "splits": {}}
    for split, r in results.items():
        cm = r["confusion_matrix"]
        report["splits"][split] = {
            "samples": r["samples"], "accuracy": r["rank1"], "roc_auc": r.get("roc_auc"),
            "average_precision": r.get("average_precision"),
            "correct": {c: {"correct": cm[i][i], "total": sum(cm[i])} for i, c in enumerate(classes)},
        }
    figure = plot_binary(curves[data], classes[1], folder / "roc_pr.png", label=data, train=curves["train"])
    report["files"] = {"figure": str(figure), "report": str(folder / "t1_report.json")}
    atomic_write_text(folder / "t1_report.json", json.dumps(report, indent=2) + "\n")
    if not quiet:
        for split, r in report["splits"].items():
            counts = ", ".join(f"{c} {v['correct']}/{v['total']}" for c, v in r["correct"].items())
            print(f"{split}: {sum(v['correct'] for v in r['correct'].values())}/{r['samples']} correct "
                  f"({r['accuracy'] * 100:.1f}%; {counts}); ROC AUC {_fmt(r['roc_auc'])}, "
                  f"average precision {_fmt(r['average_precision'])}")
        print(f"figure: {figure}")
    return report


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
