"""Classification metrics accumulated on the device (no host sync per batch)."""

from __future__ import annotations

import torch

from deepvision.engine.distributed import all_reduce_sum


class MetricAccumulator:
    """Running sums of cross-entropy, rank-1 and rank-k hits and sample count."""

    def __init__(self, device: torch.device, topk: int = 5) -> None:
        self.device, self.topk = device, topk
        self.reset()

    def reset(self) -> None:
        self.sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        self.count = 0  # on the host: no device transfer per batch

    @torch.no_grad()
    def update(self, logits: torch.Tensor, targets: torch.Tensor, loss_sum: torch.Tensor) -> None:
        k = min(self.topk, logits.shape[1])
        hits = logits.topk(k, dim=1).indices.eq(targets[:, None])
        self.sums += torch.stack([loss_sum.double(), hits[:, 0].sum().double(), hits.any(1).sum().double()])
        self.count += targets.shape[0]

    def compute(self, distributed: bool = False) -> dict[str, float]:
        sums = torch.cat([self.sums, torch.tensor([float(self.count)], dtype=torch.float64, device=self.device)])
        if distributed:
            all_reduce_sum(sums)
        loss, top1, topk, n = sums.tolist()
        if n == 0:
            return {"loss": float("nan"), "acc": float("nan"), "top5": float("nan"), "count": 0}
        return {"loss": loss / n, "acc": top1 / n, "top5": topk / n, "count": int(n)}


def topk_accuracy(probs: torch.Tensor, targets: torch.Tensor, k: int) -> float:
    """Fraction of rows whose target is among the k highest scores."""
    k = min(k, probs.shape[1])
    return probs.topk(k, dim=1).indices.eq(targets[:, None]).any(1).double().mean().item()
