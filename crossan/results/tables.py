"""The paper's Tables 1 and 3-8, and Tables B1-B3 beyond it, rebuilt from run directories alone.

Each builder takes a :class:`~crossan.results.plan.TargetPlan` (rows and their runs) and the
runs folder and returns a :class:`~crossan.results.table_output.Table`; :func:`~crossan.results.table_output.write_table` writes it as CSV (every number,
its standard deviation over seeds, p-values, the paper's value and the runs behind it),
Markdown and HTML (laid out like the paper).

Conventions, the same in every table:

* metric cells are the test split's mean over the row's seeds (``± std`` with several);
* a note under the table lists the training settings other than the defaults that the runs'
  names digest (``-x...``, read from each run's ``settings.json``), per digest;
* ``*``: paired two-sided t-test over users (per-user metrics averaged over seeds) against
  the row's baseline gives p < 0.05 and ours is better (``scipy.stats.ttest_rel``);
* relative improvement (Table 3): ``(ours - baseline) / baseline``, in percent, of the
  means; efficiency improvement (Table 4): ``(baseline - ours) / baseline`` (lower is better),
  which reproduces the paper's Table 4 percentages exactly; Table 4's TT and GM come from the runs
  measured side by side in one job (``crossan efficiency``) when that measurement is given, else
  from each run's own ``metrics.json`` (a note says which);
* a row the pipeline does not produce (full fine-tuning, Adapter, LoRA left out, or without
  text and image) is shown with ``—`` and a note, never dropped; the plan's own notes (a
  dataset's modalities, a clamped top-k, rows that coincide) follow the table; for MicroLens datasets the paper's published value is
  shown beside ours, in parentheses.

Beyond the paper: Table B1 (CROSSAN with the tower-alignment loss, and Table 1's mutual
information), Table B2 (CROSSAN's gates over one shared MoDA tower: size, time, metrics and
its percent change against CROSSAN), Table B3 (test metrics per popularity bucket of the
target item, the thresholds in a note).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any


from crossan.errors import DataError
from crossan.results.paper import TABLE8_COLUMNS, paper_value
from crossan.results.mutual_info import ksg_mutual_information
from crossan.results.plan import TargetPlan
from crossan.results.table_output import Cell, Row, Table
from crossan.results.runs import (
    BUCKET_METRICS,
    BUCKETS,
    METRICS,
    PairedTest,
    Summary,
    bucket_summary,
    compare_runs,
    paired_t_test,
    popularity_thresholds,
    read_alignment,
    read_popularity,
    read_runs,
    read_settings,
    settings_notes,
    summarise,
)
from crossan.runs.efficiency_file import EfficiencyRecord, RunEfficiency
from crossan.runs.folder import TOWERS_FILE, RunMetrics
from crossan.runs.vocabulary import GRAPH_METHODS
from crossan.train.towers import read_item_towers

MUTUAL_INFORMATION = "Mutual Information"
EFFICIENCY: dict[str, str] = {"TT": "seconds_per_epoch", "GM": "peak_memory_mib", "TP": "trainable_parameters"}
EFFICIENCY_KINDS: tuple[str, ...] = ("seconds", "mib", "count")
MEASURED: tuple[str, ...] = ("TT", "GM")  # Table 4's columns crossan efficiency measures side by side
# Table B2: column -> metrics.json key, and each one's kind
SHARED_TOWER: dict[str, str] = {"TP": "trainable_parameters", "TP (paper config)": "paper_configuration_parameters",
                                "TT": "seconds_per_epoch"}
SHARED_TOWER_KINDS: tuple[str, ...] = ("count", "count", "seconds")
# Table B3: "Head HR@10", "Head NDCG@10", ..., "Tail NDCG@10"
BUCKET_COLUMNS: dict[str, tuple[str, str]] = {f"{bucket.capitalize()} {metric}": (bucket, metric)
                                              for bucket in BUCKETS for metric in BUCKET_METRICS}
ALIGN_DESCRIPTIONS: dict[str, str] = {"cmsa": "CMSA (SDA's cross-modal structural alignment)", "infonce": "InfoNCE"}
MEMORY_KINDS: dict[str, str] = {
    "cuda_max_allocated": "GPU memory (torch.cuda.max_memory_allocated)",
    "cpu_peak_rss": "peak resident memory of the process on the CPU (no GPU; includes the cached states)",
}


# ====================================================================== building blocks


def _with_paper(table: Table) -> Table:
    for row in table.rows:
        for column, cell in row.cells.items():
            cell.paper = paper_value(table.target, table.paper_dataset, row.label, column)
    return table


def metric_cells(metrics: Sequence[RunMetrics]) -> dict[str, Cell]:
    """Test HR/NDCG@10/20 of the runs' ``metrics.json`` records (mean ± std)."""
    return {m: Cell.of(summarise(metrics, m)) for m in METRICS}


