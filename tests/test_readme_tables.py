"""README.md's demo numbers cannot go stale: ``crossan readme`` writes them from results/.

The README quotes the demo's tables and the conclusions drawn from them only inside
``<!-- demo:NAME -->`` blocks that ``crossan readme`` (crossan/results/readme.py) writes from a
results folder, and ``crossan readme --check`` fails with a diff when the two disagree.

Here: (a) the command on small results folders written by the workflow's own table writer
(:func:`crossan.results.table_output.write_table`) with the demo plan's row labels, so a change to the
tables' format or labels reaches these tests; (b) README.md itself: every block present and
generated, and no demo number or win/loss wording typed outside them. Whether the README's
blocks equal a fresh default demo run is ``crossan readme --check`` after ``snakemake all`` on
the machine type that wrote them (numbers differ slightly between CPU types).
"""

from __future__ import annotations

import csv
import functools
import random
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from test_workflow import snakemake

from crossan.cli import main
from crossan.config import load_config
from crossan.results import findings as F
from crossan.results import readme as R
from crossan.results import table_output as O
from crossan.results import tables as T
from crossan.results.paper import TABLE8_COLUMNS
from crossan.results.plan import target_plan
from crossan.results.runs import METRICS, SIGNIFICANCE_LEVEL

REPO = Path(__file__).resolve().parent.parent
TABLE_BLOCKS = [name for name in R.README_BLOCKS if name not in F.FINDINGS]
Overrides = Mapping[tuple[str, str, str], Mapping[str, float]]  # (table, row, column) -> Cell fields


# ---------------------------------------------------------------------- fake results


@functools.cache
def _plan(target: str):
    """The demo's plan of ``target`` under the repository's config.yaml: its row labels."""
    return target_plan(load_config(REPO / "config.yaml"), "demo", target)


class _Cells:
    """Deterministic cell values; ``overrides`` pins a cell's mean or p-value."""

    def __init__(self, overrides: Overrides) -> None:
        self.rng = random.Random(0)
        self.overrides = overrides

    def cell(self, target: str, label: str, column: str, kind: str = "metric", n: int = 1) -> T.Cell:
        low, high = {"metric": (0.05, 0.4), "seconds": (0.5, 3.0), "mib": (400.0, 800.0),
                     "count": (1e5, 3e6)}[kind]
        value = self.rng.uniform(low, high)
        cell = T.Cell(round(value) if kind == "count" else round(value, 3), std=0.001 if n > 1 else 0.0,
                      n=n, kind=kind)
        for field, pinned in self.overrides.get((target, label, column), {}).items():
            setattr(cell, field, pinned)
        return cell

    def compare(self, target: str, ours: T.Row, baseline: T.Row) -> None:
        """p-values (pinned, else 0.06-0.9) and ``*`` marks, as mark_against sets them."""
        for column, cell in ours.cells.items():
            base = baseline.cells[column]
            if cell.mean is None or base.mean is None:
                continue
            cell.p_value = self.overrides.get((target, ours.label, column), {}).get(
                "p_value", round(self.rng.uniform(0.06, 0.9), 3))
            cell.marked = cell.p_value < SIGNIFICANCE_LEVEL and cell.mean > base.mean


def _rows(cells: _Cells, target: str, columns, kinds=None) -> list[T.Row]:
    kinds = kinds or ["metric"] * len(columns)
    return [T.Row(row.label, {c: cells.cell(target, row.label, c, k) if row.runs else T.Cell(kind=k)
                              for c, k in zip(columns, kinds)}, row.runs, row.note)
            for row in _plan(target).rows]


def _change(label: str, ours: T.Row, base: T.Row, change, section: str = "") -> T.Row:
    return T.Row(label, {c: T.Cell(change(ours.cells[c].mean, base.cells[c].mean), kind="percent")
                         for c in ours.cells}, section=section)


