"""The test split, scored during and after training (`train.test`, `train.test_every`).

The reference ran a concurrent evaluator on the test set while training; here the trainer scores it
itself, through the task's evaluation path (`Task.eval_outputs` and the task's meter, as validation
and `deepvision evaluate` do):

- after the last epoch, the best checkpoint (best.pt: the one `deepvision evaluate` scores by
  default; the final weights when no epoch was best) -> `test_metrics.json` and one console line;
- with `train.test_every: N`, the current weights every N epochs -> one row of `test_history.csv`.

Every rank scores its share of the test images (the metrics are reduced across ranks); rank 0 writes.
A resumed run drops the test_history.csv rows after the epoch it resumes from, and scores the test
split again when it reaches the last epoch.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

from deepvision.data.protocols import close_loader
from deepvision.engine.callbacks.base import Callback
from deepvision.engine.distributed import broadcast_object
from deepvision.engine.reporting import format_metrics
from deepvision.runs.checkpoint import load_checkpoint
from deepvision.runs.history import EpochRecord


class TestEvaluator(Callback):
    """Scores the run's test split (see the module docstring); a no-op when the run has none."""

    __test__ = False  # not a pytest test class
    main_only = False  # scoring is shared by the ranks (a collective); rank 0 writes

    def __init__(self, every: int = 0) -> None:
        self.every = every
        self.loader: Any = None

    @property
    def active(self) -> bool:
        return "test" in self.trainer.data.counts()

    def fields(self) -> list[str]:
        return ["epoch", *(f"test_{m}" for m in self.trainer.task.val_metrics), "count", "seconds"]

    def on_train_start(self) -> None:
        t = self.trainer
        if t.resolved.test_note:
            t.reporter.line(t.resolved.test_note)
        if not (self.active and self.every and t.dist.is_main):
            return
        rows = [r for r in t.run.read_history(t.run.test_history_path) if (r.get("epoch") or 0) <= t.start_epoch]
        if rows or t.run.test_history_path.exists():  # a resumed run: rows of the epochs it redoes go
            t.run.write_history(rows, self.fields(), t.run.test_history_path)

    def on_epoch_end(self, epoch: int, logs: EpochRecord) -> None:
        t = self.trainer
        if not self.active:
            return
        final = logs.epoch == t.cfg.train.epochs
        periodic = bool(self.every) and logs.epoch % self.every == 0
        latest = None
        if periodic:
            latest = self.score(epoch)
            if t.dist.is_main:
                rows = t.run.read_history(t.run.test_history_path)
                rows = [r for r in rows if r.get("epoch") != logs.epoch]
                rows.append({"epoch": logs.epoch, **{f"test_{k}": v for k, v in _metrics(latest).items()},
                             "count": latest["count"], "seconds": latest["seconds"]})
                t.run.write_history(rows, self.fields(), t.run.test_history_path)
                t.reporter.metrics(epoch, "Test", _metrics(latest), console=False)
        if final:
            self.final(epoch, logs, latest)

    def final(self, epoch: int, logs: EpochRecord, latest: dict[str, Any] | None) -> None:
        """Score best.pt (or the final weights) and write test_metrics.json."""
        t = self.trainer
        # rank 0 decides (only it tracks the best epoch); the broadcast also waits for best.pt to be written
        best = broadcast_object(t.best_epoch if t.dist.is_main else None)
        path = t.run.checkpoints / "best.pt"
        if best is None or best == logs.epoch or not path.is_file():
            which = "last" if best != logs.epoch else "best"
            weights_epoch = logs.epoch
            metrics = latest if latest is not None else self.score(epoch)
        else:
            which, weights_epoch = "best", best
            model = copy.deepcopy(t.model)
            model.load_state_dict(load_checkpoint(path, map_location=t.device)["model_state"])
            metrics = self.score(epoch, model)
            del model
        if not t.dist.is_main:
            return
        own = {"run_id": t.run.run_id} if t.run.run_id else {}  # `runs` tells a copy from another run by it
        result = {"split": "test", **own, "checkpoint": which, "epoch": weights_epoch, "epochs": logs.epoch,
                  "monitor": t.cfg.checkpoint.monitor, "samples": metrics["count"], "seconds": metrics["seconds"],
                  **{f"test_{k}": _finite(v) for k, v in _metrics(metrics).items()}}
        t.run.write_test_metrics(result)
        t.reporter.metrics(epoch, "Test", _metrics(metrics), console=False)
        shown = format_metrics(_metrics(metrics))
        head = f"test ({which}.pt, epoch {weights_epoch}, {metrics['count']:,} samples): {shown}"
        t.reporter.line(f"{head}; written to {t.run.test_metrics_path}", console=f"{head} -> test_metrics.json")

    def score(self, epoch: int, model: Any = None) -> dict[str, Any]:
        """Score the test split after epoch `epoch` (0-based) was saved; a stop requested meanwhile ends the run."""
        t = self.trainer
        if self.loader is None:
            tc = t.cfg.train
            self.loader = t.data.loaders(("test",), seed=tc.seed, rank=t.dist.rank, world=t.dist.world,
                                         device=t.device, max_steps=None)["test"]
        t.reporter.start_phase("test", len(self.loader))
        start = time.perf_counter()
        try:
            metrics = t.score(self.loader, model, on_batch=lambda _: t.reporter.advance(1), after_epoch=epoch)
        finally:
            t.reporter.end_epoch()
        return {**metrics, "seconds": time.perf_counter() - start}

    def on_train_end(self) -> None:
        if self.loader is not None:
            close_loader(self.loader)
            self.loader = None


def _metrics(m: dict[str, Any]) -> dict[str, Any]:
    """The task's metrics of a scoring pass (without its sample count and duration)."""
    return {k: v for k, v in m.items() if k not in ("count", "seconds")}


def _finite(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v
