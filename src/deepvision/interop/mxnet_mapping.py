"""Move the weights of an MXNet graph onto a deepvision architecture, layer by layer, and prove it.

Both networks are traced with torch.fx into graphs of their parameter layers (Conv2d, Linear,
BatchNorm, PReLU). Each graph is put in a canonical order: a post-order walk from the output that
visits the inputs of an addition (commutative: `residual + x` or `x + residual`) by increasing
number of parameter layers behind them, and keeps the order of everything else (concatenations,
sequences). Two networks that compute the same thing give the same sequence whatever order their
code created or listed the layers in, so the i-th layers are paired and must agree in kind and
shape; the first that does not is named with both shapes.

After copying, both networks run on the same random batch; if their outputs differ, the first
paired layer whose outputs differ is named (BatchNorm epsilon, fixed gamma, activation or stride
placement that the architecture does not share with the MXNet graph).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import fx, nn

from deepvision.errors import UserError

_ADD_TARGETS = {operator.add, operator.iadd, torch.add}


def layer_kind(module: nn.Module) -> str | None:
    if isinstance(module, nn.Conv2d):
        return "conv"
    if isinstance(module, nn.Linear):
        return "fc"
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return "bn"
    if isinstance(module, nn.PReLU):
        return "prelu"
    return None


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return layer_kind(m) is not None or super().is_leaf_module(m, qualname)


def param_layers(model: nn.Module) -> list[str]:
    """Qualified names of the model's parameter layers, in the canonical order (see the module doc)."""
    try:
        graph = _Tracer().trace(model)
    except Exception as exc:  # fx raises many types for code it cannot trace
        raise UserError(f"cannot trace {type(model).__name__} to map weights onto it ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:120]}); import without --model instead") from None
    modules = dict(model.named_modules())
    output = next(n for n in graph.nodes if n.op == "output")

    def is_param(n: fx.Node) -> bool:
        return n.op == "call_module" and layer_kind(modules[n.target]) is not None

    def commutative(n: fx.Node) -> bool:
        return (n.op == "call_function" and n.target in _ADD_TARGETS) or (
            n.op == "call_method" and n.target in ("add", "add_"))

    order = canonical_order(output, lambda n: list(n.all_input_nodes), is_param, commutative)
    return [str(n.target) for n in order]


def canonical_order(output, inputs: Callable, is_param: Callable, commutative: Callable) -> list:
    """Parameter nodes in post-order from `output`; inputs of commutative nodes by ancestor count."""
    counts: dict = {}

    def count(node) -> int:  # parameter layers behind `node`, itself included (shared branches once)
        if node not in counts:
            seen: set = set()
            todo = [node]
            while todo:
                m = todo.pop()
                if m not in seen:
                    seen.add(m)
                    todo.extend(inputs(m))
            counts[node] = sum(1 for m in seen if is_param(m))
        return counts[node]

    order, visited = [], set()
    stack = [(output, False)]
    while stack:
        node, done = stack.pop()
        if done:
            if is_param(node):
                order.append(node)
            continue
        if node in visited:
            continue
        visited.add(node)
        stack.append((node, True))
        ins = list(inputs(node))
        if commutative(node):
            ins = sorted(ins, key=count)
        stack.extend((i, False) for i in reversed(ins) if i not in visited)
    return order


@dataclass
class Pair:
    source: str  # layer in the MXNet graph module (its MXNet node name)
    target: str  # layer in the deepvision model


def _shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items() if not k.endswith("num_batches_tracked")}


def _describe(name: str, module: nn.Module) -> str:
    w = getattr(module, "weight", None)
    shape = tuple(w.shape) if w is not None else ()
    return f"'{name}' ({type(module).__name__} {shape})"