def _tables(cells: _Cells) -> dict[str, T.Table]:
    tables: dict[str, T.Table] = {}
    plan = _plan("table1")
    columns = ("INDSAN", "CROSSAN")
    rows = [T.Row(m, {c: cells.cell("table1", m, c, n=2) for c in columns})
            for m in ("HR@10", "HR@20", "NDCG@10", "NDCG@20", T.MUTUAL_INFORMATION)]
    for row in rows:
        cells.compare("table1", T.Row(row.label, {"x": row.cells["CROSSAN"]}), T.Row("", {"x": row.cells["INDSAN"]}))
    tables["table1"] = T.Table("table1", "demo", plan.title, "Metric", columns, rows,
                               notes=[T.SIGNIFICANCE_NOTE.format(baseline="INDSAN")])

    for target, columns in (("table3", METRICS), ("table5", METRICS), ("table8", TABLE8_COLUMNS),
                            ("tableB1", (*METRICS, T.MUTUAL_INFORMATION))):
        plan = _plan(target)
        table = T.Table(target, "demo", plan.title, "Method", tuple(columns), _rows(cells, target, columns))
        for comparison in plan.comparisons:
            ours, base = table.row(comparison.ours), table.row(comparison.baseline)
            cells.compare(target, ours, base)
            if target == "table3":
                table.rows.append(_change(comparison.label, ours, base, T.relative_improvement,
                                          "Relative Improvement"))
        if target == "table8":
            graph = [row for row in table.rows if F.row_method(row.label) in F.GRAPH_METHODS]
            best = max(graph, key=lambda row: row.cells["HR@10"].mean)
            cells.compare(target, table.rows[-1], best)
            table.notes.append(T.SIGNIFICANCE_NOTE.format(baseline=f"the best graph recommender ({best.label})"))
        tables[target] = table

    plan = _plan("table4")
    table = T.Table("table4", "demo", plan.title, "Method", tuple(T.EFFICIENCY),
                    _rows(cells, "table4", tuple(T.EFFICIENCY), T.EFFICIENCY_KINDS))
    for comparison in plan.comparisons:
        table.rows.append(_change(comparison.label, table.row(comparison.ours), table.row(comparison.baseline),
                                  T.efficiency_gain))
    tables["table4"] = table

    plan = _plan("tableB2")
    columns = (*T.SHARED_TOWER, *METRICS)
    table = T.Table("tableB2", "demo", plan.title, "Method", columns,
                    _rows(cells, "tableB2", columns, (*T.SHARED_TOWER_KINDS, *["metric"] * len(METRICS))))
    for comparison in plan.comparisons:
        ours, base = table.row(comparison.ours), table.row(comparison.baseline)
        cells.compare("tableB2", ours, base)
        table.rows.append(_change(comparison.label, ours, base, T.relative_improvement))
    tables["tableB2"] = table

    plan = _plan("tableB3")
    table = T.Table("tableB3", "demo", plan.title, "Method", tuple(T.BUCKET_COLUMNS),
                    _rows(cells, "tableB3", tuple(T.BUCKET_COLUMNS)))
    table.notes.append(T.popularity_note({"users": {"head": 461, "torso": 192, "tail": 347},
                                          "head_min_count": 15, "tail_max_count": 9}))
    tables["tableB3"] = table
    return tables


def write_results(folder: Path, overrides: Overrides | None = None) -> Path:
    """A results folder with the README's tables, written as the workflow writes them."""
    for name, table in _tables(_Cells(overrides or {})).items():
        md = F.table_path(folder, name)
        md.parent.mkdir(parents=True, exist_ok=True)
        O.write_table(table, md.with_suffix(".csv"), md, md.with_suffix(".html"))
    return folder


def skeleton(names=R.README_BLOCKS) -> str:
    blocks = "\n\n".join(f"<!-- demo:{name} -->\n<!-- /demo:{name} -->" for name in names)
    return f"# title\n\nText before, `<!-- demo:NAME -->` quoted inline.\n\n{blocks}\n\nText after.\n"


def readme_cli(results: Path, readme: Path, *extra: str) -> int:
    return main(["readme", "--results", str(results), "--readme", str(readme), *extra])


