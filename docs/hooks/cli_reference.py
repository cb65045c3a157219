"""mkdocs hook: the command-line reference is generated from the code. In a page, the line
``<!-- dept-vl help -->`` becomes each subcommand's ``--help`` text, as the installed ``dept-vl`` prints it."""

from __future__ import annotations

import os

from dept_vl.cli import build_parser

MARKER = "<!-- dept-vl help -->"


def _help(parser) -> str:
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal's width: one width for the site
    return parser.format_help().rstrip()


def cli_reference() -> str:
    """Markdown: the top-level help, then a section per subcommand with its help text."""
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    parts = ["```text", _help(parser), "```"]
    for name, sub in commands.items():
        parts += ["", f"## dept-vl {name}", "", "```text", _help(sub), "```"]
    return "\n".join(parts)


def on_page_markdown(markdown: str, **_) -> str:
    return markdown.replace(MARKER, cli_reference()) if MARKER in markdown else markdown
