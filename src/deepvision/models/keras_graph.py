"""A PyTorch module rebuilt from a Keras model config: `keras:graph` with option `config: PATH`.

The config is the JSON Keras stores with a model (`model_config` of an .h5 file, config.json of a
.keras file): `Sequential` and functional models, nested models and shared layers included. The
module computes what Keras computes (channels-first inside; see models/keras_layers.py) and is
rebuilt from the JSON every time, nothing pickled; its state dict holds the weights under
`layers.<layer name>.*`. Layers (Keras 2 and 3 names and defaults):

    InputLayer, Conv1D, Conv2D, SeparableConv2D, DepthwiseConv2D, Conv2DTranspose, Dense,
    BatchNormalization, LayerNormalization, Activation, LeakyReLU, PReLU, ELU, ReLU, Softmax,
    MaxPooling1D/2D, AveragePooling1D/2D, GlobalAveragePooling1D/2D, GlobalMaxPooling1D/2D,
    ZeroPadding1D/2D, Cropping1D/2D, UpSampling1D/2D, Flatten, Reshape, Permute, Dropout,
    SpatialDropout1D/2D, GaussianNoise, GaussianDropout, AlphaDropout, ActivityRegularization,
    Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Rescaling, Normalization,

with the activations of `keras_layers.ACTIVATIONS`. Anything else (Lambda, custom layers) is
refused with one line naming every such layer. The module returns logits: the final softmax is left
out (looking past layers that are identities at inference and into a nested model that gives the
output), a one-unit sigmoid becomes two classes, other sigmoid outputs are refused (`_head_output`).
`num_classes` other than the file's replaces a final Dense with a fresh one (fine-tuning).

Why one module of ~890 lines: reading the config (layers, inbound nodes, Keras 2/3 spellings) and wiring
the module from it walk the same structures; split, each half would re-parse what the other holds.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepvision.errors import UserError
from deepvision.models import keras_layers as kl
from deepvision.models.layers import module_key
from deepvision.models.registry import ModelSpec, register_provider
from deepvision.models.shapes import check_activation
from deepvision.safeload import check_declared_bytes, check_image_side, load_json, read_bytes, regular_file

MODEL_CLASSES = ("Sequential", "Functional", "Model")
MERGE = {"Add": "add", "Subtract": "sub", "Multiply": "mul", "Average": "avg", "Maximum": "max",
         "Minimum": "min", "Concatenate": "concat"}
IDENTITY = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "GaussianDropout",
            "AlphaDropout", "ActivityRegularization", "InputLayer")
SHAPE_ONLY = ("Flatten", "Reshape", "Permute")  # values unchanged, only arranged anew
# layers that compute new scores from their input: the walk back from the output for a final softmax ends there
SCORING = ("Dense", "Conv1D", "Conv2D", "Convolution2D", "SeparableConv2D", "SeparableConvolution2D",
           "DepthwiseConv2D", "Conv2DTranspose")
HEAD_ACTIVATIONS = ("softmax", "log_softmax", "sigmoid", "hard_sigmoid")  # outputs that are (log-)probabilities
LAYERS = frozenset({
    "Conv1D", "Conv2D", "Convolution2D", "SeparableConv2D", "SeparableConvolution2D", "DepthwiseConv2D",
    "Conv2DTranspose", "Dense", "BatchNormalization", "LayerNormalization", "Activation", "LeakyReLU", "PReLU",
    "ELU", "ReLU", "Softmax", "MaxPooling1D", "MaxPooling2D", "MaxPool1D", "MaxPool2D", "AveragePooling1D",
    "AveragePooling2D", "AvgPool1D", "AvgPool2D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalAvgPool1D", "GlobalAvgPool2D", "GlobalMaxPool1D",
    "GlobalMaxPool2D", "ZeroPadding1D", "ZeroPadding2D", "Cropping1D", "Cropping2D", "UpSampling1D",
    "UpSampling2D", "Flatten", "Reshape", "Permute", "Rescaling", "Normalization", *MERGE, *IDENTITY,
    *MODEL_CLASSES})
# Keras 3 operations on a tensor and numbers (`x + 3.0` in a functional model): module keras.src.ops.*
OPS = {"Add": "add", "Subtract": "sub", "Multiply": "mul", "Divide": "div", "TrueDivide": "div", "Maximum": "max",
       "Minimum": "min"}
MAX_JSON_BYTES = 64 * 1024 * 1024
MAX_LAYER_INT = 1 << 20  # channels, units, window sizes, strides: any real network stays far below (as for MXNet)
# config fields checked before any module is built: whole numbers from 1 (None keeps Keras' default), whole
# numbers from 0 (padding/cropping amounts; a string such as "same" is the conv's mode), finite numbers
POSITIVE_INT_FIELDS = ("filters", "units", "depth_multiplier", "groups", "kernel_size", "strides", "dilation_rate",
                       "pool_size", "size")
COUNT_FIELDS = ("padding", "cropping", "output_padding")
FINITE_FIELDS = ("epsilon", "momentum", "rate", "alpha", "negative_slope", "threshold", "max_value", "stddev")
RESCALING_FIELDS = ("scale", "offset")  # BatchNormalization's `scale` is a yes/no: numbers only in Rescaling
AXIS_FIELDS = ("axis", "dims", "shared_axes")  # whole numbers, possibly negative; ranges are the builders'
KERAS_NON_NEGATIVE = {"ReLU": ("max_value", "negative_slope", "threshold"), "LeakyReLU": ("negative_slope",)}
KERAS_NOT_NULL = {"ReLU": ("negative_slope", "threshold"), "LeakyReLU": ("negative_slope", "alpha")}  # None refused


def parse_json(text: str | bytes, source: str) -> Any:
    """JSON with a size limit and safeload's one nesting limit, `safeload.MAX_DEPTH` (a hostile file cannot
    exhaust memory or the stack; real Keras configs nest about 15 levels)."""
    if len(text) > MAX_JSON_BYTES:
        raise UserError(f"{source}: the model config is larger than {MAX_JSON_BYTES >> 20} MB")
    return load_json(text, source)


def _whole_phrase(value: Any) -> str:
    return "whole numbers" if isinstance(value, (list, tuple)) else "a whole number"


def _is_whole(v: Any, low: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and low <= v <= MAX_LAYER_INT


def check_input_shape(field: str, shape: Any) -> None:
    """A stated `batch_shape`/`batch_input_shape`: a list whose sizes after the batch axis are None (free)
    or whole numbers from 1, image sides within the metadata ceiling, one sample within the read ceiling."""
    if not isinstance(shape, (list, tuple)) or len(shape) < 2:
        raise UserError(f"{field} {shape!r} must be a list [batch, size, ...]")
    sizes = list(shape[1:])
    if not all(v is None or _is_whole(v, 1) for v in sizes):
        raise UserError(f"{field} {list(shape)!r}: every size after the batch axis must be a whole number from 1 "
                        f"to {MAX_LAYER_INT:,} (or null)")
    fixed = [v for v in sizes if v is not None]
    if len(sizes) == 3 and all(v is not None for v in sizes[:2]):
        check_image_side(field, *sizes[:2])
    total = 4
    for v in fixed:
        total *= v
    check_declared_bytes(f"{field} {list(shape)!r} (one float32 sample)", total)


def check_number(where: str, cls: str, key: str, value: Any) -> None:
    """One numeric setting of a layer the importer reads (epsilon, momentum, rate, stddev, slopes, caps,
    Rescaling's values): a finite JSON number (None keeps Keras' default), within what Keras itself accepts.
    Text is refused, not parsed: Keras' arithmetic fails on it. One line names layer, field and value."""
    if isinstance(value, (list, tuple)) and key not in RESCALING_FIELDS and cls in LAYERS:
        raise UserError(f"{where}: {key} {repr(value)[:80]} must be a number, not a list")
    if isinstance(value, list):  # per-channel values (Rescaling): text is refused where it is read
        bad = [v for v in kl.leaves(value) if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            raise UserError(f"{where}: {key} holds {bad[0]!r}; every value must be a finite number")
        return
    if value is None or (isinstance(value, (dict, str)) and cls not in LAYERS):  # refused as unsupported
        return
    if isinstance(value, str):
        raise UserError(f"{where}: {key} {value[:80]!r} must be a number, not text")
    span = " from 0 (below 1)" if key == "rate" else " from 0" if key in ("epsilon", "stddev") else ""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or (span and value < 0) or (key == "rate" and value >= 1):
        raise UserError(f"{where}: {key} {str(value)[:80]} must be a finite number{span}")
    if key in KERAS_NON_NEGATIVE.get(cls, ()) and value < 0:
        raise UserError(f"{where}: {key} {value!r} cannot be negative (Keras refuses it too)")


def check_layer_configs(model: dict[str, Any], prefix: str = "") -> None:
    """Refuse, before any module exists, a layer config value the importer could not build from exactly:
    sizes that are not whole numbers in range (NaN, negative, 0 strides or kernels, 2e9 filters), a
    stated input shape beyond the budget, non-finite rates and epsilons. One line names layer and field.
    Two layers of one name are refused too (Keras refuses them): the graph wires by name, so the later
    would silently take the earlier one's place."""
    twice = repeated_layer_name(model_layers(model))
    if twice is not None:
        raise UserError(f"model '{prefix.rstrip('/') or layer_name(model)}' names two layers {twice[:80]!r}; layer "
                        f"names are unique in Keras")
    for entry in model_layers(model):
        cfg = entry.get("config")
        if not isinstance(cfg, dict):
            continue
        name, cls = f"{prefix}{layer_name(entry)}", entry.get("class_name")
        where = f"Keras layer '{name}' ({cls})"
        for key in kl.FLAGS if cls in LAYERS else ():
            if key in cfg and not (key == "scale" and cls == "Rescaling"):
                kl.flag(cfg, key, where)
        for key in ("batch_input_shape", "batch_shape"):
            if cfg.get(key) is not None:
                check_input_shape(f"{where} {key}", cfg[key])
        for key in POSITIVE_INT_FIELDS:
            value = cfg.get(key)
            if value is not None and (not kl.leaves(value)
                                      or not all(_is_whole(v, 1) for v in kl.leaves(value))):
                raise UserError(f"{where}: {key} {value!r} must be {_whole_phrase(value)} from 1 to "
                                f"{MAX_LAYER_INT:,}")
        for key in COUNT_FIELDS:
            value = cfg.get(key)
            if value is not None and not isinstance(value, str) \
                    and not all(_is_whole(v, 0) for v in kl.leaves(value)):
                raise UserError(f"{where}: {key} {value!r} must be {_whole_phrase(value)} from 0 to "
                                f"{MAX_LAYER_INT:,}")
        if cls == "Reshape" and "target_shape" in cfg:
            shape = cfg["target_shape"]
            if not isinstance(shape, (list, tuple)) or not all(_is_whole(v, 1) or (v == -1 and isinstance(v, int)
                                                                   and not isinstance(v, bool)) for v in shape):
                raise UserError(f"{where}: target_shape {shape!r} must be a list of whole numbers from 1 to "
                                f"{MAX_LAYER_INT:,} (or one -1)")
        for key in FINITE_FIELDS + (RESCALING_FIELDS if cls == "Rescaling" else ()):
            if key in cfg and cfg[key] is None and key in KERAS_NOT_NULL.get(str(cls), ()):
                raise UserError(f"{where}: {key} is null, which Keras refuses; give a number")
            check_number(where, str(cls), key, cfg.get(key))
        for key in AXIS_FIELDS if cls in LAYERS and cls != "Softmax" else ():  # Softmax: _softmax_axis
            value = cfg.get(key)
            if value is not None and not all(isinstance(v, int) and not isinstance(v, bool)
                                             for v in kl.leaves(value)):
                raise UserError(f"{where}: {key} {repr(value)[:80]} must be {_whole_phrase(value)}, not text or "
                                f"fractions")
        axis = cfg.get("axis", -1)
        if cls == "Concatenate" and (not isinstance(axis, int) or isinstance(axis, bool)):
            raise UserError(f"{where}: axis {repr(axis)[:80]} must be a whole number (the axis joined)")
        if cls == "LeakyReLU" and "alpha" in cfg and "negative_slope" in cfg and cfg["alpha"] != cfg["negative_slope"]:
            # Keras 3 takes the deprecated alpha over negative_slope, Keras 2 knows alpha alone
            raise UserError(f"{where}: alpha {cfg['alpha']!r} and negative_slope {cfg['negative_slope']!r} are two "
                            f"values for one setting; keep one")
        if cls in MODEL_CLASSES:
            check_layer_configs(entry, f"{name}/")


def model_layers(model: dict[str, Any]) -> list[dict[str, Any]]:
    """The layer entries of a model config ({"class_name", "config"}; Keras 2.0 Sequential: a list)."""
    cfg = model.get("config", {})
    layers = cfg.get("layers", []) if isinstance(cfg, dict) else cfg
    layers = layers if isinstance(layers, list) else []
    if not all(isinstance(e, dict) for e in layers):
        raise UserError(f"model '{layer_name(model)}': the config lists a layer that is not a layer config")
    return layers


def repeated_layer_name(entries: list[dict[str, Any]]) -> str | None:
    """The first layer name that two of `entries` (one model's layers) share, if any."""
    seen: set[str] = set()
    for entry in entries:
        name = layer_name(entry) if isinstance(entry, dict) else "?"
        if name != "?" and name in seen:  # '?': no name at all, which the graph refuses on its own terms
            return name
        seen.add(name)
    return None


def layer_name(entry: dict[str, Any]) -> str:
    cfg = entry.get("config", {})
    return str(entry.get("name") or (cfg.get("name") if isinstance(cfg, dict) else None) or "?")


def unsupported_layers(model: dict[str, Any], prefix: str = "") -> list[str]:
    """'name (Class)' of every layer, nested models included, that the graph cannot build."""
    bad = []
    for entry in model_layers(model):
        cls = str(entry.get("class_name", "?"))
        if cls in MODEL_CLASSES:
            bad += unsupported_layers(entry, f"{prefix}{layer_name(entry)}/")
        elif is_op(entry):
            if cls not in OPS:
                bad.append(f"{prefix}{layer_name(entry)} (operation {cls})")
        elif cls not in LAYERS:
            bad.append(f"{prefix}{layer_name(entry)} ({cls})")
        else:
            cfg = entry.get("config", {}) or {}
            act = kl.activation_name(cfg.get("activation"))
            if "activation" in cfg and act not in kl.ACTIVATIONS:
                bad.append(f"{prefix}{layer_name(entry)} ({cls} with activation {act})")
            elif cfg.get("data_format") not in (None, "channels_last"):
                bad.append(f"{prefix}{layer_name(entry)} ({cls}, {cfg.get('data_format')})")
    return bad


def input_shape(model: dict[str, Any]) -> tuple[int | None, ...] | None:
    """The Keras input shape without the batch axis (None for free sizes), if the config states it."""
    cfg = model.get("config", {}) if isinstance(model.get("config"), dict) else {}
    for entry in model_layers(model):
        c = entry.get("config", {})
        found = c.get("batch_input_shape") or c.get("batch_shape")
        if found:
            return tuple(None if v is None else int(v) for v in found[1:])
        if entry.get("class_name") in MODEL_CLASSES:
            inner = input_shape(entry)
            if inner:
                return inner
        break
    found = cfg.get("build_input_shape")
    return tuple(None if v is None else int(v) for v in found[1:]) if isinstance(found, list) else None


def is_op(entry: dict[str, Any]) -> bool:
    """A Keras 3 operation node (e.g. `x + 3.0`), not a layer. Its module says so in .keras files;
    the .h5 config leaves the module out, but an operation's arguments are positional (a merge
    layer takes one list of tensors)."""
    if str(entry.get("module") or "").startswith("keras.src.ops"):
        return True
    nodes = entry.get("inbound_nodes") or []
    if entry.get("module") or entry.get("class_name") not in OPS or not nodes or not isinstance(nodes[0], dict):
        return False
    args = nodes[0].get("args", [])
    return len(args) != 1 or not isinstance(args[0], list)


def _op_template(entry: dict[str, Any], call: int) -> list[float | None]:
    """The operands of an operation call: None where a tensor goes, else the number."""
    node = (entry.get("inbound_nodes") or [])[call]
    args = node.get("args", []) if isinstance(node, dict) else []
    out: list[float | None] = []
    for a in args:
        if isinstance(a, (int, float)) and not isinstance(a, bool):
            out.append(float(a))
        elif isinstance(a, dict) and a.get("class_name") == "__keras_tensor__":
            out.append(None)
        else:
            raise UserError(f"Keras operation '{layer_name(entry)}' takes an argument the importer cannot read")
    return out


def _refs(args: Any) -> list[tuple[str, int, int]]:
    """Keras 3 inbound-node args -> [(layer, node index, tensor index)] in order."""
    found: list[tuple[str, int, int]] = []
    if isinstance(args, dict):
        if args.get("class_name") == "__keras_tensor__":
            h = args["config"]["keras_history"]
            found.append((str(h[0]), int(h[1]), int(h[2])))
        else:
            for v in args.values():
                found += _refs(v)
    elif isinstance(args, (list, tuple)):
        for v in args:
            found += _refs(v)
    return found


def _calls(entry: dict[str, Any], skip: dict[str, int]) -> list[list[tuple[str, int, int]]]:
    """Each call of a functional-model layer as its list of input references. Keras 2 counts a
    nested model's own graph as its node 0 (`skip`: 1 for those models), Keras 3 does not."""
    calls = []
    for node in entry.get("inbound_nodes", []) or []:
        if isinstance(node, dict):  # Keras 3
            calls.append(_refs(node.get("args", [])))
        else:  # Keras 2: [[layer, node, tensor, kwargs], ...]
            calls.append([(str(r[0]), int(r[1]) - skip.get(str(r[0]), 0), int(r[2])) for r in node])
    return calls


def _own_node(entry: dict[str, Any]) -> int:
    """1 for a nested Keras 2 model that starts with an InputLayer (its node 0 is its own graph)."""
    if entry.get("class_name") not in MODEL_CLASSES:
        return 0
    inner = model_layers(entry)
    return 1 if entry.get("class_name") != "Sequential" or (inner and inner[0].get("class_name") == "InputLayer") \
        else 0


def _output_skip(entry: dict[str, Any], keras3: bool) -> int:
    """How many nodes a model's `output_layers` numbering counts before a layer's first call: a nested
    Functional model's own graph (Keras 3 numbers it so for every Functional; Keras 2 as `_own_node`)."""
    if keras3:
        return 1 if entry.get("class_name") in ("Functional", "Model") else 0
    return _own_node(entry)


def _is_identity(entry: dict[str, Any]) -> bool:
    """A layer that passes its input through unchanged at inference (dropout, noise, a linear activation)."""
    cls = entry.get("class_name")
    cfg = entry.get("config") if isinstance(entry.get("config"), dict) else {}
    return cls in IDENTITY or (cls == "Activation" and kl.activation_name(cfg.get("activation")) == "linear")


def _head_activation(entry: dict[str, Any]) -> str | None:
    """The activation a layer ends with if its output is (log-)probabilities: softmax, sigmoid, ..."""
    cls = entry.get("class_name")
    cfg = entry.get("config") if isinstance(entry.get("config"), dict) else {}
    if cls == "Softmax":
        return "softmax"
    act = kl.activation_name(cfg.get("activation")) if cls == "Activation" or cls in SCORING else None
    return act if act in HEAD_ACTIVATIONS else None


def _io_refs(value: Any) -> list[tuple[str, int, int]]:
    if not value:
        return []
    if isinstance(value[0], str):
        value = [value]
    return [(str(v[0]), int(v[1]), int(v[2])) for v in value]


class KerasGraph(nn.Module):
    """Runs a Keras model config. `keras_version` picks version-dependent activations.

    `input_shape` is the Keras input shape (H, W, C) or any shape without the batch axis; None
    sizes in the config must be given here.
    """

    def __init__(self, model: dict[str, Any], input_shape: tuple[int, ...] | None = None, num_classes: int = 0,
                 keras_version: str = "3", top: bool = True, materialize: bool = True, head: bool | None = None,
                 after: str | None = None) -> None:
        """`head` (default: `top`): this model's output is the network's output, so its final softmax is
        left out (see `_head_output`), also when it is a nested model's. `after`: the network's output is this
        model's through that layer ('name' (Class)), which changes values: a final softmax here is refused."""
        super().__init__()
        self.head = top if head is None else head
        self.after = after
        self.output_changed = False  # the final softmax left out or a sigmoid read as two classes
        if top:
            check_layer_configs(model)
            bad = unsupported_layers(model)
            if bad:
                raise UserError(f"Keras layer(s) not supported by the graph importer: {', '.join(bad)}")
        self.name = layer_name(model) if model.get("class_name") else "model"
        self.legacy = not str(keras_version).startswith("3")
        self.layers = nn.ModuleDict()
        self.keys: dict[str, str] = {}  # Keras layer name -> module key
        # (layer, call, kind, key, inputs) in running order
        self.steps: list[tuple[str, int, str, str, tuple[tuple[str, int, int], ...]]] = []
        entries = model_layers(model)
        self.entries = {layer_name(e): e for e in entries}
        self.op_args: dict[tuple[str, int], list[float | None]] = {}
        written = None
        if model.get("class_name") == "Sequential" or "inbound_nodes" not in (entries[0] if entries else {}):
            entries, ins, outs = self._as_functional(entries)
        else:
            cfg = model.get("config", {})
            keras3 = any(isinstance(n, dict) for e in entries for n in e.get("inbound_nodes") or [])
            skips = {layer_name(e): _output_skip(e, keras3) for e in entries}
            written = _io_refs(cfg.get("output_layers"))[:1] or None
            ins, outs = ([(n, i - skips.get(n, 0), t) for n, i, t in _io_refs(cfg.get(key))]
                         for key in ("input_layers", "output_layers"))
        if len(ins) != 1 or len(outs) != 1:
            raise UserError(f"model '{self.name}' has {len(ins)} inputs and {len(outs)} outputs; the importer takes "
                            f"one of each")
        self.input_ref, self.output_ref = ins[0], outs[0]
        self.output_written = written[0] if written else outs[0]  # as the config numbers it, for messages
        shape = self._resolve_input_shape(model, input_shape)
        self.head_key: str | None = None
        self.softmax_dropped = False
        with torch.device("meta"):
            x = torch.empty(1, *((shape[-1], *shape[:-1]) if len(shape) >= 2 else shape))
            values = self._build(entries, x, num_classes if top else 0, top)
        self.output_shape = tuple(values[self.output_ref].shape[1:])
        self.num_classes = int(self.output_shape[0]) if self.output_shape else 1
        self.input_shape = shape
        # what the image's channels must be (runs.loading checks it): the declared input, not the first
        # convolution's, which may follow a Dense or Permute that changes the channel count
        self.input_channels = int(shape[-1]) if len(shape) == 3 else None
        if num_classes > 0 and top and self.num_classes != num_classes:
            raise UserError(f"model '{self.name}' has {self.num_classes} outputs and no final Dense to resize to "
                            f"{num_classes} classes")
        if materialize:
            total = sum(t.numel() * t.element_size() for t in self.state_dict().values())
            check_declared_bytes(f"model '{self.name}' (its layers for input {tuple(shape)})", total)
            self.to_empty(device="cpu")
            self._reset()
        self.train()

    def check_scores(self) -> None:
        """UserError unless the output is one score vector per image, what a deepvision classifier returns
        (a map, as a model ending in a Conv2D gives, was read as classes and predict failed)."""
        if len(self.output_shape) != 1:  # a map (N, C, H, W), a sequence or one number per image
            shown = (*self.output_shape[1:], *self.output_shape[:1])  # as Keras writes it, channels last
            raise UserError(f"Keras layer '{self.output_ref[0]}': the model's output is {shown} per image, not one "
                            f"score vector per image; deepvision imports classifiers (end the model with a "
                            f"GlobalAveragePooling2D, or a Flatten and a Dense)")
        if self.output_shape == (1,):  # a one-unit sigmoid head is two classes already; anything else is one
            raise UserError(f"Keras layer '{self.output_ref[0]}': the model has 1 output unit; a softmax over one "
                            f"class is always 100%, so deepvision imports a binary classifier only as Dense(1, "
                            f"'sigmoid') (two classes [1 - p, p]) or with 2 or more outputs")

    # -- building ---------------------------------------------------------------------------------
    def _resolve_input_shape(self, model: dict[str, Any], given: tuple[int, ...] | None) -> tuple[int, ...]:
        stated = input_shape(model)
        if given is None and stated is None:
            raise UserError(f"model '{self.name}' does not state its input shape; give the input size")
        if stated is None:
            return tuple(given)
        if given is None:
            if any(v is None for v in stated):
                raise UserError(f"model '{self.name}' takes inputs of free size {stated}; give the input size")
            return tuple(int(v) for v in stated)
        merged = tuple(g if s is None else s for s, g in zip(stated, given)) if len(given) == len(stated) else None
        if merged is None or any(m != g for m, g in zip(merged, given)):
            raise UserError(f"model '{self.name}' takes inputs of shape {stated}, not {tuple(given)}")
        return tuple(int(v) for v in merged)

    def _as_functional(self, entries: list[dict[str, Any]]
                       ) -> tuple[list[dict[str, Any]], list[tuple[str, int, int]], list[tuple[str, int, int]]]:
        """A Sequential's layers as a chain of calls."""
        chain: list[dict[str, Any]] = []
        prev, skip = "__input__", 0
        for e in entries:
            if e.get("class_name") == "InputLayer":
                continue
            name = layer_name(e)
            # in Keras 2 numbering (`_calls` takes a nested model's own graph off), so a layer after one reads its call
            chain.append({**e, "name": name, "inbound_nodes": [[[prev, skip, 0, {}]]]})
            prev, skip = name, _own_node(e)
        self.entries = {layer_name(e): e for e in chain}
        return chain, [("__input__", 0, 0)], [(prev, 0, 0)]

    def _order(self, entries: list[dict[str, Any]]) -> list[tuple[dict[str, Any], int, list[tuple[str, int, int]]]]:
        """Every (layer, call index, inputs) in an order where inputs come first."""
        skip = {layer_name(e): _own_node(e) for e in entries}
        pending = [(e, i, refs) for e in entries if e.get("class_name") != "InputLayer"
                   for i, refs in enumerate(_calls(e, skip))]
        done = {self.input_ref[:2]}
        done |= {(layer_name(e), 0) for e in entries if e.get("class_name") == "InputLayer"}
        order = []
        while pending:  # config order wherever it is already a running order (it is, as Keras writes it)
            waiting = []
            for p in pending:
                if all(r[:2] in done for r in p[2]):
                    order.append(p)
                    done.add((layer_name(p[0]), p[1]))
                else:
                    waiting.append(p)
            if len(waiting) == len(pending):
                names = ", ".join(layer_name(p[0]) for p in waiting[:3])
                raise UserError(f"model '{self.name}': layers {names} read inputs that no layer produces")
            pending = waiting
        return order

    def _build(self, entries: list[dict[str, Any]], x: torch.Tensor, num_classes: int, top: bool
               ) -> dict[tuple[str, int, int], torch.Tensor]:
        values = {self.input_ref: x}
        for e in entries:
            if e.get("class_name") == "InputLayer":
                values[(layer_name(e), 0, 0)] = x
        taken: set[str] = set()
        order = self._order(entries)
        self._check_output_ref(order, values)
        final, dense, after = self._final(order) if self.head or self.after else (None, None, {})
        own = _own_classes(dense.get("config") or {}, final) if dense is not None else None
        resize = top and dense is not None and num_classes not in (0, own)
        for entry, call, refs in order:
            name, cls = layer_name(entry), str(entry.get("class_name"))
            cfg = entry.get("config", {}) or {}
            if any(r[2] != 0 for r in refs):
                raise UserError(f"Keras layer '{name}' reads a second output of a layer (multi-output layers are not "
                                f"supported)")
            xs = [values[r] for r in refs]
            kind = "op:" + OPS[cls] if is_op(entry) else MERGE.get(cls, "module")
            if kind.startswith("op:"):
                self.op_args[(name, call)] = _op_template(entry, call)
            if name not in self.keys:
                self.keys[name] = key = module_key(name, taken, "layer", "k_")
                if kind == "module":
                    try:
                        made = self._make(cls, cfg, entry, xs, num_classes if resize and entry is dense else None,
                                          head=self.head and entry is final, after=after.get(name))
                    except (KeyError, TypeError, ValueError, IndexError) as exc:
                        raise UserError(f"Keras layer '{name}' ({cls}) has a config the importer cannot read "
                                        f"({type(exc).__name__}: {exc})") from None
                    except UserError as exc:
                        if str(exc).startswith("Keras layer"):
                            raise
                        raise UserError(f"Keras layer '{name}' ({cls}): {exc}") from None
                    self.layers[key] = made.eval()
                    if self.head and entry is final:
                        calls = sum(layer_name(e) == name for e, _, _ in order)
                        self._head_output(name, cls, key, xs, resize, calls)
                    if top and entry is dense:
                        self.head_key = key
            key = self.keys[name]
            self.steps.append((name, call, kind, key, tuple(refs)))
            try:
                values[(name, call, 0)] = self._step(kind, key, xs, cfg, self.op_args.get((name, call)))
            except (RuntimeError, ValueError, IndexError) as exc:
                shapes = ", ".join(str(tuple(kl.to_keras(v).shape[1:])) for v in xs)
                raise UserError(f"Keras layer '{name}' ({cls}) cannot take input {shapes} "
                                f"({str(exc).splitlines()[0]})") from None
            out = values[(name, call, 0)]
            if isinstance(out, torch.Tensor) and 0 in out.shape[1:]:  # e.g. cropping more than the map holds
                shapes = ", ".join(str(tuple(kl.to_keras(v).shape[1:])) for v in xs)
                raise UserError(f"Keras layer '{name}' ({cls}) leaves nothing of its input {shapes}: its output "
                                f"{tuple(kl.to_keras(out).shape[1:])} is empty; the config does not fit the input "
                                f"size")
            if isinstance(out, torch.Tensor):
                check_activation(f"Keras layer '{name}' ({cls})", out, kl.to_keras(out).shape[1:])
        return values

    def _check_output_ref(self, order: list[tuple[dict[str, Any], int, list[tuple[str, int, int]]]],
                          values: dict[tuple[str, int, int], torch.Tensor]) -> None:
        """Refuse an `output_layers` entry that names no tensor the model computes, in one line."""
        name, node, tensor = self.output_ref
        made = {(layer_name(e), c) for e, c, _ in order} | {k[:2] for k in values}
        if (name, node) in made and tensor == 0:
            return
        where = f"model '{self.name}' names"
        if (name, node) in made:
            raise UserError(f"{where} output {tensor} of layer '{name}' as its output; the importer reads layers "
                            f"with one output (output 0)")
        if name not in self.entries:
            raise UserError(f"{where} layer '{name}' as its output, which is not one of its layers")
        calls = sum(layer_name(e) == name for e, _, _ in order)
        raise UserError(f"{where} node {self.output_written[1]} of layer '{name}' as its output, which has {calls} "
                        f"node(s); the model config is damaged")

    def _final(self, order: list[tuple[dict[str, Any], int, list[tuple[str, int, int]]]]
               ) -> tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, str]]:
        """(final, dense, after) for the model's output, whose values predict reads as logits:

        - final: the layer reached from the output past layers that leave values unchanged (identities at
          inference, Flatten, Reshape, Permute); its softmax is the one predict applies, so it is left out.
        - dense: the Dense a new class count replaces: the final layer, or the Dense before a final
          Activation/Softmax layer (past identities).
        - after: nested models whose output reaches the model's through layers that change values, with the
          first such layer ('name' (Class)), for their own walk.

        A softmax, log_softmax or sigmoid whose output reaches the model's output through layers that change
        values (Rescaling, ReLU, pooling, a merge) is refused naming both: predict would apply its own softmax
        to them. The walk ends at a layer that computes new scores (Dense, convolutions)."""
        by_call = {(layer_name(e), c): (e, refs) for e, c, refs in order}
        final: tuple[str, int] | None = None
        after: dict[str, str] = {}
        reshaped = False  # a Reshape/Flatten/Permute between: a new class count would not fit it
        stack: list[tuple[tuple[str, int, int], str | None]] = [(self.output_ref, self.after)]
        seen: set[tuple[str, int, bool]] = set()
        while stack:
            ref, changer = stack.pop()
            found = by_call.get(ref[:2])
            if found is None or (*ref[:2], changer is None) in seen:
                continue
            seen.add((*ref[:2], changer is None))
            entry, refs = found
            name, cls = layer_name(entry), str(entry.get("class_name"))
            act = _head_activation(entry)
            if cls in MODEL_CLASSES or act is not None or cls in SCORING:
                if changer is None:
                    final = ref[:2]
                elif cls in MODEL_CLASSES:
                    after[name] = changer
                elif act is not None:
                    raise UserError(f"Keras layer '{name}' ({cls}) ends in a {act} whose output reaches the model's "
                                    f"output through {changer}, which changes its values; deepvision reads the output "
                                    f"as logits and cannot leave that {act} out: end the model with the {act} (or "
                                    f"without it) and import again")
            elif _is_identity(entry) or cls in SHAPE_ONLY:
                reshaped |= changer is None and cls in SHAPE_ONLY
                stack += [(r, changer) for r in refs]
            else:
                stack += [(r, changer or f"Keras layer '{name}' ({cls})") for r in refs]

        def before(key: tuple[str, int] | None, skip_activation: bool) -> tuple[str, int] | None:
            """The layer call feeding `key`, past identities (and one Activation/Softmax layer)."""
            while key is not None and (_is_identity(by_call[key][0]) or (
                    skip_activation and by_call[key][0].get("class_name") in ("Activation", "Softmax"))):
                skip_activation &= _is_identity(by_call[key][0])
                refs = by_call[key][1]
                key = refs[0][:2] if len(refs) == 1 and refs[0][:2] in by_call else None
            return key

        dense = before(final, True) if not reshaped else None
        dense_entry = by_call[dense][0] if dense is not None else None
        return (by_call[final][0] if final else None,
                dense_entry if dense_entry is not None and dense_entry.get("class_name") == "Dense" else None, after)

    def _head_output(self, name: str, cls: str, key: str, xs: list[torch.Tensor], resized: bool, calls: int
                     ) -> None:
        """Make the final layer's output logits that predict's softmax turns into Keras' probabilities: a
        final softmax is left out; a one-unit sigmoid becomes the two-class logits [0, z] (softmax of them is
        [1 - p, p]); other sigmoid outputs (multi-label) cannot be represented and are refused. A fresh head
        (`resized`, fine-tuning) is a softmax classifier, so its sigmoid is left out too."""
        module = self.layers[key]
        if isinstance(module, KerasGraph):  # a nested model: its own final layer was handled when it was built
            changed = module.output_changed
            self.softmax_dropped |= module.softmax_dropped
        else:
            own = cls in ("Activation", "Softmax")
            act = module if own else getattr(module, "act", None)
            new: nn.Module | None = None
            if isinstance(act, kl.Softmax) and not act.log:
                out = module(*xs)
                if out.dim() != 2:  # one softmax per row or pixel: predict's one softmax over all is not it
                    raise UserError(f"Keras layer '{name}' ({cls}) ends the model with a softmax over output "
                                    f"{tuple(kl.to_keras(out).shape[1:])}, not over one score vector per image; "
                                    f"deepvision classifiers cannot represent it")
                new = nn.Identity()
                self.softmax_dropped = True
            elif isinstance(act, (nn.Sigmoid, nn.Hardsigmoid, kl.LegacyHardSigmoid)):
                out = module(*xs)
                width = int(out.shape[1]) if out.dim() >= 2 else 1
                if resized:
                    new = nn.Identity()
                elif isinstance(act, nn.Sigmoid) and width == 1:
                    new = kl.TwoClassLogits()
                else:
                    what = (f"a sigmoid over {width} outputs (independent yes/no scores: multi-label)"
                            if isinstance(act, nn.Sigmoid) else "a hard_sigmoid")
                    raise UserError(f"Keras layer '{name}' ({cls}) ends the model with {what}; deepvision "
                                    f"classifiers pick one class by softmax and cannot represent it")
            if new is not None:
                if own:
                    self.layers[key] = new
                else:
                    module.act = new
            changed = new is not None
        if changed and calls > 1:
            raise UserError(f"Keras layer '{name}' ({cls}) gives the model's output and is also used elsewhere; the "
                            f"importer changes its final activation (softmax left out, sigmoid as two classes) "
                            f"and cannot do so for one use only")
        self.output_changed |= changed

    def _make(self, cls: str, cfg: dict[str, Any], entry: dict[str, Any], xs: list[torch.Tensor],
              units: int | None, head: bool = False, after: str | None = None) -> nn.Module:
        x = xs[0]
        rank = x.dim()
        ch = int(x.shape[1]) if rank >= 2 else 1
        keras_shape = tuple(int(v) for v in kl.to_keras(x).shape[1:])
        fmt = cfg.get("data_format")
        if fmt not in (None, "channels_last"):
            raise UserError(f"Keras layer '{layer_name(entry)}' ({cls}) uses data_format {fmt}; only channels_last "
                            f"models are supported")
        if cls in MODEL_CLASSES:
            return KerasGraph(entry, keras_shape, keras_version="2" if self.legacy else "3", top=False,
                              materialize=False, head=head, after=after)
        nd = 1 if cls.endswith("1D") else 2
        if cls in ("Conv1D", "Conv2D", "Convolution2D"):
            return kl.Conv("conv", nd, ch, cfg, self.legacy)
        if cls in ("SeparableConv2D", "SeparableConvolution2D"):
            return kl.Conv("separable", 2, ch, cfg, self.legacy)
        if cls == "DepthwiseConv2D":
            return kl.Conv("depthwise", 2, ch, cfg, self.legacy)
        if cls == "Conv2DTranspose":
            return kl.Conv("transpose", 2, ch, cfg, self.legacy)
        if cls == "Dense":
            return kl.Dense(keras_shape[-1], cfg, self.legacy, units)
        if cls == "BatchNormalization":
            return kl.batch_norm(rank, ch, cfg)
        if cls == "LayerNormalization":
            return kl.LayerNorm(keras_shape, cfg)
        if cls == "Activation":
            return kl.make_activation(cfg.get("activation"), self.legacy)
        if cls == "Softmax":
            return kl.Softmax(_softmax_axis(cfg.get("axis", -1), len(keras_shape)))
        if cls == "LeakyReLU":
            return nn.LeakyReLU(float(cfg.get("negative_slope", cfg.get("alpha", 0.3))))
        if cls == "ELU":
            return nn.ELU(float(cfg.get("alpha", 1.0)))
        if cls == "ReLU":
            mv = cfg.get("max_value")
            return kl.KerasReLU(None if mv is None else float(mv), float(cfg.get("negative_slope", 0.0) or 0.0),
                                float(cfg.get("threshold", 0.0) or 0.0))
        if cls == "PReLU":
            shared = cfg.get("shared_axes") or []
            shared = [shared] if isinstance(shared, int) else shared
            alpha = tuple(1 if (i + 1) in shared else s for i, s in enumerate(keras_shape))
            return kl.PReLU(alpha)
        if "Pool" in cls:
            kind = "max" if "Max" in cls else "avg"
            if cls.startswith("Global"):
                return kl.GlobalPool(kind, kl.flag(cfg, "keepdims"))
            return kl.Pool(kind, nd, cfg)
        if cls.startswith("ZeroPadding"):
            return kl.ZeroPad(nd, cfg)
        if cls.startswith("Cropping"):
            return kl.Crop(nd, cfg)
        if cls.startswith("UpSampling"):
            return kl.UpSample(nd, cfg)
        if cls == "Flatten":
            return kl.Flatten()
        if cls == "Reshape":
            return kl.Reshape(tuple(int(v) for v in cfg["target_shape"]))
        if cls == "Permute":
            return kl.Permute(tuple(int(v) for v in cfg["dims"]))
        if cls == "Rescaling":
            return kl.Rescaling(cfg.get("scale", 1.0), cfg.get("offset", 0.0))
        if cls == "Normalization":
            return kl.Normalization(ch, cfg, rank)
        if cls == "Dropout":
            return nn.Dropout(float(cfg.get("rate", 0.5)))
        if cls == "SpatialDropout2D":
            return nn.Dropout2d(float(cfg.get("rate", 0.5)))
        if cls == "SpatialDropout1D":
            return nn.Dropout1d(float(cfg.get("rate", 0.5)))
        if cls == "AlphaDropout":
            return nn.AlphaDropout(float(cfg.get("rate", 0.5)))
        if cls == "GaussianNoise":
            return kl.GaussianNoise(float(cfg.get("stddev", 0.0)))
        if cls == "GaussianDropout":
            rate = float(cfg.get("rate", 0.0))
            return kl.GaussianNoise((rate / (1 - rate)) ** 0.5 if rate < 1 else 0.0, multiplicative=True)
        return nn.Identity()  # ActivityRegularization

    @torch.no_grad()
    def _reset(self) -> None:
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()

    # -- running ----------------------------------------------------------------------------------
    def _step(self, kind: str, key: str, xs: list[torch.Tensor], cfg: dict[str, Any],
              operands: list[float | None] | None = None) -> torch.Tensor:
        if kind == "module":
            return self.layers[key](*xs)
        if kind.startswith("op:"):
            tensors = iter(xs)
            values = [next(tensors) if v is None else v for v in operands or []]
            a, b = values[0], values[1]
            fn = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div}.get(kind[3:])
            if fn is not None:
                return fn(a, b) if isinstance(a, torch.Tensor) else fn(torch.as_tensor(a, dtype=b.dtype), b)
            pick = torch.maximum if kind == "op:max" else torch.minimum
            a = a if isinstance(a, torch.Tensor) else torch.full_like(b, a)
            b = b if isinstance(b, torch.Tensor) else torch.full_like(a, b)
            return pick(a, b)
        if kind == "concat":
            return torch.cat(xs, dim=kl.torch_axis(int(cfg.get("axis", -1)), xs[0].dim()))
        y = xs[0]
        for t in xs[1:]:
            if kind in ("add", "avg"):
                y = y + t
            elif kind == "sub":
                y = y - t
            elif kind == "mul":
                y = y * t
            elif kind == "max":
                y = torch.maximum(y, t)
            else:
                y = torch.minimum(y, t)
        return y / len(xs) if kind == "avg" else y

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Logits for (N, C, H, W) images (the final softmax of the Keras model is left out)."""
        values = {self.input_ref: inputs[0]}
        for name, entry in self.entries.items():
            if entry.get("class_name") == "InputLayer":
                values[(name, 0, 0)] = inputs[0]
        for name, call, kind, key, refs in self.steps:
            cfg = self.entries[name].get("config", {}) if kind == "concat" else {}
            values[(name, call, 0)] = self._step(kind, key, [values[r] for r in refs], cfg,
                                                 self.op_args.get((name, call)))
        return values[self.output_ref]

    # -- weights ----------------------------------------------------------------------------------
    def entry(self, path: str) -> dict[str, Any]:
        """The config entry of layer 'outer/inner/layer'."""
        head, _, rest = path.partition("/")
        if rest:
            return self.layers[self.keys[head]].entry(rest)
        return self.entries[head]

    def module_at(self, path: str) -> nn.Module:
        """The module of layer 'outer/inner/layer'."""
        head, _, rest = path.partition("/")
        module = self.layers[self.keys[head]]
        return module.module_at(rest) if rest else module

    def weighted_layers(self, prefix: str = "") -> list[tuple[str, nn.Module]]:
        """('outer/inner/layer', module) for every layer that takes Keras weights, nested models included."""
        out = []
        for name, key in self.keys.items():
            if key not in self.layers:  # merge layers hold no module
                continue
            module = self.layers[key]
            if isinstance(module, KerasGraph):
                out += module.weighted_layers(f"{prefix}{name}/")
            elif hasattr(module, "keras_shapes") and module.keras_shapes():
                out.append((f"{prefix}{name}", module))
        return out


def _own_classes(cfg: dict[str, Any], final: dict[str, Any] | None) -> Any:
    """The classes a final Dense stands for: its units, 2 for a one-unit sigmoid (read as [1 - p, p]), its
    own or that of the `final` Activation layer after it."""
    units = cfg.get("units")
    acts = {kl.activation_name(cfg.get("activation")), _head_activation(final) if final is not None else None}
    return 2 if units == 1 and "sigmoid" in acts else units


def read_config(path: str | Path) -> dict[str, Any]:
    """A Keras model config saved as JSON ({"class_name": ..., "config": ...})."""
    path = regular_file(path, "Keras model config")
    data = parse_json(read_bytes(path, "Keras model config"), str(path))
    if not isinstance(data, dict) or data.get("class_name") not in MODEL_CLASSES:
        raise UserError(f"{path} is not a Keras model config (class_name Sequential, Functional or Model)")
    check_layer_configs(data)
    return data


def keras_graph(num_classes: int = 0, in_channels: int = 3, config: str = "",
                input_size: int | tuple[int, int] | None = None, keras_version: str = "3") -> nn.Module:
    """A Keras model config (`config`: path of a JSON file written by `deepvision import keras`)."""
    if not config:
        raise ValueError("model keras:graph needs the option config: PATH of a Keras model config JSON file")
    model = read_config(config)
    num_classes = num_classes or 0  # None: the file's own head
    stated = input_shape(model)
    shape = None
    if input_size is not None and stated is not None and len(stated) == 3:
        h, w = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        shape = (int(h), int(w), stated[2] if stated[2] is not None else in_channels)
    graph = KerasGraph(model, shape, num_classes, keras_version)
    graph.check_scores()
    return graph


def _provider(name: str) -> ModelSpec:
    if name != "graph":
        raise UserError(f"unknown model 'keras:{name}'; the Keras namespace has one model, keras:graph "
                        f"(option config: PATH), written by `deepvision import keras`")
    return ModelSpec("keras:graph", keras_graph, (3, 224, 224), 0,
                     "a Keras model config (option config: keras-config.json) as a PyTorch module")


register_provider("keras", _provider)


def _softmax_axis(axis: Any, rank: int) -> int | tuple[int, ...]:
    """A Softmax layer's `axis`: one axis, or a list of distinct axes, of a rank-`rank` sample
    (the batch axis is not one of them); UserError naming the value otherwise."""
    axes = axis if isinstance(axis, list) else [axis]
    good = axes and all(isinstance(a, int) and not isinstance(a, bool) and -rank <= a <= rank and a != 0
                        for a in axes)
    if not good or len({a % (rank + 1) for a in axes}) != len(axes):
        raise UserError(f"axis {axis!r} must be one axis or a list of distinct axes from 1 to {rank} "
                         f"(or negative, counted from the end)")
    return axes[0] if len(axes) == 1 else tuple(axes)
