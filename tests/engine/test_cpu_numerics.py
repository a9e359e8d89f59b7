"""On the CPU the trainer flushes denormal floats to zero while it trains (as TensorFlow's CPU kernels do)
and gives the process its default back afterwards."""

from __future__ import annotations

import torch

from deepvision.config import build_config
from deepvision.engine.callbacks import Callback
from deepvision.engine.distributed import DistInfo
from deepvision.engine.resolve import resolve_run
from deepvision.engine.trainer import Trainer
from deepvision.runs.rundir import RunDir
from tests.helpers import tiny_config


def _denormal_survives() -> bool:
    x = torch.full((4,), 1e-40, dtype=torch.float32)  # below float32's smallest normal (1.2e-38)
    return bool((x * 1.0).ne(0).all())


class _Probe(Callback):
    main_only = False

    def __init__(self) -> None:
        self.seen: list[bool] = []

    def on_epoch_end(self, epoch, logs) -> None:
        self.seen.append(_denormal_survives())


def test_denormals_are_flushed_while_training_and_restored_after(tmp_path):
    assert _denormal_survives()
    probe = _Probe()
    run = RunDir.create(tmp_path, "d")
    trainer = Trainer(resolve_run(build_config(tiny_config(2, max_samples=160))), run, dist=DistInfo(),
                      device=torch.device("cpu"), callbacks=[probe])
    result = trainer.fit()
    assert len(result.history) == 2 and probe.seen == [False, False]
    assert _denormal_survives()
