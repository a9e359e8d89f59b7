"""Python API; each function mirrors a CLI command."""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path
from typing import Any

from deepvision.config.io import build_config, load_config
from deepvision.config.profile import reset_optimizer_on_resume
from deepvision.config.schema import Config
from deepvision.engine.distributed import DistInfo, init_distributed, on_main, shutdown_distributed
from deepvision.engine.resolve import resolve_run
from deepvision.engine.signals import StopRequested
from deepvision.engine.trainer import FitResult, Trainer
from deepvision.errors import UserError
from deepvision.evaluation.evaluate import evaluate_run
from deepvision.inference.predict import Prediction, predict_images
from deepvision.models.registry import create_model, list_models
from deepvision.runs.checkpoint import load_checkpoint
from deepvision.runs.loading import load_run
from deepvision.runs.rundir import RunDir

__all__ = ["create_model", "evaluate", "list_models", "load_run", "predict", "resolve_run", "resume", "train"]


def _as_config(config: str | Path | dict[str, Any] | Config, overrides: list[str] | None) -> Config:
    if isinstance(config, Config):
        from deepvision.config.coerce import to_dict

        return build_config(to_dict(config), overrides)
    if isinstance(config, dict):
        return build_config(config, overrides)
    return load_config(config, overrides)


def default_name(cfg: Config) -> str:
    return cfg.name or f"{cfg.model.name.replace(':', '_')}-{cfg.data.source}"


def train(
    config: str | Path | dict[str, Any] | Config,
    overrides: list[str] | None = None,
    *,
    name: str | None = None,
    out: str | Path = "runs",
) -> FitResult:
    """Train from a config (YAML path, mapping or Config) into a new run directory under `out`."""
    cfg = _as_config(config, overrides)
    if name is not None:
        cfg.name = name
        cfg.validate("")
    dist, device = init_distributed(cfg.train.device)
    try:
        run = RunDir(on_main(dist, lambda: str(RunDir.create(out, default_name(cfg)).path)))
        try:
            trainer = Trainer(resolve_run(cfg, world=dist.world), run, dist=dist, device=device)
        except BaseException:
            if dist.is_main:  # nothing was trained: do not leave an empty run behind under this name
                shutil.rmtree(run.path, ignore_errors=True)
            raise

        def start() -> None:
            _write_run_files(run, trainer)
            now = time.strftime("%Y-%m-%d %H:%M:%S")
            run.write_state({"status": "running", "created": now, "epochs_done": 0,
                             "segments": [{"start_epoch": 0, "overrides": list(overrides or []), "time": now}]})

        on_main(dist, start)
        return _fit(trainer, run, dist)
    finally:
        shutdown_distributed()


def _fit(trainer: Trainer, run: RunDir, dist: DistInfo) -> FitResult:
    """Run training; record in run.json how it ended."""
    try:
        result = trainer.fit()
    except StopRequested:
        raise  # the trainer marked the run interrupted
    except BaseException as exc:
        if dist.is_main:
            with contextlib.suppress(Exception):
                run.update_state(status="failed", error=f"{type(exc).__name__}: {exc}"[:500])
        raise
    if dist.is_main:
        run.update_state(status="finished")
    return result


def _write_run_files(run: RunDir, trainer: Trainer) -> None:
    run.write_config(trainer.cfg)
    run.write_preprocess(trainer.pre)
    run.write_labels(trainer.data.classes)


def resume(
    run_dir: str | Path,
    *,
    epoch: int | None = None,
    overrides: list[str] | None = None,
    reset_optimizer: bool = False,
) -> FitResult:
    """Continue a run from the checkpoint of `epoch` (default: the latest), with config overrides.

    The config is the one saved in that checkpoint plus `overrides`. `optim.lr=X` among the
    overrides fixes the rate at X from here on (the reference's manual "stop, lower the rate,
    restart" workflow); overriding any `schedule.*` key installs that schedule instead. Resuming from
    an earlier epoch than the last moves the later checkpoints aside into
    checkpoints/discarded-<time>/ and rewinds last.pt, best.pt and history.csv to that epoch.
    Nothing in the run directory changes when the resume is refused.
    """
    run = RunDir.open(run_dir)
    path = run.resolve_checkpoint(epoch, "last")
    ckpt = load_checkpoint(path)
    saved = ckpt.get("config")
    cfg = build_config(saved, overrides) if isinstance(saved, dict) else run.read_config(overrides)
    keys = [o.partition("=")[0].strip() for o in overrides or []]
    manual_lr = ckpt.get("scheduler_state", {}).get("manual_lr")
    if any(k.startswith("schedule.") for k in keys):
        manual_lr = None
    elif "optim.lr" in keys:
        manual_lr = cfg.optim.lr
    reset = reset_optimizer or reset_optimizer_on_resume(cfg)
    dist, device = init_distributed(cfg.train.device)
    try:
        start = int(ckpt["epoch"])
        trainer = Trainer(resolve_run(cfg, world=dist.world), run, dist=dist, device=device, resume=ckpt,
                          manual_lr=manual_lr, reset_optimizer=reset)

        def begin() -> None:
            run.rewind(start, path, trainer.best_epoch)
            run.write_history(trainer.history, trainer.task.history_fields())
            _write_run_files(run, trainer)
            state = run.read_state()
            state.setdefault("segments", []).append(
                {"start_epoch": start, "overrides": list(overrides or []), "checkpoint": str(path),
                 "manual_lr": manual_lr, "reset_optimizer": reset, "time": time.strftime("%Y-%m-%d %H:%M:%S")})
            state.update(status="running", epochs_done=start, best_epoch=trainer.best_epoch)
            state.pop("error", None)
            run.write_state(state)
            note = f", learning rate fixed at {manual_lr:g}" if manual_lr is not None else ""
            trainer.reporter.line(f"resuming {run.path} from epoch {start} ({path.name}){note}"
                                  + (", optimizer state reset" if reset else ""))

        on_main(dist, begin)
        return _fit(trainer, run, dist)
    finally:
        shutdown_distributed()


def evaluate(run_dir: str | Path | FitResult, **kwargs: Any) -> dict[str, Any]:
    """Evaluate a run; see `deepvision.evaluation.evaluate.evaluate_run` for the options."""
    return evaluate_run(_path(run_dir), **kwargs)


def predict(run_dir: str | Path | FitResult, images: list[str | Path], top: int = 5, **kwargs: Any) -> list[Prediction]:
    """Top-k predictions for image files with the run's preprocessing."""
    return predict_images(_path(run_dir), list(images), top=top, **kwargs)


def _path(run: str | Path | FitResult) -> Path:
    if isinstance(run, FitResult):
        return run.run_dir
    if not isinstance(run, (str, Path)):
        raise UserError(f"expected a run directory, got {type(run).__name__}")
    return Path(run)
