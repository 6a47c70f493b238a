"""The `deepcompress` command: a thin front over the package's parts."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module named here has register(subparsers), which adds its command(s) and sets `func`.
COMMAND_MODULES = [
    "deepcompress.cli_data",
    "deepcompress.cli_train",
    "deepcompress.cli_compress",
    "deepcompress.cli_hardware",
    "deepcompress.cli_parallel",
    "deepcompress.cli_runtime",
    "deepcompress.cli_study",
    "deepcompress.cli_export",
    "deepcompress.cli_main",
    "deepcompress.cli_report",
]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every registered command."""
    parser = argparse.ArgumentParser(
        prog="deepcompress",
        description="Compress, run and cost deep networks (Deep Compression, EIE, DianNao).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse `argv`, run the command, turn known user errors into one-line messages."""
    from .errors import UserError

    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except UserError as exc:
        print(f"deepcompress {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
