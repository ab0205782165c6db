"""``crossan plan``, ``crossan table`` and ``crossan figure``: the command-line side of stage 3.

The workflow passes each table or figure its plan (rows and run names, computed from
``config.yaml`` by :mod:`crossan.results.plan`) as JSON, so these commands read run
directories only and never train.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from crossan.atomic import write_text_atomic
from crossan.config import load_config
from crossan.results.plan import TARGETS, TargetPlan, target_plan
from crossan.runs.cost import estimate_cost, format_estimate
from crossan.runs.efficiency_file import EfficiencyRecord


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    plan = subparsers.add_parser(
        "plan", help="which runs make a table or figure (from config.yaml)",
        description="Print the rows of a table or figure and the run directories behind them.",
    )
    plan.add_argument("target", choices=TARGETS)
    plan.add_argument("--config", type=Path, default=Path("config.yaml"))
    plan.add_argument("--dataset", default="demo")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON (what the workflow passes)")
    plan.set_defaults(handler="crossan.results.cli:plan_cli")

    table = subparsers.add_parser(
        "table", help="rebuild one of the paper's tables from finished runs",
        description="Read the runs a plan names (metrics.json, per_user_test.parquet, item_towers.h5) "
        "and write the table as CSV, Markdown and HTML.",
    )
    _add_plan_and_runs(table)
    table.add_argument("--csv", required=True, type=Path)
    table.add_argument("--md", required=True, type=Path)
    table.add_argument("--html", required=True, type=Path)
    table.add_argument("--efficiency", type=Path, default=None, metavar="JSON",
                       help="Table 4 only: TT and GM measured side by side in one job (`crossan efficiency`, "
                       "results/{dataset}/efficiency/table4.json); without it they come from each run's "
                       "metrics.json, timed in separate jobs")
    table.set_defaults(handler="crossan.results.cli:table_cli")

    figure = subparsers.add_parser(
        "figure", help="redraw one of the paper's figures from finished runs",
        description="Read the runs a plan names and write the figure (PNG, SVG) and its data (CSV).",
    )
    _add_plan_and_runs(figure)
    figure.add_argument("--png", required=True, type=Path)
    figure.add_argument("--svg", required=True, type=Path)
    figure.add_argument("--csv", required=True, type=Path)
    figure.set_defaults(handler="crossan.results.cli:figure_cli")


def _add_plan_and_runs(parser: argparse.ArgumentParser) -> None:
    """What ``table`` and ``figure`` read: the target's plan and the runs folder."""
    parser.add_argument("--plan", required=True, help="the target's plan as JSON (`crossan plan --json`)")
    parser.add_argument("--runs", required=True, type=Path, help="results/{dataset}/runs")


def plan_cli(args: argparse.Namespace) -> int:
    """Print a target's plan (``crossan plan``); returns the exit status."""
    config = load_config(args.config)
    plan = target_plan(config, args.dataset, args.target)
    if args.json:
        print(plan.to_json())
        return 0
    for row in plan.rows:
        print(f"{row.label}: {', '.join(row.runs) if row.runs else '(' + row.note + ')'}")
    for comparison in plan.comparisons:
        print(f"{comparison.label}: {comparison.ours} vs {comparison.baseline}")
    print("\n" + format_estimate(estimate_cost(config, args.dataset, target=args.target)))
    return 0


def table_cli(args: argparse.Namespace) -> int:
    """Write a table from its plan's runs (``crossan table``); returns the exit status."""
    # deferred: scipy and polars (~1 s), which `crossan plan` and `crossan figure` do not need
    from crossan.results.table_output import to_markdown, write_table
    from crossan.results.tables import build_table

    efficiency = EfficiencyRecord.read(args.efficiency) if args.efficiency else None
    table = build_table(TargetPlan.from_json(args.plan), args.runs, efficiency)
    write_table(table, args.csv, args.md, args.html)
    sys.stdout.write(to_markdown(table))
    return 0


def figure_cli(args: argparse.Namespace) -> int:
    """Draw a figure from its plan's runs (``crossan figure``); returns the exit status."""
    # deferred: matplotlib (~1 s), which `crossan plan` and `crossan table` do not need
    from crossan.results.figure_data import build_figure
    from crossan.results.figures import save_figure

    figure, points = build_figure(TargetPlan.from_json(args.plan), args.runs)
    write_text_atomic(args.csv, points.write_csv())
    save_figure(figure, args.png, args.svg)
    print(f"wrote {args.png}, {args.svg} and {args.csv} ({len(points)} points)")
    return 0
