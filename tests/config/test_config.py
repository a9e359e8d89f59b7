import pytest

from deepvision.config import build_config, config_to_yaml, load_config, read_yaml
from deepvision.config.schema import AugmentConfig
from deepvision.errors import UserError


def test_defaults_and_yaml_round_trip(tmp_path):
    cfg = build_config({"model": {"name": "mlp"}, "optim": {"lr": "1e-3"}})  # YAML 1.1 reads 1e-3 as a string
    assert cfg.optim.lr == pytest.approx(1e-3)
    assert cfg.data.source == "digits" and cfg.train.epochs == 10
    path = tmp_path / "c.yaml"
    path.write_text(config_to_yaml(cfg))
    again = load_config(path)
    assert again == cfg


def test_overrides_parse_yaml_scalars_and_lists():
    cfg = build_config({}, ["optim.lr=0.5", "data.mean=[0.1, 0.2, 0.3]", "train.compile=true",
                            "model.args.activation=relu", "schedule.ranges=['1-2: 0.1', '3-4: 0.01']"])
    assert cfg.optim.lr == 0.5
    assert cfg.data.mean == [0.1, 0.2, 0.3]
    assert cfg.train.compile is True
    assert cfg.model.args == {"activation": "relu"}
    assert cfg.schedule.ranges == ["1-2: 0.1", "3-4: 0.01"]
    with pytest.raises(UserError, match=r"^--set train.epochs is given twice \('train.epochs=1', then "
                                        r"'train.epochs= 2'\); give it once$"):
        build_config({}, ["train.epochs=1", "train.epochs= 2"])  # the last one won without a word
    assert build_config({}, ["train.epochs=3", "train.epochs=3"]).train.epochs == 3  # a script's repeat


@pytest.mark.parametrize("given", ["data.val=", "data.val=''", 'data.mean=" "', "data.options.image_root=''"])
def test_an_override_given_an_empty_value_is_refused(given):
    """`--set data.val=$VAL` with VAL unset dropped the config's val split without a word; null still unsets."""
    key = given.partition("=")[0]
    with pytest.raises(UserError, match=rf"^--set {key}: an empty value; give one, or null to leave the setting "
                                        r"unset$"):
        build_config({"data": {"val": "v"}}, [given])
    assert build_config({"data": {"val": "v"}}, ["data.val=null"]).data.val is None


def test_a_mapping_override_sets_the_keys_it_names():
    """`--set data={batch_size: 4}` replaced the recipe's whole data section (its val and test splits
    vanished), and `--set 'train={epochs: 1}' --set train.epochs=2` trained 2 epochs without a word."""
    recipe = {"data": {"source": "synthetic", "batch_size": 8, "augment": {"rotate": 10}},
              "model": {"name": "lenet", "args": {"activation": "relu"}}}
    cfg = build_config(recipe, ["data={batch_size: 4}", "train={epochs: 2, seed: 1}"])
    assert (cfg.data.source, cfg.data.batch_size, cfg.data.augment.rotate) == ("synthetic", 4, 10)
    assert (cfg.train.epochs, cfg.train.seed) == (2, 1)
    assert build_config(recipe, ["model.args={}"]).model.args == {}  # {} empties a section
    assert build_config(recipe, ["train={epochs: 1}", "train.epochs=1"]).train.epochs == 1
    with pytest.raises(UserError, match=r"^--set train.epochs is given twice \('train=\{epochs: 1\}', then "
                                        r"'train.epochs=2'\); give it once$"):
        build_config(recipe, ["train={epochs: 1}", "train.epochs=2"])
    with pytest.raises(UserError, match=r"^--set data.augment is given twice \('data.augment.rotate=5', then "
                                        r"'data.augment=\{\}'\)"):
        build_config(recipe, ["data.augment.rotate=5", "data.augment={}"])


