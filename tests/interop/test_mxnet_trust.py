"""Hostile MXNet checkpoints: attributes, heads and weights are validated before anything is allocated,
and every refusal is one UserError line."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from deepvision.errors import UserError
from deepvision.interop.mxnet_import import import_mxnet
from deepvision.interop.mxnet_params import encode_params, read_params, write_params
from deepvision.models.mxnet_graph import MXNetGraph

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "mxnet"


def _node(op: str, name: str, inputs: list[int], **attrs: str) -> dict:
    return {"op": op, "name": name, "attrs": attrs, "inputs": [[i, 0, 0] for i in inputs]}


def _checkpoint(tmp_path: Path, conv: dict | None = None, extra: list[dict] | None = None,
                weights: dict | None = None, heads: list | None = None) -> Path:
    """data(1x8x8) -> Convolution(4 filters, 3x3) [-> extra ops] -> FullyConnected(2) -> SoftmaxOutput."""
    conv_attrs = {"num_filter": "4", "kernel": "(3, 3)", **(conv or {})}
    nodes = [_node("null", "data", []), _node("null", "c_weight", []), _node("null", "c_bias", []),
             _node("Convolution", "c", [0, 1, 2], **conv_attrs)]
    last = 3
    for op in extra or []:
        if op["op"] == "null":  # a variable (weights of a later extra op, named by index): not chained
            nodes.append(op)
            continue
        op["inputs"] = [[last, 0, 0]] + op["inputs"]
        nodes.append(op)
        last = len(nodes) - 1
    nodes += [_node("null", "f_weight", []), _node("null", "f_bias", [])]
    nodes.append(_node("FullyConnected", "f", [last, len(nodes) - 2, len(nodes) - 1], num_hidden="2"))
    nodes += [_node("null", "label", []), _node("SoftmaxOutput", "out", [len(nodes) - 1, len(nodes)])]
    prefix = tmp_path / "net"
    Path(f"{prefix}-symbol.json").write_text(json.dumps(
        {"nodes": nodes, "heads": heads or [[len(nodes) - 1, 0, 0]], "arg_nodes": [], "node_row_ptr": []}))
    rng = np.random.default_rng(0)
    arrays = {"arg:c_weight": rng.normal(size=(4, 1, 3, 3)).astype(np.float32),
              "arg:c_bias": np.zeros(4, np.float32),
              "arg:f_weight": rng.normal(size=(2, 144)).astype(np.float32), "arg:f_bias": np.zeros(2, np.float32)}
    arrays.update(weights or {})
    write_params(f"{prefix}-0001.params", arrays)
    return prefix


def _import(prefix: Path, tmp_path: Path):
    return import_mxnet(prefix, 1, out=tmp_path / "run", input_size=(1, 8, 8), quiet=True)


def test_the_small_checkpoint_imports(tmp_path):
    result = _import(_checkpoint(tmp_path), tmp_path)
    assert result.num_classes == 2 and result.tensors == 4


@pytest.mark.parametrize(("conv", "message"), [
    ({"num_filter": "abc"}, r"num_filter=abc must be a whole number from 1 to 1048576"),
    ({"num_filter": "-16"}, r"num_filter=-16 must be a whole number"),
    ({"num_filter": "1e12"}, r"num_filter=1e12 must be a whole number"),
    ({"num_group": "0"}, r"num_group=0 must be a whole number from 1"),
    ({"stride": "(0, 0)"}, r"stride=\(0, 0\) must hold whole numbers from 1"),
    ({"pad": "(-1, 0)"}, r"pad=\(-1, 0\) must hold whole numbers from 0"),
    ({"kernel": "(3, 3, 3)"}, r"kernel=\(3, 3, 3\) is not 2-D"),
    ({"num_filter": "2_0"}, r"num_filter=2_0 must be a whole number from 1"),  # int() reads 20
    ({"num_filter": "\u0664"}, r"num_filter=\u0664 must be a whole number from 1"),  # Arabic-Indic 4
    ({"kernel": "(0_3, 3)"}, r"kernel=\(0_3, 3\) must hold whole numbers from 1"),
])
def test_convolution_attributes_are_checked(tmp_path, conv, message):
    with pytest.raises(UserError, match=r"^MXNet node 'c' \(Convolution\): " + message):
        _import(_checkpoint(tmp_path, conv), tmp_path)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("op", "message"), [
    (_node("BatchNorm", "bn", [], axis="x"), r"axis=x must be a whole number"),
    (_node("BatchNorm", "bn", [], eps="nan"), r"eps=nan must be a finite number in \[0, 1\]"),
    (_node("clip", "cl", []), r"no a_min attribute"),
    (_node("_plus_scalar", "ps", []), r"no scalar attribute"),
    (_node("LRN", "lrn", [], nsize="1000000000"), r"nsize=1000000000 must be a whole number from 1 to 7"),
    (_node("LRN", "lrn", [], nsize="4"), r"nsize=4 must be odd"),
    (_node("Reshape", "r", [], shape="(1, 99999999999999999999)"), r"only 0, -1 and positive sizes"),
    (_node("Dropout", "d", [], p="0.5", mode="always"),
     r"^MXNet node 'd' \(Dropout\): mode=always drops values at inference too; only mode=training"),
    (_node("Pooling", "p", [], kernel="(1, 1)", pool_type="max", layout="NHWC"),
     r"^MXNet node 'p' \(Pooling\): only 2-D NCHW pooling is supported \(input \(1, 4, 6, 6\), layout NHWC\)"),
    (_node("Concat", "cc", [], num_args="3", dim="1"), r"^MXNet node 'cc' \(Concat\): num_args=3 but the symbol "
                                                         r"gives 1 inputs"),
    (_node("add_n", "an", [3], num_args="3"), r"^MXNet node 'an' \(add_n\): num_args=3 but the symbol gives 2 "
                                              r"inputs"),
    (_node("Dropout", "d", [], p="0.5", mode="bogus"), r"mode=bogus is no Dropout mode; only mode=training"),
])
def test_operator_attributes_are_checked(tmp_path, op, message):
    extra = [op]
    if op["op"] == "BatchNorm":  # BN reads gamma/beta/mean/var inputs after the data: nodes 4 to 7
        extra = [_node("null", f"bn_{role}", []) for role in ("gamma", "beta", "moving_mean", "moving_var")]
        op["inputs"] = [[i, 0, 0] for i in range(4, 8)]
        extra.append(op)
    with pytest.raises(UserError, match=message):
        _import(_checkpoint(tmp_path, extra=extra), tmp_path)


def test_a_negative_head_or_input_index_is_refused(tmp_path):
    with pytest.raises(UserError, match=r"damaged MXNet symbol file \(heads \[\(-5, 0\)\] name no node"):
        _import(_checkpoint(tmp_path, heads=[[-5, 0, 0]]), tmp_path)
    prefix = _checkpoint(tmp_path)
    doc = json.loads(Path(f"{prefix}-symbol.json").read_text())
    doc["nodes"][3]["inputs"][0] = [-1, 0, 0]
    Path(f"{prefix}-symbol.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match="not an earlier node"):
        _import(prefix, tmp_path)


def test_an_attribute_given_twice_with_two_values_is_refused(tmp_path):
    """MXNet 0.9 wrote a node's attributes as `param`/`attr`, later ones as `attrs`: the same value under two
    spellings imports; two values (relu and tanh) name two networks, and the file does not say which ran."""
    prefix = _checkpoint(tmp_path, extra=[_node("Activation", "act", [], act_type="relu")])
    doc = json.loads(Path(f"{prefix}-symbol.json").read_text())
    doc["nodes"][4]["attr"] = {"act_type": "relu"}
    Path(f"{prefix}-symbol.json").write_text(json.dumps(doc))
    assert _import(prefix, tmp_path).num_classes == 2
    doc["nodes"][4]["attr"] = {"act_type": "tanh"}
    Path(f"{prefix}-symbol.json").write_text(json.dumps(doc))
    before = Path(f"{prefix}-symbol.json").read_bytes()
    with pytest.raises(UserError, match=r"damaged MXNet symbol file \(node 4 \(act\) gives act_type twice with two "
                                        r"values \(attr: tanh, attrs: relu\)\)$"):
        import_mxnet(prefix, 1, out=tmp_path / "run2", input_size=(1, 8, 8), quiet=True)
    assert not (tmp_path / "run2").exists() and Path(f"{prefix}-symbol.json").read_bytes() == before


def test_two_variable_nodes_of_one_name_are_refused(tmp_path, run_cli):
    """MXNet binds one array per argument name and refuses a symbol naming two arguments alike; read as one
    shared weight, the second layer would silently take the first one's."""
    prefix = _checkpoint(tmp_path)
    doc = json.loads(Path(f"{prefix}-symbol.json").read_text())
    doc["nodes"][2]["name"] = "c_weight"  # the convolution's bias variable renamed as its weight
    Path(f"{prefix}-symbol.json").write_text(json.dumps(doc))
    before = Path(f"{prefix}-symbol.json").read_bytes()
    code, out, err = run_cli("import", "mxnet", prefix, 1, "--out", tmp_path / "run", "--input-size", "1x8x8")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert "net-symbol.json: two variable nodes are both named 'c_weight' (nodes 1 and 2); argument names are " \
           "unique in MXNet" in err, err
    assert not (tmp_path / "run").exists() and Path(f"{prefix}-symbol.json").read_bytes() == before


