"""``crossan efficiency``'s work (its arguments: :mod:`crossan.commands.efficiency`).

The runs of a plan (``--plan``, as ``crossan plan table4 --json`` prints it) are rebuilt from
their names under the training settings (``--training``, what the workflow passes: the
settings the plan's methods use, :func:`crossan.runs.specs.methods_training`; or those of
``--config``) with the inputs given (the same flags as ``crossan train``; with ``--config``
they default to the workflow's paths), measured by :func:`crossan.train.efficiency.measure_runs`,
and written to ``--out`` (:mod:`crossan.runs.efficiency_file`).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from crossan.commands.train import given_inputs
from crossan.config import load_config
from crossan.errors import ConfigError
from crossan.results.plan import TargetPlan
from crossan.runs.run_config import RunConfig
from crossan.runs.settings import training_settings
from crossan.runs.specs import input_fields, run_from_name
from crossan.train.efficiency import measure_runs


def plan_runs(plan: TargetPlan, training: Mapping[str, Any], inputs: Mapping[str, Mapping[str, Any]],
              source: str = "--training", **fields: Any) -> dict[str, RunConfig]:
    """Every run of ``plan`` (name -> run, in the plan's order) under the ``training`` settings,
    with its method's ``inputs`` (method -> RunConfig input fields) and ``fields`` (``device``).
    A name whose digest is not the one of those settings is a :class:`ConfigError`."""
    runs = {}
    for row in plan.rows:
        for name in row.runs:
            if name not in runs:
                runs[name] = run_from_name(name, training, source=source, **inputs.get(row.method, {}), **fields)
    return runs


def efficiency_cli(args: argparse.Namespace) -> int:
    """Measure the plan's runs and write the record (``crossan efficiency``); returns the exit status."""
    plan = TargetPlan.from_json(args.plan)
    given = given_inputs(args)
    methods = {row.method for row in plan.rows if row.runs}
    if args.training is not None:
        training, source = args.training, "--training"
        inputs = {method: given for method in methods}
    else:
        config_path = args.config or Path("config.yaml")
        config = load_config(config_path)
        if plan.dataset not in config["catalog"]:
            raise ConfigError(f"the plan is of dataset {plan.dataset!r}, which is not under catalog in {config_path}")
        training, source = training_settings(config, plan.dataset), str(config_path)
        inputs = {method: input_fields(config, plan.dataset, method) | given for method in methods}
    runs = plan_runs(plan, training, inputs, source=source, device=args.device)
    record = measure_runs(runs, dataset=plan.dataset, target=plan.target, batches=args.batches,
                          end_to_end_batches=args.end_to_end_batches, warmup=args.warmup, repeats=args.repeats,
                          threads=args.threads)
    record.write(args.out)
    print(f"{plan.target} of {plan.dataset}: {record.repeats} rounds, {record.threads} threads, {record.device} "
          f"({record.device_name}); wrote {args.out}")
    for name, run in record.runs.items():
        print(f"{name}: {run.seconds_per_epoch:.2f} s per epoch ({run.batches_per_epoch} batches x "
              f"{run.seconds_per_batch:.4f} s), {run.peak_memory_mib:.1f} MiB ({run.peak_memory_kind})")
    return 0