@pytest.mark.parametrize(
    ("data", "overrides", "message"),
    [
        ({"optim": {"lrr": 0.1}}, [], "unknown config key 'optim.lrr' in 'optim'  (did you mean: lr?)"),
        ({"trian": {}}, [], "unknown config key 'trian'"),
        ({}, ["optim.lr=abc"], "optim.lr must be a number, got 'abc'"),
        ({}, ["train.epochs=2.5"], "train.epochs must be an integer"),
        ({}, ["train.compile=maybe"], "train.compile must be true or false"),
        ({}, ["train.amp=fp8"], "train.amp must be one of auto, off, bf16, fp16"),
        ({}, ["optim.lr=-1"], "optim.lr must be a finite number in (0, 100], got -1.0"),
        ({}, ["data.val_fraction=1.5"], "data.val_fraction must be in [0, 1)"),
        ({"data": [1, 2]}, [], "data must be a mapping of settings"),
        ({}, ["optim"], "--set expects key=value"),
        ({}, ["optim.nesterov=true"], "optim.nesterov needs optim.momentum > 0"),
    ],
)
def test_bad_config_values_give_one_line_errors(data, overrides, message):
    with pytest.raises(UserError) as exc:
        build_config(data, overrides)
    text = str(exc.value)
    assert "\n" not in text
    for part in message.split("  "):
        assert part in text


def test_unknown_key_lists_valid_keys():
    with pytest.raises(UserError, match="valid keys: .*momentum.*weight_decay"):
        build_config({"optim": {"momentun": 0.9}})


