import pytest
import torch
from torch import nn

from deepvision.config.schema import OptimConfig
from deepvision.engine.optim import build_optimizer
from deepvision.errors import UserError


def model():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))


@pytest.mark.parametrize(
    ("cfg", "cls", "expect"),
    [
        (OptimConfig(name="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4), torch.optim.SGD,
         {"momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}),
        (OptimConfig(name="adam", lr=1e-3, weight_decay=2e-4), torch.optim.Adam, {"weight_decay": 2e-4, "eps": 1e-8}),
        (OptimConfig(name="adamw", lr=1e-3, weight_decay=0.05), torch.optim.AdamW, {"weight_decay": 0.05}),
        (OptimConfig(name="adadelta", lr=1.0), torch.optim.Adadelta, {"rho": 0.95, "eps": 1e-7}),  # Keras defaults
        (OptimConfig(name="RMSprop", lr=0.004, momentum=0.9, alpha=0.9, eps=1.0), torch.optim.RMSprop,
         {"alpha": 0.9, "eps": 1.0, "momentum": 0.9}),
    ],
)
def test_optimizers(cfg, cls, expect):
    opt = build_optimizer(model(), cfg)
    assert isinstance(opt, cls)
    group = opt.param_groups[0]
    assert group["lr"] == cfg.lr
    for k, v in expect.items():
        assert group[k] == v


def test_decay_exemption_for_bias_and_norm():
    m = model()
    opt = build_optimizer(m, OptimConfig(weight_decay=1e-4, decay_norm_and_bias=False))
    decayed, exempt = opt.param_groups
    assert exempt["weight_decay"] == 0.0 and decayed["weight_decay"] == 1e-4
    assert {id(p) for p in decayed["params"]} == {id(m[0].weight), id(m[3].weight)}
    assert len(exempt["params"]) == 4  # conv bias, BN gamma/beta, linear bias
    single = build_optimizer(m, OptimConfig(weight_decay=1e-4))  # reference: decay everything
    assert len(single.param_groups) == 1


def test_unknown_optimizer():
    with pytest.raises(UserError, match="unknown optimizer 'adamm'.*did you mean: adam"):
        build_optimizer(model(), OptimConfig(name="adamm"))


@pytest.mark.parametrize(("given", "named"), [
    ({"name": "adam", "momentum": 0.9}, "optim.momentum is read by the sgd and rmsprop optimizer, not adam: set "
                                        "optim.name=sgd, or leave optim.momentum out (on resume: --set "
                                        "optim.momentum=0.0)"),
    ({"name": "sgd", "eps": 1e-8}, "optim.eps is read by the adam, adamw, adadelta and rmsprop optimizer, not sgd"),
    ({"name": "sgd", "betas": [0.5, 0.9]}, "optim.betas is read by the adam and adamw optimizer, not sgd"),
    ({"name": "adamw", "rho": 0.9}, "optim.rho is read by the adadelta optimizer, not adamw"),
    ({"name": "adadelta", "centered": True}, "optim.centered is read by the rmsprop optimizer, not adadelta: set "
                                             "optim.name=rmsprop, or leave optim.centered out (on resume: --set "
                                             "optim.centered=false)"),
])
def test_an_option_of_another_optimizer_is_refused(given, named):
    """optim.momentum given with adam was recorded with the run and never read."""
    with pytest.raises(UserError) as info:
        build_optimizer(nn.Linear(2, 2), OptimConfig(**given))
    assert str(info.value).startswith(named), info.value


def test_every_recipe_reads_the_optimizer_options_it_gives():
    from deepvision.config.io import load_config
    from deepvision.recipes import recipe_names, recipe_path

    for name in recipe_names():
        build_optimizer(nn.Linear(2, 2), load_config(recipe_path(name)).optim)
