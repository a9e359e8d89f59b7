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
    and a final SoftmaxOutput / Softmax / softmax / SoftmaxActivation, which is dropped: the module
    returns logits (a softmax `temperature` T is kept as logits / T, which give the same probabilities).

The final softmax is the one reached from the output through operators that are identities at inference
(Dropout, _copy, Cast, Flatten, Reshape, ...); it is built and checked like any node, and dropped only where
deepvision's softmax over each sample's classes computes the same (not over the batch axis or part of a
sample). A sigmoid output (a binary or multi-label head) and a single output are refused: a softmax over
the classes cannot represent them. So is an output computed from softmax or sigmoid probabilities alone by
other operators without weights (scaled, pooled, summed): deepvision reads the output as logits. The output
must be one score vector per image: (N, C), or (N, C, 1, ..., 1), which is flattened; a map is refused.

Anything else is refused with one line naming every unsupported operator. A Pooling window that
PyTorch would size differently from MXNet's "full" convention is refused naming the layer.

`num_classes` other than the symbol's replaces the classifier (the last FullyConnected or
Convolution before the output) with a freshly initialised one, for fine-tuning; 0 keeps the symbol's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepvision.errors import UserError
from deepvision.models.layers import module_key
from deepvision.models.mxnet_head import (
    SingleOutputError,
    check_output_shape,
    classifier_node,
    drop_softmax,
    final_head,
)
from deepvision.models.mxnet_ops import (
    ADD_OPS,
    CONCAT_OPS,
    MUL_OPS,
    SUB_OPS,
    SUPPORTED,
    make_module,
    node_error,
)
from deepvision.models.mxnet_symbol import Node, Symbol, read_symbol
from deepvision.models.registry import ModelSpec, register_provider
from deepvision.models.shapes import check_activation, hw
from deepvision.safeload import check_declared_bytes, printable


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
        self.concat_dims: dict[str, int] = {}
        output, softmax = final_head(symbol)
        self.softmax_head = softmax is not None
        needed = symbol.ancestors(output.index)
        _check_supported(symbol, needed)
        data = [n for n in symbol.input_nodes() if n.index in needed]
        if len(data) != 1:
            raise UserError(f"{symbol.path}: the graph must have one data input, found "
                            f"{', '.join(n.name for n in data) or 'none'}")
        self.input_index, self.output_index = data[0].index, output.index
        self.input_name = data[0].name
        head = classifier_node(symbol, output)
        self.head_key: str | None = None
        height, width = hw(input_size)
        taken: set[str] = set()
        with torch.device("meta"):
            values = {self.input_index: torch.empty(1, in_channels, height, width)}
            for node in symbol.nodes:
                if node.op == "null" or node.index not in needed:
                    continue
                ins = symbol.data_inputs(node)
                if any(idx != 0 for _, idx in ins):
                    raise node_error(node, "reads a second output of a multi-output operator (not supported)")
                xs = [values[i] for i, _ in ins]
                key = module_key(node.name, taken, "node", "n_")
                kind = _kind(node.op)
                if kind == "module":
                    override = num_classes if head is not None and node.index == head.index and num_classes > 0 \
                        else None
                    try:
                        self.layers[key] = make_module(node, xs, override).eval()  # BN on 1 sample
                    except (ValueError, TypeError, OverflowError, ZeroDivisionError, RuntimeError) as exc:
                        raise node_error(node, f"attributes {node.attrs} cannot be built "
                                               f"({str(exc).splitlines()[0][:120]})") from None
                    if softmax is not None and node.index == softmax.index:
                        self.layers[key] = drop_softmax(node, self.layers[key], xs[0])
                    self.mx_params[key] = _param_names(symbol, node)
                    if head is not None and node.index == head.index:
                        self.head_key = key
                elif kind == "concat":
                    _check_num_args(node)
                    self.concat_dims[key] = _concat_dim(node, xs[0].dim())
                elif kind in ("add", "mul", "sub"):
                    _check_num_args(node)
                    _check_elementwise(node, xs)
                self.node_keys[node.index] = key
                self.steps.append((node.index, kind, key, tuple(i for i, _ in ins), ()))
                try:
                    values[node.index] = self._step(kind, key, xs)
                except RuntimeError as exc:
                    shapes = ", ".join(str(tuple(x.shape)) for x in xs)
                    raise node_error(node, f"cannot take input {shapes} ({str(exc).splitlines()[0]}); check "
                                            f"the input size") from None
                check_activation(f"MXNet node '{node.name}' ({node.op})", values[node.index])
            out_shape = tuple(values[self.output_index].shape)
        self.flatten_output = check_output_shape(symbol, out_shape)
        out_shape = out_shape[:2]
        self.output_shape = out_shape[1:]
        if num_classes > 0 and out_shape[1] != num_classes:
            raise UserError(f"{symbol.path}: the graph has {out_shape[1]} outputs and no final FullyConnected or "
                            f"Convolution to resize to {num_classes} classes")
        self.num_classes = out_shape[1]
        if self.num_classes == 1:
            name = printable(symbol.output.name)[:60]
            raise SingleOutputError(f"{symbol.path}: the graph has 1 output ('{name}'); a softmax over one class is "
                                    f"always 100%: deepvision imports classifiers of 2 or more classes")
        self._plan_release()
        if materialize:  # else the layers stay on the meta device: shapes only, for inspection
            self.materialize()
        self.train()

    def materialize(self) -> None:
        """Give the layers real (CPU) storage, freshly initialised; a graph built with materialize=False
        holds shapes only, so weights can be checked against a file before any is allocated. The total
        is checked against the read ceiling first (a symbol file alone can declare terabytes)."""
        total = sum(t.numel() * t.element_size() for t in (*self.parameters(), *self.buffers()))
        check_declared_bytes(f"{self.symbol_path}: the graph's weights", total)
        self.to_empty(device="cpu")
        self._reset()

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
            return torch.cat(xs, dim=self.concat_dims[key])
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
        """Logits (the final softmax of the MXNet graph is left out, its temperature kept), (N, classes)."""
        y = self._run(x, self.output_index)
        return y.flatten(1) if self.flatten_output else y


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


