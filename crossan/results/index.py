"""``crossan runs`` and ``crossan compare``: every planned run with its state, one table of the
finished runs, and two runs compared with the tables' paired t-test.

A dataset's planned runs are those of its tables and figures
(:func:`crossan.results.plan.experiment_runs`) and its extra runs
(:func:`crossan.runs.specs.planned_run_names`): what ``snakemake all`` trains. Each has a state
(:data:`STATES`), judged from its folder ``results/{dataset}/runs/{name}/``
(:mod:`crossan.runs.folder`), its inputs and its log ``results/{dataset}/logs/train/{name}.log``:

* ``done``: ``metrics.json`` is there, so is every other output, no input is newer than the
  oldest output, and ``settings.json`` lists the settings the name's ``-x`` digest stands for;
* ``stale``: finished, but Snakemake would train it again (an output or an input is missing, an
  input is newer: :func:`run_input_paths`), or its ``settings.json`` disagrees with its name;
* ``running``: no ``metrics.json``, and a log written within ``running_within_s`` that ends
  without an error (a heuristic: the log is the job's output; a job on a cluster counts too);
* ``failed``: no ``metrics.json`` (or an unreadable one), and a log: the job ran and did not
  finish (detail: the log's last error line, or its last line when it ends without one);
* ``missing``: neither: the run never started;
* ``unplanned``: a finished folder the plan does not name (earlier settings, another plan).

Snakemake also reruns a job whose code, parameters or software environment changed (its
``--rerun-triggers``); those are in its own records, not in the files read here.

:func:`run_table` flattens every finished run folder (name fields, ``settings.json``'s settings
as ``setting.*`` columns, ``metrics.json``'s numbers) into one table; ``crossan runs`` writes it,
with each run's state, to ``results/{dataset}/runs.csv`` (:data:`TABLE_FILE`) or where
``--csv``/``--parquet`` say. :func:`compare_runs` puts two runs' test metrics side by side with
the tables' paired t-test over users (:func:`crossan.results.runs.compare_runs`).

Torch-free: it reads files only (``tests/test_run_index.py`` checks the import).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from crossan.atomic import atomic_output
from crossan.commands.index import RUNNING_WITHIN_S, STATES, TABLE_FILE
from crossan.config import load_config
from crossan.errors import ConfigError, DataError
from crossan.results.plan import experiment_runs
from crossan.results.runs import compare_runs as paired_tests
from crossan.results.runs import read_settings
from crossan.results.tables import relative_improvement
from crossan.runs.folder import METRICS_FILE, RUN_FILES, RunMetrics
from crossan.runs.identity import SEPARATOR, name_digest, parse_run_name, settings_digest
from crossan.runs.specs import planned_run_names, run_input_files
from crossan.runs.vocabulary import END_TO_END, METHODS, METRIC_NAMES

LISTED_METRICS: tuple[str, ...] = ("HR@10", "NDCG@10")  # the listing's test metrics
# the name fields of a run table, in run-name order (then the settings digest)
NAME_COLUMNS: tuple[str, ...] = ("modalities", "fusion", "topk", "hidden", "lr", "align", "align_weight", "seed",
                                 "digest")
# metrics.json's top-level numbers and words, after the valid/test metrics
COST_COLUMNS: tuple[str, ...] = ("best_epoch", "epochs_run", "stopped_early", "trainable_parameters",
                                 "seconds_per_epoch", "eval_seconds", "peak_memory_mib", "peak_memory_kind", "device",
                                 "n_items")
# run_table's column groups after the metrics and costs, in this order
COLUMN_GROUPS: tuple[str, ...] = ("users.", "extra.", "test_by_popularity.", "setting.", "version.")
# a log line that reports why a job stopped: an exception, crossan's one-line errors, the kernel
_ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b|\berror:|Traceback|\bKilled\b"
                         r"|out of memory|Terminated|CANCELLED")

# ------------------------------------------------------------------------- paths


def runs_folder(results_root: Path, dataset: str) -> Path:
    """``results/{dataset}/runs``: the folder of every run of ``dataset``."""
    return Path(results_root) / dataset / "runs"


def log_path(results_root: Path, dataset: str, name: str) -> Path:
    """The training job's log (the workflow's ``train_run`` rule): stdout and stderr of the run."""
    return Path(results_root) / dataset / "logs" / "train" / f"{name}.log"


def check_dataset(config: Mapping[str, Any], dataset: str) -> None:
    """:class:`ConfigError` naming the defined datasets when ``dataset`` is not under ``catalog``."""
    if dataset not in config["catalog"]:
        raise ConfigError(f"dataset {dataset!r} is not under catalog in config.yaml "
                          f"(defined: {', '.join(sorted(config['catalog']))})")


def planned_runs(config: Mapping[str, Any], dataset: str) -> list[str]:
    """Every run ``snakemake all`` trains for ``dataset``: the tables' and figures', then the
    extra runs, each once."""
    check_dataset(config, dataset)
    return list(dict.fromkeys(experiment_runs(config, dataset) + planned_run_names(config, dataset)))


def run_input_paths(config: Mapping[str, Any], dataset: str, name: str, results_root: Path) -> list[Path]:
    """The files the training job of run ``name`` reads whose time stamps Snakemake compares
    (:func:`~crossan.runs.specs.run_input_files`, under ``results_root``; the checkpoints the
    workflow builds next to it): the item table only for an end-to-end run, the others' is
    marked ancient in the workflow."""
    files = run_input_files(config, dataset, name, results=str(results_root))
    if METHODS[parse_run_name(name)["method"]].family != END_TO_END:
        del files["item_table"]
    paths = (Path(results_root).parent / path if role.endswith("_model") else Path(path)
             for role, path in files.items())
    return list(dict.fromkeys(paths))


def snakemake_mtime(path: Path) -> float | None:
    """The modification time Snakemake compares: a folder's ``.snakemake_timestamp`` when it has
    one, else the path's own; ``None`` when the path does not exist."""
    stamp = path / ".snakemake_timestamp"
    for candidate in (stamp, path) if path.is_dir() else (path,):
        try:
            return candidate.stat().st_mtime
        except FileNotFoundError:
            continue
    return None

