"""Device choice and torch.distributed (DDP) set-up for runs launched by `torchrun`."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from deepvision.errors import UserError
from deepvision.safeload.text import shell_word

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def resolve_device(spec: str, local_rank: int = 0, option: str = "--device") -> torch.device:
    """'auto' -> cuda:LOCAL_RANK when available, else cpu; validates explicit choices. A refusal names the
    setting the value came from, as the user gave it: the commands' `--device` option by default, the
    `train.device` key of a training config (option="train.device")."""
    if spec == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")

    def setting(value: str) -> str:  # "--device cpu" or "train.device=cpu"
        return f"{option} {value}" if option.startswith("-") else f"{option}={value}"

    given = setting(shell_word(spec))
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UserError(f"{given}: must be auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"{given}: no CUDA GPU is available; use {setting('cpu')}")
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
        if device.index >= torch.cuda.device_count():
            raise UserError(f"{given}: only {torch.cuda.device_count()} GPU(s) present")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"{given}: Apple's MPS backend is not available here; use {setting('cpu')}")
    elif device.type not in ("cpu", "mps"):
        raise UserError(f"{given}: not supported; use auto, cpu, cuda or cuda:N")
    return device


def init_distributed(device_spec: str) -> tuple[DistInfo, torch.device]:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), resolve_device(device_spec, option="train.device")
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_spec, local_rank, option="train.device")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, device_id=device if device.type == "cuda" else None)
    return DistInfo(rank, world, local_rank), device


def restart_store_note() -> str | None:
    """A warning for workers of `torchrun --max-restarts N` whose agents share one TCPStore with them
    (torch's default): torch keeps that store across restarts, so restarted workers can read the
    addresses of the workers they replace and fail to connect. Sharing off, each attempt gets its own."""
    try:
        restarts = int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0"))
    except ValueError:
        return None
    first = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"  # said once, by the first attempt
    if restarts > 0 and first and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        return ("torchrun --max-restarts: run torchrun with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1, or "
                "restarted workers may fail to connect (torch keeps its shared store across restarts)")
    return None


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_max(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def broadcast_object(obj, src: int = 0):
    """Send a picklable object from rank `src` to all ranks (identity without DDP)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_object(obj: Any, dist_info: DistInfo) -> list[Any] | None:
    """Collect one object from every rank on rank 0 (others get None)."""
    if not dist_info.enabled:
        return [obj]
    out = [None] * dist_info.world if dist_info.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def on_main(dist_info: DistInfo, fn: Callable[[], T]) -> T:
    """Run `fn` on rank 0 and hand its result to every rank. A UserError (or OSError) raised on
    rank 0 is raised on every rank, so no rank is left waiting for the others."""
    result = error = None
    if dist_info.is_main:
        try:
            result = fn()
        except UserError as exc:
            error = str(exc)
        except OSError as exc:
            error = f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")
    if dist_info.enabled:
        result, error = broadcast_object((result, error))
    if error is not None:
        raise UserError(error)
    return result  # type: ignore[return-value]


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
