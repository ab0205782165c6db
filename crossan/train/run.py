"""``crossan train``: one run, launched from its name.

A run is what its folder name says (:mod:`crossan.runs.identity`) under a dataset's
``training`` settings: ``crossan train --run NAME`` reads those from ``config.yaml``
(``--config``), or takes them as JSON (``--training``, what the workflow's rule passes: the
settings the method uses, :func:`crossan.runs.specs.method_training`). A name whose ``-x``
digest is not the one of those settings is refused, naming the right one. Inputs default to
the workflow's paths (:func:`crossan.runs.specs.input_fields`); each can be given.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from crossan.commands.train import given_inputs
from crossan.config import load_config
from crossan.errors import ConfigError
from crossan.runs.identity import parse_run_name, run_name
from crossan.runs.settings import training_settings
from crossan.runs.specs import input_fields, run_from_name
from crossan.runs.vocabulary import METHODS
from crossan.train.entry import train

log = logging.getLogger(__name__)


def train_cli(args: argparse.Namespace) -> int:
    """Run ``crossan train`` (:mod:`crossan.commands.train`); returns the exit status."""
    fields = parse_run_name(args.run)
    dataset, method = fields["dataset"], fields["method"]
    out = args.out or Path("results") / dataset / "runs" / args.run
    if out.name != args.run:
        raise ConfigError(f"--out {out} must be a folder named {args.run} (the run's name)")
    given = {"out_dir": str(out), "device": args.device, **given_inputs(args)}
    if args.training is not None:
        if unused := sorted(set(args.training) - set(METHODS[method].settings)):
            raise ConfigError(f"--training: {method} does not use {', '.join(unused)}; its settings: "
                              f"{', '.join(METHODS[method].settings)}")
        run = run_from_name(args.run, args.training, source="--training", **given)
    else:
        config_path = args.config or Path("config.yaml")
        config = load_config(config_path)
        if dataset not in config["catalog"]:
            raise ConfigError(f"run {args.run} is of dataset {dataset!r}, which is not under catalog in {config_path}")
        run = run_from_name(args.run, training_settings(config, dataset), source=str(config_path),
                            **(input_fields(config, dataset, method) | given))
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    result = train(run)
    test = result.test
    print(f"{run_name(run)}: best epoch {result.best_epoch}, test HR@10 {test['HR@10']:.4f} "
          f"NDCG@10 {test['NDCG@10']:.4f} HR@20 {test['HR@20']:.4f} NDCG@20 {test['NDCG@20']:.4f}")
    return 0
