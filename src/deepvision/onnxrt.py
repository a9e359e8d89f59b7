"""The one place that imports the ONNX packages and opens onnxruntime sessions (export, predict, detect).

Every session runs on the CPU provider with onnxruntime's own log quieted; a file onnxruntime cannot load
is a one-line UserError naming it, and a missing package names the extra to install. Sessions allocate
from one shared arena capped at the read ceiling (`safeload.max_read_bytes`), so a small graph that asks
for a huge tensor at run time fails in `run_session` with one line instead of taking the machine.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deepvision.errors import UserError

ONNX_EXTRA = "pip install 'deepvision[onnx]'"


def require(module: str) -> Any:
    """Import onnx / onnxruntime / onnxscript, or a one-line UserError naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"ONNX export and inference need the '{module}' package: {ONNX_EXTRA}") from None


_ARENA: list[int] = []  # the cap of the process-wide arena, once registered


def _capped_arena(ort: Any) -> None:
    """Register onnxruntime's shared CPU arena, capped at the read ceiling, once per process."""
    if _ARENA:
        return
    from deepvision.safeload import max_read_bytes

    cap = max_read_bytes()
    info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    ort.create_and_register_allocator(info, ort.OrtArenaCfg(cap, -1, -1, -1))
    _ARENA.append(cap)


def ort_session(path: str | Path, spin: bool = True, threads: int | None = None) -> Any:
    """An onnxruntime CPU inference session for `path`; `spin=False` stops its idle threads from busy-waiting
    (fair timing when PyTorch runs in between), `threads` fixes its intra-op thread count."""
    ort = require("onnxruntime")
    ort.set_default_logger_severity(4)  # failures come back as exceptions; onnxruntime's own log is noise
    _capped_arena(ort)
    options = ort.SessionOptions()
    options.log_severity_level = 4
    options.add_session_config_entry("session.use_env_allocators", "1")
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(f"onnxruntime cannot load {path} ({first})") from None


def run_session(session: Any, path: str | Path, outputs: list[str] | None, feeds: dict[str, Any]) -> list[Any]:
    """`session.run(outputs, feeds)`, with onnxruntime's failures (a tensor above the arena's cap, a shape
    the graph cannot take) as one-line UserErrors naming the file and the node."""
    try:
        return session.run(outputs, feeds)
    except Exception as exc:  # onnxruntime raises its own exception types
        text = " ".join(str(exc).split())
        node = re.search(r"while running (\w+) node", text)
        asked = re.search(r"requested bytes of (\d+)", text)
        where = f"its {node.group(1)} node" if node else "its graph"
        if asked and _ARENA:
            from deepvision.safeload import format_bytes

            raise UserError(f"{path}: {where} asks for {format_bytes(int(asked.group(1)))} at run time, above "
                            f"the {format_bytes(_ARENA[0])} one model may take (DEEPVISION_MAX_READ_GB raises "
                            f"it); the file is damaged or crafted") from None
        why = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)[:200] or type(exc).__name__
        raise UserError(f"onnxruntime failed running {path} ({why})") from None


def load_model(path: str | Path) -> Any:
    """The ONNX ModelProto of the file at `path`, without its external data; UserError when protobuf cannot
    parse it or a tensor name is given twice (`check_single_assignment`)."""
    onnx = require("onnx")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's own exception types
        why = str(exc).strip()[:120] or type(exc).__name__
        raise UserError(f"cannot read {path} as an ONNX model ({why})") from None
    check_single_assignment(path, model.graph)
    return model


