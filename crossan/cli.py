"""The ``crossan`` command line: one subcommand per pipeline step, each a thin wrapper.

Each command is two functions in two places, so that ``crossan --help`` and ``crossan CMD
--help`` load no torch, transformers, peft or PyAV (``tests/test_cli_help.py`` checks every
command):

* its arguments: ``register_cli(subparsers)`` of a light *registration module* adds the
  command's subparser and names the handler as a string, ``parser.set_defaults(handler=
  "package.module:function")``. A registration module imports argparse, :mod:`crossan.argtypes`
  and torch-free modules of choices and defaults only. The commands whose work needs heavy
  packages register in :mod:`crossan.commands`; those whose work is light register in the
  module that does it (:mod:`crossan.runs.cli`, :mod:`crossan.results.cli`, ...);
* its work: the handler ``function(args: argparse.Namespace) -> int`` (the exit status), in any
  module; :func:`handler_of` imports that module only after the arguments are parsed.

Adding a command is one entry in :data:`COMMAND_MODULES` (command -> its registration module),
once that module's ``register_cli`` adds it. ``crossan CMD ...`` imports the registration
module of ``CMD`` alone; ``crossan --help`` imports all of them. A handler raises
:class:`~crossan.errors.CrossanError` for an expected failure: :func:`main` prints it as one
line, ``crossan CMD: error: ...``, and exits 1.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from crossan.errors import CrossanError
from crossan.progress import attach_console

DESCRIPTION = "The crossan pipeline: one subcommand per step (what the workflow runs)."

# subcommand -> its registration module (light: see the module docstring).
COMMAND_MODULES: dict[str, str] = {
    "demo-data": "crossan.commands.data",
    "download": "crossan.commands.data",
    "verify-data": "crossan.commands.data",
    "sequences": "crossan.commands.data",
    "item-titles": "crossan.commands.data",
    "sample-media": "crossan.commands.media",
    "tiny-encoders": "crossan.commands.encoders",
    "extract-features": "crossan.commands.encoders",
    "merge-features": "crossan.commands.encoders",
    "graph": "crossan.commands.graph",
    "params": "crossan.commands.params",
    "train": "crossan.commands.train",
    "run-name": "crossan.runs.cli",
    "plan": "crossan.results.cli",
    "table": "crossan.results.cli",
    "figure": "crossan.results.cli",
    "readme": "crossan.results.readme",
    "runs": "crossan.commands.index",
    "compare": "crossan.commands.index",
    "efficiency": "crossan.commands.efficiency",
    "cost": "crossan.runs.cost_cli",
}
# global options that take a value (before the subcommand): skipped when finding the command
VALUE_OPTIONS: tuple[str, ...] = ("--progress-fd",)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every subcommand, or only ``command``'s module's when it is known."""
    modules = [COMMAND_MODULES[command]] if command in COMMAND_MODULES else COMMAND_MODULES.values()
    parser = argparse.ArgumentParser(prog="crossan", description=DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--progress-fd", type=int, default=None, metavar="FD",
                        help="also write progress lines (epochs, batches, items) to this open file descriptor: "
                        "the workflow's rules pass the console's stderr as 3 (`3>&2 > {log} 2>&1`), so long "
                        "jobs report on the console while their log file gets everything")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in dict.fromkeys(modules):
        importlib.import_module(name).register_cli(subparsers)
    return parser


def handler_of(args: argparse.Namespace) -> Callable[[argparse.Namespace], int]:
    """The function ``args.handler`` (``"module:function"``) names, its module imported now."""
    module, _, function = args.handler.partition(":")
    return getattr(importlib.import_module(module), function)


def command_in(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names: its first word that is neither an option nor the value of
    a global option (``crossan --progress-fd 3 train ...``)."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in VALUE_OPTIONS:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: the process's arguments), run the command; its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = command_in(argv)
    args = build_parser(command).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    attach_console(args.progress_fd)
    handler = handler_of(args)
    try:
        return int(handler(args) or 0)
    except CrossanError as error:  # expected: one clear message, no traceback
        print(f"crossan {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
