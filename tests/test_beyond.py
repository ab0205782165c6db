"""Beyond the paper (issue 17): Tables B1-B3 and Figure B1, their plans (rows and run names,
also for a dataset with fewer modalities), every number rebuilt from hand-made run
directories, and their place in the workflow (results/{dataset}/beyond/)."""

from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from matplotlib.container import BarContainer
from matplotlib.patches import Rectangle
from test_tables import BASE, better, config, make_run, naive_p, per_user, worse
from test_workflow import snakemake, small_demo_config

from crossan.data.buckets import BUCKET_RULE
from crossan.errors import DataError
from crossan.results.figure_data import bucket_labels, build_figure
from crossan.results.figures import figure_b1_popularity, save_figure
from crossan.results.mutual_info import ksg_mutual_information
from crossan.results.plan import BEYOND_TARGETS, TargetPlan, planned_targets, target_plan
from crossan.results.table_output import to_markdown, write_table
from crossan.results.tables import build_table
from crossan.train.towers import ItemTowers

METRICS = ("HR@10", "NDCG@10", "HR@20", "NDCG@20")
BUCKETS = ("head", "torso", "tail")


def popularity(head: float | None, torso: float | None, tail: float | None,
               users: tuple[int, int, int] = (10, 6, 8), head_min: int = 15, tail_max: int = 9,
               items: tuple[int, int, int] = (5, 20, 75)) -> dict:
    """A ``test_by_popularity`` record as the trainer writes it (NDCG@10 = HR@10 / 2 here; a
    ``None`` HR@10: a bucket without test users)."""
    sizes = dict(zip(BUCKETS, items))
    record = {"by": BUCKET_RULE, "head_min_count": head_min, "tail_max_count": tail_max, "items": sizes,
              "interactions": {"head": 300, "torso": 300, "tail": 300},
              "empty_buckets": [bucket for bucket in BUCKETS if not sizes[bucket]]}
    for bucket, hr, n in zip(BUCKETS, (head, torso, tail), users):
        record[bucket] = {"users": n, "HR@10": hr, "NDCG@10": None if hr is None else hr / 2}
    return record


def add_metrics(runs_dir: Path, name: str, **fields: object) -> None:
    """Add top-level fields to a hand-made run's metrics.json."""
    path = runs_dir / name / "metrics.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))


# ---------------------------------------------------------------------------- plans


