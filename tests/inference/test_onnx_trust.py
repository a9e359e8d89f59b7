"""Hostile deepvision metadata in an .onnx file: bounded JSON, validated preprocessing, names that exist."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from deepvision.errors import UserError

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def _onnx_file(path, meta: str, plain: str | None = None, plain_preprocess: str | None = None):
    from onnx import TensorProto, helper

    from deepvision.inference.onnx_runtime import METADATA_KEY

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 3, 8, 8])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["logits"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta
    if plain is not None:  # the plain "classes" key export writes for other tools
        entry = model.metadata_props.add()
        entry.key, entry.value = "classes", plain
    if plain_preprocess is not None:  # and the plain "preprocess" key
        entry = model.metadata_props.add()
        entry.key, entry.value = "preprocess", plain_preprocess
    onnx.save(model, str(path))
    return path


def _meta(**changes):
    meta = {"preprocess": {"channels": 3, "size": [8, 8]}, "classes": ["a", "b", "c"],
            "input": {"name": "input"}, "output": {"name": "logits"}}
    meta.update(changes)
    return json.dumps(meta)


@pytest.mark.parametrize(("meta", "message"), [
    ("[" * 20000 + "]" * 20000, "metadata: JSON nested deeper than 100 levels"),
    (_meta(preprocess={"channels": 3, "size": [45000, 45000]}), "preprocess size 45000x45000 exceeds the ceiling"),
    (_meta(preprocess={"channels": 7, "size": [8, 8]}), "preprocess channels must be 1 or 3, got 7"),
    (_meta(preprocess={"channels": 3, "size": [0, -5]}), "preprocess size 0x-5 must be positive"),
    (_meta(preprocess={"channels": 3, "size": [8, 8], "interpolaton": "bicubic"}),
     r"preprocess key 'interpolaton' is not a preprocessing setting \(did you mean: interpolation\?\)"),
    (_meta(input={"name": "pixels"}), "its metadata names input 'pixels'"),
    ("not json", "has no deepvision metadata"),
    (_meta(version=9), r"metadata is format 'deepvision-export' version 9; this deepvision reads deepvision-export "
                       r"version 1"),
    (_meta(format="other"), r"metadata is format 'other' version 1"),
    (_meta(version=True), r"metadata is format 'deepvision-export' version True"),
    (_meta(task="bogus"), r"metadata names task 'bogus'; predict runs exported classifiers"),
    (_meta(input={"name": "input", "range": [0, 1]}), r"input range \[0, 1\]; the model is fed \[0, 255\]"),
    (_meta(input={"name": "input", "layout": "NHWC"}), r"input layout 'NHWC'; the model is fed NCHW"),
    (_meta(input={"name": "input", "color": "gray"}), r"input color 'gray'; the model is fed RGB \(3 channel"),
    (_meta(classes=[0, 1, 2]), r"metadata: class name 0 is a number; class names are text"),
])
def test_onnx_metadata_is_checked(tmp_path, meta, message):
    from deepvision.inference.onnx_runtime import OnnxClassifier

    path = _onnx_file(tmp_path / "m.onnx", meta)
    with pytest.raises(UserError, match=message):
        OnnxClassifier(path)


def test_valid_metadata_loads(tmp_path):
    from deepvision.inference.onnx_runtime import OnnxClassifier

    model = OnnxClassifier(_onnx_file(tmp_path / "m.onnx", _meta()))
    assert model.classes == ["a", "b", "c"] and model.pre.size == (8, 8)
    assert OnnxClassifier(_onnx_file(tmp_path / "p.onnx", _meta(), '["a", "b", "c"]')).classes == ["a", "b", "c"]


def test_the_two_class_lists_must_agree(tmp_path):
    """predict read the deepvision metadata's classes and never the plain `classes` key: a file whose two
    lists differed answered with one of them (digit 2 named 7)."""
    from deepvision.inference.onnx_runtime import OnnxClassifier

    path = _onnx_file(tmp_path / "m.onnx", _meta(), '["c", "b", "a"]')
    with pytest.raises(UserError, match=r"m.onnx: its metadata's two classes records differ \('classes' \['c', 'b', "
                                        r"'a'\], 'deepvision' \['a', 'b', 'c'\]\); export it again"):
        OnnxClassifier(path)


def test_the_two_preprocessing_records_must_agree(tmp_path):
    """The deepvision record said nearest, the plain `preprocess` key bilinear: predict used the first
    without a word, another tool reading the plain key would preprocess otherwise."""
    from deepvision.inference.onnx_runtime import OnnxClassifier

    same = '{"channels": 3, "size": [8, 8]}'
    assert OnnxClassifier(_onnx_file(tmp_path / "s.onnx", _meta(), None, same)).pre.size == (8, 8)
    path = _onnx_file(tmp_path / "m.onnx", _meta(), None, '{"channels": 3, "size": [8, 8], "interpolation": "nearest"}')
    with pytest.raises(UserError, match=r"m.onnx: its metadata's two preprocess records differ in interpolation "
                                        r"\('preprocess' 'nearest', 'deepvision' absent\)"):
        OnnxClassifier(path)


@pytest.mark.parametrize("key", ["classes", "deepvision"])
def test_a_metadata_key_given_twice_is_refused(tmp_path, run_cli, key):
    """onnxruntime's custom_metadata_map keeps a repeated key's last entry: a file naming `classes` and
    `deepvision` twice (the later lists with 2 and 7 swapped) answered with the later lists without a word.
    predict and serve refuse it in one line and leave the file as it was."""
    from PIL import Image

    from deepvision.apps.serve import create_app
    from deepvision.inference.onnx_runtime import METADATA_KEY

    path = _onnx_file(tmp_path / "m.onnx", _meta(), '["a", "b", "c"]')
    model = onnx.load(str(path))
    entry = model.metadata_props.add()
    entry.key, entry.value = key, _meta(classes=["c", "b", "a"]) if key == METADATA_KEY else '["c", "b", "a"]'
    onnx.save(model, str(path))
    before = path.read_bytes()
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    code, out, err = run_cli("predict", path, tmp_path / "x.png")
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert f"{path}: ONNX metadata key '{key}' is given twice; the file is damaged or crafted" in err, err
    with pytest.raises(UserError, match=f"ONNX metadata key '{key}' is given twice"):
        create_app(path)
    assert path.read_bytes() == before


def _graph_with(tmp_path, nodes, initializers=(), sparse=()):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=list(initializers),
                              sparse_initializer=list(sparse))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "m.onnx"))
    return tmp_path / "m.onnx"


@pytest.mark.parametrize("where", ["constant tensor", "constant float", "sparse initializer", "subgraph"])
def test_nan_in_constants_and_sparse_weights_is_refused(tmp_path, where):
    from onnx import TensorProto, helper

    from deepvision.onnxrt import check_weights_finite

    nan = helper.make_tensor("c", TensorProto.FLOAT, [3], [1.0, float("nan"), 2.0])
    add = helper.make_node("Add", ["input", "c"], ["logits"])
    if where == "constant tensor":
        path = _graph_with(tmp_path, [helper.make_node("Constant", [], ["c"], name="k", value=nan), add])
    elif where == "constant float":
        path = _graph_with(tmp_path, [helper.make_node("Constant", [], ["c"], name="k", value_float=float("nan")),
                                      add])
    elif where == "sparse initializer":
        values = helper.make_tensor("c", TensorProto.FLOAT, [1], [float("nan")])
        indices = helper.make_tensor("c_idx", TensorProto.INT64, [1], [1])
        path = _graph_with(tmp_path, [add], sparse=[helper.make_sparse_tensor(values, indices, [3])])
    else:
        branch = helper.make_graph([helper.make_node("Constant", [], ["c2"], value=nan)], "b", [],
                                   [helper.make_tensor_value_info("c2", TensorProto.FLOAT, [3])])
        cond = helper.make_tensor("cond", TensorProto.BOOL, [], [True])
        path = _graph_with(tmp_path, [helper.make_node("Constant", [], ["k"], value=cond),
                                      helper.make_node("If", ["k"], ["c"], then_branch=branch, else_branch=branch),
                                      add])
    with pytest.raises(UserError, match=r"m\.onnx: (constant|weight) '.*' holds NaN"):
        check_weights_finite(path)


def _twice(where: str):
    """(nodes, initializers, sparse initializers) of a graph input -> logits that gives one tensor name twice."""
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])
    w7 = helper.make_tensor("w", TensorProto.FLOAT, [3], [1.0, 2.0, 300.0])
    add = helper.make_node("Add", ["input", "w"], ["logits"])
    if where == "two initializers":
        return [add], [w, w7], []
    if where == "an initializer and a sparse one":
        sparse = helper.make_sparse_tensor(w7, helper.make_tensor("w_idx", TensorProto.INT64, [3], [0, 1, 2]), [3])
        return [add], [w], [sparse]
    if where == "a Constant named like an initializer":
        return [helper.make_node("Constant", [], ["w"], value=w7), add], [w], []
    if where == "two node outputs":
        return [helper.make_node("Constant", [], ["w"], value=w), helper.make_node("Constant", [], ["w"], value=w7),
                add], [], []
    if where == "a node output named like the graph input":
        return [helper.make_node("Constant", [], ["input"], value=w7), add], [w], []
    branch = helper.make_graph([helper.make_node("Constant", [], ["w"], value=w7)], "b", [],  # a subgraph's output
                               [helper.make_tensor_value_info("w", TensorProto.FLOAT, [3])])
    cond = helper.make_tensor("cond", TensorProto.BOOL, [], [True])
    return [helper.make_node("Constant", [], ["k"], value=cond),
            helper.make_node("If", ["k"], ["v"], then_branch=branch, else_branch=branch), add], [w], []


@pytest.mark.parametrize(("where", "message"), [
    ("two initializers", r"m\.onnx: the weight 'w' is given twice; ONNX names each tensor once"),
    ("an initializer and a sparse one", r"m\.onnx: the weight 'w' is given twice; ONNX names each tensor once"),
    ("a Constant named like an initializer", r"m\.onnx: tensor 'w' is given twice: a weight and the output of node "
                                             r"'Constant' \(Constant\); ONNX names each tensor once"),
    ("two node outputs", r"m\.onnx: tensor 'w' is given twice: the output of node 'Constant' \(Constant\) and the "
                         r"output of node 'Constant' \(Constant\)"),
    ("a node output named like the graph input", r"tensor 'input' is given twice: a graph input and the output of"),
    ("a subgraph output named like a weight", r"tensor 'w' is given twice \(in a subgraph\): a name of the "
                                              r"enclosing graph and the output of node"),
])
def test_a_tensor_name_given_twice_is_refused(tmp_path, where, message):
    """onnxruntime takes a second initializer (or a Constant node named like one) and keeps the later: a
    crafted bias answered class 7 at 100% for a 2. ONNX's checker refuses such a graph; so does every reader."""
    from deepvision.onnxrt import load_model

    path = _graph_with(tmp_path, *_twice(where))
    with pytest.raises(UserError, match=message):
        load_model(path)


