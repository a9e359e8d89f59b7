"""Classification metrics accumulated on the device (no host sync per batch)."""

from __future__ import annotations

import torch

from deepvision.engine.distributed import all_reduce_sum


class MetricAccumulator:
    """Running sums of cross-entropy, rank-1 and rank-k hits and the sample count.

    `mark()` remembers the current sums, so `compute(since_mark=True)` gives the metrics of the
    batches after it (the speedometer's window) without a second accumulator.
    """

    def __init__(self, device: torch.device, topk: int = 5) -> None:
        self.device, self.topk = device, topk
        self.reset()

    def reset(self) -> None:
        self.loss = torch.zeros((), dtype=torch.float64, device=self.device)
        self.hits = torch.zeros(2, dtype=torch.int64, device=self.device)  # rank-1, rank-k
        self.count = 0  # on the host: no device transfer per batch
        self._mark = (self.loss.clone(), self.hits.clone(), 0)

    @torch.no_grad()
    def update(self, logits: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor, mean: bool = True) -> None:
        """Add a batch: `loss` is its mean cross-entropy (or the sum when mean=False)."""
        k = min(self.topk, logits.shape[1])
        hits = logits.topk(k, dim=1).indices == targets.unsqueeze(1)  # at most one hit per row
        self.hits += torch.stack([hits[:, 0].sum(), hits.sum()])
        n = targets.shape[0]
        self.loss += loss.double() * n if mean else loss.double()
        self.count += n

    def mark(self) -> None:
        self._mark = (self.loss.clone(), self.hits.clone(), self.count)

    def compute(self, distributed: bool = False, since_mark: bool = False) -> dict[str, float]:
        loss, hits, count = self.loss, self.hits, self.count
        if since_mark:
            loss, hits, count = loss - self._mark[0], hits - self._mark[1], count - self._mark[2]
        sums = torch.cat([loss.view(1), hits.double(), torch.tensor([float(count)], dtype=torch.float64,
                                                                    device=self.device)])
        if distributed:
            all_reduce_sum(sums)
        total_loss, top1, topk, n = sums.tolist()
        if n == 0:
            return {"loss": float("nan"), "acc": float("nan"), "top5": float("nan"), "count": 0}
        return {"loss": total_loss / n, "acc": top1 / n, "top5": topk / n, "count": int(n)}


def topk_accuracy(probs: torch.Tensor, targets: torch.Tensor, k: int) -> float:
    """Fraction of rows whose target is among the k highest scores."""
    k = min(k, probs.shape[1])
    return probs.topk(k, dim=1).indices.eq(targets[:, None]).any(1).double().mean().item()
