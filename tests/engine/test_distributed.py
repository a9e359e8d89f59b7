"""Device choice (engine/distributed.py): a refusal names the setting the value came from, as it was given."""

from __future__ import annotations

import pytest
import torch

from deepvision.engine.distributed import resolve_device
from deepvision.errors import UserError


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize(("spec", "option", "message"), [
    ("cuda", "--device", "--device cuda: no CUDA GPU is available; use --device cpu"),
    ("cuda:1", "--device", "--device cuda:1: no CUDA GPU is available; use --device cpu"),
    ("tpu", "--device", "--device tpu: must be auto, cpu, cuda or cuda:N"),
    ("cuda x", "--device", "--device 'cuda x': must be auto, cpu, cuda or cuda:N"),
    ("meta", "--device", "--device meta: not supported; use auto, cpu, cuda or cuda:N"),
    ("cuda", "train.device", "train.device=cuda: no CUDA GPU is available; use train.device=cpu"),
    ("tpu", "train.device", "train.device=tpu: must be auto, cpu, cuda or cuda:N"),
])
def test_refusals_name_the_option_or_key_given(no_gpu, spec, option, message):
    with pytest.raises(UserError) as info:
        resolve_device(spec, option=option)
    assert str(info.value) == message


def test_the_commands_option_is_named_by_default(no_gpu):
    with pytest.raises(UserError, match=r"^--device cuda: no CUDA GPU is available; use --device cpu$"):
        resolve_device("cuda")
    assert resolve_device("auto") == resolve_device("cpu") == torch.device("cpu")


def test_a_gpu_index_beyond_those_present_is_named(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(UserError, match=r"^--device cuda:3: only 1 GPU\(s\) present$"):
        resolve_device("cuda:3")
    with pytest.raises(UserError, match=r"^train.device=cuda:3: only 1 GPU\(s\) present$"):
        resolve_device("cuda:3", option="train.device")
    assert resolve_device("cuda") == torch.device("cuda:0")
