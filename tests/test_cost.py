"""The cost estimate (crossan.runs.cost): per-stage CPU-hours of a plan, before it runs."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from crossan.config import validate_config
from crossan.results.plan import experiment_runs
from crossan.runs.cost import (
    CONSTANTS,
    DEFAULT_PAIRS_PER_USER,
    DatasetSize,
    estimate_cost,
    format_estimate,
)

ROOT = Path(__file__).resolve().parent.parent
ISSUE_USERS, ISSUE_ITEMS = 10_000, 20_618  # issue 28's own dataset, text only


def raw_config() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))


def shop_config(entry: dict[str, Any] | None = None) -> dict[str, Any]:
    """config.yaml plus a text-only local dataset ``shop`` (``entry`` on top of its defaults)."""
    config = raw_config()
    config["catalog"]["shop"] = {"kind": "local", "data_dir": "/nonexistent/shop", "modalities": ["text"],
                                 **copy.deepcopy(entry or {})}
    config["datasets"] = ["shop"]
    return validate_config(config)


def test_demo_estimate_has_every_stage_and_every_run(tmp_path: Path) -> None:
    config = validate_config(raw_config())
    estimate = estimate_cost(config, "demo", results=tmp_path)  # no stats.json there: the configured size
    assert (estimate.size.users, estimate.size.items) == (1000, 400)
    assert estimate.size.source == "catalog.demo"
    assert estimate.run_count == len(estimate.runs) == len(experiment_runs(config, "demo")) == 40
    assert [stage.stage for stage in estimate.stages] == ["media sampling", "feature extraction", "training"]
    for stage in estimate.stages:
        assert stage.typical_hours > 0 and stage.max_hours >= stage.typical_hours
    # the tiny encoders: 400 items at the demo build's measured CPU seconds per item
    tiny = CONSTANTS["extract_item_s"]["tiny"]
    assert estimate.stage("feature extraction").typical_hours == pytest.approx(400 * sum(tiny.values()) / 3600)
    assert estimate.typical_hours == pytest.approx(sum(stage.typical_hours for stage in estimate.stages))
    by_family = {cost.family for cost in estimate.runs}
    assert by_family == {"cached-state", "end-to-end", "graph", "popularity"}


def test_the_data_steps_stats_give_the_size(tmp_path: Path) -> None:
    config = validate_config(raw_config())
    (tmp_path / "demo" / "data").mkdir(parents=True)
    (tmp_path / "demo" / "data" / "stats.json").write_text(json.dumps(
        {"users": 2000, "items": 500, "mean_sequence_length": 8.0}))
    size = estimate_cost(config, "demo", results=tmp_path).size
    assert (size.users, size.items, size.pairs_per_user) == (2000, 500, 6.0)
    assert size.source == str(tmp_path / "demo" / "data" / "stats.json")
    microlens = estimate_cost(config, "microlens-100k", results=tmp_path).size
    assert (microlens.users, microlens.items) == (100_000, 19_738)
    assert microlens.pairs_per_user == pytest.approx(719_405 / 100_000 - 2)


def test_an_unknown_size_prices_what_is_known() -> None:
    estimate = estimate_cost(shop_config(), "shop")
    assert estimate.size == DatasetSize(None, None, DEFAULT_PAIRS_PER_USER, "")
    assert estimate.stage("media sampling").typical_hours == 0.0  # text only: nothing to sample
    assert estimate.stage("feature extraction").typical_hours is None
    assert estimate.stage("training").typical_hours is None and estimate.typical_hours is None
    assert estimate.run_count == 34 and estimate.runs == ()  # the issue's count
    text = format_estimate(estimate)
    assert "--users and --items" in text and "unknown" in text and "warning" not in text
    with_items = estimate_cost(shop_config(), "shop", items=ISSUE_ITEMS)
    assert with_items.stage("feature extraction").typical_hours == pytest.approx(
        ISSUE_ITEMS * CONSTANTS["extract_item_s"]["full"]["text"] / 3600)


def training_hours(config: dict[str, Any], users: int, items: int = ISSUE_ITEMS) -> float:
    return estimate_cost(config, "shop", users=users, items=items).stage("training").typical_hours


def test_cached_state_training_scales_linearly_in_users() -> None:
    # CROSSAN with each fusion and top-k, INDSAN: cached-state runs only
    config = shop_config({"experiments": {"targets": ["table5", "table6", "table7"]}})
    estimate = estimate_cost(config, "shop", users=ISSUE_USERS, items=ISSUE_ITEMS)
    assert {cost.family for cost in estimate.runs} == {"cached-state"} and estimate.run_count == 4
    one, two, three = (training_hours(config, n * ISSUE_USERS) for n in (1, 2, 3))
    assert three - two == pytest.approx(two - one, rel=1e-9)  # linear in users
    assert 1.8 < two / one <= 2.0  # and nearly proportional: the per-user parts dominate
    # at a fixed users/items ratio every term doubles except the ranking (users x items) and the start
    assert training_hours(config, 2 * ISSUE_USERS, 2 * ISSUE_ITEMS) > 2 * one


def graph_run(config: dict[str, Any]):
    estimate = estimate_cost(config, "shop", users=ISSUE_USERS, items=ISSUE_ITEMS)
    return next(cost for cost in estimate.runs if cost.family == "graph")


def test_graph_grid_points_multiply_the_epochs() -> None:
    experiments = {"targets": ["table8"], "table8": {"models": ["mmgcn"]}}
    single = graph_run(shop_config({"experiments": experiments, "training": {"graph_grid": {}}}))
    grid = graph_run(shop_config({"experiments": experiments,
                                  "training": {"graph_grid": {"mmgcn": {"reg_weight": [1.0e-5, 1.0e-3, 1.0e-1]}}}}))
    assert grid.epoch_seconds == single.epoch_seconds > 0
    assert (grid.max_epochs, single.max_epochs) == (3 * 1000, 1000)  # graph_max_epochs per point
    assert grid.typical_epochs == 3 * single.typical_epochs
    fixed = single.max_hours - single.max_epochs * single.epoch_seconds / 3600
    assert grid.max_hours - fixed == pytest.approx(3 * (single.max_hours - fixed))
    assert grid.typical_hours - fixed == pytest.approx(3 * (single.typical_hours - fixed))


def test_the_printout_names_the_expensive_runs_and_warns() -> None:
    estimate = estimate_cost(shop_config(), "shop", users=ISSUE_USERS, items=ISSUE_ITEMS)
    text = format_estimate(estimate)
    lines = text.splitlines()
    assert lines[0].startswith("cost of `all` for dataset 'shop' (10,000 users, 20,618 items; --users and --items)")
    assert [line.split()[0] for line in lines[1:5]] == ["media", "feature", "training", "total"]
    assert "34 runs" in lines[3]
    ranked = sorted(estimate.runs, key=lambda cost: cost.typical_hours, reverse=True)
    top = next(index for index, line in enumerate(lines) if line.lstrip().startswith("most expensive runs"))
    assert [line.split()[0] for line in lines[top + 1:top + 4]] == [cost.name for cost in ranked[:3]]
    assert lines[top + 1].split()[1:] == [f"{ranked[0].typical_hours:.2f}", "h", f"{ranked[0].max_hours:.2f}", "h"]
    assert estimate.typical_hours > 10  # the issue: "well over 10 CPU-hours"
    warning = lines[-1]
    assert warning.lstrip().startswith("warning:") and "catalog.shop.experiments.targets" in warning
    assert "warning" not in format_estimate(estimate_cost(validate_config(raw_config()), "demo"))  # demo < 1 h


def test_a_target_is_priced_alone() -> None:
    config = shop_config()
    table6 = estimate_cost(config, "shop", users=ISSUE_USERS, items=ISSUE_ITEMS, target="table6")
    assert table6.run_count == 1 and table6.scope == "table6"  # one modality: INDSAN reads CROSSAN's run
    assert format_estimate(table6).startswith("cost of `table6` for dataset 'shop'")


def first_pass_block(markdown: str) -> dict[str, Any]:
    """The first-pass catalog entry of README's "Your own data" section (a ```yaml block with
    ``experiments:``)."""
    section = markdown.split("### Your own data", 1)[1].split("\n## ", 1)[0]
    blocks = [block for block in re.findall(r"```yaml\n(.+?)\n```", section, flags=re.S) if "experiments:" in block]
    assert len(blocks) == 1, "README's 'Your own data' section shows one first-pass experiments block"
    (entry,) = yaml.safe_load(blocks[0])["catalog"].values()
    return entry


def test_the_readme_first_pass_block_takes_about_an_hour() -> None:
    entry = first_pass_block((ROOT / "README.md").read_text(encoding="utf-8"))
    config = shop_config({key: value for key, value in entry.items() if key not in ("kind", "data_dir")})
    estimate = estimate_cost(config, "shop", users=ISSUE_USERS, items=ISSUE_ITEMS)
    assert estimate.typical_hours <= 1.2  # README: "about an hour" at 10,000 users
    assert {"table3", "table8"} <= set(config["catalog"]["shop"]["experiments"]["targets"])
    methods = {cost.name.split("__")[1].split("-")[0] for cost in estimate.runs}
    assert {"crossan", "iisan", "id", "popularity"} <= methods  # the main comparison stays


def test_importing_the_estimator_loads_no_torch() -> None:
    code = "import sys, crossan.runs.cost, crossan.runs.cost_cli; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "False"


def test_an_unfinished_stats_file_does_not_stop_the_estimate(tmp_path: Path) -> None:
    """Snakemake prints the estimate at its start: an empty or partial stats.json (a touched
    output, an older layout) falls back to the configured size instead of failing."""
    config = validate_config(raw_config())
    stats = tmp_path / "demo" / "data" / "stats.json"
    stats.parent.mkdir(parents=True)
    for text in ("", '{"users": 3}', "[]"):
        stats.write_text(text, encoding="utf-8")
        assert estimate_cost(config, "demo", results=tmp_path).size.users == config["catalog"]["demo"]["users"]
