"""Names and values read back from files a user or an attacker can edit: labels.txt, ONNX metadata and
weights, run.json, run names, printed file names. Each ends in one line or in the escaped text."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from deepvision.errors import UserError
from deepvision.safeload import check_class_names, printable

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "mxnet"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from deepvision.interop.mxnet_import import import_mxnet

    tmp = tmp_path_factory.mktemp("names")
    return Path(import_mxnet(FIX / "inception_bn_block", 7, input_size=(3, 32, 32), scale=1 / 255,
                             out=tmp / "run", quiet=True).run_dir)


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "run"
    shutil.copytree(run_dir, target, symlinks=True)
    return target


def test_printable_escapes_control_characters_only():
    assert printable("a\x1b[31mb\nc\td") == "a\\x1b[31mb\\nc\\td"
    assert printable("straße ü 猫") == "straße ü 猫"


@pytest.mark.parametrize(("names", "message"), [
    (["a", "a"], "class name 'a' is given twice"),
    (["a", "b\x1bc"], "holds a control character"),
    (["a", ""], "is empty"),
    (["a", 1], "class name 1 is a number; class names are text"),
    (["a", None], "class name None is a NoneType; class names are text"),
])
def test_check_class_names_refuses(names, message):
    with pytest.raises(UserError, match=message):
        check_class_names(names, "x")


def test_labels_txt_read_back_is_checked(run_dir, tmp_path):
    from deepvision.runs.loading import load_run

    run = _copy(run_dir, tmp_path)
    names = (run / "labels.txt").read_text().splitlines()
    assert load_run(run).classes == names  # untouched: loads
    for text, message in [
        ("\n".join(names[:-1]) + "\n", f"names {len(names) - 1} classes but the checkpoint was trained on "
                                       f"{len(names)}"),
        ("\n".join([*names, "extra"]) + "\n", f"names {len(names) + 1} classes"),
        ("\n".join(["a\x1bb", *names[1:]]) + "\n", "holds a control character"),
        ("\n".join(["a", "a", *names[2:]]) + "\n", "given twice"),
    ]:
        (run / "labels.txt").write_text(text)
        with pytest.raises(UserError, match=message):
            load_run(run)


def test_predict_prints_file_and_class_names_escaped(run_dir, tmp_path, run_cli):
    from PIL import Image

    image = tmp_path / "a\x1b[2Jb\nc.png"
    Image.new("RGB", (32, 32), (10, 200, 30)).save(image, format="PNG")
    code, out, err = run_cli("predict", run_dir, image, "--top", "1")
    assert code == 0, err
    assert "\x1b" not in out and out.splitlines()[0].endswith("a\\x1b[2Jb\\nc.png")


def test_a_run_name_with_control_characters_is_refused():
    from deepvision.config.io import build_config

    for name in ("a\x1b[31m", "a\tb", "a\u2028b"):
        with pytest.raises(UserError, match="control characters"):
            build_config({"name": name})


def test_runs_journal_escapes_run_json_strings(run_dir, tmp_path, run_cli):
    run = _copy(run_dir, tmp_path / "runs")
    state = json.loads((run / "run.json").read_text())
    state["status"] = "finished\x1b[2J\x1b[H"
    (run / "run.json").write_text(json.dumps(state))
    from deepvision.runs.rundir import RunDir

    assert RunDir(run).status() == "unknown"
    renamed = run.with_name("r\x1b[31mx")
    run.rename(renamed)
    code, out, err = run_cli("runs", tmp_path / "runs")
    assert code == 0, err
    assert "\x1b" not in out and "r\\x1b[31mx" in out and "unknown" in out


# -- ONNX -------------------------------------------------------------------------------------------
def _onnx(path: Path, classes, width: int = 2, weight: float = 1.0) -> Path:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    from deepvision.inference.onnx_runtime import METADATA_KEY

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 3, 4, 4])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, width])
    w = numpy_helper.from_array(np.full((48, width), weight, np.float32), "w")
    shape = numpy_helper.from_array(np.array([-1, 48], np.int64), "shape")
    nodes = [helper.make_node("Reshape", ["input", "shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w"], ["logits"])]
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=[w, shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = json.dumps({"preprocess": {"channels": 3, "size": [4, 4]}, "classes": classes,
                              "input": {"name": "input"}, "output": {"name": "logits"}})
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(("classes", "weight", "message"), [
    (["a"], 1.0, "metadata names 1 classes but output 'logits' gives 2 values"),
    ({"a": 1}, 1.0, "classes are not a list of names"),
    (["a", "b\x1b[2J"], 1.0, "holds a control character"),
    (["a", "a"], 1.0, "given twice"),
    (["a", "b"], float("nan"), "weight 'w' holds NaN or infinite values"),
    (["a", "b"], float("inf"), "weight 'w' holds NaN or infinite values"),
])
def test_onnx_classes_and_weights_are_checked(tmp_path, classes, weight, message):
    from deepvision.inference.onnx_runtime import OnnxClassifier

    path = _onnx(tmp_path / "m.onnx", classes, weight=weight)
    with pytest.raises(UserError, match=message):
        OnnxClassifier(path)


def test_a_valid_onnx_file_predicts_its_own_names(tmp_path):
    import torch

    from deepvision.inference.onnx_runtime import OnnxClassifier

    model = OnnxClassifier(_onnx(tmp_path / "m.onnx", ["a", "b"]))
    (top,) = model.predict_tensors(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), 2)
    assert [name for name, _ in top] == ["a", "b"] or [name for name, _ in top] == ["b", "a"]
    assert [p for _, p in top] == [0.5, 0.5]


def test_a_data_labels_file_naming_a_class_twice_is_refused(tmp_path):
    from deepvision.data.builtin_sources import read_class_names

    (tmp_path / "labels.txt").write_text("a\nb\na\n")
    with pytest.raises(UserError, match="class name 'a' is given twice"):
        read_class_names(str(tmp_path / "labels.txt"), 3)


@pytest.mark.parametrize("name", ["cat\u202egod", "c\u200bat", "a\u2066b", "\ufeffdog"])
def test_class_names_with_invisible_format_characters_are_refused(name):
    with pytest.raises(UserError, match="holds a control character .*bidi override or zero-width"):
        check_class_names(["a", name], "x")
    assert "\\u" in printable(name)


def test_a_labels_txt_with_a_bidi_override_is_refused_on_load(run_dir, tmp_path):
    from deepvision.runs.loading import load_run

    run = _copy(run_dir, tmp_path)
    names = (run / "labels.txt").read_text().splitlines()
    (run / "labels.txt").write_text("\n".join(["ok\u202ekO", *names[1:]]) + "\n")
    with pytest.raises(UserError, match="holds a control character"):
        load_run(run)