def test_an_initializer_named_like_a_graph_input_is_its_default(tmp_path):
    """ONNX allows it (the initializer is the input's default value): not a name given twice."""
    from onnx import TensorProto, helper

    from deepvision.onnxrt import load_model

    w = helper.make_tensor("input", TensorProto.FLOAT, [1, 3], [1.0, 2.0, 3.0])
    assert load_model(_graph_with(tmp_path, [helper.make_node("Identity", ["input"], ["logits"])], [w])).graph


def test_predict_and_serve_refuse_a_weight_given_twice(tmp_path, run_cli):
    from onnx import TensorProto, helper
    from PIL import Image

    from deepvision.apps.serve import create_app

    path = _onnx_file(tmp_path / "m.onnx", _meta())
    model = onnx.load(str(path))
    for value in (0.0, 7.0):  # two initializers of one name, neither read by the graph
        model.graph.initializer.append(helper.make_tensor("b", TensorProto.FLOAT, [1], [value]))
    onnx.save(model, str(path))
    before = path.read_bytes()
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    code, out, err = run_cli("predict", path, tmp_path / "x.png")
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert f"{path}: the weight 'b' is given twice; ONNX names each tensor once: the file is damaged or crafted" \
           in err, err
    with pytest.raises(UserError, match="the weight 'b' is given twice"):
        create_app(path)
    assert path.read_bytes() == before


