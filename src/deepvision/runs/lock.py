"""The run lock: one process at a time writes a run directory.

`run.lock` holds the writer's PID, host name, start time and command. A second `train`/`resume`
on the same run gets a one-line error naming the holder. A lock whose process is gone (same host,
dead PID: a SIGKILL or a crash) is stale and taken over. Locks from another host are never taken
over automatically: on shared file systems only the user knows whether that process still runs,
except a lock of an earlier attempt of the same torchrun job: torchrun stops every worker of an
attempt before it starts the next (`--max-restarts`), so the restarted rank 0 takes it over.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from deepvision.errors import UserError
from deepvision.safeload import read_json

LOCK_NAME = "run.lock"
MAX_PID = 2**22  # Linux's pid_max ceiling (PID_MAX_LIMIT); other systems stay far below it


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def read_holder(path: Path) -> dict[str, Any] | None:
    """The lock's content, or None when there is no lock; {} when it is unreadable (a torn write)."""
    try:
        data = read_json(path, "run lock")
    except FileNotFoundError:
        return None
    except (OSError, UserError):
        return {}
    return data if isinstance(data, dict) else {}


def elastic_attempt() -> tuple[str, int] | None:
    """(torchrun's run id, restart count) in a worker that torchrun started, else None."""
    job = os.environ.get("TORCHELASTIC_RUN_ID")
    if job is None:
        return None
    try:
        return job, int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    except ValueError:
        return job, 0


def _earlier_attempt(holder: dict[str, Any]) -> bool:
    """The holder is a worker of an earlier attempt of this process's torchrun job."""
    mine = elastic_attempt()
    if mine is None or holder.get("job") != mine[0]:
        return False
    attempt = holder.get("attempt")
    return isinstance(attempt, int) and attempt < mine[1]


def is_stale(holder: dict[str, Any]) -> bool:
    """A lock nobody holds any more: its process (on this host) is gone, or it was never written whole."""
    if not holder:
        return True
    if holder.get("host") != socket.gethostname():
        return False
    pid = holder.get("pid")
    # 0 and -1 would signal a process group or every process; a float, a bool or a huge number is no PID
    if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid <= MAX_PID:
        return True
    return not pid_alive(pid)


class RunLock:
    """`with RunLock(run_path):` holds the run for this process; re-entrant within the process."""

    def __init__(self, run_path: str | Path) -> None:
        self.path = Path(run_path) / LOCK_NAME
        self.held = False

    def acquire(self) -> RunLock:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
              "command": " ".join(["deepvision", *sys.argv[1:]])[:300]}
        elastic = elastic_attempt()
        if elastic is not None:
            me["job"], me["attempt"] = elastic
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = read_holder(self.path)
                if holder is None:
                    continue  # released meanwhile: try again
                if holder.get("pid") == os.getpid() and holder.get("host") == me["host"]:
                    return self  # this process already holds it
                if is_stale(holder) or _earlier_attempt(holder):
                    self.path.unlink(missing_ok=True)
                    continue
                raise UserError(f"{self.path.parent} is in use by `{holder.get('command', '?')}` (PID "
                                f"{holder.get('pid')} on {holder.get('host')}, since {holder.get('since')}); wait "
                                f"for it to finish or stop it, then try again") from None
            except OSError as exc:
                raise UserError(f"cannot lock {self.path.parent}: {exc.strerror or exc}") from None
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(me))
            self.held = True
            return self
        raise UserError(f"cannot lock {self.path.parent}: another process keeps taking the lock; try again")

    def release(self) -> None:
        if self.held:
            holder = read_holder(self.path)
            if holder and holder.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
