"""Reading finished runs and aggregating them over seeds, with paired t-tests.

A run directory (``results/{dataset}/runs/{name}/``, :mod:`crossan.runs.folder`) is
complete when its ``metrics.json`` exists (:class:`~crossan.runs.folder.RunMetrics`); tables read that, ``per_user_test.parquet`` (for
significance), ``item_towers.h5`` (Tables 1 and B1) and ``gates.json`` (Figure 4), nothing else.

Long tail (Table B3, Figure B1): ``metrics.json``'s ``test_by_popularity`` gives each bucket's
test users and HR/NDCG@10 (:data:`BUCKETS`, :mod:`crossan.data.buckets`: head and tail each the
fewest items holding a third of the training interactions), the two thresholds, the items per
bucket and the empty buckets; :func:`popularity_thresholds` checks that the runs of a table
share them and were bucketed by the current rule (``BUCKET_RULE``).

Settings: a run's ``settings.json`` (:mod:`crossan.runs.identity`) lists the training settings
its name's ``-x`` digest stands for; :func:`settings_notes` turns those of a table's runs into
notes, so a table built from runs with other settings says which.

Seeds: a table row with several seeds shows the mean and the sample standard deviation
(``ddof=1``) over its runs; the paired t-test compares the per-user metrics averaged over each
row's seeds (user by user), so a user counts once however many seeds there are.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy import stats

from crossan.data.buckets import BUCKET_RULE, BUCKETS
from crossan.errors import DataError
from crossan.runs.folder import GATES_FILE, PER_USER_FILES, SETTINGS_FILE, RunMetrics
from crossan.runs.identity import describe_changed, parse_run_name
from crossan.runs.vocabulary import METRIC_NAMES

METRICS: tuple[str, ...] = METRIC_NAMES  # the columns of the metric tables
# metrics.json's test_by_popularity: the metrics of each bucket (BUCKETS, most popular first)
BUCKET_METRICS: tuple[str, ...] = ("HR@10", "NDCG@10")
SIGNIFICANCE_LEVEL = 0.05


@dataclass(frozen=True)
class Summary:
    """Mean and sample standard deviation of one quantity over ``n`` seeds (std 0 for n=1)."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        array = np.asarray(values, dtype=float)
        if array.size == 0:
            raise ValueError("no values to summarise")
        std = float(array.std(ddof=1)) if array.size > 1 else 0.0
        return cls(float(array.mean()), std, int(array.size))


def run_dir(runs_dir: Path, name: str) -> Path:
    return Path(runs_dir) / name


def read_metrics(runs_dir: Path, name: str) -> RunMetrics:
    """``metrics.json`` of run ``name``; a missing one is a :class:`DataError` that says how
    to produce it."""
    return RunMetrics.read(run_dir(runs_dir, name))


def read_runs(runs_dir: Path, names: Sequence[str]) -> list[RunMetrics]:
    """``metrics.json`` of each run in ``names``, each file read once."""
    return [read_metrics(runs_dir, name) for name in names]


def summarise(runs: Sequence[RunMetrics], key: str, split: str = "test") -> Summary:
    """Mean ± std over the runs (:func:`read_runs`) of a ``split`` metric (``key`` in
    :data:`METRICS`) or of a number every run reports (``seconds_per_epoch``,
    ``peak_memory_mib``, ``paper_configuration_parameters``, ...)."""
    return Summary.of([run.number(key, split) for run in runs])


def bucket_summary(records: Sequence[Mapping[str, Any]], bucket: str, metric: str) -> Summary | None:
    """Mean ± std over runs' ``test_by_popularity`` records (:func:`read_popularity`) of
    ``metric`` (:data:`BUCKET_METRICS`) in ``bucket`` (:data:`BUCKETS`); ``None`` when the
    bucket has no test user (its metric is ``None``: an empty bucket, shown as an empty cell)."""
    values = [record[bucket][metric] for record in records]
    if any(value is None for value in values):
        return None
    return Summary.of([float(value) for value in values])


