"""Tasks, one file each, registered by name: ``get_task("vqa").load("val", data_dir)``.

A new task is one file with a ``@register_task`` Task subclass, imported here.
"""

from .base import Example, Task, TaskData, get_task, list_tasks, register_task
from . import caption, easyvqa, gqa, nlvr2, vqa  # noqa: F401  (registration)

__all__ = ["Example", "Task", "TaskData", "get_task", "list_tasks", "register_task"]
