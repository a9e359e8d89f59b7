"""Optimizers by name, with the reference's semantics (coupled L2 decay on every parameter)."""

from __future__ import annotations

import torch
from torch import nn

from deepvision.config.names import register_names
from deepvision.config.schema import OPTIM_READ_BY, OptimConfig, refuse_unread_options
from deepvision.errors import unknown

OPTIMIZERS = ("sgd", "adam", "adamw", "adadelta", "rmsprop")
register_names("optim.name", "optimizer", lambda: OPTIMIZERS)


def param_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool,
                 head: set[int] | None = None, lr_mult: dict[str, float] | None = None) -> list[dict]:
    """One group, or two when biases and normalisation parameters are exempt from decay. With `head`
    (ids of the classifier head's parameters) each group is split into a "body" and a "head" part,
    which carry their learning-rate multiplier (`lr_mult`, default 1) for fine-tuning."""
    params = [p for p in model.parameters() if p.requires_grad]
    if decay_norm_and_bias or weight_decay == 0:
        groups = [{"params": params, "weight_decay": weight_decay}]
    else:
        no_decay = {id(p) for m in model.modules() for n, p in m.named_parameters(recurse=False)
                    if n == "bias" or isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm,
                                                     nn.PReLU))}
        groups = [
            {"params": [p for p in params if id(p) not in no_decay], "weight_decay": weight_decay},
            {"params": [p for p in params if id(p) in no_decay], "weight_decay": 0.0},
        ]
    if head is None:
        return groups
    mult = lr_mult or {}
    parts = []
    for g in groups:
        for part in ("body", "head"):
            chosen = [p for p in g["params"] if (id(p) in head) == (part == "head")]
            if chosen:
                parts.append({**g, "params": chosen, "part": part, "lr_mult": float(mult.get(part, 1.0))})
    return parts


def head_parameter_ids(model: nn.Module) -> set[int]:
    """Ids of the classifier head's parameters (the last Linear/Conv and same-width Linear heads)."""
    from deepvision.models.pretrained import head_modules

    names = set(head_modules(model))
    return {id(p) for n, m in model.named_modules() if n in names for p in m.parameters()}


def build_optimizer(model: nn.Module, cfg: OptimConfig, split_head: bool = False) -> torch.optim.Optimizer:
    """The optimizer `cfg` names; with `split_head` (fine-tuning: `optim.lr_mult` or `train.freeze`),
    the body and the head are separate parameter groups."""
    name = cfg.name.lower()
    if name not in OPTIMIZERS:
        raise unknown("optimizer", cfg.name, OPTIMIZERS)
    refuse_unread_options(cfg, name, OPTIM_READ_BY, "optim", "optimizer")
    head = head_parameter_ids(model) if (split_head or cfg.lr_mult) else None
    groups = param_groups(model, cfg.weight_decay, cfg.decay_norm_and_bias, head, cfg.lr_mult)
    eps = {} if cfg.eps is None else {"eps": cfg.eps}
    if name == "sgd":
        # foreach: one multi-tensor kernel call per step instead of a Python loop over the parameters (torch
        # picks it only for CUDA tensors); the same element-wise arithmetic, so results are bit-identical
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, foreach=True)
    if name == "adam":  # coupled L2, as the reference (not AdamW)
        return torch.optim.Adam(groups, lr=cfg.lr, betas=tuple(cfg.betas), **eps)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), **eps)
    if name == "adadelta":  # Keras defaults: rho 0.95, eps 1e-7
        return torch.optim.Adadelta(groups, lr=cfg.lr, rho=cfg.rho, eps=cfg.eps if cfg.eps is not None else 1e-7)
    return torch.optim.RMSprop(groups, lr=cfg.lr, alpha=cfg.alpha, momentum=cfg.momentum, centered=cfg.centered, **eps)
