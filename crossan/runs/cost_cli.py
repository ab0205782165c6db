"""``crossan cost``: what ``all`` will cost, in CPU-hours per stage, before anything runs.

Registration and handler (:mod:`crossan.cli`'s convention): :func:`register_cli` and
:func:`cost_cli` share a torch-free module: the estimate (:mod:`crossan.runs.cost`) reads
``config.yaml`` and, when the data step has run, ``results/{dataset}/data/stats.json``; ``--users``/``--items`` price a dataset whose size is not
known yet.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from crossan.argtypes import positive_int
from crossan.config import load_config
from crossan.errors import ConfigError
from crossan.runs.cost import estimate_cost, format_estimate


def register_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``crossan cost``."""
    parser = subparsers.add_parser(
        "cost", help="CPU-hours per stage of what `snakemake all` would run, before it runs",
        description="Estimate the CPU-hours of media sampling, feature extraction and training of every "
        "run `all` plans for a dataset (typical, with early stopping, and at most), from per-unit costs "
        "measured by bench/cost.py; name the three most expensive runs and say how to cut a long plan.",
    )
    parser.add_argument("--config", type=Path, default=Path("config.yaml"))
    parser.add_argument("--dataset", action="append", default=None,
                        help="a dataset under catalog (repeatable; default: config.yaml's datasets)")
    parser.add_argument("--target", default=None,
                        help="price only this table's or figure's runs (table3, figure5, ...), after stage 1")
    parser.add_argument("--users", type=positive_int, default=None,
                        help="users after the data step's filter (default: stats.json, the demo's or MicroLens' size)")
    parser.add_argument("--items", type=positive_int, default=None, help="items of the catalogue (same defaults)")
    parser.add_argument("--results", type=Path, default=Path("results"), help="where results/{dataset}/data is")
    parser.set_defaults(handler="crossan.runs.cost_cli:cost_cli")


def cost_cli(args: argparse.Namespace) -> int:
    """Print the estimate of each dataset (``crossan cost``); returns the exit status."""
    config = load_config(args.config)
    datasets = args.dataset or list(config["datasets"])
    for dataset in datasets:
        if dataset not in config["catalog"]:
            raise ConfigError(f"dataset {dataset!r} is not under catalog in {args.config}")
    blocks = [format_estimate(estimate_cost(config, dataset, args.users, args.items, args.results, args.target))
              for dataset in datasets]
    print("\n\n".join(blocks))
    return 0
