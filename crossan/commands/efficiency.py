"""Arguments of ``crossan efficiency``; its work is in :mod:`crossan.train.efficiency_cli`."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

from crossan.argtypes import non_negative_int, positive_int
from crossan.commands.train import add_run_inputs, add_run_settings
from crossan.runs.vocabulary import DEVICES

DEFAULT_BATCHES = 20  # timed training batches per measurement of a cached-state run
DEFAULT_END_TO_END_BATCHES = 10  # of an end-to-end run (BERT and ViT in the loop: seconds per batch)
DEFAULT_WARMUP = 2  # untimed batches first (allocators, kernels, autotuning)
DEFAULT_REPEATS = 2
# experiments.table4.measure's keys (config.yaml) -> their defaults: what the workflow passes
MEASURE_DEFAULTS: Mapping[str, int] = {"repeats": DEFAULT_REPEATS, "batches": DEFAULT_BATCHES,
                                       "end_to_end_batches": DEFAULT_END_TO_END_BATCHES}


def register_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``crossan efficiency``."""
    parser = subparsers.add_parser(
        "efficiency", help="measure Table 4's time per epoch and peak memory, the runs side by side",
        description="Measure the training time per epoch and peak memory of every run of a plan (Table 4) in "
        "one job: each run built as its trainer builds it, in a fresh process, the runs in rotating order over "
        "--repeats rounds; seconds per epoch = batches per epoch x the median seconds of the timed training "
        "batches. Writes --out (JSON), which `crossan table --efficiency` reads.",
    )
    parser.add_argument("--plan", required=True, help="the table's plan as JSON (`crossan plan table4 --json`)")
    add_run_settings(parser, "the plan's methods use")
    add_run_inputs(parser, "as `crossan train`'s; with --config (or neither) they default to the workflow's "
                   "paths under results/{dataset}/ (graph recommenders are not measured)")
    parser.add_argument("--out", required=True, type=Path,
                        help="the JSON to write (results/{dataset}/efficiency/table4.json)")
    parser.add_argument("--device", choices=DEVICES, default=DEVICES[0])
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="CPU threads of each measurement (default: every CPU available; more are cut to those)")
    parser.add_argument("--repeats", type=positive_int, default=DEFAULT_REPEATS,
                        help=f"rounds: each run is measured once per round (default {DEFAULT_REPEATS})")
    parser.add_argument("--batches", type=positive_int, default=DEFAULT_BATCHES,
                        help=f"timed training batches per measurement (default {DEFAULT_BATCHES})")
    parser.add_argument("--end-to-end-batches", type=positive_int, default=DEFAULT_END_TO_END_BATCHES,
                        help=f"the same for fft, adapter and lora (default {DEFAULT_END_TO_END_BATCHES})")
    parser.add_argument("--warmup", type=non_negative_int, default=DEFAULT_WARMUP,
                        help=f"untimed training batches before them (default {DEFAULT_WARMUP})")
    parser.set_defaults(handler="crossan.train.efficiency_cli:efficiency_cli")
