"""Readers of the raw tables, interactions (``user,item,timestamp``) and titles (``id,title``),
and of the pipeline's own item table ``items.csv`` (``dense_id,item_id,title``).

All fail with the file and line of the first malformed rows; every stage that reads these
tables (layout verification, download, sequences, media, encoders) goes through here.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from crossan.errors import DataError

COLUMNS = ("user", "item", "timestamp")
MAX_REPORTED_ROWS = 5
# How a title row starts: an integer item id and a comma.
_TITLE_ROW_START = re.compile(r"\s*-?\d+\s*,")


def read_text(path: Path, what: str) -> str:
    """The file as text (UTF-8, a BOM allowed). Raises ``DataError`` naming the line and byte of
    the first byte sequence that is not UTF-8."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise DataError(
            f"{path}, line {line}, byte {column}: {data[error.start:error.end]!r} is not UTF-8 "
            f"({error.reason}); {what} must be UTF-8 text: convert it, e.g. "
            f"iconv -f latin1 -t utf-8 {path.name} > fixed.csv"
        ) from None


def physical_lines(text: str) -> list[str]:
    """Lines split at ``\n`` only (a trailing ``\r`` dropped): ``str.splitlines`` also splits
    at form feeds and U+2028, which would shift every later line number."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def read_interactions(path: Path) -> tuple[pl.DataFrame, int]:
    """Parse ``user,item,timestamp`` rows (header optional) into integer columns.

    Returns ``(frame, raw_rows)`` where ``frame`` has columns ``user``, ``item``,
    ``timestamp`` (Int64) and ``line`` (1-based line number in the file). Raises
    ``DataError`` naming the file and the first offending lines for rows with a wrong
    field count, a non-integer value or a negative timestamp, and for a file that is empty or
    not UTF-8.
    """
    if not path.is_file():
        raise DataError(f"interaction file {path} does not exist")
    text = read_text(path, "the interaction file")
    lines = pl.DataFrame({"text": physical_lines(text)}, schema={"text": pl.String}).with_row_index("line", offset=1)
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
    _fail_on_rows(path, parsed.filter(pl.col("timestamp") < 0), "timestamps must be Unix seconds >= 0")
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
    """Read the title file (no header, ``id,title``; a title may contain commas, and a quoted
    one may span lines).

    Returns ``{item_id: title}``. A non-integer id raises ``DataError`` with the line, and so
    does a quote left open: a quoted field whose later lines look like rows of their own.
    """
    if not path.is_file():
        raise DataError(f"title file {path} does not exist")
    text = read_text(path, "the title file")
    # the lines as the csv reader counts them (its line_num), for quoting a swallowed one
    lines = [line.rstrip("\r\n") for line in io.StringIO(text, newline="")]
    titles: dict[int, str] = {}
    reader = csv.reader(io.StringIO(text, newline=""))
    end = 0
    for row in reader:
        start, end = end + 1, reader.line_num
        if end > start:
            _check_quote_closed(path, lines, start, end)
        if not row or not "".join(row).strip():
            continue
        item_id = row[0].strip()
        if not item_id.lstrip("-").isdigit():
            raise DataError(
                f"{path}, line {start}: item id {item_id!r} is not an integer "
                "(expected rows 'id,title' with no header)"
            )
        titles[int(item_id)] = ",".join(row[1:]).strip()
    return titles


def _check_quote_closed(path: Path, lines: list[str], start: int, end: int) -> None:
    """Raise when the row read from lines ``start..end`` (1-based) swallowed a line that is a
    row of its own: a quote opened on line ``start`` was never closed (or closed lines later)."""
    for number in range(start + 1, end + 1):
        if _TITLE_ROW_START.match(lines[number - 1]):
            raise DataError(
                f"{path}, line {start}: the quote that opens this row is never closed, so the "
                f"lines after it were read into it (line {number}, {lines[number - 1]!r}, is a "
                'row of its own); close the quote (a quote inside a quoted title is written "") '
                "or remove it, and rerun"
            )


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