def check_single_assignment(path: str | Path, graph: Any, outer: frozenset[str] = frozenset()) -> None:
    """Refuse a graph (or subgraph) that gives one tensor name twice: two initializers, two graph inputs, or a
    node output named like an input, an initializer, another node's output or a name of an enclosing graph.
    onnxruntime takes such a file and silently keeps one of the two (a second bias, a Constant node shadowing
    a weight: another network); ONNX's checker refuses it. An initializer named like a graph input is ONNX's
    default value for that input, and allowed."""
    from collections import Counter

    from deepvision.safeload import printable

    def refuse(name: str, what: str) -> None:
        raise UserError(f"{path}: {what} {printable(repr(name))[:80]} is given twice{where}; ONNX names each "
                        f"tensor once: the file is damaged or crafted (export it again)")

    where = "" if not outer else " (in a subgraph)"
    for what, names in (("graph input", [i.name for i in graph.input]),
                        ("the weight", [t.name for t in graph.initializer]
                         + [s.values.name for s in graph.sparse_initializer])):
        twice = next((n for n, k in Counter(names).items() if k > 1), None)
        if twice is not None:
            refuse(twice, what)
    producer = dict.fromkeys(outer, "a name of the enclosing graph")
    producer.update((i.name, "a graph input") for i in graph.input)
    producer.update((t.name, "a weight") for t in graph.initializer)
    producer.update((s.values.name, "a weight") for s in graph.sparse_initializer)
    for node in graph.node:
        for attr in node.attribute:  # the branches of If/Loop/Scan see the names made so far
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                check_single_assignment(path, sub, frozenset(producer))
        here = f"the output of node {printable(repr(node.name or node.op_type))[:60]} ({node.op_type})"
        for name in node.output:
            if not name:  # an optional output left out
                continue
            if name in producer:
                raise UserError(f"{path}: tensor {printable(repr(name))[:80]} is given twice{where}: "
                                f"{producer[name]} and {here}; ONNX names each tensor once, and onnxruntime "
                                f"silently keeps one: the file is damaged or crafted (export it again)")
            producer[name] = here


def model_metadata(path: str | Path, model: Any) -> dict[str, str]:
    """The `metadata_props` of `model` (read from `path`) as a dict. A key given twice is refused: onnxruntime's
    `custom_metadata_map` keeps the last entry, a reader stopping at the first match the other, so one file
    would mean two things."""
    from collections import Counter

    from deepvision.safeload import printable

    twice = sorted(k for k, n in Counter(p.key for p in model.metadata_props).items() if n > 1)
    if twice:
        raise UserError(f"{path}: ONNX metadata key {printable(repr(twice[0]))[:60]} is given twice; the file is "
                        f"damaged or crafted (export it again with `deepvision export RUN`)")
    return {p.key: p.value for p in model.metadata_props}


def check_weights_finite(path: str | Path, model: Any = None) -> None:
    """UserError naming the first weight (initializer, sparse or dense) of the ONNX file at `path` that holds
    NaN or infinity (-inf given as a Pad's constant value is kept: an exported max-pooling pads with it), or
    the first constant (a Constant node, a tensor or float attribute) holding NaN:
    every prediction through it would be NaN ("nan%"). Tensors stored beside the file (ONNX external data)
    are read too: call this after `ort_session`, which has refused external locations outside the model's
    folder, links and special files. `model` is the file's ModelProto where the caller has loaded it."""
    import numpy as np

    onnx = require("onnx")
    from onnx import numpy_helper

    if model is None:
        model = load_model(path)
    pad_values = _pad_values(model)
    for name, tensor, weight in _stored_tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            from onnx.external_data_helper import load_external_data_for_tensor

            try:
                load_external_data_for_tensor(tensor, str(Path(path).parent))
            except Exception as exc:  # onnx's own checks of the location and the stored length
                why = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
                raise UserError(f"{path}: the external data of weight {name!r} cannot be read ({why})") from None
        values = numpy_helper.to_array(tensor)
        if values.dtype.kind not in "fc":
            continue
        if weight and not (np.isfinite(values) | (np.isneginf(values) & (name in pad_values))).all():
            raise UserError(f"{path}: weight {name!r} holds NaN or infinite values; the file is "
                            f"damaged (export it again from a run whose weights are finite)")
        if np.isnan(values).any():  # -inf constants are legitimate (attention masks), NaN never is
            raise UserError(f"{path}: constant {name!r} holds NaN; the file is damaged (export it again)")


