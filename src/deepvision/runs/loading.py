"""Rebuild a trained model from its run directory (config + preprocessing + checkpoint)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepvision.config.io import build_config, flat_settings, model_change, split_change, to_dict
from deepvision.config.schema import Config
from deepvision.data.preprocess import Preprocess
from deepvision.errors import UserError
from deepvision.models.build import build_model, plan_model
from deepvision.models.registry import check_parameter_bytes
from deepvision.models.shapes import check_planned_activations
from deepvision.models.weights import check_weights_finite, check_weights_fit, load_weights
from deepvision.runs.checkpoint import load_checkpoint
from deepvision.runs.rundir import RunDir
from deepvision.safeload import check_class_names, printable, shell_word


@dataclass
class LoadedRun:
    run: RunDir
    cfg: Config
    pre: Preprocess
    classes: list[str]
    model: nn.Module
    checkpoint: Path
    epoch: int
    trained: dict[str, Any] | None = None  # the settings the checkpoint was trained with, as it stores them
    data_splits: dict[str, Any] | None = None  # the split files it was trained on, where its task records them


# settings that tell one run from another when the run's id is lost (run.json gone, config.yaml written before
# it recorded the id): a resume never changes them (the split settings), or they name the run
IDENTITY_SETTINGS = ("name", "task", "data.source", "data.max_samples", "data.val_fraction", "data.test_fraction",
                     "data.split_seed")


def check_identity(run: RunDir, ckpt: dict[str, Any], path: Path, model_name: str) -> None:
    """Refuse a checkpoint that belongs to another run (a copied-in file): another run id or model. A run
    whose id is lost (no run.json, an older config.yaml) compares the settings the checkpoint was trained
    with to config.yaml's (`IDENTITY_SETTINGS`) instead."""
    theirs, ours = ckpt.get("run_id"), run.run_id
    if theirs and ours and theirs != ours:
        raise UserError(f"{path} belongs to another run (run id {theirs[:8]}, this run is {ours[:8]}); "
                        f"copy it into its own run directory or evaluate it there")
    if theirs and not ours:
        _check_same_settings(run, ckpt.get("config"), path)
    found = ckpt.get("model", {}).get("name")
    if found != model_name:
        raise UserError(f"{path} holds model '{found}' but {run.path} trains '{model_name}'; it belongs to "
                        f"another run")


def _check_same_settings(run: RunDir, trained: Any, path: Path) -> None:
    if not isinstance(trained, dict):
        return
    try:
        ours = flat_settings(to_dict(run.read_config()))
    except UserError:
        raise UserError(f"{run.path} has no run.json and config.yaml cannot be read, so {path.name} cannot be told "
                        f"from another run's checkpoint; restore run.json or config.yaml") from None
    theirs = flat_settings(to_dict(build_config(trained)))
    key = next((k for k in IDENTITY_SETTINGS if ours.get(k) != theirs.get(k)), None)
    if key is not None:
        shown = lambda v: "unset" if v is None else printable(str(v))[:40]
        raise UserError(f"{path} belongs to another run: it was trained with {key} {shown(theirs.get(key))} but "
                        f"{run.config_path} gives {shown(ours.get(key))} (run.json, which holds the run id, is "
                        f"gone); copy it into its own run directory or evaluate it there")


def run_classes(run: RunDir, ckpt: dict[str, Any]) -> list[str]:
    """The run's class names: labels.txt, which must name as many classes as the checkpoint was trained
    on (a line lost or added would shift every name after it), else the names the checkpoint holds."""
    stored = ckpt.get("classes")
    stored = list(stored) if isinstance(stored, (list, tuple)) else []
    if not run.has_labels():
        check_class_names(stored, f"the class names in {run.path}'s checkpoint")
        return stored
    names = run.read_labels()
    if stored and len(names) != len(stored):
        raise UserError(f"{run.labels_path} names {len(names)} classes but the checkpoint was trained on "
                        f"{len(stored)}; restore labels.txt (one class name a line)")
    # names given to numbered classes are kept; a number moved to another line is a reorder, as is any
    # change to named classes: every answer would be relabelled
    unnamed = stored == [str(i) for i in range(len(stored))]
    k = next((i for i, (a, b) in enumerate(zip(names, stored)) if a != b and (not unnamed or a in stored)), None)
    if stored and k is not None:
        raise UserError(f"{run.labels_path} line {k + 1} names {printable(names[k])!r} but the checkpoint was "
                        f"trained with {printable(stored[k])!r} there; restore labels.txt (the checkpoint's "
                        f"class names, one a line, in order)")
    return names