def test_shapes_are_compared_before_any_weight_exists(tmp_path, monkeypatch):
    """num_filter 1000000 is a valid attribute, but the file's weights are 4 filters: refused on the meta
    graph, before the 1e6-filter layer gets storage."""
    def no_allocation(self):
        raise AssertionError("weights allocated before the shape check")

    monkeypatch.setattr(MXNetGraph, "materialize", no_allocation)
    with pytest.raises(UserError, match=r"'c_weight' in .* has shape \(4, 1, 3, 3\) but layer 'c' needs "
                                        r"\(1000000, 1, 3, 3\)"):
        _import(_checkpoint(tmp_path, {"num_filter": "1000000"}), tmp_path)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weights_are_refused(tmp_path, bad):
    weight = np.ones((2, 144), np.float32)
    weight[1, 7] = bad
    with pytest.raises(UserError, match=r"'f_weight' in .* holds 1 NaN/infinite value\(s\)"):
        _import(_checkpoint(tmp_path, weights={"arg:f_weight": weight}), tmp_path)


def test_params_shape_product_past_int64_is_damage(tmp_path):
    data = bytearray(encode_params({"w": np.zeros((2, 2), np.float32)}))
    at = data.index((2).to_bytes(4, "little") + (2).to_bytes(8, "little"))  # ndim 2, then the sizes
    data[at + 4 : at + 20] = (2**62).to_bytes(8, "little") * 2
    path = tmp_path / "x.params"
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"is damaged: array 0 has shape \(4611686018427387904, 4611686018427387904\), "
                                        r"more than the file can hold"):
        read_params(path)


def test_squeezenet_ref_at_224_is_one_line(tmp_path):
    """MXNet's SqueezeNet pools with the 'full' (ceil) convention; squeezenet_ref floors, so at 224 its
    13x13 average pool gets a 12x12 map: a one-line refusal naming the layer, nothing written."""
    from deepvision.interop.mxnet_import import graph_params
    from deepvision.models.mxnet_graph import build_graph

    doc = json.loads((FIX / "symbols" / "squeezenet-symbol.json").read_text())
    for node in doc["nodes"]:
        if node["op"] == "Pooling" and node["attrs"].get("pool_type") == "max":
            node["attrs"]["pooling_convention"] = "full"
    (tmp_path / "sq-symbol.json").write_text(json.dumps(doc))
    graph = build_graph(tmp_path / "sq-symbol.json", 0, 3, (224, 224))
    write_params(tmp_path / "sq-0001.params", graph_params(graph))
    with pytest.raises(UserError, match=r"^squeezenet_ref: input 224x224 is too small: .*pool10.*12x12") as info:
        import_mxnet(tmp_path / "sq", 1, model="squeezenet_ref", input_size=(3, 224, 224), out=tmp_path / "run",
                     quiet=True)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "run").exists()


def test_a_symbol_alone_cannot_allocate_beyond_the_read_ceiling(tmp_path, monkeypatch):
    """`mxnet:graph` rebuilds an imported run from its symbol file before the checkpoint is read: the
    weights the symbol declares are checked against the read ceiling first."""
    from deepvision.models.mxnet_graph import build_graph

    prefix = _checkpoint(tmp_path, {"num_filter": "1000000"})
    monkeypatch.setenv("DEEPVISION_MAX_READ_GB", "0.2")  # its 144 MB map per sample passes
    with pytest.raises(UserError, match=r"the graph's weights declares 328.0 MB, above the 200.0 MB one read"):
        build_graph(f"{prefix}-symbol.json", 0, 1, (8, 8))


def test_trailing_bytes_after_the_last_array_are_refused(tmp_path):
    path = tmp_path / "a.params"
    data = encode_params({"arg:w": np.ones(3, np.float32)})
    path.write_bytes(data)
    assert list(read_params(path)) == ["arg:w"]
    path.write_bytes(data + b"\xde\xad\xbe")
    with pytest.raises(UserError, match=f"trailing 3 bytes after the last array and its names .offset {len(data)}"):
        read_params(path)