def metric_row(runs_dir: Path, label: str, runs: tuple[str, ...], note: str = "") -> Row:
    """Test HR/NDCG@10/20 of ``runs`` (mean ± std), or an all-missing row without runs."""
    if not runs:
        return Row(label, {m: Cell() for m in METRICS}, note=note)
    return Row(label, metric_cells(read_runs(runs_dir, runs)), runs, note)


def _mark(cell: Cell, test: PairedTest) -> None:
    cell.p_value, cell.marked = test.p_value, test.significant_improvement


def mark_against(runs_dir: Path, ours: Row, baseline: Row) -> None:
    """Put p-values and ``*`` marks on ``ours``'s metric cells (t-test vs ``baseline``)."""
    for metric, test in compare_runs(runs_dir, ours.runs, baseline.runs).items():
        _mark(ours.cells[metric], test)


def relative_improvement(ours: float, baseline: float) -> float:
    """``(ours - baseline) / baseline`` in percent (NaN when the baseline is 0)."""
    return (ours - baseline) / baseline * 100 if baseline else math.nan


def efficiency_gain(ours: float, baseline: float) -> float:
    """``(baseline - ours) / baseline`` in percent: positive = ours needs less."""
    return (baseline - ours) / baseline * 100 if baseline else math.nan


def _number_cells(runs: Sequence[RunMetrics], columns: Mapping[str, str], kinds: Sequence[str]) -> dict[str, Cell]:
    """Per column (-> its top-level ``metrics.json`` key, with its kind of ``kinds``) the mean
    ± std over ``runs``; a key some run lacks (written by a later version) leaves it empty."""
    return {column: Cell.of(summarise(runs, key), kind) if all(run.has(key) for run in runs) else Cell(kind=kind)
            for (column, key), kind in zip(columns.items(), kinds)}


def _change_row(label: str, ours: Row, baseline: Row, columns: Sequence[str],
                change: Callable[[float, float], float], section: str = "") -> Row:
    """A row of percent ``change(ours, baseline)`` of the means per column (empty where either
    is missing)."""
    cells = {c: Cell(kind="percent") if ours.cells[c].mean is None or baseline.cells[c].mean is None
             else Cell(change(ours.cells[c].mean, baseline.cells[c].mean), kind="percent") for c in columns}
    return Row(label, cells, section=section)


def _metric_table(plan: TargetPlan, runs_dir: Path, header: str) -> Table:
    rows = [metric_row(runs_dir, row.label, row.runs, row.note) for row in plan.rows]
    return Table(plan.target, plan.dataset, plan.title, header, METRICS, rows,
                 paper_dataset=plan.paper_dataset)


SIGNIFICANCE_NOTE = ("*: paired t-test over test users (per-user metrics averaged over seeds), "
                     "p < 0.05, improvement over {baseline}.")
SEEDS_NOTE = "Mean ± sample standard deviation over {n} seeds."


