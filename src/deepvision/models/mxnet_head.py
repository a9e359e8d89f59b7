"""The final head of an MXNet symbol graph: which softmax is the classifier's (and dropped, the module returning
logits), and what output deepvision can read as one score vector of logits per image (see `mxnet_graph`)."""

from __future__ import annotations

import torch
from torch import nn

from deepvision.errors import UserError
from deepvision.models.mxnet_ops import IDENTITY_OPS, InstanceSoftmax, ScalarOp, Softmax, node_error
from deepvision.models.mxnet_symbol import SOFTMAX_HEADS, Node, Symbol
from deepvision.safeload import printable


class OutputShapeError(UserError):
    """At this input size the graph's output is not one score vector per image (another size may give one)."""


class SingleOutputError(OutputShapeError):
    """The graph computes one output: whatever the input size, no classifier to import."""


# Operators that pass a sample's values on unchanged at inference (reshaped at most): the final softmax
# may sit behind them.
PASS_OPS = IDENTITY_OPS | {"Flatten", "flatten", "Reshape", "reshape"}


def final_head(symbol: Symbol) -> tuple[Node, Node | None]:
    """(output node, final softmax or None). The final softmax is the first softmax head reached from the
    output through `PASS_OPS` (one only: a softmax of a softmax keeps the inner one); it stays in the graph
    and `drop_softmax` replaces it when the graph is built. A sigmoid there is refused, naming it."""
    node = symbol.output
    if len(symbol.heads) != 1:
        names = ", ".join(f"'{symbol.nodes[i].name}'" for i, _ in symbol.heads[:4])
        raise UserError(f"{symbol.path}: the graph has {len(symbol.heads)} outputs ({names}); deepvision imports "
                        f"single-output classifiers (save the symbol of the classifier's output alone)")
    if symbol.heads[0][1] != 0:
        raise UserError(f"{symbol.path}: the output is output {symbol.heads[0][1]} of '{node.name}' "
                        f"(multi-output operators are not supported)")
    while node.op in PASS_OPS and len(symbol.data_inputs(node)) == 1:
        node = symbol.nodes[symbol.data_inputs(node)[0][0]]
    if is_sigmoid(node):
        raise node_error(node, "the graph's output is a sigmoid (a binary or multi-label head), which a "
                               "deepvision classifier (a softmax over the classes) cannot represent; import a "
                               "graph ending in a softmax over 2 or more classes")
    softmax = node if node.op in SOFTMAX_HEADS else None
    check_not_probabilities(symbol, softmax)
    return symbol.output, softmax


def is_sigmoid(node: Node) -> bool:
    return node.op == "sigmoid" or (node.op == "Activation" and node.get("act_type") == "sigmoid")


# Layers whose output is new scores (weights applied), whatever their input: probabilities stop there.
_WEIGHTED_OPS = {"Convolution", "FullyConnected", "BatchNorm"}


def check_not_probabilities(symbol: Symbol, head: Node | None) -> None:
    """Refuse an output computed from softmax or sigmoid probabilities alone by operators without weights
    (scaled, pooled, added, concatenated...), other than the final softmax `head` that is dropped:
    deepvision reads the output as logits and applies its own softmax, which would be wrong there. A value
    that mixes probabilities with other values (x * softmax(a), attention) is not probabilities."""
    source: dict[int, Node | None] = {}  # node index -> the softmax/sigmoid its value is probabilities of
    for node in symbol.nodes:  # topological order: inputs come first
        ins = [source.get(i) for i, _ in symbol.data_inputs(node)]
        if node.op in SOFTMAX_HEADS or is_sigmoid(node):
            source[node.index] = node
        elif node.op != "null" and node.op not in _WEIGHTED_OPS and ins and all(s is not None for s in ins):
            source[node.index] = ins[0]
    found = source.get(symbol.output.index)
    if found is None or found is head:
        return
    what = "sigmoid" if is_sigmoid(found) else "softmax"
    out = symbol.output
    raise node_error(found, f"the graph's output '{printable(out.name)[:60]}' ({out.op}) is computed from this "
                            f"{what}'s probabilities, not logits (deepvision applies its own softmax to the output); "
                            f"save the symbol ending {'at the softmax or ' if what == 'softmax' else ''}before it")


def check_output_shape(symbol: Symbol, shape: tuple[int, ...]) -> bool:
    """Whether the output (`shape` for one image) must be flattened: it is one score vector per image,
    (1, C) or (1, C, 1, ..., 1); a map, or an output whose first axis is not the image, is refused naming
    the output node and its shape."""
    out = symbol.output
    if len(shape) < 2 or shape[0] != 1:
        raise OutputShapeError(str(node_error(out, f"the graph's output has shape {shape} for one image: its first "
                                                   f"axis is not the batch of images, so it holds no score vector "
                                                   f"per image")))
    if any(d != 1 for d in shape[2:]):
        raise OutputShapeError(str(node_error(out, f"the graph's output is {shape[1:]} per image, a map, not one "
                                                   f"score vector per image; deepvision imports classifiers (end "
                                                   f"the graph with a global Pooling and a Flatten, or a "
                                                   f"FullyConnected)")))
    return len(shape) > 2


def drop_softmax(node: Node, module: nn.Module, x: torch.Tensor) -> nn.Module:
    """What replaces the final softmax (`module`, built and checked like any node, input `x`): nothing,
    or logits / temperature. Refused where deepvision's softmax over each sample's values would compute
    something else: a softmax over the batch axis, or over part of a sample."""
    dims = set(range(1, x.dim())) if isinstance(module, InstanceSoftmax) else {module.dim % x.dim()}
    if 0 in dims:
        raise node_error(node, f"axis={node.get('axis')} takes the softmax over the batch axis, which a "
                               f"classifier cannot take")
    rest = [d for d in range(1, x.dim()) if d not in dims and x.shape[d] > 1]
    if rest:
        raise OutputShapeError(str(node_error(node, f"the final softmax normalises over axis {min(dims)} of its "
                                                    f"input {tuple(x.shape[1:])} per position, not over each "
                                                    f"sample's classes; deepvision cannot represent this output")))
    temperature = module.temperature if isinstance(module, Softmax) else 1.0
    return nn.Identity() if temperature == 1.0 else ScalarOp("_div_scalar", temperature)


def classifier_node(symbol: Symbol, output: Node) -> Node | None:
    """The last FullyConnected/Convolution feeding the output through parameter-free one-input layers."""
    node = output
    while True:
        if node.op in ("FullyConnected", "Convolution"):
            return node
        ins = symbol.data_inputs(node)
        if node.op == "null" or len(ins) != 1 or node.op in ("BatchNorm", "LeakyReLU"):
            return None
        node = symbol.nodes[ins[0][0]]
