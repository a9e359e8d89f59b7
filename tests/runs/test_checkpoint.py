import errno
import os
import pickle
import random

import numpy as np
import pytest
import torch

from deepvision.errors import UserError
from deepvision.models.weights import load_state_dict_file
from deepvision.runs import checkpoint as C


def payload(value: float) -> dict:
    return {"format": C.FORMAT, "version": C.VERSION, "epoch": 1, "model": {"name": "x"},
            "model_state": {"w": torch.full((3,), value)}}


def test_atomic_save_and_load(tmp_path):
    path = tmp_path / "a.pt"
    C.atomic_save(payload(1.0), path)
    assert C.load_checkpoint(path)["model_state"]["w"].tolist() == [1.0, 1.0, 1.0]
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]  # no temp files left


def test_disk_full_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    C.atomic_save(payload(1.0), path)

    def full_disk(obj, f):
        f.write(b"partial bytes")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(UserError, match="No space left on device.*previous file is intact"):
        C.atomic_save(payload(2.0), path)
    monkeypatch.undo()
    assert C.load_checkpoint(path)["model_state"]["w"][0] == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_not_a_checkpoint(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(UserError, match="is not a readable checkpoint"):
        C.load_checkpoint(text)
    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(2)}, plain)
    with pytest.raises(UserError, match="not a deepvision checkpoint"):
        C.load_checkpoint(plain)
    assert set(load_state_dict_file(plain)) == {"weight"}  # but it is usable as pretrained weights
    with pytest.raises(UserError, match="checkpoint not found"):
        C.load_checkpoint(tmp_path / "missing.pt")


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_loading_never_unpickles_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": C.FORMAT, "model_state": Evil()}, f)
    with pytest.raises(UserError):
        C.load_checkpoint(path)
    with pytest.raises(UserError):
        load_state_dict_file(path)
    assert not (tmp_path / "pwned").exists()


def test_rng_state_round_trip_is_weights_only_safe(tmp_path):
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    state = C.rng_state()
    C.atomic_save({"rng": state}, tmp_path / "r.pt")
    loaded = torch.load(tmp_path / "r.pt", weights_only=True)["rng"]
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    C.set_rng_state(loaded)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_a_torch_save_holding_code_is_named_for_what_it_is(tmp_path, monkeypatch):
    """torch.save of a checkpoint with a pickled object: refused in one line that says so, without
    quoting torch's advice (which would be the unsafe weights_only=False)."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"format": C.FORMAT, "model_state": {}, "evil": Evil()}, path)
    with pytest.raises(UserError) as info:
        C.load_checkpoint(path)
    message = str(info.value)
    assert "holds Python objects besides tensors (pickled code, which deepvision never runs); refused" in message
    assert "weights_only" not in message and "\n" not in message
    assert not (tmp_path / "pwned").exists()
