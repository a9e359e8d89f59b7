"""Graph-built Keras import: parity with real Keras (fixtures written by Keras 3 and tf-keras 2),
the formats (.h5, .keras, weights-only + config), refusals, and the run it writes going through
evaluate, predict and ONNX export.

The fixtures come from tests/fixtures/keras/make_keras_graph_fixtures.py; with KERAS_PYTHON set to an
interpreter with Keras they are also regenerated and compared live."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch

from deepvision.errors import UserError
from deepvision.interop.keras_import import load_keras
from deepvision.models.keras_graph import KerasGraph, parse_json
from deepvision.runs.loading import load_run
from deepvision.safeload import MAX_DEPTH

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "keras"
GRAPH = FIXTURES / "graph"
KERAS_PYTHON = os.environ.get("KERAS_PYTHON")
KERAS3 = ["shallownet", "lenet", "minivggnet", "mnist_cnn", "resnet_small", "inception_small", "zoo_a", "zoo_b",
          "nested", "dense_raw", "vgg_leaky", "vgg_bn_first", "vgg_strided", "ops_se"]
KERAS2 = ["k2_lenet", "k2_minivggnet", "k2_resnet_small", "k2_zoo_a", "k2_zoo_b", "k2_nested", "k2_vgg_leaky"]


def run_graph(model: torch.nn.Module, x_keras: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(x_keras)
    x = x.movedim(-1, 1) if x.dim() >= 3 else x
    with torch.no_grad():
        out = model(x)
    return (torch.softmax(out, 1) if model.softmax_dropped else out).numpy()


def graph_of(path: Path) -> KerasGraph:
    from deepvision.interop.keras_files import load_graph_weights, open_keras

    with open_keras(path) as src:
        graph = KerasGraph(src.config, keras_version=src.keras_version)
        load_graph_weights(src, graph)
    return graph.eval()


def check_parity(path: Path, ref: Path) -> None:
    data = np.load(ref)
    out = run_graph(graph_of(path), data["x"])
    np.testing.assert_allclose(out, data["out"], atol=1e-5, rtol=0)
    assert np.abs(data["out"][0] - data["out"][1]).max() > 1e-4  # the inputs matter: nothing trivial passed


@pytest.mark.parametrize("name", KERAS3)
def test_keras3_files_match_keras(name):
    check_parity(GRAPH / f"{name}.keras", GRAPH / f"{name}.npz")


@pytest.mark.parametrize("name", ["shallownet", "zoo_a", "zoo_b", "nested", "conv1d", "ops_se"])
def test_keras3_h5_files_match_keras(name):
    check_parity(GRAPH / f"{name}.h5", GRAPH / f"{name}.npz")


@pytest.mark.parametrize("name", KERAS2)
def test_keras2_files_match_keras(name):
    check_parity(GRAPH / f"{name}.h5", GRAPH / f"{name}.npz")


def test_fer_keras_2_0_5_model_is_rebuilt_exactly():
    from tests.faces.facetools import FACE, astronaut_bgr, fer_model

    names = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    imported = load_keras(fer_model(), classes=names, mean=[0.5], std=[0.5])
    assert imported.model_name == "keras:graph" and imported.keras_version == "2.0.5"
    ref = np.load(FIXTURES / "fer_expected.npz")  # fer's model run by Keras 3
    np.testing.assert_allclose(run_graph(imported.model, ref["x"]), ref["probs"], atol=1e-5, rtol=0)
    assert imported.pre.size == (64, 64) and imported.pre.channels == 1
    x, y, w, h = FACE  # the documented transform, (x / 255 - 0.5) / 0.5: the astronaut smiles
    face = cv2.resize(cv2.cvtColor(astronaut_bgr(), cv2.COLOR_BGR2GRAY)[y : y + h, x : x + w], (64, 64))
    with torch.no_grad():
        p = torch.softmax(imported.model(imported.pre.normalize(torch.from_numpy(face)[None, None])), 1)[0]
    assert imported.classes[int(p.argmax())] == "happy" and p.max() > 0.9


def test_weights_only_file_with_its_config():
    imported = load_keras(GRAPH / "shallownet.weights.h5", config=GRAPH / "shallownet.json")
    data = np.load(GRAPH / "shallownet.npz")
    np.testing.assert_allclose(run_graph(imported.model, data["x"]), data["out"], atol=1e-5, rtol=0)
    with pytest.raises(UserError, match="holds weights only; give the model config"):
        load_keras(GRAPH / "shallownet.weights.h5")


def test_preprocessing_follows_the_file():
    zoo = load_keras(GRAPH / "zoo_a.keras")  # starts with Rescaling + Normalization: raw pixels in
    assert zoo.pre.scale == 1.0 and zoo.pre.size == (8, 8) and zoo.pre.channels == 3
    plain = load_keras(GRAPH / "lenet.keras")
    assert plain.pre.scale == pytest.approx(1 / 255) and plain.pre.size == (12, 12) and plain.pre.channels == 1
    given = load_keras(GRAPH / "lenet.keras", scale=0.5, mean=[0.2], std=[0.3])
    assert given.pre.scale == 0.5 and list(given.pre.mean) == [0.2] and list(given.pre.std) == [0.3]
    with pytest.raises(UserError, match="--mean has 3 values but the network takes 1 channels"):
        load_keras(GRAPH / "lenet.keras", mean=[1, 2, 3])


def _rewrite_keras(src: Path, dst: Path, edit) -> None:
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w") as out:
        for name in z.namelist():
            data = z.read(name)
            if name == "config.json":
                cfg = json.loads(data)
                edit(cfg)
                data = json.dumps(cfg).encode()
            out.writestr(name, data)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("mean", [], "mean [] must be a number or a list of numbers, one per channel"),
    ("mean", "1", "mean '1' must be a number or a list of numbers, one per channel"),
    ("variance", True, "variance True must be a number or a list of numbers, one per channel"),
    ("mean", [1.0, 2.0], "mean holds 2 values for 3 channels"),
])
def test_normalization_statistics_in_the_config_are_numbers_per_channel(tmp_path, run_cli, key, value, message):
    """An empty mean was a ValueError traceback; text or a yes/no imported as 1.0 for every channel."""
    def edit(cfg):
        layer = next(x for x in cfg["config"]["layers"] if x["class_name"] == "Normalization")
        layer["config"].update({"mean": [0.5] * 3, "variance": [0.25] * 3, key: value})

    path = tmp_path / "m.keras"
    _rewrite_keras(GRAPH / "zoo_a.keras", path, edit)
    code, out, err = run_cli("import", "keras", path, "--out", tmp_path / "run")
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert re.search(rf"Keras layer '\w+' \(Normalization\): {re.escape(message)}$", err.strip()), err
    assert not (tmp_path / "run").exists()


def test_unsupported_layers_are_all_named_in_one_line(tmp_path, run_cli):
    def lambdas(cfg):
        layers = cfg["config"]["layers"]
        layers[1]["class_name"] = "Lambda"
        layers[3]["class_name"] = "MyCustomLayer"
        layers[-2]["config"]["activation"] = "my_activation"

    bad = tmp_path / "bad.keras"
    _rewrite_keras(GRAPH / "lenet.keras", bad, lambdas)
    code, _, err = run_cli("import", "keras", bad, "--out", tmp_path / "run")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "conv2d" in err and "(Lambda)" in err and "(MyCustomLayer)" in err
    assert "(Dense with activation my_activation)" in err
    assert not (tmp_path / "run").exists()

    def power(cfg):
        op = next(e for e in cfg["config"]["layers"] if e["name"].startswith("multiply_"))
        op["class_name"] = "Power"  # x ** 0.166: an operation the importer does not rebuild

    _rewrite_keras(GRAPH / "ops_se.keras", bad, power)
    with pytest.raises(UserError, match=r"multiply_\d+ \(operation Power\)"):
        load_keras(bad)


def test_declared_shapes_are_checked_against_the_config(tmp_path):
    def widen(cfg):
        cfg["config"]["layers"][-1]["config"]["units"] = 7

    bad = tmp_path / "wide.keras"
    _rewrite_keras(GRAPH / "lenet.keras", bad, widen)
    with pytest.raises(UserError, match=r"weight 'kernel' is \(10, 4\) in the file but the config makes it \(10, 7\)"):
        load_keras(bad)


def test_json_depth_limit_and_garbage():
    assert MAX_DEPTH == 100  # the limit docs/data-reliability.md and docs/deploy.md state
    deep = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    with pytest.raises(UserError, match="nested deeper than 100 levels"):
        parse_json(deep, "x.json")
    with pytest.raises(UserError, match="not valid JSON"):
        parse_json('{"a": ', "x.json")
    assert parse_json('{"a": "[[[[["}', "x.json") == {"a": "[[[[["}


def test_not_a_keras_file(tmp_path):
    junk = tmp_path / "junk.keras"
    junk.write_text("not a zip")
    with pytest.raises(UserError, match="is not an HDF5 file or a .keras zip"):
        load_keras(junk)
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        f.create_group("other")
    with pytest.raises(UserError, match="holds no Keras weights"):
        load_keras(empty)


def test_imported_graph_run_evaluates_predicts_exports(tmp_path, run_cli):
    pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    for split in ("train", "val", "test"):
        for cls in ("0", "1", "2"):
            (data / split / cls).mkdir(parents=True)
            for i in range(2):
                cv2.imwrite(str(data / split / cls / f"{i}.png"), rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    run = tmp_path / "runs" / "shallow"
    code, out, err = run_cli("import", "keras", GRAPH / "shallownet.keras", "--out", run, "--data-root", data)
    assert code == 0, err
    assert "as keras:graph, 3 classes" in out and (run / "keras-config.json").is_file()
    moved = tmp_path / "moved"
    run.rename(moved)  # the run is rebuilt from its own copy of the config
    loaded = load_run(moved)
    assert loaded.cfg.model.name == "keras:graph" and loaded.pre.size == (8, 8)
    ref = np.load(GRAPH / "shallownet.npz")
    np.testing.assert_allclose(run_graph(loaded.model, ref["x"]), ref["out"], atol=1e-5, rtol=0)
    code, out, err = run_cli("predict", moved, data / "test" / "1" / "0.png", "--top", "1")
    assert code == 0 and "1. " in out, err
    code, out, err = run_cli("evaluate", moved, "--data", data / "test")
    assert code == 0 and "rank-1" in out, err
    onnx = tmp_path / "m.onnx"
    code, out, err = run_cli("export", moved, "--out", onnx)
    assert code == 0, err
    assert onnx.is_file() and onnx.stat().st_size > 1000


def test_imported_graph_run_fine_tunes_with_a_new_head(tmp_path, run_cli):
    rng = np.random.default_rng(1)
    data = tmp_path / "data"
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (data / split / cls).mkdir(parents=True)
            for i in range(4):
                cv2.imwrite(str(data / split / cls / f"{i}.png"), rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    run = tmp_path / "imported"
    assert run_cli("import", "keras", GRAPH / "shallownet.keras", "--out", run)[0] == 0
    code, out, err = run_cli("train", run / "config.yaml", "--data-root", data, "--set", "model.num_classes=2",
                             "--set", "train.epochs=1", "--set", "data.val=val", "--set", "data.test=null",
                             "--out", tmp_path / "ft")
    assert code == 0, err
    flat = " ".join(out.split())  # the report wraps long paths at the terminal's width
    assert "2 missing keys" in flat and "layers.dense.linear.weight" in flat  # only the head starts afresh
    tuned = load_run(tmp_path / "ft" / "imported")
    start = load_run(run)
    assert tuned.model.layers["dense"].linear.out_features == 2
    conv = "layers.conv2d.conv.weight"
    assert tuned.model.state_dict()[conv].shape == start.model.state_dict()[conv].shape


@pytest.mark.skipif(not KERAS_PYTHON, reason="set KERAS_PYTHON to an interpreter with Keras to test it live")
def test_live_keras_parity(tmp_path):
    script = FIXTURES / "make_keras_graph_fixtures.py"
    subprocess.run([KERAS_PYTHON, str(script), str(tmp_path)], check=True, capture_output=True)
    for name in KERAS3 + ["conv1d"]:
        for ext in (".h5", ".keras"):
            check_parity(tmp_path / f"{name}{ext}", tmp_path / f"{name}.npz")
    imported = load_keras(tmp_path / "lenet.weights.h5", config=tmp_path / "lenet.json")
    ref = np.load(tmp_path / "lenet.npz")
    np.testing.assert_allclose(run_graph(imported.model, ref["x"]), ref["out"], atol=1e-5, rtol=0)
    subprocess.run([KERAS_PYTHON, str(script), str(tmp_path), "--keras2"], check=True, capture_output=True)
    for name in KERAS2:
        check_parity(tmp_path / f"{name}.h5", tmp_path / f"{name}.npz")
    imported = load_keras(tmp_path / "k2_resnet_small_weights.h5", config=tmp_path / "k2_resnet_small.json")
    ref = np.load(tmp_path / "k2_resnet_small.npz")
    np.testing.assert_allclose(run_graph(imported.model, ref["x"]), ref["out"], atol=1e-5, rtol=0)


def _to_keras3(h5: Path, out: Path) -> tuple[Path, Path, Path]:
    """The Keras 3 forms of a Keras 3 `.h5` Sequential: a .keras zip, a .weights.h5 and its JSON config."""
    weights, config = out / "m.weights.h5", out / "m.json"
    with h5py.File(h5, "r") as f, h5py.File(weights, "w") as w:
        config.write_text(f.attrs["model_config"] if isinstance(f.attrs["model_config"], str)
                          else f.attrs["model_config"].decode())
        group = f["model_weights"]
        for raw in group.attrs["layer_names"]:
            name = raw.decode() if isinstance(raw, bytes) else raw
            v = w.create_group(f"layers/{name}/vars")
            v.attrs["name"] = name
            for i, wname in enumerate(group[name].attrs["weight_names"]):
                v.create_dataset(str(i), data=group[name][wname.decode() if isinstance(wname, bytes) else wname][()])
    zipped = out / "m.keras"
    with zipfile.ZipFile(zipped, "w") as z:
        z.write(config, "config.json")
        z.write(weights, "model.weights.h5")
    return zipped, weights, config


def test_mapped_route_reads_keras3_files(tmp_path):
    zipped, weights, config = _to_keras3(FIXTURES / "keras_mnist_cnn.h5", tmp_path)
    ref = np.load(FIXTURES / "keras_mnist_cnn.npz")
    for imported in (load_keras(zipped, "keras_mnist_cnn"), load_keras(weights, "keras_mnist_cnn", config=config),
                     load_keras(zipped, "auto")):
        assert imported.model_name == "keras_mnist_cnn"
        x = torch.from_numpy(ref["x"]).permute(0, 3, 1, 2)
        with torch.no_grad():
            np.testing.assert_allclose(torch.softmax(imported.model(x), 1).numpy(), ref["probs"], atol=1e-5)
    with pytest.raises(UserError, match="Keras 3 weights-only file: .* give the model config"):
        load_keras(weights, "keras_mnist_cnn")


@pytest.mark.parametrize("weights", ["k2_lenet_weights.h5", "k2_lenet.weights.h5"])
def test_keras2_weights_only_files_with_their_config(weights):
    imported = load_keras(GRAPH / weights, config=GRAPH / "k2_lenet.json")
    assert imported.keras_version == "2.21.0"  # from the config: Keras 2's hard_sigmoid, if any
    ref = np.load(GRAPH / "k2_lenet.npz")
    np.testing.assert_allclose(run_graph(imported.model, ref["x"]), ref["out"], atol=1e-5, rtol=0)


def test_broken_configs_and_weights_are_one_line_errors(tmp_path):
    def no_units(cfg):
        del cfg["config"]["layers"][-1]["config"]["units"]

    bad = tmp_path / "bad.keras"
    _rewrite_keras(GRAPH / "lenet.keras", bad, no_units)
    with pytest.raises(UserError, match=r"Keras layer 'dense_\d+' \(Dense\) has a config the importer cannot read"):
        load_keras(bad)
    text = tmp_path / "text.weights.h5"
    with h5py.File(GRAPH / "shallownet.weights.h5", "r") as src, h5py.File(text, "w") as dst:
        src.copy(src["layers"], dst, "layers")
        kernel = next(k for k in dst["layers"] if k.startswith("dense"))
        del dst[f"layers/{kernel}/vars/1"]
        dst[f"layers/{kernel}/vars"].create_dataset("1", data=np.array([b"a", b"b", b"c"]))
    with pytest.raises(UserError, match=r"is stored as \|S1, not as real numbers \(float or integer\)"):
        load_keras(text, config=GRAPH / "shallownet.json")


def test_imported_graph_run_serves(tmp_path, run_cli):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from deepvision.apps.serve import create_app
    from deepvision.inference.predict import predict_images

    run = tmp_path / "run"
    assert run_cli("import", "keras", GRAPH / "zoo_a.keras", "--out", run, "--classes", "a,b,c,d")[0] == 0
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), np.random.default_rng(2).integers(0, 256, (8, 8, 3), dtype=np.uint8))
    expected = predict_images(load_run(run), [image], top=4)[0].top
    with TestClient(create_app(run)) as client:
        assert client.get("/health").json()["model"] == "run (keras:graph)"
        answer = client.post("/api/predict", files={"file": (image.name, image.read_bytes(), "image/png")}).json()
    got = [(t["class"], t["probability"]) for t in answer["top"]]
    assert [c for c, _ in got] == [c for c, _ in expected]
    assert all(abs(p - q) < 1e-6 for (_, p), (_, q) in zip(got, expected))


def test_free_input_size_needs_size(tmp_path):
    def free(cfg):
        cfg["config"]["layers"][0]["config"]["batch_shape"] = [None, None, None, 1]

    path = tmp_path / "free.keras"
    _rewrite_keras(GRAPH / "lenet.keras", path, free)
    with pytest.raises(UserError, match=r"takes inputs of free size \(None, None, 1\); give the input size"):
        load_keras(path)
    imported = load_keras(path, size=12)
    assert imported.pre.size == (12, 12)
    ref = np.load(GRAPH / "lenet.npz")
    np.testing.assert_allclose(run_graph(imported.model, ref["x"]), ref["out"], atol=1e-5, rtol=0)
    with pytest.raises(UserError, match=r"'kernel' is \(54, 10\) in the file but the config makes it \(96, 10\)"):
        load_keras(path, size=16)  # the Dense after the Flatten was trained on 12 x 12 inputs


@pytest.mark.parametrize("config", [[1, 2], {"class_name": "Dense", "config": {}},
                                    {"class_name": "Sequential", "config": {"layers": [3]}}])
def test_configs_that_are_no_model_are_refused(tmp_path, config):
    bad = tmp_path / "bad.keras"
    with zipfile.ZipFile(GRAPH / "lenet.keras") as z, zipfile.ZipFile(bad, "w") as out:
        for name in z.namelist():
            out.writestr(name, json.dumps(config) if name == "config.json" else z.read(name))
    with pytest.raises(UserError, match="not a Keras model|not a layer config"):
        load_keras(bad)


def test_non_square_inputs_and_builder_options_are_refused_for_runs(tmp_path, run_cli):
    def wide(cfg):
        cfg["config"]["layers"][0]["config"]["batch_shape"] = [None, 8, 16, 3]
        cfg["config"]["layers"][-1]["build_config"] = None

    path = tmp_path / "wide.keras"
    _rewrite_keras(GRAPH / "inception_small.keras", path, wide)  # global pooling: any size fits
    imported = load_keras(path)
    assert imported.pre.size == (8, 16)
    code, _, err = run_cli("import", "keras", path, "--out", tmp_path / "run")
    assert code == 2 and "input 8x16 is not square" in err and not (tmp_path / "run").exists()
    code, _, err = run_cli("import", "keras", GRAPH / "lenet.keras", "--arg", "activation=relu", "--out",
                           tmp_path / "run")
    assert code == 2 and "--arg sets options of a deepvision architecture" in err


def test_a_keras_zip_whose_weights_inflate_hugely_is_refused_from_the_directory(tmp_path):
    from deepvision.interop.keras_files import open_keras

    src = zipfile.ZipFile(GRAPH / "dense_raw.keras")
    bomb = tmp_path / "m.keras"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for name in src.namelist():
            data = src.read(name)
            z.writestr(name, data + bytes(8 << 20) if name.endswith(".h5") else data)  # ~1000:1 zeros
    with pytest.raises(UserError, match=r"m\.keras member model\.weights\.h5 declares .* \(compressed more "
                                        r"than 100:1\); the file is damaged or crafted"), open_keras(bomb):
        pass


@pytest.mark.parametrize("member", ["model.weights.h5", "config.json"])
def test_a_keras_zip_holding_a_member_twice_is_refused(tmp_path, run_cli, member):
    """zipfile reads the last of two members of one name: a second model.weights.h5 (or config.json)
    appended to a .keras file was imported without a word. Refused in one line; nothing written."""
    import warnings

    path = tmp_path / "m.keras"
    shutil.copy(GRAPH / "lenet.keras", path)
    with warnings.catch_warnings(), zipfile.ZipFile(path, "a") as z:
        warnings.simplefilter("ignore")  # zipfile's "Duplicate name" warning
        z.writestr(member, zipfile.ZipFile(GRAPH / "lenet.keras").read(member))
    before = path.read_bytes()
    code, out, err = run_cli("import", "keras", path, "--out", tmp_path / "run")
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert f"{path} holds the member {member} twice; the file is damaged or crafted" in err, err
    assert not (tmp_path / "run").exists() and path.read_bytes() == before


@pytest.mark.parametrize("how", ["crc", "encrypted"])
def test_a_keras_zip_member_damaged_or_encrypted_is_one_line(tmp_path, run_cli, how):
    """A member failing its CRC or flagged encrypted was a BadZipFile / RuntimeError traceback."""
    from tests.helpers import encrypted_flag

    path = tmp_path / "m.keras"
    with zipfile.ZipFile(GRAPH / "lenet.keras") as src, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name in src.namelist():
            z.writestr(name, src.read(name))
    if how == "crc":
        data = bytearray(path.read_bytes())
        data[data.find(b"\x89HDF") + 3000] ^= 0x55
        path.write_bytes(bytes(data))
    else:
        encrypted_flag(path)
    data = path.read_bytes()
    code, out, err = run_cli("import", "keras", path, "--out", tmp_path / "run")
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert {"crc": f"{path}: member model.weights.h5 is damaged (Bad CRC-32",
            "encrypted": "is encrypted; deepvision reads no password-protected archive"}[how] in err, err
    assert not (tmp_path / "run").exists() and path.read_bytes() == data


def test_two_keras3_layer_groups_naming_one_layer_are_refused(tmp_path, run_cli):
    """Keras 3 weights are found by the name their `vars` group carries: a second group carrying a layer's
    name replaced that layer's weights without a word."""
    import io

    src = zipfile.ZipFile(GRAPH / "dense_raw.keras")
    raw = io.BytesIO(src.read("model.weights.h5"))
    with h5py.File(raw, "a") as f:
        f.copy(f["layers/dense"], "layers/zz")  # its vars carry the name of layers/dense's
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as z:
        for name in src.namelist():
            z.writestr(name, raw.getvalue() if name == "model.weights.h5" else src.read(name))
    before = path.read_bytes()
    code, out, err = run_cli("import", "keras", path, "--out", tmp_path / "run")
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert "two layer groups name their variables 'dense_14'; Keras writes each layer's once" in err, err
    assert not (tmp_path / "run").exists() and path.read_bytes() == before


