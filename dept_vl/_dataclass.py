"""Private helpers for the config dataclasses: fields with help text, value checks, and building from dicts.

Every config (DePTConfig, ModelConfig's sections, TrainConfig, BenchConfig) declares its fields with ``setting``
so that the help text lives with the field and reaches ``--help``, checks its values with ``check_int`` /
``check_number`` / ``check_choice`` in ``__post_init__``, and is built from YAML / JSON with ``from_dict``.
"""

from __future__ import annotations

import dataclasses
import typing
from difflib import get_close_matches
from typing import Any, Iterable

from .errors import ConfigError


def setting(default: Any = dataclasses.MISSING, help: str = "", *, factory=dataclasses.MISSING,
            flag: dict | None = None):
    """A dataclass field whose ``metadata["help"]`` documents it (``--help`` shows it); ``flag``: argparse options
    of its command-line flag beyond the ones its type gives (e.g. ``{"action": "append"}``)."""
    return dataclasses.field(default=default, default_factory=factory, metadata={"help": help, "flag": flag or {}})


def help_of(field: dataclasses.Field) -> str:
    return field.metadata.get("help", "")


def check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an integer >= ``minimum`` (booleans are not integers here), else a ConfigError naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_number(name: str, value: Any, above: float | None = None, minimum: float | None = None) -> float:
    """``value`` as a float that is > ``above`` (or >= ``minimum``); booleans are refused."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    if ok and above is not None:
        ok = value > above
    if ok and minimum is not None:
        ok = value >= minimum
    if not ok:
        bound = f"> {above:g}" if above is not None else f">= {minimum:g}" if minimum is not None else "a number"
        raise ConfigError(f"{name} must be {bound}, got {value!r}")
    return float(value)


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    choices = list(choices)
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def from_dict(cls, data: dict, where: str | None = None):
    """``cls(**data)``, recursing into dataclass-typed fields; an unknown key is an error that
    names it and suggests the closest valid one. A class with ``expand_dict(data, where)`` first rewrites ``data``
    (ModelConfig: ``config: NAME`` starts from a named config); a class with ``extra_sections()`` (section name -> dataclass, e.g.
    the methods' own settings in ModelConfig) also takes those keys, into its ``sections`` field."""
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    if hasattr(cls, "expand_dict"):  # e.g. a model config that names a packaged one to start from
        data = cls.expand_dict(data, where)
    hints = typing.get_type_hints(cls)
    extra = cls.extra_sections() if hasattr(cls, "extra_sections") else {}
    names = [f.name for f in dataclasses.fields(cls) if not (extra and f.name == "sections")]
    kwargs, sections = {}, {}
    for key, value in data.items():
        if key in extra:
            sections[key] = from_dict(extra[key], value, f"{where}.{key}") if isinstance(value, dict) else value
            continue
        if key not in names:
            valid = names + list(extra)
            close = get_close_matches(str(key), valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (valid keys: {', '.join(valid)})"
            raise ConfigError(f"unknown key {where}.{key}{hint}")
        sub = dataclass_in(hints[key])
        if sub is not None and isinstance(value, dict):
            value = from_dict(sub, value, f"{where}.{key}")
        kwargs[key] = value
    if sections:
        kwargs["sections"] = sections
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{where}: {err}") from None


def dataclass_in(hint):
    """The dataclass of a ``X`` or ``X | None`` annotation, else None."""
    if dataclasses.is_dataclass(hint):
        return hint
    return next((a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)), None)