def _seed_note(table: Table) -> None:
    counts = {cell.n for row in table.rows for cell in row.cells.values() if cell.mean is not None and cell.n}
    if counts and max(counts) > 1:
        table.notes.append(SEEDS_NOTE.format(n="/".join(str(n) for n in sorted(counts))))


# ====================================================================== the tables


def tower_mutual_information(run_folder: Path) -> tuple[float, tuple[str, str]]:
    """KSG mutual information between a run's first two towers' outputs (text and image for
    T+I) over the items with both media, and the two towers' names."""
    towers = read_item_towers(run_folder / TOWERS_FILE)
    if len(towers.towers) < 2:
        raise DataError(f"run {run_folder.name} has {len(towers.towers)} tower(s); "
                        "Table 1 needs two (e.g. T+I)")
    both = towers.available[:, 0] & towers.available[:, 1]
    value = ksg_mutual_information(towers.outputs[both, 0], towers.outputs[both, 1])
    return value, (towers.towers[0], towers.towers[1])


MUTUAL_INFORMATION_NOTE = (
    "Mutual information (nats) between the {towers} tower outputs at the best checkpoint, over every item "
    "with both media: KSG estimator (Kraskov, Stögbauer & Grassberger 2004, k=3, z-scored dimensions, a "
    "fixed random subset of at most 5,000 items: its bias depends on N, so compare {compare}, not values "
    "across datasets); its * is a paired t-test over seeds (two or more seeds).")


def mutual_information(runs_dir: Path, runs: Sequence[str]) -> tuple[Cell, list[float], tuple[str, str]]:
    """The mutual information of each run's first two towers (:func:`tower_mutual_information`):
    its cell (mean ± std over the runs), the values, and the towers' names (the first run's)."""
    estimates = [tower_mutual_information(runs_dir / name) for name in runs]
    values = [value for value, _ in estimates]
    return Cell.of(Summary.of(values)), values, estimates[0][1]


def _mark_mutual_information(ours: Cell, values: Sequence[float], baseline: Sequence[float]) -> None:
    """``*`` and p on ``ours``: paired t-test over seeds, with two or more."""
    if len(values) > 1:
        _mark(ours, paired_t_test(values, baseline))


def table1(plan: TargetPlan, runs_dir: Path) -> Table:
    """INDSAN vs CROSSAN (paper Table 1; metrics as rows) and the mutual information between
    the first two towers' outputs (text and image) over all items with both media."""
    indsan, crossan = plan.row("INDSAN"), plan.row("CROSSAN")
    by_method = {"INDSAN": metric_row(runs_dir, "INDSAN", indsan.runs),
                 "CROSSAN": metric_row(runs_dir, "CROSSAN", crossan.runs)}
    mark_against(runs_dir, by_method["CROSSAN"], by_method["INDSAN"])
    rows = [Row(metric, {method: row.cells[metric] for method, row in by_method.items()})
            for metric in ("HR@10", "HR@20", "NDCG@10", "NDCG@20")]

    mi_cells, mi = {}, {}
    for method, row in (("INDSAN", indsan), ("CROSSAN", crossan)):
        mi_cells[method], mi[method], towers_named = mutual_information(runs_dir, row.runs)
    _mark_mutual_information(mi_cells["CROSSAN"], mi["CROSSAN"], mi["INDSAN"])
    rows.append(Row(MUTUAL_INFORMATION, mi_cells))
    for row in rows:
        row.runs = indsan.runs + crossan.runs
    table = Table(
        "table1", plan.dataset, plan.title, "Metric", ("INDSAN", "CROSSAN"), rows,
        notes=[SIGNIFICANCE_NOTE.format(baseline="INDSAN"),
               MUTUAL_INFORMATION_NOTE.format(towers=" and ".join(towers_named), compare="the two columns")],
        paper_dataset=plan.paper_dataset,
    )
    return table