def test_minus_infinity_constants_are_kept(tmp_path):
    from onnx import TensorProto, helper

    from deepvision.onnxrt import check_weights_finite

    mask = helper.make_tensor("c", TensorProto.FLOAT, [3], [0.0, float("-inf"), 0.0])
    check_weights_finite(_graph_with(tmp_path, [helper.make_node("Constant", [], ["c"], value=mask),
                                                helper.make_node("Add", ["input", "c"], ["logits"])]))


def test_minus_infinity_as_a_pad_value_is_kept_and_elsewhere_refused(tmp_path):
    """An exported max-pooling with explicit padding (mini_xception's TensorFlow "same") pads with an
    initializer holding -inf: every such export was refused as holding an infinite weight. A Pad's value may be
    -inf; the same initializer feeding an Add, or NaN as a Pad's value, is refused as before."""
    from onnx import TensorProto, helper

    from deepvision.onnxrt import check_weights_finite

    pads = helper.make_tensor("pads", TensorProto.INT64, [4], [0, 0, 0, 1])
    for value, op, refused in ((float("-inf"), "Pad", False), (float("nan"), "Pad", True),
                               (float("-inf"), "Add", True), (float("inf"), "Pad", True)):
        v = helper.make_tensor("v", TensorProto.FLOAT, [], [value])
        node = helper.make_node("Pad", ["input", "pads", "v"], ["logits"]) if op == "Pad" else \
            helper.make_node("Add", ["input", "v"], ["logits"])
        path = _graph_with(tmp_path, [node], [pads, v])
        if refused:
            with pytest.raises(UserError, match="weight 'v' holds NaN or infinite values"):
                check_weights_finite(path)
        else:
            check_weights_finite(path)


