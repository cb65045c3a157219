"""Private helper: a named registry (tasks, vision encoders, training methods), timm-style.

Registering a name twice replaces the first entry with a warning; an unknown name is a ConfigError that
suggests the closest registered one.
"""

from __future__ import annotations

import warnings
from difflib import get_close_matches
from typing import Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """``name -> entry`` for one kind of thing (the kind names it in error messages)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        if name in self._entries:
            warnings.warn(f"{self.kind} {name!r} was registered already; the new one replaces it", stacklevel=3)
        self._entries[name] = entry
        return entry

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        """Registered names, in the order they were registered."""
        return list(self._entries)

    def get(self, name: str) -> T:
        if name not in self._entries:
            close = get_close_matches(str(name), self._entries, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown {self.kind} {name!r}{hint}; choose from {', '.join(self.names())}")
        return self._entries[name]
