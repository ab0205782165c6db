"""Arguments of ``crossan train``; its work is in :mod:`crossan.train.run`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from crossan.argtypes import positive_int
from crossan.runs.vocabulary import DEVICES


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
    settings = parser.add_mutually_exclusive_group()
    settings.add_argument("--config", type=Path, default=None,
                          help="config.yaml whose training settings the run uses (default: ./config.yaml)")
    settings.add_argument("--training", type=json_object, default=None, metavar="JSON",
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
    parser.set_defaults(handler="crossan.train.run:train_cli")
