"""The mapped route (`--model NAME`) refuses a file whose own network differs from the architecture
even where every weight fits: LeakyReLU for ELU, BatchNormalization before the activation, a stride-2
convolution in place of a max-pool. The graph route imports the same files as they are.

The files are EmotionVGGNet-shaped Keras 2 `.h5` files written here with h5py (random weights, an
8x8 input); that the graph route computes what Keras computes for these layer patterns is shown
against real Keras by test_keras_graph (vgg_leaky, vgg_bn_first, vgg_strided)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from deepvision.errors import UserError
from deepvision.interop.keras_import import load_keras


def _conv(name: str, width: int, strides: int = 1) -> dict:
    return {"class_name": "Conv2D", "config": {"name": name, "filters": width, "kernel_size": [3, 3],
                                               "strides": [strides, strides], "padding": "same",
                                               "activation": "linear", "use_bias": True}}


def _layer(cls: str, name: str, **cfg) -> dict:
    return {"class_name": cls, "config": {"name": name, **cfg}}


def emotion_vgg_layers(variant: str = "") -> list[dict]:
    """EmotionVGGNet as a Keras Sequential; `variant` changes one thing the weights cannot show."""
    act = (lambda n: _layer("LeakyReLU", n, alpha=0.3)) if variant == "leaky" else (lambda n: _layer("ELU", n,
                                                                                                   alpha=1.0))
    out, k = [], 0

    def bn(name: str) -> dict:
        return _layer("BatchNormalization", name, axis=-1, epsilon=1e-3, momentum=0.99, center=True, scale=True)

    for b, width in enumerate((32, 64, 128), start=1):
        for i in (1, 2):
            k += 1
            strided = variant == "strided" and b == 1 and i == 2
            conv, a, n = _conv(f"conv_{k}", width, 2 if strided else 1), act(f"act_{k}"), bn(f"bn_{k}")
            out += [conv, n, a] if variant == "bn_first" else [conv, a, n]
        if not (variant == "strided" and b == 1):
            out.append(_layer("MaxPooling2D", f"pool_{b}", pool_size=[2, 2], strides=[2, 2], padding="valid"))
        out.append(_layer("Dropout", f"drop_{b}", rate=0.25))
    out.append(_layer("Flatten", "flatten"))
    for f in (1, 2):
        out += [_layer("Dense", f"fc_{f}", units=64, activation="linear", use_bias=True), act(f"act_fc{f}"),
                bn(f"bn_fc{f}"), _layer("Dropout", f"drop_fc{f}", rate=0.5)]
    out.append(_layer("Dense", "fc_3", units=6, activation="softmax", use_bias=True))
    out[0]["config"]["batch_input_shape"] = [None, 8, 8, 1]
    return out


def write_keras2_h5(path: Path, layers: list[dict], seed: int = 0) -> Path:
    """A Keras 2 `model.save()` file: model_config plus model_weights/<layer>/<layer>/<weight>:0."""
    rng = np.random.default_rng(seed)
    shape, weights = [8, 8, 1], {}
    for entry in layers:
        cfg, name = entry["config"], entry["config"]["name"]
        cls = entry["class_name"]
        if cls == "Conv2D":
            s = cfg["strides"][0]
            w = {"kernel": rng.normal(0, 1 / np.sqrt(9 * shape[2]), (3, 3, shape[2], cfg["filters"])),
                 "bias": rng.normal(0, 0.1, cfg["filters"])}
            shape = [-(-shape[0] // s), -(-shape[1] // s), cfg["filters"]]
        elif cls == "Dense":
            w = {"kernel": rng.normal(0, 1 / np.sqrt(shape[-1]), (shape[-1], cfg["units"])),
                 "bias": rng.normal(0, 0.1, cfg["units"])}
            shape = [cfg["units"]]
        elif cls == "BatchNormalization":
            n = shape[-1]
            w = {"gamma": rng.uniform(0.8, 1.2, n), "beta": rng.normal(0, 0.1, n),
                 "moving_mean": rng.normal(0, 0.2, n), "moving_variance": rng.uniform(0.5, 1.5, n)}
        else:
            w = {}
            if cls == "MaxPooling2D":
                shape = [shape[0] // 2, shape[1] // 2, shape[2]]
            elif cls == "Flatten":
                shape = [int(np.prod(shape))]
        weights[name] = w
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = "2.4.0"
        f.attrs["backend"] = "tensorflow"
        f.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {"name": "sequential",
                                                                                      "layers": layers}})
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = [n.encode() for n in weights]
        for name, w in weights.items():
            lg = g.create_group(name)
            lg.attrs["weight_names"] = [f"{name}/{k}:0".encode() for k in w]
            for k, v in w.items():
                lg.create_dataset(f"{name}/{k}:0", data=np.asarray(v, np.float32))
    return path


def probs(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(model(x), 1)


def test_the_matching_network_maps_and_agrees_with_the_graph(tmp_path):
    path = write_keras2_h5(tmp_path / "vgg.h5", emotion_vgg_layers())
    mapped = load_keras(path, "emotion_vgg")
    graph = load_keras(path)
    assert mapped.model_name == "emotion_vgg" and graph.model_name == "keras:graph"
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    p = probs(graph.model, x)
    assert torch.allclose(probs(mapped.model, x), p, atol=1e-5) and float((p[0] - p[1]).abs().max()) > 1e-3
    assert load_keras(path, "auto").model_name == "emotion_vgg"


@pytest.mark.parametrize("variant, named", [
    ("leaky", "'act_1' (LeakyReLU: alpha 0.3), before 'bn_1' (BatchNormalization), whose output differs"),
    ("bn_first", "'bn_1' (BatchNormalization)"),
    ("strided", "'conv_2' (Conv2D: strides (2, 2), padding same): its output is (32, 4, 4) in the file"),
])
def test_a_different_network_is_refused_on_the_mapped_route(tmp_path, run_cli, variant, named):
    path = write_keras2_h5(tmp_path / f"{variant}.h5", emotion_vgg_layers(variant))
    out = tmp_path / "run"
    code, _, err = run_cli("import", "keras", path, "--model", "emotion_vgg", "--out", out)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"differs from emotion_vgg first at Keras layer {named}" in err
    assert not out.exists()
    with pytest.raises(UserError, match=r"closest: .* does not match emotion_vgg: the file's network differs"):
        load_keras(path, "auto")
    graph = load_keras(path)  # the graph route imports the file's own network
    reference = load_keras(write_keras2_h5(tmp_path / "plain.h5", emotion_vgg_layers()))
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    assert float((probs(graph.model, x) - probs(reference.model, x)).abs().max()) > 1e-3
