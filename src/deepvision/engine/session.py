"""Training sessions: `train` makes a new run directory, `resume` continues one, each holding the
run's lock and recording in run.json how the segment ended (the Python API and CLI call these).

Why one module of ~420 lines: a resume refuses what its checkpoints depend on (settings, classes,
preprocessing, the data's splits) with the same helpers a new run's set-up uses, and both end a segment
the same way; split, the two would each need the other's private steps."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deepvision.config.io import (
    SPLIT_SETTINGS,
    apply_overrides,
    build_config,
    flat_settings,
    model_change,
    override_keys,
    refuse_flag_with_override,
    split_change,
)
from deepvision.config.names import check_source_options
from deepvision.config.profile import reset_optimizer_on_resume
from deepvision.config.schema import Config
from deepvision.engine.distributed import DistInfo, init_distributed, on_main, shutdown_distributed
from deepvision.engine.resolve import refuse_named_test_with_fraction, refuse_output_in_data, resolve_run
from deepvision.engine.signals import StopRequested
from deepvision.engine.trainer import FitResult, Trainer
from deepvision.errors import Terminated, UserError, chained_stop
from deepvision.fileio import missing_folders, remove_made
from deepvision.runs.checkpoint import load_checkpoint
from deepvision.runs.loading import check_identity
from deepvision.runs.lock import RunLock, elastic_attempt
from deepvision.runs.rundir import RunDir
from deepvision.runs.split_members import change_message, data_name, is_members_record, members_change
from deepvision.safeload import printable, shell_word


def default_name(cfg: Config) -> str:
    return cfg.name or f"{cfg.model.name.replace(':', '_')}-{cfg.data.source}"


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")




def train_run(cfg: Config, overrides: list[str] | None, out: str | Path) -> FitResult:
    """Train `cfg` into a new run directory under `out`. In workers that torchrun restarted
    (`--max-restarts`), continue the run the job's first attempt created instead."""
    refuse_output_in_data(cfg, out)  # the new run would be listed as data (a class, its plots as images)
    check_source_options(cfg.data)  # a misspelt data option; earlier runs' stored configs are not held to it
    refuse_named_test_with_fraction(cfg)
    dist, device = init_distributed(cfg.train.device)
    lock: list[RunLock] = []
    made: list[Path] = []  # the run directory this call created, removed again when it is stopped before training
    new_out = missing_folders(Path(out))  # and --out with the folders above it that it made, left empty then
    try:
        def create() -> tuple[str, bool]:
            earlier = _earlier_attempt_run(out, default_name(cfg))
            if earlier is not None:
                return str(earlier), True
            run = RunDir.create(out, default_name(cfg), made=made)
            lock.append(RunLock(run.path).acquire())
            state = {"status": "starting", "run_id": uuid.uuid4().hex, "created": _now()}
            elastic = elastic_attempt()
            if elastic is not None:
                state["torchrun_job"] = elastic[0]
            run.write_state(state)
            return str(run.path), False

        try:
            path, restarted = on_main(dist, create)
            if not restarted:
                run = RunDir(path)
                trainer = Trainer(resolve_run(cfg, world=dist.world), run, dist=dist, device=device)

                def start() -> None:
                    _write_run_files(run, trainer)
                    run.update_state(status="running", epochs_done=0, segments=[
                        {"start_epoch": 0, "overrides": list(overrides or []), "time": _now()}])

                on_main(dist, start)
        except BaseException as exc:
            if dist.is_main and made:  # nothing was trained: do not leave an empty run behind under this name
                for held in lock:
                    held.release()
                shutil.rmtree(made[0], ignore_errors=True)
                remove_made(new_out)
                if isinstance(chained_stop(exc), Terminated):  # also when an extension's import turned it into an error
                    raise Terminated(f"nothing was trained; the new run folder {made[0]} was removed") from None
            raise
        if restarted:  # torchrun restarted the workers: continue what its first attempt trained
            return resume_run(path)
        return _fit(trainer, run, dist)
    finally:
        for held in lock:
            held.release()
        shutdown_distributed()


