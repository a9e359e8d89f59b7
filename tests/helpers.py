"""Helpers shared by tests (import as `from tests.helpers import ...`)."""

from __future__ import annotations

import contextlib
import gzip
import io
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def write_idx(path: Path, array: np.ndarray, magic: int) -> Path:
    """Write an idx file (gzip when the name ends in .gz)."""
    header = struct.pack(">i", magic) + b"".join(struct.pack(">i", d) for d in array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(data)
    return path


def tiny_config(out_epochs: int = 2, **data) -> dict:
    """A fast digits/LeNet config for engine tests."""
    cfg = {
        "name": "tiny",
        "model": {"name": "lenet"},
        "data": {"source": "digits", "train": "all", "test": None, "val_fraction": 0.2, "batch_size": 64, **data},
        "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
        "train": {"epochs": out_epochs, "seed": 0, "log_every": 5, "tensorboard": False},
    }
    return cfg


def make_image_folder(root: Path, n_per_class: int = 40, size: int = 32, seed: int = 0,
                      classes: tuple[str, ...] = ("horizontal", "vertical"), ext: str = ".png") -> Path:
    """An ImageFolder tree of RGB images whose class is the stripe direction (easy to learn)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            period = int(rng.integers(4, 9))
            ramp = (np.arange(size) // (period // 2)) % 2 * 200 + 25
            img = np.repeat(ramp[:, None], size, 1) if c == 0 else np.repeat(ramp[None, :], size, 0)
            if c >= 2:
                img = np.full((size, size), 128)
            noise = rng.integers(-20, 21, (size, size, 3))
            rgb = np.clip(img[:, :, None] + noise, 0, 255).astype(np.uint8)
            Image.fromarray(rgb).save(folder / f"{name}_{i:03d}{ext}")
    return root


def run_main(*args: str) -> tuple[int, str, str]:
    """Run `deepvision ARGS...` in-process, capturing its output where the capsys fixture is not at hand
    (module-scoped fixtures); returns (exit code, stdout, stderr)."""
    from deepvision.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def stop_group_when(args: list[str], ready: Any, sig: int, cwd: Path | None = None) -> tuple[int, str]:
    """Run `deepvision ARGS...` in a new process group and send `sig` to the whole group (as Ctrl+C or
    `timeout` do) once `ready` holds: a callable polled until it returns true, or a text that a line of
    stderr contains. Returns (exit code, what stderr received after that line)."""
    import os
    import subprocess
    import sys
    import time

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}  # no thread note beside the one line
    proc = subprocess.Popen([sys.executable, "-m", "deepvision", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, cwd=cwd, env=env)
    seen = ""
    try:
        if isinstance(ready, str):
            for line in proc.stderr:
                seen += line
                if ready in line:
                    break
        else:
            deadline = time.time() + 60
            while not ready() and proc.poll() is None and time.time() < deadline:
                time.sleep(0.01)
        assert proc.poll() is None, f"the command ended before the signal: {seen}{proc.stderr.read()}"
        os.killpg(proc.pid, sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
    return proc.returncode, err


def stop_on_call(monkeypatch: Any, target: str, call: int, stop: type[BaseException]) -> None:
    """Make the function `target` ("module.name") raise `stop` on its `call`-th call, as a signal would mid-write."""
    import importlib

    module, name = target.rsplit(".", 1)
    real = getattr(importlib.import_module(module), name)
    calls = [0]

    def stopping(*args, **kwargs):
        calls[0] += 1
        if calls[0] == call:
            raise stop
        return real(*args, **kwargs)

    monkeypatch.setattr(f"{module}.{name}", stopping)


def stopped_both_ways(monkeypatch: Any, run_cli: Any, argv: list[Any], target: str, call: int) -> Iterator[str]:
    """Run `deepvision ARGV` stopped at `target`'s `call`-th call, first as by SIGTERM, then as by Ctrl+C;
    each must end with its one line and exit code. Yields after each run ("SIGTERM", "SIGINT") so that the
    caller checks what the stop left."""
    from deepvision.errors import Terminated

    command = f"deepvision {argv[0]} {argv[1]}"
    for stop, name, code, line in ((Terminated, "SIGTERM", 143, f"{command}: terminated (SIGTERM); unfinished "
                                    f"files were removed\n"), (KeyboardInterrupt, "SIGINT", 130, "interrupted\n")):
        stop_on_call(monkeypatch, target, call, stop)
        got, _, err = run_cli(*argv)
        assert (got, err) == (code, line)
        monkeypatch.undo()
        yield name



class _FullDisk:
    """A file on a disk that fills up `room` bytes into it: a write reaching past that stops there and the
    next fails with ENOSPC, as on a full disk. Everything else goes to the real file `f`."""

    def __init__(self, f: Any, room: int) -> None:
        self.f, self.room = f, room

    def write(self, data: Any) -> int:
        import errno
        import os

        left = self.room - self.f.tell()
        if left <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.f.write(memoryview(data)[:left])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.f, name)


def fill_disk_after(monkeypatch: Any, room: int) -> None:
    """Make every HDF5 file deepvision writes meet a full disk `room` bytes into it."""
    from deepvision.datasets import hdf5

    real = hdf5._GuardedFile.__init__

    def on_full_disk(self: Any, path: Path) -> None:
        real(self, path)
        self.f = _FullDisk(self.f, room)

    monkeypatch.setattr(hdf5._GuardedFile, "__init__", on_full_disk)


def encrypted_flag(path: Path) -> Path:
    """`path` (a stored zip) with the "encrypted" flag set on every member, as a password-protected zip has it."""
    data = bytearray(path.read_bytes())
    for sig, off in ((b"PK\x01\x02", 8), (b"PK\x03\x04", 6)):
        at = data.find(sig)
        while at >= 0:
            data[at + off] |= 1
            at = data.find(sig, at + 4)
    path.write_bytes(bytes(data))
    return path
