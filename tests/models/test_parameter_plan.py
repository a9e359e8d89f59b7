"""A model is planned on the meta device before it is built: parameters beyond the memory ceiling are
refused in one line, nothing allocated."""

from __future__ import annotations

import re

import pytest

from deepvision.errors import UserError
from deepvision.models.registry import create_model


def test_lenet_for_huge_inputs_is_refused_before_allocating(run_cli):
    code, _, err = run_cli("models", "show", "lenet", "--input", "1x8192x8192")
    assert code == 2 and err.count("\n") == 1
    assert "model 'lenet' with these options and input size would need 418.2 GB for its parameters" in err


def test_the_ceiling_follows_deepvision_max_read_gb(monkeypatch):
    monkeypatch.setenv("DEEPVISION_MAX_READ_GB", "0.001")  # 1 MB; LeNet on 28 x 28 needs 1.72 MB
    with pytest.raises(UserError, match=r"would need 1\.7 MB for its parameters, above the 1\.0 MB"):
        create_model("lenet", num_classes=10, in_channels=1)
    monkeypatch.setenv("DEEPVISION_MAX_READ_GB", "1")
    model = create_model("lenet", num_classes=10, in_channels=1)
    assert sum(p.numel() for p in model.parameters()) == 431_080
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_builder_options_that_would_build_for_minutes_are_refused(run_cli):
    """Each stage block and each list item is built in Python one by one: 100,000,000 blocks ran for minutes
    (memory growing) before any size check could see them."""
    with pytest.raises(UserError, match=r"stages from 1 to 1,024 blocks"):
        create_model("resnet_ref", stages=[100_000_000, 2, 2, 2])
    with pytest.raises(UserError, match=r"^model 'emotion_vgg4' option 'filters' lists 300 values; a model option "
                                        r"lists at most 256$"):
        create_model("emotion_vgg4", filters=[8] * 300)
    code, out, err = run_cli("models", "show", "resnet_ref", "--set", "stages=[100000,2,2,2]")
    assert code == 2 and out == "" and err.count("\n") == 1 and "stages from 1 to 1,024 blocks" in err


def test_non_finite_builder_numbers_and_a_bad_diagram_name_are_refused_first(run_cli, tmp_path):
    """bn_eps inf answers one output for every image and elu_alpha nan answers NaN: both trained "fine";
    a diagram name that cannot be written is refused before the layer table is printed."""
    for option in ("bn_eps=.inf", "elu_alpha=.nan", "bn_eps=-.inf"):
        code, out, err = run_cli("models", "show", "emotion_vgg", "--set", option)
        key = option.split("=")[0]
        assert code == 2 and out == "" and err.count("\n") == 1, err
        assert f"model 'emotion_vgg' option '{key}' must be finite" in err
    code, out, err = run_cli("models", "show", "lenet", "--diagram", tmp_path / "d.exe")
    assert code == 2 and out == "" and err.count("\n") == 1 and "cannot write a diagram as '.exe'" in err


def test_builder_options_of_the_wrong_kind_are_named_and_exponents_are_numbers(run_cli):
    """`--set` values are read as the config reads YAML (1e300 is a number), and a value of a kind the
    builder does not take is named with the kind it wants, not with Python's TypeError."""
    code, out, _ = run_cli("models", "show", "emotion_vgg", "--set", "bn_eps=1e-3")
    assert code == 0 and "emotion_vgg" in out
    cases = {("emotion_vgg", "bn_eps=abc"): "option 'bn_eps' must be a number, got 'abc'",
             ("emotion_vgg", "bn_eps=[1]"): "option 'bn_eps' must be a number, got [1]",
             ("resnet_ref", "stages=abc"): "option 'stages' must be a list, got 'abc'"}
    for (model, option), message in cases.items():
        code, out, err = run_cli("models", "show", model, "--set", option)
        assert code == 2 and out == "" and err.count("\n") == 1 and f"model '{model}' {message}" in err, err
    with pytest.raises(UserError, match=r"option 'bn_eps' must be a number, got '1e-3'"):
        create_model("emotion_vgg", bn_eps="1e-3")
    with pytest.raises(UserError, match=r"option 'input_size' must be a number or a list, got 'abc'"):
        create_model("emotion_vgg", input_size="abc")  # in a config's model.args; models show takes --input
    for model, option, value in (("lenet", "input_size", [True, 28]), ("emotion_vgg", "bn_eps", True)):
        with pytest.raises(UserError, match=rf"^model '{model}' option '{option}' takes numbers, not true/false; "
                                            rf"got {re.escape(repr(value))}$"):
            create_model(model, **{option: value})  # Python reads true as 1


def test_width_lists_hold_whole_numbers_from_one_and_own_settings_are_not_options(run_cli):
    for option, shown in (("hidden=[-5]", "[-5]"), ("hidden=[0]", "[0]"), ("hidden=[64, 2.5]", "[64, 2.5]")):
        code, out, err = run_cli("models", "show", "mlp", "--set", option)
        assert (code, out) == (2, "") and err.count("\n") == 1, err
        assert f"model 'mlp' option 'hidden' must list whole numbers from 1, got {shown}" in err
    code, out, err = run_cli("models", "show", "tv:vit_b_16", "--set", "image_size=100")  # torchvision asserts
    assert (code, out) == (2, "") and err.count("\n") == 1 and "cannot build model 'tv:vit_b_16'" in err
    code, out, err = run_cli("models", "show", "tv:resnet18", "--set", "num_classes=0")
    assert (code, out) == (2, "") and "num_classes is the model's own setting, not a builder option" in err
