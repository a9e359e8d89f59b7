"""Keras `.h5` files read with h5py only (no TensorFlow): whole-model files (`model.save("m.h5")`,
Keras 2 and 3) and weights-only files (`model.save_weights("w.h5")`), as every layer in the file's order
with its config (when stored) and float32 weights. Every weight is opened through the one HDF5 opener,
checked finite, and must belong to a layer. Mapping the layers onto a PyTorch model is `keras_mapping`;
opening whole files for the graph route (`.keras` zips, Keras 3 layouts) is `keras_files`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepvision.data.hdf5 import check_dataset, external_storage, open_object
from deepvision.errors import UserError
from deepvision.safeload import load_json

KINDS = {"Conv2D": "conv", "Convolution2D": "conv", "Dense": "dense", "BatchNormalization": "bn",
         "SeparableConv2D": "separable", "SeparableConvolution2D": "separable", "DepthwiseConv2D": "depthwise"}
REAL_KINDS = "fiu"  # numpy dtype kinds a weight may be stored as: float, signed and unsigned integer


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


def attr_text(value: Any, source: Path | str, what: str) -> str:
    """A text attribute of an HDF5 file as str; UserError naming it when its bytes are not UTF-8 (Keras writes
    UTF-8)."""
    if not isinstance(value, bytes):
        return str(value)
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{source}: {what} is not UTF-8 text (Keras writes UTF-8); the file is damaged or was "
                        f"not written by Keras") from None


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


def _config_layers(model_config: Any, source: str) -> tuple[list[dict[str, Any]], tuple[int, ...] | None]:
    cfg = load_json(attr_text(model_config, source, "attribute model_config"), source) \
        if model_config is not None else {}
    inner = cfg.get("config", {}) if isinstance(cfg, dict) else {}
    layers = inner.get("layers", inner) if isinstance(inner, dict) else inner  # Keras 2.0 Sequential: a list
    layers = layers if isinstance(layers, list) else []
    from deepvision.models.keras_graph import repeated_layer_name

    twice = repeated_layer_name(layers)
    if twice is not None:  # layers are matched to their weights by name: the later would take the earlier's
        raise UserError(f"{source} names two layers {twice[:80]!r}; layer names are unique in Keras")
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
    pairs = [(w, open_member(source, g, w, f"weight '{w}' of layer '{name}'"))
             for w in listed_names(source, g, "weight_names")]
    return [(w, weight_dataset(source, ds, f"weight '{w}' of layer '{name}'")) for w, ds in pairs]


def weights_group(source: Path, f: Any) -> Any:
    """The group of a legacy Keras file holding its layers' weights: 'model_weights' of a whole-model file,
    else the file itself (weights only), opened by the HDF5 reader's link rule; a dataset there is refused."""
    group = open_object(source, f, "model_weights", "group 'model_weights'")
    if group is None:
        return f
    if not isinstance(group, h5py_module().Group):
        raise UserError(f"{source}: 'model_weights' is an HDF5 dataset, not a group of layers; the file is damaged")
    return group


def weight_dataset(source: Path, obj: Any, what: str) -> Any:
    """`obj` when it is an HDF5 dataset; UserError naming `what` when the file holds a group in its place."""
    if not isinstance(obj, h5py_module().Dataset):
        raise UserError(f"{source}: {what} is an HDF5 group, not a dataset of numbers; the file is damaged")
    return obj


def listed_names(source: Path, group: Any, attr: str) -> list[str]:
    """The names in attribute `attr` (layer_names, weight_names) of an HDF5 group; UserError naming the group
    and the name when one is given twice (Keras' load_weights refuses such a file; read by name, the second
    would silently stand for the first)."""
    names = [attr_text(raw, source, f"attribute {attr} of group '{group.name}'") for raw in group.attrs.get(attr, [])]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise UserError(f"{source}: group '{group.name}' names {name[:80]!r} twice in its {attr}; Keras writes "
                            f"each name once, so the file is damaged")
        seen.add(name)
    return names


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
    """{name: float32 array} of one layer's weight datasets; a one-line UserError when one is not stored as
    real numbers (complex, bool, text), is stored in an external file or is a virtual dataset, stores fewer bytes
    than it declares (never written: it would read as its fill value, zeros), cannot be read (a dangling external
    link included) or holds NaN/infinite values (they would import and then predict "nan%" for every class)."""
    for name, ds in datasets.items():
        what = f"weight '{name}' of layer '{layer}'"
        external_storage(source, ds, what)
        kind = getattr(getattr(ds, "dtype", None), "kind", "f")
        if kind not in REAL_KINDS:  # a cast to float32 would drop an imaginary part or turn flags/text into numbers
            raise UserError(f"{source}: {what} is stored as {ds.dtype}, not as real "
                            f"numbers (float or integer); a Keras weight is real: the file is damaged")
        check_dataset(source, name, ds, what)
    try:
        arrays = {name: np.asarray(ds[()], dtype=np.float32) for name, ds in datasets.items()}
    except (OSError, TypeError, ValueError, KeyError, RuntimeError) as exc:  # KeyError: a dangling external link
        raise UserError(f"{source}: the weights of layer '{layer}' cannot be read as numbers ({exc})") from None
    bad = [name for name, a in arrays.items() if not np.isfinite(a).all()]
    if bad:
        raise UserError(f"{source}: weight '{bad[0]}' of layer '{layer}' holds NaN or infinite values; the file is "
                        f"damaged or was saved from a diverged training")
    negative = [name for name, a in arrays.items() if "moving_variance" in name and (a < 0).any()]
    if negative:
        raise UserError(f"{source}: weight '{negative[0]}' of layer '{layer}' holds negative variances; every "
                        f"prediction would be NaN: the file is damaged")
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
        group = weights_group(path, f)
        if "layer_names" not in group.attrs:
            hint = " (a Keras 3 .weights.h5 file: save the whole model with model.save('m.h5') instead)" \
                if "layers" in f else ""
            raise UserError(f"{path} is not a Keras HDF5 model or weights file (no layer_names){hint}")
        config_layers, input_shape = _config_layers(f.attrs.get("model_config"), f"{path} model_config")
        by_name = {c.get("config", {}).get("name", c.get("name")): c for c in config_layers}
        layers, used = [], set()
        for name in listed_names(path, group, "layer_names"):
            pairs = layer_weights(path, group, name)
            by_short = {_short(w): ds for w, ds in pairs}
            used.update(ds.id for ds in by_short.values())
            weights = read_weights(path, name, by_short)
            c = by_name.get(name, {})
            cls = c.get("class_name") or (_infer_class(weights) if weights else "?")
            layers.append(KerasLayer(name, cls, c.get("config", {}), weights))
        refuse_unused(path, stored_datasets(group), used)
        version = attr_text(f.attrs.get("keras_version", group.attrs.get("keras_version", "")), path,
                            "attribute keras_version")
    return KerasFile(path, layers, version, input_shape, config_layers)


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