def _earlier_attempt_run(out: str | Path, name: str) -> Path | None:
    """In a worker that torchrun restarted (`--max-restarts`), the run directory an earlier attempt
    of the same torchrun job (`--rdzv-id`) created under `out` (`name` or `name-K`, the newest), if
    any. A run that finished or was stopped by a signal is never continued this way."""
    elastic = elastic_attempt()
    if elastic is None or elastic[1] == 0:
        return None
    found = []
    for path in Path(out).glob(f"{glob.escape(name)}*"):
        suffix = path.name[len(name):]
        if suffix and not re.fullmatch(r"-\d+", suffix) or not (path / "config.yaml").is_file():
            continue
        try:
            state = RunDir(path).read_state()
        except UserError:
            continue
        if state.get("torchrun_job") == elastic[0] and state.get("status") not in ("finished", "interrupted"):
            found.append((str(state.get("created", "")), int(suffix[1:] or 1), path))
    return max(found)[2] if found else None


def resume_run(run_dir: str | Path, *, epoch: int | None = None, overrides: list[str] | None = None,
               reset_optimizer: bool = False) -> FitResult:
    """Continue a run from the checkpoint of `epoch` (default: the latest); see `deepvision.api.resume`.
    A run interrupted before its first checkpoint starts again from epoch 0 with its config.yaml."""
    if reset_optimizer:
        refuse_flag_with_override("--reset-optimizer", "train.reset_optimizer_on_resume", "true", overrides)
    _restore_config(RunDir(run_dir))
    run = RunDir.open(run_dir)
    lock = RunLock(run.path)
    try:
        if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 holds the lock for the segment
            lock.acquire()
        return _resume_locked(run, epoch, overrides, reset_optimizer)
    finally:
        lock.release()


# what a resume refuses to change besides the model, named when config.yaml holds an edit of it (data.val and
# data.test may move with the data: their edit is advised to --set, which checks them)
FIXED_ON_RESUME = ("task", "checkpoint.prefix", "checkpoint.monitor", "train.topk",
                   *(f"data.{key}" for key in SPLIT_SETTINGS if key not in ("val", "test")))


def _check_fixed_settings(before: Config, cfg: Config, task: Any = None) -> None:
    """Refuse a resume that changes the checkpoint prefix (earlier epochs would not be found), the model
    section (every earlier checkpoint would be rebuilt as another network), the measures best.pt was chosen
    by and history.csv holds, the held-out splits, or the task (whose model the checkpoints hold). `task`: the
    task as given, before a detector's task is inferred (which would hide a change)."""
    task = cfg.task if task is None else task
    if task != before.task:
        raise UserError(f"task cannot change on resume ({before.task} -> {printable(str(task))[:40]}): the run's "
                        f"checkpoints hold a {before.task} model; leave --set task out, or start a new run for "
                        f"another task")
    prefix = before.checkpoint.prefix
    if cfg.checkpoint.prefix != prefix:
        raise UserError(f"checkpoint.prefix cannot change on resume: the run's checkpoints are {prefix}-NNNN.pt, and "
                        f"epochs saved under another prefix would not be found; start a new run from its weights "
                        f"(model.pretrained) for a new prefix")
    change = model_change(before, cfg)
    if change is not None:
        key, old, new = change
        raise UserError(f"{key} cannot change on resume ({old} -> {new}): the run's checkpoints were trained with "
                        f"the model it names; start a new run from this run's weights (--set "
                        f"model.pretrained=CHECKPOINT) for another model")
    monitor, asked = before.checkpoint.monitor, cfg.checkpoint.monitor  # a trained run's config names its own
    if monitor is not None and asked != monitor:
        raise UserError(f"checkpoint.monitor cannot change on resume ({monitor} -> "
                        f"{printable(str(asked or 'unset'))[:40]}): best.pt holds the best epoch by {monitor}, and "
                        f"later epochs would be compared with it by another measure; score another epoch with "
                        f"--epoch N, or start a new run from this run's weights (--set model.pretrained=CHECKPOINT)")
    if cfg.train.topk != before.train.topk:
        raise UserError(f"train.topk cannot change on resume ({before.train.topk} -> {cfg.train.topk}): history.csv's "
                        f"top-k columns hold top-{before.train.topk} accuracy for the earlier epochs; start a new run "
                        f"from this run's weights (--set model.pretrained=CHECKPOINT) for another k")
    split = split_change(before, cfg)
    if split is not None:
        key, old, new = split
        why = ("the earlier epochs were trained and validated on other samples" if key == "data.max_samples" else
               "the splits would be drawn again and images trained on would be validated or tested")
        raise UserError(f"{key} cannot change on resume ({old} -> {new}): {why}; start a new run from this run's "
                        f"weights (--set model.pretrained=CHECKPOINT) for other splits")