EXTERNAL_KEY = "external_data"  # in the deepvision record: {"file", "bytes", "sha256"} of the weights stored beside


def external_data_record(path: str | Path) -> dict[str, Any]:
    """What the deepvision record keeps of an external-data file: its name, size and SHA-256."""
    from deepvision.fileio import sha256_of

    path = Path(path)
    return {"file": path.name, "bytes": path.stat().st_size, "sha256": sha256_of(path)}


def check_external_data(path: str | Path, model: Any, own: Any) -> None:
    """Refuse weights stored beside the ONNX file at `path` (external data) unless the deepvision record
    (`own`) names that file with its size and SHA-256 and the file matches: onnxruntime reads whatever file
    the location names, so another export's `.data` copied in would answer under this file's classes and
    preprocessing. Called before `ort_session` reads them; the recorded file must be a regular file beside `path`."""
    from deepvision.fileio import sha256_of
    from deepvision.safeload import printable, regular_file

    onnx = require("onnx")
    names = sorted({e.value for _, t, _ in _stored_tensors(model.graph) if t.data_location == onnx.TensorProto.EXTERNAL
                    for e in t.external_data if e.key == "location"})
    record = own.get(EXTERNAL_KEY) if isinstance(own, dict) else None
    fix = "export the run again with `deepvision export RUN`"
    if not names and record is None:
        return
    shown = ", ".join(printable(n)[:80] for n in names)
    if record is None:
        raise UserError(f"{path} keeps its weights in {shown} beside it but its deepvision metadata records no size "
                        f"and sha256 of them, so nothing ties the two files together; {fix} (it records them), or "
                        f"save it as one file: onnx.save(onnx.load(IN), OUT)")
    if not (isinstance(record, dict) and isinstance(record.get("file"), str) and type(record.get("bytes")) is int
            and isinstance(record.get("sha256"), str)):
        raise UserError(f"{path}: its metadata's {EXTERNAL_KEY} record is not a file name, size and sha256; the file "
                        f"is damaged: {fix}")
    if names != [record["file"]]:
        held = f"keeps its weights in {shown}" if names else "keeps its weights inside"
        raise UserError(f"{path} {held}, but its metadata records them in {printable(record['file'])[:80]}; the "
                        f"file was changed after the export: {fix}")
    if record["file"] != Path(record["file"]).name or record["file"] in (".", ".."):  # never a path elsewhere
        raise UserError(f"{path}: its metadata records external data in {printable(record['file'])[:80]}, not a "
                        f"file beside it; the file is damaged or crafted: {fix}")
    sidecar = regular_file(Path(path).parent / record["file"], "external data file")
    size = sidecar.stat().st_size
    digest = sha256_of(sidecar) if size == record["bytes"] else None
    if size != record["bytes"] or digest != record["sha256"]:
        found = f"{size:,} bytes" + (f", sha256 {digest[:12]}" if digest else "")
        raise UserError(f"{sidecar} is not the external data exported with {path} ({found}; {path} records "
                        f"{record['bytes']:,} bytes, sha256 {record['sha256'][:12]}); put back the .data file "
                        f"exported with it, or {fix}")


