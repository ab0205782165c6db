"""``crossan runs`` and ``crossan compare`` (issue 28) on a hand-made results tree of the demo
plan: every state, the table of finished runs, and the paired t-test against scipy's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from crossan.cli import build_parser, handler_of
from crossan.config import load_config
from crossan.errors import ConfigError, CrossanError, DataError
from crossan.results.index import (
    STATES,
    compare_runs,
    log_path,
    planned_runs,
    run_input_paths,
    run_states,
    run_table,
    runs_folder,
)
from crossan.runs.folder import GATES_FILE, LOG_FILE, SETTINGS_FILE, TOWERS_FILE, RunMetrics, to_json
from crossan.runs.identity import parse_run_name, settings_record
from crossan.runs.run_config import RunConfig
from crossan.runs.specs import run_by_name
from crossan.train.metrics import save_per_user

ROOT = Path(__file__).resolve().parent.parent
CONFIG_PATH = ROOT / "config.yaml"
DATASET = "demo"
METRICS = ("HR@10", "NDCG@10", "HR@20", "NDCG@20")
N_USERS = 30
HOUR = 3600.0


def per_user(ranks: np.ndarray) -> dict[str, np.ndarray]:
    """HR/NDCG@10/20 of 1-based ranks (the trainer's definition)."""
    ranks = np.asarray(ranks, float)
    out = {"rank": ranks}
    for k in (10, 20):
        hit = ranks <= k
        out[f"HR@{k}"] = hit.astype(float)
        out[f"NDCG@{k}"] = np.where(hit, 1 / np.log2(ranks + 1), 0.0)
    return out


def settings_of(name: str) -> dict:
    """settings.json as the trainer writes it: the demo's settings for a planned name, the
    defaults for another (a run of earlier settings)."""
    try:
        run = run_by_name(load_config(CONFIG_PATH), DATASET, name)
    except ConfigError:
        run = RunConfig(data_dir="", features_dir="", out_dir="", **parse_run_name(name))
    return settings_record(run)


def make_run(runs_dir: Path, name: str, ranks: np.ndarray, users: np.ndarray | None = None,
             settings: dict | None = None) -> dict[str, float]:
    """A finished run's files, metrics.json last; returns its test metrics."""
    folder = runs_dir / name
    folder.mkdir(parents=True)
    (folder / SETTINGS_FILE).write_text(to_json(settings or settings_of(name)))
    values = per_user(ranks)
    users = np.arange(len(ranks)) if users is None else users
    for split in ("valid", "test"):
        save_per_user(folder / f"per_user_{split}.parquet", users, values)
    (folder / GATES_FILE).write_text("{}\n")
    (folder / TOWERS_FILE).write_bytes(b"")
    (folder / LOG_FILE).write_text("epoch\n")
    test = {m: float(values[m].mean()) for m in METRICS}
    fields = parse_run_name(name)
    RunMetrics(run_name=name, dataset=DATASET, method=fields["method"], fusion=fields["fusion"], device="cpu",
               n_items=400, n_users={"train": 900, "valid": len(ranks), "test": len(ranks)},
               valid={m: v / 2 for m, v in test.items()}, test=test, best_epoch=3, epochs_run=8,
               stopped_early=True, trainable_parameters=12345, seconds_per_epoch=1.5, eval_seconds=0.25,
               peak_memory_mib=321.0, peak_memory_kind="cpu_peak_rss", extra={"paper_configuration_parameters": 99},
               versions={"crossan": "0.1"}).write(folder)
    return test


def write_log(results: Path, name: str, text: str, age_s: float) -> None:
    path = log_path(results, DATASET, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))


def named(runs: list[str], prefix: str) -> str:
    """The one planned run whose name starts with ``demo__{prefix}``."""
    matches = [name for name in runs if name.startswith(f"{DATASET}__{prefix}")]
    assert len(matches) == 1, (prefix, matches)
    return matches[0]


