"""The ``crossan`` command line: one subcommand per pipeline step, each a thin wrapper."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from crossan.errors import CrossanError

# subcommand -> the module that registers it. Only the invoked command's module is imported,
# so `crossan table` does not pay for torch and transformers (4 s per job otherwise).
COMMAND_MODULES: dict[str, str] = {
    "demo-data": "crossan.data.demo",
    "download": "crossan.data.download",
    "verify-data": "crossan.data.download",
    "sequences": "crossan.data.sequences",
    "item-titles": "crossan.data.sequences",
    "sample-media": "crossan.media.sample",
    "tiny-encoders": "crossan.encoders.tiny",
    "extract-features": "crossan.encoders.extract",
    "merge-features": "crossan.encoders.extract",
    "graph": "crossan.graph_file.build",
    "params": "crossan.models.params",
    "train": "crossan.train.run",
    "run-name": "crossan.runs.cli",
    "plan": "crossan.results.cli",
    "table": "crossan.results.cli",
    "figure": "crossan.results.cli",
    "readme": "crossan.results.readme",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every subcommand, or only ``command``'s module's when it is known."""
    modules = [COMMAND_MODULES[command]] if command in COMMAND_MODULES else COMMAND_MODULES.values()
    parser = argparse.ArgumentParser(prog="crossan", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in dict.fromkeys(modules):
        importlib.import_module(name).register_cli(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    parser = build_parser(command)
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