def _open_run(run_dir: str | Path, epoch: int | None,
              which: str) -> tuple[RunDir, Path, dict[str, Any], Config, Preprocess]:
    """The run's files as every loader reads them: (run, checkpoint path, checkpoint, config, preprocessing),
    the checkpoint checked to belong to the run and the config's model files found in the run folder."""
    run = RunDir.open(run_dir)
    path = run.resolve_checkpoint(epoch, which)
    ckpt = load_checkpoint(path)
    check_weights_finite(ckpt["model_state"], f"checkpoint {path}",
                         "the run diverged or the file is damaged (an earlier checkpoint: --epoch N)")
    cfg = run.read_config()
    pre = run.read_preprocess()
    check_identity(run, ckpt, path, cfg.model.name)
    if epoch is None:  # last.pt or best.pt taken by name: its epoch must be the one the run's record names
        run.check_alias(path, int(ckpt.get("epoch", 0)))
    trained = ckpt.get("config")
    change = model_change(build_config(trained), cfg) if isinstance(trained, dict) else None
    if change is not None:  # the weights would be run through another network than they were trained in
        key, old, new = change
        raise UserError(f"{run.config_path} names another model than {path.name} was trained with ({key} ({old} "
                        f"-> {new})); undo the edit: a run's model section never changes")
    _check_preprocess(run, pre, ckpt.get("preprocess"), path)
    cfg.model.pretrained = None  # the checkpoint supersedes any initial weights
    _relocate_model_files(cfg, run)
    return run, path, ckpt, cfg, pre


def _check_preprocess(run: RunDir, pre: Preprocess, stored: Any, path: Path) -> None:
    """Refuse a preprocess.json that says otherwise than the checkpoint's own record of the preprocessing
    it was trained with (another scale or interpolation changes every answer without a word). Keys the
    checkpoint does not record (written before they existed) are not compared."""
    if not isinstance(stored, dict):
        return
    now = json.loads(json.dumps(pre.to_dict()))  # tuples and lists alike
    old = json.loads(json.dumps(stored, default=str))
    key = next((k for k in old if k in now and now[k] != old[k]), None)
    if key is not None:
        raise UserError(f"{run.preprocess_path} gives {key} {printable(json.dumps(now[key]))[:60]} but {path.name} "
                        f"was trained with {printable(json.dumps(old[key]))[:60]}; undo the edit: a run's "
                        f"preprocessing never changes")


def _classes(run: RunDir, ckpt: dict[str, Any], cfg: Config) -> list[str]:
    classes = run_classes(run, ckpt)
    outputs = cfg.model.num_classes or len(classes)
    if len(classes) > outputs:
        raise UserError(f"{run.labels_path} names {len(classes)} classes but the model has {outputs} "
                        f"outputs; restore labels.txt (one class name a line)")
    return classes + [str(i) for i in range(len(classes), outputs)]  # a head wider than the data's classes


def check_classifier(cfg: Config, where: str | Path) -> None:
    """Refuse a detection run (or its checkpoint, `where`) where a classifier is needed: its outputs read as
    class scores, or its head's input as image features (tasks built on classification, such as age, pass).
    One line, before the model is built."""
    if cfg.task == "detection":
        run = Path(where).is_dir()
        hint = f"; draw its boxes with `deepvision detect {shell_word(where)} IMAGE...`" if run else ""
        raise UserError(f"{where} {'is' if run else 'holds the model of'} a detection run and a classifier is "
                        f"needed here (a classification run)" + hint)


