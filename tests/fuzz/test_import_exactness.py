"""Imports that would compute another function than the file's: MXNet indices that are not integers, a
PReLU without its slopes, a Dropout rate that is no rate, Keras weights the layer's config would drop."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from deepvision.errors import UserError

KERAS = Path(__file__).resolve().parents[1] / "fixtures" / "keras" / "keras_mnist_cnn.h5"


def _symbol(middle: list[dict], heads=None) -> str:
    nodes = [{"op": "null", "name": "data", "inputs": []}]
    for node in middle:
        nodes.append({**node, "inputs": [[len(nodes) - 1, 0, 0], *node.get("inputs", [])]})
    last = len(nodes) - 1
    nodes += [{"op": "null", "name": "fc_weight", "inputs": []}, {"op": "null", "name": "fc_bias", "inputs": []},
              {"op": "FullyConnected", "name": "fc", "attrs": {"num_hidden": "2"},
               "inputs": [[last, 0, 0], [last + 1, 0, 0], [last + 2, 0, 0]]}]
    return json.dumps({"nodes": nodes, "heads": heads or [[len(nodes) - 1, 0, 0]]})


def _build(text: str):
    from deepvision.models.mxnet_graph import build_graph
    from deepvision.models.mxnet_symbol import parse_symbol

    return build_graph(parse_symbol(text, "s.json"), 0, 3, 4)


def test_a_plain_symbol_builds():
    assert _build(_symbol([{"op": "Dropout", "name": "dr", "attrs": {"p": "0.5"}}])) is not None


@pytest.mark.parametrize("heads", [[[5.5, 0, 0]], [["4", 0, 0]], [[True, 0, 0]], [[4, 0.5, 0]]])
def test_mxnet_head_indices_must_be_integers(heads):
    from deepvision.models.mxnet_symbol import parse_symbol

    with pytest.raises(UserError, match=r"s\.json is a damaged MXNet symbol file \(index .* is not an integer\)"):
        parse_symbol(_symbol([], heads), "s.json")


def test_mxnet_input_indices_must_be_integers():
    from deepvision.models.mxnet_symbol import parse_symbol

    raw = json.loads(_symbol([]))
    raw["nodes"][-1]["inputs"][0] = [0.0, 0, 0]
    with pytest.raises(UserError, match=r"index 0\.0 is not an integer"):
        parse_symbol(json.dumps(raw), "s.json")


def test_prelu_without_its_gamma_is_refused():
    with pytest.raises(UserError, match=r"MXNet node 'lk' \(LeakyReLU\): act_type prelu needs its gamma input"):
        _build(_symbol([{"op": "LeakyReLU", "name": "lk", "attrs": {"act_type": "prelu"}}]))


@pytest.mark.parametrize("p", ["nan", "1", "2", "-0.1"])
def test_a_dropout_rate_outside_0_1_is_refused(p):
    with pytest.raises(UserError, match=r"MXNet node 'dr' \(Dropout\): p="):
        _build(_symbol([{"op": "Dropout", "name": "dr", "attrs": {"p": p}}]))


@pytest.mark.parametrize("route", [[], ["--model", "auto"]])
def test_a_keras_bias_the_config_turns_off_is_refused(tmp_path, run_cli, route):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "m.h5"
    shutil.copy(KERAS, path)
    with h5py.File(path, "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        cfg["config"]["layers"][1]["config"]["use_bias"] = False
        f.attrs["model_config"] = json.dumps(cfg)
    before = path.read_bytes()
    code, _, err = run_cli("import", "keras", path, "--out", tmp_path / "run", *route)
    assert code == 2 and err.count("\n") == 1, err
    assert "conv2d_7" in err and "bias" in err, err
    assert not (tmp_path / "run").exists() and path.read_bytes() == before


def _keras_with_extra(path: Path, kind: str) -> list[str]:
    """The MNIST Keras file with two weight datasets no layer uses; returns their paths."""
    import numpy as np

    h5py = pytest.importorskip("h5py")
    shutil.copy(KERAS, path)
    with h5py.File(path, "r+") as f:
        g = f["model_weights"]
        extra = ["/model_weights/conv2d_7/conv2d_7/extra:0", "/model_weights/dense_5/stray:0"]
        if kind == "stray":
            extra[0] = "/model_weights/extra"
        for name in extra:
            f[name] = np.ones(3, np.float32)
        if kind == "listed":
            names = list(g["conv2d_7"].attrs["weight_names"]) + [b"conv2d_7/extra:0"]
            g["conv2d_7"].attrs["weight_names"] = np.array(names, dtype="S")
    return extra


@pytest.mark.parametrize("kind", ["unlisted", "listed", "stray"])
@pytest.mark.parametrize("route", [[], ["--model", "auto"]])
def test_a_keras_weight_no_layer_uses_is_refused(tmp_path, run_cli, route, kind):
    path = tmp_path / "m.h5"
    extra = _keras_with_extra(path, kind)
    before = path.read_bytes()
    code, _, err = run_cli("import", "keras", path, "--out", tmp_path / "run", *route)
    assert code == 2 and err.count("\n") == 1, err
    assert "2 weight dataset(s)" in err and all(name in err for name in extra), err
    assert not (tmp_path / "run").exists() and path.read_bytes() == before


def test_the_keras_weights_of_a_plain_file_are_all_used():
    from deepvision.interop.keras_files import read_keras_file
    from deepvision.interop.keras_h5 import read_keras_h5

    assert sum(len(layer.weights) for layer in read_keras_file(KERAS).layers) == \
        sum(len(layer.weights) for layer in read_keras_h5(KERAS).layers) > 0


@pytest.mark.parametrize("name", ["ops_se.h5", "ops_se.keras"])
def test_a_normalization_count_is_bookkeeping_not_an_unused_weight(name):
    """Keras stores Normalization's adapt() sample count beside mean and variance; it computes nothing."""
    from deepvision.interop.keras_files import read_keras_file

    kfile = read_keras_file(KERAS.parent / "graph" / name)
    assert any(layer.class_name == "Normalization" for layer in kfile.layers)
