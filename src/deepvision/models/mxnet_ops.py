"""The operators of an MXNet symbol graph as PyTorch modules (MXNet 1.x semantics and defaults).

`make_module(node, inputs, out_override)` builds the module for one node, given the (meta) tensors
it receives; `mxnet_graph.MXNetGraph` wires them together. Pooling checks that PyTorch sizes a
window like MXNet's "valid"/"full" convention, and refuses the combinations where they disagree.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from deepvision.errors import UserError
from deepvision.models.mxnet_symbol import MAX_ATTR_INT, SOFTMAX_HEADS, Node

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


class InstanceSoftmax(nn.Module):
    """MXNet's softmax over each sample's values together (SoftmaxActivation mode 'instance', and
    SoftmaxOutput without multi_output): the sample flattened, then shaped back."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x.flatten(1), dim=1).reshape(x.shape)


class Clip(nn.Module):
    def __init__(self, low: float, high: float) -> None:
        super().__init__()
        self.low, self.high = low, high

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(self.low, self.high)


def node_error(node: Node, what: str) -> UserError:
    return UserError(f"MXNet node '{node.name}' ({node.op}): {what}")


def _pool_size(size: int, k: int, s: int, p: int, full: bool) -> int:
    span = size + 2 * p - k
    return 1 + (math.ceil(span / s) if full else span // s)


def make_module(node: Node, inputs: list[torch.Tensor], out_override: int | None) -> nn.Module:
    """The nn.Module computing `node` (created on the current default device)."""
    op, x = node.op, inputs[0]
    if op == "Convolution":
        if x.dim() != 4 or node.get("layout") not in (None, "NCHW"):
            raise node_error(node, f"only 2-D NCHW convolution is supported (input {tuple(x.shape)})")
        if node.get("kernel") is None:
            raise node_error(node, "no kernel attribute")
        out = out_override or node.integer("num_filter")
        groups = node.integer("num_group")
        if x.shape[1] % groups or out % groups:
            raise node_error(node, f"{x.shape[1]} input / {out} output channels do not split into {groups} groups")
        return nn.Conv2d(x.shape[1], out, node.pair("kernel", 1), node.pair("stride", 1), node.pair("pad", 0, low=0),
                         node.pair("dilate", 1), groups, bias=not node.flag("no_bias"))
    if op == "FullyConnected":
        flatten = node.flag("flatten")
        width = math.prod(x.shape[1:]) if flatten else x.shape[-1]
        return FullyConnected(width, out_override or node.integer("num_hidden"), not node.flag("no_bias"), flatten)
    if op == "BatchNorm":
        if node.integer("axis", -8, 8) != 1:
            raise node_error(node, f"axis={node.get('axis')}: only channel axis 1 is supported")
        cls = nn.BatchNorm2d if x.dim() == 4 else nn.BatchNorm1d
        eps, momentum = node.number("eps", 0.0, 1.0), node.number("momentum", 0.0, 1.0)
        bn = cls(x.shape[1], eps=eps, momentum=1.0 - momentum)
        if node.flag("fix_gamma"):
            bn.weight.requires_grad_(False)  # MXNet uses gamma = 1 whatever the file holds
        bn.fix_gamma = node.flag("fix_gamma")  # type: ignore[attr-defined]
        return bn
    if op == "Activation" or op in ("relu", "sigmoid", "tanh"):
        act = node.get("act_type") if op == "Activation" else op
        if act not in _ACTIVATIONS:
            raise node_error(node, f"act_type '{act}' is not supported (valid: {', '.join(_ACTIVATIONS)})")
        return _ACTIVATIONS[act]()
    if op == "LeakyReLU":
        act, slope = node.get("act_type"), node.number("slope")
        if act == "prelu":
            if len(node.inputs) < 2:  # the learned slopes would be made up
                raise node_error(node, "act_type prelu needs its gamma input (the learned slopes); the "
                                       "symbol gives none")
            return nn.PReLU(x.shape[1], init=0.25)
        made = {"leaky": lambda: nn.LeakyReLU(slope), "elu": lambda: nn.ELU(slope), "selu": nn.SELU,
                "gelu": nn.GELU,
                "rrelu": lambda: nn.LeakyReLU((node.number("lower_bound") + node.number("upper_bound")) / 2)}
        if act not in made:
            raise node_error(node, f"act_type '{act}' is not supported (valid: prelu, {', '.join(made)})")
        return made[act]()
    if op == "Pooling":
        return _pooling(node, x)
    if op == "LRN":
        if x.dim() != 4:
            raise node_error(node, f"only 4-D input is supported (input {tuple(x.shape)})")
        # MXNet needs an odd window; one wider than 2C-1 channels sums nothing more but pads every map
        nsize = node.integer("nsize", 1, 2 * x.shape[1] - 1)
        if nsize % 2 == 0:
            raise node_error(node, f"nsize={nsize} must be odd")
        return nn.LocalResponseNorm(nsize, node.number("alpha"), node.number("beta"), node.number("knorm"))
    if op in ("Flatten", "flatten"):
        return nn.Flatten()
    if op in ("Reshape", "reshape"):
        spec = node.get("shape")
        if isinstance(spec, int):
            spec = (spec,)
        if node.flag("reverse") or not isinstance(spec, tuple) \
                or not all(isinstance(s, int) and -1 <= s <= MAX_ATTR_INT for s in spec) or list(spec).count(-1) > 1:
            raise node_error(node, f"shape={node.attrs.get('shape', node.attrs.get('target_shape'))}"
                                    f"{' reverse=True' if node.flag('reverse') else ''}: only 0, -1 and positive "
                                    f"sizes are supported")
        if spec and spec[0] > 0:  # MXNet reads it as that many images: any other batch is reshaped across images
            raise node_error(node, f"shape={node.attrs.get('shape', node.attrs.get('target_shape'))} fixes the batch "
                                   f"axis to {spec[0]}; use 0 or -1 first to keep each image apart")
        return Reshape(spec)
    if op == "softmax":
        temperature = node.number("temperature") if node.get("temperature") is not None else 1.0
        if temperature == 0:
            raise node_error(node, "temperature=0 divides by zero")
        if node.flag("use_length"):
            raise node_error(node, "use_length=True (a softmax over the first `length` values) is not supported")
        return Softmax(node.integer("axis", -x.dim(), x.dim() - 1), temperature)
    if op == "SoftmaxActivation":
        mode = node.get("mode")
        if mode not in ("instance", "channel"):
            raise node_error(node, f"mode={mode} must be instance or channel")
        return Softmax(1) if mode == "channel" else InstanceSoftmax()
    if op in ("SoftmaxOutput", "Softmax"):  # inside the graph: what it computes at inference
        if node.flag("multi_output"):
            return Softmax(1)
        return Softmax(-1) if node.flag("preserve_shape") else InstanceSoftmax()
    if op == "clip":
        return Clip(node.number("a_min"), node.number("a_max"))
    if op in SCALAR_OPS:
        return ScalarOp(op, node.number("scalar"))
    if op == "Dropout":
        node.number("p", 0.0, 1.0)  # identity at inference; p=1 or NaN was never a trained network
        if node.get("mode") != "training":  # "always" (Monte-Carlo dropout) drops at inference too
            what = "drops values at inference too" if node.get("mode") == "always" else "is no Dropout mode"
            raise node_error(node, f"mode={node.get('mode')} {what}; only mode=training (an identity at "
                                   f"inference) is supported")
        if node.get("p") == 1:
            raise node_error(node, "p=1 drops every value; a dropout rate must be below 1")
    if op in ("Cast", "cast") and str(node.get("dtype")) not in ("float32", "None"):
        raise node_error(node, f"Cast to {node.get('dtype')} is not supported (only float32)")
    return nn.Identity()


def _pooling(node: Node, x: torch.Tensor) -> nn.Module:
    pool_type, convention = node.get("pool_type"), node.get("pooling_convention")
    if pool_type not in ("max", "avg", "sum"):
        raise node_error(node, f"pool_type '{pool_type}' is not supported (valid: max, avg, sum)")
    if x.dim() != 4 or node.get("layout") not in (None, "NCHW"):
        raise node_error(node, f"only 2-D NCHW pooling is supported (input {tuple(x.shape)}, layout "
                               f"{node.get('layout') or 'NCHW'})")
    if node.flag("global_pool"):
        return GlobalPool(pool_type)
    if convention not in ("valid", "full"):
        raise node_error(node, f"pooling_convention '{convention}' is not supported (valid, full)")
    if node.get("kernel") is None:
        raise node_error(node, "no kernel attribute")
    k, s, p = node.pair("kernel", 1), node.pair("stride", 1), node.pair("pad", 0, low=0)
    full = convention == "full"
    if pool_type == "max":
        module: nn.Module = nn.MaxPool2d(k, s, p, ceil_mode=full)
    elif pool_type == "sum":
        module = SumPool2d(k, s, p, full)
    else:
        module = nn.AvgPool2d(k, s, p, ceil_mode=full, count_include_pad=node.flag("count_include_pad", optional=True))
    want = tuple(_pool_size(x.shape[2 + i], k[i], s[i], p[i], full) for i in range(2))
    try:
        got = tuple(module(x).shape[2:])
    except RuntimeError as exc:
        raise node_error(node, f"cannot pool input {tuple(x.shape)} with kernel {k}, stride {s}, pad {p} "
                                f"({str(exc).splitlines()[0]})") from None
    if got != want:
        raise node_error(node, f"MXNet's '{convention}' convention gives {want} for input {tuple(x.shape)}, "
                                f"PyTorch {got}; this window/stride/pad combination is not supported")
    return module