def table3(plan: TargetPlan, runs_dir: Path) -> Table:
    """Every method row, then the relative improvement of each CROSSAN row over its IISAN /
    IISAN-E row with ``*`` from the paired t-test (paper Table 3)."""
    table = _metric_table(plan, runs_dir, "Model")
    for comparison in plan.comparisons:
        ours, baseline = table.row(comparison.ours), table.row(comparison.baseline)
        mark_against(runs_dir, ours, baseline)
        table.rows.append(_change_row(comparison.label, ours, baseline, METRICS, relative_improvement,
                                      section="Relative Improvement"))
    table.notes += [SIGNIFICANCE_NOTE.format(baseline="the IISAN / IISAN-E row of the same modalities"),
                    "Relative improvement: (CROSSAN - IISAN(-E)) / IISAN(-E) of the means."]
    return table


def table4(plan: TargetPlan, runs_dir: Path, efficiency: EfficiencyRecord | None = None) -> Table:
    """Training time per epoch, peak memory and trainable parameters (paper Table 4). TT and GM
    come from ``efficiency`` (the runs measured side by side in one job, ``crossan efficiency``)
    when given, else from each run's own ``metrics.json``; TP always from ``metrics.json``."""
    rows, kinds = [], set()
    for plan_row in plan.rows:
        if not plan_row.runs:
            rows.append(Row(plan_row.label, {c: Cell(kind=k) for c, k in zip(EFFICIENCY, EFFICIENCY_KINDS)},
                            note=plan_row.note))
            continue
        metrics = read_runs(runs_dir, plan_row.runs)
        cells = _number_cells(metrics, EFFICIENCY, EFFICIENCY_KINDS)
        if efficiency is None:
            kinds |= {run.peak_memory_kind for run in metrics}
        else:
            measured = efficiency.of(plan_row.runs, source=f"the {plan.dataset} efficiency measurement")
            cells |= measured_cells(measured)
            kinds |= {run.peak_memory_kind for run in measured}
        rows.append(Row(plan_row.label, cells, plan_row.runs))
    table = Table("table4", plan.dataset, plan.title, "Method", tuple(EFFICIENCY), rows,
                  paper_dataset=plan.paper_dataset)
    for comparison in plan.comparisons:
        ours, baseline = table.row(comparison.ours), table.row(comparison.baseline)
        table.rows.append(_change_row(comparison.label, ours, baseline, tuple(EFFICIENCY), efficiency_gain))
    table.notes.append("Improvement: (IISAN-E - CROSSAN) / IISAN-E. _best: IISAN-E at its own setting; "
                       "_same: IISAN-E at CROSSAN's adapter hidden size.")
    table.notes.append(efficiency_note(efficiency))
    table.notes += [f"GM here: {MEMORY_KINDS.get(kind, kind)}." for kind in sorted(kinds)]
    return table


def measured_cells(measured: Sequence[RunEfficiency]) -> dict[str, Cell]:
    """The :data:`MEASURED` columns (TT, GM) of a row's runs as measured side by side (mean ± std
    over the row's seeds)."""
    return {column: Cell.of(Summary.of([getattr(run, EFFICIENCY[column]) for run in measured]), kind)
            for column, kind in zip(EFFICIENCY, EFFICIENCY_KINDS) if column in MEASURED}


