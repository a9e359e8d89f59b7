"""A PyTorch module built from an MXNet symbol graph: `mxnet:graph` with option `symbol: PATH`.

Any MXNet classification network written with the symbol API (or exported from Gluon) becomes an
`nn.Module` that computes what MXNet computes, so an imported checkpoint runs without MXNet. The
module is rebuilt from the symbol file every time (nothing is pickled); its state dict holds the
weights under `layers.<node name>.*`. Operators (MXNet 1.x names and defaults):

    Convolution (groups, dilation, no_bias), FullyConnected (flatten), BatchNorm (eps, fix_gamma:
    gamma is 1), Activation (relu, sigmoid, tanh, softrelu, softsign), LeakyReLU (leaky, elu, prelu,
    selu, gelu, rrelu at inference), Pooling (max, avg, sum; valid/full convention; global;
    count_include_pad), LRN, Flatten, Concat, elemwise_add / _Plus / broadcast_add / add_n,
    elemwise_mul / elemwise_sub, the *_scalar arithmetic, clip, Dropout (inference: identity),
    Reshape (0, -1 and positive sizes), softmax / SoftmaxActivation, identity / BlockGrad / _copy,
    and a final SoftmaxOutput / Softmax / softmax, which is dropped: the module returns logits.

Anything else is refused with one line naming every unsupported operator. A Pooling window that
PyTorch would size differently from MXNet's "full" convention is refused naming the layer.

`num_classes` other than the symbol's replaces the classifier (the last FullyConnected or
Convolution before the output) with a freshly initialised one, for fine-tuning; 0 keeps the symbol's.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepvision.errors import UserError
from deepvision.models.mxnet_symbol import SOFTMAX_HEADS, Node, Symbol, read_symbol
from deepvision.models.registry import ModelSpec, register_provider
from deepvision.models.shapes import hw

ADD_OPS = {"elemwise_add", "_Plus", "_plus", "_add", "broadcast_add", "broadcast_plus", "add_n", "ElementWiseSum"}
MUL_OPS = {"elemwise_mul", "_Mul", "_mul", "broadcast_mul"}
SUB_OPS = {"elemwise_sub", "_Minus", "_minus", "_sub", "broadcast_sub", "broadcast_minus"}
CONCAT_OPS = {"Concat", "concat"}
SCALAR_OPS = {"_mul_scalar", "_MulScalar", "_plus_scalar", "_PlusScalar", "_minus_scalar", "_MinusScalar",
              "_rminus_scalar", "_RMinusScalar", "_div_scalar", "_DivScalar", "_rdiv_scalar", "_RDivScalar"}
IDENTITY_OPS = {"Dropout", "_copy", "identity", "BlockGrad", "stop_gradient", "Cast", "cast"}
MODULE_OPS = {"Convolution", "FullyConnected", "BatchNorm", "Activation", "LeakyReLU", "Pooling", "LRN",
              "Flatten", "flatten", "Reshape", "reshape", "softmax", "SoftmaxActivation", "clip", "relu",
              "sigmoid", "tanh"}
SUPPORTED = ADD_OPS | MUL_OPS | SUB_OPS | CONCAT_OPS | SCALAR_OPS | IDENTITY_OPS | MODULE_OPS | SOFTMAX_HEADS
_ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "softrelu": nn.Softplus,
                "softsign": nn.Softsign}


class FullyConnected(nn.Linear):
    """nn.Linear that first flattens its input to (N, -1) when MXNet's `flatten` is true (its default)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, flatten: bool = True) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.flatten = flatten

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.flatten(1) if self.flatten and x.dim() > 2 else x)


class ScalarOp(nn.Module):
    def __init__(self, op: str, scalar: float) -> None:
        super().__init__()
        self.op, self.scalar = op.lower().strip("_").replace("scalar", "").strip("_"), float(scalar)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.scalar
        return {"mul": lambda: x * s, "plus": lambda: x + s, "minus": lambda: x - s, "rminus": lambda: s - x,
                "div": lambda: x / s, "rdiv": lambda: s / x}[self.op]()

    def extra_repr(self) -> str:
        return f"{self.op} {self.scalar:g}"


class GlobalPool(nn.Module):
    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "max":
            return x.amax(dim=(2, 3), keepdim=True)
        if self.mode == "sum":
            return x.sum(dim=(2, 3), keepdim=True)
        return x.mean(dim=(2, 3), keepdim=True)


