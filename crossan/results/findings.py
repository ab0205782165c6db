"""What the demo's tables show, in words: the findings ``crossan readme`` writes into README.md.

Each finding (:data:`FINDINGS`) is a function of a results folder (:class:`Results`: the
tables' CSVs as the workflow wrote them) that says what the numbers show: which differences the
paired t-tests call significant, which rows sit above which. So no conclusion about the demo is
typed by hand, and a changed result changes the sentence. Measured columns (time, memory;
:data:`MEASURED_COLUMNS`) are never read: they are not reproducible. A row or note a finding
needs that is missing is a :class:`~crossan.errors.CrossanError` naming the file.

Standard library only (no torch, polars or numpy).
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from crossan.errors import CrossanError
from crossan.results.plan import BEYOND_TABLES, TABLES
from crossan.runs.vocabulary import END_TO_END_METHODS, GRAPH_METHODS, METHOD_LABELS, SIDE_ADAPTER_METHODS

# The tables' significance level (crossan.results.runs.SIGNIFICANCE_LEVEL, which imports numpy;
# tests/test_readme_tables.py checks the two agree).
SIGNIFICANCE_LEVEL = 0.05
MI = "Mutual Information"  # Table 1's row and Table B1's column (crossan.results.tables.MUTUAL_INFORMATION)
TP_PAPER = "TP (paper config)"  # Table B2's column (crossan.results.tables.SHARED_TOWER)
# Measured columns (seconds per epoch, peak memory): they differ from run to run and machine to
# machine, so the README quotes neither them nor anything read off them.
MEASURED_COLUMNS: Mapping[str, tuple[str, ...]] = {"table4": ("TT", "GM"), "tableB2": ("TT",)}
EFFICIENCY_WORDS: dict[str, tuple[str, str, str]] = {  # Table 4's counted column: what, less, more
    "TP": ("trainable parameters", "fewer", "more"),
}


# ====================================================================== reading results


def table_path(results: Path, name: str) -> Path:
    """Where the workflow writes table ``name``'s Markdown: ``tables/`` or ``beyond/``."""
    if name not in TABLES + BEYOND_TABLES:
        raise CrossanError(f"{name!r} is not a table name ({', '.join(TABLES + BEYOND_TABLES)})")
    return results / ("beyond" if name in BEYOND_TABLES else "tables") / f"{name}.md"


def _read(path: Path, name: str) -> str:
    if not path.is_file():
        raise CrossanError(f"{path} does not exist: build it first (`snakemake --cores 2 {name}`), "
                           "or point --results at a finished dataset folder (results/demo)")
    return path.read_text(encoding="utf-8")


def _number(text: str | None) -> float | None:
    if text is None or text.strip() == "":
        return None
    value = float(text)
    return None if math.isnan(value) else value


@dataclass
class CsvTable:
    """A table's CSV as the workflow writes it (:func:`crossan.results.table_output.to_frame`): per
    row ``section``, ``row``, and per column its mean, ``_std``, ``_n``, ``_p``, ``_mark``."""

    name: str
    path: Path
    header: list[str]
    records: list[dict[str, str]]

    @property
    def columns(self) -> list[str]:
        """The value columns (each has a ``_p`` companion)."""
        return [c for c in self.header if f"{c}_p" in self.header]

    @property
    def labels(self) -> list[str]:
        return [r["row"] for r in self.records]

    def has(self, label: str) -> bool:
        return label in self.labels

    def record(self, label: str) -> dict[str, str]:
        for record in self.records:
            if record["row"] == label:
                return record
        raise CrossanError(f"{self.path} has no row {label!r} (rows: {', '.join(self.labels)}); "
                           "the README's findings read it: update crossan/results/readme.py")

    def _cell(self, label: str, column: str) -> str:
        record = self.record(label)
        if column not in record:
            raise CrossanError(f"{self.path} has no column {column!r}; the README's findings read it")
        return record[column]

    def value(self, label: str, column: str) -> float | None:
        return _number(self._cell(label, column))

    def p_value(self, label: str, column: str) -> float | None:
        return _number(self._cell(label, f"{column}_p"))

    def marked(self, label: str, column: str) -> bool:
        return self._cell(label, f"{column}_mark") == "*"

    def n(self, label: str, column: str) -> int:
        value = _number(self._cell(label, f"{column}_n"))
        return int(value) if value is not None else 0

    def rows_of(self, methods: Sequence[str], column: str) -> list[tuple[str, float]]:
        """``(label, value)`` of the rows of ``methods`` that have a value in ``column``."""
        rows = []
        for label in self.labels:
            value = self.value(label, column)
            if row_method(label) in methods and value is not None:
                rows.append((label, value))
        return rows


