"""What the workflow's efficiency job (``workflow/rules/efficiency.smk``) reads and passes.

One job measures every run of a table's plan (``crossan efficiency``, Table 4): it reads what
each of those runs' training jobs reads, and ``crossan efficiency`` rebuilds the runs from the
training settings and input flags of every method of the plan. Torch-free: the workflow
imports it when it parses the Snakefile.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from typing import Any

from crossan.commands.efficiency import MEASURE_DEFAULTS
from crossan.results.plan import TargetPlan, experiment_config
from crossan.runs.specs import input_fields, input_flags, methods_training
from crossan.runs.vocabulary import END_TO_END, METHODS


def plan_methods(plan: TargetPlan) -> list[str]:
    """The methods of the plan's rows that have runs, once each, in row order."""
    return list(dict.fromkeys(row.method for row in plan.rows if row.runs))


def has_end_to_end(plan: TargetPlan) -> bool:
    """Whether a run of the plan trains the encoders (fft, adapter, lora)."""
    return any(METHODS[method].family == END_TO_END for method in plan_methods(plan))


def plan_training(config: Mapping[str, Any], dataset: str, plan: TargetPlan) -> dict[str, Any]:
    """The training settings the plan's methods use (``crossan efficiency --training``)."""
    return methods_training(config, dataset, plan_methods(plan))


def plan_input_flags(config: Mapping[str, Any], dataset: str, plan: TargetPlan,
                     folders: Mapping[str, str] | None = None) -> str:
    """``crossan efficiency`` flags naming where the plan's runs read their items: those of every
    method of the plan (:func:`~crossan.runs.specs.input_fields`, in ``folders``); each run
    takes those it uses."""
    fields: dict[str, Any] = {}
    for method in plan_methods(plan):
        fields |= input_fields(config, dataset, method, folders)
    return " ".join(f"{flag} {shlex.quote(str(value))}" for flag, value in input_flags(fields))


def merged_inputs(jobs: Iterable[Mapping[str, Any]]) -> list[Any]:
    """The input paths of several jobs (each a name -> path mapping), once each. Where one job
    marks a path (Snakemake's ``ancient``: only its existence counts) and another does not, the
    unmarked one: the job that reads the file's content reruns when it changes."""
    paths: dict[str, Any] = {}
    for inputs in jobs:
        for path in inputs.values():
            if str(path) not in paths or not getattr(path, "flags", None):
                paths[str(path)] = path
    return list(paths.values())


def measure_flags(config: Mapping[str, Any], dataset: str, target: str = "table4") -> str:
    """``crossan efficiency`` flags of the dataset's ``experiments.{target}.measure`` (rounds,
    timed batches), each key not given at its default (:data:`MEASURE_DEFAULTS`)."""
    measure = {**MEASURE_DEFAULTS, **experiment_config(config, dataset)[target].get("measure", {})}
    return " ".join(f"--{key.replace('_', '-')} {value}" for key, value in measure.items())