def _bomb_onnx(path):
    """A 300-byte classifier (3 classes, 8x8 RGB) whose ConstantOfShape asks for 4 TB when it runs."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from deepvision.inference.onnx_runtime import METADATA_KEY

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 3, 8, 8])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 3])
    size = numpy_helper.from_array(np.array([1_000_000, 1_000_000], np.int64), "size")
    nodes = [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("ConstantOfShape", ["size"], ["big"],
                              value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0])),
             helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
             helper.make_node("Add", ["flat", "total"], ["logits"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [size]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, _meta()
    onnx.save(model, str(path))
    return path


def test_a_graph_asking_for_a_huge_tensor_at_run_time_is_one_line(tmp_path, run_cli):
    """The graph passes every load check; the shared arena's cap stops the allocation and predict says
    so in one line, exit 2."""
    from PIL import Image

    path = _bomb_onnx(tmp_path / "bomb.onnx")
    Image.new("RGB", (8, 8), (9, 9, 9)).save(tmp_path / "x.png")
    code, _, err = run_cli("predict", path, tmp_path / "x.png")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "its ConstantOfShape node asks for 4.0 TB at run time, above the" in err
    assert "DEEPVISION_MAX_READ_GB raises it" in err


def test_serve_answers_a_model_failure_with_one_json_line(tmp_path, capfd):
    """serve: the same graph is HTTP 500 with the reason in JSON and one log line, no traceback."""
    import io

    from fastapi.testclient import TestClient
    from PIL import Image

    from deepvision.apps.serve import create_app

    image = io.BytesIO()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(image, format="PNG")
    with TestClient(create_app(_bomb_onnx(tmp_path / "bomb.onnx")), raise_server_exceptions=False) as client:
        answer = client.post("/api/predict", files={"file": ("x.png", image.getvalue())})
    assert answer.status_code == 500
    assert answer.json()["error"].startswith("the model failed on this image: ")
    assert "asks for 4.0 TB at run time" in answer.json()["error"]
    err = capfd.readouterr().err
    assert "Traceback" not in err and "asks for 4.0 TB" in err


def test_a_fifo_named_as_the_onnx_file_is_named_as_such(tmp_path, run_cli):
    import os

    from PIL import Image

    os.mkfifo(tmp_path / "m.onnx")
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    code, _, err = run_cli("predict", tmp_path / "m.onnx", tmp_path / "x.png")
    assert code == 2 and len(err.splitlines()) == 1 and f"ONNX file {tmp_path / 'm.onnx'} is a FIFO" in err


def test_nan_in_external_data_is_refused(tmp_path):
    """An initializer stored beside the file (ONNX external data) is checked like an inline one."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from deepvision.inference.onnx_runtime import METADATA_KEY, OnnxClassifier
    from deepvision.onnxrt import external_data_record

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 3, 8, 8])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 3])
    weight = numpy_helper.from_array(np.ones((3, 3), np.float32), "w")
    nodes = [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["logits"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [weight]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    entry = model.metadata_props.add()
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    location = tensor.external_data.add()
    location.key, location.value = "location", "w.bin"
    for fill, ok in ((1.0, True), (np.nan, False)):
        np.full(9, fill, np.float32).tofile(tmp_path / "w.bin")
        entry.key, entry.value = METADATA_KEY, _meta(external_data=external_data_record(tmp_path / "w.bin"))
        onnx.save(model, str(tmp_path / "m.onnx"))
        if ok:
            assert OnnxClassifier(tmp_path / "m.onnx").classes == ["a", "b", "c"]
        else:
            with pytest.raises(UserError, match=r"m.onnx: weight 'w' holds NaN or infinite values"):
                OnnxClassifier(tmp_path / "m.onnx")


@pytest.mark.parametrize(("argv", "message"), [
    (["--epoch", "3"], "--epoch applies to run directories; {path} holds one set of weights"),
    (["--device", "cuda:7"], "--device cuda:7 applies to run directories; {path} runs on the CPU (onnxruntime)"),
])
def test_run_options_given_with_an_onnx_file_are_refused(tmp_path, run_cli, argv, message):
    """predict and serve: --epoch and --device cuda would be ignored for an exported file; one line."""
    from PIL import Image

    from deepvision.apps.serve import create_app

    path = _onnx_file(tmp_path / "m.onnx", _meta())
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    code, out, err = run_cli("predict", path, tmp_path / "x.png", *argv)
    assert (code, out) == (2, "") and err.count("\n") == 1 and message.format(path=path) in err, err
    with pytest.raises(UserError, match=r"--device cuda applies to run directories; .* runs on the CPU"):
        create_app(path, device="cuda")
    create_app(path, device="cpu")  # the CPU is where it runs


def _tail_onnx(path, tail, initializers=(), output="logits", metadata=True):
    """A classifier (3 classes, 8x8 RGB) whose pooled values 'raw' go through the nodes `tail` to `output`."""
    from onnx import TensorProto, helper

    from deepvision.inference.onnx_runtime import METADATA_KEY

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info(output, TensorProto.FLOAT, None)
    nodes = [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["raw"]), *tail]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], list(initializers)),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata:
        entry = model.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, _meta()
    onnx.save(model, str(path))
    return path


