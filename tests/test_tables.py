"""Tables and figures rebuilt from hand-made run directories: every cell, the * marks, the
improvement rows, seeds, the paper's values, missing rows and the traceability columns."""

from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from crossan.errors import ConfigError, DataError
from crossan.results.figure_data import build_figure
from crossan.results.mutual_info import ksg_mutual_information
from crossan.results.plan import (
    TargetPlan,
    check_run_modalities,
    dropped_targets,
    experiment_runs,
    planned_targets,
    target_plan,
)
from crossan.results.table_output import to_markdown, write_table
from crossan.results.tables import build_table
from crossan.runs.folder import RunMetrics
from crossan.runs.identity import parse_run_name, settings_digest, settings_record
from crossan.runs.specs import run_by_name
from crossan.train.metrics import save_per_user
from crossan.train.towers import ItemTowers, write_item_towers

METRICS = ("HR@10", "NDCG@10", "HR@20", "NDCG@20")
N_USERS = 24


def per_user(ranks: list[int]) -> dict[str, np.ndarray]:
    """HR/NDCG@10/20 of 1-based ranks (the trainer's definition)."""
    ranks_ = np.asarray(ranks, float)
    out = {"rank": ranks_}
    for k in (10, 20):
        hit = ranks_ <= k
        out[f"HR@{k}"] = hit.astype(float)
        out[f"NDCG@{k}"] = np.where(hit, 1 / np.log2(ranks_ + 1), 0.0)
    return out


def make_run(runs_dir: Path, name: str, ranks: list[int], *, seconds: float = 1.0, memory: float = 100.0,
             params: int = 1000, gates: dict | None = None, towers: ItemTowers | None = None) -> dict:
    """A finished run's files as the trainer writes them; returns its test metrics."""
    folder = runs_dir / name
    folder.mkdir(parents=True)
    values = per_user(ranks)
    save_per_user(folder / "per_user_test.parquet", np.arange(len(ranks)), values)
    test = {m: float(values[m].mean()) for m in METRICS}
    fields = parse_run_name(name)
    RunMetrics(run_name=name, dataset=fields["dataset"], method=fields["method"], fusion=fields["fusion"],
               device="cpu", n_items=100, n_users={"valid": len(ranks), "test": len(ranks)}, valid=test, test=test,
               best_epoch=1, epochs_run=1, stopped_early=False, trainable_parameters=params,
               seconds_per_epoch=seconds, eval_seconds=0.0, peak_memory_mib=memory,
               peak_memory_kind="cpu_peak_rss").write(folder)
    (folder / "gates.json").write_text(json.dumps({"towers": gates} if gates else {}))
    if towers is not None:
        write_item_towers(folder / "item_towers.h5", towers)
    return test


def config(experiments: dict, kind: dict | None = None) -> dict:
    return {"catalog": {"hand": kind or {"kind": "demo"}}, "experiments": experiments}


def naive_p(ours: np.ndarray, baseline: np.ndarray) -> float:
    """Two-sided paired t-test written out: t = mean(d) / (sd(d) / sqrt(n)), n - 1 dof."""
    d = ours - baseline
    t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    return float(2 * stats.t.sf(abs(t), len(d) - 1))


RNG = np.random.default_rng(7)
BASE = [int(r) for r in RNG.integers(1, 40, N_USERS)]


def better(ranks: list[int], step: int) -> list[int]:
    """Most users ranked ``step`` places higher: a clear, significant improvement."""
    return [max(1, r - step) if i % 6 else r for i, r in enumerate(ranks)]


def worse(ranks: list[int], step: int) -> list[int]:
    return [r + step if i % 5 else r for i, r in enumerate(ranks)]