@pytest.mark.parametrize(("given", "message"), [
    ("a,,b,c", "--classes: name 2 of 4 is empty"),
    ("a\x1b[2J,b,c,d", "--classes: class name 'a\\x1b[2J' is empty or holds a control character"),
    ("a,a,c,d", "--classes: class name 'a' is given twice"),
])
def test_import_keras_classes_are_checked_as_given(tmp_path, run_cli, given, message):
    """A stray comma never shifts the names; a refused name is reported as --classes, not as a
    temporary file the user never saw."""
    code, _, err = run_cli("import", "keras", GRAPH / "zoo_a.keras", "--out", tmp_path / "run", "--classes", given)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "run").exists()


def test_import_keras_labels_with_a_nel_is_named_not_split(tmp_path, run_cli):
    (tmp_path / "labels.txt").write_text("a\u0085x\nb\nc\nd\n", encoding="utf-8")
    code, _, err = run_cli("import", "keras", GRAPH / "zoo_a.keras", "--out", tmp_path / "run",
                           "--labels", tmp_path / "labels.txt")
    assert code == 2 and err.count("\n") == 1, err
    assert "labels.txt: class name 'a\\x85x' is empty or holds a control character" in err


def test_a_graph_that_changes_channels_before_its_first_conv_loads(tmp_path):
    """The image's channels are checked against the graph's declared input (8x8x3), not the first Conv2D
    (which takes the 6 channels of a Dense on the map); a run no loader takes is never left behind."""
    import copy

    from deepvision.data.preprocess import Preprocess
    from deepvision.interop.keras_import import CONFIG_FILE, _run_config
    from deepvision.runs.imported import write_imported_run

    model = json.loads((GRAPH / "shallownet.json").read_text())
    layers = model["config"]["layers"]
    dense = copy.deepcopy(layers[-1])
    dense["config"].update(name="dense_on_the_map", units=6, activation="linear")
    layers.insert(1, dense)
    config = tmp_path / "model.json"
    config.write_text(json.dumps(model))
    graph = KerasGraph(model)
    assert graph.layers[graph.keys["conv2d"]].conv.in_channels == 6 and graph.input_channels == 3
    pre = Preprocess(channels=3, size=(8, 8), scale=1 / 255)
    cfg = _run_config("keras:graph", {"config": CONFIG_FILE, "keras_version": "3"},
                      {"classes": 3, "in_channels": 3, "size": (8, 8)}, pre, None, None, config)
    cfg.model.args["config"] = str((tmp_path / "run" / CONFIG_FILE).resolve())
    write_imported_run(tmp_path / "run", cfg, pre, ["a", "b", "c"], graph.state_dict(), epoch=0, source={},
                       files={CONFIG_FILE: config})
    loaded = load_run(tmp_path / "run")
    x = torch.rand(2, 3, 8, 8)
    assert torch.allclose(loaded.model(x), graph(x))

    gray = Preprocess(channels=1, size=(8, 8), scale=1 / 255)  # disagrees with the graph's input
    with pytest.raises(UserError, match=r"gives 1 channel\(s\) but the model's input takes 3"):
        write_imported_run(tmp_path / "refused", cfg, gray, ["a", "b", "c"], graph.state_dict(), epoch=0,
                           source={}, files={CONFIG_FILE: config})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "run"]  # nothing left behind