def _loop_and_branch(kind):
    """A Loop of 10^12 empty iterations passing 'raw' through, or an If choosing it."""
    from onnx import TensorProto, helper

    if kind == "If":
        branch = helper.make_graph([helper.make_node("Identity", ["raw"], ["out"])], "branch", [],
                                   [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)])
        return [helper.make_node("If", ["c"], ["logits"], then_branch=branch, else_branch=branch)], \
            [helper.make_tensor("c", TensorProto.BOOL, [], [True])]
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Identity", ["v_in"], ["v_out"])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("v_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None)])
    trips = helper.make_tensor("M", TensorProto.INT64, [], [10**12])
    return [helper.make_node("Loop", ["M", "c", "raw"], ["logits"], body=body)], \
        [trips, helper.make_tensor("c", TensorProto.BOOL, [], [True])]


def _tampered(kind):
    """(tail nodes, initializers) of a graph no deepvision export writes."""
    from onnx import TensorProto, helper

    if kind in ("Loop", "If"):
        return _loop_and_branch(kind)
    if kind == "Softmax":
        return [helper.make_node("Softmax", ["raw"], ["logits"], axis=1)], []
    if kind == "LogSoftmax":  # through Reshape and Identity
        return [helper.make_node("LogSoftmax", ["raw"], ["p"], axis=1),
                helper.make_node("Reshape", ["p", "shape"], ["q"]), helper.make_node("Identity", ["q"], ["logits"])], \
            [helper.make_tensor("shape", TensorProto.INT64, [2], [1, 3])]
    if kind in ("Sigmoid", "HardSigmoid"):  # through Flatten
        return [helper.make_node(kind, ["raw"], ["p"]), helper.make_node("Flatten", ["p"], ["logits"])], []
    if kind in ("Softmax x 0.5", "Sigmoid x 1"):  # scaled: rows no longer sum to 1 on the blank image
        op, factor = kind.split(" x ")
        node = helper.make_node(op, ["raw"], ["p"], **({"axis": 1} if op == "Softmax" else {}))
        return [node, helper.make_node("Mul", ["p", "k"], ["logits"])], \
            [helper.make_tensor("k", TensorProto.FLOAT, [1], [float(factor)])]
    if kind == "gated Softmax":  # the logits on a uniform (blank) image, probabilities on any other
        return [helper.make_node("ReduceMax", ["raw"], ["mx"], keepdims=0),
                helper.make_node("ReduceMin", ["raw"], ["mn"], keepdims=0),
                helper.make_node("Equal", ["mx", "mn"], ["blank"]), helper.make_node("Softmax", ["raw"], ["p"], axis=1),
                helper.make_node("Where", ["blank", "raw", "p"], ["logits"])], []
    if kind == "RandomNormalLike":
        return [helper.make_node("RandomNormalLike", ["raw"], ["rn"], scale=10.0),
                helper.make_node("Add", ["raw", "rn"], ["logits"])], []
    ratio = helper.make_tensor("ratio", TensorProto.FLOAT, [], [0.5])
    return [helper.make_node("Dropout", ["raw", "ratio", "train"], ["logits"])], \
        [ratio, helper.make_tensor("train", TensorProto.BOOL, [], [True])]


