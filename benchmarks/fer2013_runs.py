"""The emotion recipes on the real FER2013: accuracy and training time of finished runs.

Each RUN is a run directory written by `deepvision train <recipe> --data-root FER` on the HDF5
splits of `deepvision fer2013 build` (6 classes, or 7 with `--classes 7` for E1-E3; val =
PrivateTest, test = PublicTest, as the reference).
Per run the script scores the final model (last.pt: what the recipe gives after its last epoch) on
val and test with `deepvision evaluate`'s code, once plainly and once averaging each face with its
mirror (`--crops 2`), and reads the training time from history.csv (the sum of the epochs' wall
seconds, validation included). `--plots DIR` copies each run's accuracy and loss curves to
DIR/fer2013-<run>-{accuracy,loss}.png for the docs.

    deepvision train emotion_vgg_e4 --data-root fer2013 --out runs
    deepvision train emotion_fast --data-root fer2013 --out runs
    deepvision train emotion_vgg_e1 --data-root fer2013_7 --out runs     # E2, E3 alike
    python benchmarks/fer2013_runs.py runs/emotion_vgg_e* runs/emotion_fast --plots docs/images

The table replaces this script's section of BENCHMARKS.md (`--no-append` only prints it; `--title`
names another section, e.g. for a second seed of a recipe beside the main table).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from deepvision.evaluation.evaluate import evaluate_run
from deepvision.runs.rundir import RunDir

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe, write_section

TITLE = "The emotion recipes on the real FER2013"


def training_precision(log: Path) -> str:
    """bf16 or float32: what the run's training step computed in (its train.log's first line)."""
    with open(log, encoding="utf-8", errors="replace") as f:
        return "bf16" if "amp bfloat16" in f.readline() else "float32"


def score(run: Path, work: Path) -> dict:
    """Final-model rank-1 on val and test (plain and with the mirror), epochs, minutes, the recipe (its
    description: the run's name replaces the recipe's when `--name` is given)."""
    rd = RunDir.open(run)
    cfg = rd.read_config()
    history = rd.read_history()
    out = {"recipe": cfg.description or cfg.name, "model": cfg.model.name, "classes": cfg.model.num_classes or "-",
           "epochs": len(history), "precision": training_precision(rd.log_path),
           "minutes": sum(float(r["seconds"]) for r in history) / 60,
           "reference_val": cfg.reference.get("val_rank1"), "reference_test": cfg.reference.get("test_rank1")}
    best = max(history, key=lambda r: float(r["val_acc"]))
    out.update(best_epoch=int(best["epoch"]), best_val=float(best["val_acc"]))
    for split in ("val", "test"):
        for crops in (1, 2):
            m = evaluate_run(run, data=split, which="last", crops=crops, quiet=True,
                             out=work / f"{rd.path.name}-{split}-{crops}")
            out[f"{split}{'_flip' if crops == 2 else ''}"] = m["rank1"]
    return out


def section(results: dict[str, dict], machine: str) -> str:
    """The BENCHMARKS.md section: one row per run."""
    def ref(value: float | None) -> str:
        return f"{value:.2f}%" if value is not None else "-"

    lines = [f"Machine: {machine}. 7 classes as released, or 6 with disgust merged into angry (the recipe says "
             "which); val = PrivateTest, test = PublicTest "
             "(3,589 faces each), train 28,709. Accuracies of the final model (last.pt); \"+ mirror\" averages "
             "each face's probabilities with its mirror's (`deepvision evaluate --crops 2`). Training time: the "
             "sum of the epochs' wall seconds in history.csv (validation included). Training step: bf16 autocast "
             "(`train.amp: auto` on this CPU) or float32 (`--set train.amp=off`); scoring is float32.", "",
             "| run | recipe | classes | training step | epochs | training time | val rank-1 | test rank-1 "
             "| test + mirror | best val (epoch) | reference val / test |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['recipe']} (`{r['model']}`) | {r['classes']} | {r['precision']} | "
                     f"{r['epochs']} | "
                     f"{r['minutes']:.1f} min | "
                     f"{r['val']:.2%} | **{r['test']:.2%}** | {r['test_flip']:.2%} | "
                     f"{r['best_val']:.2%} ({r['best_epoch']}) | {ref(r['reference_val'])} / "
                     f"{ref(r['reference_test'])} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="finished run directories")
    ap.add_argument("--plots", type=Path, help="copy each run's accuracy/loss curves into this folder")
    ap.add_argument("--no-append", action="store_true", help="only print the table")
    ap.add_argument("--title", default=TITLE, help=f"the BENCHMARKS.md section to replace (default: {TITLE!r})")
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run in args.runs:
            results[run.name] = score(run, Path(tmp))
            if args.plots:
                args.plots.mkdir(parents=True, exist_ok=True)
                for kind in ("accuracy", "loss"):
                    shutil.copyfile(run / "plots" / f"{kind}.png", args.plots / f"fer2013-{run.name}-{kind}.png")
    body = section(results, describe())
    print(body)
    if not args.no_append:
        print(f"written to {write_section(args.title, body)}")


if __name__ == "__main__":
    main()
