"""Keras `.h5` weights into deepvision models, read with h5py only (no TensorFlow).

Reads whole-model files (`model.save("m.h5")`, Keras 2 and 3) and weights-only files
(`model.save_weights("w.h5")`). The Keras layers that hold weights, in the file's layer order, are
paired one to one with the PyTorch model's weighted modules in declaration order:

- Conv2D kernel (kh, kw, in, out) -> Conv2d weight (out, in, kh, kw).
- Dense kernel (in, out) -> Linear weight (out, in); after a Flatten of a C x H x W map the rows are
  first reordered from Keras' channels-last (h, w, c) order to PyTorch's (c, h, w).
- BatchNormalization gamma, beta, moving mean/variance -> weight, bias, running_mean, running_var;
  the epsilon is kept (the builder's `bn_eps`).
- SeparableConv2D depthwise (kh, kw, in, 1) and pointwise (1, 1, in, out) kernels -> a depthwise
  Conv2d (in, 1, kh, kw) and a 1 x 1 Conv2d (out, in, 1, 1); DepthwiseConv2D likewise.

The first pair whose kinds or shapes differ is reported by name with both shapes. Opening whole files
for the graph route (`.keras` zips, Keras 3 layouts, config-driven reading) is `keras_files`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepvision.data.hdf5 import external_storage, open_object
from deepvision.errors import UserError

KINDS = {"Conv2D": "conv", "Convolution2D": "conv", "Dense": "dense", "BatchNormalization": "bn",
         "SeparableConv2D": "separable", "SeparableConvolution2D": "separable", "DepthwiseConv2D": "depthwise"}
_PASSIVE = (nn.Dropout, nn.Dropout2d, nn.Identity)


@dataclass
class KerasLayer:
    name: str
    class_name: str
    config: dict[str, Any]
    weights: dict[str, np.ndarray]  # short name (kernel, bias, gamma, ...) -> array

    @property
    def kind(self) -> str | None:
        return KINDS.get(self.class_name)

    def describe(self) -> str:
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in self.weights.items())
        return f"Keras layer '{self.name}' ({self.class_name}: {shapes})"


@dataclass
class KerasFile:
    path: Path
    layers: list[KerasLayer]  # every layer of the file, weighted or not, in file order
    keras_version: str = ""
    input_shape: tuple[int, ...] | None = None  # (H, W, C) when the file stores the model config
    config_layers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def weighted(self) -> list[KerasLayer]:
        return [layer for layer in self.layers if layer.weights]

    def activations(self) -> set[str]:
        """Activation names used by the model (Activation/ELU/ReLU layers and layers' `activation`)."""
        found = set()
        for c in self.config_layers:
            cls, cfg = c.get("class_name", ""), c.get("config", {})
            if cls in ("ELU", "ReLU", "LeakyReLU", "PReLU"):
                found.add(cls.lower())
            act = cfg.get("activation")
            if isinstance(act, str) and act not in ("linear", "softmax", "sigmoid"):
                found.add(act)
        return found


def attr_text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _short(weight_name: str) -> str:
    return weight_name.split("/")[-1].split(":")[0]


def _infer_class(weights: dict[str, np.ndarray]) -> str:
    if "depthwise_kernel" in weights:
        return "SeparableConv2D" if "pointwise_kernel" in weights else "DepthwiseConv2D"
    if "moving_mean" in weights:
        return "BatchNormalization"
    if "kernel" in weights:
        return "Conv2D" if weights["kernel"].ndim == 4 else "Dense"
    return "?"


def _config_layers(model_config: Any) -> tuple[list[dict[str, Any]], tuple[int, ...] | None]:
    cfg = json.loads(attr_text(model_config)) if model_config is not None else {}
    inner = cfg.get("config", {}) if isinstance(cfg, dict) else {}
    layers = inner.get("layers", inner) if isinstance(inner, dict) else inner  # Keras 2.0 Sequential: a list
    layers = layers if isinstance(layers, list) else []
    shape = None
    for c in layers:
        c_cfg = c.get("config", {})
        found = c_cfg.get("batch_input_shape") or c_cfg.get("batch_shape")
        if found:
            shape = tuple(int(v) for v in found[1:] if v is not None)
            break
    return layers, shape


def h5py_module() -> Any:
    try:
        import h5py
    except ImportError:
        raise UserError("reading Keras files needs h5py: pip install 'deepvision[faces]'") from None
    return h5py


def open_member(source: Path, group: Any, key: str, what: str) -> Any:
    """Group or dataset `key` of `group`, opened through the HDF5 reader's one link rule (external links,
    looping or dangling soft links and external raw storage refused); UserError naming `what` when absent."""
    obj = open_object(source, group, key, what)
    if obj is None:
        raise UserError(f"{source}: {what} is named in the file but missing from it; the file is damaged")
    return obj


def layer_weights(source: Path, group: Any, name: str) -> list[tuple[str, Any]]:
    """(weight name, dataset) pairs of layer `name` in a legacy Keras .h5 weights group."""
    g = open_member(source, group, name, f"the weight group of layer '{name}'")
    if not isinstance(g, h5py_module().Group):
        raise UserError(f"{source}: the weight group of layer '{name}' is not an HDF5 group; the file is damaged")
    out = []
    for raw in g.attrs.get("weight_names", []):
        w = attr_text(raw)
        out.append((w, open_member(source, g, w, f"weight '{w}' of layer '{name}'")))
    return out


def stored_datasets(group: Any) -> dict[Any, str]:
    """Every dataset stored under a legacy weights `group` (followed by hard links only, each object
    once), by HDF5 object id -> its path in the file."""
    h5py = h5py_module()
    found: dict[Any, str] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            found.setdefault(obj.id, f"{group.name.rstrip('/')}/{name}")

    group.visititems(visit)
    return found


def refuse_unused(source: Path, stored: dict[Any, str], used: set[Any]) -> None:
    """UserError naming every stored weight dataset (`stored_datasets`) that no layer takes: the import would
    drop it silently, so the file is not the model its config describes."""
    unused = [name for key, name in stored.items() if key not in used]
    if unused:
        raise UserError(f"{source}: {len(unused)} weight dataset(s) in the file are used by no layer of the "
                        f"model: {', '.join(unused)}; the file holds weights the import would drop")


def read_weights(source: Path, layer: str, datasets: dict[str, Any]) -> dict[str, np.ndarray]:
    """{name: float32 array} of one layer's weight datasets; a one-line UserError when one is stored in an
    external file or cannot be read (a dangling external link included) or holds NaN/infinite values (they
    would import and then predict "nan%" for every class)."""
    for name, ds in datasets.items():
        external_storage(source, ds, f"weight '{name}' of layer '{layer}'")
    try:
        arrays = {name: np.asarray(ds[()], dtype=np.float32) for name, ds in datasets.items()}
    except (OSError, TypeError, ValueError, KeyError, RuntimeError) as exc:  # KeyError: a dangling external link
        raise UserError(f"{source}: the weights of layer '{layer}' cannot be read as numbers ({exc})") from None
    bad = [name for name, a in arrays.items() if not np.isfinite(a).all()]
    if bad:
        raise UserError(f"{source}: weight '{bad[0]}' of layer '{layer}' holds NaN or infinite values; the file is "
                        f"damaged or was saved from a diverged training")
    return arrays


def read_keras_h5(path: str | Path) -> KerasFile:
    """Every layer of a Keras HDF5 model or weights file, with its config (when stored) and weights."""
    h5py = h5py_module()
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Keras file not found: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise UserError(f"{path} is not an HDF5 file ({exc})") from None
    with f:
        group = f.get("model_weights", f)
        if "layer_names" not in group.attrs:
            hint = " (a Keras 3 .weights.h5 file: save the whole model with model.save('m.h5') instead)" \
                if "layers" in f else ""
            raise UserError(f"{path} is not a Keras HDF5 model or weights file (no layer_names){hint}")
        config_layers, input_shape = _config_layers(f.attrs.get("model_config"))
        by_name = {c.get("config", {}).get("name", c.get("name")): c for c in config_layers}
        layers, used = [], set()
        for raw in group.attrs["layer_names"]:
            name = attr_text(raw)
            pairs = layer_weights(path, group, name)
            by_short = {_short(w): ds for w, ds in pairs}
            used.update(ds.id for ds in by_short.values())
            weights = read_weights(path, name, by_short)
            c = by_name.get(name, {})
            cls = c.get("class_name") or (_infer_class(weights) if weights else "?")
            layers.append(KerasLayer(name, cls, c.get("config", {}), weights))
        refuse_unused(path, stored_datasets(group), used)
        version = attr_text(f.attrs.get("keras_version", group.attrs.get("keras_version", "")))
    return KerasFile(path, layers, version, input_shape, config_layers)


# -- PyTorch side -------------------------------------------------------------------------------------
@dataclass
class TorchUnit:
    name: str
    kind: str  # conv | dense | bn | separable | depthwise
    module: nn.Module
    flatten_from: tuple[int, int, int] | None = None  # (C, H, W) when a Linear follows a Flatten of a map

    def describe(self) -> str:
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in self.module.state_dict().items()
                           if not k.endswith("num_batches_tracked"))
        return f"'{self.name}' ({type(self.module).__name__}: {shapes})"