@pytest.mark.parametrize(("kind", "message"), [
    ("Loop", r"node 'Loop' \(Loop\) is control flow, which onnxruntime runs to its end with no bound and no stop"),
    ("If", r"node 'If' \(If\) is control flow"),
    ("Softmax", r"output 'logits' is made from node 'Softmax' \(Softmax\): it holds probabilities, not logits, "
                r"and softmax would misstate them"),
    ("LogSoftmax", r"output 'logits' is made from node 'LogSoftmax' \(LogSoftmax\): it holds log-probabilities"),
    ("Sigmoid", r"output 'logits' is made from node 'Sigmoid' \(Sigmoid\): it holds independent per-class "
                r"probabilities \(a multi-label head\), not logits"),
    ("HardSigmoid", r"output 'logits' is made from node 'HardSigmoid' \(HardSigmoid\)"),
    ("Softmax x 0.5", r"output 'logits' is made from node 'Softmax' \(Softmax\): it holds probabilities"),
    ("Sigmoid x 1", r"output 'logits' is made from node 'Sigmoid' \(Sigmoid\)"),
    ("gated Softmax", r"output 'logits' is made from node 'Softmax' \(Softmax\)"),
    ("RandomNormalLike", r"node 'RandomNormalLike' \(RandomNormalLike\) draws random numbers, so one image would get "
                         r"another answer on every call"),
    ("Dropout", r"node 'Dropout' \(Dropout\) draws random numbers"),
])
def test_predict_and_serve_refuse_a_graph_no_export_writes(tmp_path, run_cli, kind, message):
    """A Loop of 10^12 iterations hung predict beyond SIGTERM and Ctrl+C (onnxruntime runs it inside one C call),
    an output 'logits' made by Softmax went through softmax twice (14% for 46%), a random node answered another
    class on every call; all exit 0 or never. predict and serve refuse them at load in one line naming the node."""
    from PIL import Image

    from deepvision.apps.serve import create_app

    path = _tail_onnx(tmp_path / "m.onnx", *_tampered(kind))
    before = path.read_bytes()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(tmp_path / "x.png")
    code, out, err = run_cli("predict", path, tmp_path / "x.png")
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert re.search(f"{re.escape(str(path))}: {message}.*; the file is damaged or crafted", err), err
    with pytest.raises(UserError, match=message):
        create_app(path)
    assert path.read_bytes() == before


