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

The first pair whose kinds or shapes differ is reported by name with both shapes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepvision.errors import UserError
from deepvision.safeload import regular_file

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


def _text(value: Any) -> str:
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
    cfg = json.loads(_text(model_config)) if model_config is not None else {}
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


def read_keras_h5(path: str | Path) -> KerasFile:
    """Every layer of a Keras HDF5 model or weights file, with its config (when stored) and weights."""
    try:
        import h5py
    except ImportError:
        raise UserError("reading Keras .h5 files needs h5py: pip install 'deepvision[faces]'") from None
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
        layers = []
        for raw in group.attrs["layer_names"]:
            name = _text(raw)
            g = group[name]
            weights = {}
            for wname in (_text(w) for w in g.attrs.get("weight_names", [])):
                weights[_short(wname)] = np.asarray(g[wname], dtype=np.float32)
            c = by_name.get(name, {})
            cls = c.get("class_name") or (_infer_class(weights) if weights else "?")
            layers.append(KerasLayer(name, cls, c.get("config", {}), weights))
        version = _text(f.attrs.get("keras_version", group.attrs.get("keras_version", "")))
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


# -- whole files: .h5 (Keras 2/3), .keras zip, .weights.h5 -------------------------------------------
MAX_WEIGHTS_BYTES = 8 << 30


@dataclass
class KerasSource:
    """An open Keras file: its model config (None for weights-only files) and its weight datasets.

    `groups` maps a layer (a top-level layer name for the legacy .h5 layout, or the 'outer/inner'
    path of the Keras 3 layout) to its datasets: (weight name, dataset) pairs for the legacy layout,
    ("", dataset) in variable order for the Keras 3 layout (names come from the layer's class).
    """

    path: Path
    config: dict[str, Any] | None
    keras_version: str
    legacy: bool  # the .h5 layout of Keras 2 (and Keras 3's model.save("m.h5"))
    groups: dict[str, list[tuple[str, Any]]]


def _h5py():
    try:
        import h5py
    except ImportError:
        raise UserError("reading Keras files needs h5py: pip install 'deepvision[faces]'") from None
    return h5py


def _legacy_groups(group: Any) -> dict[str, list[tuple[str, Any]]]:
    out = {}
    for raw in group.attrs["layer_names"]:
        name = _text(raw)
        g = group[name]
        out[name] = [(_text(w), g[_text(w)]) for w in g.attrs.get("weight_names", [])]
    return out


def _v3_groups(root: Any) -> dict[str, list[tuple[str, Any]]]:
    """Keras 3 layout: layers/<x>/vars/<i> (nested: layers/<x>/layers/<y>/vars/<i>), named by vars' 'name'."""
    out: dict[str, list[tuple[str, Any]]] = {}

    def walk(g: Any, prefix: str) -> None:
        layers = g.get("layers")
        if layers is None:
            return
        for key in layers:
            sub = layers[key]
            vars_ = sub.get("vars")
            name = _text(vars_.attrs.get("name", key)) if vars_ is not None else key
            if vars_ is not None and len(vars_):
                out[prefix + name] = [("", vars_[str(i)]) for i in range(len(vars_))]
            walk(sub, f"{prefix}{name}/")

    walk(root, "")
    return out


def _open_zip(path: Path) -> tuple[dict[str, Any], str, bytes]:
    import zipfile

    from deepvision.models.keras_graph import MAX_JSON_BYTES, parse_json

    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UserError(f"{path} is not a Keras .keras file ({exc})") from None
    with z:
        names = set(z.namelist())
        if "config.json" not in names or "model.weights.h5" not in names:
            raise UserError(f"{path} is not a Keras .keras file (no config.json and model.weights.h5 inside)")
        for member, limit in (("config.json", MAX_JSON_BYTES), ("model.weights.h5", MAX_WEIGHTS_BYTES)):
            if z.getinfo(member).file_size > limit:
                raise UserError(f"{path}: {member} is larger than {limit >> 20} MB")
        config = parse_json(z.read("config.json"), f"{path}:config.json")
        version = ""
        if "metadata.json" in names and z.getinfo("metadata.json").file_size < 1 << 20:
            meta = parse_json(z.read("metadata.json"), f"{path}:metadata.json")
            version = str(meta.get("keras_version", "")) if isinstance(meta, dict) else ""
        return config, version or "3", z.read("model.weights.h5")


