"""Table 4's efficiency measured side by side (crossan efficiency): real measurements of two
cached-state runs in fresh processes, the rotating order, the JSON record, the command line,
and Table 4 reading TT and GM from the record (TP from the runs)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from test_tables import make_run
from test_train_data import random_features, random_sequences, write_dataset, write_features

from crossan.cli import handler_of
from crossan.commands.efficiency import register_cli
from crossan.errors import ConfigError, DataError
from crossan.results import cli as results_cli
from crossan.results.plan import TargetPlan, target_plan
from crossan.results.table_output import to_markdown
from crossan.results.tables import build_table
from crossan.runs.efficiency_file import EfficiencyRecord
from crossan.runs.efficiency_job import has_end_to_end, merged_inputs, plan_input_flags, plan_methods, plan_training
from crossan.runs.identity import run_name
from crossan.runs.specs import configured_run, methods_training
from crossan.train import efficiency
from crossan.train.efficiency import Measurement, measure_runs, rotations
from crossan.train.efficiency_cli import plan_runs

N_USERS, N_ITEMS, LAYERS, HIDDEN, BATCH = 40, 30, 3, 16, 16
CONFIG = {
    "catalog": {"demo": {"kind": "demo", "training": {"batch_size": BATCH}}},
    # IISAN-E at CROSSAN's h: its _best and _same rows are one run; no end-to-end rows
    "experiments": {"settings": {"crossan": {"hidden": 8}, "iisan-e": {"hidden": 8}},
                    "table4": {"modalities": "TI", "end_to_end": []}},
}
RECORD_KEYS = {"dataset", "target", "device", "device_name", "threads", "cpu_count", "repeats", "warmup_batches",
               "order", "runs", "versions"}
RUN_KEYS = {"method", "batch_size", "batches_per_epoch", "batches", "repeats", "seconds_per_batch",
            "seconds_per_epoch", "peak_memory_mib", "peak_memory_kind", "device", "rounds"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("efficiency")
    data = write_dataset(root / "data", random_sequences(N_USERS, N_ITEMS, seed=3), N_ITEMS)
    ids = [str(100 + i) for i in range(1, N_ITEMS + 1)]
    for seed, name in enumerate(("text", "image")):
        write_features(root / "features" / f"{name}.h5", *random_features(N_ITEMS, LAYERS, HIDDEN, seed), ids)
    return data, root / "features"


@pytest.fixture(scope="module")
def plan() -> TargetPlan:
    return target_plan(CONFIG, "demo", "table4")


def the_runs(plan: TargetPlan, dataset) -> dict:
    data, features = dataset
    training = methods_training(CONFIG, "demo", [row.method for row in plan.rows if row.runs])
    inputs = {"data_dir": str(data), "features_dir": str(features)}
    return plan_runs(plan, training, {"iisan-e": inputs, "crossan": inputs}, device="cpu")


@pytest.fixture(scope="module")
def measured(plan: TargetPlan, dataset, tmp_path_factory) -> tuple[EfficiencyRecord, Path]:
    """The real measurement: each run in its own spawned process, 2 timed batches, one round."""
    record = measure_runs(the_runs(plan, dataset), dataset="demo", batches=2, warmup=1, repeats=1, threads=1)
    path = tmp_path_factory.mktemp("out") / "efficiency" / "table4.json"
    record.write(path)
    return record, path


def test_the_plan_has_two_cached_state_runs(plan: TargetPlan) -> None:
    iisan, crossan = plan.runs()
    assert iisan.startswith("demo__iisan-e-TI-") and crossan.startswith("demo__crossan-TI-")
    assert plan.row("IISAN-E_best (T+I)").runs == plan.row("IISAN-E_same (T+I)").runs == (iisan,)
    assert not plan.row("LoRA (T+I)").runs


def test_measurement_writes_every_key_with_positive_numbers(measured, plan: TargetPlan) -> None:
    record, path = measured
    written = json.loads(path.read_text(encoding="utf-8"))
    assert set(written) == RECORD_KEYS
    assert written["order"] == [plan.runs()]  # one round, in the plan's order
    assert (written["dataset"], written["target"], written["repeats"], written["threads"]) == ("demo", "table4", 1, 1)
    assert written["device"] == "cpu" and written["cpu_count"] >= 1 and written["warmup_batches"] == 1
    assert set(written["runs"]) == set(plan.runs())
    trainable = sum(len(items) >= 3 for items in random_sequences(N_USERS, N_ITEMS, seed=3).values())
    for name, run in written["runs"].items():
        assert set(run) == RUN_KEYS, name
        assert run["method"] == name.split("__")[1].split("-TI")[0]
        assert (run["batch_size"], run["batches"], run["repeats"]) == (BATCH, 2, 1)
        assert run["batches_per_epoch"] == math.ceil(trainable / BATCH)
        assert run["seconds_per_batch"] > 0 and run["peak_memory_mib"] > 0
        assert run["seconds_per_epoch"] == pytest.approx(run["batches_per_epoch"] * run["seconds_per_batch"])
        assert run["peak_memory_kind"] == "cpu_peak_rss" and run["device"] == "cpu"
        (only,) = run["rounds"]
        assert only["round"] == 0 and len(only["batch_seconds"]) == 2 and min(only["batch_seconds"]) > 0
    assert EfficiencyRecord.read(path) == record


def test_runs_take_turns_in_rotating_order(plan: TargetPlan, dataset, monkeypatch) -> None:
    assert rotations(["a", "b", "c"], 4) == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]
    calls = []

    def fake(run, batches, warmup, threads):  # the parent's side: which run, in which turn
        calls.append(run_name(run))
        return Measurement((0.5, 0.25, 1.0), 3, 10.0 + len(calls), "cpu_peak_rss", "cpu", "x86_64")

    monkeypatch.setattr(efficiency, "measure_isolated", fake)
    first, second = plan.runs()
    record = measure_runs(the_runs(plan, dataset), dataset="demo", batches=3, repeats=3, threads=1)
    assert calls == [first, second, second, first, first, second]
    assert record.order == ((first, second), (second, first), (first, second))
    assert [(r.round, r.position) for r in record.runs[second].rounds] == [(0, 1), (1, 0), (2, 1)]
    assert record.runs[first].seconds_per_batch == 0.5  # median of every timed batch of every round
    assert record.runs[first].seconds_per_epoch == 1.5  # 3 batches per epoch
    assert record.runs[first].peak_memory_mib == 14.0  # median of 11, 14, 15


def test_table4_reads_time_and_memory_from_the_record(measured, plan: TargetPlan, tmp_path: Path) -> None:
    record, path = measured
    runs_dir = tmp_path / "runs"
    for name in plan.runs():
        make_run(runs_dir, name, [1, 5, 30] * 8, seconds=999.0, memory=999.0, params=1234)
    table = build_table(plan, runs_dir, record)
    for label in ("IISAN-E_best (T+I)", "IISAN-E_same (T+I)", "CROSSAN (T+I) (ours)"):
        row = table.row(label)
        (name,) = row.runs
        assert row.cells["TT"].mean == record.runs[name].seconds_per_epoch
        assert row.cells["GM"].mean == record.runs[name].peak_memory_mib
        assert row.cells["TP"].mean == 1234  # from the runs' metrics.json
    markdown = to_markdown(table)
    assert ("TT and GM: measured side by side in one job taking every core (crossan efficiency; 1 thread, 1 round)"
            in markdown)
    assert "timed over 2 training batches per round after a warm-up of 1" in markdown

    # the command line: crossan table --efficiency
    parser = argparse.ArgumentParser(prog="crossan")
    results_cli.register_cli(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "tables"
    args = parser.parse_args(["table", "--plan", plan.to_json(), "--runs", str(runs_dir), "--csv", str(out / "t.csv"),
                              "--md", str(out / "t.md"), "--html", str(out / "t.html"), "--efficiency", str(path)])
    assert handler_of(args)(args) == 0
    crossan = plan.runs()[1]
    assert f"| CROSSAN (T+I) (ours) | {record.runs[crossan].seconds_per_epoch:,.2f} |" in (out / "t.md").read_text()

    # without the record: each run's own figures, and a note that they may include contention
    old = build_table(plan, runs_dir)
    assert old.row("CROSSAN (T+I) (ours)").cells["TT"].mean == 999.0
    assert "may include contention" in to_markdown(old)


def test_a_record_of_another_plan_is_refused(measured, plan: TargetPlan, tmp_path: Path) -> None:
    record, _ = measured
    runs_dir = tmp_path / "runs"
    for name in plan.runs():
        make_run(runs_dir, name, [1, 5, 30] * 8)
    with pytest.raises(DataError, match="cannot read it"):
        build_table(plan, runs_dir, dataclasses.replace(record, dataset="other"))
    lacking = dataclasses.replace(record, runs={plan.runs()[0]: record.runs[plan.runs()[0]]})
    with pytest.raises(DataError, match=f"no measurement of run\\(s\\) {plan.runs()[1]}"):
        build_table(plan, runs_dir, lacking)


def test_graph_and_popularity_runs_are_not_measured() -> None:
    runs = {"x": configured_run(CONFIG, "demo", "freedom", modalities="TI"),
            "y": configured_run(CONFIG, "demo", "popularity", modalities="")}
    with pytest.raises(ConfigError, match="cached-state and end-to-end runs, not x, y"):
        measure_runs(runs, dataset="demo")


def test_the_command_rebuilds_the_runs_and_writes_the_record(plan: TargetPlan, dataset, tmp_path: Path,
                                                             monkeypatch) -> None:
    seen = []

    def fake(run, batches, warmup, threads):
        seen.append((run, batches, warmup, threads))
        return Measurement((0.1,) * batches, 2, 5.0, "cpu_peak_rss", "cpu", "x86_64")

    monkeypatch.setattr(efficiency, "measure_isolated", fake)
    parser = argparse.ArgumentParser(prog="crossan")
    register_cli(parser.add_subparsers(dest="command", required=True))
    data, features = dataset
    training = methods_training(CONFIG, "demo", ["iisan-e", "crossan"])
    out = tmp_path / "table4.json"
    args = parser.parse_args(["efficiency", "--plan", plan.to_json(), "--training", json.dumps(training),
                              "--data", str(data), "--features", str(features), "--out", str(out), "--device", "cpu",
                              "--threads", "1", "--repeats", "1", "--batches", "3", "--warmup", "0"])
    assert handler_of(args)(args) == 0
    assert [run_name(run) for run, *_ in seen] == plan.runs()
    assert {(run.device, run.batch_size, run.hidden, run.data_dir, run.features_dir) for run, *_ in seen} == {
        ("cpu", BATCH, 8, str(data), str(features))}
    assert {tuple(rest) for _, *rest in seen} == {(3, 0, 1)}
    assert set(EfficiencyRecord.read(out).runs) == set(plan.runs())
    # settings whose digest is not the plan's names' are refused
    other = json.dumps({**training, "patience": 9})
    bad = parser.parse_args(["efficiency", "--plan", plan.to_json(), "--training", other, "--out", str(out)])
    with pytest.raises(ConfigError, match="does not match the training settings"):
        handler_of(bad)(bad)


def test_registering_the_command_loads_no_torch() -> None:
    code = ("import sys, argparse; from crossan.commands.efficiency import register_cli; "
            "register_cli(argparse.ArgumentParser().add_subparsers()); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_workflow_job_reads_every_runs_inputs_and_passes_their_settings(plan: TargetPlan) -> None:
    class Ancient(str):  # a path as Snakemake's ancient() marks it
        flags = {"ancient": True}

    cached, e2e = {"items": Ancient("d/items.csv"), "train": "d/train.parquet"}, {"items": "d/items.csv"}
    for jobs in ([cached, e2e], [e2e, cached]):  # whichever comes first, the one that reads the titles wins
        merged = merged_inputs(jobs)
        assert merged == ["d/items.csv", "d/train.parquet"] and not any(isinstance(p, Ancient) for p in merged)
    alone = merged_inputs([cached])
    assert alone == ["d/items.csv", "d/train.parquet"] and isinstance(alone[0], Ancient)

    assert plan_methods(plan) == ["iisan-e", "crossan"] and not has_end_to_end(plan)
    assert plan_training(CONFIG, "demo", plan) == methods_training(CONFIG, "demo", ["iisan-e", "crossan"])
    assert plan_input_flags(CONFIG, "demo", plan) == "--data results/demo/data --features results/demo/features"
    paper = target_plan({"catalog": {"demo": {"kind": "demo"}}}, "demo", "table4")
    assert has_end_to_end(paper)
    assert set(plan_training(CONFIG, "demo", paper)["e2e_text_lr"]) == {"fft", "adapter", "lora"}
