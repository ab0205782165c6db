"""The ``crossan`` entry point: every subcommand reachable, and only its module imported."""

from __future__ import annotations

import subprocess
import sys

from crossan.cli import COMMAND_MODULES, build_parser


def test_every_registered_command_is_mapped_to_its_module() -> None:
    parser = build_parser()
    (commands,) = [action.choices for action in parser._actions if action.dest == "command"]
    assert sorted(commands) == sorted(COMMAND_MODULES)
    for command, module in COMMAND_MODULES.items():
        one = build_parser(command)
        (choices,) = [action.choices for action in one._actions if action.dest == "command"]
        assert command in choices, (command, module)


def test_table_command_does_not_import_torch() -> None:
    code = ("import sys; from crossan.cli import main\n"
            "try:\n    main(['table', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "False", result.stdout + result.stderr