@pytest.mark.parametrize(("middle", "shown"), [
    ({"class_name": "ZeroPadding2D", "config": {"name": "zp", "padding": [[200000, 200000], [200000, 200000]]}},
     r"Keras layer 'zp' \(ZeroPadding2D\): its output for one sample, \(400008, 400008, 4\), needs 2.6 TB"),
    ({"class_name": "UpSampling2D", "config": {"name": "up", "size": [100000, 100000]}},
     r"Keras layer 'up' \(UpSampling2D\): its output for one sample, \(800000, 800000, 4\), needs 10.2 TB"),
])
def test_a_layer_whose_output_cannot_fit_is_refused_at_import(tmp_path, run_cli, middle, shown):
    """A 7 kB file whose padding or upsampling plans terabytes for one sample is refused before the
    run is written, naming the layer and its planned output (not at the first prediction)."""
    from tests.interop.test_keras_mapping import _conv, _layer, write_keras2_h5

    conv = _conv("conv_1", 4)
    conv["config"]["batch_input_shape"] = [None, 8, 8, 1]
    path = write_keras2_h5(tmp_path / "big.h5", [conv, middle, _layer("GlobalAveragePooling2D", "gap"),
                                                 _layer("Dense", "fc", units=2, activation="softmax", use_bias=True)])
    before = path.read_bytes()
    code, _, err = run_cli("import", "keras", path, "--out", tmp_path / "run")
    assert code == 2 and len(err.strip().splitlines()) == 1 and re.search(shown, err), err
    assert not (tmp_path / "run").exists() and path.read_bytes() == before