def efficiency_note(efficiency: EfficiencyRecord | None) -> str:
    """Where TT and GM come from: the side-by-side measurement (how it was made), or each run's
    own job (which may have shared the machine with others)."""
    if efficiency is None:
        return ("TT and GM: each run's own metrics.json, timed in its own training job; jobs that ran side by "
                "side shared the CPU (and GPU), so these figures may include contention (the workflow's rule "
                "efficiency, `crossan efficiency`, measures them side by side in one job).")
    by_batches: dict[int, list[str]] = {}
    for run in efficiency.runs.values():
        by_batches.setdefault(run.batches, [])
        if run.method not in by_batches[run.batches]:
            by_batches[run.batches].append(run.method)
    batches = (f"{next(iter(by_batches))}" if len(by_batches) == 1 else
               ", ".join(f"{count} ({', '.join(methods)})" for count, methods in sorted(by_batches.items())))
    rounds = f"{efficiency.repeats} round{'s' if efficiency.repeats != 1 else ''}"
    threads = f"{efficiency.threads} thread{'s' if efficiency.threads != 1 else ''}"
    return ("TT and GM: measured side by side in one job taking every core (crossan efficiency; "
            f"{threads}, {rounds}): each run in a fresh process, the runs in rotating order; TT = batches per "
            f"epoch x the median seconds per training batch, timed over {batches} training batches per round "
            f"after a warm-up of {efficiency.warmup_batches}; GM over loading and those batches (median of the "
            "rounds). TP: each run's metrics.json.")


def table5(plan: TargetPlan, runs_dir: Path) -> Table:
    return _metric_table(plan, runs_dir, "Method")


def table6(plan: TargetPlan, runs_dir: Path) -> Table:
    table = _metric_table(plan, runs_dir, "Modality")
    mark_against(runs_dir, table.row("Cross-modal"), table.row("Independent"))
    table.notes.append(SIGNIFICANCE_NOTE.format(baseline="Independent"))
    return table


def table7(plan: TargetPlan, runs_dir: Path) -> Table:
    return _metric_table(plan, runs_dir, "Top-K")


def table8(plan: TargetPlan, runs_dir: Path) -> Table:
    """The graph recommenders, IISAN and CROSSAN (paper Table 8, columns in its order); ``*``:
    CROSSAN against the best graph recommender by mean test HR@10 (paired t-test)."""
    table = _metric_table(plan, runs_dir, "Method")
    table.columns = TABLE8_COLUMNS
    graph_rows = [table.row(row.label) for row in plan.rows if row.method in GRAPH_METHODS and row.runs]
    ours = table.row(plan.rows[-1].label)
    if graph_rows and ours.runs:
        best = max(graph_rows, key=lambda row: row.cells["HR@10"].mean)
        mark_against(runs_dir, ours, best)
        table.notes.append(SIGNIFICANCE_NOTE.format(baseline=f"the best graph recommender by test HR@10 ({best.label})"))
    return table


# ====================================================================== beyond the paper


def tableB1(plan: TargetPlan, runs_dir: Path) -> Table:
    """CROSSAN without and with the tower-alignment loss on each modality set (rows): test
    metrics and the mutual information between each run's first two towers (as Table 1);
    ``*``: the aligned row against the plain one of the same modalities (metrics: paired t-test
    over users; mutual information: over seeds, two or more). A note gives each aligned row's
    loss, its weight lambda and the learned temperature tau (mean over seeds)."""
    table = _metric_table(plan, runs_dir, "Method")
    table.columns = (*METRICS, MUTUAL_INFORMATION)
    mi, towers = {}, {}
    for row in table.rows:
        row.cells[MUTUAL_INFORMATION], mi[row.label], pair = mutual_information(runs_dir, row.runs)
        towers[" and ".join(pair)] = None
    aligned = []
    for comparison in plan.comparisons:
        ours, baseline = table.row(comparison.ours), table.row(comparison.baseline)
        mark_against(runs_dir, ours, baseline)
        _mark_mutual_information(ours.cells[MUTUAL_INFORMATION], mi[ours.label], mi[baseline.label])
        records = [read_alignment(runs_dir, name) for name in ours.runs]
        kinds = ", ".join(dict.fromkeys(ALIGN_DESCRIPTIONS.get(r["align"], r["align"]) for r in records))
        weights = ", ".join(dict.fromkeys(f"{float(r['weight']):g}" for r in records))
        tau = Summary.of([float(r["tau"]) for r in records])
        aligned.append(f"{ours.label}: {kinds}, lambda = {weights}, learned tau = {tau.mean:.4f}"
                       + (f" ± {tau.std:.4f}" if tau.n > 1 else ""))
    table.notes += [
        SIGNIFICANCE_NOTE.format(baseline="CROSSAN without the alignment loss, same modalities"),
        "Alignment loss: the training loss adds lambda x the loss between every pair of modality towers' "
        "outputs (experiments.tableB1.align, align_weight); tau is its learned temperature at the best "
        "checkpoint (metrics.json alignment.tau, mean over seeds). " + "; ".join(aligned) + ".",
        MUTUAL_INFORMATION_NOTE.format(towers=", ".join(towers), compare="rows of the same modalities"),
    ]
    return table


