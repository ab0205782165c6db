"""The ``crossan`` entry point: every subcommand reachable, and only its module imported
(``tests/test_cli_help.py``: what each help loads)."""

from __future__ import annotations

from crossan.cli import COMMAND_MODULES, build_parser


def test_every_registered_command_is_mapped_to_its_module() -> None:
    parser = build_parser()
    (commands,) = [action.choices for action in parser._actions if action.dest == "command"]
    assert sorted(commands) == sorted(COMMAND_MODULES)
    for command, module in COMMAND_MODULES.items():
        one = build_parser(command)
        (choices,) = [action.choices for action in one._actions if action.dest == "command"]
        assert command in choices, (command, module)