def _is_separable(m: nn.Module) -> bool:
    return isinstance(getattr(m, "depthwise", None), nn.Conv2d) and isinstance(getattr(m, "pointwise", None), nn.Conv2d)


def torch_units(model: nn.Module, input_shape: tuple[int, int, int]) -> list[TorchUnit]:
    """Weighted modules in declaration order; Linear layers fed by a Flatten learn its input map shape."""
    units: list[TorchUnit] = []
    inside: list[str] = []
    for name, m in model.named_modules():
        if any(name.startswith(p + ".") for p in inside):
            continue
        if _is_separable(m):
            units.append(TorchUnit(name, "separable", m))
            inside.append(name)
        elif isinstance(m, nn.Conv2d):
            depthwise = m.groups > 1 and m.groups == m.in_channels and m.out_channels % m.in_channels == 0
            units.append(TorchUnit(name, "depthwise" if depthwise else "conv", m))
        elif isinstance(m, nn.Linear):
            units.append(TorchUnit(name, "dense", m))
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            units.append(TorchUnit(name, "bn", m))
    _trace_flatten(model, input_shape, {id(u.module): u for u in units if u.kind == "dense"})
    return units


def _trace_flatten(model: nn.Module, input_shape: tuple[int, int, int], dense: dict[int, TorchUnit]) -> None:
    pending: list[tuple[int, int, int] | None] = [None]

    def hook(module: nn.Module, args: tuple, _out: Any) -> None:
        if isinstance(module, nn.Flatten):
            x = args[0]
            pending[0] = tuple(x.shape[1:]) if x.dim() == 4 and x.shape[2] * x.shape[3] > 1 else None
        elif id(module) in dense:
            dense[id(module)].flatten_from = pending[0]
            pending[0] = None
        elif not isinstance(module, _PASSIVE):
            pending[0] = None

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)