def _check_elementwise(node: Node, xs: list[torch.Tensor]) -> None:
    """Element-wise operators take the inputs MXNet takes: two (add_n and ElementWiseSum: one or more),
    of one shape unless the operator broadcasts (broadcast_*)."""
    many = node.op in ("add_n", "ElementWiseSum")
    if (many and not xs) or (not many and len(xs) != 2):
        raise node_error(node, f"takes {'one or more inputs' if many else '2 inputs'}, the symbol gives {len(xs)}")
    shapes = {tuple(x.shape) for x in xs}
    if not node.op.startswith("broadcast_") and len(shapes) > 1:
        shown = " and ".join(str(tuple(x.shape[1:])) for x in xs)
        raise node_error(node, f"input shapes {shown} differ (only broadcast_* operators broadcast)")


def _check_num_args(node: Node) -> None:
    """Operators of a variable input count (Concat, add_n, ElementWiseSum) take exactly `num_args` inputs
    in MXNet, which refuses a symbol where the two differ."""
    if node.get("num_args") is not None and node.integer("num_args") != len(node.inputs):
        raise node_error(node, f"num_args={node.get('num_args')} but the symbol gives {len(node.inputs)} inputs")


def _concat_dim(node: Node, rank: int) -> int:
    """Concat's `dim` (MXNet's default 1), negative counted from the end; the batch axis is refused:
    joining samples changes how many predictions come out."""
    dim = node.integer("dim", -rank, rank - 1)
    dim = dim + rank if dim < 0 else dim
    if dim == 0:
        raise node_error(node, f"dim={node.get('dim')} concatenates along the batch axis, which a classifier "
                               f"cannot take")
    return dim


def _param_names(symbol: Symbol, node: Node) -> dict[str, str]:
    roles = symbol.params_of(node)
    rename = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_var": "running_var"}
    if node.op == "LeakyReLU":
        rename = {"gamma": "weight"}
    return {rename.get(role, role): name for role, name in roles.items()}


def check_operators(symbol: Symbol) -> None:
    """UserError naming every operator of the graph (up to its output) that the importer cannot build."""
    output, _ = final_head(symbol)
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
    for node in symbol.nodes:
        if node.index in needed and node.op != "null":
            _check_node(symbol, node)


def _check_node(symbol: Symbol, node: Node) -> None:
    """Yes/no attributes as MXNet reads them (`Node.check_flags`), and the inputs: MXNet binds a node only
    with the inputs its operator lists: data, then its weights (weight, and bias unless no_bias; BatchNorm's
    gamma, beta, moving_mean, moving_var; prelu's gamma) or a loss head's label. One input more would be
    read by nothing (a bias dropped), one weight less made up: both refused. The operators of several
    inputs are checked with their shapes and num_args."""
    node.check_flags()
    if node.op in ADD_OPS | MUL_OPS | SUB_OPS:
        return
    given = len(node.inputs)
    if node.op in CONCAT_OPS:
        if not given:
            raise node_error(node, "takes one or more inputs, the symbol gives none")
        return
    label = node.op in ("SoftmaxOutput", "Softmax")  # the label is unused at inference: it may be left out
    roles = ("data", "label") if label else ("data", *node.param_roles)
    if len(roles) - label <= given <= len(roles) or (given < len(roles) and node.op == "LeakyReLU"):
        return  # a prelu without its slopes is refused by make_module, naming them
    listed = f"{len(roles)} input{'s' if len(roles) > 1 else ''} ({', '.join(roles)}"
    listed += f"; no_bias={node.attrs['no_bias']})" if "no_bias" in node.attrs else ")"
    if given < len(roles):
        raise node_error(node, f"takes {listed}, the symbol gives {given}: no {roles[given]} input, which would be "
                               f"made up; MXNet cannot bind this node")
    first, _ = node.inputs[len(roles)]
    twice = " (given twice)" if first in {i for i, _ in node.inputs[: len(roles)]} else ""
    raise node_error(node, f"takes {listed}, the symbol gives {given}: the extra input "
                           f"'{printable(symbol.nodes[first].name)[:60]}'{twice} would be dropped; MXNet cannot bind "
                           f"this node")


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
