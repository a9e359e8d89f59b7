"""A corpus of hostile inputs, one small generated case per failure class: each case writes its files into
a folder and returns the call that must refuse them, with the message the refusal must hold.

`tests/fuzz/test_corpus.py` runs every case and checks the refusal is one UserError line and that every
input is byte-identical afterwards; the memory-hungry classes also run in a child process under an 8 GB
address-space limit.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

Case = Callable[[Path], tuple[Callable[[], object], str]]
CASES: dict[str, Case] = {}
# Cases that would allocate gigabytes if a check were missing: also run under RLIMIT_AS.
MEMORY_CASES = ("yaml_alias_bomb_config", "yaml_alias_bomb_set", "hdf5_declares_80_gb", "npz_zip_bomb",
                "npy_header_16_gb", "mxnet_num_filter_1e6_vs_params", "mxnet_lrn_nsize_1e9")

ALIAS_BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi"))
DEEP_JSON = "[" * 50_000 + "]" * 50_000


def case(fn: Case) -> Case:
    CASES[fn.__name__] = fn
    return fn


# -- bounded parsing ---------------------------------------------------------------------------------------
@case
def yaml_alias_bomb_config(d: Path):
    from deepvision.config.io import load_config

    (d / "c.yaml").write_text(ALIAS_BOMB)
    return (lambda: load_config(d / "c.yaml")), "YAML aliases expand"


@case
def yaml_alias_bomb_set(d: Path):
    from deepvision.config.io import parse_override

    return (lambda: parse_override("data.options={" + ALIAS_BOMB.replace("\n", ", ") + "}")), "YAML aliases expand"


@case
def yaml_recursive_anchor(d: Path):
    from deepvision.config.io import load_config

    (d / "c.yaml").write_text("model: &m {name: lenet, args: *m}\n")
    return (lambda: load_config(d / "c.yaml")), "contains an alias to itself"


@case
def yaml_python_tag(d: Path):
    from deepvision.config.io import load_config

    (d / "c.yaml").write_text("model: !!python/object/apply:os.system [echo hi]\n")
    return (lambda: load_config(d / "c.yaml")), "is not valid YAML"


@case
def deep_json_run_json(d: Path):
    from deepvision.runs.rundir import RunDir

    (d / "run.json").write_text(DEEP_JSON)
    return (lambda: RunDir(d).read_state()), "JSON nested deeper than 100 levels"


@case
def deep_json_preprocess(d: Path):
    from deepvision.runs.rundir import RunDir

    (d / "preprocess.json").write_text(DEEP_JSON)
    return (lambda: RunDir(d).read_preprocess()), "JSON nested deeper than 100 levels"


@case
def deep_json_mxnet_symbol(d: Path):
    from deepvision.models.mxnet_symbol import read_symbol

    (d / "net-symbol.json").write_text(DEEP_JSON)
    return (lambda: read_symbol(d / "net-symbol.json")), "JSON nested deeper than 100 levels"


@case
def deep_json_model_npz_info(d: Path):
    from deepvision.apps.transfer.logreg import LinearModel

    _logreg_model(d / "model.npz", info=np.array(DEEP_JSON))
    return (lambda: LinearModel.load(d / "model.npz")), "JSON nested deeper than 100 levels"


@case
def deep_json_feature_attribute(d: Path):
    import h5py

    from deepvision.inference.features import read_feature_info

    with h5py.File(d / "f.h5", "w") as db:
        db.attrs["deepvision"] = DEEP_JSON
    return (lambda: read_feature_info(d / "f.h5")), "JSON nested deeper than 100 levels"


# -- image sizes and preprocessing in metadata ---------------------------------------------------------------
@case
def preprocess_size_45000(d: Path):
    from deepvision.runs.rundir import RunDir

    (d / "preprocess.json").write_text(json.dumps({"channels": 3, "size": [45000, 45000]}))
    return (lambda: RunDir(d).read_preprocess()), "preprocess size 45000x45000 exceeds the ceiling"


@case
def preprocess_seven_channels(d: Path):
    from deepvision.runs.rundir import RunDir

    (d / "preprocess.json").write_text(json.dumps({"channels": 7, "size": [32, 32]}))
    return (lambda: RunDir(d).read_preprocess()), "preprocess channels must be 1 or 3"


@case
def preprocess_negative_size(d: Path):
    from deepvision.runs.rundir import RunDir

    (d / "preprocess.json").write_text(json.dumps({"channels": 3, "size": [0, -5]}))
    return (lambda: RunDir(d).read_preprocess()), "must be positive"


# -- declared sizes -------------------------------------------------------------------------------------------
@case
def hdf5_declares_80_gb(d: Path):
    import h5py

    from deepvision.apps.transfer.logreg import fit_logreg

    with h5py.File(d / "f.h5", "w") as db:
        db.create_dataset("features", shape=(100_000, 200_000), dtype="f4", chunks=(64, 1024), compression="gzip")
        db.create_dataset("labels", data=np.zeros(100_000, np.int64))
    return (lambda: fit_logreg(d / "f.h5", d / "out", cv=2, jobs=1)), "declares 80.0 GB"


def _npy_header(shape: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": shape})
    return buf.getvalue()


@case
def npz_zip_bomb(d: Path):
    from deepvision.apps.transfer.logreg import LinearModel

    with zipfile.ZipFile(d / "model.npz", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("coef.npy", _npy_header((2500, 1000)) + bytes(20_000_000))
    return (lambda: LinearModel.load(d / "model.npz")), "compressed more than 100:1"


@case
def npy_header_16_gb(d: Path):
    from deepvision.apps.transfer.logreg import LinearModel

    with zipfile.ZipFile(d / "model.npz", "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("coef.npy", _npy_header((45000, 45000)) + bytes(64))
    return (lambda: LinearModel.load(d / "model.npz")), "declares 16.2 GB but the file stores"


# -- values -----------------------------------------------------------------------------------------------------
def _logreg_model(path: Path, **changes) -> None:
    arrays = {"coef": np.ones((1, 3)), "intercept": np.zeros(1), "classes": np.array([0, 1]),
              "label_names": np.array(["0", "180"]), "kind": np.array("multinomial"), "info": np.array("{}")}
    arrays.update(changes)
    np.savez(path, **arrays)


def _features(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    import h5py

    with h5py.File(path, "w") as db:
        db.create_dataset("features", data=x)
        db.create_dataset("labels", data=y)
        db.create_dataset("label_names", data=["a", "b"], dtype=h5py.string_dtype())


@case
def logreg_negative_label(d: Path):
    from deepvision.apps.transfer.logreg import fit_logreg

    _features(d / "f.h5", np.ones((20, 3)), np.r_[np.zeros(10), -np.ones(10)].astype(np.int64))
    return (lambda: fit_logreg(d / "f.h5", d / "out", cv=2, jobs=1)), "'labels' holds the negative class -1"


@case
def logreg_nan_features(d: Path):
    from deepvision.apps.transfer.logreg import fit_logreg

    x = np.ones((20, 3))
    x[4, 1] = np.nan
    _features(d / "f.h5", x, np.tile([0, 1], 10))
    return (lambda: fit_logreg(d / "f.h5", d / "out", cv=2, jobs=1)), "hold NaN or infinite features"


@case
def logreg_string_features(d: Path):
    from deepvision.apps.transfer.logreg import fit_logreg

    _features(d / "f.h5", np.array([[b"x"] * 3] * 20), np.tile([0, 1], 10))
    return (lambda: fit_logreg(d / "f.h5", d / "out", cv=2, jobs=1)), "give numbers"


@case
def model_npz_nan_coef(d: Path):
    from deepvision.apps.transfer.logreg import LinearModel

    _logreg_model(d / "model.npz", coef=np.full((1, 3), np.nan))
    return (lambda: LinearModel.load(d / "model.npz")), "coef must hold finite numbers"


@case
def class_folder_with_newline(d: Path):
    import deepvision.data.sources  # noqa: F401 - registers every source, as the CLI does
    from deepvision.config.schema import DataConfig
    from deepvision.data.builtin_sources import folder_source

    (d / "cat").mkdir()
    (d / "dog\nhorse").mkdir()
    return (lambda: folder_source(DataConfig(source="folder", root=str(d), train="."), ["."])), \
        "holds a control character"


@case
def train_log_symlink(d: Path):
    from deepvision.engine.reporting import Reporter

    (d / "victim.txt").write_text("keep me\n")
    (d / "run").mkdir()
    (d / "run" / "train.log").symlink_to(d / "victim.txt")
    return (lambda: Reporter(d / "run" / "train.log")), "is a symbolic link"


@case
def run_json_fifo(d: Path):
    from deepvision.runs.rundir import RunDir

    os.mkfifo(d / "run.json")
    return (lambda: RunDir(d).read_state()), "is not a regular file (a FIFO)"


# -- MXNet ----------------------------------------------------------------------------------------------------
def _mxnet(d: Path, conv: dict | None = None, extra: dict | None = None, heads: list | None = None,
           weight: np.ndarray | None = None) -> Callable[[], object]:
    from deepvision.interop.mxnet_import import import_mxnet
    from deepvision.interop.mxnet_params import write_params

    def node(op, name, inputs, **attrs):
        return {"op": op, "name": name, "attrs": attrs, "inputs": [[i, 0, 0] for i in inputs]}

    nodes = [node("null", "data", []), node("null", "c_weight", []),
             node("Convolution", "c", [0, 1], **{"num_filter": "4", "kernel": "(3, 3)", "no_bias": "True",
                                                  **(conv or {})})]
    if extra:
        extra["inputs"] = [[2, 0, 0]]
        nodes.append(extra)
    nodes += [node("null", "f_weight", []), node("null", "f_bias", [])]
    nodes.append(node("FullyConnected", "f", [len(nodes) - 3, len(nodes) - 2, len(nodes) - 1], num_hidden="2"))
    (d / "net-symbol.json").write_text(json.dumps({"nodes": nodes, "heads": heads or [[len(nodes) - 1, 0, 0]]}))
    write_params(d / "net-0001.params", {
        "arg:c_weight": np.ones((4, 1, 3, 3), np.float32) if weight is None else weight,
        "arg:f_weight": np.ones((2, 144), np.float32), "arg:f_bias": np.zeros(2, np.float32)})
    return lambda: import_mxnet(d / "net", 1, out=d / "run", input_size=(1, 8, 8), quiet=True)


@case
def mxnet_num_filter_abc(d: Path):
    return _mxnet(d, {"num_filter": "abc"}), "num_filter=abc must be a whole number"


@case
def mxnet_num_group_0(d: Path):
    return _mxnet(d, {"num_group": "0"}), "num_group=0 must be a whole number"


@case
def mxnet_stride_0(d: Path):
    return _mxnet(d, {"stride": "(0, 0)"}), "stride=(0, 0) must hold whole numbers"


@case
def mxnet_num_filter_1e6_vs_params(d: Path):
    return _mxnet(d, {"num_filter": "1000000"}), "has shape (4, 1, 3, 3) but layer 'c' needs (1000000, 1, 3, 3)"


@case
def mxnet_lrn_nsize_1e9(d: Path):
    return _mxnet(d, extra={"op": "LRN", "name": "lrn", "attrs": {"nsize": "1000000000"}}), \
        "nsize=1000000000 must be a whole number from 1 to 7"


@case
def mxnet_clip_without_attributes(d: Path):
    return _mxnet(d, extra={"op": "clip", "name": "cl", "attrs": {}}), "no a_min attribute"


@case
def mxnet_negative_head(d: Path):
    return _mxnet(d, heads=[[-5, 0, 0]]), "name no node"


@case
def mxnet_nan_weight(d: Path):
    weight = np.ones((4, 1, 3, 3), np.float32)
    weight[0, 0, 0, 0] = np.nan
    return _mxnet(d, weight=weight), "holds 1 NaN/infinite value(s)"


@case
def mxnet_params_trailing_bytes(d: Path):
    call = _mxnet(d)
    with open(d / "net-0001.params", "ab") as f:
        f.write(b"\0junk")
    return call, "trailing 5 bytes after the last array"


@case
def mxnet_params_fifo(d: Path):
    call = _mxnet(d)
    (d / "net-0001.params").unlink()
    os.mkfifo(d / "net-0001.params")
    return call, "net-0001.params is a FIFO, not a regular file"


@case
def mxnet_option_without_model(d: Path):
    from deepvision.interop.mxnet_import import import_mxnet

    _mxnet(d)
    return (lambda: import_mxnet(d / "net", 1, out=d / "run", options={"fc_units": 8}, quiet=True)), \
        "builder options need --model"


@case
def mxnet_option_unknown(d: Path):
    from deepvision.interop.mxnet_import import import_mxnet

    _mxnet(d)
    return (lambda: import_mxnet(d / "net", 1, model="lenet", out=d / "run", options={"colour": 1}, quiet=True)), \
        "model 'lenet' has no option 'colour'"


# -- Keras -------------------------------------------------------------------------------------------------------
KERAS = Path(__file__).resolve().parents[1] / "fixtures" / "keras" / "keras_mnist_cnn.h5"


@case
def keras_weight_no_layer_uses(d: Path):
    import shutil

    import h5py

    from deepvision.interop.keras_files import read_keras_file

    shutil.copy(KERAS, d / "m.h5")
    with h5py.File(d / "m.h5", "r+") as f:
        f["model_weights/conv2d_7/conv2d_7/extra:0"] = np.ones(3, np.float32)
    return (lambda: read_keras_file(d / "m.h5")), "1 weight dataset(s) in the file are used by no layer"


# -- serve -------------------------------------------------------------------------------------------------------
@case
def serve_max_upload_nan(d: Path):
    from deepvision.apps.serve.app import check_limits

    return (lambda: check_limits(float("nan"), 1e6)), "--max-upload-mb must be a finite positive number"


def main() -> None:
    """Run MEMORY_CASES in this process (the child the corpus test starts under RLIMIT_AS)."""
    import sys
    import tempfile

    from deepvision.errors import UserError

    failures = []
    for name in MEMORY_CASES:
        with tempfile.TemporaryDirectory() as tmp:
            call, message = CASES[name](Path(tmp))
            try:
                call()
                failures.append(f"{name}: accepted")
            except UserError as exc:
                if message not in str(exc):
                    failures.append(f"{name}: {exc}")
            except MemoryError:
                failures.append(f"{name}: MemoryError")
    print("\n".join(failures) or "ok")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
