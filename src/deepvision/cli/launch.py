"""`deepvision train|resume --nproc-per-node N`: torchrun's launcher, run inside this process.

Plain `torchrun` answers SIGTERM (or Ctrl+C) by printing its own warnings and a SignalException
traceback, and exits 1, even though the workers stop cleanly. Here the same launcher
(`torch.distributed.run`) runs in-process: on a signal it forwards it to the workers as torchrun does,
waits for them (torchrun's shutdown timeout, 30 s by default, then SIGKILL), and exits 128 + the
signal number (143 for SIGTERM, 130 for Ctrl+C) as a single process does; the only message is the
workers' own: rank 0's stop line with the command that resumes the run.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from deepvision.errors import UserError

NPROC_ENV = "DEEPVISION_NPROC_PER_NODE"  # set for the workers: their stop line names this launcher


def nproc_type(text: str) -> int:
    """argparse type for --nproc-per-node: a whole number of processes, 1 to 1,024, in plain ASCII digits
    (int() would also read '0_2' as 2 and other scripts' digits)."""
    from deepvision.safeload import is_plain_number_text

    try:
        if not is_plain_number_text(text):
            raise ValueError(text)
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of processes, got {text!r}") from None
    if not 1 <= n <= 1024:
        raise argparse.ArgumentTypeError(f"expected 1 to 1024 processes, got {n}")
    return n


def add_nproc_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nproc-per-node", type=nproc_type, metavar="N",
                   help="train with DDP in N processes on this machine (one per GPU, or N CPU workers with "
                        "gloo); like torchrun --nproc_per_node N, with one clean line on SIGTERM/Ctrl+C")


def should_launch(nproc: int | None) -> bool:
    """True when this process must start the N workers; False when it is one (or N is 1 or not given).
    Under another launcher (plain torchrun) the option must agree with it."""
    if not nproc:
        return False
    if "LOCAL_RANK" in os.environ:  # a worker: started by us or by torchrun
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
        if local_world != nproc:
            raise UserError(f"--nproc-per-node {nproc} under a launcher that started {local_world} process(es) "
                            "per node; leave the option out when using torchrun")
        return False
    return nproc > 1


def resume_hint(run_dir: str) -> str:
    """The command that resumes `run_dir` the way this process was launched."""
    from deepvision.safeload import shell_word

    run_dir = shell_word(run_dir)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return f"deepvision resume {run_dir}"
    if os.environ.get(NPROC_ENV):
        return f"deepvision resume {run_dir} --nproc-per-node {os.environ[NPROC_ENV]}"
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    nodes = int(os.environ.get("GROUP_WORLD_SIZE", "1"))
    if nodes > 1:  # on every node, with the rendezvous options of the interrupted launch
        return f"torchrun --nnodes {nodes} --nproc_per_node {local} ... -m deepvision resume {run_dir}"
    return f"torchrun --nproc_per_node {local} -m deepvision resume {run_dir}"


def _quiet_torch_distributed() -> None:
    """torchrun's agent logs each step of a shutdown as a warning ("Received 15 death signal", "Sending
    process N closing signal SIGTERM"), a failing worker as an error after the worker's own message,
    and warns that it set OMP_NUM_THREADS. `launch` reports what matters itself; failures of the
    launcher (a rendezvous that cannot start) still raise."""
    for name in list(logging.Logger.manager.loggerDict):
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def launch(nproc: int, command: str, argv: list[str]) -> int:
    """Run `deepvision <argv>` in `nproc` DDP processes (torchrun's launcher, standalone on this
    machine) and return the exit code to use: 0, 128 + a signal's number, or the first failing
    worker's code (its message is already printed)."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    os.environ[NPROC_ENV] = str(nproc)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # torchrun's default for several processes, without its banner
    args = torchrun.parse_args(["--standalone", "--nproc-per-node", str(nproc), "-m", "deepvision", *argv])
    _quiet_torch_distributed()
    try:
        torchrun.run(args)
    except SignalException as exc:  # the workers got the signal too and have stopped (rank 0 said so)
        return 128 + int(exc.sigval)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        code = failure.exitcode
        if code < 0:  # killed by a signal before it could say anything (the OOM killer, kill -9)
            sys.stderr.write(f"deepvision {command}: error: process of rank {rank} was killed by "
                             f"{signal.Signals(-code).name}\n")
            return 128 - code
        return code  # the worker printed its own error line (2) or stop line (130, 143)
    return 0
