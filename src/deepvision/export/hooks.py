"""What each task contributes to `deepvision export`: one exporter (`export.export_run`) writes, reloads
and checks every file, and asks the run's task, through its `ExportHooks`, for the four things that
differ: the exportable module, the file's description (inputs and outputs), the check inputs, and
how to run and compare the written file.

Hooks are registered under the engine's task names (`engine.tasks`), so a run exports with the hooks
of its own `task:`; a task without hooks is refused with a one-line error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from deepvision.engine.tasks import get_task
from deepvision.errors import UserError
from deepvision.export.result import ExportResult
from deepvision.runs.loading import LoadedRun

_HOOKS: dict[str, type[ExportHooks]] = {}


@dataclass
class Parity:
    """How the written file compared with PyTorch: `ok`, the line printed, and the task's numbers."""

    ok: bool
    line: str
    failure: str  # the UserError's reason when not ok
    fields: dict[str, Any]  # ExportResult fields (classification: max_abs_diff, ...; detection: parity)


class ExportHooks:
    """A task's part of an export; subclasses override every method."""

    formats: tuple[str, ...] = ("onnx", "torchscript")
    dynamic_batch = True  # whether --dynamic-batch applies
    check_optional = False  # whether the parity check may be skipped (--no-check)

    def __init__(self, loaded: LoadedRun) -> None:
        self.loaded = loaded

    def module(self) -> nn.Module:
        """The module written to the file (in eval mode)."""
        raise NotImplementedError

    def describe(self, fmt: str, dynamic_batch: bool) -> dict[str, Any]:
        """The JSON description the file carries: task, classes, inputs, outputs."""
        raise NotImplementedError

    def samples(self, images: list[str | Path] | None) -> tuple[Any, str]:
        """The check inputs (from `images` when given) and a phrase saying where they came from."""
        raise NotImplementedError

    def write(self, fmt: str, module: nn.Module, samples: Any, path: Path, final_name: str, meta: dict[str, Any],
              dynamic_batch: bool, opset: int | None) -> Path | None:
        """Write the file to `path`; returns a sidecar weights file written beside it, if any."""
        raise NotImplementedError

    def run_file(self, fmt: str, path: Path, samples: Any, dynamic_batch: bool) -> Any:
        """The written file's outputs on the samples (the file as reloaded from disk)."""
        raise NotImplementedError

    def parity(self, module: nn.Module, samples: Any, got: Any, tolerance: float, source: str) -> Parity:
        """Compare the file's outputs with the PyTorch module's on the samples (from `source`)."""
        raise NotImplementedError

    def summary(self, result: ExportResult, dynamic_batch: bool) -> str:
        """What is printed once the file is in place."""
        return result.summary()


def register_export(task: str) -> Callable[[type[ExportHooks]], type[ExportHooks]]:
    """Class decorator: the export hooks of the engine task `task`."""

    def wrap(cls: type[ExportHooks]) -> type[ExportHooks]:
        get_task(task)  # an engine task name, or a programming error
        _HOOKS[task] = cls
        return cls

    return wrap


def hooks_for(task: str) -> type[ExportHooks]:
    """The export hooks of the engine task `task` (UserError for a task that cannot be exported)."""
    for cls in get_task(task).__mro__:  # a task derived from another (age from classification) exports like it
        name = getattr(cls, "name", None)
        if name in _HOOKS:
            return _HOOKS[name]
    raise UserError(f"runs of task '{task}' cannot be exported yet; exportable tasks: {', '.join(sorted(_HOOKS))}")
