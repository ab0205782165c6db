"""Import weight is tested, not hoped for: what plans, names and tabulates runs loads no torch,
and a cached-state run loads no transformers or peft.

Each check runs in a fresh interpreter (``sys.modules`` of this one is shared by every test)
and lists the heavy packages it finds loaded afterwards.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli_help import handlers
from test_train_data import random_features, random_sequences, write_dataset, write_features

from crossan.cli import COMMAND_MODULES

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
TORCH = ("torch", "transformers", "peft", "accelerate")
MODEL_LIBRARIES = ("transformers", "peft", "accelerate")


def loaded_after(code: str, packages: tuple[str, ...]) -> list[str]:
    """The top-level ``packages`` that running ``code`` in a fresh interpreter loads."""
    script = (f"{code}\nimport sys, json\n"
              f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(packages)!r}))))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": f"{ROOT}:{TESTS}"}, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def workflow_imports() -> list[str]:
    """Every ``crossan`` module the Snakefile and its rule files import."""
    texts = [(ROOT / "Snakefile").read_text(encoding="utf-8")]
    texts += [path.read_text(encoding="utf-8") for path in sorted((ROOT / "workflow/rules").glob("*.smk"))]
    modules = {m for text in texts for m in re.findall(r"^from (crossan[\w.]*) import", text, re.M)}
    assert "crossan.runs.specs" in modules and "crossan.results.plan" in modules
    return sorted(modules)


def test_the_issue_command_passes() -> None:
    """The acceptance command of the architecture issue, verbatim."""
    command = ("import sys, crossan.runs, crossan.results.plan; "
               "assert not any(m == 'torch' or m.startswith('torch.') for m in sys.modules)")
    result = subprocess.run([sys.executable, "-c", command], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr


def test_the_planning_layer_loads_no_torch() -> None:
    modules = ["crossan.runs.vocabulary", "crossan.runs.settings", "crossan.runs.run_config", "crossan.runs.identity",
               "crossan.runs.specs", "crossan.runs.folder", "crossan.runs.cli", "crossan.results.plan",
               "crossan.results.captions"]
    assert loaded_after("\n".join(f"import {m}" for m in modules), TORCH) == []


def test_the_workflow_loads_no_torch() -> None:
    """Snakemake imports these to build its job graph, in an environment without torch
    (``envs/workflow.yaml``)."""
    assert loaded_after("\n".join(f"import {m}" for m in workflow_imports()), TORCH) == []


@pytest.mark.parametrize("command", ["demo-data", "download", "verify-data", "sequences", "sample-media", "plan",
                                     "table", "figure", "run-name"])
def test_data_and_report_commands_load_no_torch(command: str) -> None:
    """Their environments (``envs/data.yaml``, ``envs/report.yaml``) have no torch: neither the
    module that registers the command nor the one that does its work loads it."""
    work = handlers()[command].partition(":")[0]
    assert loaded_after(f"import {COMMAND_MODULES[command]}\nimport {work}", TORCH) == []


def test_a_cached_state_run_loads_no_transformers_or_peft(tmp_path: Path) -> None:
    """A whole CROSSAN run through ``crossan train``, then the modules it loaded."""
    n_items = 20
    data = write_dataset(tmp_path / "data", random_sequences(24, n_items, seed=1), n_items)
    ids = [str(100 + i) for i in range(1, n_items + 1)]
    for seed, name in enumerate(("text", "image")):
        write_features(tmp_path / "features" / f"{name}.h5", *random_features(n_items, 2, 8, seed), ids)
    name = "t__crossan-TI-momef-k2-h4-lr1e-03-s0-x"
    training = {"max_epochs": 1, "batch_size": 8}
    code = (
        "from crossan.runs.identity import run_name\n"
        "from crossan.runs.run_config import RunConfig\n"
        f"run = RunConfig(data_dir={str(data)!r}, features_dir={str(tmp_path / 'features')!r}, out_dir='', dataset='t',"
        " method='crossan', modalities='TI', hidden=4, lr=1e-3, max_epochs=1, batch_size=8)\n"
        "from crossan.cli import main\n"
        f"name = run_name(run)\n"
        f"assert name.startswith({name!r}), name\n"
        f"assert main(['train', '--run', name, '--training', {json.dumps(training)!r}, '--data', {str(data)!r},"
        f" '--features', {str(tmp_path / 'features')!r}, '--out', {str(tmp_path / 'runs')!r} + '/' + name,"
        " '--device', 'cpu', '--threads', '1']) == 0\n"
    )
    assert loaded_after(code, MODEL_LIBRARIES) == []
    assert len(list((tmp_path / "runs").glob("*/metrics.json"))) == 1