# -- conversion ---------------------------------------------------------------------------------------
def _conv(kernel: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))


def _depthwise(kernel: np.ndarray) -> torch.Tensor:
    kh, kw, cin, mult = kernel.shape
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(2, 3, 0, 1).reshape(cin * mult, 1, kh, kw)))


def _dense(kernel: np.ndarray, flatten_from: tuple[int, int, int] | None) -> torch.Tensor:
    if flatten_from is not None:
        c, h, w = flatten_from
        if kernel.shape[0] == c * h * w:
            kernel = kernel.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(c * h * w, -1)
    return torch.from_numpy(np.ascontiguousarray(kernel.T))


def _bias(layer: KerasLayer, size: int) -> torch.Tensor:
    return torch.from_numpy(layer.weights["bias"]) if "bias" in layer.weights else torch.zeros(size)


def convert_layer(layer: KerasLayer, unit: TorchUnit) -> dict[str, torch.Tensor]:
    """The state-dict entries (relative to the unit) holding `layer`'s weights."""
    w, m = layer.weights, unit.module
    if unit.kind == "conv":
        out = {"weight": _conv(w["kernel"])}
        if m.bias is not None:
            out["bias"] = _bias(layer, m.out_channels)
        elif "bias" in w and np.any(w["bias"]):
            raise _mismatch(layer, unit, "the Keras layer has a bias the PyTorch layer lacks")
        return out
    if unit.kind == "depthwise":
        out = {"weight": _depthwise(w["depthwise_kernel"])}
        if m.bias is not None:
            out["bias"] = _bias(layer, m.out_channels)
        return out
    if unit.kind == "separable":
        out = {"depthwise.weight": _depthwise(w["depthwise_kernel"]), "pointwise.weight": _conv(w["pointwise_kernel"])}
        if m.pointwise.bias is not None:
            out["pointwise.bias"] = _bias(layer, m.pointwise.out_channels)
        elif "bias" in w and np.any(w["bias"]):
            raise _mismatch(layer, unit, "the Keras layer has a bias the PyTorch layer lacks")
        return out
    if unit.kind == "dense":
        out = {"weight": _dense(w["kernel"], unit.flatten_from)}
        if m.bias is not None:
            out["bias"] = _bias(layer, m.out_features)
        return out
    n = m.num_features  # batch norm
    return {"weight": torch.from_numpy(w["gamma"]) if "gamma" in w else torch.ones(n),
            "bias": torch.from_numpy(w["beta"]) if "beta" in w else torch.zeros(n),
            "running_mean": torch.from_numpy(w["moving_mean"]), "running_var": torch.from_numpy(w["moving_variance"])}


