"""``crossan --help`` and every ``crossan CMD --help`` load no torch, transformers, peft or PyAV,
and every command names a handler that exists.

Each help runs in a fresh interpreter (``sys.modules`` of this one is shared by every test). No
wall-clock limit is asserted (that depends on the machine); what makes help slow is the heavy
packages a registration module imports, and those are what is checked.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crossan.cli import COMMAND_MODULES, build_parser, handler_of

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "peft", "av")


def handlers() -> dict[str, str]:
    """Every command -> the handler (``"module:function"``) its registration names."""
    (action,) = [action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction)]
    return {command: parser.get_default("handler") for command, parser in action.choices.items()}


def help_in_a_fresh_interpreter(argv: list[str]) -> tuple[int, str, list[str]]:
    """``crossan ARGV`` (a help) through :func:`crossan.cli.main` in a new interpreter: its exit
    status, its output and the packages of :data:`HEAVY` loaded afterwards."""
    script = (
        "import json, sys\nfrom crossan.cli import main\n"
        f"try:\n    code = main({argv!r})\nexcept SystemExit as exit:\n    code = exit.code\n"
        f"print(json.dumps([code, sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))]))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert result.returncode == 0, result.stderr
    *shown, last = result.stdout.strip().splitlines()
    code, loaded = json.loads(last)
    return code, "\n".join(shown), loaded


@pytest.mark.parametrize("command", [None, *COMMAND_MODULES])
def test_help_loads_no_torch_transformers_peft_or_pyav(command: str | None) -> None:
    argv = ["--help"] if command is None else [command, "--help"]
    code, shown, loaded = help_in_a_fresh_interpreter(argv)
    assert code == 0, shown
    assert shown.startswith(f"usage: crossan {command or ''}".rstrip()), shown
    assert loaded == [], f"crossan {' '.join(argv)} loads {loaded}"


def test_every_command_names_a_handler_that_exists() -> None:
    named = handlers()
    assert sorted(named) == sorted(COMMAND_MODULES)
    for command, handler in named.items():
        assert isinstance(handler, str) and handler.count(":") == 1, (command, handler)
        assert callable(handler_of(argparse.Namespace(handler=handler))), (command, handler)

