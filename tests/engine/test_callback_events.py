"""The callback contract fails loudly: misspelled events and a TensorBoard that was asked for but is missing."""

from __future__ import annotations

import builtins
from types import SimpleNamespace

import pytest

from deepvision.engine.callbacks import Callback, CallbackList, TensorBoardLogger, default_callbacks
from deepvision.errors import UserError


class _Typo(Callback):
    def on_epoch_ends(self, epoch, logs) -> None:  # misspelled: would never run
        raise AssertionError


def test_a_misspelled_handler_is_refused_naming_the_events():
    with pytest.raises(TypeError, match=r"_Typo defines on_epoch_ends, which is no training event; events: .*"):
        CallbackList([_Typo()], trainer=None, is_main=True)


def test_dispatching_an_unknown_event_fails():
    events = CallbackList([Callback()], trainer=None, is_main=True)
    events.on_epoch_end(0, None)  # a real event dispatches
    with pytest.raises(AttributeError, match="no training event 'on_epoch_ends'"):
        events.on_epoch_ends(0, None)


def _without_tensorboard(monkeypatch):
    real = builtins.__import__

    def fake(name, *args, **kw):
        if name.startswith("torch.utils.tensorboard"):
            raise ModuleNotFoundError("No module named 'tensorboard'")
        return real(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", fake)


def test_tensorboard_true_requires_it_and_the_default_does_not(monkeypatch):
    _without_tensorboard(monkeypatch)
    with pytest.raises(UserError, match=r"train.tensorboard: true, but TensorBoard cannot be imported .*"
                                        r"deepvision\[tensorboard\]"):
        default_callbacks(SimpleNamespace(train=SimpleNamespace(tensorboard=True, test="off", test_every=0)))
    auto = default_callbacks(SimpleNamespace(train=SimpleNamespace(tensorboard=None, test="off", test_every=0)))
    logger = next(c for c in auto if isinstance(c, TensorBoardLogger))
    assert logger.writer_class is None  # no event files, no error
    off = default_callbacks(SimpleNamespace(train=SimpleNamespace(tensorboard=False, test="off", test_every=0)))
    assert not any(isinstance(c, TensorBoardLogger) for c in off)
