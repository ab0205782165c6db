"""The numbers behind Figures 3-5, collected from run directories, and the figures themselves.

:func:`build_figure` returns the matplotlib figure (drawn by :mod:`crossan.results.figures`)
and a frame of every plotted point with the runs behind it, written beside the figure as CSV
so each point can be traced to its run directories.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from matplotlib.figure import Figure

from crossan.results import figures
from crossan.results.plan import TargetPlan
from crossan.results.runs import METRICS, mean_gates, read_runs, summarise
from crossan.results.tables import display_name


def _points(plan: TargetPlan, runs_dir: Path) -> pl.DataFrame:
    """One row per plotted point: ``series, x, label``, each metric's mean and std, runs."""
    records = []
    for row in plan.rows:
        record: dict[str, object] = {"series": row.series, "x": row.x, "label": row.label}
        runs = read_runs(runs_dir, row.runs)
        for metric in METRICS:
            summary = summarise(runs, metric)
            record[metric], record[f"{metric}_std"] = summary.mean, summary.std
        record["n_seeds"] = len(row.runs)
        record["runs"] = ";".join(row.runs)
        records.append(record)
    return pl.DataFrame(records)


def _by_series(points: pl.DataFrame, series: str, metric: str) -> dict[float, tuple[float, float]]:
    part = points.filter(pl.col("series") == series)
    return {x: (mean, std) for x, mean, std in zip(part["x"], part[metric], part[f"{metric}_std"])}


def build_figure(plan: TargetPlan, runs_dir: Path) -> tuple[Figure, pl.DataFrame]:
    """The figure of ``plan`` (``figure3``, ``figure4`` or ``figure5``) and its data."""
    runs_dir = Path(runs_dir)
    title = f"{display_name(plan.target)} ({plan.dataset})"
    if plan.target == "figure4":
        row = plan.rows[0]
        towers = mean_gates(runs_dir, row.runs)
        records = [{"tower": tower, "layer": layer, "source": source, "value": value, "runs": ";".join(row.runs)}
                   for tower, data in towers.items()
                   for layer, values in enumerate(data["values"])
                   for source, value in zip(data["sources"], values)]
        return figures.figure4_gate_heatmaps(towers, title=f"{title}: {row.label}"), pl.DataFrame(records)
    points = _points(plan, runs_dir)
    if plan.target == "figure3":
        series = {name: {int(x): p for x, p in _by_series(points, name, "HR@10").items()}
                  for name in dict.fromkeys(points["series"])}
        return figures.figure3_hidden_size(series, metric="HR@10", title=title), points
    if plan.target == "figure5":
        hidden = {m: {int(x): p for x, p in _by_series(points, "hidden", m).items()} for m in METRICS}
        lr = {m: _by_series(points, "lr", m) for m in METRICS}
        return figures.figure5_sensitivity(hidden, lr, title=title), points
    raise ValueError(f"{plan.target} is not a figure; choose from figure3, figure4, figure5")