def _check_split_files(cfg: Config, recorded: Any, checkpoint: Path) -> None:
    """Refuse resuming on split files other than the ones `checkpoint` recorded (a detection dataset rebuilt
    since): the earlier epochs were trained on the recorded ones. A checkpoint without the record passes, and
    a classification run's record is compared once its data is read (`_check_same_members`)."""
    if not isinstance(recorded, dict) or is_members_record(recorded):
        return
    from deepvision.datasets.detection.record import refuse_rebuilt

    refuse_rebuilt(recorded, cfg.data, checkpoint.name, "the earlier epochs were trained and validated on the other "
                   "splits", "start a new run from this run's weights (--set model.pretrained=CHECKPOINT) for the "
                   "new splits")


def _check_same_members(cfg: Config, recorded: Any, now: Any, checkpoint: Path) -> None:
    """Refuse resuming a classification run on splits with other members than `checkpoint` recorded (images
    added, moved or replaced since: the splits are carved again): the earlier epochs were trained and validated
    on the recorded ones. `now`: the record of the splits just read. A checkpoint without the record passes."""
    if not is_members_record(recorded) or not is_members_record(now):
        return
    roles = tuple(r for r in ("train", "val", "test") if r in ("train", "val") or r in now["splits"])
    change = members_change(recorded, now, roles)
    if change is not None:
        raise UserError(change_message(change, data_name(cfg.data), checkpoint.name, "the earlier epochs were "
                                       "trained and validated on the recorded splits", "restore the data as it "
                                       "was, or start a new run from this run's weights (--set "
                                       "model.pretrained=CHECKPOINT) for the new splits"))


def _restore_config(run: RunDir) -> None:
    """Rewrite a run's removed config.yaml from its last checkpoint, which holds the settings a resume takes
    anyway (what the commands advise when something other than a file stands in config.yaml's place)."""
    last = run.checkpoints / "last.pt"
    if run.path.is_dir() and not os.path.lexists(run.config_path) and os.path.lexists(run.path / "run.json") \
            and last.is_file():
        saved = load_checkpoint(last).get("config")
        if isinstance(saved, dict):
            run.write_config(build_config(saved))


