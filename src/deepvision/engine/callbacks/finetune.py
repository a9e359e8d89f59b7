"""Fine-tuning's warm-up as a callback: the body is frozen for the first `train.freeze.body_epochs`
epochs (only the new head learns), then the whole network trains, as in the reference's
fine-tuning (docs/transfer.md).

While frozen, the body's parameters take no step (their parameter groups get a zero learning rate)
and its BatchNorm layers keep their pretrained statistics (evaluation mode). Without DDP the body's
parameters also stop requiring gradients, so the backward pass ends at the head.
"""

from __future__ import annotations

from torch import nn

from deepvision.engine.callbacks.base import Callback


class FreezeBody(Callback):
    main_only = False  # every rank trains the same parameters

    def __init__(self, body_epochs: int) -> None:
        self.body_epochs = body_epochs

    def on_epoch_start(self, epoch: int, steps: int) -> None:
        t = self.trainer
        frozen = epoch < self.body_epochs
        t.frozen = {"body"} if frozen else set()
        t._set_lr(t.lr_at(epoch))
        body = [g for g in t.optimizer.param_groups if g.get("part") == "body"]
        if t.ddp is None:  # DDP's reducer expects every parameter it was built with to get a gradient
            for g in body:
                for p in g["params"]:
                    p.requires_grad_(not frozen)
        if frozen:
            body_ids = {id(p) for g in body for p in g["params"]}
            for m in t.model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and any(id(p) in body_ids for p in m.parameters()):
                    m.eval()
