"""The `attnkit` command: a thin skin over the Python API. A user's mistake exits with code 2 and one line."""

from __future__ import annotations

import argparse
import sys

from attnkit.errors import AttnkitError


def _info(args: argparse.Namespace) -> None:
    from attnkit.checkpoint import describe

    print(describe(args.path))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attnkit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = commands.add_parser("info", help="print a checkpoint's architecture and parameter count")
    info.add_argument("path", help="checkpoint directory")
    info.set_defaults(run=_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except AttnkitError as error:
        print(f"attnkit: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("attnkit: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