def load_run(run_dir: str | Path, epoch: int | None = None, which: str = "best",
             device: str | torch.device = "cpu", *, classifier: bool = False) -> LoadedRun:
    """The run's model in eval mode with the weights of `epoch` (or best.pt / last.pt). `classifier`: the
    caller applies it as a classifier; a run of another task is refused (`check_classifier`)."""
    run, path, ckpt, cfg, pre = _open_run(run_dir, epoch, which)
    if classifier:
        check_classifier(cfg, run.path)
    model = build_checked(cfg, pre, ckpt["model_state"], f"{path}", f"{run.preprocess_path}")
    model.to(device).eval()
    classes = _classes(run, ckpt, cfg)
    trained = ckpt.get("config")
    recorded = ckpt.get("data_splits")
    return LoadedRun(run, cfg, pre, classes, model, path, int(ckpt.get("epoch", 0)),
                     trained if isinstance(trained, dict) else None, recorded if isinstance(recorded, dict) else None)


def check_run_loads(run_dir: str | Path) -> bool:
    """Check that `load_run(run_dir)` will succeed, without building the model for real: every file is
    read and checked as `load_run` reads it, the model is planned from the run's config on the meta device
    (nothing allocated) and best.pt's weights must match it name for name and shape for shape, as
    strict loading requires. Used on a run just written from a model in memory (an import), so the
    model is built once. A model that cannot be planned is built and loaded (`load_run`); returns whether
    it was."""
    run, path, ckpt, cfg, pre = _open_run(run_dir, None, "best")
    planned = plan_model(cfg, pre)
    if planned is None:
        load_run(run_dir)
        return True
    check_plan(cfg, pre, ckpt["model_state"], f"{path}", f"{run.preprocess_path}", planned)
    check_weights_fit(planned, ckpt["model_state"], f"weights in {path}")
    _classes(run, ckpt, cfg)
    return False


