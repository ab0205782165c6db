"""The numbers behind Figures 3-5 and B1, collected from run directories, and the figures themselves.

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
from crossan.results.runs import (
    BUCKET_METRICS,
    BUCKETS,
    METRICS,
    bucket_summary,
    mean_gates,
    popularity_thresholds,
    read_popularity,
    read_runs,
    summarise,
)
from crossan.results.table_output import display_name

POPULARITY_METRIC = "HR@10"  # Figure B1's y


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


def bucket_labels(buckets: dict[str, object]) -> dict[str, str]:
    """The x labels of Figure B1, each bucket with its training-interaction range:
    ``{"head": "head (>= 15)", "torso": "torso (10-14)", "tail": "tail (<= 9)"}``; a torso of
    one count reads ``"torso (10)"``, a bucket without an item (``empty_buckets``) ``"torso
    (no item)"``."""
    head, tail = int(buckets["head_min_count"]), int(buckets["tail_max_count"])
    torso = f"{tail + 1}" if head - tail == 2 else f"{tail + 1}-{head - 1}"
    labels = {"head": f"head (>= {head})", "torso": f"torso ({torso})", "tail": f"tail (<= {tail})"}
    empty = buckets.get("empty_buckets") or ()
    return {bucket: f"{bucket} (no item)" if bucket in empty else label for bucket, label in labels.items()}


def _popularity_points(plan: TargetPlan, runs_dir: Path) -> pl.DataFrame:
    """One row per plotted bar: ``series`` (the method row), ``bucket``, ``x`` (its label),
    the bucket's test users, HR/NDCG@10 mean and std over seeds, runs."""
    by_run = read_popularity(runs_dir, plan.runs())
    labels = bucket_labels(popularity_thresholds(by_run))
    records = []
    for row in plan.rows:
        runs = [by_run[name] for name in row.runs]
        for bucket in BUCKETS:
            record: dict[str, object] = {"series": row.label, "bucket": bucket, "x": labels[bucket],
                                         "users": int(runs[0][bucket]["users"])}
            for metric in BUCKET_METRICS:  # a bucket without test users: no bar (None)
                summary = bucket_summary(runs, bucket, metric)
                record[metric], record[f"{metric}_std"] = (None, None) if summary is None else (summary.mean,
                                                                                               summary.std)
            record["n_seeds"] = len(row.runs)
            record["runs"] = ";".join(row.runs)
            records.append(record)
    return pl.DataFrame(records)


def _by_series(points: pl.DataFrame, series: str, metric: str) -> dict[float, tuple[float, float]]:
    """``{x: (mean, std)}`` of ``series``' points; a point without a value (``None``) is left out."""
    part = points.filter(pl.col("series") == series)
    return {x: (mean, std) for x, mean, std in zip(part["x"], part[metric], part[f"{metric}_std"])
            if mean is not None}


def build_figure(plan: TargetPlan, runs_dir: Path) -> tuple[Figure, pl.DataFrame]:
    """The figure of ``plan`` (``figure3``, ``figure4``, ``figure5`` or ``figureB1``) and its data."""
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
    if plan.target == "figureB1":
        points = _popularity_points(plan, runs_dir)
        series = {name: _by_series(points, name, POPULARITY_METRIC) for name in dict.fromkeys(points["series"])}
        return figures.figure_b1_popularity(series, metric=POPULARITY_METRIC, title=title), points
    points = _points(plan, runs_dir)
    if plan.target == "figure3":
        series = {name: {int(x): p for x, p in _by_series(points, name, "HR@10").items()}
                  for name in dict.fromkeys(points["series"])}
        return figures.figure3_hidden_size(series, metric="HR@10", title=title), points
    if plan.target == "figure5":
        hidden = {m: {int(x): p for x, p in _by_series(points, "hidden", m).items()} for m in METRICS}
        lr = {m: _by_series(points, "lr", m) for m in METRICS}
        return figures.figure5_sensitivity(hidden, lr, title=title), points
    raise ValueError(f"{plan.target} is not a figure; choose from figure3, figure4, figure5, figureB1")