def test_a_softmax_over_several_axes_computes_keras_function(tmp_path):
    """Softmax(axis=[1, 2]) divides by the sum over height and width together (a spatial softmax);
    a batch axis or a repeated axis is refused naming the layer."""
    import h5py

    from tests.interop.test_keras_mapping import _conv, _layer, write_keras2_h5

    def net(axis):
        conv = _conv("conv_1", 2)
        conv["config"]["batch_input_shape"] = [None, 8, 8, 1]
        return write_keras2_h5(tmp_path / "sm.h5", [conv, _layer("Softmax", "sm", axis=axis),
                                                   _layer("Flatten", "flatten"),
                                                   _layer("Dense", "fc", units=2, activation="linear", use_bias=True)])

    path = net([1, 2])
    model = load_keras(path).model.eval()
    with h5py.File(path) as f:
        w = {k: torch.tensor(np.asarray(f[f"model_weights/{k.split('/')[0]}/{k}:0"]))
             for k in ("conv_1/kernel", "conv_1/bias", "fc/kernel", "fc/bias")}
    x = torch.rand(1, 1, 8, 8)
    y = torch.nn.functional.conv2d(x, w["conv_1/kernel"].permute(3, 2, 0, 1), w["conv_1/bias"], padding=1)
    y = y.permute(0, 2, 3, 1)  # NHWC, as Keras computes
    s = torch.exp(y - torch.logsumexp(y, (1, 2), keepdim=True))
    want = s.reshape(1, -1) @ w["fc/kernel"] + w["fc/bias"]
    with torch.no_grad():
        assert torch.allclose(model(x), want, atol=1e-5)
    for bad in ([0, 1], [1, -3], [1, 7], ["1"]):
        with pytest.raises(UserError, match=r"Keras layer 'sm' \(Softmax\): axis .* must be one axis or a list"):
            load_keras(net(bad))


