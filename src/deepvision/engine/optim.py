"""Optimizers by name, with the reference's semantics (coupled L2 decay on every parameter)."""

from __future__ import annotations

import torch
from torch import nn

from deepvision.config.names import register_names
from deepvision.config.schema import OptimConfig
from deepvision.errors import unknown

OPTIMIZERS = ("sgd", "adam", "adamw", "adadelta", "rmsprop")
register_names("optim.name", "optimizer", lambda: OPTIMIZERS)


def param_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool) -> list[dict]:
    """One group, or two when biases and normalisation parameters are exempt from decay."""
    params = [p for p in model.parameters() if p.requires_grad]
    if decay_norm_and_bias or weight_decay == 0:
        return [{"params": params, "weight_decay": weight_decay}]
    no_decay = {id(p) for m in model.modules() for n, p in m.named_parameters(recurse=False)
                if n == "bias" or isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.PReLU))}
    return [
        {"params": [p for p in params if id(p) not in no_decay], "weight_decay": weight_decay},
        {"params": [p for p in params if id(p) in no_decay], "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    name = cfg.name.lower()
    if name not in OPTIMIZERS:
        raise unknown("optimizer", cfg.name, OPTIMIZERS)
    groups = param_groups(model, cfg.weight_decay, cfg.decay_norm_and_bias)
    eps = {} if cfg.eps is None else {"eps": cfg.eps}
    if name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if name == "adam":  # coupled L2, as the reference (not AdamW)
        return torch.optim.Adam(groups, lr=cfg.lr, betas=tuple(cfg.betas), **eps)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), **eps)
    if name == "adadelta":  # Keras defaults: rho 0.95, eps 1e-7
        return torch.optim.Adadelta(groups, lr=cfg.lr, rho=cfg.rho, eps=cfg.eps if cfg.eps is not None else 1e-7)
    return torch.optim.RMSprop(groups, lr=cfg.lr, alpha=cfg.alpha, momentum=cfg.momentum, centered=cfg.centered, **eps)
