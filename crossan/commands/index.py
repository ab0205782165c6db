"""Arguments of ``crossan runs`` and ``crossan compare``; their work is in :mod:`crossan.results.index`
(polars, scipy), imported only when one of them runs."""

from __future__ import annotations

import argparse
from pathlib import Path

STATES: tuple[str, ...] = ("done", "stale", "running", "failed", "missing", "unplanned")
TABLE_FILE = "runs.csv"  # crossan runs' default table: results/{dataset}/runs.csv
RUNNING_WITHIN_S = 3600.0  # a log written this recently, without an error, is a running job


def state_list(text: str) -> tuple[str, ...]:
    """``--state done,stale`` -> ``("done", "stale")``; an unknown state is a usage error."""
    states = tuple(part.strip() for part in text.split(",") if part.strip())
    if unknown := [state for state in states if state not in STATES]:
        raise argparse.ArgumentTypeError(f"unknown state {', '.join(unknown)}; states: {', '.join(STATES)}")
    return states


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``crossan runs`` and ``crossan compare``."""
    runs = subparsers.add_parser(
        "runs", help="every planned run with its state, and a table of the finished runs",
        description="List the runs `snakemake all` trains for a dataset (its tables', figures' and extra runs) "
        "with their state (done, stale, running, failed, missing; finished folders the plan does not name: "
        "unplanned), then write one row per finished run (name fields, settings, metrics, state) as CSV "
        f"(default results/DATASET/{TABLE_FILE}) or Parquet.",
    )
    runs.add_argument("--config", type=Path, default=Path("config.yaml"))
    runs.add_argument("--dataset", default="demo")
    runs.add_argument("--results", type=Path, default=Path("results"), help="the results folder (default results)")
    runs.add_argument("--csv", type=Path, default=None, help=f"the table of finished runs as CSV "
                      f"(default results/DATASET/{TABLE_FILE} unless --parquet is given)")
    runs.add_argument("--parquet", type=Path, default=None, help="the table of finished runs as Parquet")
    runs.add_argument("--state", type=state_list, default=STATES,
                      help=f"list (and tabulate) only runs in these states, comma-separated: {','.join(STATES)}")
    runs.add_argument("--running-within", type=float, default=RUNNING_WITHIN_S / 60, metavar="MINUTES",
                      help="a log without an error written this recently is a running job (default 60)")
    runs.set_defaults(handler="crossan.results.index:runs_cli")

    compare = subparsers.add_parser(
        "compare", help="two finished runs' test metrics and the paired t-test over users",
        description="Print the test metrics of runs A and B side by side, A - B, (A - B) / B and the p-value "
        "of the paired t-test over test users the tables use. A run name starts with its dataset.",
    )
    compare.add_argument("a", metavar="RUN", help="run A (a folder name under results/DATASET/runs)")
    compare.add_argument("b", metavar="RUN", help="run B, the baseline")
    compare.add_argument("--results", type=Path, default=Path("results"), help="the results folder (default results)")
    compare.set_defaults(handler="crossan.results.index:compare_cli")