class Tree:
    """A results tree of the demo plan with one run (or more) in each state."""

    def __init__(self, root: Path) -> None:
        self.config = load_config(CONFIG_PATH)
        self.results = root / "results"
        self.runs_dir = runs_folder(self.results, DATASET)
        self.planned = planned_runs(self.config, DATASET)
        old = time.time() - 10 * HOUR
        for name in self.planned:  # every input, older than any run
            for path in run_input_paths(self.config, DATASET, name, self.results):
                if path.suffix:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(b"")
                else:
                    path.mkdir(parents=True, exist_ok=True)
                os.utime(path, (old, old))
        rng = np.random.default_rng(0)
        self.a = named(self.planned, "crossan-TIVA-momef-k2-h512-lr1e-03-s0")
        self.b = named(self.planned, "iisan-e-TIVA-concat-h1024")
        self.ranks = {self.a: rng.integers(1, 30, N_USERS), self.b: rng.integers(1, 40, N_USERS)}
        self.test = {name: make_run(self.runs_dir, name, ranks) for name, ranks in self.ranks.items()}
        # stale: an input newer than the run (the graph file only graph recommenders read)
        self.newer_input = named(self.planned, "mmgcn")
        make_run(self.runs_dir, self.newer_input, rng.integers(1, 40, N_USERS))
        graph = self.results / DATASET / "graph" / "graph.h5"
        os.utime(graph, (time.time() + 60, time.time() + 60))
        # stale: settings.json's settings are not those the name's digest stands for
        self.bad_settings = named(self.planned, "popularity")
        make_run(self.runs_dir, self.bad_settings, rng.integers(1, 40, N_USERS),
                 settings={"run_name": self.bad_settings, "digest": "", "changed": {"repeat_targets": "ranked"},
                           "settings": {"repeat_targets": "ranked"}})
        # failed: a log ending in a traceback; one killed without a word; running: a fresh log
        self.failed = named(self.planned, "crossan-TI-momef-k2-h512-lr1e-03-s0-x")
        write_log(self.results, self.failed, "INFO epoch 1: loss 3.2\nTraceback (most recent call last):\n"
                  '  File "x.py", line 1\nRuntimeError: CUDA out of memory\n', age_s=2 * HOUR)
        self.killed = named(self.planned, "crossan-TI-momef-k2-h512-lr1e-03-s1")
        write_log(self.results, self.killed, "INFO epoch 1: loss 3.2\nINFO epoch 2: loss 3.1\n", age_s=2 * HOUR)
        self.running = named(self.planned, "indsan-TI-momef-k2-h512-lr1e-03-s0")
        write_log(self.results, self.running, "INFO epoch 1: loss 3.2\n", age_s=60)
        # unplanned: a finished run of earlier settings (the defaults: no -x digest)
        self.unplanned = "demo__crossan-TIVA-momef-k2-h512-lr1e-04-s0"
        assert self.unplanned not in self.planned
        make_run(self.runs_dir, self.unplanned, rng.integers(1, 40, N_USERS))


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return Tree(tmp_path)


def cli(argv: list[str]) -> int:
    """The command as `crossan` runs it: its parser, then the handler it names."""
    args = build_parser(argv[0]).parse_args(argv)
    return handler_of(args)(args)


def test_the_index_loads_no_torch() -> None:
    code = "import sys, crossan.results.index; assert not any(m.split('.')[0] == 'torch' for m in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr


def test_inputs_follow_the_workflow_rule(tree: Tree) -> None:
    data = tree.results / DATASET / "data"
    splits = [data / f"{split}.parquet" for split in ("train", "valid", "test")]
    features = tree.results / DATASET / "features"
    assert run_input_paths(tree.config, DATASET, tree.failed, tree.results) == [
        *splits, features / "text.h5", features / "image.h5"]
    assert run_input_paths(tree.config, DATASET, tree.newer_input, tree.results)[-1] == \
        tree.results / DATASET / "graph" / "graph.h5"
    assert run_input_paths(tree.config, DATASET, tree.bad_settings, tree.results) == splits
    fft = named(tree.planned, "fft")
    assert run_input_paths(tree.config, DATASET, fft, tree.results) == [
        *splits, data / "items.csv", tree.results / DATASET / "media" / "image.h5",
        tree.results.parent / "resources" / "models" / "tiny-demo"]


