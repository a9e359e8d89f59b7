"""train.amp on the CPU (float32 unless bf16 is asked for) and denormal flushing on every OpenMP
thread (engine/precision.py)."""

from __future__ import annotations

import math

import pytest
import torch

from deepvision.config import build_config
from deepvision.engine.callbacks import Callback
from deepvision.engine.distributed import DistInfo
from deepvision.engine.precision import amp_dtype, flush_denormals
from deepvision.engine.resolve import resolve_run
from deepvision.engine.trainer import Trainer
from deepvision.runs.rundir import RunDir
from tests.helpers import tiny_config

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_amp_modes_on_the_cpu_and_cuda():
    assert amp_dtype("auto", CPU) is None  # float32 on the CPU (docs/performance.md)
    assert amp_dtype("off", CPU) is None and amp_dtype("off", CUDA) is None
    assert amp_dtype("bf16", CPU) == torch.bfloat16
    assert amp_dtype("fp16", CPU) == torch.float16


class _DtypeProbe(Callback):
    """Records the dtype of the first convolution's output in training and in validation."""

    main_only = False

    def __init__(self) -> None:
        self.seen: dict[bool, set[torch.dtype]] = {True: set(), False: set()}

    def on_train_start(self) -> None:
        conv = next(m for m in self.trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
        conv.register_forward_hook(lambda m, i, out: self.seen[m.training].add(out.dtype))


@pytest.mark.parametrize(("amp", "dtype"), [("auto", torch.float32), ("off", torch.float32),
                                           ("bf16", torch.bfloat16)])
def test_trainer_steps_and_scores_in_the_chosen_dtype(tmp_path, amp, dtype):
    cfg = tiny_config(1, max_samples=160)
    cfg["train"]["amp"] = amp
    probe = _DtypeProbe()
    trainer = Trainer(resolve_run(build_config(cfg)), RunDir.create(tmp_path, "p"), dist=DistInfo(),
                      device=CPU, callbacks=[probe])
    result = trainer.fit()
    assert probe.seen == {True: {dtype}, False: {dtype}}
    row = result.history[0]
    assert math.isfinite(row["train_loss"]) and 0.0 <= row["val_acc"] <= 1.0
    first = trainer.run.log_path.read_text().splitlines()[0]
    assert first.endswith(", amp bfloat16" if dtype == torch.bfloat16 else "device cpu")
    # the weights, the optimizer state and the checkpoint stay float32 under autocast
    assert {p.dtype for p in trainer.model.parameters()} == {torch.float32}


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    flush_denormals(False)
    torch.set_num_threads(before)


def _denormals_left(n: int = 1 << 22) -> float:
    """Fraction of a large product of denormals that stays denormal (the work splits over the threads)."""
    x = torch.full((n,), 1e-40, dtype=torch.float32)
    return (x * 1.0).ne(0).float().mean().item()


def test_flush_reaches_every_openmp_thread(two_threads):
    if not torch.backends.openmp.is_available():
        pytest.skip("torch runs its CPU kernels without OpenMP here")
    assert _denormals_left() == 1.0  # the pool exists (and computes) before the flush is asked for
    assert flush_denormals(True)
    assert _denormals_left() == 0.0  # torch.set_flush_denormal alone left the worker's half: 0.5
    flush_denormals(False)
    assert _denormals_left() == 1.0