def _resume_locked(run: RunDir, epoch: int | None, overrides: list[str] | None, reset_optimizer: bool
                   ) -> FitResult:
    run.read_state()  # a damaged run.json is a one-line error before anything changes
    run.check_folders()  # so is a link planted at a sub-folder the new segment writes into
    if epoch is None and not run.has_checkpoints():
        return _restart(run, overrides)
    path = run.resolve_checkpoint(epoch, "last")
    ckpt = load_checkpoint(path)
    _check_identity(run, ckpt, path)
    if epoch is None:  # "the latest": a last.pt older than a saved epoch is named, never rewound to
        run.check_alias(path, int(ckpt["epoch"]))
    saved = ckpt.get("config")
    cfg = build_config(saved, overrides) if isinstance(saved, dict) else run.read_config(overrides)
    keys = override_keys(overrides)
    _check_hand_edits(run, saved, keys)
    if isinstance(saved, dict):  # the settings earlier checkpoints depend on stay as they were
        _check_fixed_settings(build_config(saved), cfg, apply_overrides(saved, overrides).get("task"))
    _check_split_files(cfg, ckpt.get("data_splits"), path)
    manual_lr = ckpt.get("scheduler_state", {}).get("manual_lr")
    if any(k.startswith("schedule.") for k in keys):
        manual_lr = None
    elif "optim.lr" in keys:
        manual_lr = cfg.optim.lr
    reset = reset_optimizer or reset_optimizer_on_resume(cfg)
    start = int(ckpt["epoch"])

    def make(dist: DistInfo, device: Any) -> Trainer:
        resolved = resolve_run(cfg, world=dist.world)
        _check_same_classes(run, resolved.data.classes)  # the more telling refusal where the classes changed
        _check_same_members(cfg, ckpt.get("data_splits"), resolved.task.data_record(), path)
        _check_same_preprocessing(ckpt.get("preprocess"), resolved.pre.to_dict())
        return Trainer(resolved, run, dist=dist, device=device, resume=ckpt, manual_lr=manual_lr,
                       reset_optimizer=reset)

    def begin(trainer: Trainer) -> None:
        run.rewind(start, path, trainer.best_epoch)
        note = f", learning rate fixed at {manual_lr:g}" if manual_lr is not None else ""
        _begin_segment(run, trainer, {"start_epoch": start, "overrides": list(overrides or []),
                                      "checkpoint": str(path), "manual_lr": manual_lr, "reset_optimizer": reset},
                       f"resuming {run.path} from epoch {start} ({path.name}){note}"
                       + (", optimizer state reset" if reset else ""))

    return _run_segment(cfg, make, begin, run)


def _restart(run: RunDir, overrides: list[str] | None) -> FitResult:
    """No epoch was ever completed: train again from epoch 0 in the same directory."""
    cfg = run.read_config(overrides)

    def make(dist: DistInfo, device: Any) -> Trainer:
        return Trainer(resolve_run(cfg, world=dist.world), run, dist=dist, device=device)

    def begin(trainer: Trainer) -> None:
        _begin_segment(run, trainer, {"start_epoch": 0, "overrides": list(overrides or []), "restart": True},
                       f"restarting {run.path} from epoch 0 (no epoch was completed before)")

    return _run_segment(cfg, make, begin, run)


def _run_segment(cfg: Config, make: Callable[[DistInfo, Any], Trainer], begin: Callable[[Trainer], None],
                 run: RunDir) -> FitResult:
    dist, device = init_distributed(cfg.train.device)
    try:
        trainer = make(dist, device)
        on_main(dist, lambda: begin(trainer))
        return _fit(trainer, run, dist)
    finally:
        shutdown_distributed()


def _begin_segment(run: RunDir, trainer: Trainer, segment: dict[str, Any], message: str) -> None:
    run.write_history(trainer.history, trainer.task.history_fields())
    _write_run_files(run, trainer)
    state = run.read_state()
    if run.run_id and not state.get("run_id"):  # run.json was lost: config.yaml kept the id
        state["run_id"] = run.run_id
    state.setdefault("segments", []).append({**segment, "time": _now()})
    state.update(status="running", epochs_done=trainer.start_epoch, best_epoch=trainer.best_epoch)
    state.pop("error", None)
    run.write_state(state)
    trainer.reporter.line(message)


def _check_same_classes(run: RunDir, classes: list[str]) -> None:
    """Refuse resuming on data whose classes are not the run's (labels.txt): the checkpoints so far would
    answer with the new names, and the record of what they were trained on would be rewritten."""
    if not run.has_labels():
        return
    own = run.read_labels()
    if own != classes:
        shown = ", ".join(classes[:4]) + (", ..." if len(classes) > 4 else "")
        mine = ", ".join(own[:4]) + (", ..." if len(own) > 4 else "")
        raise UserError(f"the data's classes ({shown}) are not the run's ({mine}, in labels.txt); resume on the "
                        f"data the run trained on (data naming no classes: --set data.options.labels=RUN/labels.txt), "
                        f"or start a new run from its weights (model.pretrained)")