def first_conv(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The first convolution registered in `model` (its stem, which takes the image), or None."""
    return next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.modules.conv._ConvNd)), None)


def input_channels(model: nn.Module) -> tuple[str, int] | None:
    """(what takes the image, its channels): the model's declared input where it states one (an imported
    Keras graph: `input_channels`, from its input shape; None there means no check), else its first
    convolution; None when neither is known."""
    if hasattr(model, "input_channels"):
        declared = model.input_channels
        return None if declared is None else ("input", int(declared))
    stem = first_conv(model)
    return None if stem is None else (f"first layer {stem[0]}", stem[1].in_channels)


def build_checked(cfg: Config, pre: Preprocess, state: dict[str, Any], weights: str, pre_source: str) -> nn.Module:
    """The model for `pre` with the weights `state` (a checkpoint's, named `weights`), after
    `check_plan`; the model is planned once, here, not again by the registry."""
    check_plan(cfg, pre, state, weights, pre_source)
    model = build_model(cfg, pre, plan=False)
    load_weights(model, state, strict=True, source=f"weights in {weights}")
    return model


def check_plan(cfg: Config, pre: Preprocess, state: dict[str, Any], weights: str, pre_source: str,
               planned: nn.Module | None = None) -> None:
    """Refuse, before any weight is allocated, preprocessing that disagrees with the model it would build:
    the model is planned on the meta device (no memory) for `pre`, then its input (`input_channels`) must
    take `pre.channels` channels, every tensor must have the shape `state` (the checkpoint) holds, and the
    whole model must fit the memory ceiling (an input size that rebuilds a huge linear layer). `planned`:
    the plan already made for `cfg` and `pre`."""
    planned = planned if planned is not None else plan_model(cfg, pre)
    if planned is None:  # not plannable: built as before
        return
    size = "x".join(map(str, pre.size))
    takes = input_channels(planned)
    if takes is not None and takes[1] != pre.channels:
        raise UserError(f"{pre_source} gives {pre.channels} channel(s) but the model's {takes[0]} "
                        f"takes {takes[1]}; the file is damaged or belongs to another run")
    state = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state.items()}
    for key, tensor in planned.state_dict().items():
        held = getattr(state.get(key), "shape", None)
        if held is not None and tuple(held) != tuple(tensor.shape):
            raise UserError(f"{pre_source} (input {size}, {pre.channels} channel(s)) does not fit {weights}: "
                            f"{key} is {tuple(held)} there but the model for that input needs "
                            f"{tuple(tensor.shape)}; the file is damaged or belongs to another run")
    check_parameter_bytes(planned, f"{pre_source}: the model for input {size}")
    check_planned_activations(planned, (pre.channels, *pre.size), pre_source)


def _relocate_model_files(cfg: Config, run: RunDir) -> None:
    """A file named in model.args (an imported MXNet symbol) that is gone from its recorded place but sits in
    the run directory (the run was moved or copied) is read from the run directory."""
    for key, value in cfg.model.args.items():
        if isinstance(value, str) and value.endswith(".json") and not Path(value).is_file():
            moved = run.path / Path(value).name
            if moved.is_file():
                cfg.model.args[key] = str(moved)


def refuse_split_edit(run: RunDir, cfg: Config, checkpoint: Path, trained: Any = None,
                      data_splits: Any = None, bundle: Any = None, roles: tuple[str, ...] = ("test",)) -> Any:
    """Refuse reading the run's own splits from a config (config.yaml edited by hand) that draws them otherwise
    than `checkpoint` was trained with (its stored settings `trained`, read from it when not given), or from
    data whose splits are not the ones it recorded (`data_splits`): a detection dataset rebuilt since, or, with
    `bundle` (the splits as drawn now), a classification split of `roles` with other members. A new test split
    would hold images the run trained on. Returns the record, for `refuse_member_change` once the data is read."""
    if trained is None:  # not loaded yet: another run's checkpoint is named as such, not as an edit
        ckpt = load_checkpoint(checkpoint)
        check_identity(run, ckpt, checkpoint, cfg.model.name)
        trained, data_splits = ckpt.get("config"), ckpt.get("data_splits")
    change = split_change(build_config(trained), cfg) if isinstance(trained, dict) else None
    if change is not None:
        key, old, new = change
        why = ("its test score would be over other samples" if key == "data.max_samples" else
               "so they would hold images it trained on")
        raise UserError(f"{run.config_path} draws the run's splits otherwise than {checkpoint.name} was trained with "
                        f"({key}: {old} -> {new}), {why}; undo the edit: a run's held-out splits never change")
    from deepvision.runs import split_members as members

    if members.is_members_record(data_splits):  # recorded by a classification run: compared with drawn splits
        if bundle is not None:
            refuse_member_change(cfg, data_splits, bundle, roles, checkpoint)
    elif isinstance(data_splits, dict):  # recorded by the task that trained the run (detection); else nothing
        from deepvision.datasets.detection.record import refuse_rebuilt

        refuse_rebuilt(data_splits, cfg.data, checkpoint.name, "the run's held-out splits may hold images it trained "
                       "on", "score other data with --data DIR: a run's held-out splits never change")
    return data_splits


def refuse_member_change(cfg: Config, recorded: Any, bundle: Any, roles: tuple[str, ...], checkpoint: Path) -> None:
    """Refuse scoring a classification split of `roles` in `bundle` (drawn from `cfg.data`) whose members are not
    the ones `checkpoint` recorded (`recorded`, its `data_splits`): images added, moved between class folders
    or replaced since make the fractions carve other images. Nothing recorded: nothing compared."""
    from deepvision.runs import split_members as members

    moved = members.members_change(recorded, members.members_record(bundle, roles), roles)
    if moved is not None:
        raise UserError(members.change_message(
            moved, members.data_name(cfg.data), checkpoint.name, "the run's held-out splits may hold images it "
            "trained on", "score other data with --data PATH: a run's held-out splits never change"))