def _checked(config: Any, path: Path) -> dict[str, Any] | None:
    from deepvision.models.keras_graph import MODEL_CLASSES

    if config is not None and (not isinstance(config, dict) or config.get("class_name") not in MODEL_CLASSES):
        raise UserError(f"{path}: the stored model config is not a Keras model (class_name Sequential, "
                        f"Functional or Model)")
    return config


class open_keras:
    """`with open_keras(path) as src:` (named like open()): a KerasSource of an .h5, .weights.h5 or .keras file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: Any = None

    def __enter__(self) -> KerasSource:
        from deepvision.models.keras_graph import parse_json

        h5py = _h5py()
        path = self.path
        if not path.exists():
            raise UserError(f"Keras file not found: {path}")
        regular_file(path, "Keras file")  # a FIFO or device is refused, never waited on
        config, version, payload = None, "", None
        import zipfile

        if zipfile.is_zipfile(path):
            config, version, payload = _open_zip(path)
        try:
            if payload is not None:
                import io

                self._file = h5py.File(io.BytesIO(payload), "r")
            else:
                self._file = h5py.File(path, "r")
        except OSError as exc:
            raise UserError(f"{path} is not an HDF5 file or a .keras zip ({exc})") from None
        f = self._file
        group = f.get("model_weights", f)
        if "layer_names" in group.attrs:
            raw = f.attrs.get("model_config")
            if raw is not None:
                config = parse_json(_text(raw), str(path))
            version = _text(f.attrs.get("keras_version", group.attrs.get("keras_version", "")))
            return KerasSource(path, _checked(config, path), version or "2", True, _legacy_groups(group))
        if "layers" in f or "vars" in f:
            return KerasSource(path, _checked(config, path), version or "3", False, _v3_groups(f))
        self._file.close()
        raise UserError(f"{path} holds no Keras weights (neither the .h5 layout nor Keras 3's layers/ groups)")

    def __exit__(self, *exc: Any) -> None:
        if self._file is not None:
            self._file.close()


def graph_weights(src: KerasSource, layers: list[tuple[str, Any]]) -> dict[str, dict[str, Any]]:
    """{layer path: {Keras weight name: dataset}} for the graph's weighted `layers` ((path, module));
    UserError naming the first layer whose weights are missing or whose declared shapes differ."""
    found: dict[str, dict[str, Any]] = {}
    wanted = {path: module.keras_shapes() for path, module in layers}
    if src.legacy:
        for group, items in src.groups.items():
            for wname, ds in items:
                parts = wname.split(":")[0].split("/")
                target = group if group in wanted else _nested_target(group, parts, wanted)
                if target is None:
                    raise UserError(f"{src.path}: weight '{wname}' belongs to no layer of the model config")
                found.setdefault(target, {})[_alias(parts[-1], wanted[target])] = ds
    else:
        for path, shapes in wanted.items():
            items = src.groups.get(path)
            if items is None:
                continue
            names = list(shapes)
            if len(items) < len(names):
                raise UserError(f"{src.path}: layer '{path}' stores {len(items)} weights but its config needs "
                                f"{len(names)} ({', '.join(names)})")
            found[path] = {n: ds for n, (_, ds) in zip(names, items)}
    for path, shapes in wanted.items():
        have = found.get(path, {})
        for name, shape in shapes.items():
            if name not in have:
                raise UserError(f"{src.path}: layer '{path}' has no '{name}' weight in the file")
            declared = tuple(int(v) for v in have[name].shape)
            if shape != (-1,) and declared != tuple(shape):
                raise UserError(f"{src.path}: layer '{path}' weight '{name}' is {declared} in the file but the "
                                f"config makes it {tuple(shape)}")
    extra = [p for p in src.groups if src.groups[p] and p not in wanted
             and not any(w.startswith(p + "/") for w in wanted)]
    if extra:
        raise UserError(f"{src.path}: the file has weights for layer '{extra[0]}' that the config does not have")
    return found


def _nested_target(group: str, parts: list[str], wanted: dict[str, Any]) -> str | None:
    """The layer path of weight `parts` stored in the group of nested model `group`."""
    if len(parts) < 2:
        return None
    inner = parts[1:-1] if parts[0] == group else parts[:-1]
    exact = "/".join([group, *inner])
    if exact in wanted:
        return exact
    options = [p for p in wanted if p.startswith(group + "/") and p.rsplit("/", 1)[-1] == parts[-2]]
    return options[0] if len(options) == 1 else None


def _alias(short: str, wanted: dict[str, Any]) -> str:
    short = short.split(":")[0]
    if short == "kernel" and "depthwise_kernel" in wanted and "kernel" not in wanted:
        return "depthwise_kernel"
    if short == "depthwise_kernel" and "kernel" in wanted and "depthwise_kernel" not in wanted:
        return "kernel"
    return short


def load_graph_weights(src: KerasSource, graph: nn.Module) -> dict[str, dict[str, np.ndarray]]:
    """Read the file's weights into a `KerasGraph` (shapes checked before reading); returns them by
    layer path."""
    layers = graph.weighted_layers()
    found = graph_weights(src, layers)
    read: dict[str, dict[str, np.ndarray]] = {}
    with torch.no_grad():
        for path, module in layers:
            arrays = _read_arrays(src, path, found[path])
            module.set_keras(arrays)
            read[path] = arrays
    return read


def _read_arrays(src: KerasSource, path: str, datasets: dict[str, Any]) -> dict[str, np.ndarray]:
    try:
        arrays = {name: np.asarray(ds[()], dtype=np.float32) for name, ds in datasets.items()}
    except (OSError, TypeError, ValueError, KeyError, RuntimeError) as exc:  # KeyError: a dangling external link
        raise UserError(f"{src.path}: the weights of layer '{path}' cannot be read as numbers ({exc})") from None
    bad = [name for name, a in arrays.items() if not np.isfinite(a).all()]
    if bad:  # NaN/inf weights would import and then predict "nan%" for every class
        raise UserError(f"{src.path}: weight '{bad[0]}' of layer '{path}' holds NaN or infinite values; the file is "
                        f"damaged or was saved from a diverged training")
    return arrays


def read_keras_file(path: str | Path, config: str | Path | None = None) -> KerasFile:
    """Every weighted layer of any Keras file, in the order its network runs them.

    Files with a model config (stored, or `config`: a model.to_json() file) are read through the
    rebuilt network; Keras 2 files without one in their stored layer order (`read_keras_h5`). A
    Keras 3 weights-only file names its variables by position only, so it needs the config.
    """
    from deepvision.models.keras_graph import KerasGraph, input_shape, model_layers, read_config

    with open_keras(path) as src:
        model_cfg = read_config(config) if config else src.config
        if model_cfg is None:
            if src.legacy:
                return read_keras_h5(path)
            raise UserError(f"{path} is a Keras 3 weights-only file: its weights are told apart by position, "
                            f"so give the model config too (--config model.json, from model.to_json())")
        graph = KerasGraph(model_cfg, keras_version=src.keras_version, materialize=False)
        arrays = load_graph_weights_arrays(src, graph)
        version = src.keras_version
    layers = [KerasLayer(p, str(graph.entry(p).get("class_name")), graph.entry(p).get("config", {}) or {},
                         arrays[p]) for p, _ in graph.weighted_layers()]
    shape = input_shape(model_cfg)
    return KerasFile(Path(path), layers, version, tuple(int(v) for v in shape if v is not None) if shape else None,
                     model_layers(model_cfg))


def load_graph_weights_arrays(src: KerasSource, graph: nn.Module) -> dict[str, dict[str, np.ndarray]]:
    """The file's weights by layer path, checked against `graph` but not loaded into it."""
    found = graph_weights(src, graph.weighted_layers())
    return {p: _read_arrays(src, p, w) for p, w in found.items()}