def _moda_note(runs_dir: Path, names: Sequence[str]) -> str:
    """The shared tower's experts, from its runs' ``settings.json`` (training.moda_rank,
    training.moda_experts)."""
    records = [read_settings(runs_dir, name) or {} for name in names]
    settings = dict.fromkeys((r.get("settings", {}).get("moda_rank"), r.get("settings", {}).get("moda_experts"))
                             for r in records)
    given = ", ".join(f"rank r = {rank} split over E = {experts} experts" for rank, experts in settings
                      if rank is not None and experts is not None)
    return ("CROSSAN: one adapter tower per modality (the paper's). CROSSAN-MoDA (shared tower): CROSSAN's "
            "cross-modal gates over one adapter tower and head shared by every modality, each adapter "
            "projection with low-rank experts gated per modality (SDA's MoDA)"
            + (f"; {given}" if given else "") + " (training.moda_rank, training.moda_experts; the runs' "
            "settings.json).")


def tableB2(plan: TargetPlan, runs_dir: Path) -> Table:
    """CROSSAN vs CROSSAN-MoDA (one shared tower): TP, TP at the paper's configuration, TT and
    the test metrics, then the shared tower's percent change against CROSSAN; ``*`` on its
    metrics from the paired t-test against CROSSAN."""
    rows, lacking = [], []
    for plan_row in plan.rows:
        metrics = read_runs(runs_dir, plan_row.runs)
        row = Row(plan_row.label, {**_number_cells(metrics, SHARED_TOWER, SHARED_TOWER_KINDS), **metric_cells(metrics)},
                  plan_row.runs, plan_row.note)
        lacking += [name for name, run in zip(plan_row.runs, metrics) if not run.has(SHARED_TOWER["TP (paper config)"])]
        rows.append(row)
    table = Table(plan.target, plan.dataset, plan.title, "Method", (*SHARED_TOWER, *METRICS), rows,
                  paper_dataset=plan.paper_dataset)
    for comparison in plan.comparisons:
        ours, baseline = table.row(comparison.ours), table.row(comparison.baseline)
        mark_against(runs_dir, ours, baseline)
        table.rows.append(_change_row(comparison.label, ours, baseline, table.columns, relative_improvement))
        table.notes += [
            SIGNIFICANCE_NOTE.format(baseline=baseline.label),
            f"{comparison.label}: ({ours.label} - {baseline.label}) / {baseline.label} of the means, in percent "
            "(on TP and TT, below 0 means the shared tower is smaller, faster).",
        ]
    table.notes += [
        _moda_note(runs_dir, [name for row in plan.rows if row.method == "crossan-moda" for name in row.runs]),
        "TP (paper config): the same model's trainable parameters at the paper's configuration (768-d states, "
        "7 kept layers, item dim 64), whatever the encoders' size here.",
        "TT: each run's own mean seconds per training epoch, measured in separate jobs (on small states "
        "the experts' extra operations weigh more than at the paper's shape); bench/train.py times the "
        "shared tower and CROSSAN side by side at the paper's state shape.",
    ]
    if lacking:
        table.notes.append(f"TP (paper config) missing for runs {', '.join(lacking)}: their metrics.json predates "
                           "paper_configuration_parameters; rerun them to fill it.")
    return table


