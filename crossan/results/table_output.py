"""A table as the paper lays it out (:class:`Table` of :class:`Row` of :class:`Cell`), and its
three written forms: CSV (every number, std, p-values and runs), Markdown and HTML, each
written atomically. :mod:`crossan.results.tables` builds the tables."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from crossan.atomic import write_text_atomic
from crossan.results.runs import Summary

MISSING = "—"


@dataclass
class Cell:
    """One value of a table: ``mean ± std`` over ``n`` seeds, a p-value against the row's
    baseline, the ``*`` mark, and the paper's published value. ``kind`` sets the format:
    ``metric`` (4 decimals), ``percent`` (signed, %), ``seconds``, ``mib``, ``count``."""

    mean: float | None = None
    std: float = 0.0
    n: int = 0
    p_value: float | None = None
    marked: bool = False
    paper: float | None = None
    kind: str = "metric"

    @classmethod
    def of(cls, summary: Summary, kind: str = "metric") -> Cell:
        return cls(summary.mean, summary.std, summary.n, kind=kind)


@dataclass
class Row:
    label: str
    cells: dict[str, Cell]
    runs: tuple[str, ...] = ()
    note: str = ""
    section: str = ""  # rows under a section heading, e.g. "Relative Improvement"


@dataclass
class Table:
    """A table as the paper lays it out: a first column (``header``) and value ``columns``."""

    target: str
    dataset: str
    caption: str
    header: str
    columns: tuple[str, ...]
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    paper_dataset: str = ""

    def row(self, label: str) -> Row:
        for row in self.rows:
            if row.label == label:
                return row
        raise KeyError(f"{self.target} has no row {label!r}")


# ====================================================================== formatting


def display_name(target: str) -> str:
    """``"table3" -> "Table 3"``, ``"figure4" -> "Figure 4"``."""
    for prefix in ("table", "figure"):
        if target.startswith(prefix):
            return f"{prefix.capitalize()} {target[len(prefix):]}"
    return target


def format_number(value: float, kind: str) -> str:
    if kind == "percent":
        return f"{value:+.2f}%"
    if kind == "seconds":
        return f"{value:,.2f}"
    if kind == "mib":
        return f"{value:,.1f}"
    if kind == "count":
        return f"{value:,.0f}"
    return f"{value:.4f}"


def format_cell(cell: Cell, with_paper: bool) -> str:
    """``0.1033* ± 0.0012 (0.1033)``: mean, mark, std (several seeds), the paper's value."""
    text = MISSING if cell.mean is None or math.isnan(cell.mean) else format_number(cell.mean, cell.kind)
    if cell.marked:
        text += "*"
    if cell.mean is not None and cell.n > 1:
        text += f" ± {format_number(cell.std, cell.kind).lstrip('+')}"
    if with_paper and cell.paper is not None:
        text += f" ({format_number(cell.paper, cell.kind)})"
    return text


def _has_paper(table: Table) -> bool:
    return any(cell.paper is not None for row in table.rows for cell in row.cells.values())


def _sections(table: Table) -> list[tuple[str, list[Row]]]:
    groups: list[tuple[str, list[Row]]] = []
    for row in table.rows:
        if not groups or groups[-1][0] != row.section:
            groups.append((row.section, []))
        groups[-1][1].append(row)
    return groups


def _notes(table: Table) -> list[str]:
    notes = list(table.notes)
    if _has_paper(table):
        notes.append(f"In parentheses: the paper's published value ({table.paper_dataset}).")
    for row in table.rows:
        if row.note:
            notes.append(f"{row.label}: {row.note}.")
    return notes


def to_markdown(table: Table) -> str:
    with_paper = _has_paper(table)
    lines = [f"**{display_name(table.target)}** ({table.dataset}): {table.caption}", ""]
    lines.append("| " + " | ".join((table.header, *table.columns)) + " |")
    lines.append("|" + "---|" * (len(table.columns) + 1))
    for section, rows in _sections(table):
        if section:
            lines.append(f"| *{section}* |" + " |" * len(table.columns))
        for row in rows:
            cells = [format_cell(row.cells.get(c, Cell()), with_paper) for c in table.columns]
            lines.append("| " + " | ".join((row.label, *cells)) + " |")
    notes = _notes(table)
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def to_html(table: Table) -> str:
    """A standalone HTML page of the table (the report embeds it)."""
    with_paper = _has_paper(table)
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in (table.header, *table.columns))
    body = []
    for section, rows in _sections(table):
        if section:
            body.append(f'<tr class="section"><td colspan="{len(table.columns) + 1}"><em>{e(section)}</em></td></tr>')
        for row in rows:
            cells = "".join(f"<td>{e(format_cell(row.cells.get(c, Cell()), with_paper))}</td>" for c in table.columns)
            body.append(f"<tr><th>{e(row.label)}</th>{cells}</tr>")
    notes = "".join(f"<li>{e(note)}</li>" for note in _notes(table))
    style = ("body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
             "td,th{border-bottom:1px solid #ccc;padding:4px 10px;text-align:right}"
             "th:first-child,tr th{text-align:left}tr.section td{text-align:left;background:#f3f3f3}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{e(table.target)} {e(table.dataset)}</title>"
            f"<style>{style}</style></head><body>\n<p><strong>{e(display_name(table.target))}</strong> ({e(table.dataset)}): "
            f"{e(table.caption)}</p>\n<table><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(body)
            + f"\n</tbody></table>\n<ul>{notes}</ul>\n</body></html>\n")


def to_frame(table: Table) -> pl.DataFrame:
    """Every number of the table, one row per table row: ``section, row``, per column its
    mean, ``_std``, ``_n``, ``_p`` (vs the baseline), ``_mark`` and ``_paper``; the run
    names behind the row (``;``-separated) and the note."""
    records = []
    for row in table.rows:
        record: dict[str, object] = {"section": row.section, "row": row.label}
        for column in table.columns:
            cell = row.cells.get(column, Cell())
            record[column] = cell.mean
            record[f"{column}_std"] = cell.std if cell.mean is not None else None
            record[f"{column}_n"] = cell.n
            record[f"{column}_p"] = cell.p_value
            record[f"{column}_mark"] = "*" if cell.marked else ""
            record[f"{column}_paper"] = cell.paper
        record["runs"] = ";".join(row.runs)
        record["note"] = row.note
        records.append(record)
    schema: dict[str, pl.DataType] = {"section": pl.String, "row": pl.String}
    for column in table.columns:
        schema |= {column: pl.Float64, f"{column}_std": pl.Float64, f"{column}_n": pl.Int64,
                   f"{column}_p": pl.Float64, f"{column}_mark": pl.String, f"{column}_paper": pl.Float64}
    schema |= {"runs": pl.String, "note": pl.String}
    return pl.DataFrame(records, schema=schema, orient="row")


def write_table(table: Table, csv: Path, markdown: Path, html_path: Path) -> None:
    """Write the three views atomically (temp name, then rename)."""
    write_text_atomic(csv, to_frame(table).write_csv())
    write_text_atomic(markdown, to_markdown(table))
    write_text_atomic(html_path, to_html(table))
