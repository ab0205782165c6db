"""Arguments of ``crossan train``; its work is in :mod:`crossan.train.run`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from crossan.argtypes import positive_int
from crossan.runs.specs import INPUT_FLAGS
from crossan.runs.vocabulary import DEVICES

# what each of crossan train's (and crossan efficiency's) input flags names
INPUT_HELP: dict[str, str] = {
    "--data": "results/{dataset}/data",
    "--features": "results/{dataset}/features (cached states, graph content)",
    "--graph": "the dataset's graph file (graph recommenders)",
    "--media": "results/{dataset}/media, for image.h5 (fft, adapter, lora)",
    "--text-model": "BERT checkpoint: Hugging Face id or folder (fft, adapter, lora)",
    "--image-model": "ViT checkpoint: Hugging Face id or folder (fft, adapter, lora)",
    "--text-max-length": "WordPiece tokens per title (fft, adapter, lora)",
}


def json_object(text: str) -> dict[str, Any]:
    """argparse type of ``--training``: a JSON object."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not JSON: {error}") from error
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object of training settings")
    return value


def register_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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
    add_run_settings(parser, "the run's method uses")
    add_run_inputs(parser, "default: the workflow's paths under results/{dataset}/ and, for fft/adapter/lora, "
                   "the checkpoints of config.yaml")
    parser.add_argument("--out", type=Path, default=None, help="run folder (default results/{dataset}/runs/NAME)")
    parser.add_argument("--device", choices=DEVICES, default=DEVICES[0])
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="CPU threads for torch (default: torch's own). The same seed gives "
                        "the same numbers for the same thread count; the workflow passes 1.")
    parser.set_defaults(handler="crossan.train.run:train_cli")


def add_run_settings(parser: argparse.ArgumentParser, whose: str) -> None:
    """``--config`` or ``--training``: where a run's training settings come from."""
    settings = parser.add_mutually_exclusive_group()
    settings.add_argument("--config", type=Path, default=None,
                          help="config.yaml whose training settings to use (default: ./config.yaml)")
    settings.add_argument("--training", type=json_object, default=None, metavar="JSON",
                          help=f"the training settings {whose}, as JSON (what the workflow passes)")


def add_run_inputs(parser: argparse.ArgumentParser, description: str) -> None:
    """The input flags of :data:`~crossan.runs.specs.INPUT_FLAGS`, each into its RunConfig field."""
    inputs = parser.add_argument_group("inputs", description)
    for flag, field in INPUT_FLAGS.items():
        inputs.add_argument(flag, dest=field, type=positive_int if field == "text_max_length" else str,
                            default=None, help=INPUT_HELP[flag])


def given_inputs(args: argparse.Namespace) -> dict[str, Any]:
    """The RunConfig input fields the command line gave (:func:`add_run_inputs`)."""
    return {field: getattr(args, field) for field in INPUT_FLAGS.values() if getattr(args, field) is not None}