@pytest.fixture
def table3_runs(tmp_path: Path):
    cfg = config({"seeds": [0, 1], "table3": {"modalities": ["TI", "TIVA"], "baselines": ["popularity"]}})
    plan = target_plan(cfg, "hand", "table3")
    runs_dir = tmp_path / "runs"
    ranks = {
        "Popularity": [[50] * N_USERS],  # deterministic: one run, whatever the seeds
        "Full Finetuning (T+I)": [worse(BASE, 2), worse(BASE, 3)],
        "Adapter (T+I)": [worse(BASE, 1), worse(BASE, 2)],
        "LoRA (T+I)": [worse(BASE, 4), worse(BASE, 5)],
        "IISAN (T+I)": [BASE, worse(BASE, 1)],
        "CROSSAN (T+I) (ours)": [better(BASE, 16), better(BASE, 15)],
        "IISAN-E (T+I+V+A)": [BASE, BASE],
        "CROSSAN (T+I+V+A) (ours)": [worse(BASE, 16), worse(BASE, 15)],  # significantly worse: no *
    }
    for label, seeds in ranks.items():
        for name, r in zip(plan.row(label).runs, seeds):
            make_run(runs_dir, name, r)
    return plan, runs_dir, ranks


def seed_mean(ranks_per_seed: list[list[int]], metric: str) -> np.ndarray:
    return np.mean([per_user(r)[metric] for r in ranks_per_seed], axis=0)


def test_table3_every_cell_marks_and_improvements(table3_runs, tmp_path: Path) -> None:
    plan, runs_dir, ranks = table3_runs
    table = build_table(plan, runs_dir)
    write_table(table, tmp_path / "t3.csv", tmp_path / "t3.md", tmp_path / "t3.html")
    frame = pl.read_csv(tmp_path / "t3.csv")
    assert frame["row"].to_list() == [
        "Popularity", "Full Finetuning (T+I)", "Adapter (T+I)", "LoRA (T+I)", "IISAN (T+I)", "IISAN-E (T+I+V+A)",
        "CROSSAN (T+I) (ours)", "CROSSAN (T+I+V+A) (ours)", "Text+Image", "Text+Image+Video+Audio"]
    rows = {row["row"]: row for row in frame.iter_rows(named=True)}
    baseline_of = {"CROSSAN (T+I) (ours)": "IISAN (T+I)", "CROSSAN (T+I+V+A) (ours)": "IISAN-E (T+I+V+A)"}
    for label, seeds in ranks.items():
        row = rows[label]
        assert row["runs"] == ";".join(plan.row(label).runs)
        for m in METRICS:
            per_seed = [per_user(r)[m].mean() for r in seeds]
            assert row[m] == pytest.approx(statistics.mean(per_seed), abs=1e-12)
            assert row[f"{m}_std"] == pytest.approx(statistics.stdev(per_seed) if len(seeds) > 1 else 0.0, abs=1e-12)
            assert row[f"{m}_n"] == len(seeds)
            if label in baseline_of:
                ours, base = seed_mean(seeds, m), seed_mean(ranks[baseline_of[label]], m)
                p = naive_p(ours, base)
                assert row[f"{m}_p"] == pytest.approx(p, rel=1e-9)
                expected_mark = p < 0.05 and ours.mean() > base.mean()
                assert (row[f"{m}_mark"] == "*") == expected_mark, (label, m, p)
            else:
                assert row[f"{m}_p"] is None and row[f"{m}_mark"] in (None, "")
    # the planted effects: T+I significantly better everywhere, T+I+V+A significantly worse (no *)
    assert all(rows["CROSSAN (T+I) (ours)"][f"{m}_mark"] == "*" for m in METRICS)
    assert all(rows["CROSSAN (T+I+V+A) (ours)"][f"{m}_p"] < 0.05 for m in METRICS)
    assert all(rows["CROSSAN (T+I+V+A) (ours)"][f"{m}_mark"] in (None, "") for m in METRICS)
    for label, (ours, base) in {"Text+Image": ("CROSSAN (T+I) (ours)", "IISAN (T+I)"),
                                "Text+Image+Video+Audio": ("CROSSAN (T+I+V+A) (ours)", "IISAN-E (T+I+V+A)")}.items():
        assert rows[label]["section"] == "Relative Improvement"
        for m in METRICS:
            expected = (rows[ours][m] - rows[base][m]) / rows[base][m] * 100
            assert rows[label][m] == pytest.approx(expected, rel=1e-12)
    assert rows["Text+Image"]["HR@10"] > 0 > rows["Text+Image+Video+Audio"]["HR@10"]
    for e2e in ("Full Finetuning (T+I)", "Adapter (T+I)", "LoRA (T+I)"):  # runs of their own (always T+I, concat)
        assert all(parse_run_name(name)["method"] == plan.row(e2e).method for name in plan.row(e2e).runs)

    markdown = (tmp_path / "t3.md").read_text(encoding="utf-8")
    ti = rows["CROSSAN (T+I) (ours)"]
    assert f"| CROSSAN (T+I) (ours) | {ti['HR@10']:.4f}* ± {ti['HR@10_std']:.4f} |" in markdown
    fft = rows["Full Finetuning (T+I)"]
    assert f"| Full Finetuning (T+I) | {fft['HR@10']:.4f} ± {fft['HR@10_std']:.4f} |" in markdown
    assert f"| Text+Image | {rows['Text+Image']['HR@10']:+.2f}% |" in markdown
    assert "| *Relative Improvement* |" in markdown  # popularity, deterministic, has one run for both seeds:
    assert "Mean ± sample standard deviation over 1/2 seeds" in markdown
    assert "(paper" not in markdown and "In parentheses" not in markdown  # not a MicroLens dataset
    html = (tmp_path / "t3.html").read_text(encoding="utf-8")
    assert "<th>CROSSAN (T+I) (ours)</th>" in html and f"{ti['HR@10']:.4f}*" in html