def test_import_keras_size_zero_is_refused_not_ignored(tmp_path, run_cli):
    code, _, err = run_cli("import", "keras", GRAPH / "lenet.keras", "--out", tmp_path / "run", "--size", "0")
    assert code == 2 and len(err.splitlines()) == 1 and "--size 0 must be positive" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("middle", "message"), [
    ({"class_name": "Rescaling", "config": {"name": "rs", "scale": 1e308, "offset": 0.0}},
     r"answers NaN or infinity for a plain gray image"),
    ({"class_name": "Rescaling", "config": {"name": "rs", "scale": "0.5", "offset": 0.0}},
     r"Keras layer 'rs' \(Rescaling\).*scale '0.5' must be a number, not text"),
    ({"class_name": "ReLU", "config": {"name": "rl", "max_value": -1.0}},
     r"max_value -1.0 cannot be negative"),
    ({"class_name": "LeakyReLU", "config": {"name": "lr", "negative_slope": -1}},
     r"Keras layer 'lr' \(LeakyReLU\).*negative_slope -1 cannot be negative \(Keras refuses it too\)"),
    ({"class_name": "Dropout", "config": {"name": "dr", "rate": "0.2"}},
     r"Keras layer 'dr' \(Dropout\).*rate '0.2' must be a number, not text"),
    ({"class_name": "MaxPooling2D", "config": {"name": "mp", "pool_size": [1, 1], "padding": "causal"}},
     r"Keras layer 'mp' \(MaxPooling2D\).*padding 'causal' is not supported"),
    ({"class_name": "AveragePooling2D", "config": {"name": "ap", "pool_size": [1, 1], "padding": "bogus"}},
     r"Keras layer 'ap' \(AveragePooling2D\).*padding 'bogus' is not supported"),
])
def test_layer_values_that_overflow_or_keras_refuses_are_refused(tmp_path, run_cli, middle, message):
    """Finite values can still overflow float32 (every prediction "nan%"): the import runs one gray
    image through the network and refuses non-finite answers; text and negative caps are refused."""
    from tests.interop.test_keras_mapping import _conv, _layer, write_keras2_h5

    conv = _conv("conv_1", 4)
    conv["config"]["batch_input_shape"] = [None, 8, 8, 1]
    path = write_keras2_h5(tmp_path / "m.h5", [conv, middle, _layer("GlobalAveragePooling2D", "gap"),
                                               _layer("Dense", "fc", units=2, activation="softmax", use_bias=True)])
    code, _, err = run_cli("import", "keras", path, "--out", tmp_path / "run")
    assert code == 2 and len(err.strip().splitlines()) == 1 and re.search(message, err), err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("cls", "cfg", "message"), [
    ("LeakyReLU", {"negative_slope": -1}, "negative_slope -1 cannot be negative (Keras refuses it too)"),
    ("ReLU", {"negative_slope": -0.5}, "negative_slope -0.5 cannot be negative (Keras refuses it too)"),
    ("ReLU", {"threshold": -1}, "threshold -1 cannot be negative (Keras refuses it too)"),
    ("ReLU", {"negative_slope": "0.5"}, "negative_slope '0.5' must be a number, not text"),
    ("BatchNormalization", {"epsilon": "0.001"}, "epsilon '0.001' must be a number, not text"),
    ("BatchNormalization", {"momentum": "0.99"}, "momentum '0.99' must be a number, not text"),
    ("BatchNormalization", {"epsilon": {"value": 1e-3}}, "epsilon {'value': 0.001} must be a finite number from 0"),
    ("LayerNormalization", {"epsilon": -1e-3}, "epsilon -0.001 must be a finite number from 0"),
    ("GaussianNoise", {"stddev": "0.1"}, "stddev '0.1' must be a number, not text"),
    ("SpatialDropout2D", {"rate": "0.2"}, "rate '0.2' must be a number, not text"),
    ("GaussianDropout", {"rate": 1.0}, "rate 1.0 must be a finite number from 0 (below 1)"),
    ("ELU", {"alpha": "1"}, "alpha '1' must be a number, not text"),
    ("Concatenate", {"axis": "-1"}, "axis '-1' must be a whole number, not text or fractions"),
    ("Permute", {"dims": [2.7, 1, 3]}, "dims [2.7, 1, 3] must be whole numbers, not text or fractions"),
    ("LayerNormalization", {"axis": ["-1"]}, "axis ['-1'] must be whole numbers, not text or fractions"),
    ("LeakyReLU", {"alpha": 0.9, "negative_slope": 0.1},
     "alpha 0.9 and negative_slope 0.1 are two values for one setting; keep one"),
    ("ReLU", {"negative_slope": None}, "negative_slope is null, which Keras refuses; give a number"),
    ("ReLU", {"threshold": None}, "threshold is null, which Keras refuses; give a number"),
    ("LeakyReLU", {"negative_slope": None},
     "negative_slope is null, which Keras refuses; give a number"),
    ("LeakyReLU", {"alpha": None}, "alpha is null, which Keras refuses; give a number"),
    ("ReLU", {"negative_slope": []}, "negative_slope [] must be a number, not a list"),
    ("Concatenate", {"axis": None}, "axis None must be a whole number (the axis joined)"),
    ("Concatenate", {"axis": []}, "axis [] must be a whole number (the axis joined)"),
])
def test_numeric_layer_settings_follow_one_rule(cls, cfg, message):
    """Every number a layer setting holds is a finite JSON number within what Keras accepts: text is refused,
    not parsed (Keras' arithmetic fails on it), ReLU/LeakyReLU slopes and thresholds are not negative (Keras
    refuses them), and a LeakyReLU holding alpha and negative_slope apart is two values for one setting."""
    from deepvision.errors import UserError
    from deepvision.models.keras_graph import check_layer_configs

    model = {"class_name": "Sequential", "config": {"layers": [{"class_name": cls, "config": {"name": "x", **cfg}}]}}
    with pytest.raises(UserError) as info:
        check_layer_configs(model)
    assert str(info.value) == f"Keras layer 'x' ({cls}): {message}"


@pytest.mark.parametrize(("cls", "cfg"), [
    ("LeakyReLU", {"alpha": 0.2, "negative_slope": 0.2}), ("LeakyReLU", {"alpha": -0.1}),  # Keras 2 allows it
    ("ReLU", {"negative_slope": 0, "threshold": 0.5, "max_value": 6}), ("ELU", {"alpha": -1.0}),
    ("ReLU", {"max_value": None}),  # no cap: Keras' default
    ("BatchNormalization", {"epsilon": 1e-5, "momentum": 0.9, "axis": [-1]}), ("Dropout", {"rate": 0}),
    ("Normalization", {"axis": None}), ("Permute", {"dims": [2, 1, 3]}), ("PReLU", {"shared_axes": [1, 2]}),
    ("MyCustomLayer", {"rate": "0.1"}),  # not built: refused as unsupported, not here
])
def test_numeric_layer_settings_keras_accepts_pass(cls, cfg):
    from deepvision.models.keras_graph import check_layer_configs

    check_layer_configs({"class_name": "Sequential",
                         "config": {"layers": [{"class_name": cls, "config": {"name": "x", **cfg}}]}})


@pytest.mark.parametrize(("src", "first", "second"), [("k2_resnet_small.h5", "activation_5", "activation_6"),
                                                      ("resnet_small.keras", "activation_7", "activation_8")])
def test_two_layers_of_one_name_are_refused(tmp_path, run_cli, src, first, second):
    """Keras refuses a model naming two layers alike; the graph wires layers by name, so the Add that took the
    first activation would silently take the second (another network)."""
    bad = tmp_path / f"dup{Path(src).suffix}"

    def rename(text: str) -> str:
        return text.replace(f'"{second}"', f'"{first}"')

    if src.endswith(".h5"):
        shutil.copy(GRAPH / src, bad)
        with h5py.File(bad, "r+") as f:
            text = f.attrs["model_config"]
            f.attrs["model_config"] = rename(text if isinstance(text, str) else text.decode())
    else:
        _rewrite_keras(GRAPH / src, bad, lambda cfg: cfg.update(json.loads(rename(json.dumps(cfg)))))
    before = bad.read_bytes()
    code, out, err = run_cli("import", "keras", bad, "--out", tmp_path / "run")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert re.search(rf"{bad.name}: model '\w+' names two layers '{first}'; layer names are unique in Keras$",
                     err.strip()), err
    assert not (tmp_path / "run").exists() and bad.read_bytes() == before
    with pytest.raises(UserError, match=f"names two layers '{first}'"):
        KerasGraph(json.loads(rename(json.dumps(_config_of(GRAPH / src)))))


