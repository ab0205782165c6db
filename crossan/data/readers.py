"""Readers of the raw tables, interactions (``user,item,timestamp``) and titles (``id,title``),
and of the pipeline's own item table ``items.csv`` (``dense_id,item_id,title``).

All fail with the file and line of the first malformed rows; every stage that reads these
tables (layout verification, download, sequences, media, encoders) goes through here.

**Ids.** User and item ids are text, compared exactly as written (surrounding spaces
removed): integers (MicroLens, the demo), ASINs (``B00XYZ1234``), UUIDs. An item id names its
media files (``covers/{id}.jpg``, ``videos/{id}.mp4``), so every id must be usable as a file
name (:func:`id_problem`). A column whose ids are all integers in canonical form (``-?[1-9][0-9]*``
or ``0``, within 64 bits) is read as integers, so it sorts numerically and is written
unquoted, exactly as before string ids were accepted; any other column stays text.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from crossan.errors import DataError

COLUMNS = ("user", "item", "timestamp")
ID_COLUMNS = ("user", "item")
MAX_REPORTED_ROWS = 5
# How a title row starts when its id is an integer: the id and a comma.
_TITLE_ROW_START = re.compile(r"\s*-?\d+\s*,")
_CANONICAL_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")
_INT64_MAX = 2**63 - 1
# An id becomes a file name ({id}.jpg, {id}.mp4, and the .partial files beside them).
MAX_ID_BYTES = 200
_ID_FORBIDDEN = re.compile(r'[\x00-\x1f\x7f/\\"]')
ID_RULE = (f"an id must be non-empty, at most {MAX_ID_BYTES} bytes of UTF-8, not '.' or '..', and "
           "contain no '/', '\\', '\"', comma or control character (it names the files covers/{id}.jpg "
           "and videos/{id}.mp4)")


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


def id_problem(item_id: str) -> str | None:
    """Why ``item_id`` (already stripped) cannot be a user or item id, or None when it can
    (:data:`ID_RULE`)."""
    if not item_id:
        return "empty"
    if item_id in (".", ".."):
        return f"{item_id!r} is not a file name"
    if bad := _ID_FORBIDDEN.search(item_id):
        return f"contains {bad.group()!r}"
    if len(item_id.encode("utf-8")) > MAX_ID_BYTES:
        return f"longer than {MAX_ID_BYTES} bytes"
    return None


def canonical_integers(ids: Iterable[str]) -> bool:
    """Whether every id is an integer written the way ``str(int(id))`` writes it, within 64
    bits: such a column is read as integers (numeric order, unquoted in the CSV files)."""
    return all(_CANONICAL_INTEGER.fullmatch(i) and abs(int(i)) <= _INT64_MAX for i in ids)


def read_interactions(path: Path) -> tuple[pl.DataFrame, int]:
    """Parse ``user,item,timestamp`` rows (header optional).

    Returns ``(frame, raw_rows)`` where ``frame`` has columns ``user``, ``item`` (Int64 when
    every id of the column is a canonical integer, else String, see the module doc),
    ``timestamp`` (Int64) and ``line`` (1-based line number in the file). Raises
    ``DataError`` naming the file and the first offending lines for rows with a wrong field
    count, an id that breaks :data:`ID_RULE`, a non-integer or negative timestamp, and for a
    file that is empty or not UTF-8.
    """
    if not path.is_file():
        raise DataError(f"interaction file {path} does not exist")
    text = read_text(path, "the interaction file")
    lines = pl.DataFrame({"text": physical_lines(text)}, schema={"text": pl.String}).with_row_index("line", offset=1)
    lines = lines.filter(pl.col("text").str.strip_chars() != "")
    if lines.is_empty():
        raise DataError(f"{path}: the interaction file is empty")
    first = [field.strip().lower() for field in lines["text"][0].split(",")]
    # a data row has an integer timestamp; ids may be text (ASINs, UUIDs)
    is_row = all(f.lstrip("-").isdigit() for f in first) or (len(first) == 3 and first[2].lstrip("-").isdigit())
    if not is_row:
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
        *(pl.col("parts").list.get(i).str.strip_chars().alias(name) for i, name in enumerate(ID_COLUMNS)),
        pl.col("parts").list.get(2).str.strip_chars().str.to_integer(strict=False).alias("timestamp"),
    )
    _fail_on_rows(path, parsed.filter(pl.col("timestamp").is_null()), "timestamps must be integers")
    _fail_on_rows(path, parsed.filter(pl.col("timestamp") < 0), "timestamps must be Unix seconds >= 0")
    for column in ID_COLUMNS:
        distinct = parsed[column].unique().to_list()
        bad = {value for value in distinct if id_problem(value)}
        if bad:
            rows = parsed.filter(pl.col(column).is_in(list(bad)))
            why = id_problem(rows[column][0])
            _fail_on_rows(path, rows, f"{column} ids must be usable as file names (the first: {why}); {ID_RULE}")
        if canonical_integers(distinct):
            parsed = parsed.with_columns(pl.col(column).cast(pl.Int64))
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


def read_titles(path: Path, item_ids: Collection[str] = ()) -> dict[str, str]:
    """Read the title file (no header, ``id,title``; a title may contain commas, and a quoted
    one may span lines).

    Returns ``{item_id: title}``, ids as written (surrounding spaces removed). An empty id
    raises ``DataError`` with the line, and so does a quote left open: a quoted field whose
    later lines look like rows of their own, i.e. start with an integer id or one of
    ``item_ids`` (the interactions' items) and a comma.
    """
    if not path.is_file():
        raise DataError(f"title file {path} does not exist")
    text = read_text(path, "the title file")
    # the lines as the csv reader counts them (its line_num), for quoting a swallowed one
    lines = [line.rstrip("\r\n") for line in io.StringIO(text, newline="")]
    known = set(item_ids)
    titles: dict[str, str] = {}
    reader = csv.reader(io.StringIO(text, newline=""))
    end = 0
    for row in reader:
        start, end = end + 1, reader.line_num
        if end > start:
            _check_quote_closed(path, lines, start, end, known)
        if not row or not "".join(row).strip():
            continue
        item_id = row[0].strip()
        if not item_id:
            raise DataError(
                f"{path}, line {start}: the item id is empty (expected rows 'id,title' with no header)"
            )
        titles[item_id] = ",".join(row[1:]).strip()
    return titles


def _looks_like_row(line: str, known: set[str]) -> bool:
    """Whether ``line`` starts like a title row: an integer id, or a known item id, then a comma."""
    if _TITLE_ROW_START.match(line):
        return True
    head, comma, _ = line.partition(",")
    return bool(comma) and head.strip().strip('"') in known


def _check_quote_closed(path: Path, lines: list[str], start: int, end: int, known: set[str]) -> None:
    """Raise when the row read from lines ``start..end`` (1-based) swallowed a line that is a
    row of its own: a quote opened on line ``start`` was never closed (or closed lines later)."""
    for number in range(start + 1, end + 1):
        if _looks_like_row(lines[number - 1], known):
            raise DataError(
                f"{path}, line {start}: the quote that opens this row is never closed, so the "
                f"lines after it were read into it (line {number}, {lines[number - 1]!r}, is a "
                'row of its own); close the quote (a quote inside a quoted title is written "") '
                "or remove it, and rerun"
            )


def item_ids(pairs: Path) -> list[str]:
    """The distinct item ids of an interaction file, as strings: in numeric order when they
    are integers, else in text order."""
    frame, _ = read_interactions(pairs)
    return [str(item) for item in frame["item"].unique().sort().to_list()]


@dataclass(frozen=True)
class ItemTable:
    """``items.csv``: row ``i`` of each list is dense item id ``i + 1`` (0 is padding)."""

    item_ids: list[str]
    titles: list[str]


def _read_dense_table(path: Path, columns: tuple[str, ...], what: str) -> list[tuple[str, ...]]:
    """The ``columns`` of every row of a dense-id table (``dense_id`` first, then ``item_id``,
    ...; dense ids exactly 1..n in order, every ``item_id`` non-empty; a cell a short row lacks
    is ``None``). Raises ``DataError`` naming the file (``what`` in the missing-file message) and line."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or not set(columns) <= set(reader.fieldnames):
                raise DataError(f"{path}: expected a header with {','.join(columns)}, got {reader.fieldnames}")
            rows = [tuple(row[column] for column in columns) for row in reader]
    except FileNotFoundError as error:
        raise DataError(f"{what} {path} does not exist; run the sequences step") from error
    for line, (dense, item_id, *_) in enumerate(rows, start=2):
        if dense != str(line - 1) or not item_id:
            raise DataError(f"{path}:{line}: expected dense_id {line - 1} and an item_id, got {dense!r},{item_id!r}")
    return rows


def read_item_ids(path: Path) -> list[str]:
    """The item ids of ``item_ids.csv`` (or ``items.csv``), dense ids 1..n in order; raises
    ``DataError`` naming the file and line otherwise."""
    return [item_id for _, item_id in _read_dense_table(path, ("dense_id", "item_id"), "item table")]


def read_item_table(items_csv: Path) -> ItemTable:
    """Read ``items.csv`` (header ``dense_id,item_id,title``, dense ids exactly 1..n in order;
    empty titles stay ``""``). Raises ``DataError`` naming the file and line otherwise."""
    rows = _read_dense_table(items_csv, ("dense_id", "item_id", "title"), "items table")
    return ItemTable(item_ids=[row[1] for row in rows], titles=[row[2] or "" for row in rows])
