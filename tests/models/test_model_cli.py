"""`deepvision models` and `deepvision models show`."""

from __future__ import annotations

import re

import pytest

from deepvision.models import list_models


def test_models_lists_every_registered_model_with_size_and_counts(run_cli):
    code, out, err = run_cli("models")
    assert code == 0, err
    lines = out.splitlines()
    assert max(map(len, lines)) <= 80
    for name in list_models():
        assert name in lines, name  # each name whole, on its own line
    row = lines[lines.index("alexnet_ref") + 1]
    assert row == "  3x227x227, 1000 classes, 62,397,480 parameters (reference profile 62,387,912)"
    row = lines[lines.index("resnet50_ref") + 1]
    assert "25,549,486 parameters (reference profile 25,549,483)" in row
    assert lines[lines.index("lenet") + 1] == "  1x28x28, 10 classes, 431,080 parameters"  # one profile: one count
    assert "tv:" not in out.split("torchvision:")[0]  # torchvision models only with --tv


def test_models_tv_filter(run_cli):
    code, out, err = run_cli("models", "--tv", "--filter", "resnet5")
    assert code == 0, err
    lines = out.splitlines()
    row = lines[lines.index("tv:resnet50") + 1]
    assert "3x224x224" in row and "25,557,032" in row
    assert "resnet50_ref" in out and "tv:resnet18" not in out
    code, _, err = run_cli("models", "--filter", "nothing-like-this")
    assert code == 2 and "no model name contains 'nothing-like-this'" in err


def test_show_prints_layers_and_totals(run_cli):
    code, out, err = run_cli("models", "show", "lenet")
    assert code == 0, err
    assert re.search(r"features\.0\s+Conv2d\s+20 x 24 x 24\s+520\s+288.00 K", out)
    assert re.search(r"classifier\.1\s+Linear\s+500\s+400,500", out)
    assert "total params:         431,080" in out
    assert "trainable params:     431,080" in out
    assert "multiply-adds:        2.29 M (2,293,000)" in out


def test_show_reference_profile_and_options(run_cli):
    code, out, err = run_cli("models", "show", "resnet_ref", "--set", "stages=[2,2,2,2]", "--reference", "--depth", "2")
    assert code == 0, err
    assert "reference profile" in out and "stages=[2, 2, 2, 2]" in out
    assert "trainable params:     15,987,627" in out
    assert "non-trainable params: 3" in out
    assert re.search(r"features\.stage4\s+Sequential\s+2048 x 7 x 7", out)
    assert max(map(len, out.splitlines())) <= 80 and "\nfeatures.stage4 " in out  # names whole, 80 columns
    code, out, err = run_cli("models", "show", "vgg16_ref", "--reference", "--depth", "1")
    assert code == 0, err
    assert "138,382,376" in out and "553.68 MB" in out


def test_show_custom_input_and_classes(run_cli):
    code, out, err = run_cli("models", "show", "tv:efficientnet_b0", "--classes", "10", "--input", "1x128x128",
                             "--depth", "1")
    assert code == 0, err
    assert "input:                1 x 128 x 128" in out and "output:               10" in out
    code, out, err = run_cli("models", "show", "alexnet_ref", "--input", "224", "--depth", "1")
    assert code == 0, err  # fc1 is sized from the input
    assert "classifier" in out and "6400" not in err


def test_show_writes_a_diagram(run_cli, tmp_path):
    target = tmp_path / "net.png"
    code, out, err = run_cli("models", "show", "emotion_vgg", "--diagram", target)
    assert code == 0, err
    assert target.read_bytes()[:4] == b"\x89PNG"
    assert "diagram written to" in out


@pytest.mark.parametrize(("args", "message"), [
    (("show", "squeezenet_ref", "--input", "3x224x224"),
     "deepvision models show: error: squeezenet_ref: input 224x224 is too small: classifier.pool10 "
     "(13x13 average pool) "
     "gets a 12x12 map; the minimum input is 227x227"),
    (("show", "googlenet_ref", "--input", "227"), "googlenet_ref: input 227x227 is too large"),
    (("show", "alexnet_ref", "--input", "40"), "alexnet_ref: input 40x40 is too small: features.block3.pool3"),
    (("show", "squeezenet"), "unknown model 'squeezenet' (did you mean: "),
    (("show", "tv:resnet5"), "unknown torchvision model 'tv:resnet5' (did you mean: tv:resnet50"),
    (("show", "lenet", "--input", "3by28"), "--input must look like 3x224x224"),
    (("show", "lenet", "--set", "activation"), "--set expects KEY=VALUE"),
    (("show", "lenet", "--set", "activaton=relu"), "model 'lenet' has no option 'activaton' (did you mean: activation"),
    (("show", "lenet", "--diagram", "out.bmpx"), "cannot write a diagram as '.bmpx'"),
    (("show", "emotion_vgg", "--set", "input_size=28"), "--set input_size: give the input as --input (CxHxW, HxW "
                                                        "or a side, e.g. --input 1x48x48); the model is built for"),
    (("show", "lenet", "--set", "input_size=[5,28,28]"), "--set input_size: give the input as --input"),
    (("show", "lenet", "--set", "input_size=[true,28]"), "--set input_size: give the input as --input"),
])
def test_show_bad_input_is_one_line_exit_2(run_cli, args, message):
    code, out, err = run_cli("models", *args)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("depth", ["-1", "0"])
def test_models_show_depth_must_be_positive(run_cli, depth):
    """--depth -1 printed an empty table (no module is -1 levels deep) as if it were an answer."""
    code, out, err = run_cli("models", "show", "lenet", "--depth", depth)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert f"--depth must be a whole number from 1 (the model's top-level modules), got {depth}" in err
