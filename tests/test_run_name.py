"""``crossan run-name`` names the run a dataset's plan trains, for every method without flags;
``run-name``, ``plan`` and ``train`` without a config file end in one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from crossan.cli import main
from crossan.config import load_config
from crossan.results.plan import experiment_runs
from crossan.runs.vocabulary import RUN_METHODS

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config.yaml"


def run_name(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """What ``crossan run-name ARGV`` prints."""
    assert main(["run-name", *argv]) == 0
    return capsys.readouterr().out.strip()


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_the_demo_run_of_crossan_is_the_one_its_tables_train(capsys: pytest.CaptureFixture[str]) -> None:
    """The demo's experiments set CROSSAN's lr to 1e-3 (the tool's default is 1e-4)."""
    name = run_name(capsys, "--config", str(CONFIG))
    assert name.startswith("demo__crossan-TIVA-momef-k2-h512-lr1e-03-s0-x"), name
    assert name in experiment_runs(load_config(CONFIG), "demo")


@pytest.mark.parametrize("dataset", ["demo", "microlens-100k"])
@pytest.mark.parametrize("method", RUN_METHODS)
def test_every_method_without_flags_names_a_planned_run(method: str, dataset: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    name = run_name(capsys, "--config", str(CONFIG), "--dataset", dataset, "--method", method)
    assert name.startswith(f"{dataset}__{method}"), name
    assert name in experiment_runs(load_config(CONFIG), dataset)


def test_the_datasets_own_experiments_override_the_global_ones(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "config.yaml", {
        "datasets": ["a", "b"],
        "experiments": {"seeds": [3, 4], "settings": {"crossan": {"hidden": 64, "lr": 3.0e-3, "topk": 3}}},
        "catalog": {"a": {"kind": "demo", "experiments": {"settings": {"crossan": {"lr": 5.0e-4}}}},
                    "b": {"kind": "demo", "modalities": ["text", "audio"]}},
    })
    common = ["--config", str(config)]
    assert run_name(capsys, *common, "--dataset", "a") == "a__crossan-TIVA-momef-k3-h64-lr5e-04-s3"
    # the dataset's modalities, MOMEF's k at most their number; IISAN is T+I whatever they are
    assert run_name(capsys, *common, "--dataset", "b") == "b__crossan-TA-momef-k2-h64-lr3e-03-s3"
    assert run_name(capsys, *common, "--dataset", "b", "--method", "iisan").startswith("b__iisan-TI-concat-h512-")
    # a flag given wins over the configuration
    assert (run_name(capsys, *common, "--dataset", "a", "--modalities", "ti", "--topk", "1", "--hidden", "8",
                     "--lr", "1e-4", "--seed", "0") == "a__crossan-TI-momef-k1-h8-lr1e-04-s0")


def crossan_elsewhere(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """``python -m crossan.cli ARGV`` run in ``tmp_path``, where there is no config.yaml."""
    return subprocess.run([sys.executable, "-m", "crossan.cli", *argv], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)


@pytest.mark.parametrize("argv", [["run-name"], ["plan", "table5", "--dataset", "demo"],
                                  ["train", "--run", "demo__popularity"],
                                  ["run-name", "--config", "nowhere/else.yaml"]])
def test_no_config_file_is_one_clear_line(tmp_path: Path, argv: list[str]) -> None:
    result = crossan_elsewhere(tmp_path, *argv)
    missing = argv[argv.index("--config") + 1] if "--config" in argv else "config.yaml"
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert line.startswith(f"crossan {argv[0]}: error: {missing}"), line
    assert "--config PATH" in line and "repository root" in line, line
