"""envs/*.yaml and pyproject.toml must not drift apart.

pyproject.toml's ``dependencies`` are the light core every stage imports; each pipeline stage
has an extra of the same name as its environment (envs/<stage>.yaml), which lists the core and
that extra at pyproject's pins and installs ``crossan[<stage>]`` last.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent

# Extras that no stage environment installs (and `all` leaves out).
NOT_A_STAGE = {"test", "audio", "all"}
# Packages only the model stage may pull in.
HEAVY = {"torch", "transformers", "peft", "torchvision", "torchaudio", "accelerate"}
# Environments (and their extras) that must stay free of them.
LIGHT_ENVS = ("data", "report")


def _name(requirement: str) -> str:
    return re.split(r"[=<>!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _self_extras(requirement: str) -> set[str] | None:
    """``crossan[a,b]`` -> ``{"a", "b"}``; ``None`` for any other requirement."""
    match = re.fullmatch(r"crossan\[([^\]]*)\]", requirement.replace(" ", ""))
    return {extra for extra in match.group(1).split(",") if extra} if match else None


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def extras() -> dict[str, list[str]]:
    return project()["optional-dependencies"]


def core() -> dict[str, str]:
    return {_name(req): req for req in project()["dependencies"]}


def closure(extra: str, seen: frozenset[str] = frozenset()) -> dict[str, str]:
    """name -> requirement of everything ``pip install crossan[extra]`` pulls from pyproject:
    the core, the extra's packages and, recursively, the extras it names as ``crossan[...]``."""
    assert extra in extras(), f"pyproject.toml has no extra {extra!r}"
    assert extra not in seen, f"extra {extra!r} names itself"
    pins = dict(core())
    for requirement in extras()[extra]:
        named = _self_extras(requirement)
        if named is None:
            pins[_name(requirement)] = requirement
        else:
            for other in named:
                pins.update(closure(other, seen | {extra}))
    return pins


def all_pins() -> dict[str, str]:
    """Every pinned requirement in pyproject (core and every extra, test included)."""
    pins = dict(core())
    for name, requirements in extras().items():
        if name == "audio":  # unpinned on purpose, see pyproject.toml
            continue
        pins.update({_name(r): r for r in requirements if _self_extras(r) is None})
    return pins


def env_files() -> list[Path]:
    files = sorted((REPO / "envs").glob("*.yaml"))
    assert files, "no environment specs in envs/"
    return files


def env_pip_requirements(path: Path) -> list[str]:
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    pip_blocks = [d["pip"] for d in spec["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_blocks) == 1, f"{path.name}: expected one pip block"
    return pip_blocks[0]


def test_every_dependency_is_pinned_exactly() -> None:
    for requirement in all_pins().values():
        assert re.fullmatch(r"[A-Za-z0-9._-]+==[A-Za-z0-9.+!-]+", requirement), (
            f"pyproject.toml: {requirement} is not pinned exactly"
        )


def test_an_extra_pins_a_package_as_the_others_do() -> None:
    seen: dict[str, str] = dict(core())
    for name, requirements in extras().items():
        for requirement in requirements:
            if _self_extras(requirement) is not None:
                continue
            package = _name(requirement)
            assert package not in core(), f"extra {name!r} repeats core dependency {package}"
            if package in seen:
                assert seen[package] == requirement, f"extra {name!r}: {requirement} != {seen[package]}"
            seen[package] = requirement


def test_every_env_installs_crossan_with_its_own_extra_last() -> None:
    for path in env_files():
        requirements = env_pip_requirements(path)
        assert path.stem in extras() and path.stem not in NOT_A_STAGE, (
            f"{path.name}: pyproject.toml has no stage extra {path.stem!r}"
        )
        assert requirements[-1] == f"--editable ..[{path.stem}]", (
            f"{path.name}: must install crossan[{path.stem}] itself last, not {requirements[-1]!r}"
        )
        assert not any("--editable" in r or r.startswith("-e") for r in requirements[:-1]), path.name


def test_every_env_lists_exactly_its_extras_pins() -> None:
    pins = all_pins()
    for path in env_files():
        listed = env_pip_requirements(path)[:-1]
        for requirement in listed:
            name = _name(requirement)
            assert name in pins, f"{path.name}: {name} is not a dependency in pyproject.toml"
            assert requirement == pins[name], f"{path.name}: {requirement} != pyproject's {pins[name]}"
        assert len(listed) == len(set(map(_name, listed))), f"{path.name}: a package listed twice"
        wanted = closure(path.stem)
        assert {_name(r): r for r in listed} == wanted, (
            f"{path.name}: lists {sorted(map(_name, listed))}, crossan[{path.stem}] is {sorted(wanted)}"
        )


def test_data_and_report_envs_install_no_torch() -> None:
    for stage in LIGHT_ENVS:
        path = REPO / "envs" / f"{stage}.yaml"
        listed = {_name(r) for r in env_pip_requirements(path)[:-1]}
        assert not listed & HEAVY, f"{path.name} lists {sorted(listed & HEAVY)}"
        pulled = set(closure(stage))
        assert not pulled & HEAVY, f"crossan[{stage}] pulls in {sorted(pulled & HEAVY)}"
    assert not set(core()) & HEAVY, f"the core dependencies pull in {sorted(set(core()) & HEAVY)}"


def test_all_extra_covers_every_stage() -> None:
    named: set[str] = set()
    for requirement in extras()["all"]:
        assert _self_extras(requirement) is not None, f"extra 'all' lists {requirement}, not crossan[...]"
        named |= _self_extras(requirement)
    assert named == set(extras()) - NOT_A_STAGE
    everything = closure("all")
    for stage in named:
        assert set(closure(stage)) <= set(everything)


def test_every_stage_extra_has_an_env() -> None:
    assert {path.stem for path in env_files()} == set(extras()) - NOT_A_STAGE


def test_every_rule_env_exists() -> None:
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for env in re.findall(r'"\.\./\.\./(envs/[^"]+)"', smk.read_text(encoding="utf-8")):
            assert (REPO / env).is_file(), f"{smk.name} refers to missing {env}"


def test_torchaudio_and_torchvision_are_not_dependencies() -> None:
    installed = set(closure("all")) | {_name(r) for r in extras()["test"]}
    assert "torchvision" not in installed
    assert "torchaudio" not in installed
