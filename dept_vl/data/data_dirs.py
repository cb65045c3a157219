"""``DataDirs``: where each task's data is, in one form, whatever way it was given.

Given as one directory (a run of one task), ``TASK=DIR`` entries (the repeated ``--data-dir``), or a mapping (a
recipe file). Local paths become absolute (relative ones against a base: the recipe file's folder, or the working
directory), so that a run's recipe works from anywhere; ``hf:<name>`` sources stay as they are. In a recipe it is
written back as it came: nothing, a directory, or a mapping.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .tasks import list_tasks


class DataDirs:
    """One data directory for every task (``default``), and / or one per task (``per_task``)."""

    def __init__(self, default: str | None = None, per_task: dict[str, str] | None = None):
        self.default, self.per_task = default, dict(per_task or {})

    @classmethod
    def parse(cls, value: Any, base: str | Path | None = None) -> "DataDirs":
        """From None, a directory, ``TASK=DIR`` / ``DIR`` entries (a list), a mapping or a DataDirs; relative local
        paths against ``base`` (default: the working directory)."""
        if isinstance(value, DataDirs):
            return value
        if value is None:
            return cls()
        entries = _entries(value)
        if any(task is None for task, _ in entries) and len(entries) > 1:
            raise ConfigError("give one --data-dir DIR (one task), or --data-dir TASK=DIR for each task")
        base = Path.cwd() if base is None else Path(base)
        absolute = {task: d if d.startswith("hf:") else os.path.abspath(base / os.path.expanduser(d))
                    for task, d in entries}
        return cls(absolute.pop(None, None), absolute)

    def for_task(self, task: str, tasks: list[str] | None = None) -> str | None:
        """The data of ``task`` (one of ``tasks``: a single directory serves a run of one task only)."""
        if task in self.per_task:
            return self.per_task[task]
        if self.default is not None and tasks is not None and len(tasks) > 1:
            raise ConfigError(f"a run of several tasks needs each one's data: --data-dir TASK=DIR for each of "
                              f"{', '.join(tasks)}")
        return self.default

    def merged(self, other: "DataDirs") -> "DataDirs":
        """These directories, where ``other`` (given later: the command line after the recipe) does not say."""
        if other.default is not None:
            return DataDirs(other.default, other.per_task)
        return DataDirs(self.default, {**self.per_task, **other.per_task})

    def to_plain(self) -> str | dict[str, str] | None:
        """As a recipe file holds it."""
        return dict(self.per_task) if self.per_task else self.default

    def __bool__(self) -> bool:
        return self.default is not None or bool(self.per_task)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DataDirs):
            other = DataDirs.parse(other) if isinstance(other, (str, dict, list)) or other is None else None
        return isinstance(other, DataDirs) and (self.default, self.per_task) == (other.default, other.per_task)

    def __repr__(self) -> str:
        return f"DataDirs({self.to_plain()!r})"


def _entries(value: Any) -> list[tuple[str | None, str]]:
    """(task or None, directory) pairs of a directory, a list of ``[TASK=]DIR`` entries or a mapping."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, dict):
        entries = list(value.items())
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        entries = [tuple(v.split("=", 1)) if v.split("=", 1)[0] in list_tasks() else (None, v) for v in value]
    else:
        raise ConfigError(f"train.data_dir must be a directory, TASK=DIR entries or a mapping, got {value!r}")
    if any(not isinstance(d, str) for _, d in entries):
        raise ConfigError(f"train.data_dir: every directory must be a string, got {value!r}")
    return entries
