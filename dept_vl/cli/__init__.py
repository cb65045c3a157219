"""The ``dept-vl`` command line: every subcommand is a typed config (``flags.py`` makes its flags, help, defaults
and checks from the dataclass) and a ``run`` that calls the library and prints.

    budget features eval predict serve bench-serve fetch-gguf push make-tiny-vlm   commands.py
    train                                                       train.py
    bench                                                       bench.py

Errors a user can cause end in one line on stderr and exit code 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import sys

from .._version import __version__
from ..errors import DeptVLError, TrainingInterrupted
from .bench import add_bench
from .commands import add_commands
from .flags import add_config_flags
from .parser import Parser
from .train import add_train

__all__ = ["add_config_flags", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="dept-vl", description="Decomposed Prompt Tuning (DePT) for frozen "
                                     "vision-language models.")
    parser.add_argument("--version", action="version", version=f"dept-vl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_train(sub)
    add_bench(sub)
    add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-model "Loading weights" bars; our own tqdm bars stay
    try:
        args.func(args)
    except TrainingInterrupted as err:  # a checkpoint was saved: say how to resume
        print(f"dept-vl: {err}", file=sys.stderr)
        return 130
    except (DeptVLError, OSError) as err:  # OSError: the file system refused (permissions, a file for a folder, ...)
        if args.debug:
            raise
        print(f"dept-vl: error: {' '.join(_message(err).split())}", file=sys.stderr)  # one line, always
        return 2
    except KeyboardInterrupt:
        print("dept-vl: interrupted", file=sys.stderr)
        return 130
    return 0


def _message(err: Exception) -> str:
    if isinstance(err, OSError) and not isinstance(err, DeptVLError):
        where = f"{err.filename}" + (f" -> {err.filename2}" if err.filename2 else "") if err.filename else "a file"
        return f"cannot use {where}: {err.strerror or err}"
    return str(err)