def test_read_yaml_errors(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        read_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        read_yaml(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(UserError, match="mapping of settings at the top level"):
        read_yaml(scalar)


def test_data_format_is_an_alias_of_source():
    cfg = build_config({"data": {"format": "rec", "train": "x.rec"}})
    assert cfg.data.source == "rec" and cfg.data.format is None


@pytest.mark.parametrize("profile, rotation, shuffle", [("modern", "uniform", True), ("reference", "fixed", False)])
def test_profile_switches_data_behaviours_unless_set(profile, rotation, shuffle):
    cfg = build_config({"profile": profile})
    assert cfg.data.augment.rotation_mode == rotation and cfg.data.shuffle is shuffle
    explicit = build_config({"profile": profile, "data": {"shuffle": not shuffle,
                                                          "augment": {"rotation_mode": "uniform"}}})
    assert explicit.data.shuffle is (not shuffle) and explicit.data.augment.rotation_mode == "uniform"
    again = build_config(read_yaml_text(config_to_yaml(cfg)))
    assert again.data.shuffle is shuffle and again.data.augment.rotation_mode == rotation


def read_yaml_text(text: str) -> dict:
    import yaml

    return yaml.safe_load(text)


def test_names_are_checked_against_their_registries_when_the_config_loads():
    import deepvision.engine.trainer  # noqa: F401  (the registries register their names on import)

    for override, message in [("optim.name=adamm", "unknown optimizer 'adamm'.*did you mean: adam"),
                              ("schedule.name=cosin", "unknown schedule 'cosin'.*did you mean: cosine"),
                              ("data.source=folders", "unknown data source 'folders'.*did you mean: folder"),
                              ("model.name=lenett", "unknown model 'lenett'"),
                              ("task=clasification", "unknown task 'clasification'")]:
        with pytest.raises(UserError, match=message):
            build_config({}, [override])


def test_train_help_is_generated_from_the_schema(capsys):
    import dataclasses

    from deepvision.cli.main import main
    from deepvision.config.schema import Config

    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    reference = out[out.index("config keys"):]
    for f in dataclasses.fields(Config):
        section = getattr(Config(), f.name)
        keys = [s.name for s in dataclasses.fields(section)] if dataclasses.is_dataclass(section) else [f.name]
        for key in keys:
            assert key in reference, key
    assert "reference" in reference and "task (" in reference and "classification" in reference
    assert "optim:" in reference and "sgd" in reference and "(keep|drop|pad|rollover)" in reference
    keys_block = reference[: reference.index("examples:")]
    assert max(len(line) for line in keys_block.splitlines()) <= 80


def test_one_override_string_is_one_override_in_the_api(monkeypatch):
    """api.train / api.resume take one 'key=value' string as a list of one (as api.predict takes one
    path), never as its characters; an item that is not a string is one line naming its type."""
    from deepvision import api

    assert build_config({}, "optim.lr=0.5").optim.lr == 0.5
    seen = {}
    monkeypatch.setattr(api, "resume_run", lambda run_dir, **kw: seen.update(kw))
    api.resume("some-run", overrides="train.epochs=2")
    assert seen["overrides"] == ["train.epochs=2"]
    api.resume("some-run", overrides=("train.epochs=3", "optim.lr=0.1"))
    assert seen["overrides"] == ["train.epochs=3", "optim.lr=0.1"]
    with pytest.raises(UserError, match=r"^overrides must be 'key=value' strings, e\.g\. 'optim\.lr=0\.01'; "
                                        r"got 2 \(an int\)$"):
        api.resume("some-run", overrides=["train.epochs=3", 2])
    with pytest.raises(UserError, match=r"^overrides must be 'key=value' strings \(one, or a list of them\), "
                                        r"got dict$"):
        api.train({}, {"train.epochs": 2})


@pytest.mark.parametrize("text", ["", "# my experiment\n", "null\n", "{}\n", "---\n"])
def test_a_config_file_that_sets_nothing_is_refused(tmp_path, run_cli, text):
    """An empty config (a save cut short) trained LeNet on the bundled digits as if it were the experiment."""
    (tmp_path / "exp.yaml").write_text(text)
    code, out, err = run_cli("data", "info", tmp_path / "exp.yaml")
    assert (code, out) == (2, "") and f"{tmp_path / 'exp.yaml'} sets nothing; an experiment config names" in err


@pytest.mark.parametrize(("given", "named"), [
    ({"scale": [0.5, 1.0]}, "data.augment.scale is read only with random_resized_crop: true; leave it out (on "
                            "resume: --set data.augment.scale=[0.08, 1.0])"),
    ({"ratio": [0.5, 2.0]}, "data.augment.ratio is read only with random_resized_crop: true"),
    ({"fill": 0}, "data.augment.fill is read only with rotate, max_shear_ratio or zoom and fill_mode constant"),
    ({"zoom": 0.1, "fill_mode": "nearest", "fill": 0}, "data.augment.fill is read only with rotate"),
    ({"fill_mode": "nearest"}, "data.augment.fill_mode is read only with rotate, max_shear_ratio or zoom; leave it "
                               "out (on resume: --set data.augment.fill_mode=constant)"),
    ({"random_resized_crop": True, "rotate": 30}, "data.augment.rotate is not read with random_resized_crop: true "
                                                  "(its random box replaces the crop, rotation, shear and zoom); leave "
                                                  "it out (on resume: --set data.augment.rotate=0.0)"),
    ({"random_resized_crop": True, "zoom": 0.2}, "data.augment.zoom is not read with random_resized_crop: true"),
    ({"random_resized_crop": True, "max_shear_ratio": 0.3}, "data.augment.max_shear_ratio is not read with random_"),
    ({"random_resized_crop": True, "rand_crop": True}, "data.augment.rand_crop is not read with random_resized_crop: "
                                                       "true (its random box replaces the crop, rotation, shear and "
                                                       "zoom); leave it out (on resume: --set data.augment.rand_crop="
                                                       "false)"),
    ({"random_resized_crop": True, "rotate": 5, "fill": 0}, "data.augment.rotate is not read with random_resized_crop"),
    ({"random_resized_crop": True, "fill_mode": "nearest"}, "data.augment.fill_mode is read only with rotate, "
                                                            "max_shear_ratio or zoom (without random_resized_crop)"),
])
def test_an_augmentation_option_no_switch_reads_is_refused(given, named):
    """data.augment.scale without random_resized_crop was recorded with the run and never read."""
    with pytest.raises(UserError) as info:
        AugmentConfig(**given).refuse_unread("data.augment")
    assert str(info.value).startswith(named), info.value
    AugmentConfig(rotate=5, fill=0).refuse_unread("data.augment")  # read: taken
    AugmentConfig(random_resized_crop=True, scale=[0.5, 1.0], rand_mirror=True).refuse_unread("data.augment")


def test_every_augmentation_option_refused_with_random_resized_crop_is_one_its_plan_never_reads():
    """With random_resized_crop the plan is its box and the mirror: the refused options change no draw."""
    import random

    from deepvision.config.schema import AUGMENT_REPLACED_BY_RRC
    from deepvision.data.augment_plan import draw_plan, prepared_size

    plain = AugmentConfig(random_resized_crop=True, rand_mirror=True, rotation_mode="uniform")
    for key, value in {"rand_crop": True, "rotate": 30.0, "max_shear_ratio": 0.3, "zoom": 0.2}.items():
        assert key in AUGMENT_REPLACED_BY_RRC
        given = AugmentConfig(**{**plain.__dict__, key: value})
        for seed in range(5):
            assert draw_plan(given, (40, 30), (28, 28), random.Random(seed)) == \
                draw_plan(plain, (40, 30), (28, 28), random.Random(seed))
        assert prepared_size((40, 30), (28, 28), None, given) is None


@pytest.mark.parametrize("given", ["rotate=30", "zoom=0.2", "max_shear_ratio=0.3", "rand_crop=true"])
def test_train_refuses_a_crop_or_warp_option_beside_random_resized_crop(tmp_path, run_cli, given):
    """`train --set data.augment.random_resized_crop=true --set data.augment.rotate=30` recorded rotate: 30 and
    trained bit for bit as without it."""
    import yaml

    from tests.helpers import tiny_config

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(1, workers=0)))
    code, _, err = run_cli("train", cfg, "--out", tmp_path / "runs", "--name", "r", "--set",
                           "data.augment.random_resized_crop=true", "--set", f"data.augment.{given}")
    key = given.split("=")[0]
    assert code == 2 and err.count("\n") == 1, err
    assert f"data.augment.{key} is not read with random_resized_crop: true" in err
    assert not (tmp_path / "runs" / "r").exists()


