"""`deepvision import mxnet`: parity with MXNet 1.9.1's own outputs (fixtures written by real MXNet, see
tests/fixtures/mxnet/generate.py), weight mapping onto the zoo, and the imported run in use."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from deepvision.errors import UserError
from deepvision.interop.mxnet_import import graph_params, import_mxnet
from deepvision.interop.mxnet_params import write_params
from deepvision.models.mxnet_graph import build_graph
from deepvision.runs.loading import load_run
from tests.helpers import make_image_folder

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "mxnet"
SMALL_RESNET = {"stages": [1, 1, 1], "filters": [8, 16, 32, 64]}


def _assert_parity(name: str, run_dir: Path) -> None:
    io = np.load(FIX / f"{name}-io.npz", allow_pickle=False)
    loaded = load_run(run_dir)
    with torch.inference_mode():
        logits = loaded.model(torch.from_numpy(io["input"])).numpy()
    probs = torch.softmax(torch.from_numpy(logits), 1).numpy()
    assert np.abs(probs - io["probs"]).max() <= 1e-4, name
    assert np.abs(logits - io["logits"]).max() <= 1e-4 * max(1.0, np.abs(io["logits"]).max()), name
    assert (probs.argmax(1) == io["probs"].argmax(1)).all(), name


@pytest.mark.parametrize("name", ["lenet", "mlp", "resnet_small", "vgg_small", "inception_bn_block", "operators",
                                  "gluon_resnet_v1", "gluon_resnet_v2"])
def test_graph_import_matches_mxnet(name, tmp_path):
    shape = np.load(FIX / f"{name}-io.npz")["input"].shape
    result = import_mxnet(FIX / name, 7, out=tmp_path / "run", input_size=shape[1:], quiet=True)
    assert result.model == "mxnet:graph" and not result.unused
    _assert_parity(name, result.run_dir)


@pytest.mark.parametrize(("name", "model", "options"), [
    ("lenet", "lenet", {}),
    ("mlp", "mlp", {}),
    ("resnet_small", "resnet_ref", SMALL_RESNET),  # the reference's MXNet ResNet (bn_data, shortcut on act1)
    ("gluon_resnet_v2", "resnet_ref", SMALL_RESNET),  # Gluon pre-activation bottlenecks
    ("vgg_small", "vgg16_ref", {"filters": [4, 8, 8, 16, 16], "units": [1, 1, 2, 1, 1], "fc_units": 16}),
])
def test_mapping_onto_the_zoo_matches_mxnet(name, model, options, tmp_path):
    shape = np.load(FIX / f"{name}-io.npz")["input"].shape
    result = import_mxnet(FIX / name, 7, model=model, options=options, out=tmp_path / "run", input_size=shape[1:],
                          quiet=True)
    assert result.check_diff is not None and result.check_diff <= 1e-5
    cfg = load_run(result.run_dir).cfg
    assert cfg.model.name == model
    if "bn_eps" in cfg.model.args:  # inferred from the symbol: MXNet's 1e-3 default, 2e-5 reference ResNet
        assert cfg.model.args["bn_eps"] == {"resnet_small": 2e-5, "gluon_resnet_v2": 1e-5}.get(name, 1e-3)
    _assert_parity(name, result.run_dir)


def _random_checkpoint(symbol: str, prefix: Path, size: tuple[int, int, int]) -> None:
    """Random weights (and BN statistics) for a full-size symbol, saved as an MXNet checkpoint."""
    graph = build_graph(FIX / "symbols" / f"{symbol}-symbol.json", 0, size[0], size[1:])
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for key, value in graph.state_dict().items():
            if "running_var" in key:
                value.uniform_(0.5, 2.0, generator=g)
            elif value.is_floating_point():
                value.normal_(0, 0.05 if value.dim() > 1 else 0.1, generator=g)
    shutil.copyfile(FIX / "symbols" / f"{symbol}-symbol.json", f"{prefix}-symbol.json")
    write_params(f"{prefix}-0003.params", graph_params(graph))


@pytest.mark.parametrize(("symbol", "model", "options", "size"), [
    ("squeezenet", "squeezenet_ref", {}, (3, 227, 227)),
    ("age_gender", "age_gender_net", {"fc_units": 32}, (3, 227, 227)),
    ("gluon_resnet18_v1", "tv:resnet18", {}, (3, 32, 32)),  # googlenet_ref and alexnet_ref: the live test
])
def test_reference_symbols_map_onto_the_zoo(symbol, model, options, size, tmp_path):
    _random_checkpoint(symbol, tmp_path / symbol, size)
    result = import_mxnet(tmp_path / symbol, 3, model=model, options=options, input_size=size,
                          out=tmp_path / "run", quiet=True)
    assert result.check_diff <= 1e-5  # the mapped model computes what the MXNet graph computes
    graph = load_run(result.run_dir)
    assert graph.cfg.model.name == model and graph.epoch == 3


def test_mismatches_name_the_first_layer_and_shapes(tmp_path):
    with pytest.raises(UserError, match=r"does not fit 'mlp': parameter layer 1, MXNet 'conv1' \(Conv2d "
                                        r"\(20, 1, 5, 5\)\) vs deepvision '1' \(Linear \(128, 256\)\)"):
        import_mxnet(FIX / "lenet", 7, model="mlp", input_size=(1, 16, 16), out=tmp_path / "a", quiet=True)
    with pytest.raises(UserError, match=r"BatchNorm 'bn_data' has eps 2e-05 but 'features.stem.bn_data' of "
                                        r"'resnet_ref' has 1e-05; pass --option bn_eps=2e-05"):
        import_mxnet(FIX / "resnet_small", 7, model="resnet_ref", options={**SMALL_RESNET, "bn_eps": 1e-5},
                     input_size=(3, 32, 32), out=tmp_path / "b", quiet=True)
    with pytest.raises(UserError, match=r"outputs differ from layer 'classifier.3' on \(MXNet 'fc2', shape \(2, 10\)"):
        import_mxnet(FIX / "lenet", 7, model="lenet", options={"fc_activation": "relu"}, input_size=(1, 16, 16),
                     out=tmp_path / "c", quiet=True)
    with pytest.raises(UserError, match=r"'fc1_weight' in .* has shape \(500, 50\) but layer 'fc1' needs "
                                        r"\(500, 800\)"):
        import_mxnet(FIX / "lenet", 7, input_size=(1, 28, 28), out=tmp_path / "d", quiet=True)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # failed imports leave nothing behind


def test_unsupported_operators_are_named_in_one_line(tmp_path):
    sym = json.loads((FIX / "lenet-symbol.json").read_text())
    for node in sym["nodes"]:
        if node["name"] == "tanh2":
            node["op"] = "Deconvolution"
        if node["name"] == "pool2":
            node["op"] = "ROIPooling"
    (tmp_path / "x-symbol.json").write_text(json.dumps(sym))
    shutil.copyfile(FIX / "lenet-0007.params", tmp_path / "x-0007.params")
    with pytest.raises(UserError) as exc:
        import_mxnet(tmp_path / "x", 7, out=tmp_path / "run", quiet=True)
    message = str(exc.value)
    assert "\n" not in message
    assert "not supported by the graph importer: Deconvolution (node 'tanh2'), ROIPooling (node 'pool2')" in message
    with pytest.raises(UserError, match=r"found x-0007.params"):
        import_mxnet(tmp_path / "x", 8, quiet=True)


def test_imported_run_predicts_evaluates_finetunes_and_moves(run_cli, tmp_path):
    images = make_image_folder(tmp_path / "data", n_per_class=6, size=20, classes=("horizontal", "vertical"))
    labels = tmp_path / "labels.txt"
    labels.write_text("horizontal\nvertical\n" + "".join(f"n0000000{i} other {i}\n" for i in range(8)))
    run = tmp_path / "imported"
    code, out, err = run_cli("import", "mxnet", FIX / "lenet", "7", "--input-size", "1x16x16", "--labels", labels,
                             "--scale", "0.00392157", "--mean", "127.5", "--out", run)
    assert code == 0, err
    assert f"imported lenet-0007.params into {run.resolve()} (model mxnet:graph)" in out
    assert (run / "mxnet-symbol.json").is_file() and (run / "checkpoints" / "lenet-0007.pt").is_file()
    assert load_run(run).classes[2] == "other 0"

    image = next((images / "vertical").iterdir())
    code, out, err = run_cli("predict", run, image, "--json", "--top", "3")
    assert code == 0, err
    top = json.loads(out)[0]["top"]
    loaded = load_run(run)
    x = loaded.pre.normalize(loaded.pre.load(image).unsqueeze(0))
    with torch.inference_mode():
        expected = torch.softmax(loaded.model(x), 1)[0]
    assert top[0]["class"] == loaded.classes[int(expected.argmax())]
    assert abs(top[0]["probability"] - float(expected.max())) < 1e-6

    code, out, err = run_cli("evaluate", run, "--data", images, "--out", tmp_path / "eval")
    assert code == 0, err
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["samples"] == 12

    # fine-tune: the imported config names the graph and the imported weights (model.pretrained)
    code, out, err = run_cli("train", run / "config.yaml", "--data-root", images, "--out", tmp_path / "ft",
                             *[a for s in ("model.num_classes=null", "train.epochs=1", "data.train=.",
                                           "data.val_fraction=0.25", "data.test=null", "optim.lr=1e-9",
                                           "train.tensorboard=false", "data.batch_size=4") for a in ("--set", s)])
    assert code == 0, err
    tuned = load_run(next((tmp_path / "ft").iterdir()))
    assert tuned.model.layers["fc2"].out_features == 2  # new head for the 2 classes of the folder
    assert torch.allclose(tuned.model.layers["conv1"].weight, loaded.model.layers["conv1"].weight, atol=1e-6)

    moved = tmp_path / "elsewhere" / "run"
    moved.parent.mkdir()
    shutil.move(str(run), moved)  # the symbol travels with the run directory
    assert load_run(moved).model.layers["fc2"].out_features == 10


def test_a_labels_file_not_in_utf8_is_refused_as_keras_import_refuses_it(run_cli, tmp_path):
    """A Latin-1 'caf\\xe9' was read with replacement characters: the class became 'caf\\ufffd', exit 0."""
    labels = tmp_path / "labels.txt"
    labels.write_bytes(b"zero\none\ntwo\nthree\nfour\nfive\nsix\nseven\neight\ncaf\xe9\n")
    code, out, err = run_cli("import", "mxnet", FIX / "lenet", "7", "--labels", labels, "--out", tmp_path / "run")
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert f"labels file {labels} is not UTF-8 text (byte 48)" in err, err
    assert not (tmp_path / "run").exists()
