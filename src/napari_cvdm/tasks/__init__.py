"""One object per task (``sr``, ``qpi``): the only place that knows which task it is.

>>> from napari_cvdm.tasks import get_task
>>> get_task("sr").gain
2
"""

from __future__ import annotations

from .base import MIN_SIDE, Conditioned, Method, Task
from .qpi import QPITask
from .sr import SRTask

__all__ = ["Task", "SRTask", "QPITask", "Conditioned", "Method", "TASKS", "get_task", "MIN_SIDE"]

#: The tasks by name (model files record the name).
TASKS: dict[str, Task] = {task.name: task for task in (SRTask(), QPITask())}


def get_task(task: str | Task) -> Task:
    """The task object of ``task`` (a name or a task).

    Raises
    ------
    ValueError
        An unknown name.
    """
    if isinstance(task, Task):
        return task
    try:
        return TASKS[task]
    except (KeyError, TypeError):
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}") from None