def block_text(text: str, name: str) -> str:
    return text.split(f"<!-- demo:{name} -->\n", 1)[1].split(f"<!-- /demo:{name} -->", 1)[0]


@pytest.fixture()
def generated(tmp_path: Path) -> tuple[Path, Path]:
    results = write_results(tmp_path / "results" / "demo")
    readme = tmp_path / "README.md"
    readme.write_text(skeleton(), encoding="utf-8")
    assert readme_cli(results, readme) == 0
    return results, readme


# ---------------------------------------------------------------------- (a) the command


def test_generates_every_table_verbatim_and_then_checks_clean(generated, capsys) -> None:
    results, readme = generated
    text = readme.read_text(encoding="utf-8")
    for name in TABLE_BLOCKS:
        table = F.table_path(results, name).read_text(encoding="utf-8")
        quoted = R.without_columns(table, F.MEASURED_COLUMNS.get(name, ()))
        assert block_text(text, name) == "\n" + quoted + "\n"  # the file verbatim, one blank line each side
        assert table.startswith(f"**{O.display_name(name)}** (demo): ")
    for name in F.FINDINGS:
        items = block_text(text, name).strip("\n").split("\n- ")
        assert len(items) == len(F.FINDINGS[name]) and items[0].startswith("- ")
    assert text.startswith("# title\n\nText before, `<!-- demo:NAME -->` quoted inline.\n\n<!-- demo:table1 -->\n")
    assert text.endswith("<!-- /demo:findings-beyond -->\n\nText after.\n")
    capsys.readouterr()

    assert readme_cli(results, readme, "--check") == 0
    assert "agrees with" in capsys.readouterr().out
    assert readme_cli(results, readme) == 0  # nothing to rewrite
    assert "already agrees" in capsys.readouterr().out
    assert readme.read_text(encoding="utf-8") == text


def test_check_fails_with_a_diff_on_a_changed_cell_and_writes_nothing(generated, capsys) -> None:
    results, readme = generated
    before = readme.read_bytes()
    md = F.table_path(results, "table3")
    old_line = next(line for line in md.read_text(encoding="utf-8").splitlines()
                    if line.startswith("| IISAN (T+I) |"))
    new_line = re.sub(r"\| 0\.\d{4} ", "| 0.9999 ", old_line, count=1)
    md.write_text(md.read_text(encoding="utf-8").replace(old_line, new_line), encoding="utf-8")
    capsys.readouterr()

    assert readme_cli(results, readme, "--check") == 1
    out, err = capsys.readouterr()
    assert f"\n-{old_line}\n" in out and f"\n+{new_line}\n" in out
    assert out.startswith(f"--- {readme}\n+++ {readme} from {results}\n")
    assert "disagrees with" in err and "table3" in err and "findings" not in err  # the CSV is unchanged
    assert readme.read_bytes() == before

    assert readme_cli(results, readme) == 0  # rewriting brings them back in line
    assert new_line in readme.read_text(encoding="utf-8")
    assert readme_cli(results, readme, "--check") == 0


def test_a_conclusion_follows_the_numbers_and_check_catches_it_flipping(tmp_path: Path, capsys) -> None:
    ours, base = "CROSSAN (T+I+A) (ours)", "IISAN-E (T+I+A)"
    results = write_results(tmp_path / "demo", {("table3", ours, "HR@10"): {"mean": 0.3, "p_value": 0.004},
                                                 ("table3", base, "HR@10"): {"mean": 0.2}})
    readme = tmp_path / "README.md"
    readme.write_text(skeleton(), encoding="utf-8")
    assert readme_cli(results, readme) == 0
    text = " ".join(readme.read_text(encoding="utf-8").split())
    assert "T+I+A 0.3000* vs 0.2000" in text
    assert "significantly better (`*`) on T+I+A;" in text

    # the CSV's p-value alone changes (the Markdown table keeps its *): only the findings disagree
    path = F.table_path(results, "table3").with_suffix(".csv")
    records = list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))
    for record in records:
        if record["row"] == ours:
            record["HR@10_p"], record["HR@10_mark"] = "0.4", ""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    capsys.readouterr()
    assert readme_cli(results, readme, "--check") == 1
    out, err = capsys.readouterr()
    removed = " ".join(line[1:].strip() for line in out.splitlines() if line[:1] == "-" and line[:3] != "---")
    added = " ".join(line[1:].strip() for line in out.splitlines() if line[:1] == "+" and line[:3] != "+++")
    assert "T+I+A 0.3000* vs 0.2000" in removed and "T+I+A 0.3000 vs 0.2000" in added
    assert "in findings;" in err
    assert readme_cli(results, readme) == 0
    text = " ".join(readme.read_text(encoding="utf-8").split())
    assert "significantly better (`*`) on none;" in text and "T+I+A (p = 0.40)" in text


