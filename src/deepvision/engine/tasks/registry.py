"""Tasks by name (the config's top-level `task:` key)."""

from __future__ import annotations

from collections.abc import Callable

from deepvision.config.names import register_names
from deepvision.engine.tasks.base import Task
from deepvision.errors import unknown

_TASKS: dict[str, type[Task]] = {}
register_names("task", "task", lambda: _TASKS)


def register_task(name: str) -> Callable[[type[Task]], type[Task]]:
    """Class decorator: make `cls` the task of `task: name`."""

    def wrap(cls: type[Task]) -> type[Task]:
        if name in _TASKS:
            raise ValueError(f"task {name!r} registered twice")
        cls.name = name
        _TASKS[name] = cls
        return cls

    return wrap


def get_task(name: str) -> type[Task]:
    if name not in _TASKS:
        raise unknown("task", name, _TASKS)
    return _TASKS[name]


def task_names() -> list[str]:
    return sorted(_TASKS)
