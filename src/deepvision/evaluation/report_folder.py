"""Where `deepvision evaluate` writes a report by default: RUN/eval/<data>-<checkpoint>, never over a
report of other data (or, for detection, of another split)."""

from __future__ import annotations

import os
from pathlib import Path

from deepvision.errors import UserError
from deepvision.fileio import same_file
from deepvision.runs.rundir import RunDir
from deepvision.safeload import read_json

ROLES = ("train", "val", "test")


def report_folder(run: RunDir, name: str, data: str, split: str | None = None) -> Path:
    """RUN/eval/NAME, or NAME-2, NAME-3, ... when NAME holds the report of other data (two data folders
    with one name, `A/g10` and `B/g10`) or other files: a report only ever replaces one of the same data.
    With `split` (a detection dataset has several) it also replaces only a report of that split.
    An earlier report without a `data` field is taken as of its `split` (the run's own)."""
    for k in range(1, 1000):
        folder = run.folder("eval", name if k == 1 else f"{name}-{k}", create=False)
        try:
            stored = read_json(folder / "metrics.json", "an earlier report's metrics.json")
        except FileNotFoundError:  # new or empty: this report's; holding other files: not a report's folder
            if not folder.is_dir() or not any(folder.iterdir()):
                return folder
            continue
        except UserError:  # damaged: not replaced either
            continue
        if not isinstance(stored, dict) or (split is not None and stored.get("split") != split):
            continue
        earlier = stored.get("data", stored.get("split"))
        if isinstance(earlier, str) and (earlier == data or (data not in ROLES and earlier not in ROLES
                                                             and Path(earlier).resolve() == Path(data).resolve())):
            return folder
    other = "other data or splits" if split is not None else "other data"
    raise UserError(f"{run.path / 'eval'} holds {name} to {name}-999, reports of {other}; give --out")


def refuse_other_runs_folder(out: str | Path, run: RunDir, option: str = "--out") -> None:
    """Refuse, before any work, an --out inside another run's folder or holding a report another run wrote
    (`RunDir.wrote`): it would replace that run's report, and `deepvision runs` would read it as that run's."""
    out = Path(out)
    for folder in (out.absolute(), *out.absolute().parents):  # the innermost run folder holding --out
        if (folder / "run.json").is_file() and (folder / "config.yaml").is_file():
            if not same_file(folder, run.path):
                shown = folder if out.is_absolute() else os.path.relpath(folder)
                raise UserError(f"{option} {out} is inside the run {shown}, not {run.path}; a report there "
                                f"would be taken for that run's: choose a folder outside it (or in {run.path})")
            break
    report = RunDir.read_report(out / "metrics.json") if (out / "metrics.json").is_file() else None
    if report is not None and not run.wrote(report):
        theirs = report.get("run") or str(report.get("run_id", ""))[:8]
        raise UserError(f"{option} {out} holds the report of another run ({theirs}); it would be replaced: choose "
                        f"another folder")


def slug(text: str) -> str:
    """A folder-name part for data given as a split name or a path (its last part)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(text).name) or "data"
