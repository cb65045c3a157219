"""Tasks, one file each, registered by name: ``get_task("vqa").load("val", data_dir)``; and a user's own data
(``own.py``), built from the run's description of it: ``get_task("charts", own=specs)``.

A new task is one file with a ``@register_task`` Task subclass, imported here.
"""

from typing import Mapping

from .base import Example, Task, TaskData, list_tasks, register_task, registered_task
from .own import DataSpec, OwnTask
from . import caption, easyvqa, gqa, nlvr2, vqa  # noqa: F401  (registration)

__all__ = ["DataSpec", "Example", "OwnTask", "Task", "TaskData", "get_task", "list_tasks", "register_task"]


def get_task(name: str, own: Mapping[str, DataSpec] | None = None, log=None) -> Task:
    """The task ``name``: one of the run's own data sets (``own``: name -> DataSpec), else a registered task."""
    if own and name in own:
        return OwnTask(own[name], log)
    return registered_task(name)