def check_same_records(path: str | Path, metadata: dict[str, str], own: Any) -> None:
    """An exported file carries its class names and preprocessing twice: the plain `classes` and `preprocess`
    keys other tools read, and in the deepvision record (`own`). Refuse a file whose two copies of either
    differ, rather than answer with one of them (another tool would read the other)."""
    from deepvision.safeload import load_json, printable

    for key in ("classes", "preprocess"):
        plain, ours = metadata.get(key), own.get(key) if isinstance(own, dict) else None
        if plain is None or ours is None:
            continue
        other = load_json(plain, f"{path} metadata '{key}'")
        if other != ours:
            field, shown = "", [printable(repr(v))[:40] for v in (other, ours)]
            if isinstance(other, dict) and isinstance(ours, dict):  # name the first field that differs
                absent = object()
                name = next(k for k in sorted({*other, *ours}, key=str) if other.get(k, absent) != ours.get(k, absent))
                field = f" in {printable(name)[:40]}"
                shown = [printable(repr(d[name]))[:40] if name in d else "absent" for d in (other, ours)]
            raise UserError(f"{path}: its metadata's two {key} records differ{field} ('{key}' {shown[0]}, "
                            f"'deepvision' {shown[1]}); export it again with `deepvision export RUN`")


def _pad_values(model: Any) -> set[str]:
    """Names of the tensors given as a Pad's constant value anywhere in the model: -inf there is how an exported
    max-pooling with explicit padding (TensorFlow's "same", mini_xception's) pads, not a damaged weight."""
    found: set[str] = set()
    graphs, nodes = [model.graph], [n for f in model.functions for n in f.node]
    while graphs:
        nodes += list(graphs.pop().node)
    while nodes:
        node = nodes.pop()
        if node.op_type == "Pad" and len(node.input) > 2:
            found.add(node.input[2])
        graphs = [a.g for a in node.attribute if a.HasField("g")] + [g for a in node.attribute for g in a.graphs]
        nodes += [n for g in graphs for n in g.node]
    return found


def _stored_tensors(graph: Any) -> Iterator[tuple[str, Any, bool]]:
    """(name, TensorProto, is a weight) of every constant an ONNX graph stores: initializers and sparse
    initializers' values (weights), and tensor attributes (Constant nodes' value, ConstantOfShape's
    value, ...) and float attributes (value_float, alpha, ...) as one-off tensors, in every subgraph."""
    from onnx import helper

    graphs = [graph]
    while graphs:
        g = graphs.pop()
        yield from ((t.name, t, True) for t in g.initializer)
        yield from ((s.values.name or s.indices.name, s.values, True) for s in g.sparse_initializer)
        for node in g.node:
            for attr in node.attribute:
                name = f"{node.name or node.op_type}.{attr.name}"
                if attr.HasField("t"):
                    yield name, attr.t, False
                yield from ((name, t, False) for t in attr.tensors)
                if attr.HasField("sparse_tensor"):
                    yield name, attr.sparse_tensor.values, False
                yield from ((name, t.values, False) for t in attr.sparse_tensors)
                if attr.type in (attr.FLOAT, attr.FLOATS):
                    floats = [attr.f] if attr.type == attr.FLOAT else list(attr.floats)
                    yield name, helper.make_tensor(attr.name, 1, [len(floats)], floats), False
                if attr.HasField("g"):  # the branches of If/Loop/Scan hold constants too
                    graphs.append(attr.g)
                graphs += list(attr.graphs)


CONTROL_FLOW = frozenset({"Loop", "Scan", "If"})
RANDOM_OPS = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                        "Bernoulli"})
# operators through which probabilities stay probabilities (or a constant multiple of them): the walk back from
# a classifier's output passes them; any other (Gemm, Conv, pooling) ends it
PASS_THROUGH = frozenset({"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Cast", "Mul", "Div",
                          "Add", "Sub", "Neg", "Where", "Concat", "Clip", "Max", "Min", "Abs", "Slice", "Gather",
                          "Expand", "Tile", "Pow", "Sqrt", "Log", "Exp"})
PROBABILITY_OPS = {"Softmax": "probabilities", "LogSoftmax": "log-probabilities",
                   "Sigmoid": "independent per-class probabilities (a multi-label head)",
                   "HardSigmoid": "independent per-class probabilities (a multi-label head)"}
_EXPORT_AGAIN = "the file is damaged or crafted (export it again with `deepvision export RUN`)"


