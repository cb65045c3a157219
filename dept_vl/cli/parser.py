"""The argument parser of ``dept-vl``: no prefix abbreviations (``--max-step`` is not ``--max-steps``), and a
mistake on the command line is one line with a suggestion (``did you mean --method?``), never the usage text."""

from __future__ import annotations

import argparse
import difflib
import re


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with ``allow_abbrev=False`` and one-line errors (exit code 2); its subcommands'
    parsers are of this class too."""

    def __init__(self, *args, **kwargs):
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        """``PROG: error: MESSAGE`` (with a suggestion for an invalid choice) and exit code 2; no usage text."""
        message = with_suggestion(message)
        advice = "" if "did you mean" in message else f"; see {self.prog} --help"
        self.exit(2, f"{self.prog.split()[0]}: error: {message}{advice}\n")

    def parse_args(self, args=None, namespace=None):
        """As argparse's, but an unknown flag is named with the closest flag of the subcommand it was given to."""
        known, unknown = self.parse_known_args(args, namespace)
        if unknown:
            chosen = self._subcommand(known)
            chosen.error(unknown_message(chosen, unknown))
        return known

    def _subcommand(self, known: argparse.Namespace) -> "Parser":
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction) and getattr(known, action.dest, None):
                return action.choices[getattr(known, action.dest)]
        return self


def flags_of(parser: argparse.ArgumentParser) -> list[str]:
    return [flag for action in parser._actions for flag in action.option_strings if flag.startswith("--")]


def unknown_message(parser: argparse.ArgumentParser, unknown: list[str]) -> str:
    """``unknown flag --methd (did you mean --method?)``, or ``unexpected argument X`` for a stray value."""
    flags = [item for item in unknown if item.startswith("-")]
    if not flags:
        return f"unexpected argument {unknown[0]!r}"
    name = flags[0].split("=", 1)[0]
    close = difflib.get_close_matches(name, flags_of(parser), n=1, cutoff=0.6)
    return f"unknown flag {name}" + (f" (did you mean {close[0]}?)" if close else "")


_INVALID_CHOICE = re.compile(r"invalid choice: '([^']*)' \(choose from (.*)\)$")


def with_suggestion(message: str) -> str:
    """argparse's message, with ``did you mean 'X'?`` after an invalid choice that is close to a valid one."""
    found = _INVALID_CHOICE.search(message)
    if not found:
        return message
    choices = [choice.strip(" '") for choice in found.group(2).split(",")]
    close = difflib.get_close_matches(found.group(1), choices, n=1, cutoff=0.5)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{message[:found.start()]}invalid choice '{found.group(1)}'{hint}; choose from {', '.join(choices)}"
