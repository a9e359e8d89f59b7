"""train.amp on the CPU (bf16 training step where the CPU has AMX, float32 scoring) and denormal
flushing on every OpenMP thread (engine/precision.py)."""

from __future__ import annotations

import math

import pytest
import torch

from deepvision.config import build_config
from deepvision.engine import precision
from deepvision.engine.callbacks import Callback
from deepvision.engine.distributed import DistInfo
from deepvision.engine.precision import amp_dtype, flush_denormals, train_amp_dtype
from deepvision.engine.resolve import resolve_run
from deepvision.engine.trainer import Trainer
from deepvision.runs.rundir import RunDir
from tests.helpers import tiny_config

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize("fast", [True, False])
def test_auto_trains_in_bf16_only_on_cpus_with_amx(monkeypatch, fast):
    monkeypatch.setattr(precision, "cpu_bf16_fast", lambda: fast)
    assert train_amp_dtype("auto", CPU) == (torch.bfloat16 if fast else None)
    assert train_amp_dtype("auto", CPU, cpu_autocast=False) is None  # a task that opts out (detection)
    assert amp_dtype("auto", CPU) is None  # scoring stays float32 on the CPU
    assert train_amp_dtype("off", CPU) is None
    assert train_amp_dtype("bf16", CPU) == amp_dtype("bf16", CPU) == torch.bfloat16
    assert train_amp_dtype("fp16", CPU) == torch.float16


def test_cpu_bf16_fast_follows_the_cpu_flags(monkeypatch):
    flags = {"amx_bf16": True, "avx512_bf16": True}
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: flags)
    assert precision.cpu_bf16_fast()
    flags["amx_bf16"] = False  # AVX512-BF16 alone (no tile unit): not measured to win, float32
    assert not precision.cpu_bf16_fast()
    monkeypatch.delattr(torch.cpu, "get_capabilities")
    assert not precision.cpu_bf16_fast()


def test_detection_opts_out_of_cpu_autocast():
    from deepvision.engine.tasks.classification import ClassificationTask
    from deepvision.engine.tasks.detection import DetectionTask

    assert ClassificationTask.cpu_autocast and not DetectionTask.cpu_autocast


class _DtypeProbe(Callback):
    """Records the dtype of the first convolution's output in training and in validation."""

    main_only = False

    def __init__(self) -> None:
        self.seen: dict[bool, set[torch.dtype]] = {True: set(), False: set()}

    def on_train_start(self) -> None:
        conv = next(m for m in self.trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
        conv.register_forward_hook(lambda m, i, out: self.seen[m.training].add(out.dtype))


@pytest.mark.parametrize(("amp", "fast", "train_dtype", "val_dtype"), [
    ("auto", True, torch.bfloat16, torch.float32),
    ("auto", False, torch.float32, torch.float32),
    ("off", True, torch.float32, torch.float32),
    ("bf16", False, torch.bfloat16, torch.bfloat16),
])
def test_trainer_steps_and_scores_in_the_chosen_dtypes(tmp_path, monkeypatch, amp, fast, train_dtype, val_dtype):
    monkeypatch.setattr(precision, "cpu_bf16_fast", lambda: fast)
    cfg = tiny_config(1, max_samples=160)
    cfg["train"]["amp"] = amp
    probe = _DtypeProbe()
    trainer = Trainer(resolve_run(build_config(cfg)), RunDir.create(tmp_path, "p"), dist=DistInfo(),
                      device=CPU, callbacks=[probe])
    result = trainer.fit()
    assert probe.seen == {True: {train_dtype}, False: {val_dtype}}
    row = result.history[0]
    assert math.isfinite(row["train_loss"]) and 0.0 <= row["val_acc"] <= 1.0
    first = trainer.run.log_path.read_text().splitlines()[0]
    note = {(torch.bfloat16, torch.float32): "amp bfloat16 (training step)", (torch.bfloat16, torch.bfloat16):
            "amp bfloat16", (torch.float32, torch.float32): "device cpu"}[train_dtype, val_dtype]
    assert first.endswith(note)
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
