"""Keras-style summaries, multiply-add counts, diagrams, and the input-size check run before training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepvision.errors import UserError
from deepvision.models import create_model, get_model_spec
from deepvision.models.diagram import diagram_summary, write_diagram
from deepvision.models.shapes import meta_forward, shape_trace
from deepvision.models.summary import check_input_size, format_macs, summarize


def meta(name: str, **options):
    with torch.device("meta"):
        return create_model(name, **options)


# -- input-size check ------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "options", "shape", "message"), [
    ("squeezenet_ref", {}, (3, 224, 224),
     "squeezenet_ref: input 224x224 is too small: classifier.pool10 (13x13 average pool) gets a 12x12 map; "
     "the minimum input is 227x227"),
    ("squeezenet_ref", {}, (3, 260, 260),
     "squeezenet_ref: input 260x260 is too large: classifier.pool10 (13x13 average pool) leaves a 3x3 map, so the "
     "network gives 9000 outputs instead of 1000; the maximum input is 242x242"),
    ("googlenet_ref", {}, (3, 227, 227),
     "googlenet_ref: input 227x227 is too large: classifier.fc (fully-connected, 1024 inputs) gets 4096 features; "
     "the maximum input is 224x224"),
    ("googlenet_ref", {}, (3, 160, 160),
     "googlenet_ref: input 160x160 is too small: classifier.pool5 (7x7 average pool) gets a 5x5 map; "
     "the minimum input is 193x193"),
    ("alexnet_ref", {}, (3, 224, 224),  # built for 227: its fc1 expects 256x6x6
     "alexnet_ref: input 224x224 is too small: classifier.fc1 (fully-connected, 9216 inputs) gets 6400 features; "
     "the minimum input is 227x227"),
    ("resnet50_ref", {}, (1, 224, 224),
     "resnet50_ref: features.stem.bn_data expects 3-channel input but gets 1 channels (set model.in_channels)"),
    ("mlp", {}, (1, 20, 20),
     "mlp: input 20x20 does not fit: layer 1 (fully-connected, 784 inputs) gets 400 features; "
     "the network needs exactly 28x28"),
    ("tv:vit_b_16", {}, (3, 160, 160),
     "tv:vit_b_16: input 160x160 does not fit: the model rejects it (Wrong image height! Expected 224 but got 160!); "
     "the network needs exactly 224x224"),
])
def test_check_input_size_names_the_layer_and_the_valid_size(name, options, shape, message):
    with pytest.raises(UserError) as info:
        check_input_size(meta(name, **options), shape, name)
    assert str(info.value) == message


@pytest.mark.parametrize(("name", "shape"), [
    ("squeezenet_ref", (3, 227, 227)), ("squeezenet_ref", (3, 242, 242)), ("googlenet_ref", (3, 224, 224)),
    ("googlenet_ref", (3, 193, 193)), ("resnet50_ref", (3, 227, 227)), ("resnet50_ref", (3, 64, 64)),
    ("vgg16_ref", (3, 224, 224)), ("lenet", (1, 28, 28)), ("tv:resnet18", (3, 64, 64)),
])
def test_check_input_size_accepts_valid_inputs(name, shape):
    check_input_size(meta(name), shape, name)


def test_check_input_size_is_cheap_and_leaves_the_model_untouched():
    model = create_model("googlenet_ref").train()
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    seen = []
    model.register_forward_pre_hook(lambda _m, args: seen.append((args[0].shape[0], args[0].device.type)))
    check_input_size(model, (3, 224, 224), "googlenet_ref")
    assert seen and all(n == 0 or device == "meta" for n, device in seen)  # no arithmetic on real samples
    assert model.training
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_empty_batch_trace_matches_the_meta_trace():
    model = create_model("googlenet_ref")
    out, calls = shape_trace(model, (3, 224, 224))
    meta_out, meta_calls = meta_forward(model, (3, 224, 224))
    assert out == meta_out == (1, 1000)
    assert [(c.name, c.input_shape, c.output_shape) for c in calls] == \
        [(c.name, c.input_shape, c.output_shape) for c in meta_calls]


def test_empty_batch_trace_falls_back_to_meta():
    class Flattening(nn.Module):  # reshape(0, -1) is ambiguous on an empty batch
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(12, 2)

        def forward(self, x):
            return self.fc(x.reshape(x.shape[0], -1))

    assert shape_trace(Flattening(), (3, 2, 2))[0] == (1, 2)


def test_builder_rejects_an_input_size_too_small_for_its_flatten_layer():
    with pytest.raises(UserError, match=r"age_gender_net: input 50x50 is too small: features\.block3\.pool3 "
                                        r"\(3x3/2 max pool\) gets a 2x2 map; the minimum input is 63x63"):
        create_model("age_gender_net", input_size=50)
    with pytest.raises(UserError, match=r"lenet: input 12x12 is too small: features\.3 \(5x5 conv, 50 filters\) "
                                        r"gets a 4x4 map; the minimum input is 16x16"):
        create_model("lenet", input_size=12)


# -- summaries ---------------------------------------------------------------------------------------
def test_lenet_summary_rows_params_and_macs():
    s = summarize(create_model("lenet"), (1, 28, 28), "lenet")
    assert [r.name for r in s.rows] == ["features.0", "features.1", "features.2", "features.3", "features.4",
                                        "features.5", "classifier.0", "classifier.1", "classifier.2", "classifier.3"]
    assert [r.output_shape for r in s.rows][:4] == [(20, 24, 24), (20, 12, 12), (20, 12, 12), (50, 8, 8)]
    assert [r.params for r in s.rows if r.params] == [520, 25_050, 400_500, 5_010]
    # conv1 20*24*24*25, conv2 50*8*8*20*25, fc1 800*500, fc2 500*10
    assert [r.macs for r in s.rows if r.macs] == [288_000, 1_600_000, 400_000, 5_000]
    assert s.macs == 2_293_000
    assert (s.total_params, s.trainable_params, s.buffer_values) == (431_080, 431_080, 0)
    assert s.size_bytes == 431_080 * 4
    assert s.output_shape == (10,)


def test_summary_totals_frozen_parameters_and_buffers():
    s = summarize(meta("vgg16_ref", reference=True), (3, 224, 224), "vgg16_ref")
    assert s.total_params == 138_394_792
    assert (s.trainable_params, s.non_trainable_params) == (138_382_376, 12_416)
    assert s.buffer_values == 24_832
    assert sum(r.params for r in s.rows) == s.total_params
    assert s.size_bytes / 1e6 == pytest.approx(553.7, abs=0.05)  # the reference: about 553.7 MB
    assert s.macs == pytest.approx(15.5e9, rel=0.01)
    bn = next(r for r in s.rows if r.name == "features.block1.bn1_1")
    assert (bn.params, bn.trainable) == (128, 64)


@pytest.mark.parametrize(("name", "size_mb"), [("resnet50_ref", 102.4), ("googlenet_ref", 28.1),
                                               ("squeezenet_ref", 4.99)])
def test_summary_sizes_match_the_reference(name, size_mb):
    s = summarize(meta(name), get_model_spec(name).input_size, name)
    assert s.size_bytes / 1e6 == pytest.approx(size_mb, abs=0.05)


def test_summary_depth_aggregates_blocks():
    s = summarize(meta("googlenet_ref"), (3, 224, 224), "googlenet_ref", depth=2)
    names = [r.name for r in s.rows]
    assert names[:3] == ["features.stem", "features.inception3a", "features.inception3b"]
    inc = next(r for r in s.rows if r.name == "features.inception3a")
    assert inc.output_shape == (256, 28, 28)
    assert inc.params == 163_696 + 2 * (64 + 96 + 128 + 16 + 32 + 32)
    assert sum(r.params for r in s.rows) == 7_013_112
    assert sum(r.macs for r in s.rows) == s.macs


def test_summary_counts_parameters_held_by_containers():
    s = summarize(meta("tv:vit_b_16"), (3, 224, 224), "tv:vit_b_16")
    assert sum(r.params for r in s.rows) == s.total_params == 86_567_656
    assert any(r.name == "(model)" and r.params == 768 for r in s.rows)  # the class token


def test_format_macs():
    assert [format_macs(v) for v in (999, 2_293_000, 1_582_671_872)] == ["999", "2.29 M", "1.58 G"]


# -- diagrams ----------------------------------------------------------------------------------------
def test_diagram_png(tmp_path):
    path = write_diagram(meta("squeezenet_ref"), (3, 227, 227), tmp_path / "squeeze.png", "squeezenet_ref")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_diagram_picks_a_readable_depth():
    rows = diagram_summary(meta("resnet50_ref"), (3, 224, 224), "resnet50_ref", max_rows=40).rows
    assert 5 <= len(rows) <= 40
    assert len(diagram_summary(meta("lenet"), (1, 28, 28), "lenet").rows) == 10  # all leaves fit


def test_diagram_rejects_unknown_formats(tmp_path):
    with pytest.raises(UserError, match="cannot write a diagram as '.bmpx'"):
        write_diagram(meta("lenet"), (1, 28, 28), tmp_path / "x.bmpx")
    with pytest.raises(UserError, match="does not exist"):
        write_diagram(meta("lenet"), (1, 28, 28), tmp_path / "missing" / "x.png")
