"""Metadata that is within its own limits but disagrees with the model it describes (a run's
preprocess.json, an .onnx file's deepvision metadata): refused in one line before any weight is built."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from deepvision.config.io import build_config
from deepvision.data.preprocess import Preprocess
from deepvision.errors import UserError
from deepvision.models.registry import create_model
from deepvision.runs.imported import write_imported_run


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def lenet_run(tmp_path):
    """A LeNet run for 1-channel 28x28 input (its classifier size depends on the input size)."""
    cfg = build_config({"name": "t", "model": {"name": "lenet", "num_classes": 2, "in_channels": 1},
                        "data": {"source": "digits"}})
    torch.manual_seed(0)
    state = create_model("lenet", 2, 1, input_size=28).state_dict()
    return write_imported_run(tmp_path / "run", cfg, Preprocess(channels=1, size=(28, 28)), ["a", "b"], state,
                              epoch=1, source={"file": "test"}).path


def _tamper(run, **changes):
    """preprocess.json and the checkpoints' record of it changed alike (either alone is refused as an edit)."""
    pre = json.loads((run / "preprocess.json").read_text())
    (run / "preprocess.json").write_text(json.dumps({**pre, **changes}))
    for path in (run / "checkpoints").glob("*.pt"):
        ckpt = torch.load(path, weights_only=True)
        ckpt["preprocess"] = {**ckpt["preprocess"], **changes}
        torch.save(ckpt, path)


def test_a_preprocess_json_edited_against_the_checkpoint_is_refused(lenet_run, tmp_path, run_cli):
    """scale 0.0015 instead of 1/255 scored the same weights 12 points lower without a word."""
    from PIL import Image

    pre = json.loads((lenet_run / "preprocess.json").read_text())
    (lenet_run / "preprocess.json").write_text(json.dumps({**pre, "scale": 0.0015}))
    Image.new("L", (28, 28)).save(tmp_path / "a.png")
    code, out, err = run_cli("predict", lenet_run, tmp_path / "a.png")
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert err.endswith(f"{lenet_run / 'preprocess.json'} gives scale 0.0015 but best.pt was trained with "
                        f"{1 / 255!r}; undo the edit: a run's preprocessing never changes\n"), err


@pytest.mark.parametrize(("changes", "message"), [
    ({"channels": 3}, r"gives 3 channel\(s\) but the model's first layer features\.0 takes 1"),
    # LeNet's classifier grows with the input: 4000x4000 would rebuild a 200 GB linear layer
    ({"size": [4000, 4000]}, r"input 4000x4000, 1 channel\(s\)\) does not fit .*classifier\.1\.weight is "
                             r"\(500, 800\) there"),
])
@pytest.mark.parametrize("command", ["predict", "export", "evaluate"])
def test_preprocess_that_disagrees_with_the_model_is_one_line(lenet_run, tmp_path, run_cli, changes, message,
                                                              command):
    from PIL import Image

    _tamper(lenet_run, **changes)
    Image.new("L", (28, 28)).save(tmp_path / "a.png")
    before = _digest(lenet_run)
    extra = {"predict": [tmp_path / "a.png"], "export": ["--out", tmp_path / "m.onnx"],
             "evaluate": ["--data", "train"]}[command]  # the run's digits have no test split
    code, _, err = run_cli(command, lenet_run, *extra)
    assert code == 2 and err.strip().splitlines()[-1].startswith(f"deepvision {command}: error: ")
    assert "Traceback" not in err and __import__("re").search(message, err)
    assert _digest(lenet_run) == before and not (tmp_path / "m.onnx").exists()


def test_the_model_budget_is_checked_before_building(lenet_run, monkeypatch):
    from deepvision.runs.loading import load_run

    monkeypatch.setenv("DEEPVISION_MAX_READ_GB", "0.000001")  # 1 kB: LeNet's 1.7 MB does not fit
    with pytest.raises(UserError, match=r"the model for input 28x28 would need 1\.7 MB for its parameters, above"):
        load_run(lenet_run)


def test_serve_refuses_such_a_run_at_start(lenet_run):
    pytest.importorskip("fastapi")
    from deepvision.apps.serve.app import create_app

    _tamper(lenet_run, channels=3)
    with pytest.raises(UserError, match="gives 3 channel"):
        create_app(lenet_run, device="cpu")


def _onnx(path, shape, pre):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    from deepvision.inference.onnx_runtime import METADATA_KEY

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, shape)
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["logits"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = json.dumps({"preprocess": pre, "classes": ["a"], "input": {"name": "input"},
                              "output": {"name": "logits"}})
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("pre", [{"channels": 3, "size": [28, 28]}, {"channels": 1, "size": [56, 56]}])
def test_onnx_metadata_that_disagrees_with_the_graph_input_is_one_line(tmp_path, pre):
    from deepvision.inference.onnx_runtime import OnnxClassifier

    path = _onnx(tmp_path / "m.onnx", [1, 1, 28, 28], pre)
    with pytest.raises(UserError, match=r"input 'input' takes 1x28x28; export it again"):
        OnnxClassifier(path)


def test_onnx_with_dynamic_sides_takes_the_metadata_size(tmp_path):
    from deepvision.inference.onnx_runtime import OnnxClassifier

    path = _onnx(tmp_path / "m.onnx", ["n", 1, "h", "w"], {"channels": 1, "size": [56, 40]})
    assert OnnxClassifier(path).pre.size == (56, 40)


def test_a_bare_checkpoint_whose_preprocessing_disagrees_is_one_line(lenet_run, tmp_path):
    from deepvision.apps.classifier import load_classifier
    from deepvision.runs.checkpoint import atomic_save, load_checkpoint

    ckpt = load_checkpoint(lenet_run / "checkpoints" / "best.pt")
    ckpt["preprocess"] = {**ckpt["preprocess"], "size": [4000, 4000]}
    atomic_save(ckpt, tmp_path / "bare.pt")
    with pytest.raises(UserError, match=r"the preprocessing stored in .*bare\.pt \(input 4000x4000, 1 channel\(s\)\) "
                                        r"does not fit"):
        load_classifier(tmp_path / "bare.pt", device="cpu")


@pytest.mark.parametrize("how", ["run", "checkpoint"])
def test_a_loaded_model_is_planned_once(lenet_run, monkeypatch, how):
    import dataclasses
    import functools

    from deepvision.apps.classifier import load_classifier
    from deepvision.models import registry

    spec = registry.get_model_spec("lenet")
    devices = []

    @functools.wraps(spec.builder)
    def counting(*args, **kwargs):
        devices.append(torch.empty(()).device.type)
        return spec.builder(*args, **kwargs)

    monkeypatch.setitem(registry._REGISTRY, "lenet", dataclasses.replace(spec, builder=counting))
    path = lenet_run if how == "run" else lenet_run / "checkpoints" / "best.pt"
    classifier = load_classifier(path, device="cpu")
    assert devices == ["meta", "cpu"]
    assert classifier.classes == ["a", "b"]
    devices.clear()
    create_model("lenet", 2, 1)  # built alone, the registry plans it itself
    assert devices == ["meta", "cpu"]