class Results:
    """One dataset's results folder (``results/demo``), its tables read once."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._tables: dict[str, CsvTable] = {}

    def markdown(self, name: str) -> str:
        return _read(table_path(self.folder, name), name)

    def table(self, name: str) -> CsvTable:
        if name not in self._tables:
            path = table_path(self.folder, name).with_suffix(".csv")
            reader = csv.DictReader(_read(path, name).splitlines())
            records = list(reader)
            if not reader.fieldnames or "row" not in reader.fieldnames:
                raise CrossanError(f"{path} has no 'row' column: not a table the workflow wrote")
            self._tables[name] = CsvTable(name, path, list(reader.fieldnames), records)
        return self._tables[name]


# ====================================================================== wording


_LABEL_METHOD = {label: method for method, label in METHOD_LABELS.items()}


def row_method(label: str) -> str | None:
    """The method behind a row label: ``"IISAN-E (T+I+A)" -> "iisan-e"``, ``"MHCR" -> "mhcr"``;
    None for anything else (``"CROSSAN+CMSA (T+I)"``, ``"Improvement_same"``)."""
    return _LABEL_METHOD.get(label) or _LABEL_METHOD.get(label.split(" (", 1)[0])


def modalities(label: str) -> str:
    """``"CROSSAN (T+I+A) (ours)" -> "T+I+A"``."""
    match = re.search(r"\(([TIVA](?:\+[TIVA])*)\)", label)
    if not match:
        raise CrossanError(f"row {label!r} names no modalities (T+I, T+I+V+A, ...)")
    return match[1]


def metric(value: float | None) -> str:
    """A metric as the tables print it (4 decimals), ``—`` when missing."""
    return "—" if value is None else f"{value:.4f}"


def p_text(p: float | None) -> str:
    """``p = 0.41`` (0.1 and above), ``p = 0.047`` (three decimals below 0.1, so a p-value just
    under the significance level never reads as 0.05), ``p < 0.001``."""
    if p is None:
        return "no t-test"
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.2f}" if p >= 0.1 else f"p = {p:.3f}"


def join(words: Sequence[str], empty: str = "none") -> str:
    """``a``, ``a and b``, ``a, b and c``; ``empty`` for none."""
    words = list(words)
    if not words:
        return empty
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def value_range(rows: Sequence[tuple[str, float]]) -> str:
    low, high = min(v for _, v in rows), max(v for _, v in rows)
    return metric(low) if low == high else f"{metric(low)}-{metric(high)}"


def place(value: float, group: Sequence[tuple[str, float]], what: str) -> str:
    """Where ``value`` sits among ``group``: ``below every {what}``, ``above every {what}``, or
    ``below 7 of the 8 {what}s (above or level with: X)``."""
    above = [label for label, v in group if value > v]
    below = [label for label, v in group if value < v]
    if len(below) == len(group):
        return f"below every {what}"
    if len(above) == len(group):
        return f"above every {what}"
    others = [label for label, _ in group if label not in below]
    if len(below) >= len(above):
        return f"below {len(below)} of the {len(group)} {what}s (above or level with {join(others)})"
    others = [label for label, _ in group if label not in above]
    return f"above {len(above)} of the {len(group)} {what}s (below or level with {join(others)})"


def verdict(ours: float | None, baseline: float | None, p: float | None) -> str:
    """``better`` (the tables' ``*``), ``worse`` (p < 0.05, ours lower), ``same`` or
    ``untested``."""
    if p is None or ours is None or baseline is None:
        return "untested"
    if p < SIGNIFICANCE_LEVEL and ours != baseline:
        return "better" if ours > baseline else "worse"
    return "same"


VERDICT_WORDS = {"better": "significantly better (`*`)", "worse": "significantly worse",
                 "same": "not significantly different", "untested": "not tested"}


def verdicts(items: Sequence[tuple[str, str, float | None]]) -> str:
    """``significantly better (`*`) on A; significantly worse on none; not significantly
    different on B (p = 0.30)`` from ``(name, verdict, p)`` items."""
    parts = []
    for kind in ("better", "worse", "same", "untested"):
        names = [name if kind in ("better", "untested") else f"{name} ({p_text(p)})"
                 for name, v, p in items if v == kind]
        if names or kind in ("better", "worse"):
            parts.append(f"{VERDICT_WORDS[kind]} on {join(names)}")
    return "; ".join(parts)


def _crossan(table: CsvTable) -> str:
    """The label of the table's one CROSSAN row."""
    labels = [label for label in table.labels if row_method(label) == "crossan"]
    if len(labels) != 1:
        raise CrossanError(f"{table.path}: expected one CROSSAN row, found {len(labels)}")
    return labels[0]


def _best(rows: Sequence[tuple[str, float]]) -> tuple[str, float]:
    """The first row with the highest value (as crossan.results.tables.table8 picks its baseline)."""
    return max(rows, key=lambda row: row[1])


def _need(rows: Sequence[tuple[str, float]], table: CsvTable, what: str) -> Sequence[tuple[str, float]]:
    if not rows:
        raise CrossanError(f"{table.path} has no {what} with a value; the README's findings compare them")
    return rows


# ====================================================================== findings


def noise(results: Results) -> str:
    """How many test users the demo has and what an HR@10 difference of one standard error is."""
    text = results.markdown("tableB3")
    match = re.search(r"in the bucket of the target item: (?P<buckets>.+?) users", text)
    buckets = re.findall(r"(\w+) (\d+(?:,\d{3})*)", match["buckets"]) if match else []
    if not buckets:
        raise CrossanError(f"{table_path(results.folder, 'tableB3')} has no note giving the test users per "
                           "bucket ('in the bucket of the target item: head N, torso N, tail N users')")
    users = sum(int(count.replace(",", "")) for _, count in buckets)
    table3 = results.table("table3")
    values = [v for _, v in _need(table3.rows_of(SIDE_ADAPTER_METHODS, "HR@10"), table3, "side-adapter row")]
    hr = round(sum(values) / len(values), 2)
    error = math.sqrt(hr * (1 - hr) / users)
    return (f"Noise: {users:,} test users (Table B3's buckets: {', '.join(f'{b} {c}' for b, c in buckets)}), so "
            f"an HR@10 near {hr:.2f} has a standard error of about {error:.3f}; `*` marks the differences the "
            f"tables' paired t-tests find significant (p < {SIGNIFICANCE_LEVEL:g}; each table's notes say against "
            "which row), and every p-value is in the table's CSV.")


def table1(results: Results) -> str:
    """CROSSAN against INDSAN per row of Table 1 (the metrics and the mutual information)."""
    table = results.table("table1")
    ours, baseline = METHOD_LABELS["crossan"], METHOD_LABELS["indsan"]
    items = []
    for label in table.labels:
        p = table.p_value(label, ours)
        items.append((label, verdict(table.value(label, ours), table.value(label, baseline), p), p))
    seeds = max(table.n(label, ours) for label in table.labels)
    return (f"Table 1 ({seeds} seed{'s' if seeds != 1 else ''}): {ours} against {baseline} is "
            f"{verdicts(items)}.")


def table3_references(results: Results) -> str:
    """Popularity and SASRec (item IDs) against the content models of Table 3, on HR@10."""
    table = results.table("table3")
    popularity, sasrec = METHOD_LABELS["popularity"], METHOD_LABELS["id-sasrec"]
    content = _need(table.rows_of((*SIDE_ADAPTER_METHODS, *END_TO_END_METHODS), "HR@10"), table, "content row")
    side = _need(table.rows_of(SIDE_ADAPTER_METHODS, "HR@10"), table, "side-adapter row")
    e2e = table.rows_of(END_TO_END_METHODS, "HR@10")
    parts = []
    if (pop := table.value(popularity, "HR@10")) is not None:
        parts.append(f"{popularity} ({metric(pop)}) is {place(pop, content, 'content row')}")
    if (ids := table.value(sasrec, "HR@10")) is not None:
        text = f"{sasrec} ({metric(ids)}) is {place(ids, side, 'side-adapter row')} ({value_range(side)})"
        if e2e:
            text += f" and {place(ids, e2e, 'end-to-end row')} ({value_range(e2e)})"
        parts.append(text)
    if e2e:
        (strong, high), (weak, low) = _best(e2e), min(side, key=lambda row: row[1])
        relation = "below" if high < low else "level with" if high == low else "above"
        parts.append(f"the best end-to-end row, {strong} ({metric(high)}), is {relation} the weakest "
                     f"side-adapter row, {weak} ({metric(low)})")
    else:
        parts.append("no end-to-end row was run")
    return "Table 3, HR@10 (no t-test between these rows): " + "; ".join(parts) + "."


def _iisan_baseline(table: CsvTable, mods: str) -> str:
    """Table 3's baseline of CROSSAN on ``mods``: IISAN-E of the same modalities, IISAN on T+I."""
    for method in ("iisan-e", "iisan"):
        label = f"{METHOD_LABELS[method]} ({mods})"
        if table.has(label):
            return label
    raise CrossanError(f"{table.path} has no IISAN or IISAN-E row on {mods}")


def table3_crossan(results: Results) -> str:
    """CROSSAN against IISAN / IISAN-E of the same modalities (Table 3's ``*``), every metric."""
    table = results.table("table3")
    pairs = [(label, _iisan_baseline(table, modalities(label)))
             for label in table.labels if row_method(label) == "crossan"]
    if not pairs:
        raise CrossanError(f"{table.path} has no CROSSAN row")
    quoted, items, marks, losses = [], [], [], []
    for ours, baseline in pairs:
        mods = modalities(ours)
        o, b, p = table.value(ours, "HR@10"), table.value(baseline, "HR@10"), table.p_value(ours, "HR@10")
        quoted.append(f"{mods} {metric(o)}{'*' if table.marked(ours, 'HR@10') else ''} vs {metric(b)}")
        items.append((mods, verdict(o, b, p), p))
        found = {kind: [c for c in table.columns
                        if verdict(table.value(ours, c), table.value(baseline, c), table.p_value(ours, c)) == kind]
                 for kind in ("better", "worse")}
        if found["better"]:
            marks.append(f"{mods} ({join(found['better'])})")
        if found["worse"]:
            losses.append(f"{mods} ({join(found['worse'])})")
    return (f"Table 3, CROSSAN against IISAN (T+I) or IISAN-E of the same modalities, HR@10: {', '.join(quoted)}: "
            f"{verdicts(items)}. Over all four metrics, `*` on {join(marks)}; significant losses on {join(losses)}.")


def table3_modalities(results: Results) -> str:
    """What more modalities change for IISAN-E (against IISAN on T+I) and for CROSSAN (against
    its T+I row), on HR@10; no t-test runs between these rows."""
    table = results.table("table3")
    parts = []
    for method, base_method in (("iisan-e", "iisan"), ("crossan", "crossan")):
        rows = table.rows_of((method,), "HR@10")
        bases = [(label, v) for label, v in table.rows_of((base_method,), "HR@10") if modalities(label) == "T+I"]
        rows = [(label, v) for label, v in rows if modalities(label) != "T+I"]
        if not rows or not bases:
            continue
        (base, b), mods = bases[0], [modalities(label) for label, _ in rows]
        parts.append(f"{METHOD_LABELS[method]} with {' / '.join(mods)} {' / '.join(metric(v) for _, v in rows)} "
                     f"against {base}'s {metric(b)} ({' / '.join(f'{v - b:+.4f}' for _, v in rows)})")
    if not parts:
        raise CrossanError(f"{table.path} has no IISAN-E or CROSSAN row beyond T+I to compare")
    return "Table 3, more modalities, HR@10 (no t-test between these rows): " + "; ".join(parts) + "."


def table4(results: Results) -> str:
    """Table 4's improvement rows in words (positive = CROSSAN needs less)."""
    table = results.table("table4")
    parts = []
    for label, what in (("Improvement_same", "IISAN-E at CROSSAN's adapter size"),
                        ("Improvement_best", "IISAN-E at its own best setting")):
        words = []
        for column, (name, less, more) in EFFICIENCY_WORDS.items():
            gain = table.value(label, column)
            if gain is not None:
                words.append(f"{abs(gain):.1f}% {less if gain >= 0 else more} {name}")
        parts.append(f"against {what} ({label}), {join(words, 'no values')}")
    return f"Table 4, {_crossan(table)}: " + "; ".join(parts) + "."


def table8(results: Results) -> str:
    """The graph recommenders against popularity, CROSSAN (Table 8's ``*``) and IISAN."""
    table, table3 = results.table("table8"), results.table("table3")
    graph = _need(table.rows_of(GRAPH_METHODS, "HR@10"), table, "graph recommender")
    (low_label, low), (best, high) = min(graph, key=lambda row: row[1]), _best(graph)
    parts = [f"the graph recommenders score {metric(low)} ({low_label}) to {metric(high)} ({best})"]
    popularity = METHOD_LABELS["popularity"]
    if (pop := table3.value(popularity, "HR@10")) is not None:
        parts.append(f"{popularity} (Table 3, {metric(pop)}) is {place(pop, graph, 'graph recommender')}")
    ours = _crossan(table)
    o, p = table.value(ours, "HR@10"), table.p_value(ours, "HR@10")
    parts.append(f"{ours} against the best of them, {best}: {metric(o)}{'*' if table.marked(ours, 'HR@10') else ''} "
                 f"vs {metric(high)} ({p_text(p)}), {VERDICT_WORDS[verdict(o, high, p)]}")
    for label, value in table.rows_of(("iisan",), "HR@10"):
        parts.append(f"{label} ({metric(value)}) is {place(value, graph, 'graph recommender')}")
    return "Table 8, HR@10: " + "; ".join(parts) + "."


def tableB1(results: Results) -> str:
    """CROSSAN with the alignment loss against CROSSAN without, per modality set."""
    table = results.table("tableB1")
    crossan = METHOD_LABELS["crossan"]
    pattern = re.compile(rf"^{re.escape(crossan)}\+(\S+) \((.+)\)$")  # CROSSAN+CMSA (T+I)
    aligned = [(label, match) for label in table.labels if (match := pattern.match(label))]
    if not aligned:
        raise CrossanError(f"{table.path} has no aligned CROSSAN row (CROSSAN+CMSA (T+I), ...)")
    parts, changes, losses = [], [], set()
    for label, match in aligned:
        losses.add(match[1])
        mods, baseline = match[2], f"{crossan} ({match[2]})"
        text = f"on {mods}, "
        if MI in table.columns:
            text += f"mutual information {table.value(baseline, MI):.4f} -> {table.value(label, MI):.4f} nats and "
        text += (f"HR@10 {metric(table.value(baseline, 'HR@10'))} -> {metric(table.value(label, 'HR@10'))} "
                 f"({p_text(table.p_value(label, 'HR@10'))})")
        parts.append(text)
        for column in table.columns:
            kind = verdict(table.value(label, column), table.value(baseline, column), table.p_value(label, column))
            if kind in ("better", "worse"):
                changes.append(f"{column} on {mods} ({'up' if kind == 'better' else 'down'})")
    return (f"Table B1, CROSSAN with {join(sorted(losses))} against CROSSAN without: {'; '.join(parts)}; "
            f"significant changes (p < {SIGNIFICANCE_LEVEL:g}) on any column: {join(changes)}.")


def tableB2(results: Results) -> str:
    """The shared tower against CROSSAN: HR@10 kept, parameters saved, time per epoch."""
    table = results.table("tableB2")
    shared = [label for label in table.labels if row_method(label) == "crossan-moda"]
    if len(shared) != 1:
        raise CrossanError(f"{table.path}: expected one CROSSAN-MoDA row, found {len(shared)}")
    ours, base = shared[0], _crossan(table)
    o, b, p = table.value(ours, "HR@10"), table.value(base, "HR@10"), table.p_value(ours, "HR@10")
    kept = [f"{o / b:.0%} of CROSSAN's"] if o is not None and b else []
    parts = [f"HR@10 {metric(o)} vs {metric(b)} ({', '.join([*kept, p_text(p), VERDICT_WORDS[verdict(o, b, p)]])})"]
    sizes = []
    for column, where in (("TP", "here"), (TP_PAPER, "at the paper's configuration")):
        s, c = table.value(ours, column), table.value(base, column)
        if s is not None and c:
            sizes.append(f"{abs(s - c) / c:.0%} {'fewer' if s <= c else 'more'} {where}")
    parts.append(f"trainable parameters {join(sizes, 'not recorded')}")
    return f"Table B2, {ours} against {base}: " + "; ".join(parts) + "."


def tableB3(results: Results) -> str:
    """Test HR@10 per popularity bucket: CROSSAN, the other sequential models, the graph ones."""
    table = results.table("tableB3")
    columns = [c for c in table.columns if c.endswith(" HR@10")]
    if not columns:
        raise CrossanError(f"{table.path} has no '<bucket> HR@10' column")
    buckets = " / ".join(c.removesuffix(" HR@10").lower() for c in columns)
    methods = [m for m in METHOD_LABELS if m not in GRAPH_METHODS]
    ours = _crossan(table)
    sequential = {c: _need(table.rows_of(methods, c), table, "sequential model") for c in columns}
    graph = {c: table.rows_of(GRAPH_METHODS, c) for c in columns}
    parts = [f"{ours} {' / '.join(metric(table.value(ours, c)) for c in columns)}",
             f"the sequential models ({join([label for label, _ in sequential[columns[0]]])}) "
             + " / ".join(value_range(sequential[c]) for c in columns)]
    if all(graph.values()):
        parts.append("the graph recommenders " + " / ".join(value_range(graph[c]) for c in columns))
    for column in (columns[0], columns[-1]):
        label, value = _best([*sequential[column], *graph[column]])
        parts.append(f"the best {column.removesuffix(' HR@10').lower()} HR@10 is {metric(value)} ({label})")
    return f"Table B3, test HR@10 {buckets}: " + "; ".join(parts) + "."


Finding = Callable[[Results], str]
FINDINGS: Mapping[str, tuple[Finding, ...]] = {
    "findings": (noise, table1, table3_references, table3_crossan, table3_modalities, table4, table8),
    "findings-beyond": (tableB1, tableB2, tableB3),
}