def test_end_to_end_rows_left_out_stay_as_not_run_rows(tmp_path: Path) -> None:
    cfg = config({"table3": {"modalities": ["TI"], "baselines": [], "end_to_end": ["lora"]}})
    plan = target_plan(cfg, "hand", "table3")
    assert [row.label for row in plan.rows][:3] == ["Full Finetuning (T+I)", "Adapter (T+I)", "LoRA (T+I)"]
    assert plan.row("Full Finetuning (T+I)").runs == () and "end_to_end" in plan.row("Adapter (T+I)").note
    (lora,) = plan.row("LoRA (T+I)").runs
    assert lora == "hand__lora-h512-lr2e-04-s0"  # IISAN's recommender lr, rank 512
    runs_dir = tmp_path / "runs"
    for row in plan.rows:
        for name in row.runs:
            make_run(runs_dir, name, BASE)
    markdown = to_markdown(build_table(plan, runs_dir))
    assert "| Full Finetuning (T+I) | — | — | — | — |" in markdown
    assert "Full Finetuning (T+I): not run: left out of experiments.table3.end_to_end" in markdown
    assert f"| LoRA (T+I) | {per_user(BASE)['HR@10'].mean():.4f} |" in markdown


def test_table4_improvements_reproduce_the_papers(tmp_path: Path) -> None:
    microlens = {"kind": "microlens", "variant": "100k", "url": "http://x/"}
    plan = target_plan(config({}, microlens), "hand", "table4")
    runs_dir = tmp_path / "runs"
    # the paper's own Table 4 numbers: our formula must give its improvement rows
    for label, (tt, gm, tp) in {"IISAN-E_best (T+I+V+A)": (213, 5556, 58432824),
                                "IISAN-E_same (T+I+V+A)": (207, 4476, 30889784),
                                "CROSSAN (T+I+V+A) (ours)": (144, 4272, 24741456),
                                "Full Finetuning (T+I)": (3278, 45886, 194897216),
                                "Adapter (T+I)": (2856, 35652, 38017088),
                                "LoRA (T+I)": (3110, 36902, 37992512)}.items():
        (name,) = plan.row(label).runs
        make_run(runs_dir, name, BASE, seconds=tt, memory=gm, params=tp)
    assert plan.row("IISAN-E_best (T+I+V+A)").runs[0].split("-h")[1].startswith("1024")
    assert plan.row("IISAN-E_same (T+I+V+A)").runs[0].split("-h")[1].startswith("512")
    table = build_table(plan, runs_dir)
    improvement = {row.label: {c: round(cell.mean, 2) for c, cell in row.cells.items()}
                   for row in table.rows if row.label.startswith("Improvement")}
    assert improvement == {"Improvement_best": {"TT": 32.39, "GM": 23.11, "TP": 57.66},
                           "Improvement_same": {"TT": 30.43, "GM": 4.56, "TP": 19.90}}
    markdown = to_markdown(table)
    assert "| CROSSAN (T+I+V+A) (ours) | 144.00 (144.00) | 4,272.0 (4,272.0) | 24,741,456 (24,741,456) |" in markdown
    assert "| LoRA (T+I) | 3,110.00 (3,110.00) | 36,902.0 (36,902.0) | 37,992,512 (37,992,512) |" in markdown
    assert [row.label for row in table.rows][:3] == ["Full Finetuning (T+I)", "Adapter (T+I)", "LoRA (T+I)"]
    assert "| Improvement_best | +32.39% (+32.39%) |" in markdown
    assert "peak resident memory of the process on the CPU" in markdown