def _check_hand_edits(run: RunDir, saved: Any, keys: list[str]) -> None:
    """A resume takes the run's settings from its checkpoint and rewrites config.yaml: refuse when the file
    was edited by hand, rather than replace the edit unused. Keys the resume sets with --set are left out."""
    edited = run.config_edited() if isinstance(saved, dict) else None
    if edited is None:
        return
    ours, theirs = flat_settings(saved), flat_settings(edited if isinstance(edited, dict) else {})
    changed = [k for k in sorted(set(ours) | set(theirs))
               if ours.get(k) != theirs.get(k) and not any(k == s or k.startswith(s + ".") for s in keys)]
    if changed:
        k = changed[0]
        more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
        what = "the model" if k.startswith("model.") else k if k in FIXED_ON_RESUME else None
        fix = f"{what} cannot change on resume, so undo the edit" if what else (
            f"a resume takes the settings from the checkpoint, so give changes with --set (--set "
            f"{shell_word(f'{k}=' + (_yaml(theirs, k, None) if k in theirs else 'null'))}) or undo the edit")
        raise UserError(f"config.yaml was edited by hand ({k}: {_yaml(ours, k)} -> {_yaml(theirs, k)}{more}); {fix}")


def _yaml(flat: dict[str, Any], key: str, limit: int | None = 60) -> str:
    """A setting as a --set value is written (relu, 4, null, [1, 2]), cut to `limit` characters (None: whole,
    for a command to paste); "unset" where the key is absent."""
    if key not in flat:
        return "unset"
    value = flat[key]
    return printable(value if isinstance(value, str) else json.dumps(value))[:limit]


def _check_same_preprocessing(trained: Any, new: dict[str, Any]) -> None:
    """Refuse resuming with other preprocessing (scale, mean/std, size, ...) than the checkpoint was trained
    with: preprocess.json would be rewritten, and every earlier checkpoint then read its images another way."""
    if not isinstance(trained, dict):
        return
    changed = [k for k in new if k in trained and _plain(trained[k]) != _plain(new[k])]
    if changed:
        shown = ", ".join(f"{k} {trained[k]} -> {new[k]}" for k in changed[:3])
        raise UserError(f"the preprocessing would change ({shown}); the run's checkpoints were trained with "
                        f"its own, so resume with the run's data settings, or start a new run from its weights "
                        f"(model.pretrained)")


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def _check_identity(run: RunDir, ckpt: dict[str, Any], path: Path) -> None:
    try:
        expected = run.read_config().model.name
    except UserError:  # no readable config.yaml: the run id still decides
        expected = ckpt.get("model", {}).get("name")
    check_identity(run, ckpt, path, expected)


def _fit(trainer: Trainer, run: RunDir, dist: DistInfo) -> FitResult:
    """Run training; record in run.json how it ended."""
    try:
        result = trainer.fit()
    except StopRequested as stop:
        if stop.complete and dist.is_main:  # the stop came as the run ended: nothing of it was cut short
            run.update_state(status="finished")
        raise  # else the trainer marked the run interrupted
    except BaseException as exc:
        stop = chained_stop(exc)
        done = max(trainer.start_epoch, trainer.history[-1].get("epoch", 0) if trainer.history else 0)
        if isinstance(stop, Terminated) or (isinstance(stop, KeyboardInterrupt) and not trainer.stop.requested):
            # before fit() installed its graceful stop (also as an ImportError, from an extension imported as it
            # landed): the same stop as one in the epoch it started from (a second Ctrl+C is the one below)
            if dist.is_main:
                run.update_state(status="interrupted", epochs_done=done)
            raise StopRequested(signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT, done,
                                str(run.path)) from None
        if dist.is_main:
            with contextlib.suppress(Exception):
                if isinstance(stop, KeyboardInterrupt):  # a second Ctrl+C stops at once: a stop too
                    run.update_state(status="interrupted", epochs_done=done)
                else:
                    run.update_state(status="failed", error=f"{type(exc).__name__}: {exc}"[:500])
        raise
    if dist.is_main:
        run.update_state(status="finished")
    return result


def _write_run_files(run: RunDir, trainer: Trainer) -> None:
    run.write_config(trainer.cfg)
    run.write_preprocess(trainer.pre)
    run.write_labels(trainer.data.classes)