def tableB3(plan: TargetPlan, runs_dir: Path) -> Table:
    """Test HR/NDCG@10 per popularity bucket of the target item (head, torso, tail), mean ±
    std over seeds, from each run's ``test_by_popularity``; a note gives the thresholds and the
    test users per bucket, which every run must share."""
    records = read_popularity(runs_dir, plan.runs())
    buckets = popularity_thresholds(records)  # first: runs bucketed by another rule are refused
    rows = []
    for plan_row in plan.rows:
        if not plan_row.runs:
            rows.append(Row(plan_row.label, {c: Cell() for c in BUCKET_COLUMNS}, note=plan_row.note))
            continue
        seeds = [records[name] for name in plan_row.runs]
        rows.append(Row(plan_row.label, {c: _bucket_cell(bucket_summary(seeds, bucket, metric))
                                         for c, (bucket, metric) in BUCKET_COLUMNS.items()}, plan_row.runs))
    table = Table(plan.target, plan.dataset, plan.title, "Method", tuple(BUCKET_COLUMNS), rows,
                  paper_dataset=plan.paper_dataset)
    table.notes.append(popularity_note(buckets))
    return table


def _bucket_cell(summary: Summary | None) -> Cell:
    """A Table B3 cell; empty for a bucket without test users."""
    return Cell() if summary is None else Cell.of(summary)


def popularity_note(buckets: Mapping[str, Any]) -> str:
    """The buckets' definition (:func:`~crossan.results.runs.popularity_thresholds`) in words,
    naming the buckets without an item (``empty_buckets``)."""
    users = buckets["users"]
    note = (f"Buckets: items by their training interactions (head: the fewest most popular items holding a third "
            f"of them, tail: the fewest least popular holding a third, equal counts in one bucket), head >= "
            f"{buckets['head_min_count']}, tail <= {buckets['tail_max_count']}, torso between; a test user counts "
            f"in the bucket of the target item: {', '.join(f'{b} {users[b]:,}' for b in BUCKETS)} users.")
    if empty := buckets.get("empty_buckets"):
        note += (f" No item is {' or '.join(empty)}: the items take fewer than three distinct training counts, "
                 "so equal counts cannot fill three buckets.")
    return note


BUILDERS: dict[str, Callable[[TargetPlan, Path], Table]] = {
    "table1": table1, "table3": table3, "table4": table4, "table5": table5, "table6": table6, "table7": table7,
    "table8": table8, "tableB1": tableB1, "tableB2": tableB2, "tableB3": tableB3,
}


def build_table(plan: TargetPlan, runs_dir: Path, efficiency: EfficiencyRecord | None = None) -> Table:
    """The table of ``plan`` from the runs in ``runs_dir``, with the seed note and (for
    MicroLens) the paper's values. ``efficiency``: Table 4's TT and GM measured side by side
    (:mod:`crossan.runs.efficiency_file`), of the same dataset and target; a
    :class:`DataError` otherwise."""
    if plan.target not in BUILDERS:
        raise ValueError(f"{plan.target} is not a table; choose from {', '.join(BUILDERS)}")
    if efficiency is None:
        table = BUILDERS[plan.target](plan, Path(runs_dir))
    elif plan.target != "table4" or (efficiency.dataset, efficiency.target) != (plan.dataset, plan.target):
        raise DataError(f"the efficiency measurement is {efficiency.target} of dataset {efficiency.dataset!r}; "
                        f"{plan.target} of dataset {plan.dataset!r} cannot read it (only Table 4 reads one)")
    else:
        table = table4(plan, Path(runs_dir), efficiency)
    table.notes += plan.notes  # how the plan departs from the paper's (the dataset's modalities)
    _seed_note(table)
    table.notes += settings_notes(Path(runs_dir), plan.runs())  # the runs' non-default training settings
    return _with_paper(table)