def test_table1_metrics_and_mutual_information(tmp_path: Path) -> None:
    plan = target_plan(config({"seeds": [0, 1]}), "hand", "table1")
    runs_dir = tmp_path / "runs"
    rng = np.random.default_rng(0)
    n_items = 300
    mi = {}
    for label, rho, ranks in (("INDSAN", 0.0, BASE), ("CROSSAN", 0.9, better(BASE, 16))):
        for seed, name in enumerate(plan.row(label).runs):
            text = rng.normal(size=(n_items, 3))
            image = rho * text + math.sqrt(1 - rho**2) * rng.normal(size=(n_items, 3))
            available = np.ones((n_items, 2), bool)
            available[:7, 1] = False  # no cover: excluded from the estimate
            outputs = np.stack([text, image], 1).astype(np.float32)
            outputs[:7, 1] = 1e6  # would dominate the estimate if it were used
            make_run(runs_dir, name, ranks, towers=ItemTowers(outputs, available, ("text", "image"),
                                                             [str(i) for i in range(n_items)], name))
            mi.setdefault(label, []).append(ksg_mutual_information(outputs[7:, 0], outputs[7:, 1]))
    table = build_table(plan, runs_dir)
    assert [row.label for row in table.rows] == ["HR@10", "HR@20", "NDCG@10", "NDCG@20", "Mutual Information"]
    assert table.columns == ("INDSAN", "CROSSAN")
    for metric in METRICS:
        row = table.row(metric)
        assert row.cells["INDSAN"].mean == pytest.approx(per_user(BASE)[metric].mean())
        assert row.cells["CROSSAN"].mean == pytest.approx(per_user(better(BASE, 16))[metric].mean())
        assert row.cells["CROSSAN"].marked and not row.cells["INDSAN"].marked
    row = table.row("Mutual Information")
    for label in ("INDSAN", "CROSSAN"):
        assert row.cells[label].mean == pytest.approx(statistics.mean(mi[label]), rel=1e-9)
        assert row.cells[label].std == pytest.approx(statistics.stdev(mi[label]), rel=1e-9)
    assert row.cells["CROSSAN"].mean > 0.5 > abs(row.cells["INDSAN"].mean)
    assert row.cells["CROSSAN"].p_value == pytest.approx(naive_p(np.array(mi["CROSSAN"]), np.array(mi["INDSAN"])))
    assert "KSG" in to_markdown(table)


def test_a_table_names_its_runs_non_default_settings(tmp_path: Path) -> None:
    """Runs trained with other settings have other names (a digest), and their table says which
    settings: read from each run's settings.json, as the trainer writes it."""
    cfg = config({"table6": {"modalities": "TI"}})
    cfg["catalog"]["hand"]["training"] = {"max_epochs": 100, "standardize_states": True}
    plan = target_plan(cfg, "hand", "table6")
    digest = settings_digest({"max_epochs": 100, "standardize_states": True})
    assert plan.runs() == [f"hand__crossan-TI-momef-k2-h512-lr1e-04-s0-x{digest}",
                           f"hand__indsan-TI-momef-k2-h512-lr1e-04-s0-x{digest}"]
    default = target_plan(config({"table6": {"modalities": "TI"}}), "hand", "table6")
    assert default.runs() == [name.removesuffix(f"-x{digest}") for name in plan.runs()]  # side by side
    runs_dir = tmp_path / "runs"
    for name in plan.runs() + default.runs():
        make_run(runs_dir, name, BASE)
        record = settings_record(run_by_name(cfg if name in plan.runs() else config({}), "hand", name))
        (runs_dir / name / "settings.json").write_text(json.dumps(record))
    notes = build_table(plan, runs_dir).notes
    assert notes[-1] == (f"Runs -x{digest} (crossan, indsan): training settings other than the defaults: "
                         "max_epochs=100, standardize_states=true.")
    assert not any("other than the defaults" in note for note in build_table(default, runs_dir).notes)


