"""Read an MXNet symbol file (`prefix-symbol.json`) into a plain graph, with MXNet's attribute defaults.

The JSON lists nodes in topological order: `{"op", "name", "attrs", "inputs": [[node, output, version],
...]}`; variables (data, weights, labels) are nodes with op "null". Files written by MXNet before
0.9 keep the attributes under "param" or "attr" instead of "attrs", and inputs as [node, output]
pairs; all spellings are read. Attribute values are strings ("(3, 3)", "True", "0.001"); `Node`
parses them on demand with the operator's default when an attribute is absent: MXNet writes only the
attributes a script set, so the defaults matter (BatchNorm eps 1e-3 and fix_gamma true, Pooling
convention "valid", LeakyReLU slope 0.25, ...).

No MXNet is needed; nothing here executes code from the file.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepvision.errors import UserError
from deepvision.safeload import ParseError, input_file, is_plain_number_text, load_json, printable, read_bytes

MAX_SYMBOL_BYTES = 64 * 2**20  # the largest zoo graphs (ResNet-152, Inception) are under 1 MB of JSON

MAX_ATTR_INT = 1 << 20  # channels, window sizes, strides: any real network stays far below

# Inputs that are parameters or labels rather than data, per operator (positions after the data input).
PARAM_INPUTS: dict[str, tuple[str, ...]] = {
    "Convolution": ("weight", "bias"),
    "Deconvolution": ("weight", "bias"),
    "FullyConnected": ("weight", "bias"),
    "BatchNorm": ("gamma", "beta", "moving_mean", "moving_var"),
    "LeakyReLU": ("gamma",),
    "SoftmaxOutput": ("label",),
    "Softmax": ("label",),
    "LinearRegressionOutput": ("label",),
    "LogisticRegressionOutput": ("label",),
    "MAERegressionOutput": ("label",),
    "SVMOutput": ("label",),
}
AUX_INPUTS = {"moving_mean", "moving_var"}
# Operators whose output is the network's probability head (stripped: deepvision models return logits).
SOFTMAX_HEADS = {"SoftmaxOutput", "Softmax", "softmax", "SoftmaxActivation"}

# Defaults of the attributes the importer reads (MXNet 1.x operator documentation).
DEFAULTS: dict[str, dict[str, Any]] = {
    "Convolution": {"stride": None, "dilate": None, "pad": None, "num_group": 1, "no_bias": False, "layout": None},
    "FullyConnected": {"no_bias": False, "flatten": True},
    "BatchNorm": {"eps": 1e-3, "momentum": 0.9, "fix_gamma": True, "use_global_stats": False, "axis": 1},
    "Pooling": {"pool_type": "max", "global_pool": False, "pooling_convention": "valid", "stride": None,
                "pad": None, "count_include_pad": True, "kernel": None, "layout": None, "p_value": None},
    "Activation": {},
    "LeakyReLU": {"act_type": "leaky", "slope": 0.25, "lower_bound": 0.125, "upper_bound": 0.334},
    "LRN": {"alpha": 1e-4, "beta": 0.75, "knorm": 2.0},
    "Concat": {"dim": 1},
    "concat": {"dim": 1},
    "Dropout": {"p": 0.5, "mode": "training"},
    "Reshape": {"reverse": False, "shape": None, "target_shape": None},
    "reshape": {"reverse": False, "shape": None, "target_shape": None},
    "softmax": {"axis": -1, "temperature": None, "use_length": False},
    "SoftmaxActivation": {"mode": "instance"},
    "SoftmaxOutput": {"multi_output": False, "preserve_shape": False},
    "clip": {},
}


def parse_value(text: Any) -> Any:
    """An MXNet attribute string as a Python value: '(3, 3)' -> (3, 3), 'True' -> True, '1e-3' -> 0.001.
    Numbers are read as plain ASCII numbers only: other text ('2_0', '٥٠٠') stays text, refused where a
    number is needed."""
    if not isinstance(text, str):
        return text
    s = text.strip()
    if s in ("True", "true"):
        return True
    if s in ("False", "false"):
        return False
    if s == "None":
        return None
    if not is_plain_number_text(s):  # int() reads '2_0' as 20 and other scripts' digits; MXNet refuses both
        return s
    if s.startswith(("(", "[")):
        try:
            value = ast.literal_eval(s.replace("L", ""))  # Python 2 era files wrote (3L, 3L)
        except (ValueError, SyntaxError):
            return s
        return tuple(value) if isinstance(value, (list, tuple)) else (value,)
    try:
        return int(s)
    except ValueError:
        pass
    try:
        return float(s)
    except ValueError:
        return s


@dataclass
class Node:
    index: int
    op: str  # "null" for variables
    name: str
    attrs: dict[str, str]
    inputs: list[tuple[int, int]]  # (node index, output index)

    def get(self, key: str, default: Any = ...) -> Any:
        """Attribute `key` parsed, else the operator's MXNet default (or `default` when given)."""
        if key in self.attrs:
            return parse_value(self.attrs[key])
        if default is not ...:
            return default
        return DEFAULTS.get(self.op, {}).get(key)

    def integer(self, key: str, low: int = 1, high: int = MAX_ATTR_INT) -> int:
        """Attribute `key` as a whole number in [low, high]; UserError naming the node otherwise."""
        value = self.get(key)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if value is None:
            raise UserError(f"MXNet node '{self.name}' ({self.op}): no {key} attribute")
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise UserError(f"MXNet node '{self.name}' ({self.op}): {key}={self.attrs.get(key, value)!s} must be a "
                            f"whole number from {low} to {high}")
        return value

    def number(self, key: str, low: float = -math.inf, high: float = math.inf) -> float:
        """Attribute `key` as a finite number in [low, high]; UserError naming the node otherwise."""
        value = self.get(key)
        if value is None:
            raise UserError(f"MXNet node '{self.name}' ({self.op}): no {key} attribute")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not low <= value <= high:
            bounds = "" if (low, high) == (-math.inf, math.inf) else f" in [{low:g}, {high:g}]"
            raise UserError(f"MXNet node '{self.name}' ({self.op}): {key}={self.attrs.get(key, value)!s} must be a "
                            f"finite number{bounds}")
        return float(value)

    def flag(self, key: str, optional: bool = False) -> bool:
        """Yes/no attribute `key` read as MXNet's parameter parser reads it: true, false, 1 or 0 in any case
        (and, for an `optional` one, None: the default); any other text ("yes", "2") MXNet refuses, so
        does this (UserError naming the node)."""
        raw = self.attrs.get(key)
        word = None if raw is None else raw.lower()
        if word is None or (optional and word == "none"):
            return bool(DEFAULTS.get(self.op, {}).get(key))
        if word in ("true", "1", "false", "0"):
            return word in ("true", "1")
        raise UserError(f"MXNet node '{self.name}' ({self.op}): {key}={printable(raw)[:40]} must be true, false, 1 "
                        f"or 0 (any case{', or None' if optional else ''}), the values MXNet reads")

    def check_flags(self) -> None:
        """Read every yes/no attribute the importer knows for this operator, so a value MXNet refuses is
        refused before any shape is tried (count_include_pad is MXNet's optional<bool>: None allowed)."""
        for key, default in DEFAULTS.get(self.op, {}).items():
            if isinstance(default, bool) and key in self.attrs:
                self.flag(key, optional=key == "count_include_pad")

    def pair(self, key: str, fill: int, low: int = 1) -> tuple[int, int]:
        """A 2-D tuple attribute (kernel, stride, pad, dilate); `fill` when absent or empty. Each value
        must be a whole number from `low` to MAX_ATTR_INT."""
        value = self.get(key)
        if value is None or value == ():
            return fill, fill
        if not isinstance(value, tuple):
            value = (value, value)  # a bare number: the same on both axes
        if len(value) != 2:  # "(3,)" is a 1-D window, which MXNet refuses on images as well
            raise UserError(f"MXNet node '{self.name}' ({self.op}): {key}={self.attrs.get(key)} is not 2-D; "
                            f"only 2-D images are supported")
        if not all(isinstance(v, int) and not isinstance(v, bool) and low <= v <= MAX_ATTR_INT for v in value):
            raise UserError(f"MXNet node '{self.name}' ({self.op}): {key}={self.attrs.get(key)} must hold whole "
                            f"numbers from {low} to {MAX_ATTR_INT}")
        return value[0], value[1]

    @property
    def param_roles(self) -> tuple[str, ...]:
        if self.op == "LeakyReLU" and self.get("act_type") != "prelu":
            return ()
        if self.op == "Convolution" or self.op == "FullyConnected":
            return ("weight",) if self.flag("no_bias") else ("weight", "bias")
        return PARAM_INPUTS.get(self.op, ())