def _probabilities(kind):
    """(tail nodes, initializers, local functions) whose output 'logits' holds probabilities another way than
    a Softmax writing it: computed by hand, a Softmax in a model-local function, a Softmax through MatMul by the
    identity."""
    from onnx import TensorProto, helper

    if kind == "by hand":  # on pixels scaled to 0..1, as an export's own normalisation does
        nodes = [helper.make_node("Mul", ["raw", "scale"], ["r"]), helper.make_node("Exp", ["r"], ["e"]),
                 helper.make_node("ReduceSum", ["e", "ax"], ["s"], keepdims=1),
                 helper.make_node("Div", ["e", "s"], ["logits"])]
        return nodes, [helper.make_tensor("ax", TensorProto.INT64, [1], [1]),
                       helper.make_tensor("scale", TensorProto.FLOAT, [1], [1 / 255])], []
    if kind == "function":
        body = [helper.make_node("Softmax", ["x"], ["y"], axis=1)]
        function = helper.make_function("local.fn", "Sm", ["x"], ["y"], body, [helper.make_opsetid("", 17)])
        return [helper.make_node("Sm", ["raw"], ["logits"], domain="local.fn")], [], [function]
    nodes = [helper.make_node("Softmax", ["raw"], ["p"], axis=1), helper.make_node("MatMul", ["p", "eye"], ["logits"])]
    return nodes, [helper.make_tensor("eye", TensorProto.FLOAT, [3, 3], np.eye(3).ravel().tolist())], []


@pytest.mark.parametrize("kind", ["by hand", "function", "MatMul by the identity"])
def test_predict_and_serve_refuse_an_output_holding_probabilities(tmp_path, run_cli, kind):
    """Probabilities reaching the output past the graph rule (a softmax by hand, inside a local function, through
    MatMul by the identity) went through softmax twice (14% where the model says 46%), exit 0. The model runs once
    at load on a blank image: rows in [0, 1] summing to 1 are refused in one line, by predict and serve."""
    from onnx import helper
    from PIL import Image

    from deepvision.apps.serve import create_app

    nodes, initializers, functions = _probabilities(kind)
    path = _tail_onnx(tmp_path / "m.onnx", nodes, initializers)
    if functions:
        model = onnx.load(str(path))
        model.functions.extend(functions)
        model.opset_import.append(helper.make_opsetid("local.fn", 1))
        onnx.save(model, str(path))
    before = path.read_bytes()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(tmp_path / "x.png")
    message = (f"{path}: its output 'logits' holds probabilities (each row sums to 1), not logits, and would go "
               f"through softmax twice; export the logits")
    code, out, err = run_cli("predict", path, tmp_path / "x.png")
    assert (code, out) == (2, "") and err.count("\n") == 1 and message in err, err
    with pytest.raises(UserError, match=re.escape(message)):
        create_app(path)
    assert path.read_bytes() == before


