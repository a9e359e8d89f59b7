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