@dataclass
class Symbol:
    nodes: list[Node]
    heads: list[tuple[int, int]]
    path: str = ""
    version: int | None = None
    consumers: dict[int, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for node in self.nodes:
            for src, _ in self.data_inputs(node):
                self.consumers.setdefault(src, []).append(node.index)

    @property
    def output(self) -> Node:
        return self.nodes[self.heads[0][0]]

    def data_inputs(self, node: Node) -> list[tuple[int, int]]:
        """The inputs of `node` that carry data (not weights, statistics or labels)."""
        if node.op == "null":
            return []
        n_params = len(PARAM_INPUTS.get(node.op, ()))
        if node.op in ("Convolution", "FullyConnected", "Deconvolution"):
            return node.inputs[:1]
        if node.op == "LeakyReLU":
            return node.inputs[:1]
        if n_params:
            return node.inputs[: max(1, len(node.inputs) - n_params)]
        return list(node.inputs)

    def params_of(self, node: Node) -> dict[str, str]:
        """{role: variable name} of a node's parameters, e.g. {'weight': 'conv1_weight', 'bias': ...}."""
        if node.op == "null":
            return {}
        roles = node.param_roles
        extra = node.inputs[1:]
        return {role: self.nodes[i].name for role, (i, _) in zip(roles, extra) if role != "label"}

    def input_nodes(self) -> list[Node]:
        """Variables fed as data (not as parameters or labels): normally just 'data'."""
        used: list[int] = []
        for node in self.nodes:
            for src, _ in self.data_inputs(node):
                if self.nodes[src].op == "null" and src not in used:
                    used.append(src)
        return [self.nodes[i] for i in used]

    def ancestors(self, index: int) -> set[int]:
        """Every node the given node depends on through data inputs (itself included)."""
        seen, stack = set(), [index]
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            stack.extend(src for src, _ in self.data_inputs(self.nodes[i]))
        return seen


def parse_symbol(text: str, path: str = "symbol") -> Symbol:
    """Parse symbol JSON text; UserError naming the file when it is not an MXNet symbol."""
    try:
        raw = load_json(text, path)
    except ParseError as exc:
        raise UserError(f"{exc}; give the -symbol.json file MXNet wrote") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("nodes"), list) or "heads" not in raw:
        raise UserError(f"{path} is not an MXNet symbol file (no 'nodes'/'heads'); give the -symbol.json file")
    nodes = []
    try:
        for i, item in enumerate(raw["nodes"]):
            if not isinstance(item, dict):
                raise TypeError(f"node {i} is not a JSON object")
            attrs: dict[str, str] = {}
            spelled: dict[str, str] = {}  # the field each attribute came from (MXNet 0.9 wrote param/attr)
            for key in ("param", "attr", "attrs"):
                for k, v in (item[key] if isinstance(item.get(key), dict) else {}).items():
                    if k in attrs and attrs[k] != str(v):  # which one MXNet ran, the file does not say
                        raise ValueError(f"node {i} ({str(item.get('name'))[:40]}) gives {str(k)[:40]} twice with "
                                         f"two values ({spelled[k]}: {attrs[k][:20]}, {key}: {str(v)[:20]})")
                    attrs[k], spelled[k] = str(v), key
            inputs = [(_index(e[0]), _index(e[1]) if len(e) > 1 else 0) for e in item.get("inputs", [])]
            if any(not 0 <= src < i or out < 0 for src, out in inputs):
                raise ValueError(f"node {i} reads node {inputs}, not an earlier node")
            nodes.append(Node(i, str(item["op"]), str(item["name"]), attrs, inputs))
        seen: dict[str, int] = {}
        for node in nodes:  # one argument fed by one array: a second variable of a name would share it
            if node.op == "null" and seen.setdefault(node.name, node.index) != node.index:
                raise UserError(f"{path}: two variable nodes are both named {printable(node.name)[:60]!r} (nodes "
                                f"{seen[node.name]} and {node.index}); argument names are unique in MXNet, which "
                                f"refuses to bind this symbol")
        heads = [(_index(h[0]), _index(h[1]) if len(h) > 1 else 0) for h in raw["heads"]]
        if not heads or any(not 0 <= h[0] < len(nodes) or h[1] < 0 for h in heads):
            raise ValueError(f"heads {heads} name no node of the {len(nodes)}")
    except (KeyError, TypeError, ValueError, IndexError, OverflowError) as exc:
        raise UserError(f"{path} is a damaged MXNet symbol file ({exc})") from None
    version = raw.get("attrs", {}).get("mxnet_version") if isinstance(raw.get("attrs"), dict) else None
    if isinstance(version, list) and len(version) == 2:
        version = version[1]
    return Symbol(nodes, heads, path, int(version) if isinstance(version, int) else None)


def _index(value: Any) -> int:
    """A node or output index as MXNet writes it (a JSON integer); 5.5, "5" or true would name a node
    the file does not mean."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"index {value!r} is not an integer")
    return value


def read_symbol(path: str | Path) -> Symbol:
    """Read `prefix-symbol.json`."""
    path = input_file(path, "MXNet symbol file")  # a FIFO is named, never opened
    try:
        text = read_bytes(path, "MXNet symbol file", MAX_SYMBOL_BYTES).decode("utf-8")
    except FileNotFoundError:
        raise UserError(f"MXNet symbol file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    return parse_symbol(text, str(path))