def align(graph: nn.Module, model: nn.Module, model_name: str) -> list[Pair]:
    """Pair the parameter layers of the MXNet graph module and the model; UserError at the first mismatch."""
    src_names, dst_names = param_layers(graph), param_layers(model)
    src_mods, dst_mods = dict(graph.named_modules()), dict(model.named_modules())
    pairs = []
    for i, (s, d) in enumerate(zip(src_names, dst_names)):
        sm, dm = src_mods[s], dst_mods[d]
        if layer_kind(sm) != layer_kind(dm) or _shapes(sm).get("weight") != _shapes(dm).get("weight") or \
                ("running_mean" in _shapes(sm)) != ("running_mean" in _shapes(dm)):
            raise UserError(f"the MXNet network does not fit '{model_name}': parameter layer {i + 1}, MXNet "
                            f"{_describe(s.removeprefix('layers.'), sm)} vs deepvision {_describe(d, dm)}; "
                            f"choose the matching --model/--option or import without --model")
        if getattr(sm, "bias", None) is not None and getattr(dm, "bias", None) is None \
                and bool(sm.bias.detach().abs().max() > 0):
            raise UserError(f"MXNet layer '{s.removeprefix('layers.')}' has a bias but deepvision layer '{d}' of "
                            f"'{model_name}' has none; import without --model")
        if isinstance(sm, nn.modules.batchnorm._BatchNorm) and abs(sm.eps - dm.eps) > 1e-12:
            raise UserError(f"MXNet BatchNorm '{s.removeprefix('layers.')}' has eps {sm.eps:g} but '{d}' of "
                            f"'{model_name}' has {dm.eps:g}; pass --option bn_eps={sm.eps:g}")
        pairs.append(Pair(s, d))
    if len(src_names) != len(dst_names):
        extra = (f"MXNet layer {_describe(src_names[len(pairs)], src_mods[src_names[len(pairs)]])}"
                 if len(src_names) > len(dst_names) else
                 f"deepvision layer {_describe(dst_names[len(pairs)], dst_mods[dst_names[len(pairs)]])}")
        raise UserError(f"the MXNet network has {len(src_names)} parameter layers, '{model_name}' has "
                        f"{len(dst_names)}; the first without a partner is {extra}")
    return pairs


@torch.no_grad()
def transfer(graph: nn.Module, model: nn.Module, pairs: list[Pair]) -> None:
    """Copy each paired layer's tensors from the graph module into the model (missing biases become 0)."""
    src_mods, dst_mods = dict(graph.named_modules()), dict(model.named_modules())
    for pair in pairs:
        src, dst = src_mods[pair.source].state_dict(), dst_mods[pair.target]
        for key, tensor in dst.state_dict(keep_vars=True).items():
            if key.endswith("num_batches_tracked"):
                continue
            value = src.get(key)
            tensor.copy_(value if value is not None else torch.zeros_like(tensor))


@torch.no_grad()
def compare(graph: nn.Module, model: nn.Module, pairs: list[Pair], x: torch.Tensor, tol: float = 1e-4
            ) -> float:
    """Max abs difference of the two outputs on `x`; UserError naming the first differing layer if above tol."""
    graph.eval()
    model.eval()
    captured: dict[str, torch.Tensor] = {}
    handles = []
    src_mods, dst_mods = dict(graph.named_modules()), dict(model.named_modules())
    for pair in pairs:
        for tag, module in (("s:" + pair.source, src_mods[pair.source]), ("d:" + pair.target, dst_mods[pair.target])):
            handles.append(module.register_forward_hook(
                lambda _m, _i, out, tag=tag: captured.__setitem__(tag, out.detach().clone())))
    try:
        expected, got = graph(x), model(x)
    except RuntimeError as exc:
        raise UserError(f"the MXNet graph and the model cannot run the same {tuple(x.shape[1:])} input "
                        f"({str(exc).splitlines()[0][:120]}); import without --model instead") from None
    finally:
        for h in handles:
            h.remove()
    if expected.shape != got.shape:
        raise UserError(f"outputs differ in shape: MXNet graph {tuple(expected.shape)}, deepvision {tuple(got.shape)}")
    diff = float((expected - got).abs().max())
    if diff <= tol * max(1.0, float(expected.abs().max())):
        return diff
    for pair in pairs:
        a, b = captured.get("s:" + pair.source), captured.get("d:" + pair.target)
        if a is None or b is None:
            continue
        if a.shape != b.shape:
            raise UserError(f"outputs differ from layer '{pair.target}' on: MXNet "
                            f"'{pair.source.removeprefix('layers.')}' gives {tuple(a.shape)}, deepvision "
                            f"{tuple(b.shape)}")
        layer_diff = float((a - b).abs().max())
        if layer_diff > tol * max(1.0, float(a.abs().max())):
            raise UserError(f"outputs differ from layer '{pair.target}' on (MXNet "
                            f"'{pair.source.removeprefix('layers.')}', shape {tuple(a.shape)}, max abs difference "
                            f"{layer_diff:.3g}): the architecture computes something else there (activation, "
                            f"BatchNorm, pooling or stride)")
    raise UserError(f"outputs differ by {diff:.3g} after all parameter layers matched: a parameter-free layer "
                    f"(pooling, activation, dropout) differs between the MXNet graph and the architecture")
