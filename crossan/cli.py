"""The ``crossan`` command line: one subcommand per pipeline step, each a thin wrapper."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from crossan.errors import CrossanError


def build_parser() -> argparse.ArgumentParser:
    from crossan.data import demo, download, sequences
    from crossan.encoders import extract, tiny
    from crossan.media import sample
    from crossan.models import params
    from crossan.train import run

    parser = argparse.ArgumentParser(prog="crossan", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in (demo, download, sequences, sample, tiny, extract, params, run):
        module.register_cli(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except CrossanError as error:  # expected: one clear message, no traceback
        print(f"crossan {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