def test_tables_5_6_7_rows_and_marks(tmp_path: Path) -> None:
    cfg = config({"table5": {"fusions": ["momef", "concat"]}, "table7": {"topk": [2, 1]}})
    runs_dir = tmp_path / "runs"
    for target in ("table5", "table6", "table7"):
        plan = target_plan(cfg, "hand", target)
        for i, row in enumerate(plan.rows):
            if not (runs_dir / row.runs[0]).exists():
                make_run(runs_dir, row.runs[0], better(BASE, 16) if i == 0 else BASE)
    t5 = build_table(target_plan(cfg, "hand", "table5"), runs_dir)
    assert [r.label for r in t5.rows] == ["MOMEF", "Concat Fusion"]
    assert t5.row("MOMEF").runs == ("hand__crossan-TIVA-momef-k2-h512-lr1e-04-s0",)
    t6 = build_table(target_plan(cfg, "hand", "table6"), runs_dir)
    assert [r.label for r in t6.rows] == ["Cross-modal", "Independent"]
    assert t6.row("Cross-modal").cells["HR@20"].marked and t6.row("Cross-modal").cells["HR@20"].p_value < 0.05
    t7 = build_table(target_plan(cfg, "hand", "table7"), runs_dir)
    assert [r.label for r in t7.rows] == ["2", "1"]
    assert t7.row("1").runs == ("hand__crossan-TIVA-momef-k1-h512-lr1e-04-s0",)
    assert t7.row("2").cells["HR@10"].mean == pytest.approx(per_user(better(BASE, 16))["HR@10"].mean())


def test_table8_rows_columns_and_the_mark_against_the_best_graph_recommender(tmp_path: Path) -> None:
    cfg = config({"table8": {"models": ["mmgcn", "freedom", "mhcr"]}})
    plan = target_plan(cfg, "hand", "table8")
    assert [r.label for r in plan.rows] == ["MMGCN", "FREEDOM", "MHCR", "IISAN (T+I)", "CROSSAN (T+I+V+A) (ours)"]
    assert plan.row("FREEDOM").runs == ("hand__freedom-TIVA-h64-lr1e-03-s0",)
    assert plan.row("IISAN (T+I)").runs == target_plan(cfg, "hand", "table3").row("IISAN (T+I)").runs
    runs_dir = tmp_path / "runs"
    quality = {"MMGCN": worse(BASE, 3), "FREEDOM": better(BASE, 2), "MHCR": BASE, "IISAN (T+I)": better(BASE, 6),
               "CROSSAN (T+I+V+A) (ours)": better(BASE, 16)}
    for row in plan.rows:
        make_run(runs_dir, row.runs[0], quality[row.label])
    table = build_table(plan, runs_dir)
    assert table.columns == ("HR@10", "HR@20", "NDCG@10", "NDCG@20")
    ours, best = per_user(better(BASE, 16)), per_user(better(BASE, 2))  # FREEDOM is the best of the three
    cell = table.row("CROSSAN (T+I+V+A) (ours)").cells["NDCG@20"]
    assert cell.p_value == pytest.approx(naive_p(ours["NDCG@20"], best["NDCG@20"]))
    assert cell.marked == (cell.p_value < 0.05)
    assert not any(c.marked for r in table.rows[:-1] for c in r.cells.values())
    assert "best graph recommender by test HR@10 (FREEDOM)" in " ".join(table.notes)
    assert "| Method | HR@10 | HR@20 | NDCG@10 | NDCG@20 |" in to_markdown(table)