def check_graph_ops(path: str | Path, model: Any, logits: str | None = None, branches: bool = False) -> None:
    """Refuse, at load, a node deepvision's own export never writes and onnxruntime would run as given, in one
    line naming the node and its operator: a random-number operator or a Dropout in training mode (the same
    image answered differently on every call), control flow (Loop, Scan, If or any node holding a subgraph: a
    loop onnxruntime runs inside one C call, which no signal stops; `branches` keeps If, which torchvision's
    detectors export and which runs one branch once), and, where `logits` names the output the reader applies
    softmax to, a Softmax/LogSoftmax/Sigmoid/HardSigmoid whose values reach it through operators that keep
    them probabilities (`PASS_THROUGH`: reshaped, scaled, gated by Where): softmax would be applied to
    probabilities. Subgraphs and local functions are checked too."""
    from deepvision.safeload import printable

    def node_name(node: Any) -> str:
        return f"node {printable(repr(node.name or node.op_type))[:60]} ({printable(node.op_type)[:40]})"

    def is_false(name: str, constants: dict[str, Any]) -> bool:
        from onnx import numpy_helper

        try:  # training_mode given as a constant False is inference
            return name in constants and not numpy_helper.to_array(constants[name]).any()
        except Exception:  # an unreadable tensor is no proof of inference mode
            return False

    bodies = [(model.graph.node, _constants(model.graph.node, model.graph.initializer))]
    bodies += [(f.node, _constants(f.node)) for f in model.functions]
    while bodies:
        nodes, constants = bodies.pop()
        for node in nodes:
            subgraphs = [a.g for a in node.attribute if a.HasField("g")] + [g for a in node.attribute for g in a.graphs]
            if (node.op_type in CONTROL_FLOW or subgraphs) and not (branches and node.op_type == "If"):
                raise UserError(f"{path}: {node_name(node)} is control flow, which onnxruntime runs to its end "
                                f"with no bound and no stop (not even Ctrl+C), and a deepvision export never holds "
                                f"one; {_EXPORT_AGAIN}")
            if node.op_type in RANDOM_OPS or (node.op_type == "Dropout" and len(node.input) > 2 and node.input[2]
                                              and not is_false(node.input[2], constants)):
                raise UserError(f"{path}: {node_name(node)} draws random numbers, so one image would get another "
                                f"answer on every call, and a deepvision export never holds one; "
                                f"{_EXPORT_AGAIN}")
            bodies += [(g.node, {**constants, **_constants(g.node, g.initializer)}) for g in subgraphs]
    if logits is None:
        return
    node = _probability_source(model.graph.node, logits)
    if node is not None:
        raise UserError(f"{path}: output {printable(repr(logits))[:60]} is made from {node_name(node)}: it holds "
                        f"{PROBABILITY_OPS[node.op_type]}, not logits, and softmax would misstate them (a deepvision "
                        f"export ends in logits); {_EXPORT_AGAIN}")


def _probability_source(nodes: Any, output: str) -> Any:
    """The Softmax, LogSoftmax, Sigmoid or HardSigmoid node whose values reach `output` through `PASS_THROUGH`
    operators only (scaled, gated by Where, reshaped), if any; the walk ends at every other operator."""
    producer = {out: node for node in nodes for out in node.output if out}
    todo, seen = [output], set()
    while todo:
        node = producer.get(todo.pop())
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if node.op_type in PROBABILITY_OPS:
            return node
        if node.op_type in PASS_THROUGH:
            todo += [name for name in node.input if name]
    return None


def _constants(nodes: Any, initializers: Any = ()) -> dict[str, Any]:
    """Tensor name -> TensorProto of `initializers` and of the Constant nodes among `nodes` (their `value`)."""
    found = {t.name: t for t in initializers}
    for node in nodes:
        if node.op_type == "Constant" and node.output:
            found.update((node.output[0], a.t) for a in node.attribute if a.name == "value" and a.HasField("t"))
    return found
