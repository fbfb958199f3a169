"""``fixative`` on the command line: protect, check, models, doctor, presets, serve, install.

Every user mistake ends as one line on stderr and exit code 2; inputs are never overwritten. Each
sub-command lives in its own module and imports the engine (torch) only when it runs, so ``--help``,
``--version``, ``presets`` and argument errors stay quick.
"""

from __future__ import annotations

import argparse
import os
import sys

from ...errors import FixativeError
from ...fixative_client import EngineError
from ...version import __version__
from ..quiet import quiet_libraries
from .arguments import Parser

EXIT_ERROR = 2
COMMANDS = (
    "fixative.hosts.cli.protect",
    "fixative.hosts.cli.check",
    "fixative.hosts.cli.models",
    "fixative.hosts.cli.doctor",
    "fixative.hosts.batch.cli",
    "fixative.hosts.server.cli",
    "fixative.hosts.install.cli",
)


def error(message: str) -> None:
    print(f"fixative: error: {message}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="fixative", description="Protect artworks from diffusion models.")
    parser.add_argument("--version", action="version", version=f"fixative {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show the libraries' own warnings and log lines"
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module_name in COMMANDS:
        __import__(module_name, fromlist=["register"]).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.verbose:
        quiet_libraries()
    else:
        os.environ["FIXATIVE_VERBOSE"] = "1"
    try:
        return int(args.func(args) or 0)
    except (FixativeError, EngineError) as exc:
        error(str(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        error("interrupted; no partial output was written")
        return 130
    except BrokenPipeError:  # the reader left (`fixative check ... | head`): no traceback on exit either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a command ended by SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
