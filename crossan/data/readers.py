"""Readers of the raw tables, interactions (``user,item,timestamp``) and titles (``id,title``),
and of the pipeline's own item table ``items.csv`` (``dense_id,item_id,title``).

All fail with the file and line of the first malformed rows; every stage that reads these
tables (layout verification, download, sequences, media, encoders) goes through here.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from crossan.errors import DataError

COLUMNS = ("user", "item", "timestamp")
MAX_REPORTED_ROWS = 5


def read_interactions(path: Path) -> tuple[pl.DataFrame, int]:
    """Parse ``user,item,timestamp`` rows (header optional) into integer columns.

    Returns ``(frame, raw_rows)`` where ``frame`` has columns ``user``, ``item``,
    ``timestamp`` (Int64) and ``line`` (1-based line number in the file). Raises
    ``DataError`` naming the file and the first offending lines for rows with a wrong
    field count or a non-integer value.
    """
    if not path.is_file():
        raise DataError(f"interaction file {path} does not exist")
    text = path.read_text(encoding="utf-8-sig")
    lines = pl.DataFrame({"text": text.splitlines()}).with_row_index("line", offset=1)
    lines = lines.filter(pl.col("text").str.strip_chars() != "")
    if lines.is_empty():
        raise DataError(f"{path}: the interaction file is empty")
    first = [field.strip().lower() for field in lines["text"][0].split(",")]
    if not all(field.lstrip("-").isdigit() for field in first):
        if len(first) != 3 or not all(field.replace("_", "").isalpha() for field in first):
            raise DataError(
                f"{path}, line 1: expected a header 'user,item,timestamp' or a data row, "
                f"got {lines['text'][0]!r}"
            )
        lines = lines.slice(1)
    if lines.is_empty():
        raise DataError(f"{path}: the interaction file has a header but no rows")
    fields = lines.with_columns(parts=pl.col("text").str.split(","))
    wrong_count = fields.filter(pl.col("parts").list.len() != 3)
    _fail_on_rows(path, wrong_count, "expected 3 fields user,item,timestamp")
    parsed = fields.with_columns(
        pl.col("parts").list.get(i).str.strip_chars().str.to_integer(strict=False).alias(name)
        for i, name in enumerate(COLUMNS)
    )
    non_integer = parsed.filter(pl.any_horizontal(pl.col(c).is_null() for c in COLUMNS))
    _fail_on_rows(path, non_integer, "user, item and timestamp must be integers")
    return parsed.select(*COLUMNS, "line"), lines.height


def _fail_on_rows(path: Path, bad: pl.DataFrame, what: str) -> None:
    if bad.is_empty():
        return
    shown = "\n".join(
        f"  line {row['line']}: {row['text']!r}" for row in bad.head(MAX_REPORTED_ROWS).iter_rows(named=True)
    )
    more = f"\n  ... and {bad.height - MAX_REPORTED_ROWS} more" if bad.height > MAX_REPORTED_ROWS else ""
    raise DataError(
        f"{path}: {bad.height} malformed row(s), {what}:\n{shown}{more}\n"
        "Fix or remove these rows and rerun."
    )


def read_titles(path: Path) -> dict[int, str]:
    """Read the title file (no header, ``id,title``; a title may contain commas).

    Returns ``{item_id: title}``. A non-integer id raises ``DataError`` with the line.
    """
    if not path.is_file():
        raise DataError(f"title file {path} does not exist")
    titles: dict[int, str] = {}
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for line_number, row in enumerate(csv.reader(handle), start=1):
            if not row or not "".join(row).strip():
                continue
            item_id = row[0].strip()
            if not item_id.lstrip("-").isdigit():
                raise DataError(
                    f"{path}, line {line_number}: item id {item_id!r} is not an integer "
                    "(expected rows 'id,title' with no header)"
                )
            titles[int(item_id)] = ",".join(row[1:]).strip()
    return titles


def item_ids(pairs: Path) -> list[str]:
    """The distinct item ids of an interaction file, in numeric order, as strings."""
    frame, _ = read_interactions(pairs)
    return [str(item) for item in frame["item"].unique().sort().to_list()]


@dataclass(frozen=True)
class ItemTable:
    """``items.csv``: row ``i`` of each list is dense item id ``i + 1`` (0 is padding)."""

    item_ids: list[str]
    titles: list[str]


def read_item_table(items_csv: Path) -> ItemTable:
    """Read ``items.csv`` (header ``dense_id,item_id,title``, dense ids exactly 1..n in order;
    empty titles stay ``""``). Raises ``DataError`` naming the file and line otherwise."""
    try:
        with open(items_csv, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or not {"dense_id", "item_id", "title"} <= set(reader.fieldnames):
                raise DataError(
                    f"{items_csv}: expected a header with dense_id,item_id,title, got {reader.fieldnames}"
                )
            rows = [(row["dense_id"], row["item_id"], row["title"] or "") for row in reader]
    except FileNotFoundError as error:
        raise DataError(f"items table {items_csv} does not exist; run the sequences step") from error
    for line, (dense, item_id, _) in enumerate(rows, start=2):
        if dense != str(line - 1) or not item_id:
            raise DataError(
                f"{items_csv}:{line}: expected dense_id {line - 1} and an item_id, got {dense!r},{item_id!r}"
            )
    return ItemTable(item_ids=[row[1] for row in rows], titles=[row[2] for row in rows])
