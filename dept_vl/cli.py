"""The ``dept-vl`` command line: thin subcommands that parse, call the library, and print.

Errors a user can cause end in one line on stderr and exit code 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from . import __version__
from .errors import DeptVLError


def cmd_budget(args) -> None:
    """List the (l, r) pairs whose DePT budget fits m vanilla prompt tokens."""
    from .budget import budget_pairs

    print(f"{'l':>5} {'r':>5} {'params':>10}  (budget m*d = {args.m * args.hidden_size:,})")
    for pair in budget_pairs(args.hidden_size, args.max_length, args.m, step=args.step):
        print(f"{pair.prompt_length:>5} {pair.r:>5} {pair.params:>10,}")


def cmd_demo(args) -> None:
    """Train DePT end to end on easy-vqa offline (real EfficientNet-Lite0, small random T5)."""
    from .demo import DemoSettings, run_demo

    settings = DemoSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DemoSettings)})
    result = run_demo(settings, log=lambda msg: print(msg, file=sys.stderr))
    print(json.dumps(result, indent=2))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dept-vl", description="Decomposed Prompt Tuning (DePT) for frozen "
                                     "vision-language models.")
    parser.add_argument("--version", action="version", version=f"dept-vl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("budget", help=cmd_budget.__doc__, description=cmd_budget.__doc__)
    p.add_argument("--hidden-size", type=int, default=768, help="d (t5-base: 768)")
    p.add_argument("--max-length", type=int, default=256, help="s: maximum input length")
    p.add_argument("--m", type=int, default=100, help="vanilla prompt length to match")
    p.add_argument("--step", type=int, default=10, help="show every step-th prompt length")
    p.set_defaults(func=cmd_budget)

    from .demo import DemoSettings

    p = sub.add_parser("demo", help=cmd_demo.__doc__, description=cmd_demo.__doc__)
    for field in dataclasses.fields(DemoSettings):
        p.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=field.default,
                       help=f"(default: {field.default})")
    p.set_defaults(func=cmd_demo)
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
    except DeptVLError as err:
        if args.debug:
            raise
        print(f"dept-vl: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dept-vl: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