def _break(text: str, how: str) -> str:
    if how == "block missing":
        return text.replace("<!-- demo:table8 -->", "").replace("<!-- /demo:table8 -->", "")
    if how == "never closed":
        return text.replace("<!-- /demo:findings-beyond -->", "")
    if how == "opens inside":
        return text.replace("<!-- /demo:table3 -->", "")
    if how == "closes no open block":
        return text + "<!-- /demo:table3 -->\n"
    if how == "malformed":
        return text.replace("<!-- demo:table5 -->", "<!-- demo: table5 -->")
    if how == "unknown block":
        return text + "<!-- demo:tables -->\n<!-- /demo:tables -->\n"
    if how == "appears twice":
        return text + "<!-- demo:table1 -->\n<!-- /demo:table1 -->\n"
    raise AssertionError(how)


@pytest.mark.parametrize("how, message", [
    ("block missing", "lacks the block table8"),
    ("never closed", "block 'findings-beyond' is never closed"),
    ("opens inside", "<!-- demo:table4 --> opens inside block 'table3'"),
    ("closes no open block", "<!-- /demo:table3 --> closes no open block"),
    ("malformed", "malformed marker '<!-- demo: table5 -->'"),
    ("unknown block", "unknown block 'tables'"),
    ("appears twice", "block 'table1' appears twice"),
])
def test_missing_or_broken_markers_are_errors_naming_them(generated, capsys, how: str, message: str) -> None:
    results, readme = generated
    broken = _break(readme.read_text(encoding="utf-8"), how)
    readme.write_text(broken, encoding="utf-8")
    capsys.readouterr()
    for extra in ((), ("--check",)):
        assert readme_cli(results, readme, *extra) == 1
        err = capsys.readouterr().err
        assert message in err, err
        assert err.startswith("crossan readme: error: ")
    assert readme.read_text(encoding="utf-8") == broken


def test_a_table_missing_from_results_is_an_error_naming_it(generated, capsys) -> None:
    results, readme = generated
    F.table_path(results, "tableB2").unlink()
    capsys.readouterr()
    assert readme_cli(results, readme, "--check") == 1
    err = capsys.readouterr().err
    assert "tableB2.md does not exist" in err and "`snakemake --cores 2 tableB2`" in err