def test_plans_and_run_names() -> None:
    cfg = config({})
    t1, t3, t8 = (target_plan(cfg, "hand", t) for t in ("table1", "table3", "table8"))
    b1 = target_plan(cfg, "hand", "tableB1")
    assert [row.label for row in b1.rows] == ["CROSSAN (T+I)", "CROSSAN+CMSA (T+I)", "CROSSAN (T+I+V+A)",
                                              "CROSSAN+CMSA (T+I+V+A)"]
    # the plain rows are the runs Tables 1 and 3 read: nothing is trained twice
    assert b1.row("CROSSAN (T+I)").runs == t1.row("CROSSAN").runs == ("hand__crossan-TI-momef-k2-h512-lr1e-04-s0",)
    assert b1.row("CROSSAN (T+I+V+A)").runs == t3.row("CROSSAN (T+I+V+A) (ours)").runs
    assert b1.row("CROSSAN+CMSA (T+I)").runs == ("hand__crossan-TI-momef-k2-h512-lr1e-04-cmsa1e-01-s0",)
    assert [(c.ours, c.baseline) for c in b1.comparisons] == [("CROSSAN+CMSA (T+I)", "CROSSAN (T+I)"),
                                                              ("CROSSAN+CMSA (T+I+V+A)", "CROSSAN (T+I+V+A)")]
    assert b1.title.startswith("Beyond the paper:") and b1.notes == ()
    infonce = target_plan(config({"tableB1": {"modalities": ["TIA"], "align": "infonce", "align_weight": 0.5}}),
                          "hand", "tableB1")
    assert [row.label for row in infonce.rows] == ["CROSSAN (T+I+A)", "CROSSAN+InfoNCE (T+I+A)"]
    assert infonce.rows[1].runs == ("hand__crossan-TIA-momef-k2-h512-lr1e-04-infonce5e-01-s0",)

    b2 = target_plan(config({"settings": {"crossan": {"lr": 1e-3}}}), "hand", "tableB2")
    assert [(row.label, row.runs) for row in b2.rows] == [
        ("CROSSAN (T+I+V+A)", ("hand__crossan-TIVA-momef-k2-h512-lr1e-03-s0",)),
        ("CROSSAN-MoDA (T+I+V+A) (shared tower)", ("hand__crossan-moda-TIVA-momef-k2-h512-lr1e-03-s0",))]  # CROSSAN's setting
    assert [(c.label, c.ours, c.baseline) for c in b2.comparisons] == [
        ("Shared vs CROSSAN", "CROSSAN-MoDA (T+I+V+A) (shared tower)", "CROSSAN (T+I+V+A)")]

    b3 = target_plan(config({"tableB3": {"end_to_end": ["lora"], "models": ["bm3", "mhcr"]}}), "hand", "tableB3")
    assert [row.label for row in b3.rows] == ["CROSSAN (T+I+V+A)", "IISAN-E (T+I+V+A)", "Full Finetuning (T+I)",
                                              "Adapter (T+I)", "LoRA (T+I)", "BM3", "MHCR"]
    assert b3.row("Adapter (T+I)").runs == () and b3.row("Adapter (T+I)").note == (
        "not run: left out of experiments.tableB3.end_to_end")
    assert b3.row("LoRA (T+I)").runs == t3.row("LoRA (T+I)").runs
    assert b3.row("BM3").runs == t8.row("BM3").runs
    assert b3.row("IISAN-E (T+I+V+A)").runs == t3.row("IISAN-E (T+I+V+A)").runs
    f1 = target_plan(config({"tableB3": {"end_to_end": ["lora"], "models": ["bm3", "mhcr"]}}), "hand", "figureB1")
    assert f1.rows == tuple(row for row in b3.rows if row.runs)  # Table B3's, less the not-run rows

    # Figure B1 takes Table B3's seeds, unless it has its own
    seeds = config({"seeds": [0], "tableB3": {"seeds": [0, 1]}})
    assert target_plan(seeds, "hand", "figureB1").rows[0].runs == target_plan(seeds, "hand", "tableB3").rows[0].runs
    assert len(target_plan(seeds, "hand", "figureB1").rows[0].runs) == 2
    own = config({"tableB3": {"seeds": [0, 1]}, "figureB1": {"seeds": [3]}})
    assert target_plan(own, "hand", "figureB1").rows[0].runs == ("hand__crossan-TIVA-momef-k2-h512-lr1e-04-s3",)
    for target in BEYOND_TARGETS:
        plan = target_plan(cfg, "hand", target)
        assert TargetPlan.from_json(plan.to_json()) == plan
    assert planned_targets(cfg, "hand")[-4:] == list(BEYOND_TARGETS)