class SumPool2d(nn.Module):
    """MXNet's sum pooling: zero padding (plus what the 'full' convention needs), then window sums.

    Written as average x window area over explicitly padded input, since torch.onnx drops AvgPool's
    `divisor_override`."""

    def __init__(self, kernel: tuple[int, int], stride: tuple[int, int], pad: tuple[int, int], full: bool) -> None:
        super().__init__()
        self.kernel, self.stride, self.pad, self.full = kernel, stride, pad, full

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        extra = []
        for i in (1, 0):  # F.pad takes the last dimension first
            size, k, s, p = x.shape[2 + i], self.kernel[i], self.stride[i], self.pad[i]
            out = _pool_size(size, k, s, p, self.full)
            extra += [p, max(p, (out - 1) * s + k - size - p)]
        y = nn.functional.pad(x, extra)
        return nn.functional.avg_pool2d(y, self.kernel, self.stride) * (self.kernel[0] * self.kernel[1])


class Reshape(nn.Module):
    """MXNet Reshape with 0 (copy the input's size), -1 (infer) and positive sizes."""

    def __init__(self, spec: tuple[int, ...]) -> None:
        super().__init__()
        self.spec = tuple(int(s) for s in spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape([x.shape[i] if s == 0 else s for i, s in enumerate(self.spec)])


class Softmax(nn.Module):
    def __init__(self, dim: int, temperature: float = 1.0) -> None:
        super().__init__()
        self.dim, self.temperature = dim, temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x / self.temperature if self.temperature != 1.0 else x, dim=self.dim)


class Clip(nn.Module):
    def __init__(self, low: float, high: float) -> None:
        super().__init__()
        self.low, self.high = low, high

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(self.low, self.high)


def _node_error(node: Node, what: str) -> UserError:
    return UserError(f"MXNet node '{node.name}' ({node.op}): {what}")