def test_every_recipe_reads_the_augmentation_options_it_gives():
    from deepvision.recipes import recipe_names, recipe_path

    for name in recipe_names():
        load_config(recipe_path(name)).data.augment.refuse_unread("data.augment")


@pytest.mark.parametrize(("value", "message"), [
    ("Dataset", "x 'Dataset' is a name the folder's own files take (dataset); choose another name"),
    ("a\udcffb", "x must be a plain file name"),
    (None, "x must be a plain file name"),
])
def test_check_file_name_refuses_the_folder_s_own_names_in_any_case_and_bytes_not_utf8(value, message):
    from deepvision.config.schema import check_file_name

    check_file_name("datasets", "x", taken=("dataset",))
    with pytest.raises(UserError) as err:
        check_file_name(value, "x", taken=("dataset",))
    assert str(err.value).startswith(message)


def test_an_override_that_names_another_schedule_or_optimizer_leaves_out_the_replaced_ones_options():
    """`train RECIPE --set optim.name=adam --set schedule.name=constant` (a recipe's SGD with momentum and
    piecewise ranges) is a habit: the recipe's options for what the overrides replace are left out; an option
    the overrides give themselves stays, to be refused when training starts."""
    from deepvision.engine.optim import build_optimizer
    from deepvision.engine.schedules import Schedule
    from deepvision.recipes import recipe_path

    recipe = read_yaml(recipe_path("imagenet_alexnet_a3"))
    assert recipe["optim"]["momentum"] == 0.9 and recipe["schedule"]["ranges"]
    cfg = build_config(recipe, ["optim.name=adam", "schedule.name=constant", "data.augment.rotate=0",
                                "data.augment.max_shear_ratio=0", "data.augment.fill=0"])
    assert (cfg.optim.momentum, cfg.schedule.ranges, cfg.data.augment.fill) == (0.0, [], 0)
    import torch

    build_optimizer(torch.nn.Linear(2, 2), cfg.optim)
    Schedule(cfg.schedule, cfg.optim.lr, cfg.train.epochs)
    with pytest.raises(UserError, match=r"^data.augment.fill is read only with rotate"):
        cfg.data.augment.refuse_unread("data.augment")  # given by the override itself: refused
    kept = build_config(recipe, ["optim.name=adam", "optim.momentum=0.5"])
    with pytest.raises(UserError, match=r"^optim.momentum is read by the sgd and rmsprop optimizer, not adam"):
        build_optimizer(torch.nn.Linear(2, 2), kept.optim)
    assert build_config(recipe).schedule.ranges == recipe["schedule"]["ranges"]  # no override: as given
    rrc = build_config(recipe, ["data.augment.random_resized_crop=true"]).data.augment
    assert recipe["data"]["augment"]["rand_crop"] and (rrc.rand_crop, rrc.rotate, rrc.max_shear_ratio) == (False, 0, 0)
    rrc.refuse_unread("data.augment")  # the recipe's crop and warp, replaced by the override: left out


@pytest.mark.parametrize(("data", "key"), [({"val": ""}, "data.val"), ({"mean": " "}, "data.mean"),
                                           ({"train": ""}, "data.train")])
def test_an_empty_value_in_a_config_file_is_refused_as_in_an_override(data, key):
    """`val: ''` in the file dropped the named val split without a word; `--set data.val=''` was refused."""
    with pytest.raises(UserError, match=rf"^{key}: an empty value; give one, or null to leave the setting unset$"):
        build_config({"data": data})
    assert build_config({"description": ""}).description == ""  # a description may be empty