def test_every_state(tree: Tree) -> None:
    states = run_states(tree.config, DATASET, tree.results)
    by_name = {row["name"]: row for row in states.iter_rows(named=True)}
    assert states["name"].to_list() == tree.planned + [tree.unplanned]  # plan order, then the others
    assert set(states["state"]) <= set(STATES)
    for name in (tree.a, tree.b):
        assert by_name[name]["state"] == "done" and by_name[name]["detail"] == ""
        assert by_name[name]["test.HR@10"] == pytest.approx(tree.test[name]["HR@10"])
        assert by_name[name]["test.NDCG@10"] == pytest.approx(tree.test[name]["NDCG@10"])
    assert by_name[tree.newer_input]["state"] == "stale"
    assert by_name[tree.newer_input]["detail"].endswith(str(Path(DATASET) / "graph" / "graph.h5"))
    assert by_name[tree.bad_settings]["state"] == "stale"
    assert "digest" in by_name[tree.bad_settings]["detail"]
    failed = by_name[tree.failed]
    assert (failed["state"], failed["detail"]) == ("failed", "RuntimeError: CUDA out of memory")
    assert by_name[tree.killed]["state"] == "failed" and "without an error" in by_name[tree.killed]["detail"]
    assert by_name[tree.running]["state"] == "running"
    assert by_name[tree.unplanned]["state"] == "unplanned"
    assert by_name[tree.unplanned]["method"] == "crossan"
    missing = [name for name, row in by_name.items() if row["state"] == "missing"]
    assert len(missing) == len(tree.planned) - 7 and all(by_name[name]["test.HR@10"] is None for name in missing)
    # a log without an error older than running_within_s: killed without a word
    later = run_states(tree.config, DATASET, tree.results, running_within_s=0)
    assert later.filter(pl.col("name") == tree.running)["state"].item() == "failed"


def test_an_output_removed_or_an_input_missing_is_stale(tree: Tree) -> None:
    (tree.runs_dir / tree.a / TOWERS_FILE).unlink()
    (tree.results / DATASET / "features" / "video.h5").unlink()
    states = {row["name"]: row for row in run_states(tree.config, DATASET, tree.results).iter_rows(named=True)}
    assert (states[tree.a]["state"], states[tree.a]["detail"]) == ("stale", f"output missing: {TOWERS_FILE}")
    assert states[tree.b]["state"] == "stale" and states[tree.b]["detail"].startswith("input missing:")


def test_run_table_columns_and_values(tree: Tree) -> None:
    table = run_table(tree.runs_dir)
    finished = sorted([tree.a, tree.b, tree.newer_input, tree.bad_settings, tree.unplanned])
    assert table["name"].to_list() == finished
    for column in ("dataset", "method", "modalities", "fusion", "topk", "hidden", "lr", "align", "align_weight",
                   "seed", "digest", "valid.HR@10", "test.NDCG@20", "epochs_run", "seconds_per_epoch",
                   "peak_memory_mib", "trainable_parameters", "users.test", "extra.paper_configuration_parameters",
                   "setting.max_epochs", "setting.standardize_states", "setting.repeat_targets", "version.crossan"):
        assert column in table.columns, column
    a = table.row(by_predicate=pl.col("name") == tree.a, named=True)
    assert (a["modalities"], a["fusion"], a["topk"], a["hidden"], a["lr"], a["seed"]) == ("TIVA", "momef", 2, 512,
                                                                                           1e-3, 0)
    assert a["align"] is None and a["digest"] == "59096742"
    assert a["setting.standardize_states"] is True and a["setting.max_epochs"] == 50
    for metric in METRICS:
        assert a[f"test.{metric}"] == pytest.approx(tree.test[tree.a][metric])
    popularity = table.row(by_predicate=pl.col("name") == tree.bad_settings, named=True)
    assert popularity["hidden"] is None and popularity["setting.max_epochs"] is None
    assert run_table(tree.results / "nothing").height == 0


