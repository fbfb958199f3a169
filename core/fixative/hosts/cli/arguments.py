"""Command-line flags derived from the options schema (``fixative.options``), and back again.

A field offered to the CLI becomes ``--name`` (or its ``flag``), with the schema's help text, choices and
default; booleans become switches (``--no-NAME`` where the default is on); list fields repeat.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, get_args

from pydantic import BaseModel

from ...options import CLI, choices_of, offered_to


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the problem and where to look, never the whole usage text."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        print(f"{self.prog}: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        raise SystemExit(2)


def _scalar(annotation) -> type:
    for candidate in (bool, int, float, str):
        if annotation is candidate or candidate in get_args(annotation):
            return candidate
    return str


def add_options(parser: argparse.ArgumentParser, model: type[BaseModel], host: str = CLI) -> list[str]:
    """Add a flag for every field ``model`` offers to ``host``; returns the field names added."""
    names = []
    for name, info in offered_to(host, model).items():
        extra = info.json_schema_extra or {}
        flag = extra.get("flag") or "--" + name.replace("_", "-")
        kind = _scalar(info.annotation)
        help_text = info.description or ""
        choices = choices_of(name, model)
        if kind is bool:
            if info.default:
                parser.add_argument(
                    "--no-" + flag.removeprefix("--"),
                    dest=name,
                    action="store_false",
                    help=f"do not {help_text}",
                )
            else:
                parser.add_argument(flag, dest=name, action="store_true", default=None, help=help_text)
        elif "list" in str(info.annotation):
            parser.add_argument(
                flag, dest=name, action="append", metavar=flag.lstrip("-").upper(), help=help_text
            )
        else:  # choices are checked by the schema (which knows aliases such as jpeg for jpg)
            metavar = "{" + ",".join(map(str, choices)) + "}" if choices else flag.lstrip("-").upper()
            shown = f" (default: {info.default})" if info.default is not None else ""
            parser.add_argument(
                flag, dest=name, type=kind, default=None, metavar=metavar, help=help_text + shown
            )
        names.append(name)
    parser.set_defaults(_option_names=names)
    return names


def values_from(args: argparse.Namespace) -> dict[str, Any]:
    """The options the command line set (None where it left the schema's default)."""
    return {
        name: getattr(args, name)
        for name in getattr(args, "_option_names", [])
        if getattr(args, name) is not None
    }