def test_findings_say_what_the_numbers_say(tmp_path: Path) -> None:
    pinned = {
        # Table 3: a significant loss on T+I+V+A, whose row sits below SASRec (item IDs)
        **{("table3", label, "HR@10"): {"mean": mean} for label, mean in (
            ("Popularity", 0.02), ("SASRec (item IDs)", 0.12), ("Full Finetuning (T+I)", 0.05),
            ("Adapter (T+I)", 0.06), ("LoRA (T+I)", 0.07), ("IISAN (T+I)", 0.2), ("IISAN-E (T+I+A)", 0.21),
            ("IISAN-E (T+I+V)", 0.22), ("IISAN-E (T+I+V+A)", 0.25), ("CROSSAN (T+I) (ours)", 0.2),
            ("CROSSAN (T+I+A) (ours)", 0.3), ("CROSSAN (T+I+V) (ours)", 0.2))},
        ("table3", "CROSSAN (T+I+V+A) (ours)", "HR@10"): {"mean": 0.1, "p_value": 0.01},
        # Table 8: two graph recommenders tie for best; the first is the baseline, as the table picks it
        ("table8", "BM3", "HR@10"): {"mean": 0.45},
        ("table8", "MGCN", "HR@10"): {"mean": 0.45},
        ("table8", "CROSSAN (T+I+V+A) (ours)", "HR@10"): {"mean": 0.5, "p_value": 0.2},
        ("table8", "IISAN (T+I)", "HR@10"): {"mean": 0.3},
        ("tableB2", "CROSSAN (T+I+V+A)", "HR@10"): {"mean": 0.2},
        ("tableB2", "CROSSAN-MoDA (T+I+V+A) (shared tower)", "HR@10"): {"mean": 0.15, "p_value": 0.03},
        ("tableB2", "CROSSAN (T+I+V+A)", "TT"): {"mean": 1.0},
        ("tableB2", "CROSSAN-MoDA (T+I+V+A) (shared tower)", "TT"): {"mean": 0.5},
    }
    results = F.Results(write_results(tmp_path / "demo", pinned))
    crossan = F.table3_crossan(results)
    assert "T+I+V+A 0.1000 vs 0.2500" in crossan and "significantly worse on T+I+V+A (p = 0.010)" in crossan
    assert "significant losses on T+I+V+A (HR@10)" in crossan
    assert F.table3_references(results) == (
        "Table 3, HR@10 (no t-test between these rows): Popularity (0.0200) is below every content row; "
        "SASRec (item IDs) (0.1200) is below 7 of the 8 side-adapter rows (above or level with CROSSAN (T+I+V+A) "
        "(ours)) (0.1000-0.3000) and above every end-to-end row (0.0500-0.0700); the best end-to-end row, "
        "LoRA (T+I) (0.0700), is below the weakest side-adapter row, CROSSAN (T+I+V+A) (ours) (0.1000).")
    graph = F.table8(results)
    assert "to 0.4500 (BM3)" in graph and "against the best of them, BM3: 0.5000 vs 0.4500 (p = 0.20), " \
        "not significantly different" in graph
    assert "IISAN (T+I) (0.3000) is below " in graph
    shared = F.tableB2(results)
    assert "HR@10 0.1500 vs 0.2000 (75% of CROSSAN's, p = 0.030, significantly worse)" in shared
    assert "seconds per epoch" not in shared  # measured: never quoted
    assert "head 461, torso 192, tail 347" in F.noise(results) and "1,000 test users" in F.noise(results)
    md = F.table_path(results.folder, "tableB3")
    md.write_text(md.read_text(encoding="utf-8").replace("head 461,", "head 1,461,"), encoding="utf-8")
    assert "2,000 test users (Table B3's buckets: head 1,461, torso 192, tail 347)" in F.noise(results)