def test_a_name_given_to_two_arrays_is_refused(tmp_path):
    path = tmp_path / "a.params"
    one = encode_params({"arg:w": np.ones(3, np.float32), "arg:b": np.zeros(3, np.float32)})
    path.write_bytes(one.replace(b"arg:b", b"arg:w"))  # same length: only the second name changes
    with pytest.raises(UserError, match="the name 'arg:w' is given to more than one array"):
        read_params(path)


@pytest.mark.parametrize(("second", "first"), [("f_bias", "arg:f_bias"), ("aux:f_bias", "arg:f_bias")])
def test_one_parameter_under_two_prefixes_is_refused(tmp_path, run_cli, second, first):
    """`arg:NAME` and a bare `NAME` (or `aux:NAME`) are one parameter once the prefixes are stripped: either
    array would silently replace the other, so the import is refused in one line and writes nothing."""
    prefix = _checkpoint(tmp_path, weights={second: np.full(2, 100.0, np.float32)})
    params = Path(f"{prefix}-0001.params")
    before = params.read_bytes()
    code, out, err = run_cli("import", "mxnet", prefix, 1, "--out", tmp_path / "run", "--input-size", "1x8x8")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert f"{params}: f_bias is given twice ({first} and {second}); the file is damaged or crafted" in err, err
    assert not (tmp_path / "run").exists() and params.read_bytes() == before


def test_out_and_labels_are_refused_before_the_checkpoint_is_read(tmp_path, run_cli, monkeypatch):
    """An --out that holds files and a --labels FIFO are the refusal alone, as import keras gives them."""
    from deepvision.interop import mxnet_import

    prefix = _checkpoint(tmp_path)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("keep\n")
    os.mkfifo(tmp_path / "labels.txt")
    monkeypatch.setattr(mxnet_import, "read_symbol", lambda *a: pytest.fail("the checkpoint was read"))
    code, out, err = run_cli("import", "mxnet", prefix, 1, "--out", tmp_path / "taken")
    assert code == 2 and out == "" and err.count("\n") == 1 and "taken already exists; choose another --out" in err
    code, out, err = run_cli("import", "mxnet", prefix, 1, "--out", tmp_path / "run", "--labels",
                             tmp_path / "labels.txt")
    assert code == 2 and out == "" and err.count("\n") == 1 and "labels.txt is a FIFO, not a regular file" in err
    assert (tmp_path / "taken" / "keep.txt").read_text() == "keep\n" and not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["x ", " x", "x\t", ".x"])
def test_a_run_folder_name_train_would_refuse_is_refused(tmp_path, run_cli, monkeypatch, capsys, name):
    """'runs/x ' beside 'runs/x' would be two rows `deepvision runs` prints alike: refused as `train --name`
    refuses it, before the checkpoint is read."""
    from deepvision.interop import mxnet_import

    prefix = _checkpoint(tmp_path)
    monkeypatch.setattr(mxnet_import, "read_symbol", lambda *a: pytest.fail("the checkpoint was read"))
    if name != name.strip():  # every command's --out rule refuses it first, as argparse refuses a bad option
        with pytest.raises(SystemExit) as info:
            run_cli("import", "mxnet", prefix, 1, "--out", tmp_path / "runs" / name)
        out, err = capsys.readouterr()
        assert info.value.code == 2 and out == "" and err.count("\n") == 1, err
        assert "a name holding a control character or surrounding spaces prints as another" in err, err
    else:
        code, out, err = run_cli("import", "mxnet", prefix, 1, "--out", tmp_path / "runs" / name)
        assert code == 2 and out == "" and err.count("\n") == 1, err
        assert "--out (the run folder's name) must be a plain folder name (no path separators" in err, err
        assert f"got {name!r}" in err
    assert not (tmp_path / "runs").exists()


def test_a_params_path_that_is_a_fifo_is_named_as_such(tmp_path, run_cli):
    prefix = _checkpoint(tmp_path)
    params = Path(f"{prefix}-0001.params")
    params.unlink()
    os.mkfifo(params)
    with pytest.raises(UserError, match="is a FIFO, not a regular file"):
        read_params(params)
    code, _, err = run_cli("import", "mxnet", prefix, 1, "--out", tmp_path / "run")
    assert code == 2 and err.count("\n") == 1 and "net-0001.params is a FIFO, not a regular file" in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--option", "fc_units=8"], "--option fc_units: builder options need --model"),
    (["--model", "lenet", "--option", "colour=1"], "model 'lenet' has no option 'colour'; valid options: "),
])
def test_unknown_import_options_are_refused(tmp_path, run_cli, args, message):
    prefix = _checkpoint(tmp_path)
    code, _, err = run_cli("import", "mxnet", prefix, 1, "--out", tmp_path / "run", *args)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "run").exists()


def test_an_import_builds_its_model_once_and_checks_the_run_on_a_plan(tmp_path, monkeypatch):
    """The importer builds the graph; the check before the run is kept plans it from the written files on
    the meta device (no weights) instead of building it again, and the kept run loads and agrees."""
    import torch

    from deepvision.runs import loading

    built = []
    real_init = MXNetGraph.__init__

    def counting_init(self, *args, **kwargs):
        built.append(torch.empty(0).device.type)  # the device a plain tensor is made on while it builds
        real_init(self, *args, **kwargs)

    real_builds = []
    monkeypatch.setattr(MXNetGraph, "__init__", counting_init)
    build = loading.build_model
    monkeypatch.setattr(loading, "build_model", lambda *a, **k: real_builds.append(a) or build(*a, **k))
    monkeypatch.setattr(loading, "load_run", lambda *a, **k: pytest.fail("the import built the model a second time"))
    result = _import(_checkpoint(tmp_path), tmp_path)
    assert built == ["cpu", "meta"] and real_builds == []  # the import's graph, then the plan of the check
    monkeypatch.undo()
    loaded = loading.load_run(result.run_dir)
    params = read_params(f"{tmp_path / 'net'}-0001.params")
    weights = {k: v for k, v in loaded.model.state_dict().items() if k.endswith("weight")}
    assert sorted(tuple(v.shape) for v in weights.values()) == [(2, 144), (4, 1, 3, 3)]
    for value in weights.values():  # the kept run holds the MXNet weights themselves
        assert any(np.array_equal(value.numpy(), p) for p in params.values())


