"""Python API; each function mirrors a CLI command."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from deepvision.config.io import build_config, load_config
from deepvision.config.schema import Config
from deepvision.engine.checkpoint import load_checkpoint
from deepvision.engine.distributed import broadcast_object, init_distributed, shutdown_distributed
from deepvision.engine.trainer import FitResult, Trainer
from deepvision.errors import UserError
from deepvision.evaluation.evaluate import evaluate_run
from deepvision.inference.predict import Prediction, predict_images
from deepvision.models.registry import create_model, list_models
from deepvision.runs.loading import load_run
from deepvision.runs.rundir import RunDir

__all__ = ["create_model", "demo", "evaluate", "list_models", "load_run", "predict", "resume", "train"]


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
    dist, device = init_distributed(cfg.train.device)
    try:
        path = None
        if dist.is_main:
            path = str(RunDir.create(out, default_name(cfg)).path)
        run = RunDir(broadcast_object(path))
        trainer = Trainer(cfg, run, dist=dist, device=device)
        if dist.is_main:
            _write_run_files(run, trainer)
            run.write_state({"status": "running", "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                             "epochs_done": 0, "segments": [{"start_epoch": 0, "overrides": list(overrides or []),
                                                             "time": time.strftime("%Y-%m-%d %H:%M:%S")}]})
        result = trainer.fit()
        if dist.is_main:
            run.update_state(status="finished")
        return result
    finally:
        shutdown_distributed()


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

    `optim.lr=X` among the overrides fixes the rate at X from here on (the reference's manual
    "stop, lower the rate, restart" workflow); overriding any `schedule.*` key installs that
    schedule instead. Resuming from an earlier epoch than the last moves the later checkpoints
    aside into checkpoints/discarded-<time>/.
    """
    run = RunDir.open(run_dir)
    cfg = run.read_config(overrides)
    path = run.resolve_checkpoint(epoch, "last")
    ckpt = load_checkpoint(path)
    keys = [o.partition("=")[0].strip() for o in overrides or []]
    manual_lr = ckpt.get("scheduler_state", {}).get("manual_lr")
    if any(k.startswith("schedule.") for k in keys):
        manual_lr = None
    elif "optim.lr" in keys:
        manual_lr = cfg.optim.lr
    reset = reset_optimizer or (cfg.train.reset_optimizer_on_resume
                                if cfg.train.reset_optimizer_on_resume is not None else cfg.profile == "reference")
    dist, device = init_distributed(cfg.train.device)
    try:
        start = int(ckpt["epoch"])
        if dist.is_main:
            _discard_later(run, start)
        trainer = Trainer(cfg, run, dist=dist, device=device, resume=ckpt, manual_lr=manual_lr,
                          reset_optimizer=reset)
        if dist.is_main:
            _write_run_files(run, trainer)
            state = run.read_state()
            state.setdefault("segments", []).append(
                {"start_epoch": start, "overrides": list(overrides or []), "checkpoint": str(path),
                 "manual_lr": manual_lr, "reset_optimizer": reset, "time": time.strftime("%Y-%m-%d %H:%M:%S")})
            state.update(status="running", epochs_done=start)
            run.write_state(state)
            note = f", learning rate fixed at {manual_lr:g}" if manual_lr is not None else ""
            trainer.reporter.line(f"resuming {run.path} from epoch {start} ({path.name}){note}"
                                  + (", optimizer state reset" if reset else ""))
        result = trainer.fit()
        if dist.is_main:
            run.update_state(status="finished")
        return result
    finally:
        shutdown_distributed()


def _discard_later(run: RunDir, epoch: int) -> None:
    later = {e: p for e, p in run.saved_epochs().items() if e > epoch}
    best = run.checkpoints / "best.pt"
    best_epoch = None
    if best.is_file():
        try:
            best_epoch = int(load_checkpoint(best)["epoch"])
        except UserError:
            best_epoch = None
    if not later and (best_epoch is None or best_epoch <= epoch):
        return
    aside = run.checkpoints / f"discarded-{time.strftime('%Y%m%d-%H%M%S')}"
    aside.mkdir(exist_ok=True)
    for p in later.values():
        p.rename(aside / p.name)
    if best_epoch is not None and best_epoch > epoch:
        best.rename(aside / "best.pt")


def evaluate(run_dir: str | Path | FitResult, **kwargs: Any) -> dict[str, Any]:
    """Evaluate a run; see `deepvision.evaluation.evaluate.evaluate_run` for the options."""
    return evaluate_run(_path(run_dir), **kwargs)


def predict(run_dir: str | Path | FitResult, images: list[str | Path], top: int = 5, **kwargs: Any) -> list[Prediction]:
    """Top-k predictions for image files with the run's preprocessing."""
    return predict_images(_path(run_dir), list(images), top=top, **kwargs)


def demo(out: str | Path = "runs", **kwargs: Any) -> dict[str, Any]:
    from deepvision.apps.demo import run_demo

    return run_demo(out=out, **kwargs)


def _path(run: str | Path | FitResult) -> Path:
    if isinstance(run, FitResult):
        return run.run_dir
    if not isinstance(run, (str, Path)):
        raise UserError(f"expected a run directory, got {type(run).__name__}")
    return Path(run)
