"""Private helper: build (nested) config dataclasses from dicts, naming unknown keys."""

from __future__ import annotations

import dataclasses
import typing
from difflib import get_close_matches

from .errors import ConfigError


def from_dict(cls, data: dict, where: str | None = None):
    """``cls(**data)``, recursing into dataclass-typed fields; an unknown key is an error that
    names it and suggests the closest valid one."""
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            close = get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (valid keys: {', '.join(names)})"
            raise ConfigError(f"unknown key {where}.{key}{hint}")
        sub = _dataclass_in(hints[key])
        if sub is not None and isinstance(value, dict):
            value = from_dict(sub, value, f"{where}.{key}")
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{where}: {err}") from None


def _dataclass_in(hint):
    """The dataclass of a ``X`` or ``X | None`` annotation, else None."""
    if dataclasses.is_dataclass(hint):
        return hint
    return next((a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)), None)