def test_the_plan_check_still_refuses_weights_the_run_cannot_load(tmp_path):
    """A checkpoint missing a tensor of the model its config builds is refused before the run is kept."""
    import torch

    from deepvision.config.io import build_config
    from deepvision.data.preprocess import Preprocess
    from deepvision.models.registry import create_model
    from deepvision.runs.imported import write_imported_run

    cfg = build_config({"name": "t", "model": {"name": "lenet", "num_classes": 2, "in_channels": 1},
                        "data": {"source": "digits"}})
    state = create_model("lenet", 2, 1, input_size=28).state_dict()
    state.pop(next(iter(state)))
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(UserError, match=r"weights in .*/run/checkpoints/.* do not fit this model: 1 missing keys"):
        write_imported_run(tmp_path / "run", cfg, Preprocess(channels=1, size=(28, 28)), ["a", "b"], state,
                           epoch=1, source={})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("dim", ["2", "3", "-1"])
def test_concat_joins_along_its_dim(tmp_path, dim):
    """Concat(c, c, dim=D) computes MXNet's function: the two maps joined along D, not always channels."""
    import torch

    from deepvision.models.mxnet_symbol import read_symbol

    prefix = _checkpoint(tmp_path, extra=[_node("Concat", "cat", [3], dim=dim, num_args="2")],
                         weights={"arg:f_weight": np.random.default_rng(1).normal(size=(2, 288)).astype(np.float32)})
    doc = json.loads(Path(f"{prefix}-symbol.json").read_text())
    doc["nodes"][4]["inputs"] = [[3, 0, 0], [3, 0, 0]]
    Path(f"{prefix}-symbol.json").write_text(json.dumps(doc))
    graph = MXNetGraph(read_symbol(f"{prefix}-symbol.json"), in_channels=1, input_size=8)
    p = {k: torch.tensor(np.asarray(v)) for k, v in read_params(f"{prefix}-0001.params").items()}
    graph.layers["c"].load_state_dict({"weight": p["arg:c_weight"], "bias": p["arg:c_bias"]})
    graph.layers["f"].load_state_dict({"weight": p["arg:f_weight"], "bias": p["arg:f_bias"]})
    x = torch.rand(1, 1, 8, 8)
    c = torch.nn.functional.conv2d(x, p["arg:c_weight"], p["arg:c_bias"])
    want = torch.cat([c, c], int(dim)).flatten(1) @ p["arg:f_weight"].T + p["arg:f_bias"]
    assert torch.allclose(graph.eval()(x), want, atol=1e-5)