def _config_of(path: Path) -> dict:
    if path.suffix == ".h5":
        with h5py.File(path, "r") as f:
            return parse_json(f.attrs["model_config"], str(path))
    with zipfile.ZipFile(path) as z:
        return json.loads(z.read("config.json"))


@pytest.mark.parametrize("value", ["false", "yes", 1, 0, None])
@pytest.mark.parametrize("route", [(), ("--model", "keras_mnist_cnn")])
def test_a_yes_no_field_that_is_not_a_json_boolean_is_refused(tmp_path, run_cli, value, route):
    """Keras writes use_bias, center, scale, ... as JSON true/false; read by truthiness, "false" was true."""
    bad = tmp_path / "flag.h5"
    shutil.copy(FIXTURES / "keras_mnist_cnn.h5", bad)
    with h5py.File(bad, "r+") as f:
        cfg = parse_json(f.attrs["model_config"], str(bad))
        dense = next(e for e in cfg["config"]["layers"] if e["class_name"] == "Dense")
        dense["config"]["use_bias"] = value
        f.attrs["model_config"] = json.dumps(cfg)
    before = bad.read_bytes()
    code, out, err = run_cli("import", "keras", bad, *route, "--out", tmp_path / "run")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    name = dense["config"]["name"]
    assert err.strip().endswith(f"{bad}: Keras layer '{name}' (Dense): use_bias {json.dumps(value)} must be true "
                                f"or false (a JSON boolean)"), err
    assert not (tmp_path / "run").exists() and bad.read_bytes() == before


@pytest.mark.parametrize(("cls", "key", "extra"), [
    ("BatchNormalization", "center", {}), ("BatchNormalization", "scale", {}), ("LayerNormalization", "scale", {}),
    ("LayerNormalization", "rms_scaling", {}), ("GlobalAveragePooling2D", "keepdims", {}),
    ("Normalization", "invert", {}), ("Conv2D", "use_bias", {"filters": 2, "kernel_size": 1}),
    ("DepthwiseConv2D", "use_bias", {"kernel_size": 1})])
def test_every_yes_no_field_is_read_as_a_json_boolean(cls, key, extra):
    """Each field the importer reads goes through one reader: true/false taken, text, numbers and null refused."""
    from deepvision.models import keras_layers as kl

    def model(value) -> dict:
        return {"class_name": "Sequential", "config": {"name": "m", "layers": [
            {"class_name": "InputLayer", "config": {"name": "in", "batch_input_shape": [None, 4, 4, 2]}},
            {"class_name": cls, "config": {"name": "x", key: value, **extra}}]}}

    assert key in kl.FLAGS and kl.flag({key: True}, key) is True and kl.flag({}, key) is kl.FLAGS[key]
    KerasGraph(model(False))
    for value in ("false", "True", 1, 0.0, None, [True]):
        with pytest.raises(UserError, match=rf"^Keras layer 'x' \({cls}\): {key} {re.escape(json.dumps(value))} must "
                                            rf"be true or false \(a JSON boolean\)$"):
            KerasGraph(model(value))
        with pytest.raises(UserError, match=rf"^Keras layer 'x': {key} "):
            kl.flag({"name": "x", key: value}, key)
    rescale = model(True)
    rescale["config"]["layers"][1] = {"class_name": "Rescaling", "config": {"name": "r", "scale": 0.5}}
    KerasGraph(rescale)  # Rescaling's scale is a number, not a yes/no


# -- the model's output: final softmax, sigmoid heads, the output reference ----------------------------------


def _k3(cls: str, name: str, **cfg) -> dict:
    return {"class_name": cls, "config": {"name": name, "trainable": True, **cfg}}


def _k3_input(name: str = "input_layer") -> dict:
    return {"class_name": "InputLayer", "config": {"batch_shape": [None, 4, 4, 3], "dtype": "float32", "name": name}}


def _write_h5(path: Path, model: dict, weights: dict[str, dict[str, np.ndarray]]) -> Path:
    """A Keras 3 `model.save("m.h5")` file: `weights` maps each top-level layer to {weight path: array}."""
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"], f.attrs["backend"] = "3.5.0", "tensorflow"
        f.attrs["model_config"] = json.dumps(model)
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = np.array([n.encode() for n in weights], dtype=object)
        for layer, arrays in weights.items():
            lg = g.create_group(layer)
            lg.attrs["weight_names"] = np.array([k.encode() for k in arrays], dtype=object if arrays else np.float64)
            for k, v in arrays.items():
                lg.create_dataset(k, data=v)
    return path


def _dense_head(units: int, activation: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 0.3, (48, units)).astype(np.float32), rng.normal(0, 0.1, units).astype(np.float32))


def _seq(name: str, layers: list[dict]) -> dict:
    return {"class_name": "Sequential", "config": {"name": name, "trainable": True, "layers": layers}}