def _pool_size(size: int, k: int, s: int, p: int, full: bool) -> int:
    span = size + 2 * p - k
    return 1 + (math.ceil(span / s) if full else span // s)


def _make_module(node: Node, inputs: list[torch.Tensor], out_override: int | None) -> nn.Module:
    """The nn.Module computing `node` (created on the current default device)."""
    op, x = node.op, inputs[0]
    if op == "Convolution":
        if x.dim() != 4 or node.get("layout") not in (None, "NCHW"):
            raise _node_error(node, f"only 2-D NCHW convolution is supported (input {tuple(x.shape)})")
        if node.get("kernel") is None:
            raise _node_error(node, "no kernel attribute")
        out = out_override or int(node.get("num_filter"))
        groups = int(node.get("num_group"))
        if x.shape[1] % groups or out % groups:
            raise _node_error(node, f"{x.shape[1]} input / {out} output channels do not split into {groups} groups")
        return nn.Conv2d(x.shape[1], out, node.pair("kernel", 1), node.pair("stride", 1), node.pair("pad", 0),
                         node.pair("dilate", 1), groups, bias=not node.flag("no_bias"))
    if op == "FullyConnected":
        flatten = node.flag("flatten")
        width = math.prod(x.shape[1:]) if flatten else x.shape[-1]
        return FullyConnected(width, out_override or int(node.get("num_hidden")), not node.flag("no_bias"), flatten)
    if op == "BatchNorm":
        if int(node.get("axis")) != 1:
            raise _node_error(node, f"axis={node.get('axis')}: only channel axis 1 is supported")
        cls = nn.BatchNorm2d if x.dim() == 4 else nn.BatchNorm1d
        bn = cls(x.shape[1], eps=float(node.get("eps")), momentum=1.0 - float(node.get("momentum")))
        if node.flag("fix_gamma"):
            bn.weight.requires_grad_(False)  # MXNet uses gamma = 1 whatever the file holds
        bn.fix_gamma = node.flag("fix_gamma")  # type: ignore[attr-defined]
        return bn
    if op == "Activation" or op in ("relu", "sigmoid", "tanh"):
        act = node.get("act_type") if op == "Activation" else op
        if act not in _ACTIVATIONS:
            raise _node_error(node, f"act_type '{act}' is not supported (valid: {', '.join(_ACTIVATIONS)})")
        return _ACTIVATIONS[act]()
    if op == "LeakyReLU":
        act, slope = node.get("act_type"), float(node.get("slope"))
        if act == "prelu":
            return nn.PReLU(x.shape[1], init=0.25)
        made = {"leaky": lambda: nn.LeakyReLU(slope), "elu": lambda: nn.ELU(slope), "selu": nn.SELU,
                "gelu": nn.GELU,
                "rrelu": lambda: nn.LeakyReLU((float(node.get("lower_bound")) + float(node.get("upper_bound"))) / 2)}
        if act not in made:
            raise _node_error(node, f"act_type '{act}' is not supported (valid: prelu, {', '.join(made)})")
        return made[act]()
    if op == "Pooling":
        return _pooling(node, x)
    if op == "LRN":
        if node.get("nsize") is None:
            raise _node_error(node, "no nsize attribute")
        return nn.LocalResponseNorm(int(node.get("nsize")), float(node.get("alpha")), float(node.get("beta")),
                                    float(node.get("knorm")))
    if op in ("Flatten", "flatten"):
        return nn.Flatten()
    if op in ("Reshape", "reshape"):
        spec = node.get("shape")
        if node.flag("reverse") or spec is None or any(int(s) < -1 for s in spec):
            raise _node_error(node, f"shape={node.attrs.get('shape', node.attrs.get('target_shape'))}"
                                    f"{' reverse=True' if node.flag('reverse') else ''}: only 0, -1 and positive "
                                    f"sizes are supported")
        return Reshape(spec)
    if op == "softmax":
        return Softmax(int(node.get("axis")), float(node.get("temperature") or 1.0))
    if op in ("SoftmaxActivation", "SoftmaxOutput", "Softmax"):
        return Softmax(1)
    if op == "clip":
        return Clip(float(node.get("a_min")), float(node.get("a_max")))
    if op in SCALAR_OPS:
        return ScalarOp(op, float(node.get("scalar")))
    if op in ("Cast", "cast") and str(node.get("dtype")) not in ("float32", "None"):
        raise _node_error(node, f"Cast to {node.get('dtype')} is not supported (only float32)")
    return nn.Identity()


def _pooling(node: Node, x: torch.Tensor) -> nn.Module:
    pool_type, convention = node.get("pool_type"), node.get("pooling_convention")
    if pool_type not in ("max", "avg", "sum"):
        raise _node_error(node, f"pool_type '{pool_type}' is not supported (valid: max, avg, sum)")
    if x.dim() != 4:
        raise _node_error(node, f"only 2-D pooling is supported (input {tuple(x.shape)})")
    if node.flag("global_pool"):
        return GlobalPool(pool_type)
    if convention not in ("valid", "full"):
        raise _node_error(node, f"pooling_convention '{convention}' is not supported (valid, full)")
    if node.get("kernel") is None:
        raise _node_error(node, "no kernel attribute")
    k, s, p = node.pair("kernel", 1), node.pair("stride", 1), node.pair("pad", 0)
    full = convention == "full"
    if pool_type == "max":
        module: nn.Module = nn.MaxPool2d(k, s, p, ceil_mode=full)
    elif pool_type == "sum":
        module = SumPool2d(k, s, p, full)
    else:
        include = node.get("count_include_pad")
        module = nn.AvgPool2d(k, s, p, ceil_mode=full, count_include_pad=include is None or bool(include))
    want = tuple(_pool_size(x.shape[2 + i], k[i], s[i], p[i], full) for i in range(2))
    try:
        got = tuple(module(x).shape[2:])
    except RuntimeError as exc:
        raise _node_error(node, f"cannot pool input {tuple(x.shape)} with kernel {k}, stride {s}, pad {p} "
                                f"({str(exc).splitlines()[0]})") from None
    if got != want:
        raise _node_error(node, f"MXNet's '{convention}' convention gives {want} for input {tuple(x.shape)}, "
                                f"PyTorch {got}; this window/stride/pad combination is not supported")
    return module


def _key(name: str, taken: set[str]) -> str:
    key = re.sub(r"[^0-9A-Za-z_]", "_", name) or "node"
    if hasattr(nn.ModuleDict(), key) or key[0].isdigit():
        key = f"n_{key}"
    base, k = key, 2
    while key in taken:
        key, k = f"{base}_{k}", k + 1
    taken.add(key)
    return key


class MXNetGraph(nn.Module):
    """Runs an MXNet symbol graph; `mx_params[key]` maps each module's tensors to MXNet variable names.

    `input_size` (H, W) fixes the width of layers after a flatten; `materialize=False` keeps the
    layers on the meta device (shapes only).
    """

    def __init__(self, symbol: Symbol, in_channels: int = 3, input_size: int | tuple[int, int] = 224,
                 num_classes: int = 0, materialize: bool = True) -> None:
        super().__init__()
        self.symbol_path = symbol.path
        self.layers = nn.ModuleDict()
        self.mx_params: dict[str, dict[str, str]] = {}
        self.node_keys: dict[int, str] = {}
        self.steps: list[tuple[int, str, str, tuple[int, ...], tuple[int, ...]]] = []
        output, self.softmax_head = _strip_softmax(symbol)
        needed = symbol.ancestors(output.index)
        _check_supported(symbol, needed)
        data = [n for n in symbol.input_nodes() if n.index in needed]
        if len(data) != 1:
            raise UserError(f"{symbol.path}: the graph must have one data input, found "
                            f"{', '.join(n.name for n in data) or 'none'}")
        self.input_index, self.output_index = data[0].index, output.index
        self.input_name = data[0].name
        head = _classifier(symbol, output)
        self.head_key: str | None = None
        self.feature_index: int | None = None
        height, width = hw(input_size)
        taken: set[str] = set()
        with torch.device("meta"):
            values = {self.input_index: torch.empty(1, in_channels, height, width)}
            for node in symbol.nodes:
                if node.op == "null" or node.index not in needed:
                    continue
                ins = symbol.data_inputs(node)
                if any(idx != 0 for _, idx in ins):
                    raise _node_error(node, "reads a second output of a multi-output operator (not supported)")
                xs = [values[i] for i, _ in ins]
                key = _key(node.name, taken)
                kind = _kind(node.op)
                if kind == "module":
                    override = num_classes if head is not None and node.index == head.index and num_classes > 0 \
                        else None
                    self.layers[key] = _make_module(node, xs, override).eval()  # BN on 1 sample
                    self.mx_params[key] = _param_names(symbol, node)
                    if head is not None and node.index == head.index:
                        self.head_key, self.feature_index = key, ins[0][0]
                self.node_keys[node.index] = key
                self.steps.append((node.index, kind, key, tuple(i for i, _ in ins), ()))
                try:
                    values[node.index] = self._step(kind, key, xs)
                except RuntimeError as exc:
                    shapes = ", ".join(str(tuple(x.shape)) for x in xs)
                    raise _node_error(node, f"cannot take input {shapes} ({str(exc).splitlines()[0]}); check "
                                            f"the input size") from None
            out_shape = tuple(values[self.output_index].shape)
        self.output_shape = out_shape[1:]
        if num_classes > 0 and out_shape[1] != num_classes:
            raise UserError(f"{symbol.path}: the graph has {out_shape[1]} outputs and no final FullyConnected or "
                            f"Convolution to resize to {num_classes} classes")
        self.num_classes = out_shape[1]
        self._plan_release()
        if materialize:  # else the layers stay on the meta device: shapes only, for inspection
            self.to_empty(device="cpu")
            self._reset()
        self.train()

    def _plan_release(self) -> None:
        """After each step, drop the values no later step reads (keeps inference memory low)."""
        last_use: dict[int, int] = {}
        for pos, (_, _, _, ins, _) in enumerate(self.steps):
            for i in ins:
                last_use[i] = pos
        for pos, (index, kind, key, ins, _) in enumerate(self.steps):
            free = tuple(sorted({i for i in ins if last_use[i] == pos and i != self.output_index}))
            self.steps[pos] = (index, kind, key, ins, free)

    @torch.no_grad()
    def _reset(self) -> None:
        for module in self.layers.values():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
            if getattr(module, "fix_gamma", False):
                module.weight.fill_(1.0)
            if isinstance(module, nn.PReLU):
                module.weight.fill_(0.25)

    def _step(self, kind: str, key: str, xs: list[torch.Tensor]) -> torch.Tensor:
        if kind == "module":
            return self.layers[key](xs[0])
        if kind == "add":
            y = xs[0]
            for t in xs[1:]:
                y = y + t
            return y
        if kind == "mul":
            return xs[0] * xs[1]
        if kind == "sub":
            return xs[0] - xs[1]
        if kind == "concat":
            return torch.cat(xs, dim=1)
        return xs[0]

    def _run(self, x: torch.Tensor, stop: int) -> torch.Tensor:
        values = {self.input_index: x}
        for index, kind, key, ins, free in self.steps:
            values[index] = self._step(kind, key, [values[i] for i in ins])
            if index == stop:
                return values[index]
            for i in free:
                del values[i]
        return values[stop]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (the final softmax of the MXNet graph is left out)."""
        return self._run(x, self.output_index)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The classifier's input, flattened to (N, features) when the classifier is fully connected."""
        if self.feature_index is None:
            raise UserError("this MXNet graph has no final FullyConnected/Convolution classifier")
        out = x if self.feature_index == self.input_index else self._run(x, self.feature_index)
        return out.flatten(1) if isinstance(self.layers[self.head_key], nn.Linear) else out


def _kind(op: str) -> str:
    if op in ADD_OPS:
        return "add"
    if op in MUL_OPS:
        return "mul"
    if op in SUB_OPS:
        return "sub"
    if op in CONCAT_OPS:
        return "concat"
    return "module"


def _param_names(symbol: Symbol, node: Node) -> dict[str, str]:
    roles = symbol.params_of(node)
    rename = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_var": "running_var"}
    if node.op == "LeakyReLU":
        rename = {"gamma": "weight"}
    return {rename.get(role, role): name for role, name in roles.items()}


def _strip_softmax(symbol: Symbol) -> tuple[Node, bool]:
    node, stripped = symbol.output, False
    if symbol.heads[0][1] != 0:
        raise UserError(f"{symbol.path}: the output is output {symbol.heads[0][1]} of '{node.name}' "
                        f"(multi-output operators are not supported)")
    while node.op in SOFTMAX_HEADS:
        node, stripped = symbol.nodes[symbol.data_inputs(node)[0][0]], True
    return node, stripped


def _classifier(symbol: Symbol, output: Node) -> Node | None:
    """The last FullyConnected/Convolution feeding the output through parameter-free one-input layers."""
    node = output
    while True:
        if node.op in ("FullyConnected", "Convolution"):
            return node
        ins = symbol.data_inputs(node)
        if node.op == "null" or len(ins) != 1 or node.op in ("BatchNorm", "LeakyReLU"):
            return None
        node = symbol.nodes[ins[0][0]]


def check_operators(symbol: Symbol) -> None:
    """UserError naming every operator of the graph (up to its output) that the importer cannot build."""
    output, _ = _strip_softmax(symbol)
    _check_supported(symbol, symbol.ancestors(output.index))


def _check_supported(symbol: Symbol, needed: set[int]) -> None:
    bad: dict[str, list[str]] = {}
    for node in symbol.nodes:
        if node.index in needed and node.op != "null" and node.op not in SUPPORTED:
            bad.setdefault(node.op, []).append(node.name)
    if bad:
        listed = ", ".join(f"{op} (node '{names[0]}'{f' and {len(names) - 1} more' if len(names) > 1 else ''})"
                           for op, names in bad.items())
        raise UserError(f"{symbol.path}: MXNet operator(s) not supported by the graph importer: {listed}")


def build_graph(symbol: str | Path | Symbol, num_classes: int = 0, in_channels: int = 3,
                input_size: int | tuple[int, int] = 224) -> MXNetGraph:
    """An `MXNetGraph` for a symbol file (or parsed Symbol), freshly initialised."""
    parsed = symbol if isinstance(symbol, Symbol) else read_symbol(symbol)
    return MXNetGraph(parsed, in_channels, input_size, num_classes)


def mxnet_graph(num_classes: int = 0, in_channels: int = 3, symbol: str = "",
                input_size: int | tuple[int, int] = 224) -> nn.Module:
    """An MXNet symbol graph (`symbol`: path of prefix-symbol.json) as a PyTorch module."""
    if not symbol:
        raise ValueError("model mxnet:graph needs the option symbol: PATH of an MXNet -symbol.json file")
    return build_graph(symbol, num_classes, in_channels, input_size)


def _provider(name: str) -> ModelSpec:
    if name != "graph":
        raise UserError(f"unknown model 'mxnet:{name}'; the MXNet namespace has one model, mxnet:graph "
                        f"(option symbol: PATH), written by `deepvision import mxnet`")
    return ModelSpec("mxnet:graph", mxnet_graph, (3, 224, 224), 0,
                     "an MXNet symbol graph (option symbol: prefix-symbol.json) as a PyTorch module")


def spec_args(symbol: str | Path) -> dict[str, Any]:
    """The `model.args` that rebuild a graph from `symbol`."""
    return {"symbol": str(Path(symbol).resolve())}


register_provider("mxnet", _provider)
