"""Runs made from weights trained elsewhere (MXNet, Keras): one writer for every importer.

The run is built in a temporary folder beside its destination, loaded there as every loader will
load it, and only then renamed into place, so a failed or refused import leaves nothing behind. It
holds what a trained run holds for prediction, evaluation, export and fine-tuning: config.yaml,
preprocess.json, labels.txt, a checkpoint (also as best.pt and last.pt) carrying the run's id, and
run.json with status "imported" and where the weights came from.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import torch

from deepvision.config.coerce import to_dict
from deepvision.config.schema import Config, check_file_name
from deepvision.data.preprocess import Preprocess, normalize_batch
from deepvision.errors import UserError
from deepvision.fileio import move, output_folder, public_names
from deepvision.runs.checkpoint import FORMAT, VERSION, atomic_save
from deepvision.runs.rundir import RunDir, link_or_copy


def check_run_folder_name(run_dir: str | Path, what: str = "--out (the run folder's name)") -> Path:
    """`run_dir` made absolute, refusing a folder name `train --name` would refuse (surrounding spaces, a tab,
    a leading '.'): `deepvision runs` would list 'x ' beside 'x' as two identical rows."""
    path = Path(run_dir).resolve()
    check_file_name(path.name, what, "folder")
    return path


def check_finite_prediction(model: torch.nn.Module, pre: Preprocess, source: str) -> None:
    """Run `model` on one mid-gray image prepared as `pre` prepares every input and refuse, naming
    `source`, when any output is NaN or infinite: finite weights can still overflow (a scale of 1e308,
    a variance below zero), and such a model would answer "nan%" for every image."""
    x = torch.full((1, pre.channels, *pre.size), 128, dtype=torch.uint8)
    a, b = pre.affine()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(normalize_batch(x, a, b))
    finally:
        model.train(was_training)
    if isinstance(out, torch.Tensor) and not bool(torch.isfinite(out).all()):
        raise UserError(f"{source}: the imported network answers NaN or infinity for a plain gray image (a value "
                        f"in the file overflows float32); the file is damaged or crafted")


def write_imported_run(run_dir: str | Path, cfg: Config, pre: Preprocess, classes: list[str],
                       state: dict[str, torch.Tensor], *, epoch: int, source: dict[str, Any],
                       files: dict[str, Path | bytes] | None = None) -> RunDir:
    """Write the run at `run_dir` (which must not exist, or be an empty folder). `files` are copied in
    under their given names (e.g. the MXNet symbol the model is rebuilt from), or written when given as bytes."""
    check_run_folder_name(run_dir)
    run_dir = Path(run_dir)
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise UserError(f"{run_dir} already exists and is not empty; choose a new --out folder")
    with output_folder(run_dir.parent):  # a failed or stopped import leaves no empty parent folder it made
        try:
            tmp = Path(tempfile.mkdtemp(dir=run_dir.parent, prefix=f".{run_dir.name}.import-"))
        except OSError as exc:
            raise UserError(f"cannot create {run_dir}: {exc.strerror or exc}") from None
        try:
            run = RunDir(tmp)
            run.checkpoints.mkdir()
            run_id = uuid.uuid4().hex
            run.write_config(cfg, run_id)
            run.write_preprocess(pre)
            run.write_labels(classes)
            for name, src in (files or {}).items():
                if isinstance(src, bytes):
                    (tmp / name).write_bytes(src)
                else:
                    shutil.copyfile(src, tmp / name)
            payload = {"format": FORMAT, "version": VERSION, "epoch": epoch, "run_id": run_id,
                       "model": {"name": cfg.model.name, "num_classes": cfg.model.num_classes,
                                 "in_channels": cfg.model.in_channels},
                       "model_state": state, "config": to_dict(cfg), "preprocess": pre.to_dict(),
                       "classes": list(classes), "history": [], "imported_from": source}
            ckpt = run.checkpoint_path(cfg.checkpoint_prefix(), epoch)
            atomic_save(payload, ckpt)
            for alias in ("best.pt", "last.pt"):
                link_or_copy(ckpt, run.checkpoints / alias)
            now = time.strftime("%Y-%m-%d %H:%M:%S")
            run.write_state({"status": "imported", "run_id": run_id, "created": now, "epochs_done": epoch,
                             "best_epoch": epoch, "segments": [{"start_epoch": epoch, "imported_from": source,
                                                                "time": now}]})
            _check_loads(tmp, run_dir)
            if run_dir.exists():
                run_dir.rmdir()  # the empty folder named by --out
            move(tmp, run_dir)
        except OSError as exc:  # a full disk, a file size limit: named where the file would have landed
            shutil.rmtree(tmp, ignore_errors=True)
            name = Path(exc.filename).relative_to(tmp) if exc.filename and Path(exc.filename).is_relative_to(tmp) \
                else None
            raise UserError(f"could not write {run_dir / name if name else run_dir}: {exc.strerror or exc}; free "
                            f"some space or choose another --out") from None
        except UserError as exc:  # a writer's own line names the hidden folder: name the run folder
            shutil.rmtree(tmp, ignore_errors=True)
            raise UserError(public_names(str(exc))) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return RunDir(run_dir)


def _check_loads(tmp: Path, run_dir: Path) -> None:
    """Check the run written at `tmp` as predict, evaluate and export will load it, so a run that no
    loader takes is refused before it is renamed into place (the message names `run_dir`, not `tmp`).
    The importer built the model already: the check plans it from the written files on the meta device
    and compares the checkpoint's weights with the plan (`check_run_loads`), without a second build."""
    from deepvision.runs.loading import check_run_loads

    try:
        check_run_loads(tmp)
    except UserError as exc:
        raise UserError(str(exc).replace(str(tmp), str(run_dir))) from None