def test_missing_run_names_the_file_and_the_command(table3_runs) -> None:
    plan, runs_dir, _ = table3_runs
    name = plan.row("IISAN (T+I)").runs[1]
    (runs_dir / name / "metrics.json").unlink()
    with pytest.raises(DataError, match=rf"{name}/metrics.json is missing.*snakemake --cores N"):
        build_table(plan, runs_dir)


def test_plan_round_trips_through_json() -> None:
    plan = target_plan(config({"seeds": [0, 3]}), "hand", "table3")
    assert TargetPlan.from_json(plan.to_json()) == plan
    assert plan.row("CROSSAN (T+I+V+A) (ours)").runs == (
        "hand__crossan-TIVA-momef-k2-h512-lr1e-04-s0", "hand__crossan-TIVA-momef-k2-h512-lr1e-04-s3")
    assert plan.row("IISAN-E (T+I+A)").runs[0] == "hand__iisan-e-TIA-concat-h1024-lr1e-04-s0"
    assert plan.row("Popularity").runs == ("hand__popularity",)  # deterministic: one run serves both seeds


def test_paper_plan_run_count_and_dataset_overrides() -> None:
    runs = experiment_runs(config({}), "hand")
    # T1 2 + T3 (2 baselines + 3 end-to-end + 4 IISAN(-E) + 3 CROSSAN besides T+I) + T4
    # IISAN-E_same 1 (its end-to-end rows are T3's) + T5 3 + T6 1 + T7 3 + F3 (IISAN-E 9 - h1024,
    # h512; CROSSAN 9 - h512) 15 + F5 (lr 5 - 1e-4) 4 + T8 6 graph recommenders (its IISAN and
    # CROSSAN rows are T3's) = 47; beyond the paper: B1 2 CROSSAN+CMSA (T+I, T+I+V+A) + B2 1
    # CROSSAN-MoDA (its CROSSAN row and all of B3's are the paper's runs) = 50
    assert len(runs) == len(set(runs)) == 50
    cfg = config({"table7": {"topk": [1]}})
    cfg["catalog"]["hand"]["experiments"] = {"settings": {"crossan": {"lr": 1e-3}}, "table7": {"seeds": [4]}}
    (row,) = target_plan(cfg, "hand", "table7").rows
    assert row.runs == ("hand__crossan-TIVA-momef-k1-h512-lr1e-03-s4",)


def test_figures_from_runs(tmp_path: Path) -> None:
    cfg = config({"figure3": {"hidden": [32, 512]}, "figure5": {"hidden": [512], "lr": [1e-4, 1e-3]}})
    runs_dir = tmp_path / "runs"
    gates = {"text": {"sources": ["H", "T", "I"], "values": [[0.5, 0.25, 0.25], [0.2, 0.4, 0.4]]},
             "image": {"sources": ["H", "T", "I"], "values": [[0.6, 0.2, 0.2], [0.3, 0.3, 0.4]]}}
    hr = {}
    for target in ("figure3", "figure4", "figure5"):
        for i, row in enumerate(target_plan(cfg, "hand", target).rows):
            if not (runs_dir / row.runs[0]).exists():
                hr[row.runs[0]] = make_run(runs_dir, row.runs[0], better(BASE, i), gates=gates)["HR@10"]
    figure, points = build_figure(target_plan(cfg, "hand", "figure3"), runs_dir)
    assert points["series"].to_list() == ["IISAN-E", "IISAN-E", "CROSSAN", "CROSSAN"]
    assert points["x"].to_list() == [32, 512, 32, 512]
    assert points["HR@10"].to_list() == pytest.approx([hr[r] for r in points["runs"]])
    lines = {container.get_label(): container.lines[0] for container in figure.axes[0].containers}
    assert list(np.asarray(lines["CROSSAN"].get_ydata())) == pytest.approx(points["HR@10"].to_list()[2:])
    figure, points = build_figure(target_plan(cfg, "hand", "figure4"), runs_dir)
    assert sorted(set(points["tower"])) == ["image", "text"] and len(points) == 12
    assert points.filter((pl.col("tower") == "image") & (pl.col("layer") == 1) & (pl.col("source") == "I"))[
        "value"].item() == 0.4
    figure, points = build_figure(target_plan(cfg, "hand", "figure5"), runs_dir)
    assert points["series"].to_list() == ["hidden", "lr", "lr"] and points["x"].to_list() == [512, 1e-4, 1e-3]


