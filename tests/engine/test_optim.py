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
