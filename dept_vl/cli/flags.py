"""Command-line flags from typed config dataclasses (litgpt style): a subcommand is its config's fields.

Each field becomes ``--field-name`` (typed by its annotation; ``bool`` as ``--x/--no-x``), its help the field's
``setting(help=...)`` plus its default, its argparse options the field's ``flag={...}`` (``positional: True`` for a
positional argument; ``name: X`` for a flag ``--x`` named otherwise than the field). A field without a default is a
required flag. A field whose type is itself a config
dataclass and whose ``flag`` says ``{"flatten": True}`` contributes its fields as flags of their own.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from .._dataclass import dataclass_in, help_of


def _kind(hint) -> type:
    """bool, int or float where the annotation is (or allows) one, else str."""
    return next((t for t in (bool, int, float) if t is hint or t in typing.get_args(hint)), str)


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def flag_help(field: dataclasses.Field) -> str:
    """The field's help text and, unless it says its default itself or has none worth saying, ``(default: X)``."""
    text, default = help_of(field), _default(field)
    shown = getattr(default, "to_plain", lambda: default)()
    if default is dataclasses.MISSING or shown in (None, [], {}) or "default" in text:
        return text.replace("%", "%%")
    return f"{text} (default: {shown})".strip().replace("%", "%%")


def add_config_flags(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """One flag (or positional argument) per field of the config dataclass ``cls``, but those in ``skip``; an
    omitted flag leaves the field to its default (or the recipe)."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        options = dict(field.metadata.get("flag", {}))
        if field.name in skip or options.pop("hidden", False):
            continue
        if options.pop("flatten", False):
            add_config_flags(parser, dataclass_in(hints[field.name]), skip)
            continue
        text, kind, name = flag_help(field), _kind(hints[field.name]), options.pop("name", field.name)
        if options.pop("positional", False):
            parser.add_argument(field.name, help=text, **options)
        elif kind is bool:
            parser.add_argument(f"--{name.replace('_', '-')}", action=argparse.BooleanOptionalAction,
                                default=None, help=text, **options)
        else:
            required = _default(field) is dataclasses.MISSING
            parser.add_argument(f"--{name.replace('_', '-')}", **{"type": kind, "default": None, "help": text,
                                                                      "required": required, **options})


def _dest(field: dataclasses.Field) -> str:
    """Where argparse puts the field's flag: its name, or the one its ``flag`` gives it."""
    return field.metadata.get("flag", {}).get("name", field.name)


def given(args: argparse.Namespace, cls) -> dict:
    """The fields of ``cls`` given on the command line (flattened sections as dicts of theirs)."""
    hints, out = typing.get_type_hints(cls), {}
    for field in dataclasses.fields(cls):
        if field.metadata.get("flag", {}).get("flatten"):
            section = given(args, dataclass_in(hints[field.name]))
            if section:
                out[field.name] = section
        elif getattr(args, _dest(field), None) is not None:
            out[field.name] = getattr(args, _dest(field))
    return out


def config_from(args: argparse.Namespace, cls):
    """``cls`` built from the command line: the given fields, defaults for the rest (flattened sections too)."""
    hints, values = typing.get_type_hints(cls), given(args, cls)
    for field in dataclasses.fields(cls):
        if field.metadata.get("flag", {}).get("flatten"):
            values[field.name] = dataclass_in(hints[field.name])(**values.get(field.name, {}))
    return cls(**values)


def add_command(sub, name: str, cls, run, doc: str | None = None, skip: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    """The subcommand ``name``: ``cls``'s flags, help from ``doc`` (default: ``run``'s docstring), and
    ``run(args)`` as what it does."""
    doc = doc or run.__doc__
    summary = " ".join(doc.split("\n\n")[0].split()) if doc else None
    parser = sub.add_parser(name, help=summary, description=summary)
    add_config_flags(parser, cls, skip)
    parser.set_defaults(func=run)
    return parser
