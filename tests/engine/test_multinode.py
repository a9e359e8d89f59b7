"""Two torchrun agents as two "nodes" on 127.0.0.1 (c10d rendezvous, gloo, one worker each): a SIGTERM
to one node stops both and the run resumes to the weights of an uninterrupted run; a worker killed
with SIGKILL comes back under `--max-restarts 1` and training continues from last.pt."""

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch
import yaml

from deepvision.runs.checkpoint import load_checkpoint
from deepvision.runs.rundir import RunDir
from tests.helpers import tiny_config

TORCHRUN = os.path.join(os.path.dirname(sys.executable), "torchrun")
SRC = str(Path(__file__).resolve().parents[2] / "src")
TIMING = {"samples_per_s", "seconds"}  # the only history columns that differ between identical runs
two_nodes = pytest.mark.skipif(not os.path.exists(TORCHRUN) or not sys.platform.startswith("linux"),
                               reason="needs torchrun and /proc")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def job_processes(job: str) -> dict[int, int]:
    """{PID: RANK} of the live processes of the torchrun job `job` (read from /proc): its workers and
    whatever they started (those inherit the environment)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = dict(item.split("=", 1) for item in (entry / "environ").read_text().split("\0") if "=" in item)
        except (OSError, ValueError):
            continue  # gone, or not ours
        if env.get("TORCHELASTIC_RUN_ID") == job and "RANK" in env:
            found[int(entry.name)] = int(env["RANK"])
    return found


def parent(pid: int) -> int:
    return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])


class Nodes:
    """Two `torchrun --nnodes 2 --nproc-per-node 1` agents running `deepvision ARGS`; output in files."""

    def __init__(self, tmp_path: Path, tag: str, args: list[str], restarts: int = 0) -> None:
        self.job = f"{tag}-{uuid.uuid4().hex[:8]}"
        self.logs = [(tmp_path / f"{self.job}-{n}.out", tmp_path / f"{self.job}-{n}.err") for n in (0, 1)]
        env = {**os.environ, "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
        if restarts:  # torch shares one store across restarts and the new workers read the old addresses
            env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] = "1"
        port = free_port()
        cmd = [TORCHRUN, "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
               "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", self.job, "--rdzv-conf",
               "join_timeout=60,close_timeout=10", "--max-restarts", str(restarts), "--monitor-interval", "0.2",
               "-m", "deepvision", *args]
        self.agents = []
        for out, err in self.logs:
            with open(out, "w") as o, open(err, "w") as e:
                self.agents.append(subprocess.Popen(cmd, stdout=o, stderr=e, env=env, cwd=tmp_path))

    def workers(self) -> dict[int, int]:
        """{RANK: PID} of the worker processes (the agents' children) now running."""
        agents = {a.pid for a in self.agents}
        found = {}
        for pid, rank in job_processes(self.job).items():
            with contextlib.suppress(OSError):
                if parent(pid) in agents:
                    found[rank] = pid
        return found

    def output(self) -> tuple[str, str]:
        return ("".join(o.read_text() for o, _ in self.logs), "".join(e.read_text() for _, e in self.logs))

    def wait_for(self, check, seconds: float, what: str) -> None:
        """Poll `check()` until true; fail when an agent exits first or after `seconds`."""
        deadline = time.monotonic() + seconds
        while not check():
            if any(a.poll() is not None for a in self.agents):
                pytest.fail(f"an agent exited before {what}:\n" + self.output()[1][-4000:])
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {seconds} s:\n" + self.output()[1][-4000:])
            time.sleep(0.1)

    def wait(self, seconds: float = 120) -> list[int]:
        deadline = time.monotonic() + seconds
        for agent in self.agents:
            try:
                agent.wait(timeout=max(deadline - time.monotonic(), 1))
            except subprocess.TimeoutExpired:
                pytest.fail(f"the agents did not end within {seconds} s:\n" + self.output()[1][-4000:])
        return [a.returncode for a in self.agents]

    def kill(self) -> None:
        """The finally-block cleanup: SIGKILL whatever of this job still runs (agents, then workers)."""
        for agent in self.agents:
            if agent.poll() is None:
                agent.kill()
                agent.wait(timeout=30)
        for pid in job_processes(self.job):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def run_nodes(tmp_path: Path, tag: str, args: list[str]) -> str:
    """Two nodes running `deepvision ARGS` to the end; both agents must exit 0. Returns stdout."""
    nodes = Nodes(tmp_path, tag, args)
    try:
        codes = nodes.wait()
    finally:
        nodes.kill()
    out, err = nodes.output()
    assert codes == [0, 0], err[-4000:]
    assert out.count("done: ") == 1 and not re.search(r'File ".*deepvision', err), err[-4000:]
    return out


def same_run(a: RunDir, b: RunDir) -> None:
    """Equal history (every metric, exactly) and bitwise-equal final weights."""
    strip = [{k: v for k, v in row.items() if k not in TIMING} for row in a.read_history()]
    assert strip == [{k: v for k, v in row.items() if k not in TIMING} for row in b.read_history()]
    wa = load_checkpoint(a.checkpoints / "last.pt")["model_state"]
    wb = load_checkpoint(b.checkpoints / "last.pt")["model_state"]
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture
def cfg_path(tmp_path):
    # 320 training samples: 5 batches of 32 per rank and epoch; 40 epochs leave time to stop the run
    cfg = tiny_config(40, batch_size=32, max_samples=320, workers=0)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
@two_nodes
def test_sigterm_to_one_node_stops_both_and_the_resumed_run_matches_an_uninterrupted_one(tmp_path, cfg_path):
    run = RunDir(tmp_path / "runs" / "mn")
    nodes = Nodes(tmp_path, "stop", ["train", str(cfg_path), "--out", "runs", "--name", "mn"])
    try:
        nodes.wait_for(lambda: (run.checkpoints / "last.pt").exists(), 120, "first checkpoint")
        ranks = nodes.workers()
        assert sorted(ranks) == [0, 1]
        signalled = [a.pid for a in nodes.agents].index(parent(ranks[1]))  # the node without rank 0
        nodes.agents[signalled].send_signal(signal.SIGTERM)
        codes = nodes.wait(90)
    finally:
        nodes.kill()
    out, err = nodes.output()
    # torchrun's own exit code and messages (plain torchrun, see README): both agents fail (1), the
    # signalled one with its SignalException; rank 0, on the other node, says once how to resume
    assert codes == [1, 1], err[-4000:]
    assert not re.search(r'File ".*deepvision', err), err[-4000:]  # no traceback out of deepvision
    assert err.count("training stopped after") == 1 and out.count("interrupted at batch") == 1, err[-4000:]
    assert f"torchrun --nnodes 2 --nproc_per_node 1 ... -m deepvision resume {Path('runs') / 'mn'}" in err
    # rank 0's agent reports its worker's SIGTERM code, or (when the signalled agent hosted the c10d store
    # and went first) torchrun's own store error: which one is a race inside torchrun
    other = nodes.logs[1 - signalled][1].read_text()
    assert re.search(r"exitcode\s*:\s*143", other) or "RendezvousConnectionError" in other, other[-4000:]
    stopped_at = len(run.read_history())
    assert 1 <= stopped_at < 40 and run.read_state()["status"] == "interrupted"
    assert load_checkpoint(run.checkpoints / "last.pt")["epoch"] == stopped_at
    assert not (run.path / "run.lock").exists()

    # both nodes resume; one epoch more, then the same two epochs from scratch for comparison
    end = stopped_at + 1
    out = run_nodes(tmp_path, "resume", ["resume", "runs/mn", "--set", f"train.epochs={end}"])
    assert out.count(f"resuming runs/mn from epoch {stopped_at}") == 1
    assert [row["epoch"] for row in run.read_history()] == list(range(1, end + 1))
    assert run.read_state()["status"] == "finished"
    run_nodes(tmp_path, "ref", ["train", str(cfg_path), "--out", "runs", "--name", "ref",
                                "--set", f"train.epochs={end}"])
    same_run(run, RunDir(tmp_path / "runs" / "ref"))


@pytest.mark.slow
@two_nodes
def test_max_restarts_brings_a_killed_worker_back_and_training_continues_from_last_pt(tmp_path, cfg_path):
    run = RunDir(tmp_path / "runs" / "el")
    args = ["train", str(cfg_path), "--out", "runs", "--name", "el", "--set", "train.epochs=12"]
    nodes = Nodes(tmp_path, "restart", args, restarts=1)
    try:
        nodes.wait_for(lambda: (run.checkpoints / "last.pt").exists(), 120, "first checkpoint")
        first = nodes.workers()
        assert sorted(first) == [0, 1]
        os.kill(first[0], signal.SIGKILL)  # rank 0: the run's writer, holding its lock
        codes = nodes.wait(120)
    finally:
        nodes.kill()
    out, err = nodes.output()
    assert codes == [0, 0], err[-4000:]
    assert out.count("done: 12 epochs") == 1 and out.count("resuming runs/el from epoch") == 1, out
    history = run.read_history()
    assert [row["epoch"] for row in history] == list(range(1, 13))  # every epoch exactly once
    assert run.read_state()["status"] == "finished"
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["el"]  # the restart made no new run


# -- the library pieces the two-node runs rely on, without processes ----------------------------------
def test_the_resume_hint_of_a_multi_node_run_names_the_nodes(monkeypatch):
    from deepvision.cli.launch import NPROC_ENV, resume_hint

    monkeypatch.delenv(NPROC_ENV, raising=False)
    for key, value in {"WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2", "GROUP_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(key, value)
    assert resume_hint("runs/a") == "torchrun --nnodes 2 --nproc_per_node 2 ... -m deepvision resume runs/a"
    monkeypatch.setenv("GROUP_WORLD_SIZE", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert resume_hint("runs/a") == "torchrun --nproc_per_node 2 -m deepvision resume runs/a"


def test_a_restarted_torchrun_attempt_takes_over_the_lock_of_an_earlier_attempt_only(tmp_path, monkeypatch):
    """Locks on another host are never taken over, except one of an earlier attempt of the same
    torchrun job: torchrun has stopped that attempt's workers before it starts the next."""
    import json

    from deepvision.errors import UserError
    from deepvision.runs.lock import RunLock

    def held_by(job, attempt):
        (tmp_path / "run.lock").write_text(json.dumps({"pid": 1, "host": "other-node", "since": "x",
                                                        "command": "deepvision train", "job": job,
                                                        "attempt": attempt}))

    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-1")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    for job, attempt in (("job-2", 0), ("job-1", 1), ("job-1", 2), (None, None)):
        held_by(job, attempt)
        with pytest.raises(UserError, match="in use by"):
            RunLock(tmp_path).acquire()
    held_by("job-1", 0)
    lock = RunLock(tmp_path).acquire()
    holder = json.loads((tmp_path / "run.lock").read_text())
    assert (holder["pid"], holder["job"], holder["attempt"]) == (os.getpid(), "job-1", 1)
    lock.release()
    assert not (tmp_path / "run.lock").exists()


def test_a_restarted_attempt_finds_the_run_its_job_created(tmp_path, monkeypatch):
    import json

    from deepvision.engine.session import _earlier_attempt_run

    def make(name, job, created, status="running"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.yaml").write_text("{}\n")
        (tmp_path / name / "run.json").write_text(json.dumps({"torchrun_job": job, "created": created,
                                                               "status": status}))

    make("mn", "job-1", "2026-01-01 10:00:00", "failed")  # an older run of a job with the same id
    make("mn-2", "job-2", "2026-01-01 11:00:00")
    make("mn-3", "job-1", "2026-01-01 12:00:00")
    make("mnx-4", "job-1", "2026-01-01 13:00:00")  # another name
    make("mn-6", "job-1", "2026-01-01 14:00:00", "finished")  # ended: never continued
    make("mn-7", "job-1", "2026-01-01 15:00:00", "interrupted")  # stopped by the user
    (tmp_path / "mn-5").mkdir()  # a start that never wrote its config
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-1")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    assert _earlier_attempt_run(tmp_path, "mn") is None  # the first attempt makes a new run
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    assert _earlier_attempt_run(tmp_path, "mn") == tmp_path / "mn-3"
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-3")
    assert _earlier_attempt_run(tmp_path, "mn") is None
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")
    assert _earlier_attempt_run(tmp_path, "mn") is None


def test_workers_of_torchrun_max_restarts_with_a_shared_store_are_told_to_turn_sharing_off(monkeypatch):
    from deepvision.engine.distributed import restart_store_note

    env = {"TORCHELASTIC_MAX_RESTARTS": "1", "TORCHELASTIC_RESTART_COUNT": "0", "TORCHELASTIC_USE_AGENT_STORE": "True"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1" in restart_store_note()
    for key, value in (("TORCHELASTIC_USE_AGENT_STORE", "False"), ("TORCHELASTIC_RESTART_COUNT", "1"),
                       ("TORCHELASTIC_MAX_RESTARTS", "0")):
        monkeypatch.setenv(key, value)
        assert restart_store_note() is None
        monkeypatch.setenv(key, env[key])
    monkeypatch.delenv("TORCHELASTIC_MAX_RESTARTS")
    assert restart_store_note() is None
