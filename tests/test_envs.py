"""envs/*.yaml and pyproject.toml must not drift apart."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[=<>!~\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def project_pins() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {_name(req): req for req in project["dependencies"]}


def env_pip_requirements(path: Path) -> list[str]:
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    pip_blocks = [d["pip"] for d in spec["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_blocks) == 1, f"{path.name}: expected one pip block"
    return pip_blocks[0]


def test_every_dependency_is_pinned_exactly() -> None:
    for name, requirement in project_pins().items():
        assert "==" in requirement, f"pyproject.toml: {requirement} is not pinned"


def test_envs_use_the_package_pins_and_install_crossan() -> None:
    pins = project_pins()
    env_files = sorted((REPO / "envs").glob("*.yaml"))
    assert env_files, "no environment specs in envs/"
    for path in env_files:
        requirements = env_pip_requirements(path)
        assert requirements[-1] == "--editable ..", f"{path.name}: must install crossan itself last"
        for requirement in requirements[:-1]:
            name = _name(requirement)
            assert name in pins, f"{path.name}: {name} is not a dependency in pyproject.toml"
            assert requirement == pins[name], f"{path.name}: {requirement} != pyproject's {pins[name]}"


def test_envs_together_list_exactly_the_package_dependencies() -> None:
    listed = {
        _name(requirement)
        for path in (REPO / "envs").glob("*.yaml")
        for requirement in env_pip_requirements(path)[:-1]
    }
    assert listed == set(project_pins())


def test_every_rule_env_exists() -> None:
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for env in re.findall(r'"\.\./\.\./(envs/[^"]+)"', smk.read_text(encoding="utf-8")):
            assert (REPO / env).is_file(), f"{smk.name} refers to missing {env}"


def test_torchaudio_and_torchvision_are_not_dependencies() -> None:
    assert "torchvision" not in project_pins()
    assert "torchaudio" not in project_pins()