def test_runs_command_lists_counts_and_writes_the_table(tree: Tree, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    csv, parquet = tmp_path / "out" / "runs.csv", tmp_path / "out" / "runs.parquet"
    assert cli(["runs", "--config", str(CONFIG_PATH), "--results", str(tree.results), "--csv", str(csv),
                "--parquet", str(parquet)]) == 0
    out = capsys.readouterr().out
    n_missing = len(tree.planned) - 7
    counts = f"2 done, 2 stale, 1 running, 2 failed, {n_missing} missing, 1 unplanned"
    assert f"{len(tree.planned) + 1} runs: {counts}" in out
    line = next(line for line in out.splitlines() if line.startswith(tree.a + " "))
    assert line.split()[1:4] == ["done", f"{tree.test[tree.a]['HR@10']:.4f}", f"{tree.test[tree.a]['NDCG@10']:.4f}"]
    assert f"wrote {csv} (5 finished runs)" in out
    written = pl.read_csv(csv)
    assert written.columns[:2] == ["name", "state"]
    assert dict(zip(written["name"], written["state"])) == {
        tree.a: "done", tree.b: "done", tree.newer_input: "stale", tree.bad_settings: "stale",
        tree.unplanned: "unplanned"}
    assert written.filter(pl.col("name") == tree.b)["test.HR@10"].item() == pytest.approx(tree.test[tree.b]["HR@10"])
    assert pl.read_parquet(parquet).select(written.columns[:6]).equals(written.select(written.columns[:6]))
    assert not list(csv.parent.glob("*.partial"))
    # the default table, and a state filter that lists (and tabulates) only those states
    assert cli(["runs", "--config", str(CONFIG_PATH), "--results", str(tree.results), "--state", "done"]) == 0
    out = capsys.readouterr().out
    assert pl.read_csv(tree.results / DATASET / "runs.csv")["name"].to_list() == sorted([tree.a, tree.b])
    assert tree.failed not in out and "(2 listed)" in out
    assert cli(["runs", "--config", str(CONFIG_PATH), "--results", str(tree.results), "--state", "failed,running"]) == 0
    out = capsys.readouterr().out
    assert "RuntimeError: CUDA out of memory" in out and "no table written" in out


def test_compare_matches_scipy_paired_t_test(tree: Tree, capsys: pytest.CaptureFixture[str]) -> None:
    comparison = compare_runs(tree.runs_dir, tree.a, tree.b)
    assert comparison["metric"].to_list() == list(METRICS)
    ours, baseline = per_user(tree.ranks[tree.a]), per_user(tree.ranks[tree.b])
    for row in comparison.iter_rows(named=True):
        metric = row["metric"]
        expected = stats.ttest_rel(ours[metric], baseline[metric])
        assert row["p_value"] == pytest.approx(expected.pvalue)
        assert row["t"] == pytest.approx(expected.statistic)
        assert (row["a"], row["b"]) == pytest.approx((ours[metric].mean(), baseline[metric].mean()))
        assert row["difference"] == pytest.approx(ours[metric].mean() - baseline[metric].mean())
        assert row["improvement_pct"] == pytest.approx(100 * (row["a"] - row["b"]) / row["b"])
        assert row["significant"] == (expected.pvalue < 0.05 and row["difference"] > 0)
    assert cli(["compare", tree.a, tree.b, "--results", str(tree.results)]) == 0
    out = capsys.readouterr().out
    p_value = comparison.filter(pl.col("metric") == "HR@10")["p_value"].item()
    assert f"A: {tree.a}" in out and f"{p_value:.3g}" in out


def test_compare_refuses_other_users_unknown_runs_and_other_datasets(tree: Tree) -> None:
    other = named(tree.planned, "crossan-TIVA-dynamic")
    make_run(tree.runs_dir, other, tree.ranks[tree.a], users=np.arange(1, N_USERS + 1))
    with pytest.raises(DataError, match="different test users"):
        compare_runs(tree.runs_dir, tree.a, other)
    with pytest.raises(DataError, match="no run demo__nothing"):
        compare_runs(tree.runs_dir, tree.a, "demo__nothing")
    with pytest.raises(DataError, match="datasets 'demo' and 'other'"):
        cli(["compare", tree.a, "other__popularity", "--results", str(tree.results)])


@pytest.mark.parametrize("argv, error", [
    (["runs", "--config", "no-such.yaml"], ConfigError),
    (["runs", "--config", str(CONFIG_PATH), "--dataset", "nope"], ConfigError),
    (["compare", "demo__popularity", "demo__id-sasrec-lr1e-02-s5", "--results", "no-results"], DataError),
    (["compare", "not-a-run", "demo__popularity"], ConfigError),
])
def test_one_line_errors(argv: list[str], error: type[CrossanError]) -> None:
    """Expected failures are CrossanErrors, which crossan's main prints as one line."""
    with pytest.raises(error) as raised:
        cli(argv)
    assert "\n" not in str(raised.value)


def test_unknown_state_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli(["runs", "--state", "done,finished"])
    assert "unknown state finished" in capsys.readouterr().err


def test_settings_json_is_written_as_the_trainer_writes_it(tree: Tree) -> None:
    """The fixture's settings.json is settings_record's (so 'done' means what it says)."""
    record = json.loads((tree.runs_dir / tree.a / SETTINGS_FILE).read_text())
    assert record["run_name"] == tree.a and record["digest"] == "59096742"