def test_a_dataset_with_fewer_modalities_gets_restricted_plans() -> None:
    cfg = config({}, {"kind": "demo", "modalities": ["text", "video"]})
    b1 = target_plan(cfg, "hand", "tableB1")
    assert [row.label for row in b1.rows] == ["CROSSAN (T+V)", "CROSSAN+CMSA (T+V)"]  # T+I -> T: one tower, left out
    assert b1.rows[1].runs == ("hand__crossan-TV-momef-k2-h512-lr1e-04-cmsa1e-01-s0",)
    assert b1.notes == ("Modalities restricted to the dataset's (text, video, catalog.hand.modalities): T+I -> T, "
                        "T+I+V+A -> T+V.", "CROSSAN (T) left out: one tower, nothing to align.")
    assert b1.title.endswith("Modalities: T, V: text, video (the dataset's own).")
    b2 = target_plan(cfg, "hand", "tableB2")
    assert b2.rows[1].runs == ("hand__crossan-moda-TV-momef-k2-h512-lr1e-04-s0",)
    b3 = target_plan(cfg, "hand", "tableB3")
    assert b3.row("Full Finetuning (T+I)").note == (
        "not run: Full Finetuning needs text and image, and dataset 'hand' declares text, video")
    assert b3.row("MMGCN").runs == ("hand__mmgcn-TV-h64-lr1e-03-s0",)
    assert [row.label for row in target_plan(cfg, "hand", "figureB1").rows][:3] == [
        "CROSSAN (T+V)", "IISAN-E (T+V)", "MMGCN"]
    # text only: MOMEF's k clamped for the shared tower too; Table B1 left out (test_tables)
    text = config({}, {"kind": "demo", "modalities": ["text"]})
    assert target_plan(text, "hand", "tableB2").rows[1].runs == ("hand__crossan-moda-T-momef-k1-h512-lr1e-04-s0",)
    assert "tableB1" not in planned_targets(text, "hand")


# ---------------------------------------------------------------------------- tables


def towers(rng: np.random.Generator, rho: float, n_towers: int, n_items: int = 200) -> tuple[ItemTowers, float]:
    """Tower outputs whose first two are correlated by ``rho``, and their KSG estimate."""
    first = rng.normal(size=(n_items, 3))
    rest = [rho * first + math.sqrt(1 - rho**2) * rng.normal(size=(n_items, 3)) for _ in range(n_towers - 1)]
    outputs = np.stack([first, *rest], 1).astype(np.float32)
    names = ("text", "image", "video", "audio")[:n_towers]
    item_towers = ItemTowers(outputs, np.ones((n_items, n_towers), bool), names, [str(i) for i in range(n_items)], "x")
    return item_towers, ksg_mutual_information(outputs[:, 0], outputs[:, 1])


