"""README holds exactly two set-up-to-result commands, and CI runs the second verbatim."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (REPO / "README.md").read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_two_commands() -> None:
    commands = readme_commands()
    assert len(commands) == 2
    assert "&& snakemake --cores 2 all &&" in commands[0]
    assert commands[0].endswith("snakemake --report results/report.html")  # tables and figures, browsable
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci_lines = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert readme_commands()[1] in ci_lines


def test_readme_says_what_to_do_after_an_interrupted_run() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## If a run is interrupted", 1)[1].split("\n## ", 1)[0]
    assert "run the same command again" in section
    assert "`snakemake --unlock`" in section and "Directory cannot be locked" in section
    assert text.index("## If a run is interrupted") < text.index("## Datasets")  # the main flow
