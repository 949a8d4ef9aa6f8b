"""The `meshd` command line: global flags, one subcommand per module of `meshd/cli/`, exit codes.

Exit codes (README, CLI): 0 success; 2 usage or configuration error, with a one-line reason;
1 anything else (traceback only at --log-level DEBUG); 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import gc
import sys
import traceback
from collections.abc import Sequence

from meshd.cli import cleanup, demo, graph, keys, run, status
from meshd.cli.flags import env
from meshd.cli.logs import FORMATS, setup_logging
from meshd.errors import ConfigError

COMMANDS = (run, status, keys, demo, cleanup, graph)
"""Each module has `register(subparsers)`, which adds its parser and sets `func=handler`."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meshd", description="WireGuard encrypted-overlay mesh manager for Kubernetes"
    )
    parser.add_argument(
        "--log-format",
        choices=FORMATS,
        default=env("LOG_FORMAT", "text"),
        help="text or json (default text) [MESHD_LOG_FORMAT]",
    )
    parser.add_argument(
        "--log-level", default=env("LOG_LEVEL", "INFO"), help="DEBUG, INFO, WARNING... [MESHD_LOG_LEVEL]"
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    parser.set_defaults(func=None, collect_garbage=True)
    return parser


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run one meshd command; returns the exit code (the console script passes it to sys.exit)."""
    parser = build_parser()
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2, message already printed)
        return exc.code if isinstance(exc.code, int) else 2
    if args.collect_garbage:
        gc.enable()  # off while `meshd` started (meshd/__main__.py); `run` turns it on after its first pass
    if args.func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        setup_logging(fmt=args.log_format, level=args.log_level)
        return int(args.func(args))
    except ConfigError as exc:
        print(f"meshd: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("meshd: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"meshd: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
        if str(args.log_level).upper() == "DEBUG":
            traceback.print_exc(file=sys.stderr)
        return 1
