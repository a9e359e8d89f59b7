"""Tasks: classification (built in), and every task module imported here registers itself."""

from deepvision.engine.tasks import age, classification, detection  # noqa: F401  (they register themselves)
from deepvision.engine.tasks.base import Meter, Task, TaskData
from deepvision.engine.tasks.registry import get_task, register_task, task_names

__all__ = ["Meter", "Task", "TaskData", "get_task", "register_task", "task_names"]