def _keras_dense(x: torch.Tensor, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Keras' Flatten + Dense on NCHW images: flattened channels-last."""
    return x.permute(0, 2, 3, 1).reshape(len(x), -1).numpy() @ kernel + bias


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _classifier(tmp_path: Path, variant: str, activation: str = "softmax", units: int = 3) -> Path:
    """Flatten + Dense(units, activation) on 4x4x3 inputs, with identity layers after it or inside a
    nested 'head' model as `variant` says."""
    kernel, bias = _dense_head(units, activation)
    dense = _k3("Dense", "dense", units=units, activation=activation, use_bias=True)
    flat = _k3("Flatten", "flatten", data_format="channels_last")
    after = {"plain": [], "dropout": [_k3("Dropout", "dropout", rate=0.5)],
             "noise": [_k3("ActivityRegularization", "reg", l1=0.0, l2=0.0), _k3("GaussianNoise", "noise", stddev=0.1),
                       _k3("Activation", "linear", activation="linear")],
             "flatten": [_k3("Flatten", "flat2")], "reshape": [_k3("Reshape", "reshape", target_shape=[units])],
             "scale": [_k3("Rescaling", "resc", scale=10.0, offset=0.0)],
             "drop_relu": [_k3("Dropout", "dropout", rate=0.5), _k3("ReLU", "relu")],
             "sigmoid_layer": [_k3("Activation", "act", activation="sigmoid")],
             "softmax_layer": [_k3("Dropout", "dropout", rate=0.5), _k3("Activation", "act", activation="softmax")],
             "log_softmax_layer": [_k3("Activation", "act", activation="log_softmax")]}
    if variant in after:
        own_act = variant in ("sigmoid_layer", "softmax_layer")
        layers = [_k3_input(), flat, (_k3("Dense", "dense", units=units, activation="linear", use_bias=True)
                                      if own_act else dense), *after[variant]]
        return _write_h5(tmp_path / f"{variant}.h5", _seq("sequential", layers),
                         {"dense": {"sequential/dense/kernel": kernel, "sequential/dense/bias": bias},
                          **{e["config"]["name"]: {} for e in after[variant]}})
    inner = [_k3_input("head_input"), flat, dense] + ([_k3("Dropout", "drop", rate=0.3)] if "inner" in variant else [])
    outer_layer = (_k3("Rescaling", "outer_drop", scale=2.0, offset=0.0) if "outer_scale" in variant
                   else _k3("Dropout", "outer_drop", rate=0.3))
    outer = [_k3_input(), _seq("head", inner)] + ([outer_layer] if "outer" in variant else [])
    extra = {"outer_drop": {}} if "outer" in variant else {}
    return _write_h5(tmp_path / f"{variant}.h5", _seq("outer", outer),
                     {"head": {"dense/kernel": kernel, "dense/bias": bias}, **extra})


@pytest.mark.parametrize("variant", ["plain", "dropout", "noise", "flatten", "reshape", "nested",
                                     "nested_inner_drop", "nested_outer_drop"])
def test_the_final_softmax_is_left_out_past_identity_layers_and_in_nested_models(tmp_path, run_cli, variant):
    """A softmax followed only by layers that are identities at inference (Dropout, noise, regularization,
    a linear Activation), or ending a nested 'head' model, is the final softmax: left out, so predict's
    softmax gives Keras' probabilities, not softmax(softmax(z))."""
    path = _classifier(tmp_path, variant)
    kernel, bias = _dense_head(3, "softmax")
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    want = _softmax(_keras_dense(x, kernel, bias))
    model = load_keras(path).model
    with torch.no_grad():
        np.testing.assert_allclose(torch.softmax(model(x), 1).numpy(), want, atol=1e-6)
    assert model.softmax_dropped
    code, _, err = run_cli("import", "keras", path, "--out", tmp_path / "run")
    assert code == 0, err
    with torch.no_grad():
        np.testing.assert_allclose(torch.softmax(load_run(tmp_path / "run").model(x), 1).numpy(), want, atol=1e-6)


@pytest.mark.parametrize("variant", ["plain", "dropout", "sigmoid_layer", "nested_inner_drop"])
def test_a_one_unit_sigmoid_output_is_read_as_two_classes(tmp_path, run_cli, variant):
    """Keras' binary classifier Dense(1, 'sigmoid') gives p = P(class 1): the import has two classes whose
    probabilities are exactly [1 - p, p], and the run it writes loads back with the same head."""
    path = _classifier(tmp_path, variant, "sigmoid", units=1)
    kernel, bias = _dense_head(1, "sigmoid")
    x = torch.rand(3, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    p = 1 / (1 + np.exp(-_keras_dense(x, kernel, bias)))
    want = np.concatenate([1 - p, p], 1)
    imported = load_keras(path)
    assert imported.classes == ["0", "1"]
    with torch.no_grad():
        np.testing.assert_allclose(torch.softmax(imported.model(x), 1).numpy(), want, atol=1e-6)
    code, _, err = run_cli("import", "keras", path, "--out", tmp_path / "run")
    assert code == 0, err
    loaded = load_run(tmp_path / "run")
    assert loaded.cfg.model.num_classes == 2
    with torch.no_grad():
        np.testing.assert_allclose(torch.softmax(loaded.model(x), 1).numpy(), want, atol=1e-6)


@pytest.mark.parametrize(("activation", "units", "shown"), [
    ("sigmoid", 3, "a sigmoid over 3 outputs (independent yes/no scores: multi-label)"),
    ("hard_sigmoid", 1, "a hard_sigmoid"),
])
@pytest.mark.parametrize("variant", ["plain", "dropout", "nested_inner_drop"])
def test_a_sigmoid_output_softmax_cannot_represent_is_refused(tmp_path, run_cli, activation, units, shown, variant):
    path = _classifier(tmp_path, variant, activation, units)
    before = path.read_bytes()
    code, out, err = run_cli("import", "keras", path, "--out", tmp_path / "run")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.strip().endswith(f"Keras layer 'dense' (Dense) ends the model with {shown}; deepvision classifiers "
                                f"pick one class by softmax and cannot represent it"), err
    assert not (tmp_path / "run").exists() and path.read_bytes() == before


def test_a_fresh_head_for_other_classes_drops_a_sigmoid_after_identity_layers(tmp_path):
    """Fine-tuning with another class count replaces the final Dense, also past a Dropout; the fresh head
    is a softmax classifier (no sigmoid left on it)."""
    model = _config_of(_classifier(tmp_path, "dropout", "sigmoid", units=1))
    graph = KerasGraph(model, num_classes=5)
    head = graph.layers[graph.head_key]
    assert graph.num_classes == 5 and head.linear.out_features == 5 and isinstance(head.act, torch.nn.Identity)



@pytest.mark.parametrize(("variant", "activation", "units", "changer"), [
    ("scale", "softmax", 3, "'resc' (Rescaling)"),
    ("drop_relu", "softmax", 3, "'relu' (ReLU)"),
    ("scale", "sigmoid", 1, "'resc' (Rescaling)"),
    ("nested_outer_scale", "softmax", 3, "'outer_drop' (Rescaling)"),
])
def test_a_softmax_or_sigmoid_whose_values_later_layers_change_is_refused(tmp_path, run_cli, variant, activation,
                                                                           units, changer):
    """softmax -> Rescaling(10) outputs 10 p: read as logits, predict showed softmax(10 p). Neither the
    softmax can be left out nor the output read as logits, so the import is refused naming both layers;
    a new class count (fine-tuning) meets the same refusal."""
    path = _classifier(tmp_path, variant, activation, units)
    before = path.read_bytes()
    code, out, err = run_cli("import", "keras", path, "--out", tmp_path / "run")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert (f"Keras layer 'dense' (Dense) ends in a {activation} whose output reaches the model's output through "
            f"Keras layer {changer}, which changes its values; deepvision reads the output as logits") in err, err
    assert not (tmp_path / "run").exists() and path.read_bytes() == before
    with pytest.raises(UserError, match=f"ends in a {activation} whose output reaches"):
        KerasGraph(_config_of(path), num_classes=5)


def test_softmax_heads_merged_by_a_layer_are_refused():
    """Average of two softmax heads (an ensemble) outputs probabilities, not logits: refused."""
    inp = {"class_name": "InputLayer", "name": "inp", "inbound_nodes": [],
           "config": {"batch_shape": [None, 4, 4, 3], "name": "inp"}}
    flat = {**_k3("Flatten", "flat"), "name": "flat", "inbound_nodes": [[["inp", 0, 0, {}]]]}
    heads = [{**_k3("Dense", n, units=3, activation="softmax"), "name": n, "inbound_nodes": [[["flat", 0, 0, {}]]]}
             for n in ("d1", "d2")]
    avg = {**_k3("Average", "avg"), "name": "avg", "inbound_nodes": [[["d1", 0, 0, {}], ["d2", 0, 0, {}]]]}
    model = {"class_name": "Functional", "config": {"name": "m", "layers": [inp, flat, *heads, avg],
                                                    "input_layers": [["inp", 0, 0]], "output_layers": [["avg", 0, 0]]}}
    with pytest.raises(UserError, match=r"Keras layer 'd\d' \(Dense\) ends in a softmax whose output reaches the "
                                        r"model's output through Keras layer 'avg' \(Average\)"):
        KerasGraph(model)


@pytest.mark.parametrize("activation", ["linear", "softmax"])
def test_a_final_log_softmax_is_kept_as_log_probabilities(tmp_path, activation):
    """log_softmax outputs log-probabilities, logits as they stand: predict's softmax of them is exp of
    Keras' output. After a softmax too: Keras then outputs log softmax(p), whose exp is softmax(p)."""
    path = _classifier(tmp_path, "log_softmax_layer", activation)
    kernel, bias = _dense_head(3, activation)
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    z = _keras_dense(x, kernel, bias)
    z = _softmax(z) if activation == "softmax" else z
    keras_out = z - np.log(np.exp(z).sum(1, keepdims=True))
    model = load_keras(path).model
    with torch.no_grad():
        np.testing.assert_allclose(torch.softmax(model(x), 1).numpy(), np.exp(keras_out), atol=1e-6)
    assert not model.softmax_dropped


@pytest.mark.parametrize(("variant", "units"), [("sigmoid_layer", 1), ("softmax_layer", 3)])
def test_a_fresh_head_replaces_the_dense_before_a_final_activation_layer(tmp_path, variant, units):
    """Dense + a separate Activation('sigmoid'/'softmax') is the head as Dense(..., activation=...) is: a new
    class count replaces the Dense and leaves the activation out; the file's own count keeps the head."""
    model = _config_of(_classifier(tmp_path, variant, units=units))
    graph = KerasGraph(model, num_classes=5)
    head = graph.layers[graph.head_key]
    assert graph.num_classes == 5 and head.linear.out_features == 5
    assert isinstance(graph.module_at("act"), torch.nn.Identity)
    same = KerasGraph(model, num_classes=2 if units == 1 else 3)
    assert same.layers[same.head_key].linear.out_features == units and same.num_classes == (2 if units == 1 else 3)


@pytest.mark.parametrize(("layers", "weights", "message"), [
    ([_k3("Conv2D", "conv", filters=2, kernel_size=[1, 1], activation="linear")],
     {"conv": {"s/conv/kernel": np.ones((1, 1, 3, 2), np.float32), "s/conv/bias": np.zeros(2, np.float32)}},
     "Keras layer 'conv': the model's output is (4, 4, 2) per image, not one score vector per image"),
    ([_k3("Reshape", "rs", target_shape=[6, 8]), _k3("Softmax", "sm", axis=-1), _k3("Flatten", "f")],
     {"rs": {}, "sm": {}, "f": {}},
     "Keras layer 'sm' (Softmax) ends the model with a softmax over output (6, 8), not over one score vector per "
     "image"),
])
def test_an_output_that_is_not_one_score_vector_per_image_is_refused(tmp_path, run_cli, layers, weights, message):
    path = _write_h5(tmp_path / "m.h5", _seq("s", [_k3_input(), *layers]), weights)
    before = path.read_bytes()
    code, out, err = run_cli("import", "keras", path, "--out", tmp_path / "run")
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "run").exists() and path.read_bytes() == before


@pytest.mark.parametrize("activation", ["linear", "relu", "softmax"])
def test_a_model_with_one_output_unit_is_refused(tmp_path, run_cli, activation):
    """Dense(1) without a sigmoid imported as a one-class model answering 100% for every image."""
    layers = [_k3("Flatten", "f"), _k3("Dense", "d", units=1, activation=activation, use_bias=True)]
    weights = {"f": {}, "d": {"s/d/kernel": np.ones((48, 1), np.float32), "s/d/bias": np.zeros(1, np.float32)}}
    path = _write_h5(tmp_path / "m.h5", _seq("s", [_k3_input(), *layers]), weights)
    code, out, err = run_cli("import", "keras", path, "--out", tmp_path / "run")
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert "Keras layer 'd': the model has 1 output unit; a softmax over one class is always 100%" in err
    assert not (tmp_path / "run").exists()


def _functional(output: list, keras2_nested: bool = False) -> dict:
    """input -> Flatten -> Dense 'd1' (softmax) as a Keras 2-style functional config; with `keras2_nested` the
    Dense sits in a nested Sequential 'head' whose own graph Keras 2 counts as its node 0."""
    inp = {"class_name": "InputLayer", "name": "inp", "inbound_nodes": [],
           "config": {"batch_shape": [None, 4, 4, 3], "name": "inp"}}
    flat = {**_k3("Flatten", "flat"), "name": "flat", "inbound_nodes": [[["inp", 0, 0, {}]]]}
    dense = _k3("Dense", "d1", units=3, activation="softmax", use_bias=True)
    if keras2_nested:
        head = {**_seq("head", [{"class_name": "InputLayer", "config": {"batch_input_shape": [None, 48],
                                                                        "name": "head_in"}}, dense]),
                "name": "head", "inbound_nodes": [[["flat", 0, 0, {}]]]}
        layers = [inp, flat, head]
    else:
        layers = [inp, flat, {**dense, "name": "d1", "inbound_nodes": [[["flat", 0, 0, {}]]]}]
    return {"class_name": "Functional", "config": {"name": "model", "layers": layers,
                                                   "input_layers": [["inp", 0, 0]], "output_layers": [output]}}


@pytest.mark.parametrize(("output", "message"), [
    (["d1", 5, 0], "names node 5 of layer 'd1' as its output, which has 1 node(s); the model config is damaged"),
    (["d1", -1, 0], "names node -1 of layer 'd1' as its output, which has 1 node(s); the model config is damaged"),
    (["d1", 0, 3], "names output 3 of layer 'd1' as its output; the importer reads layers with one output "
                   "(output 0)"),
    (["nowhere", 0, 0], "names layer 'nowhere' as its output, which is not one of its layers"),
])
def test_an_output_naming_no_tensor_of_the_model_is_one_line(tmp_path, run_cli, output, message):
    kernel, bias = _dense_head(3, "softmax")
    path = _write_h5(tmp_path / "out.h5", _functional(output), {"d1": {"d1/kernel": kernel, "d1/bias": bias}})
    before = path.read_bytes()
    code, out, err = run_cli("import", "keras", path, "--out", tmp_path / "run")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.strip().endswith(f"model 'model' {message}"), err
    assert not (tmp_path / "run").exists() and path.read_bytes() == before


def test_a_keras2_nested_model_as_the_output_is_found_by_its_node_number(tmp_path):
    """Keras 2 numbers a nested model's call in the outer graph from 1 (its own graph is node 0), in
    `output_layers` as in inbound nodes; node 0 of it is no tensor of the outer model."""
    kernel, bias = _dense_head(3, "softmax")
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    graph = KerasGraph(_functional(["head", 1, 0], keras2_nested=True), keras_version="2.15.0")
    graph.module_at("head/d1").set_keras({"kernel": kernel, "bias": bias})
    with torch.no_grad():
        np.testing.assert_allclose(torch.softmax(graph.eval()(x), 1).numpy(),
                                   _softmax(_keras_dense(x, kernel, bias)), atol=1e-6)
    with pytest.raises(UserError, match=r"names node 0 of layer 'head' as its output, which has 1 node\(s\)"):
        KerasGraph(_functional(["head", 0, 0], keras2_nested=True), keras_version="2.15.0")


@pytest.mark.parametrize("tail", [[], [{"class_name": "Reshape", "config": {"name": "rs", "target_shape": [6, 6, 4]}}]])
def test_a_model_whose_output_is_a_map_is_refused(tmp_path, run_cli, tail):
    """A model ending in a Conv2D (one map per image) imported as a classifier of its channels, and predict
    failed with a traceback; the import and the run's builder refuse it naming the output layer."""
    from deepvision.models.keras_graph import keras_graph
    from tests.interop.test_keras_mapping import _conv, write_keras2_h5

    conv = _conv("conv_1", 4)
    conv["config"]["batch_input_shape"] = [None, 6, 6, 1]
    path = write_keras2_h5(tmp_path / "map.h5", [conv, *tail])
    before = path.read_bytes()
    code, out, err = run_cli("import", "keras", path, "--out", tmp_path / "run")
    last = (tail or [conv])[-1]["config"]["name"]
    message = (f"Keras layer '{last}': the model's output is (6, 6, 4) per image, not one score vector per image; "
               f"deepvision imports classifiers")
    assert (code, out) == (2, "") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "run").exists() and path.read_bytes() == before
    with h5py.File(path, "r") as f:
        config = tmp_path / "model.json"
        config.write_text(f.attrs["model_config"] if isinstance(f.attrs["model_config"], str)
                          else f.attrs["model_config"].decode())
    with pytest.raises(UserError, match=re.escape(message)):
        keras_graph(config=str(config))