def test_concat_along_the_batch_is_refused(tmp_path):
    prefix = _checkpoint(tmp_path, extra=[_node("Concat", "cat", [3], dim="0", num_args="2")])
    doc = json.loads(Path(f"{prefix}-symbol.json").read_text())
    doc["nodes"][4]["inputs"] = [[3, 0, 0], [3, 0, 0]]
    Path(f"{prefix}-symbol.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match=r"^MXNet node 'cat' \(Concat\): dim=0 concatenates along the batch axis"):
        _import(prefix, tmp_path)
    assert not (tmp_path / "run").exists()


def test_a_padding_far_beyond_the_map_is_refused_at_import(tmp_path):
    """pad (200000, 200000) on an 8x8 input plans a 2.6 TB map: refused before anything is written,
    naming the node and the planned output."""
    extra = [_node("Pooling", "gp", [], pool_type="avg", global_pool="True", kernel="(1, 1)")]
    prefix = _checkpoint(tmp_path, {"pad": "(200000, 200000)"}, extra=extra,
                         weights={"arg:f_weight": np.zeros((2, 4), np.float32)})
    with pytest.raises(UserError, match=r"^MXNet node 'c' \(Convolution\): its output for one sample, "
                                         r"\(4, 400006, 400006\), needs 2.6 TB, above the .* one model may take"):
        _import(prefix, tmp_path)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("mode", ["instance", "channel", None])
def test_softmax_activation_inside_the_graph_keeps_its_mode(tmp_path, mode):
    """SoftmaxActivation between layers: 'instance' (the default) over each sample's values together,
    'channel' over the channels at each position."""
    import torch

    from deepvision.models.mxnet_symbol import read_symbol

    attrs = {"mode": mode} if mode else {}
    prefix = _checkpoint(tmp_path, extra=[_node("SoftmaxActivation", "sa", [], **attrs)])
    graph = MXNetGraph(read_symbol(f"{prefix}-symbol.json"), in_channels=1, input_size=8).eval()
    p = {k: torch.tensor(np.asarray(v)) for k, v in read_params(f"{prefix}-0001.params").items()}
    graph.layers["c"].load_state_dict({"weight": p["arg:c_weight"], "bias": p["arg:c_bias"]})
    graph.layers["f"].load_state_dict({"weight": p["arg:f_weight"], "bias": p["arg:f_bias"]})
    x = torch.rand(1, 1, 8, 8)
    c = torch.nn.functional.conv2d(x, p["arg:c_weight"], p["arg:c_bias"])
    s = torch.softmax(c, 1) if mode == "channel" else torch.softmax(c.flatten(1), 1).reshape(c.shape)
    want = s.flatten(1) @ p["arg:f_weight"].T + p["arg:f_bias"]
    with torch.no_grad():
        assert torch.allclose(graph(x), want, atol=1e-6)


def test_softmax_activation_with_an_unknown_mode_is_refused(tmp_path):
    prefix = _checkpoint(tmp_path, extra=[_node("SoftmaxActivation", "sa", [], mode="spatial")])
    with pytest.raises(UserError, match=r"^MXNet node 'sa' \(SoftmaxActivation\): mode=spatial must be instance"):
        _import(prefix, tmp_path)


@pytest.mark.parametrize(("args", "message"), [
    (["--scale", "nan"], "--scale must be a finite positive number, got nan"),
    (["--std", "0"], "--std values must be finite positive numbers, got 0"),
    (["--resize", "1000000"], "--resize 1000000 exceeds the ceiling"),
    (["--mean", "nan,1,1"], "--mean values must be finite numbers, got nan,1,1"),
    (["--mean", "١,٢,٣"], "--mean must be comma-separated numbers like 123.68,116.779,103.939"),
])
def test_import_mxnet_options_are_checked_before_the_files_are_read(tmp_path, run_cli, args, message):
    prefix = _checkpoint(tmp_path)
    code, out, err = run_cli("import", "mxnet", prefix, "1", "--input-size", "1x8x8", "--out", tmp_path / "run",
                             *args)
    assert code == 2 and out == "" and len(err.splitlines()) == 1 and message in err, (out, err)
    assert not (tmp_path / "run").exists()


def test_input_size_refusals_name_the_option(tmp_path, run_cli):
    prefix = _checkpoint(tmp_path)
    for size, message in (("0", "--input-size must look like 3x224x224"), ("99999", "--input-size 99999: channels")):
        code, out, err = run_cli("import", "mxnet", prefix, "1", "--input-size", size, "--out", tmp_path / "run")
        assert code == 2 and out == "" and message in err, err


def test_negative_batchnorm_variances_are_refused(tmp_path):
    """A moving variance below 0 passes every finite check but makes every prediction NaN."""
    nodes = [_node("null", "data", []), _node("null", "c_weight", []),
             _node("Convolution", "c", [0, 1], num_filter="4", kernel="(3, 3)", no_bias="True"),
             _node("null", "bn_gamma", []), _node("null", "bn_beta", []), _node("null", "bn_moving_mean", []),
             _node("null", "bn_moving_var", []), _node("BatchNorm", "bn", [2, 3, 4, 5, 6], fix_gamma="False"),
             _node("null", "f_weight", []), _node("null", "f_bias", []),
             _node("FullyConnected", "f", [7, 8, 9], num_hidden="2")]
    prefix = tmp_path / "bn"
    Path(f"{prefix}-symbol.json").write_text(json.dumps({"nodes": nodes, "heads": [[10, 0, 0]]}))
    write_params(f"{prefix}-0001.params", {
        "arg:c_weight": np.ones((4, 1, 3, 3), np.float32), "arg:bn_gamma": np.ones(4, np.float32),
        "arg:bn_beta": np.zeros(4, np.float32), "aux:bn_moving_mean": np.zeros(4, np.float32),
        "aux:bn_moving_var": np.array([1, 1, -5, 1], np.float32), "arg:f_weight": np.ones((2, 144), np.float32),
        "arg:f_bias": np.zeros(2, np.float32)})
    with pytest.raises(UserError, match=r"'bn_moving_var' in .* holds negative variances \(first -5 at index 2\)"):
        _import(prefix, tmp_path)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("op", "inputs", "message"), [
    ("elemwise_mul", 3, r"\(elemwise_mul\): takes 2 inputs, the symbol gives 3"),
    ("elemwise_sub", 1, r"\(elemwise_sub\): takes 2 inputs, the symbol gives 1"),
    ("_mul", 3, r"\(_mul\): takes 2 inputs, the symbol gives 3"),
])
def test_element_wise_operators_take_the_inputs_mxnet_takes(tmp_path, op, inputs, message):
    prefix = _checkpoint(tmp_path, extra=[_node(op, "s", [])])
    doc = json.loads(Path(f"{prefix}-symbol.json").read_text())
    doc["nodes"][4]["inputs"] = [[3, 0, 0]] * inputs
    Path(f"{prefix}-symbol.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match=r"^MXNet node 's' " + message):
        _import(prefix, tmp_path)


def test_element_wise_operators_do_not_broadcast_unless_named_so(tmp_path):
    """elemwise_add of a (4, 6, 6) and a (1, 6, 6) map is refused; broadcast_add of the same imports."""
    nodes = [_node("null", "data", []), _node("null", "c_weight", []),
             _node("Convolution", "c", [0, 1], num_filter="4", kernel="(3, 3)", no_bias="True"),
             _node("null", "d_weight", []), _node("Convolution", "d", [0, 3], num_filter="1", kernel="(3, 3)",
                                                  no_bias="True"),
             _node("elemwise_add", "s", [2, 4]), _node("null", "f_weight", []), _node("null", "f_bias", []),
             _node("FullyConnected", "f", [5, 6, 7], num_hidden="2")]
    weights = {"arg:c_weight": np.ones((4, 1, 3, 3), np.float32), "arg:d_weight": np.ones((1, 1, 3, 3), np.float32),
               "arg:f_weight": np.ones((2, 144), np.float32), "arg:f_bias": np.zeros(2, np.float32)}
    for op, fails in (("elemwise_add", True), ("broadcast_add", False)):
        nodes[5]["op"] = op
        prefix = tmp_path / op
        Path(f"{prefix}-symbol.json").write_text(json.dumps({"nodes": nodes, "heads": [[8, 0, 0]]}))
        write_params(f"{prefix}-0001.params", weights)
        if fails:
            with pytest.raises(UserError, match=r"input shapes \(4, 6, 6\) and \(1, 6, 6\) differ"):
                import_mxnet(prefix, 1, out=tmp_path / op, input_size=(1, 8, 8), quiet=True)
        else:
            assert import_mxnet(prefix, 1, out=tmp_path / op, input_size=(1, 8, 8), quiet=True).num_classes == 2


def test_a_one_dimensional_kernel_and_a_second_head_are_refused(tmp_path):
    with pytest.raises(UserError, match=r"kernel=\(3,\) is not 2-D"):
        _import(_checkpoint(tmp_path, {"kernel": "(3,)"}), tmp_path)
    prefix = _checkpoint(tmp_path, heads=None)
    doc = json.loads(Path(f"{prefix}-symbol.json").read_text())
    doc["heads"] = [doc["heads"][0], [3, 0, 0]]
    Path(f"{prefix}-symbol.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match=r"the graph has 2 outputs \('out', 'c'\); deepvision imports single-output"):
        _import(prefix, tmp_path)


def test_a_scalar_that_overflows_the_network_is_refused(tmp_path):
    """_mul_scalar 1e38 is finite but turns every logit into infinity: one gray image through the
    graph at import says so."""
    prefix = _checkpoint(tmp_path, extra=[_node("_mul_scalar", "ms", [], scalar="1e38")],
                         weights={"arg:f_weight": np.full((2, 144), 10.0, np.float32)})
    with pytest.raises(UserError, match=r"answers NaN or infinity for a plain gray image"):
        _import(prefix, tmp_path)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", ["yes", "2", "on", " true", "1.0", ""])
def test_a_yes_no_attribute_outside_mxnets_spellings_is_refused(tmp_path, run_cli, value):
    """Node.flag guessed: "yes" read as false, "2" as true (a BatchNorm's fix_gamma=yes applied the stored gamma
    MXNet fixes at 1). MXNet's parser reads true/false/1/0 in any case and refuses the rest; so does the
    import, with or without --input-size (searching the size must not hide the cause)."""
    prefix = _checkpoint(tmp_path, {"no_bias": value})
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    for size in (["--input-size", "1x8x8"], []):
        code, out, err = run_cli("import", "mxnet", prefix, 1, "--out", tmp_path / "run", *size)
        assert (code, out) == (2, "") and err.count("\n") == 1, err
        assert f"error: MXNet node 'c' (Convolution): no_bias={value} must be true, false, 1 or 0 (any case), " \
               f"the values MXNet reads" in err, err
    assert not (tmp_path / "run").exists() and {p: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize(("op", "key"), [
    (_node("Pooling", "p", [], kernel="(2, 2)", pool_type="max", global_pool="yes"), "global_pool"),
    (_node("Pooling", "p", [], kernel="(2, 2)", pool_type="avg", count_include_pad="yes"), "count_include_pad"),
    (_node("Reshape", "r", [], shape="(0, -1)", reverse="yes"), "reverse"),
])
def test_every_yes_no_attribute_is_read_as_mxnet_reads_it(tmp_path, op, key):
    with pytest.raises(UserError, match=rf"^MXNet node '.' \({op['op']}\): {key}=yes must be true, false, 1 or 0"):
        _import(_checkpoint(tmp_path, extra=[op]), tmp_path)


@pytest.mark.parametrize(("value", "fixed"), [("True", True), ("TRUE", True), ("1", True), ("false", False),
                                            ("0", False), ("FaLsE", False), ("yes", None), ("no", None)])
def test_fix_gamma_is_read_as_mxnet_reads_it(tmp_path, value, fixed):
    from deepvision.models.mxnet_graph import build_graph

    extra = [_node("null", f"bn_{role}", []) for role in ("gamma", "beta", "moving_mean", "moving_var")]
    extra.append(_node("BatchNorm", "bn", [4, 5, 6, 7], fix_gamma=value))
    prefix = _checkpoint(tmp_path, extra=extra)
    if fixed is None:
        with pytest.raises(UserError, match=rf"^MXNet node 'bn' \(BatchNorm\): fix_gamma={value} must be true"):
            build_graph(f"{prefix}-symbol.json", in_channels=1, input_size=8)
    else:
        assert build_graph(f"{prefix}-symbol.json", in_channels=1, input_size=8).layers["bn"].fix_gamma is fixed


@pytest.mark.parametrize(("index", "inputs", "message"), [
    (3, [0, 1, 2], r"'c' \(Convolution\): takes 2 inputs \(data, weight; no_bias=True\), the symbol gives 3: the "
                   r"extra input 'c_bias' would be dropped; MXNet cannot bind this node$"),
    (-3, "twice", r"'f' \(FullyConnected\): takes 3 inputs \(data, weight, bias\), the symbol gives 4: the extra "
                  r"input 'f_bias' \(given twice\) would be dropped"),
    (-3, "short", r"'f' \(FullyConnected\): takes 3 inputs \(data, weight, bias\), the symbol gives 2: no bias "
                  r"input, which would be made up"),
    (4, "act", r"'a' \(Activation\): takes 1 input \(data\), the symbol gives 2: the extra input 'c_bias' would"),
])
def test_a_node_given_other_inputs_than_its_operator_takes_is_refused(tmp_path, run_cli, index, inputs, message):
    """A convolution with no_bias=True still listing its bias lost the bias with a warning, exit 0; a
    FullyConnected listing its bias twice, or an Activation two inputs, imported without a word. MXNet binds
    none of them."""
    prefix = _checkpoint(tmp_path, extra=[_node("Activation", "a", [], act_type="relu")])
    doc = json.loads(Path(f"{prefix}-symbol.json").read_text())
    node = doc["nodes"][index]
    if index == 3:
        node["attrs"]["no_bias"] = "True"
    elif inputs == "twice":
        node["inputs"].append(node["inputs"][-1])
    elif inputs == "short":
        node["inputs"].pop()
    else:
        node["inputs"].append([2, 0, 0])
    Path(f"{prefix}-symbol.json").write_text(json.dumps(doc))
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    code, out, err = run_cli("import", "mxnet", prefix, 1, "--out", tmp_path / "run", "--input-size", "1x8x8")
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert re.search(r"error: MXNet node " + message, err.strip()), err
    assert not (tmp_path / "run").exists() and {p: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_loss_head_may_leave_out_its_label_but_takes_no_third_input(tmp_path):
    prefix = _checkpoint(tmp_path)
    doc = json.loads(Path(f"{prefix}-symbol.json").read_text())
    doc["nodes"][-1]["inputs"].pop()  # SoftmaxOutput without its label: unused at inference
    Path(f"{prefix}-symbol.json").write_text(json.dumps(doc))
    assert _import(prefix, tmp_path).num_classes == 2
    doc["nodes"][-1]["inputs"] += [[len(doc["nodes"]) - 2, 0, 0], [0, 0, 0]]
    Path(f"{prefix}-symbol.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match=r"^MXNet node 'out' \(SoftmaxOutput\): takes 2 inputs \(data, label\), the "
                                        r"symbol gives 3: the extra input 'data' would be dropped"):
        import_mxnet(prefix, 1, out=tmp_path / "run2", input_size=(1, 8, 8), quiet=True)


def _head_checkpoint(tmp_path: Path, tail: list[dict], hidden: int = 2, after: int = 6) -> Path:
    """The small checkpoint with its head replaced: FullyConnected(`hidden`) (node 6, or node `after`)
    -> `tail`, chained, the last one the graph's output."""
    rng = np.random.default_rng(1)
    prefix = _checkpoint(tmp_path, weights={"arg:f_weight": rng.normal(size=(hidden, 144)).astype(np.float32),
                                            "arg:f_bias": rng.normal(size=hidden).astype(np.float32)})
    doc = json.loads(Path(f"{prefix}-symbol.json").read_text())
    nodes = doc["nodes"][:7]
    nodes[6]["attrs"]["num_hidden"] = str(hidden)
    last = after
    for op in tail:
        nodes.append({**op, "inputs": [[last, 0, 0]] + op["inputs"]})
        last = len(nodes) - 1
    doc.update(nodes=nodes, heads=[[last, 0, 0]])
    Path(f"{prefix}-symbol.json").write_text(json.dumps(doc))
    return prefix


def _probabilities(prefix: Path, x):
    """Softmax over the classes of what the imported graph returns, and the FullyConnected logits z."""
    import torch

    from deepvision.interop.mxnet_import import load_graph_weights
    from deepvision.interop.mxnet_params import split_params
    from deepvision.models.mxnet_symbol import read_symbol

    graph = MXNetGraph(read_symbol(f"{prefix}-symbol.json"), in_channels=1, input_size=8).eval()
    args, aux = split_params(read_params(f"{prefix}-0001.params"), "params")
    load_graph_weights(graph, args, aux, "params")
    p = {k: torch.tensor(np.array(v)) for k, v in args.items()}  # new arrays, the file's left alone
    c = torch.nn.functional.conv2d(x, p["c_weight"], p["c_bias"])
    with torch.no_grad():
        return torch.softmax(graph(x), 1), c.flatten(1) @ p["f_weight"].T + p["f_bias"]


@pytest.mark.parametrize("temperature", [4.0, -1.0, 0.5])
def test_the_final_softmax_keeps_its_temperature(tmp_path, temperature):
    """softmax(z / T) is what MXNet outputs: the head is dropped, its temperature kept (a negative one
    reverses the ranking)."""
    import torch

    prefix = _head_checkpoint(tmp_path, [_node("softmax", "sm", [], temperature=f"{temperature:g}")], hidden=3)
    x = 0.05 * torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))  # logits of a few units
    probs, z = _probabilities(prefix, x)
    assert torch.allclose(probs, torch.softmax(z / temperature, 1), atol=1e-6)
    if temperature < 0:
        assert (probs.argmax(1) == z.argmin(1)).all()


@pytest.mark.parametrize(("tail", "double"), [
    ([_node("softmax", "sm", []), _node("Dropout", "dr", [], p="0.5", mode="training")], False),
    ([_node("SoftmaxOutput", "so", []), _node("_copy", "cp", [])], False),
    ([_node("softmax", "sm", []), _node("Flatten", "fl", [])], False),
    ([_node("SoftmaxActivation", "sa", []), _node("BlockGrad", "bg", []), _node("identity", "id", [])], False),
    ([_node("softmax", "sm", []), _node("Reshape", "r", [], shape="(0, -1)")], False),
    ([_node("softmax", "s1", []), _node("softmax", "s2", [])], True),  # MXNet's output: softmax(softmax(z))
])
def test_the_final_softmax_is_found_behind_identities_and_dropped_once(tmp_path, tail, double):
    import torch

    prefix = _head_checkpoint(tmp_path, tail, hidden=3)
    x = 0.05 * torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))  # logits of a few units
    probs, z = _probabilities(prefix, x)
    want = torch.softmax(z, 1)
    assert torch.allclose(probs, torch.softmax(want, 1) if double else want, atol=1e-6)