def read_popularity(runs_dir: Path, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each run's ``test_by_popularity`` (``metrics.json``), by run name: ``head_min_count``,
    ``tail_max_count`` and per bucket of :data:`BUCKETS` its ``users`` and HR/NDCG@10, so
    ``bucket_summary([records[n] for n in seeds], "tail", "HR@10")`` is a bucket's mean over
    seeds."""
    records = {}
    for name in names:
        record = read_metrics(runs_dir, name).test_by_popularity
        if record is None:
            raise DataError(f"{run_dir(runs_dir, name) / 'metrics.json'} has no test_by_popularity: run {name} "
                            "predates the long-tail metrics; delete its folder and rerun it")
        records[name] = record
    return records


def popularity_thresholds(records: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """The buckets the runs of ``records`` (:func:`read_popularity`, one run at least) share:
    ``{"head_min_count", "tail_max_count", "items": {bucket: items}, "empty_buckets": [...],
    "users": {bucket: test users}}``; a run bucketed by another rule (an older ``by``: its
    ``test_by_popularity`` must be recomputed) or with other buckets (another split) is a
    :class:`DataError` naming it."""
    shared: dict[str, Any] = {}
    first = ""
    for name, record in records.items():
        if record.get("by") != BUCKET_RULE:
            raise DataError(f"run {name}: its metrics.json test_by_popularity was bucketed by another rule "
                            f"({record.get('by')!r}) than the current one ({BUCKET_RULE!r}, "
                            "crossan/data/buckets.py); delete its folder and rerun it")
        buckets = {"head_min_count": int(record["head_min_count"]), "tail_max_count": int(record["tail_max_count"]),
                   "items": {bucket: int(record["items"][bucket]) for bucket in BUCKETS},
                   "empty_buckets": list(record["empty_buckets"]),
                   "users": {bucket: int(record[bucket]["users"]) for bucket in BUCKETS}}
        if not shared:
            shared, first = buckets, name
        elif buckets != shared:
            raise DataError(f"run {name} has other popularity buckets ({buckets}) than run {first} ({shared}): "
                            "runs of one table must come from the same dataset split")
    return shared


def read_alignment(runs_dir: Path, name: str) -> dict[str, Any]:
    """``metrics.json``'s ``alignment`` of run ``name`` (``align``, ``weight``, ``tau``: the
    learned temperature at the best checkpoint, ``loss_per_epoch``)."""
    record = read_metrics(runs_dir, name).extra.get("alignment")
    if record is None:
        raise DataError(f"{run_dir(runs_dir, name) / 'metrics.json'} has no alignment: run {name} was not "
                        "trained with the alignment loss (align_weight > 0)")
    return record


def per_user_mean(runs_dir: Path, names: Sequence[str], split: str = "test") -> pl.DataFrame:
    """Per-user metrics averaged over the runs ``names`` (seeds): columns ``user`` and
    :data:`METRICS`, sorted by user. Every run must have the same users."""
    frames = []
    for name in names:
        path = run_dir(runs_dir, name) / PER_USER_FILES[split]
        if not path.exists():
            raise DataError(f"{path} is missing: rerun run {name}")
        frames.append(pl.read_parquet(path).select("user", *METRICS).sort("user"))
    users = frames[0]["user"]
    for name, frame in zip(names, frames):
        if not frame["user"].equals(users):
            raise DataError(f"run {name} has other {split} users than run {names[0]}: "
                            "runs of one table must come from the same dataset split")
    stacked = np.stack([frame.select(METRICS).to_numpy() for frame in frames])  # [seeds, users, 4]
    return pl.DataFrame({"user": users, **{m: stacked[:, :, i].mean(0) for i, m in enumerate(METRICS)}})


@dataclass(frozen=True)
class PairedTest:
    """Two-sided paired t-test of ``ours`` against ``baseline`` over users."""

    statistic: float
    p_value: float
    mean_difference: float

    @property
    def significant_improvement(self) -> bool:
        """p < 0.05 and ours is better on average (the paper's ``*``)."""
        return (not math.isnan(self.p_value)) and self.p_value < SIGNIFICANCE_LEVEL and self.mean_difference > 0


def paired_t_test(ours: np.ndarray, baseline: np.ndarray) -> PairedTest:
    """``scipy.stats.ttest_rel`` on per-user values (same users, same order). Identical
    vectors give p = NaN (no evidence either way), never a ``*``."""
    ours, baseline = np.asarray(ours, float), np.asarray(baseline, float)
    if ours.shape != baseline.shape:
        raise ValueError(f"paired t-test needs the same users: {ours.shape} vs {baseline.shape}")
    difference = float(np.mean(ours - baseline))
    if np.all(ours == baseline):
        return PairedTest(float("nan"), float("nan"), 0.0)
    result = stats.ttest_rel(ours, baseline)
    return PairedTest(float(result.statistic), float(result.pvalue), difference)


def compare_runs(runs_dir: Path, ours: Sequence[str], baseline: Sequence[str]) -> dict[str, PairedTest]:
    """Per metric, the paired t-test of the seed-averaged per-user test metrics."""
    a, b = per_user_mean(runs_dir, ours), per_user_mean(runs_dir, baseline)
    if not a["user"].equals(b["user"]):
        raise DataError(f"runs {ours[0]} and {baseline[0]} have different test users")
    return {m: paired_t_test(a[m].to_numpy(), b[m].to_numpy()) for m in METRICS}


def read_gates(runs_dir: Path, name: str) -> dict[str, Any]:
    """``gates.json``'s towers of run ``name`` (``{}`` when the method has none)."""
    path = run_dir(runs_dir, name) / GATES_FILE
    if not path.exists():
        raise DataError(f"{path} is missing: rerun run {name}")
    return json.loads(path.read_text(encoding="utf-8")).get("towers", {})


def mean_gates(runs_dir: Path, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Gate values averaged over seeds, in ``gates.json``'s layout (``sources``, ``values``)."""
    per_run = [read_gates(runs_dir, name) for name in names]
    if not per_run[0]:
        raise DataError(f"run {names[0]} has no gates (only crossan, indsan, iisan and iisan-e do)")
    towers = {}
    for tower, first in per_run[0].items():
        values = np.mean([np.asarray(run[tower]["values"], float) for run in per_run], axis=0)
        towers[tower] = {"sources": list(first["sources"]), "values": values.tolist()}
    return towers


def read_settings(runs_dir: Path, name: str) -> dict[str, Any] | None:
    """``settings.json`` of run ``name``, or ``None`` for a run folder without one."""
    path = run_dir(runs_dir, name) / SETTINGS_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON ({error}); delete the run folder and rerun it") from error


def settings_notes(runs_dir: Path, names: Sequence[str]) -> list[str]:
    """One note per settings digest among the runs ``names``: the training settings other than
    the defaults that it stands for, and the methods of those runs. Runs with the defaults, or
    without ``settings.json``, give none."""
    digests: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for name in names:
        record = read_settings(runs_dir, name)
        if not record or not record.get("digest"):
            continue
        _, methods = digests.setdefault(record["digest"], (record["changed"], []))
        method = parse_run_name(name)["method"]
        if method not in methods:
            methods.append(method)
    return [f"Runs -x{digest} ({', '.join(methods)}): training settings other than the defaults: "
            f"{describe_changed(changed)}." for digest, (changed, methods) in digests.items()]
