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
import json
import logging
from pathlib import Path
from typing import Any

import torch

from crossan.argtypes import positive_int
from crossan.config import load_config
from crossan.errors import ConfigError
from crossan.runs.identity import parse_run_name, run_name
from crossan.runs.settings import training_settings
from crossan.runs.specs import INPUT_FLAGS, input_fields, run_from_name
from crossan.runs.vocabulary import DEVICES, METHODS
from crossan.train.entry import train

log = logging.getLogger(__name__)



def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``crossan train``."""
    parser = subparsers.add_parser(
        "train", help="train and evaluate one run, named by its configuration",
        description="Train one run (on cached states, with the encoders in the loop for fft, adapter and "
        "lora, or a graph recommender on the training graph), early-stop on validation HR@10, evaluate test "
        "at the best epoch; writes settings.json (first), train_log.csv, per_user_{valid,test}.parquet, "
        "gates.json, item_towers.h5 and metrics.json (last) into --out.",
    )
    parser.add_argument("--run", required=True, metavar="NAME",
                        help="the run's name, e.g. demo__crossan-TIVA-momef-k2-h512-lr1e-03-s0-x59096742 "
                        "(crossan run-name prints it): dataset, method and the fields its tables vary")
    settings = parser.add_mutually_exclusive_group()
    settings.add_argument("--config", type=Path, default=None,
                          help="config.yaml whose training settings the run uses (default: ./config.yaml)")
    settings.add_argument("--training", type=_json_object, default=None, metavar="JSON",
                          help="the training settings the run's method uses, as JSON (what the workflow passes)")
    inputs = parser.add_argument_group("inputs", "default: the workflow's paths under results/{dataset}/ "
                                       "and, for fft/adapter/lora, the checkpoints of config.yaml")
    inputs.add_argument("--data", type=Path, help="results/{dataset}/data")
    inputs.add_argument("--features", type=Path, help="results/{dataset}/features (cached states, graph content)")
    inputs.add_argument("--graph", type=Path, help="the dataset's graph file (graph recommenders)")
    inputs.add_argument("--media", type=Path, help="results/{dataset}/media, for image.h5 (fft, adapter, lora)")
    inputs.add_argument("--text-model", help="BERT checkpoint: Hugging Face id or folder (fft, adapter, lora)")
    inputs.add_argument("--image-model", help="ViT checkpoint: Hugging Face id or folder (fft, adapter, lora)")
    inputs.add_argument("--text-max-length", type=positive_int, help="WordPiece tokens per title (fft, adapter, lora)")
    parser.add_argument("--out", type=Path, default=None, help="run folder (default results/{dataset}/runs/NAME)")
    parser.add_argument("--device", choices=DEVICES, default=DEVICES[0])
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="CPU threads for torch (default: torch's own). The same seed gives "
                        "the same numbers for the same thread count; the workflow passes 1.")
    parser.set_defaults(func=_train_cli)


def _json_object(text: str) -> dict[str, Any]:
    """``--training``: a JSON object."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not JSON: {error}") from error
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object of training settings")
    return value


def _given_inputs(args: argparse.Namespace) -> dict[str, Any]:
    values = ((field, getattr(args, flag.removeprefix("--").replace("-", "_"))) for flag, field in INPUT_FLAGS.items())
    return {field: str(value) if isinstance(value, Path) else value for field, value in values if value is not None}


def _train_cli(args: argparse.Namespace) -> int:
    fields = parse_run_name(args.run)
    dataset, method = fields["dataset"], fields["method"]
    out = args.out or Path("results") / dataset / "runs" / args.run
    if out.name != args.run:
        raise ConfigError(f"--out {out} must be a folder named {args.run} (the run's name)")
    given = {"out_dir": str(out), "device": args.device, **_given_inputs(args)}
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
