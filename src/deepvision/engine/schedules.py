"""Learning-rate schedules as pure functions of training progress.

`lr = schedule(epoch, fraction)` depends only on the position in training (0-based epoch plus the
fraction of it done), so a resumed run follows exactly the schedule of an uninterrupted one.
Piecewise ranges use the reference's 1-based inclusive epochs: "1-50: 1e-2" means epochs 1..50.
"""

from __future__ import annotations

import math
import re
from typing import Any

from deepvision.config.names import register_names
from deepvision.config.schema import SCHEDULE_READ_BY, ScheduleConfig, refuse_unread_options
from deepvision.errors import UserError, unknown
from deepvision.safeload import is_plain_number_text

SCHEDULES = ("constant", "piecewise", "step", "multistep", "poly", "cosine")
register_names("schedule.name", "schedule", lambda: SCHEDULES)
_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+))?\s*:\s*(\S+)\s*$")


def _ascii(value: Any) -> Any:
    """`value`, refused (ValueError) when it is text beyond an ASCII number (`is_plain_number_text`)."""
    if isinstance(value, str) and not is_plain_number_text(value):
        raise ValueError(value)
    return value


def parse_ranges(ranges: list[Any]) -> list[tuple[int, int, float]]:
    """["1-50: 1e-2", [51, 65, 1e-3], {"epochs": "66-80", "lr": 1e-4}] -> [(1, 50, 0.01), ...]."""
    out: list[tuple[int, int, float]] = []
    for item in ranges:
        try:
            if isinstance(item, str):
                m = _RANGE.match(item)
                if not m:
                    raise ValueError
                start, end, lr = int(_ascii(m[1])), int(_ascii(m[2] or m[1])), float(_ascii(m[3]))
            elif isinstance(item, dict) and "epochs" in item:
                first, _, last = str(item["epochs"]).partition("-")
                start, end, lr = int(_ascii(first)), int(_ascii(last or first)), float(_ascii(item["lr"]))
            elif isinstance(item, dict) and len(item) == 1:  # unquoted YAML `- 1-50: 0.01`
                (span, rate), = item.items()
                first, _, last = str(span).partition("-")
                start, end, lr = int(_ascii(first)), int(_ascii(last or first)), float(_ascii(rate))
            else:
                start, end, lr = int(_ascii(item[0])), int(_ascii(item[1])), float(_ascii(item[2]))
        except (ValueError, TypeError, KeyError, IndexError):
            raise UserError(f"schedule.ranges entry {item!r} must look like '1-50: 0.01' or [1, 50, 0.01]") from None
        if end < start or lr <= 0:
            raise UserError(f"schedule.ranges entry {item!r}: need start <= end and a positive rate")
        out.append((start, end, lr))
    out.sort()
    if not out:
        raise UserError("schedule.name is piecewise but schedule.ranges is empty; e.g. ranges: ['1-50: 0.01']")
    if out[0][0] != 1:
        raise UserError(f"schedule.ranges must start at epoch 1, first range starts at {out[0][0]}")
    for (_, end, _), (start, _, _) in zip(out, out[1:]):
        if start != end + 1:
            raise UserError(f"schedule.ranges must be contiguous: a range ends at {end} and the next starts at {start}")
    return out


class Schedule:
    """Callable `(epoch, fraction) -> lr` built from a ScheduleConfig."""

    def __init__(self, cfg: ScheduleConfig, base_lr: float, epochs: int) -> None:
        self.name = cfg.name.lower()
        if self.name not in SCHEDULES:
            raise unknown("schedule", cfg.name, SCHEDULES)
        self.cfg, self.base_lr, self.epochs = cfg, base_lr, epochs
        refuse_unread_options(cfg, self.name, SCHEDULE_READ_BY, "schedule", "schedule")
        if cfg.warmup_epochs == 0 and cfg.warmup_start_factor != ScheduleConfig().warmup_start_factor:
            raise UserError(f"schedule.warmup_start_factor is read only with schedule.warmup_epochs > 0 (no warm-up "
                            f"now); set the warm-up's length, or leave the factor out (on resume: --set "
                            f"schedule.warmup_start_factor={ScheduleConfig().warmup_start_factor})")
        self.ranges = parse_ranges(cfg.ranges) if self.name == "piecewise" else []
        if self.name == "step" and cfg.step_size <= 0:
            raise UserError("schedule.step_size must be a positive number of epochs")
        if cfg.warmup_epochs < 0 or not 0 < cfg.warmup_start_factor <= 1:
            raise UserError("schedule.warmup_epochs must be >= 0 and warmup_start_factor in (0, 1]")

    @property
    def per_iteration(self) -> bool:
        """Whether the rate changes within an epoch (warm-up, poly, cosine)."""
        return self.cfg.warmup_epochs > 0 or self.name in ("poly", "cosine")

    def __call__(self, epoch: int, fraction: float = 0.0) -> float:
        cfg, t = self.cfg, epoch + fraction
        if self.name == "constant":
            lr = self.base_lr
        elif self.name == "piecewise":
            lr = self.ranges[-1][2]
            for start, end, rate in self.ranges:
                if start <= epoch + 1 <= end:
                    lr = rate
                    break
        elif self.name == "step":
            lr = self.base_lr * cfg.gamma ** (epoch // cfg.step_size)
        elif self.name == "multistep":
            lr = self.base_lr * cfg.gamma ** sum(1 for m in cfg.milestones if epoch + 1 >= m)
        else:
            progress = min(t / max(self.epochs, 1e-9), 1.0)
            if self.name == "poly":
                factor = (1.0 - progress) ** cfg.power
            else:
                factor = 0.5 * (1.0 + math.cos(math.pi * progress))
            lr = cfg.min_lr + (self.base_lr - cfg.min_lr) * factor
        if cfg.warmup_epochs > 0 and t < cfg.warmup_epochs:
            start = cfg.warmup_start_factor
            lr *= start + (1.0 - start) * t / cfg.warmup_epochs
        return lr

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "base_lr": self.base_lr, "epochs": self.epochs, "ranges": self.ranges}
