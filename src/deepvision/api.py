"""Python API; each function mirrors a CLI command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepvision.config.io import build_config, load_config, override_list, refuse_flag_with_override
from deepvision.config.schema import Config
from deepvision.engine.resolve import resolve_run
from deepvision.engine.session import default_name, resume_run, train_run
from deepvision.engine.trainer import FitResult
from deepvision.errors import UserError
from deepvision.evaluation.evaluate import evaluate_run, refuse_split_name_as_path
from deepvision.inference.predict import Prediction, predict_images
from deepvision.models.registry import create_model, list_models
from deepvision.runs.loading import load_run
from deepvision.safeload import shell_word

__all__ = ["create_model", "default_name", "detect", "detection_build", "detection_fake", "evaluate", "export",
           "import_keras", "import_mxnet", "list_models", "load_run", "predict", "resolve_run", "resume", "train"]


def _as_config(config: str | Path | dict[str, Any] | Config, overrides: list[str] | None) -> Config:
    if isinstance(config, Config):
        from deepvision.config.coerce import to_dict

        return build_config(to_dict(config), overrides)
    if isinstance(config, dict):
        return build_config(config, overrides)
    if isinstance(config, str):  # a YAML path, or a shipped recipe's name (as `deepvision train` takes)
        from deepvision.recipes import resolve_config_arg

        return load_config(resolve_config_arg(config), overrides)
    return load_config(config, overrides)


def train(
    config: str | Path | dict[str, Any] | Config,
    overrides: str | list[str] | None = None,
    *,
    name: str | None = None,
    out: str | Path = "runs",
) -> FitResult:
    """Train from a config (YAML path, recipe name, mapping or Config) into a new run directory under `out`.
    `overrides`: 'key=value' strings as `--set` takes them, one string or a list."""
    overrides = override_list(overrides)
    if name is not None:  # `--name` with `--set name=`: two names for one run
        refuse_flag_with_override(f"--name {shell_word(name)}", "name", str(name), overrides)
    cfg = _as_config(config, overrides)
    if name is not None:
        cfg.name = name
        cfg.validate("")
    return train_run(cfg, overrides, out)


def resume(
    run_dir: str | Path,
    *,
    epoch: int | None = None,
    overrides: str | list[str] | None = None,
    reset_optimizer: bool = False,
) -> FitResult:
    """Continue a run from the checkpoint of `epoch` (default: the latest), with config overrides.

    The config is the one saved in that checkpoint plus `overrides` ('key=value' strings as `--set` takes
    them, one string or a list). `optim.lr=X` among the
    overrides fixes the rate at X from here on (the reference's manual "stop, lower the rate,
    restart" workflow); overriding any `schedule.*` key installs that schedule instead. Resuming from
    an earlier epoch than the last moves the later checkpoints aside into
    checkpoints/discarded-<time>/ and rewinds last.pt, best.pt and history.csv to that epoch.
    A run stopped before its first epoch ended starts again from epoch 0. Nothing in the run
    directory changes when the resume is refused; a run another process trains is refused.
    """
    return resume_run(run_dir, epoch=epoch, overrides=override_list(overrides), reset_optimizer=reset_optimizer)


def evaluate(run_dir: str | Path | FitResult, **kwargs: Any) -> dict[str, Any]:
    """Evaluate a run; see `deepvision.evaluation.evaluate.evaluate_run` for the options. A detection run
    returns its mAP report (voc_map50, voc_map50_11pt, coco, per_class) on `data` (default: test)."""
    refuse_split_name_as_path(kwargs.get("data"))
    return evaluate_run(_path(run_dir), **kwargs)


def predict(run_dir: str | Path | FitResult, images: str | Path | list[str | Path], top: int = 5,
            **kwargs: Any) -> list[Prediction]:
    """Top-k predictions for image files with the run's preprocessing (one path or a list of them)."""
    if isinstance(images, (str, Path)):  # one file, not the characters of its name
        images = [images]
    return predict_images(_path(run_dir), list(images), top=top, **kwargs)


def _path(run: str | Path | FitResult) -> Path:
    if isinstance(run, FitResult):
        return run.run_dir
    if not isinstance(run, (str, Path)):
        raise UserError(f"expected a run directory, got {type(run).__name__}")
    return Path(run)


def export(run_dir: str | Path | FitResult, **kwargs: Any) -> Any:
    """`deepvision export`: see `deepvision.export.export.export_run` for the options (detection runs too);
    returns a `deepvision.export.result.ExportResult`."""
    from deepvision.export.export import export_run

    return export_run(_path(run_dir), **kwargs)


def import_mxnet(prefix: str | Path, epoch: int, **kwargs: Any) -> Any:
    """`deepvision import mxnet`: see `deepvision.interop.mxnet_import.import_mxnet`."""
    from deepvision.interop.mxnet_import import import_mxnet as run_import

    return run_import(prefix, epoch, **kwargs)


def import_keras(h5: str | Path, out: str | Path, model: str | None = None, **kwargs: Any) -> Path:
    """`deepvision import keras`: see `deepvision.interop.keras_import.import_keras`."""
    from deepvision.interop.keras_import import import_keras as run_import

    return run_import(h5, out, model, **kwargs)


def detection_fake(out: str | Path, format: str = "voc", *, images: int = 40, size: int = 128, seed: int = 0,
                   test_fraction: float = 0.25) -> Any:
    """`deepvision detection fake`: synthetic images with known objects in an annotation format (voc, coco,
    lisa, imglab, yolo); returns a `FakeResult` whose `build_args` are the inputs for `detection_build`."""
    from deepvision.datasets.detection.fake import make_fake

    return make_fake(out, format, images=images, size=size, seed=seed, test_fraction=test_fraction)


def detection_build(format: str, inputs: str | Path | list[str | Path], out: str | Path, **kwargs: Any) -> Any:
    """`deepvision detection build`: annotations -> a built dataset (`data.source: detection`, `data.root: out`);
    see `deepvision.datasets.detection.build.build_from_files` for the options. Returns the `BuildReport`
    (per-split counts of images and boxes; `lines()` is what the CLI prints)."""
    from deepvision.datasets.detection.build import build_from_files

    return build_from_files(format, [inputs] if isinstance(inputs, (str, Path)) else list(inputs), out, **kwargs)


def detect(run_dir: str | Path | FitResult, sources: str | Path | list[str | Path], *, min_confidence: float = 0.5,
           out: str | Path | None = None, **kwargs: Any) -> Any:
    """`deepvision detect`: a detection run on image files, folders and videos. Returns (per-image
    `ImageDetections`, per-video `VideoResult`); with `out`, annotated images/videos and detections.json
    are written there. See `deepvision.inference.detect.run_detect` for the options."""
    from deepvision.inference.detect import run_detect

    listed = [sources] if isinstance(sources, (str, Path)) else list(sources)
    return run_detect(_path(run_dir), listed, min_confidence=min_confidence, out=out, **kwargs)