# ------------------------------------------------------------------------- states


def stale_reason(config: Mapping[str, Any], dataset: str, name: str, results_root: Path) -> str:
    """Why Snakemake would train the finished run ``name`` again, or why its ``settings.json``
    disagrees with its name; ``""`` when neither. The outputs' oldest time stamp is compared
    with the inputs' (:func:`run_input_paths`), as Snakemake does."""
    folder = runs_folder(results_root, dataset) / name
    outputs = {file: snakemake_mtime(folder / file) for file in RUN_FILES.values()}
    if absent := [file for file, mtime in outputs.items() if mtime is None]:
        return f"output missing: {', '.join(absent)}"
    oldest = min(mtime for mtime in outputs.values() if mtime is not None)
    for path in run_input_paths(config, dataset, name, results_root):
        mtime = snakemake_mtime(path)
        if mtime is None:
            return f"input missing: {path}"
        if mtime > oldest:
            return f"input newer than the run: {path}"
    return settings_problem(folder, name)


def settings_problem(folder: Path, name: str) -> str:
    """How the ``settings.json`` in ``folder`` disagrees with the run's name ``name`` (another run
    name, or changed settings that do not digest to the name's ``-x`` suffix); ``""`` if not."""
    try:
        record = read_settings(folder.parent, folder.name)
    except DataError as error:
        return str(error)
    if record is None:
        return "settings.json missing"
    if record.get("run_name") != name:
        return f"settings.json is of run {record.get('run_name')}"
    digest, expected = settings_digest(record.get("changed") or {}), name_digest(name)
    if digest != expected or record.get("digest", "") != expected:
        return f"settings.json's settings digest to {digest or 'none'}, the name's -x to {expected or 'none'}"
    return ""


def last_error_line(log: Path) -> str:
    """The last line of ``log`` that says why a job stopped (an exception, ``error:``, killed,
    out of memory); ``""`` when it has none."""
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    return next((line.strip() for line in reversed(lines) if _ERROR_LINE.search(line)), "")