@pytest.mark.parametrize(("tail", "hidden", "message"), [
    ([_node("softmax", "sm", [], temperature="nan")], 3, r"'sm' \(softmax\): temperature=nan must be a finite number$"),
    ([_node("softmax", "sm", [], temperature="abc")], 3, r"'sm' \(softmax\): temperature=abc must be a finite number$"),
    ([_node("softmax", "sm", [], temperature="0")], 3, r"'sm' \(softmax\): temperature=0 divides by zero$"),
    ([_node("softmax", "sm", [], axis="0"), _node("Dropout", "dr", [])], 3,
     r"'sm' \(softmax\): axis=0 takes the softmax over the batch axis, which a classifier cannot take$"),
    ([_node("softmax", "sm", []), _node("Dropout", "dr", [], mode="always")], 3,
     r"'dr' \(Dropout\): mode=always drops values at inference too"),
    ([_node("softmax", "sm", [], use_length="maybe")], 3, r"'sm' \(softmax\): use_length=maybe must be true"),
    ([_node("softmax", "sm", [], use_length="1")], 3, r"'sm' \(softmax\): use_length=True \(a softmax over the "),
    ([_node("Activation", "sig", [], act_type="sigmoid")], 1,
     r"'sig' \(Activation\): the graph's output is a sigmoid \(a binary or multi-label head\), which a deepvision "
     r"classifier \(a softmax over the classes\) cannot represent"),
    ([_node("sigmoid", "sig", []), _node("Flatten", "fl", [])], 3, r"'sig' \(sigmoid\): the graph's output is a "
                                                                    r"sigmoid"),
    ([_node("softmax", "sm", [])], 1, r"net-symbol.json: the graph has 1 output \('sm'\); a softmax over one class "
                                      r"is always 100%"),
    ([], 1, r"net-symbol.json: the graph has 1 output \('f'\)"),
])
def test_a_head_deepvision_cannot_represent_is_refused(tmp_path, run_cli, tail, hidden, message):
    """Every attribute of the final softmax is read as for an inner node; a sigmoid (binary or multi-label)
    or single-output head is refused naming it: it imported as one class at 100% or as softmax(sigmoid)."""
    prefix = _head_checkpoint(tmp_path, tail, hidden=hidden)
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    sized = ["--input-size", "1x8x8"] if hidden > 1 else []  # the size found from the weights refuses alike
    code, out, err = run_cli("import", "mxnet", prefix, 1, "--out", tmp_path / "run", *sized)
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert re.search(r"error: (MXNet node |\S*)" + message, err.strip()), err
    assert not (tmp_path / "run").exists() and {p: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_final_softmax_over_part_of_each_sample_is_refused(tmp_path):
    """A channel softmax over a 4x6x6 map normalises each position apart: not one softmax over the sample."""
    prefix = _head_checkpoint(tmp_path, [_node("SoftmaxActivation", "sa", [], mode="channel"),
                                         _node("Flatten", "fl", [])], after=3)
    with pytest.raises(UserError, match=r"^MXNet node 'sa' \(SoftmaxActivation\): the final softmax normalises over "
                                        r"axis 1 of its input \(4, 6, 6\) per position, not over each sample's"):
        _import(prefix, tmp_path)
    assert not (tmp_path / "run").exists()


_GLOBAL_AVG = {"global_pool": "True", "pool_type": "avg", "kernel": "(1, 1)"}


@pytest.mark.parametrize(("tail", "sized", "message"), [
    ([], True, r"'c' \(Convolution\): the graph's output is \(4, 6, 6\) per image, a map, not one score vector per "
               r"image"),
    ([], False, r"'c' \(Convolution\): the graph's output is \(4, \d+, \d+\) per image, a map"),
    ([_node("SoftmaxOutput", "so", [], multi_output="True")], True,
     r"'so' \(SoftmaxOutput\): the final softmax normalises over axis 1 of its input \(4, 6, 6\) per position"),
    ([_node("SoftmaxOutput", "so", [], preserve_shape="True")], False,
     r"'so' \(SoftmaxOutput\): the final softmax normalises over axis 3 of its input \(4, \d+, \d+\) per position"),
    ([_node("Reshape", "r", [], shape="(-1, 4)")], True,
     r"'r' \(Reshape\): the graph's output has shape \(36, 4\) for one image: its first axis is not the batch"),
])
def test_a_map_output_is_refused_with_or_without_an_input_size(tmp_path, run_cli, tail, sized, message):
    """A per-pixel head (a convolution's map, a per-position softmax) imported as a classifier of C classes
    and failed at predict; it is refused naming the node and the shape, also when the size is found from
    the weights."""
    prefix = _head_checkpoint(tmp_path, tail, after=3)
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    code, out, err = run_cli("import", "mxnet", prefix, 1, "--out", tmp_path / "run",
                             *(["--input-size", "1x8x8"] if sized else []))
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert re.search(r"error: MXNet node " + message, err), err
    assert not (tmp_path / "run").exists() and {p: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_an_output_of_one_value_per_class_and_position_one_is_flattened(tmp_path, run_cli):
    """(N, C, 1, 1) is one score vector per image: imported as C classes, returned as (N, C), predicted."""
    import torch
    from PIL import Image

    prefix = _head_checkpoint(tmp_path, [_node("Pooling", "gp", [], **_GLOBAL_AVG)], after=3)
    assert _import(prefix, tmp_path).num_classes == 4
    Image.new("L", (8, 8), 90).save(tmp_path / "img.png")
    code, out, err = run_cli("predict", tmp_path / "run", tmp_path / "img.png")
    assert code == 0 and out.count("%") == 4, (out, err)
    from deepvision.interop.mxnet_import import load_graph_weights
    from deepvision.interop.mxnet_params import split_params
    from deepvision.models.mxnet_symbol import read_symbol

    graph = MXNetGraph(read_symbol(f"{prefix}-symbol.json"), in_channels=1, input_size=8).eval()
    args, aux = split_params(read_params(f"{prefix}-0001.params"), "params")
    load_graph_weights(graph, args, aux, "params")
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    p = {k: torch.tensor(np.array(v)) for k, v in args.items()}  # new arrays, the file's left alone
    want = torch.nn.functional.conv2d(x, p["c_weight"], p["c_bias"]).mean((2, 3))
    with torch.no_grad():
        got = graph(x)
    assert graph.num_classes == 4 and got.shape == (2, 4) and torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize(("tail", "after", "message"), [
    ([_node("softmax", "sm", []), _node("_mul_scalar", "ms", [], scalar="2")], 6,
     r"'sm' \(softmax\): the graph's output 'ms' \(_mul_scalar\) is computed from this softmax's probabilities, "
     r"not logits \(deepvision applies its own softmax to the output\); save the symbol ending at the softmax or "
     r"before it$"),
    ([_node("SoftmaxOutput", "so", []), _node("Dropout", "dr", []), _node("clip", "cl", [], a_min="0", a_max="1")],
     6, r"'so' \(SoftmaxOutput\): the graph's output 'cl' \(clip\) is computed from this softmax's"),
    ([_node("softmax", "sm", [], axis="1"), _node("Pooling", "gp", [], **_GLOBAL_AVG), _node("Flatten", "fl", [])],
     3, r"'sm' \(softmax\): the graph's output 'fl' \(Flatten\) is computed from this softmax's probabilities"),
    ([_node("softmax", "s1", []), _node("_mul_scalar", "half", [], scalar="0.5"),
      _node("elemwise_add", "sum", [7])], 6, r"'s1' \(softmax\): the graph's output 'sum' \(elemwise_add\)"),
    ([_node("Activation", "sg", [], act_type="sigmoid"), _node("_plus_scalar", "ps", [], scalar="1")], 6,
     r"'sg' \(Activation\): the graph's output 'ps' \(_plus_scalar\) is computed from this sigmoid's probabilities, "
     r"not logits \(deepvision applies its own softmax to the output\); save the symbol ending before it$"),
    ([_node("Reshape", "r", [], shape="(1, -1)")], 6,
     r"'r' \(Reshape\): shape=\(1, -1\) fixes the batch axis to 1; use 0 or -1 first to keep each image apart$"),
])
def test_an_output_deepvision_would_misread_as_logits_is_refused(tmp_path, run_cli, tail, after, message):
    """A softmax (or sigmoid) whose probabilities reach the output through other operators than identities
    stayed in the graph, and predict applied its own softmax on top; a Reshape to a fixed batch of one mixed
    the images of any other batch. Both are refused naming the node."""
    prefix = _head_checkpoint(tmp_path, tail, hidden=3, after=after)
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    code, out, err = run_cli("import", "mxnet", prefix, 1, "--out", tmp_path / "run", "--input-size", "1x8x8")
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert re.search(r"error: MXNet node " + message, err.strip()), err
    assert not (tmp_path / "run").exists() and {p: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize(("tail", "expect"), [
    # attention: logits weighted by their softmax are not probabilities alone
    ([_node("softmax", "sm", []), _node("elemwise_mul", "m", [6])], lambda z: torch_softmax(z) * z),
    # the final softmax of scaled probabilities: dropped, its input (2 p) read as logits, as MXNet computes
    ([_node("softmax", "s1", []), _node("_mul_scalar", "ms", [], scalar="2"), _node("softmax", "s2", [])],
     lambda z: 2 * torch_softmax(z)),
])
def test_probabilities_mixed_or_taken_by_the_final_softmax_are_imported(tmp_path, tail, expect):
    import torch

    prefix = _head_checkpoint(tmp_path, tail, hidden=3)
    assert _import(prefix, tmp_path).num_classes == 3
    x = 0.05 * torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    probs, z = _probabilities(prefix, x)
    assert torch.allclose(probs, torch.softmax(expect(z), 1), atol=1e-6)


def torch_softmax(z):
    import torch

    return torch.softmax(z, 1)


def test_an_import_that_cannot_write_names_the_run_folder_and_leaves_nothing(tmp_path, monkeypatch):
    """A full disk or a file size limit while the run is written: one line naming the file under --out (not
    the hidden folder it was written in), nothing left beside it."""
    import errno

    from deepvision.config.io import build_config
    from deepvision.data.preprocess import Preprocess
    from deepvision.models.registry import create_model
    from deepvision.runs import imported
    from deepvision.runs.imported import write_imported_run

    real, failing = imported.Path.write_bytes, ["model.json"]

    def full(path, data):
        if path.name == failing[0] or path.name.startswith(f".{failing[0]}."):
            raise OSError(errno.EFBIG, "File too large", str(path))
        return real(path, data)

    monkeypatch.setattr(imported.Path, "write_bytes", full)
    cfg = build_config({"name": "t", "model": {"name": "lenet", "num_classes": 2, "in_channels": 1},
                        "data": {"source": "digits"}})
    state = create_model("lenet", 2, 1, input_size=28).state_dict()
    with pytest.raises(UserError) as caught:
        write_imported_run(tmp_path / "run", cfg, Preprocess(channels=1, size=(28, 28)), ["a", "b"], state,
                           epoch=1, source={}, files={"model.json": b"{}"})
    assert str(caught.value) == (f"could not write {tmp_path / 'run' / 'model.json'}: File too large; free some "
                                 f"space or choose another --out")
    assert list(tmp_path.iterdir()) == []
    failing[0] = "labels.txt"  # written by the run's own atomic writer
    with pytest.raises(UserError, match=f"^could not write {tmp_path / 'run' / 'labels.txt'}: File too large$"):
        write_imported_run(tmp_path / "run", cfg, Preprocess(channels=1, size=(28, 28)), ["a", "b"], state,
                           epoch=1, source={}, files={"model.json": b"{}"})
    assert list(tmp_path.iterdir()) == []