def test_tableB1_metrics_mutual_information_marks_and_tau(tmp_path: Path) -> None:
    plan = target_plan(config({"seeds": [0, 1]}), "hand", "tableB1")
    runs_dir = tmp_path / "runs"
    rng = np.random.default_rng(0)
    quality = {"CROSSAN (T+I)": (BASE, 0.1), "CROSSAN+CMSA (T+I)": (better(BASE, 16), 0.95),
               "CROSSAN (T+I+V+A)": (BASE, 0.5), "CROSSAN+CMSA (T+I+V+A)": (worse(BASE, 16), 0.5)}
    mi: dict[str, list[float]] = {}
    taus = {"CROSSAN+CMSA (T+I)": [2.0, 2.5], "CROSSAN+CMSA (T+I+V+A)": [1.5, 1.5]}
    for row in plan.rows:
        ranks, rho = quality[row.label]
        for seed, name in enumerate(row.runs):
            item_towers, value = towers(rng, rho, 2 if "(T+I)" in row.label else 4)
            make_run(runs_dir, name, ranks, towers=item_towers)
            mi.setdefault(row.label, []).append(value)
            if row.label in taus:
                add_metrics(runs_dir, name, alignment={"align": "cmsa", "weight": 0.1, "tau": taus[row.label][seed],
                                                       "loss_per_epoch": [0.5]})
    table = build_table(plan, runs_dir)
    assert table.columns == (*METRICS, "Mutual Information")
    assert [row.label for row in table.rows] == [row.label for row in plan.rows]
    for row in plan.rows:
        cells = table.row(row.label).cells
        for metric in METRICS:
            assert cells[metric].mean == pytest.approx(per_user(quality[row.label][0])[metric].mean())
        assert cells["Mutual Information"].mean == pytest.approx(statistics.mean(mi[row.label]), rel=1e-9)
        assert cells["Mutual Information"].std == pytest.approx(statistics.stdev(mi[row.label]), rel=1e-9)
    ours, plain = table.row("CROSSAN+CMSA (T+I)").cells, table.row("CROSSAN (T+I)").cells
    assert ours["HR@10"].p_value == pytest.approx(naive_p(per_user(better(BASE, 16))["HR@10"], per_user(BASE)["HR@10"]))
    assert ours["HR@10"].marked and not plain["HR@10"].marked
    assert ours["Mutual Information"].p_value == pytest.approx(
        naive_p(np.array(mi["CROSSAN+CMSA (T+I)"]), np.array(mi["CROSSAN (T+I)"])))
    assert ours["Mutual Information"].marked  # 0.95 vs 0.1 correlation: clearly higher
    assert not any(cell.marked for cell in table.row("CROSSAN+CMSA (T+I+V+A)").cells.values())  # worse
    markdown = to_markdown(table)
    assert markdown.startswith("**Table B1** (hand): Beyond the paper: CROSSAN with and without")
    assert ("CROSSAN+CMSA (T+I): CMSA (SDA's cross-modal structural alignment), lambda = 0.1, learned tau = "
            f"2.2500 ± {statistics.stdev([2.0, 2.5]):.4f}; CROSSAN+CMSA (T+I+V+A): CMSA (SDA's cross-modal "
            "structural alignment), lambda = 0.1, learned tau = 1.5000 ± 0.0000.") in markdown
    assert "between the text and image tower outputs" in markdown and "compare rows of the same modalities" in markdown

    # an aligned run without its alignment record was not trained with the loss
    name = plan.row("CROSSAN+CMSA (T+I)").runs[0]
    metrics = json.loads((runs_dir / name / "metrics.json").read_text())
    del metrics["alignment"]
    (runs_dir / name / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(DataError, match=rf"{name}/metrics.json has no alignment"):
        build_table(plan, runs_dir)


def test_tableB2_sizes_times_relative_row_and_moda_settings(tmp_path: Path) -> None:
    plan = target_plan(config({}), "hand", "tableB2")
    runs_dir = tmp_path / "runs"
    (crossan,), (moda,) = (row.runs for row in plan.rows)
    make_run(runs_dir, crossan, BASE, seconds=2.0, params=1_000_000)
    add_metrics(runs_dir, crossan, paper_configuration_parameters=24_733_200)
    make_run(runs_dir, moda, better(BASE, 16), seconds=3.0, params=400_000)
    add_metrics(runs_dir, moda, paper_configuration_parameters=6_417_032)
    (runs_dir / moda / "settings.json").write_text(json.dumps({"settings": {"moda_rank": 8, "moda_experts": 4}}))
    table = build_table(plan, runs_dir)
    assert table.columns == ("TP", "TP (paper config)", "TT", *METRICS)
    a, b = table.row("CROSSAN (T+I+V+A)").cells, table.row("CROSSAN-MoDA (T+I+V+A) (shared tower)").cells
    assert (a["TP"].mean, a["TP (paper config)"].mean, a["TT"].mean) == (1_000_000, 24_733_200, 2.0)
    assert (b["TP"].mean, b["TP (paper config)"].mean, b["TT"].mean) == (400_000, 6_417_032, 3.0)
    relative = table.row("Shared vs CROSSAN").cells
    for column in table.columns:
        assert relative[column].mean == pytest.approx((b[column].mean - a[column].mean) / a[column].mean * 100)
    assert relative["TP"].mean == pytest.approx(-60.0) and relative["TT"].mean == pytest.approx(50.0)
    assert b["NDCG@10"].marked and b["NDCG@10"].p_value == pytest.approx(
        naive_p(per_user(better(BASE, 16))["NDCG@10"], per_user(BASE)["NDCG@10"]))
    assert not a["NDCG@10"].marked and not b["TP"].marked
    markdown = to_markdown(table)
    assert "| CROSSAN-MoDA (T+I+V+A) (shared tower) | 400,000 | 6,417,032 | 3.00 |" in markdown
    assert "| Shared vs CROSSAN | -60.00% | -74.05% | +50.00% |" in markdown
    assert "rank r = 8 split over E = 4 experts (training.moda_rank, training.moda_experts" in markdown

    # a run from before paper_configuration_parameters: its cell and the change stay empty, and a note says so
    metrics = json.loads((runs_dir / crossan / "metrics.json").read_text())
    del metrics["paper_configuration_parameters"]
    (runs_dir / crossan / "metrics.json").write_text(json.dumps(metrics))
    table = build_table(plan, runs_dir)
    assert table.row("CROSSAN (T+I+V+A)").cells["TP (paper config)"].mean is None
    assert table.row("Shared vs CROSSAN").cells["TP (paper config)"].mean is None
    assert f"TP (paper config) missing for runs {crossan}: their metrics.json predates" in to_markdown(table)


@pytest.fixture
def popularity_runs(tmp_path: Path):
    """Table B3's plan (two seeds, LoRA only, two graph models) and its runs' bucket numbers."""
    cfg = config({"seeds": [0, 1], "tableB3": {"end_to_end": ["lora"], "models": ["bm3", "mhcr"]}})
    plan = target_plan(cfg, "hand", "tableB3")
    runs_dir = tmp_path / "runs"
    numbers = {}
    for i, row in enumerate(plan.rows):
        for seed, name in enumerate(row.runs):
            numbers[name] = (0.5 - 0.05 * i + 0.01 * seed, 0.2 - 0.01 * i, 0.1 - 0.01 * i - 0.02 * seed)
            make_run(runs_dir, name, BASE)
            add_metrics(runs_dir, name, test_by_popularity=popularity(*numbers[name]))
    return cfg, plan, runs_dir, numbers


def test_tableB3_bucket_cells_thresholds_and_not_run_rows(popularity_runs, tmp_path: Path) -> None:
    _, plan, runs_dir, numbers = popularity_runs
    table = build_table(plan, runs_dir)
    write_table(table, tmp_path / "b3.csv", tmp_path / "b3.md", tmp_path / "b3.html")
    assert table.columns == ("Head HR@10", "Head NDCG@10", "Torso HR@10", "Torso NDCG@10", "Tail HR@10",
                             "Tail NDCG@10")
    for row in plan.rows:
        cells = table.row(row.label).cells
        if not row.runs:
            assert all(cell.mean is None for cell in cells.values())
            continue
        for b, bucket in enumerate(BUCKETS):
            hr = [numbers[name][b] for name in row.runs]
            assert cells[f"{bucket.capitalize()} HR@10"].mean == pytest.approx(statistics.mean(hr))
            assert cells[f"{bucket.capitalize()} HR@10"].std == pytest.approx(statistics.stdev(hr))
            assert cells[f"{bucket.capitalize()} NDCG@10"].mean == pytest.approx(statistics.mean(hr) / 2)
    markdown = (tmp_path / "b3.md").read_text(encoding="utf-8")
    assert "| Full Finetuning (T+I) | — | — | — | — | — | — |" in markdown
    assert "Full Finetuning (T+I): not run: left out of experiments.tableB3.end_to_end." in markdown
    assert ("Buckets: items by their training interactions (head: the fewest most popular items holding a third "
            "of them, tail: the fewest least popular holding a third, equal counts in one bucket), head >= 15, "
            "tail <= 9, torso between; a test user counts in the bucket of the target item: head 10, torso 6, "
            "tail 8 users.") in markdown
    assert "No item is" not in markdown
    crossan = plan.rows[0].runs
    assert f"| CROSSAN (T+I+V+A) | {statistics.mean(numbers[n][0] for n in crossan):.4f} ± " in markdown

    # every run must share the buckets: another threshold names the run
    odd = plan.row("MHCR").runs[1]
    add_metrics(runs_dir, odd, test_by_popularity=popularity(0.3, 0.2, 0.1, head_min=16))
    with pytest.raises(DataError, match=rf"run {odd} has other popularity buckets .* than run {crossan[0]}"):
        build_table(plan, runs_dir)
    metrics = json.loads((runs_dir / odd / "metrics.json").read_text())
    del metrics["test_by_popularity"]
    (runs_dir / odd / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(DataError, match=rf"{odd}/metrics.json has no test_by_popularity"):
        build_table(plan, runs_dir)


def test_tableB3_refuses_runs_bucketed_by_an_older_rule(popularity_runs) -> None:
    _, plan, runs_dir, _ = popularity_runs
    old = plan.row("MHCR").runs[0]
    add_metrics(runs_dir, old, test_by_popularity={**popularity(0.3, 0.2, 0.1), "by": "terciles over items"})
    with pytest.raises(DataError, match=rf"run {old}: its metrics.json test_by_popularity was bucketed by "
                                        r"another rule \('terciles over items'\)"):
        build_table(plan, runs_dir)


def test_an_empty_bucket_is_reported_not_filled(tmp_path: Path) -> None:
    """Two distinct training counts: no torso item, so no torso test user: empty torso cells,
    a note naming it, a Figure B1 label saying so and no torso bar."""
    cfg = config({"seeds": [0], "tableB3": {"end_to_end": [], "models": ["bm3"]}})
    plan = target_plan(cfg, "hand", "tableB3")
    runs_dir = tmp_path / "runs"
    for i, name in enumerate(plan.runs()):
        make_run(runs_dir, name, BASE)
        add_metrics(runs_dir, name, test_by_popularity=popularity(
            0.4 - 0.1 * i, None, 0.1, users=(12, 0, 30), head_min=3, tail_max=0, items=(40, 0, 60)))
    table = build_table(plan, runs_dir)
    crossan = table.row("CROSSAN (T+I+V+A)").cells
    assert crossan["Head HR@10"].mean == pytest.approx(0.4) and crossan["Tail HR@10"].mean == pytest.approx(0.1)
    assert crossan["Torso HR@10"].mean is None and crossan["Torso NDCG@10"].mean is None
    note = next(n for n in table.notes if n.startswith("Buckets:"))
    assert note.endswith("head 12, torso 0, tail 30 users. No item is torso: the items take fewer than three "
                         "distinct training counts, so equal counts cannot fill three buckets.")
    figure, points = build_figure(target_plan(cfg, "hand", "figureB1"), runs_dir)
    assert points["x"].to_list()[:3] == ["head (>= 3)", "torso (no item)", "tail (<= 0)"]
    assert points.filter(pl.col("bucket") == "torso")["HR@10"].null_count() == len(plan.runs())
    (ax,) = figure.axes
    assert [text.get_text() for text in ax.get_xticklabels()] == ["head (>= 3)", "tail (<= 0)"]
    heights = sorted(p.get_height() for p in ax.patches if isinstance(p, Rectangle))
    assert heights == pytest.approx(sorted([0.4 - 0.1 * i for i in range(len(plan.runs()))] + [0.1] * len(plan.runs())))


def test_figureB1_labels_a_one_count_torso() -> None:
    base = {"head_min_count": 4, "tail_max_count": 2, "empty_buckets": []}
    assert bucket_labels(base) == {"head": "head (>= 4)", "torso": "torso (3)", "tail": "tail (<= 2)"}
    assert bucket_labels({**base, "head_min_count": 9})["torso"] == "torso (3-8)"
    assert bucket_labels({"head_min_count": 3, "tail_max_count": 2, "empty_buckets": ["head", "torso"]}) == {
        "head": "head (no item)", "torso": "torso (no item)", "tail": "tail (<= 2)"}


# ---------------------------------------------------------------------------- figure


def test_figureB1_bars_and_points(popularity_runs, tmp_path: Path) -> None:
    cfg, _, runs_dir, numbers = popularity_runs
    plan = target_plan(cfg, "hand", "figureB1")
    figure, points = build_figure(plan, runs_dir)
    labels = [row.label for row in plan.rows]
    assert labels == ["CROSSAN (T+I+V+A)", "IISAN-E (T+I+V+A)", "LoRA (T+I)", "BM3", "MHCR"]
    assert points["series"].to_list() == [label for label in labels for _ in BUCKETS]
    assert points["bucket"].to_list() == list(BUCKETS) * len(labels)
    assert points["x"].to_list()[:3] == ["head (>= 15)", "torso (10-14)", "tail (<= 9)"]
    assert points["users"].to_list()[:3] == [10, 6, 8]
    for record in points.iter_rows(named=True):
        hr = [numbers[name][BUCKETS.index(record["bucket"])] for name in record["runs"].split(";")]
        assert record["HR@10"] == pytest.approx(statistics.mean(hr))
        assert record["HR@10_std"] == pytest.approx(statistics.stdev(hr))
        assert record["n_seeds"] == 2
    (ax,) = figure.axes
    bars = [patch for patch in ax.patches if isinstance(patch, Rectangle)]
    assert sorted(bar.get_height() for bar in bars) == pytest.approx(sorted(points["HR@10"].to_list()))
    assert [text.get_text() for text in ax.get_xticklabels()] == ["head (>= 15)", "torso (10-14)", "tail (<= 9)"]
    assert [text.get_text() for text in ax.get_legend().get_texts()] == labels
    save_figure(figure, tmp_path / "b1.png", tmp_path / "b1.svg")
    assert (tmp_path / "b1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figure_b1_popularity_draws_one_bar_per_method_and_bucket() -> None:
    figure = figure_b1_popularity({"A": {"head": (0.4, 0.0), "tail": (0.1, 0.0)},
                                   "B": {"head": (0.3, 0.05), "torso": (0.2, 0.01), "tail": (0.05, 0.0)}})
    (ax,) = figure.axes
    assert [text.get_text() for text in ax.get_xticklabels()] == ["head", "tail", "torso"]  # first appearance
    containers = [c for c in ax.containers if isinstance(c, BarContainer)]
    heights = {(c.get_label(), round(p.get_height(), 3)) for c in containers for p in c.patches}
    assert heights == {("A", 0.4), ("A", 0.1), ("B", 0.3), ("B", 0.2), ("B", 0.05)}
    a, b = containers
    assert a.errorbar is None and b.errorbar is not None  # error bars only with a std > 0
    assert a.patches[0].get_x() + a.patches[0].get_width() == pytest.approx(b.patches[0].get_x())  # side by side
    with pytest.raises(ValueError, match="no series"):
        figure_b1_popularity({})
    with pytest.raises(ValueError, match="std >= 0"):
        figure_b1_popularity({"A": {"head": (0.4, -1.0)}})


# ---------------------------------------------------------------------------- workflow


def test_the_workflow_builds_them_under_beyond(tmp_path: Path) -> None:
    small_demo_config(tmp_path)
    result = snakemake(tmp_path, "-n", "--cores", "2", "all")
    assert result.returncode == 0, result.stderr
    for target, extensions in (("tableB1", ("md", "csv", "html")), ("tableB2", ("md", "csv", "html")),
                               ("tableB3", ("md", "csv", "html")), ("figureB1", ("png", "svg", "csv"))):
        for ext in extensions:
            assert f"results/demo/beyond/{target}.{ext}" in result.stdout, (target, ext)
    assert re.search(r"^beyond_table\s+3$", result.stdout, flags=re.M)
    assert re.search(r"^beyond_figure\s+1$", result.stdout, flags=re.M)

    one = snakemake(tmp_path, "-n", "--cores", "2", "tableB2")  # by name: its runs only
    assert one.returncode == 0, one.stderr
    runs = set(re.findall(r"--run (\S+)", one.stdout))
    assert {name.split("-h")[0] for name in runs} == {"demo__crossan-TIVA-momef-k2", "demo__crossan-moda-TIVA-momef-k2"}
    assert re.search(r"^beyond_table\s+1$", one.stdout, flags=re.M) and "results/demo/beyond/tableB2.html" in one.stdout