def _last_line(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "(empty log)"


def unfinished_state(log: Path, now: float, running_within_s: float) -> tuple[str, str]:
    """``(state, detail)`` of a run without ``metrics.json``: ``missing`` without a log;
    ``failed`` with the log's last error line; ``running`` when the log ends without one and
    was written within ``running_within_s``; else ``failed`` (killed without a word)."""
    if not log.exists():
        return "missing", ""
    if error := last_error_line(log):
        return "failed", error
    age = now - log.stat().st_mtime
    if age <= running_within_s:
        return "running", f"log written {age / 60:.0f} min ago: {_last_line(log)}"
    return "failed", f"log ends without an error (killed?): {_last_line(log)}"


def _state_row(name: str, method: str, state: str, detail: str, metrics: RunMetrics | None) -> dict[str, Any]:
    row: dict[str, Any] = {"name": name, "method": method, "state": state, "detail": detail}
    for metric in LISTED_METRICS:
        row[f"test.{metric}"] = metrics.test[metric] if metrics is not None else None
    return row


def _method_of(name: str, metrics: RunMetrics | None) -> str:
    try:
        return parse_run_name(name)["method"]
    except ConfigError:
        return metrics.method if metrics is not None else ""


def finished_run_names(runs_dir: Path) -> list[str]:
    """The folders under ``runs_dir`` with a ``metrics.json`` (finished runs), sorted by name."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    return sorted(path.parent.name for path in runs_dir.glob(f"*/{METRICS_FILE}"))


def run_states(config: Mapping[str, Any], dataset: str, results_root: Path, *,
               running_within_s: float = RUNNING_WITHIN_S, now: float | None = None) -> pl.DataFrame:
    """Every planned run of ``dataset`` (:func:`planned_runs`), in plan order, then every finished
    folder the plan does not name (``unplanned``), by name: columns ``name``, ``method``,
    ``state`` (:data:`STATES`), ``detail`` (why stale, failed or running) and the test metrics
    :data:`LISTED_METRICS` (``test.HR@10``, ...) of the runs with a ``metrics.json``.
    ``now``: the time logs are aged against (default: the clock)."""
    now = time.time() if now is None else now
    runs_dir = runs_folder(results_root, dataset)
    planned = planned_runs(config, dataset)
    rows = []
    for name in planned:
        method = parse_run_name(name)["method"]
        if not (runs_dir / name / METRICS_FILE).exists():
            rows.append(_state_row(name, method, *unfinished_state(log_path(results_root, dataset, name), now,
                                                                   running_within_s), None))
            continue
        try:
            metrics = RunMetrics.read(runs_dir / name)
        except DataError as error:
            rows.append(_state_row(name, method, "failed", str(error), None))
            continue
        reason = stale_reason(config, dataset, name, results_root)
        rows.append(_state_row(name, method, "stale" if reason else "done", reason, metrics))
    for name in sorted(set(finished_run_names(runs_dir)) - set(planned)):
        found: RunMetrics | None = None
        try:
            found, detail = RunMetrics.read(runs_dir / name), "not in the configured plan"
        except DataError as error:
            detail = str(error)
        rows.append(_state_row(name, _method_of(name, found), "unplanned", detail, found))
    schema = {"name": pl.String, "method": pl.String, "state": pl.String, "detail": pl.String,
              **{f"test.{metric}": pl.Float64 for metric in LISTED_METRICS}}
    return pl.DataFrame(rows, schema=schema)


def state_counts(states: pl.DataFrame) -> dict[str, int]:
    """Runs per state of :func:`run_states`, in :data:`STATES` order, states without runs left out."""
    counts = dict(states.group_by("state").len().iter_rows())
    return {state: int(counts[state]) for state in STATES if state in counts}

# ------------------------------------------------------------------------- the table of finished runs


def name_columns(name: str) -> dict[str, Any]:
    """:data:`NAME_COLUMNS` of run ``name``: the fields its name writes (and those its method
    fixes, such as fft's T+I and concat), ``None`` for the others and for a folder name that is
    no run name."""
    try:
        fields = parse_run_name(name)
    except ConfigError:
        return dict.fromkeys(NAME_COLUMNS)
    info = METHODS[fields["method"]]
    shown = set(info.name_fields) | set(info.fixed)
    if fields["fusion"] != "momef":
        shown.discard("topk")
    if not fields["align_weight"]:
        shown.discard("align")
    if "align" in shown:
        shown.add("align_weight")
    columns = {column: fields[column] if column in shown else None for column in NAME_COLUMNS[:-1]}
    return columns | {"digest": name_digest(name) or None}


def _flat(prefix: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"prefix.a.b": 1}``; lists as JSON text."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, Mapping):
            flat |= _flat(f"{prefix}.{key}", value)
        else:
            flat[f"{prefix}.{key}"] = json.dumps(value) if isinstance(value, list) else value
    return flat


def _setting(value: Any) -> Any:
    """A setting as one cell: a mapping (``graph_grid``) or a list as JSON text (keys sorted)."""
    return json.dumps(value, sort_keys=True) if isinstance(value, Mapping | list) else value


def run_record(runs_dir: Path, name: str) -> dict[str, Any]:
    """One row of :func:`run_table`: the finished run ``name`` under ``runs_dir`` flattened."""
    metrics = RunMetrics.read(Path(runs_dir) / name)
    row: dict[str, Any] = {"name": name, "dataset": metrics.dataset, "method": metrics.method, **name_columns(name)}
    for split in ("valid", "test"):
        row |= {f"{split}.{metric}": metrics.number(metric, split) for metric in METRIC_NAMES}
    row |= {column: getattr(metrics, column) for column in COST_COLUMNS}
    row |= _flat("users", metrics.n_users)
    row |= {f"extra.{key}": value for key, value in metrics.extra.items() if isinstance(value, str | int | float)}
    row |= _flat("test_by_popularity", metrics.test_by_popularity or {})
    try:
        settings = (read_settings(Path(runs_dir), name) or {}).get("settings", {})
    except DataError:  # unreadable: its setting columns stay null (crossan runs lists it as stale)
        settings = {}
    row |= {f"setting.{key}": _setting(value) for key, value in sorted(settings.items())}
    return row | {f"version.{package}": version for package, version in metrics.versions.items()}


def run_table(runs_dir: Path) -> pl.DataFrame:
    """Every finished run folder under ``runs_dir`` (``results/{dataset}/runs``), one row each,
    by name: ``name``, ``dataset``, ``method``; the name fields :data:`NAME_COLUMNS` (``None``
    where the name has none); ``valid.*`` and ``test.*`` metrics (HR/NDCG@K for K in
    :data:`~crossan.runs.vocabulary.KS`); :data:`COST_COLUMNS`; ``users.*`` (users per split);
    ``extra.*`` (the family's scalar ``metrics.json`` keys, e.g.
    ``extra.paper_configuration_parameters``); ``test_by_popularity.*``; every training setting
    the run's method uses, from its ``settings.json`` (``setting.max_epochs``, ...; a mapping as
    JSON text); ``version.*`` (the packages it ran with). A column a run lacks is null."""
    rows = [run_record(runs_dir, name) for name in finished_run_names(runs_dir)]
    if not rows:
        return pl.DataFrame(schema={"name": pl.String, "dataset": pl.String, "method": pl.String})
    frame = pl.DataFrame(rows, infer_schema_length=None, strict=False)
    return frame.select(_column_order([column for row in rows for column in row]))


def _column_order(columns: Sequence[str]) -> list[str]:
    """The columns of :func:`run_record`'s rows once each: the common ones in a row's order, then
    each group of :data:`COLUMN_GROUPS` (which differ between methods), ``setting.*`` and
    ``version.*`` by name."""
    unique = list(dict.fromkeys(columns))
    order = [column for column in unique if not column.startswith(COLUMN_GROUPS)]
    for group in COLUMN_GROUPS:
        members = [column for column in unique if column.startswith(group)]
        order += sorted(members) if group in ("setting.", "version.") else members
    return order


def write_run_table(frame: pl.DataFrame, path: Path) -> None:
    """Write ``frame`` atomically as Parquet (a ``.parquet`` path) or CSV (any other)."""
    with atomic_output(path) as tmp:
        if Path(path).suffix == ".parquet":
            frame.write_parquet(tmp)
        else:
            frame.write_csv(tmp)

# ------------------------------------------------------------------------- two runs compared


def compare_runs(runs_dir: Path, a: str, b: str) -> pl.DataFrame:
    """The test metrics (:data:`~crossan.runs.vocabulary.METRIC_NAMES`) of runs ``a`` and ``b``
    under ``runs_dir`` side by side: columns ``metric``, ``a``, ``b``, ``difference`` (a - b),
    ``improvement_pct`` ((a - b) / b in percent, as Table 3's), ``t``, ``p_value`` (two-sided
    paired t-test over the test users, the tables' :func:`crossan.results.runs.compare_runs`;
    NaN for identical per-user values) and ``significant`` (p < 0.05 and a better: the tables'
    ``*``). A :class:`DataError` for a run folder that does not exist or has not finished, and
    for runs with other test users."""
    for name in (a, b):
        if not (Path(runs_dir) / name).is_dir():
            raise DataError(f"no run {name} in {runs_dir} (`crossan runs` lists the runs)")
    metrics = {name: RunMetrics.read(Path(runs_dir) / name) for name in (a, b)}
    tests = paired_tests(Path(runs_dir), [a], [b])
    rows = []
    for metric in METRIC_NAMES:
        ours, baseline = metrics[a].number(metric), metrics[b].number(metric)
        test = tests[metric]
        rows.append({"metric": metric, "a": ours, "b": baseline, "difference": ours - baseline,
                     "improvement_pct": relative_improvement(ours, baseline), "t": test.statistic,
                     "p_value": test.p_value, "significant": test.significant_improvement})
    return pl.DataFrame(rows)


def _number(value: float | None, digits: int = 4, sign: bool = False) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:{'+' if sign else ''}.{digits}f}"


def format_comparison(comparison: pl.DataFrame, a: str, b: str) -> str:
    """:func:`compare_runs`' table as text: the two runs, then one line per metric."""
    lines = [f"A: {a}", f"B: {b}",
             f"{'metric':<8} {'A':>8} {'B':>8} {'A - B':>8} {'(A-B)/B':>9} {'p-value':>9}"]
    for row in comparison.iter_rows(named=True):
        improvement = _number(row["improvement_pct"], 2, sign=True)
        p_value = "-" if math.isnan(row["p_value"]) else f"{row['p_value']:.3g}"
        lines.append(f"{row['metric']:<8} {_number(row['a']):>8} {_number(row['b']):>8} "
                     f"{_number(row['difference'], sign=True):>8} {improvement + '%':>9} "
                     f"{p_value + ('*' if row['significant'] else ''):>9}")
    lines.append("paired t-test over the test users (two-sided); * p < 0.05 with A better")
    return "\n".join(lines)

# ------------------------------------------------------------------------- listing


def format_states(states: pl.DataFrame) -> str:
    """:func:`run_states`' rows as text: name, state, test HR@10 and NDCG@10 (when finished)
    and the detail."""
    width = max([len("run"), *(len(name) for name in states["name"])])
    header = f"{'run':<{width}}  {'state':<9} " + " ".join(f"{metric:>8}" for metric in LISTED_METRICS) + "  detail"
    lines = [header]
    for row in states.iter_rows(named=True):
        values = " ".join(f"{_number(row[f'test.{metric}']):>8}" for metric in LISTED_METRICS)
        lines.append(f"{row['name']:<{width}}  {row['state']:<9} {values}  {row['detail']}".rstrip())
    return "\n".join(lines)


def format_counts(counts: Mapping[str, int]) -> str:
    """``"40 runs: 30 done, 2 stale, 8 missing"``."""
    total = sum(counts.values())
    return f"{total} run{'s' if total != 1 else ''}: " + ", ".join(f"{n} {state}" for state, n in counts.items())

# ------------------------------------------------------------------------- command line


def _table_paths(args: argparse.Namespace) -> list[Path]:
    if args.csv is None and args.parquet is None:
        return [Path(args.results) / args.dataset / TABLE_FILE]
    return [path for path in (args.csv, args.parquet) if path is not None]


def _with_states(table: pl.DataFrame, states: pl.DataFrame, wanted: Sequence[str]) -> pl.DataFrame:
    """The finished runs' table with each run's state as the second column, in ``wanted`` states."""
    joined = table.join(states.select("name", "state"), on="name", how="left")
    columns = ["name", "state", *(column for column in table.columns if column != "name")]
    return joined.select(columns).filter(pl.col("state").is_in(list(wanted)))


def runs_cli(args: argparse.Namespace) -> int:
    """``crossan runs``: list the planned runs with their states, write the finished runs' table."""
    if not Path(args.config).is_file():
        raise ConfigError(f"config file {args.config} not found (--config)")
    config = load_config(args.config)
    states = run_states(config, args.dataset, args.results, running_within_s=args.running_within * 60)
    listed = states.filter(pl.col("state").is_in(list(args.state)))
    if listed.height:
        print(format_states(listed))
    print(format_counts(state_counts(states)) + (f" ({listed.height} listed)" if listed.height != states.height
                                                 else ""))
    table = _with_states(run_table(runs_folder(args.results, args.dataset)), states, args.state)
    if not table.height:
        print("no finished runs in these states: no table written")
        return 0
    for path in _table_paths(args):
        write_run_table(table, path)
        print(f"wrote {path} ({table.height} finished run{'s' if table.height != 1 else ''})")
    return 0


def compare_cli(args: argparse.Namespace) -> int:
    """``crossan compare A B``: the two runs' test metrics and paired t-tests."""
    datasets = [parse_run_name(name)["dataset"] for name in (args.a, args.b)]
    if datasets[0] != datasets[1]:
        raise DataError(f"runs of datasets {datasets[0]!r} and {datasets[1]!r} have other users: "
                        f"compare two runs of one dataset (the part of a run name before '{SEPARATOR}')")
    comparison = compare_runs(runs_folder(args.results, datasets[0]), args.a, args.b)
    print(format_comparison(comparison, args.a, args.b))
    return 0