def _mismatch(layer: KerasLayer, unit: TorchUnit, why: str) -> UserError:
    return UserError(f"{layer.describe()} does not fit PyTorch {unit.describe()}: {why}")


def _map_pair(i: int, layer: KerasLayer, unit: TorchUnit, own: dict[str, Any], state: dict[str, torch.Tensor],
              eps: list[float]) -> None:
    if layer.kind != unit.kind:
        raise _mismatch(layer, unit, f"weighted layer {i + 1} is a {layer.kind} layer in Keras but a {unit.kind} "
                                     f"layer here")
    for key, tensor in convert_layer(layer, unit).items():
        full = f"{unit.name}.{key}" if unit.name else key
        if own[full].shape != tensor.shape:
            raise _mismatch(layer, unit, f"{key} would be {tuple(tensor.shape)} but the model has "
                                         f"{tuple(own[full].shape)}")
        state[full] = tensor.to(own[full].dtype)
    if unit.kind == "bn":
        eps.append(float(layer.config.get("epsilon", 1e-3)))


def keras_state_dict(kfile: KerasFile, model: nn.Module, input_shape: tuple[int, int, int]) -> dict[str, Any]:
    """`model`'s state dict filled from the Keras file, plus the BN epsilons found ({"bn_eps": [...]}).

    Raises UserError at the first layer whose kind or shapes do not match.
    """
    units = torch_units(model, input_shape)
    layers = kfile.weighted
    for layer in layers:
        if layer.kind is None:
            raise UserError(f"{layer.describe()} has weights deepvision cannot map (supported: "
                            f"{', '.join(sorted(set(KINDS)))})")
    own = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    eps: list[float] = []
    for i, (layer, unit) in enumerate(zip(layers, units)):
        try:
            _map_pair(i, layer, unit, own, state, eps)
        except UserError as exc:
            exc.progress = i  # type: ignore[attr-defined]  (ranks auto mode's candidates)
            raise
    if len(layers) != len(units):
        extra = (layers[len(units)].describe() if len(layers) > len(units)
                 else f"PyTorch {units[len(layers)].describe()}")
        err = UserError(f"the file has {len(layers)} weighted layers but the model has {len(units)}; the first "
                        f"unmatched one is {extra}")
        err.progress = min(len(layers), len(units))  # type: ignore[attr-defined]
        raise err
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise UserError(f"the file leaves {len(missing)} model tensors unset (first: {missing[0]})")
    for k in own:
        if k.endswith("num_batches_tracked"):
            state[k] = own[k]
    return {"state": state, "bn_eps": eps}


def keras_classes(kfile: KerasFile) -> int:
    """The number of outputs of the last weighted layer (Dense units or conv filters)."""
    last = kfile.weighted[-1] if kfile.weighted else None
    if last is None:
        raise UserError(f"{kfile.path} holds no weights")
    key = "bias" if "bias" in last.weights else ("kernel" if "kernel" in last.weights else "pointwise_kernel")
    return int(last.weights[key].shape[-1])


def keras_in_channels(kfile: KerasFile) -> int | None:
    for layer in kfile.weighted:
        if "kernel" in layer.weights and layer.weights["kernel"].ndim == 4:
            return int(layer.weights["kernel"].shape[2])
        if "depthwise_kernel" in layer.weights:
            return int(layer.weights["depthwise_kernel"].shape[2])
        if "kernel" in layer.weights:
            return None
    return None
