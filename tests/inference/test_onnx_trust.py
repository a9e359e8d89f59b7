"""Hostile deepvision metadata in an .onnx file: bounded JSON, validated preprocessing, names that exist."""

from __future__ import annotations

import json

import pytest

from deepvision.errors import UserError

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def _onnx_file(path, meta: str):
    from onnx import TensorProto, helper

    from deepvision.inference.onnx_runtime import METADATA_KEY

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 3, 8, 8])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["logits"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta
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
    (_meta(input={"name": "pixels"}), "its metadata names input 'pixels'"),
    ("not json", "has no deepvision metadata"),
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


def test_minus_infinity_constants_are_kept(tmp_path):
    from onnx import TensorProto, helper

    from deepvision.onnxrt import check_weights_finite

    mask = helper.make_tensor("c", TensorProto.FLOAT, [3], [0.0, float("-inf"), 0.0])
    check_weights_finite(_graph_with(tmp_path, [helper.make_node("Constant", [], ["c"], value=mask),
                                                helper.make_node("Add", ["input", "c"], ["logits"])]))
