"""Age prediction on the Adience buckets: classification plus one-off accuracy (the arg-max bucket or a neighbour) as a
training and validation metric (history columns train_one_off, val_one_off). The buckets and their order are
shared with the evaluation (`is_age_buckets`, `bucket_order`)."""

from __future__ import annotations

from typing import Any

import torch

from deepvision.engine.distributed import all_reduce_sum
from deepvision.engine.tasks.classification import ClassificationData, ClassificationMeter, ClassificationTask
from deepvision.engine.tasks.registry import register_task
from deepvision.errors import UserError

AGE_BUCKETS = ("0_2", "4_6", "8_13", "15_20", "25_32", "38_43", "48_53", "60_inf")  # docs/faces.md


def is_age_buckets(classes: list[str]) -> bool:
    """True when the class names are exactly the 8 Adience age buckets (in any order)."""
    return len(classes) == len(AGE_BUCKETS) and set(classes) == set(AGE_BUCKETS)


def bucket_order(classes: list[str]) -> list[int]:
    """For each class id, its bucket's position in age order (class ids may be in any order)."""
    return [AGE_BUCKETS.index(c) for c in classes]


class OneOffMeter(ClassificationMeter):
    """ClassificationMeter plus the arg-max bucket being the true one or its neighbour in age order."""

    def __init__(self, device: torch.device, order: torch.Tensor, topk: int = 5, loss_is_sum: bool = False) -> None:
        self.order = order.to(device)
        super().__init__(device, topk, loss_is_sum)

    def reset(self) -> None:
        super().reset()
        self.one_off = torch.zeros((), dtype=torch.int64, device=self.device)
        self._mark_one_off = self.one_off.clone()

    @torch.no_grad()
    def update(self, logits: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor | None) -> None:
        super().update(logits, targets, loss)
        gap = (self.order[logits.argmax(1)] - self.order[targets]).abs()
        self.one_off += (gap <= 1).sum()

    def mark(self) -> None:
        super().mark()
        self._mark_one_off = self.one_off.clone()

    def compute(self, distributed: bool = False, since_mark: bool = False) -> dict[str, float]:
        scores = super().compute(distributed, since_mark)
        hits = (self.one_off - self._mark_one_off if since_mark else self.one_off).double().view(1)
        if distributed:
            all_reduce_sum(hits)
        scores["one_off"] = float(hits.item()) / scores["count"] if scores["count"] else float("nan")
        return scores


@register_task("age")
class AgeTask(ClassificationTask):
    train_metrics = ("loss", "acc", "top5", "one_off")
    val_metrics = ("loss", "acc", "top5", "one_off")
    default_monitor = "val_acc"

    def load_data(self, roles: tuple[str, ...], model_input: tuple[int, int, int] | None,
                  model_preprocess: dict[str, Any] | None) -> ClassificationData:
        data = super().load_data(roles, model_input, model_preprocess)
        if not is_age_buckets(data.classes):
            raise UserError(f"task: age needs the 8 Adience age buckets as classes ({', '.join(AGE_BUCKETS)}); "
                            f"the data has {', '.join(data.classes[:10])}")
        self.order = torch.tensor(bucket_order(data.classes))
        return data

    def meter(self, device: torch.device, phase: str) -> OneOffMeter:
        return OneOffMeter(device, self.order, self.topk, loss_is_sum=phase != "train")
