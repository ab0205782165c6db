"""``crossan run-name``: the folder name of one run under ``config.yaml``'s training settings.

A name field not given is the one the dataset's plan gives the method: its setting in the
dataset's ``experiments.settings`` (:func:`crossan.results.plan.experiment_config`: the paper's
plan, then the global ``experiments`` block, then the dataset's own, key by key), the first of
its ``seeds``, the modalities the method fixes (IISAN and the end-to-end baselines: T+I) or else
every modality the dataset declares, MOMEF's top-k at most their number; what neither sets is
:data:`~crossan.runs.vocabulary.NAME_DEFAULTS`'s. So ``crossan run-name --method M`` names the
run of M that the dataset's tables train.

Torch-free (:mod:`crossan.runs`, :mod:`crossan.results.plan`): a shell names a run without
loading any model code.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from crossan.argtypes import non_negative_float, non_negative_int, positive_float, positive_int
from crossan.config import dataset_letters, load_config
from crossan.errors import ConfigError
from crossan.results.plan import experiment_config, method_setting
from crossan.runs.identity import run_name
from crossan.runs.specs import configured_run
from crossan.runs.vocabulary import ALIGNMENTS, FUSIONS, METHODS, NAME_DEFAULTS, NO_FUSION, RUN_METHODS, TOPK_METHODS

# the flags that set a name field, each defaulting to the dataset's configured value (None: not given)
NAME_FLAGS: tuple[str, ...] = ("modalities", "fusion", "topk", "hidden", "lr", "seed", "align", "align_weight")


def register_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``crossan run-name``."""
    name = subparsers.add_parser(
        "run-name", help="the folder name of one run under config.yaml's training settings",
        description="Print the name of a run (results/{dataset}/runs/NAME/metrics.json asks Snakemake "
        "for it): the fields its method uses, then -x and a digest of the dataset's training settings "
        "that the method uses and that differ from the defaults. A field not given is the method's "
        "setting in the dataset's experiments block (the run its tables train).",
    )
    name.add_argument("--config", type=Path, default=Path("config.yaml"),
                      help="the configuration (default: config.yaml in the current directory)")
    name.add_argument("--dataset", default="demo")
    name.add_argument("--method", choices=RUN_METHODS, default="crossan")
    name.add_argument("--modalities", default=None,
                      help="letters from TIVA (default: TI for iisan, fft, adapter and lora; else every "
                      "modality the dataset declares)")
    name.add_argument("--fusion", choices=(*FUSIONS, NO_FUSION), default=None, help="default: the method's own")
    name.add_argument("--topk", type=positive_int, default=None,
                      help="MOMEF's k (default: the method's experiments setting, at most the modalities' number)")
    name.add_argument("--hidden", type=positive_int, default=None,
                      help="the method's size h: adapter bottleneck, LoRA rank or graph embedding size "
                      "(default: the method's experiments setting)")
    name.add_argument("--lr", type=positive_float, default=None, help="default: the method's experiments setting")
    name.add_argument("--seed", type=non_negative_int, default=None,
                      help="default: the first of the dataset's experiments seeds")
    name.add_argument("--align", choices=ALIGNMENTS, default=None,
                      help="alignment loss between the modality towers' outputs (on only with --align-weight > 0; "
                      f"default {NAME_DEFAULTS['align']})")
    name.add_argument("--align-weight", type=non_negative_float, default=None,
                      help="its weight lambda in the training loss (default 0: off)")
    name.set_defaults(handler="crossan.runs.cli:run_name_cli")


def configured_name_fields(config: Mapping[str, Any], dataset: str, method: str) -> dict[str, Any]:
    """The name fields of ``method``'s run in ``dataset``'s plan, as the module docstring says."""
    plan = experiment_config(config, dataset)
    modalities = METHODS[method].fixed.get("modalities", dataset_letters(config, dataset))
    fields = {**NAME_DEFAULTS, "seed": plan["seeds"][0], **method_setting(plan, method), "modalities": modalities}
    if method in TOPK_METHODS:
        fields["topk"] = min(int(fields["topk"]), len(modalities))
    return fields


def run_name_cli(args: argparse.Namespace) -> int:
    """Print the run's name; returns the exit status."""
    config = load_config(args.config)
    if args.dataset not in config["catalog"]:
        raise ConfigError(f"dataset {args.dataset!r} is not under catalog in {args.config}")
    given = {flag: getattr(args, flag) for flag in NAME_FLAGS if getattr(args, flag) is not None}
    fields = configured_name_fields(config, args.dataset, args.method) | given
    run = configured_run(config, args.dataset, args.method, **{**fields, "lr": float(fields["lr"]),
                                                                "align_weight": float(fields["align_weight"])})
    print(run_name(run))
    return 0