def test_logits_that_look_like_probabilities_only_on_some_rows_are_kept(tmp_path):
    """Logits in [0, 1] that do not sum to 1, and a graph that fails on every image (reported image by image,
    as before), load."""
    from onnx import TensorProto, helper

    from deepvision.inference.onnx_runtime import OnnxClassifier

    small = [helper.make_node("Mul", ["raw", "k"], ["logits"])]  # 128 / 1000 each: in [0, 1], summing to 0.384
    k = helper.make_tensor("k", TensorProto.FLOAT, [1], [1e-3])
    assert OnnxClassifier(_tail_onnx(tmp_path / "small.onnx", small, [k])).classes == ["a", "b", "c"]
    assert OnnxClassifier(_bomb_onnx(tmp_path / "bomb.onnx")).classes == ["a", "b", "c"]


def test_graphs_an_export_may_hold_are_kept(tmp_path):
    """A Dropout in inference mode and a Softmax not producing the output; for a detector (whose scores are
    probabilities and whose torchvision graph holds If nodes) an If and a final Softmax, never a Loop."""
    from onnx import TensorProto, helper

    from deepvision.inference.onnx_runtime import OnnxClassifier
    from deepvision.onnxrt import check_graph_ops, load_model

    off = helper.make_tensor("train", TensorProto.BOOL, [], [False])
    tail = [helper.make_node("Dropout", ["raw", "", "train"], ["d"]), helper.make_node("Softmax", ["d"], ["s"]),
            helper.make_node("ReduceSum", ["s"], ["r"]), helper.make_node("Add", ["raw", "r"], ["logits"])]
    assert OnnxClassifier(_tail_onnx(tmp_path / "ok.onnx", tail, [off])).classes == ["a", "b", "c"]
    for kind in ("If", "Softmax"):
        path = _tail_onnx(tmp_path / f"{kind}.onnx", *_tampered(kind))
        check_graph_ops(path, load_model(path), branches=True)


def _detector_onnx(path, branch_nodes, branch_initializers=()):
    """A graph whose output 'boxes' comes out of an If whose branch holds `branch_nodes` making 'out'."""
    from onnx import TensorProto, helper

    branch = helper.make_graph(branch_nodes, "branch", [], [helper.make_tensor_value_info("out", TensorProto.FLOAT,
                                                                                           None)])
    tail = [helper.make_node("If", ["cond"], ["boxes"], then_branch=branch, else_branch=branch)]
    return _tail_onnx(path, tail, [helper.make_tensor("cond", TensorProto.BOOL, [], [True]), *branch_initializers],
                      output="boxes", metadata=False)


@pytest.mark.parametrize("kind", ["RandomUniformLike", "Loop"])
def test_the_detector_loader_refuses_a_random_node_or_a_loop_in_a_branch(tmp_path, kind):
    """The exported detector's loader keeps If but refuses random numbers and loops, subgraphs included."""
    from onnx import helper

    from deepvision.export.detection import load_exported

    if kind == "Loop":
        nodes, initializers = _loop_and_branch("Loop")
        nodes[0].output[0] = "out"
    else:
        nodes, initializers = [helper.make_node("RandomUniformLike", ["raw"], ["out"])], []
    path = _detector_onnx(tmp_path / "det.onnx", nodes, initializers)
    with pytest.raises(UserError, match=rf"det.onnx: node '{kind}' \({kind}\) (draws random|is control flow)"):
        load_exported(path)