@pytest.mark.parametrize("variant", ["100k", "50k"])
def test_every_published_row_has_a_row_of_ours(variant: str) -> None:
    """The paper's values attach by row label: each published row must be one of our rows (or an
    improvement row), else its value would silently never show."""
    from crossan.results.paper import PAPER

    cfg = config({}, {"kind": "microlens", "variant": variant, "url": "http://x/"})
    for target, by_dataset in PAPER.items():
        published = by_dataset.get(f"microlens-{variant}", {})
        plan = target_plan(cfg, "hand", target)
        ours = {row.label for row in plan.rows} | {c.label for c in plan.comparisons}
        if target == "table1":
            ours = {"HR@10", "HR@20", "NDCG@10", "NDCG@20", "Mutual Information"}
        assert set(published) <= ours, (target, set(published) - ours)
        assert plan.paper_dataset == f"microlens-{variant}"


def test_paired_t_test_edge_cases() -> None:
    from crossan.results.runs import paired_t_test

    same = paired_t_test(np.array([0.0, 1.0, 1.0]), np.array([0.0, 1.0, 1.0]))
    assert math.isnan(same.p_value) and not same.significant_improvement  # no evidence, no *
    ours, base = np.array([1.0, 1.0, 1.0, 0.0, 1.0, 1.0]), np.array([0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    test = paired_t_test(ours, base)
    assert test.p_value == pytest.approx(naive_p(ours, base)) and test.mean_difference == pytest.approx(4 / 6)
    assert test.significant_improvement == (test.p_value < 0.05)
    flipped = paired_t_test(base, ours)
    assert flipped.p_value == pytest.approx(test.p_value) and not flipped.significant_improvement
    with pytest.raises(ValueError, match="same users"):
        paired_t_test(ours, base[:3])


def test_a_text_only_dataset_gets_text_only_rows_notes_and_captions(tmp_path: Path) -> None:
    cfg = config({}, {"kind": "demo", "modalities": ["text"]})
    assert planned_targets(cfg, "hand") == ["table3", "table4", "table5", "table6", "table7", "table8",
                                            "figure3", "figure4", "figure5", "tableB2", "tableB3", "figureB1"]
    why = ("Table 1 compares two towers' outputs (mutual information), and of the planned T+I dataset 'hand' "
           "declares only text")
    assert dropped_targets(cfg, "hand") == {
        "table1": why, "tableB1": ("Table B1 aligns two or more towers' outputs, and of the planned T+I, T+I+V+A "
                                   "dataset 'hand' declares at most one per set (text)")}
    with pytest.raises(ConfigError, match=re.escape(f"experiments.table1 of dataset 'hand': {why}")):
        target_plan(cfg, "hand", "table1")
    assert {parse_run_name(name)["modalities"] for name in experiment_runs(cfg, "hand")} == {"", "T"}
    assert {parse_run_name(name)["topk"] for name in experiment_runs(cfg, "hand")
            if parse_run_name(name)["method"] == "crossan" and parse_run_name(name)["fusion"] == "momef"} == {1}

    t3 = target_plan(cfg, "hand", "table3")
    assert [row.label for row in t3.rows] == [
        "Popularity", "SASRec (item IDs)", "Full Finetuning (T+I)", "Adapter (T+I)", "LoRA (T+I)", "IISAN-E (T)",
        "CROSSAN (T) (ours)"]
    assert t3.row("LoRA (T+I)").runs == () and t3.row("LoRA (T+I)").note == (
        "not run: LoRA needs text and image, and dataset 'hand' declares text")
    assert [(c.label, c.ours, c.baseline) for c in t3.comparisons] == [("Text", "CROSSAN (T) (ours)", "IISAN-E (T)")]
    assert t3.title == ("Performance comparison of CROSSAN with raw modalities (T: text) against IISAN and its "
                        "extension IISAN-E.")
    assert t3.notes == (
        "Modalities restricted to the dataset's (text, catalog.hand.modalities): T+I -> T, T+I+A -> T, "
        "T+I+V -> T, T+I+V+A -> T.",
        "MOMEF top-k 2 clamped to 1: k is at most the number of modalities (one expert each).")
    assert TargetPlan.from_json(t3.to_json()) == t3

    t7 = target_plan(cfg, "hand", "table7")
    assert [row.label for row in t7.rows] == ["1"]
    assert "MOMEF top-k 4, 3, 2 clamped to 1: k is at most the number of modalities (one expert each)." in t7.notes
    t8 = target_plan(cfg, "hand", "table8")
    assert t8.row("IISAN (T+I)").note == "not run: IISAN needs text and image, and dataset 'hand' declares text"
    assert t8.rows[-1].label == "CROSSAN (T) (ours)"
    assert {parse_run_name(row.runs[0])["modalities"] for row in t8.rows if row.runs} == {"T"}
    assert target_plan(cfg, "hand", "figure4").title.endswith(
        "(H: the tower's own frozen hidden state; T: the previous adapter layer's output of that tower, zeros "
        "before layer 0 unless training.layer0_previous is frozen). Modalities: T: text (the dataset's own).")

    # INDSAN coincides with CROSSAN with one modality: one run, both rows, and the table says so
    t6 = target_plan(cfg, "hand", "table6")
    assert t6.row("Independent").runs == t6.row("Cross-modal").runs
    assert parse_run_name(t6.row("Independent").runs[0])["method"] == "crossan"
    runs_dir = tmp_path / "runs"
    make_run(runs_dir, t6.rows[0].runs[0], BASE)
    markdown = to_markdown(build_table(t6, runs_dir))
    assert markdown.startswith("**Table 6** (hand): Ablation: cross-modal (CROSSAN) vs independent (INDSAN) side "
                               "adapters. Modalities: T: text (the dataset's own).\n")
    assert ("- Independent: INDSAN and CROSSAN coincide with one modality (text): each layer's gate mixes the "
            "tower's frozen state with the tower's own previous output either way, so this row reads the "
            "Cross-modal row's runs.") in markdown
    assert "- Modalities restricted to the dataset's (text, catalog.hand.modalities): T+I+V+A -> T." in markdown


def test_momef_topk_is_clamped_to_the_number_of_modalities(tmp_path: Path) -> None:
    cfg = config({}, {"kind": "demo", "modalities": ["image", "text"]})
    t7 = target_plan(cfg, "hand", "table7")
    assert [row.label for row in t7.rows] == ["2", "1"]
    assert [parse_run_name(row.runs[0])["topk"] for row in t7.rows] == [2, 1]
    assert t7.notes[-1] == "MOMEF top-k 4, 3 clamped to 2: k is at most the number of modalities (one expert each)."
    assert "table1" in planned_targets(cfg, "hand")  # T+I: both declared
    assert target_plan(cfg, "hand", "table1").notes == ()  # nothing restricted, nothing clamped
    with pytest.raises(ConfigError, match=r"experiments.table5 of dataset 'hand': modalities VA include none of "
                                          r"the dataset's \(text, image, key 'catalog.hand.modalities'\)"):
        target_plan(config({"table5": {"modalities": "VA"}}, {"kind": "demo", "modalities": ["image", "text"]}),
                    "hand", "table5")


def test_extra_runs_must_read_declared_modalities() -> None:
    cfg = config({}, {"kind": "demo", "modalities": ["text"]})
    names = experiment_runs(config({}), "hand")
    ti = next(name for name in names if parse_run_name(name)["modalities"] == "TI")
    text_only = [name for name in experiment_runs(cfg, "hand")]
    check_run_modalities(cfg, "hand", text_only)
    with pytest.raises(ConfigError) as caught:
        check_run_modalities(cfg, "hand", [*text_only, ti])
    assert str(caught.value).splitlines()[1] == (
        f"  run {ti} reads image, which dataset 'hand' does not declare (catalog.hand.modalities: text); "
        "give its spec under 'runs' modalities from T")
