"""``crossan run-name``: the folder name of one run under ``config.yaml``'s training settings.

Torch-free (:mod:`crossan.runs`): a shell names a run without loading any model code.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from crossan.argtypes import non_negative_float, non_negative_int, positive_float, positive_int
from crossan.config import load_config
from crossan.errors import ConfigError
from crossan.runs.identity import run_name
from crossan.runs.specs import configured_run
from crossan.runs.vocabulary import ALIGNMENTS, FUSIONS, METHODS, NAME_DEFAULTS, NO_FUSION, RUN_METHODS


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``crossan run-name``."""
    name = subparsers.add_parser(
        "run-name", help="the folder name of one run under config.yaml's training settings",
        description="Print the name of a run (results/{dataset}/runs/NAME/metrics.json asks Snakemake "
        "for it): the fields its method uses, then -x and a digest of the dataset's training settings "
        "that the method uses and that differ from the defaults.",
    )
    name.add_argument("--config", type=Path, default=Path("config.yaml"))
    name.add_argument("--dataset", default="demo")
    name.add_argument("--method", choices=RUN_METHODS, default="crossan")
    name.add_argument("--modalities", default=None,
                      help=f"letters from TIVA (default {NAME_DEFAULTS['modalities']}; TI for fft, adapter, lora)")
    name.add_argument("--fusion", choices=(*FUSIONS, NO_FUSION), default=None, help="default: the method's own")
    name.add_argument("--topk", type=positive_int, default=NAME_DEFAULTS["topk"], help="MOMEF's k")
    name.add_argument("--hidden", type=positive_int, default=NAME_DEFAULTS["hidden"],
                      help="the method's size h: adapter bottleneck, LoRA rank or graph embedding size")
    name.add_argument("--lr", type=positive_float, default=NAME_DEFAULTS["lr"])
    name.add_argument("--seed", type=non_negative_int, default=NAME_DEFAULTS["seed"])
    name.add_argument("--align", choices=ALIGNMENTS, default=NAME_DEFAULTS["align"],
                      help="alignment loss between the modality towers' outputs (on only with --align-weight > 0)")
    name.add_argument("--align-weight", type=non_negative_float, default=NAME_DEFAULTS["align_weight"],
                      help="its weight lambda in the training loss (default 0: off)")
    name.set_defaults(func=_run_name_cli)


def _run_name_cli(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.dataset not in config["catalog"]:
        raise ConfigError(f"dataset {args.dataset!r} is not under catalog in {args.config}")
    modalities = args.modalities or METHODS[args.method].fixed.get("modalities", NAME_DEFAULTS["modalities"])
    run = configured_run(config, args.dataset, args.method, modalities=modalities, fusion=args.fusion,
                         topk=args.topk, hidden=args.hidden, lr=args.lr, seed=args.seed,
                         align=args.align, align_weight=args.align_weight)
    print(run_name(run))
    return 0