def test_readme_command_reads_only_text_files(generated) -> None:
    results, readme = generated
    code = ("import sys; from crossan.cli import main\n"
            f"rc = main(['readme', '--results', {str(results)!r}, '--readme', {str(readme)!r}, '--check'])\n"
            "print(rc, sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'polars', 'numpy', 'scipy'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "0 []", result.stdout + result.stderr


def test_significance_level_is_the_tables() -> None:
    assert F.SIGNIFICANCE_LEVEL == SIGNIFICANCE_LEVEL


def test_the_findings_name_the_tables_rows_and_columns() -> None:
    """findings.py copies a few labels of crossan.results.tables (it must not import polars)."""
    assert F.MI == T.MUTUAL_INFORMATION
    assert F.TP_PAPER in T.SHARED_TOWER
    measured = {"table4": dict(zip(T.EFFICIENCY, T.EFFICIENCY_KINDS)),
                "tableB2": dict(zip(T.SHARED_TOWER, T.SHARED_TOWER_KINDS))}
    assert {name: tuple(c for c, kind in kinds.items() if kind in ("seconds", "mib"))
            for name, kinds in measured.items()} == dict(F.MEASURED_COLUMNS)


# ---------------------------------------------------------------------- (b) README.md itself

README = (REPO / "README.md").read_text(encoding="utf-8")
# the README's passages about the demo's numbers: from their heading to the next paragraph's
DEMO_SECTIONS = (("**The demo's tables**", "**Figures**"), ("**On the demo**", "\n## On a cluster"))
TYPED_NUMBER = re.compile(r"\b\d+\.\d{3,}\b|\d\.\d+%")
VERDICT_WORDS = re.compile(r"\b(beats?|beaten|significant(ly)?|gained|outperforms?|helped|wins?|worse)\b", re.I)


def test_readme_holds_every_demo_block_in_order() -> None:
    assert [block.name for block in R.find_blocks(README)] == list(R.README_BLOCKS)


def test_readme_blocks_are_generated_not_typed() -> None:
    for name in TABLE_BLOCKS:
        content = block_text(README, name)
        assert content.startswith(f"\n**{O.display_name(name)}** (demo): "), name
        assert "|---|" in content, name
    for name in F.FINDINGS:
        assert block_text(README, name).startswith("\n- "), name


def _outside_blocks(text: str) -> str:
    return re.sub(r"^<!-- demo:(\S+) -->$.*?^<!-- /demo:\1 -->$", "", text, flags=re.S | re.M)


def test_readme_types_no_demo_number_or_verdict_outside_its_blocks() -> None:
    """Outside the generated blocks, a number quoted in the demo's passages is either a one-off
    measurement labelled "by hand" or the paper's, and no sentence says who wins."""
    text = _outside_blocks(README)
    for start, end in DEMO_SECTIONS:
        assert start in text, start
        section = text[text.index(start):text.index(end, text.index(start))]
        for paragraph in section.split("\n\n"):
            if TYPED_NUMBER.search(paragraph):
                assert "by hand" in paragraph.lower() or "the paper" in paragraph, paragraph
            assert not VERDICT_WORDS.search(paragraph), paragraph


def test_measured_columns_are_never_quoted() -> None:
    """Time per epoch and peak memory change from run to run: the quoted Table 4 keeps TP only,
    every other line as written."""
    table = ("**Table 4** (demo): caption\n\n| Method | TT | GM | TP |\n|---|---|---|---|\n"
             "| CROSSAN | 0.83 | 502.9 | 1,063,440 |\n| Improvement_best | +42.08% | +12.76% | +56.90% |\n\n- GM here: x.\n")
    assert R.without_columns(table, F.MEASURED_COLUMNS["table4"]) == (
        "**Table 4** (demo): caption\n\n| Method | TP |\n|---|---|\n"
        "| CROSSAN | 1,063,440 |\n| Improvement_best | +56.90% |\n\n- GM here: x.\n")
    assert R.without_columns(table, ()) == table


# ---------------------------------------------------------------------- (c) against a fresh demo


@pytest.mark.timeout(1800)
def test_the_readme_quotes_what_a_fresh_default_demo_writes(tmp_path: Path) -> None:
    """The default demo, built from scratch in a temporary folder, writes every table the README
    quotes; `crossan readme --check` must find the README's blocks equal to them. The numbers
    depend on the CPU's floating point (and the thread count, 1 per job): a failure on another
    kind of machine means the README was generated elsewhere; regenerate it there with
    `snakemake --cores 2 all && crossan readme`. About 9 minutes on 2 cores."""
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    tables = [name for name in R.README_BLOCKS if name not in F.FINDINGS]
    targets = [str(F.table_path(Path("results/demo"), name).with_suffix(ext)) for name in tables for ext in (".md", ".csv")]
    built = snakemake(tmp_path, "--cores", "2", *targets, timeout=1700)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    check = subprocess.run([sys.executable, "-m", "crossan.cli", "readme", "--results", str(tmp_path / "results/demo"),
                            "--readme", str(REPO / "README.md"), "--check"], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, ("README.md disagrees with a fresh default demo; regenerate it with "
                                   "`crossan readme` after `snakemake --cores 2 all`:\n" + check.stdout + check.stderr)
