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

**Rows as written.** Every field of every row is taken exactly as written (an id's and a title's
surrounding spaces trimmed), or the row is refused with the file, the line, a quote of it cut to
:data:`MAX_QUOTED_CHARS` characters, and the fix: both files are UTF-8 with lines ending in LF
or CRLF (:func:`read_table_text`: a lone CR, Unicode line separators used as line ends, and C1
control characters, the trace of a Windows-1252 file converted as Latin-1, are refused, naming
the ``iconv`` conversion); the title file is RFC 4180 CSV read by :mod:`csv` with
``strict=True`` (exactly two fields; a quote only around a whole field; no control character but
a tab, and line breaks inside a quoted title), its last line checked like any other (a quote
left open or a field missing is refused), and an id given two different titles is refused with
both lines (an exact repeat is dropped and counted in the log).
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from crossan.errors import DataError

log = logging.getLogger(__name__)

COLUMNS = ("user", "item", "timestamp")
ID_COLUMNS = ("user", "item")
MAX_REPORTED_ROWS = 5
# A quoted line in a message is cut to this many characters, enough for a row with a 200-byte id
# (a file whose line ends are not recognised is one huge line).
MAX_QUOTED_CHARS = 240
# How a title row starts when its id is an integer: the id and a comma.
_TITLE_ROW_START = re.compile(r"\s*-?\d+\s*,")
_CANONICAL_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")
_INT64_MAX = 2**63 - 1
# An id becomes a file name ({id}.jpg, {id}.mp4, and the .partial files beside them).
MAX_ID_BYTES = 200
_ID_FORBIDDEN = re.compile(r'[\x00-\x1f\x7f-\x9f/\\"]')
ID_RULE = (f"an id must be non-empty, at most {MAX_ID_BYTES} bytes of UTF-8, not '.' or '..', and "
           "contain no '/', '\\', '\"', comma or control character (it names the files covers/{id}.jpg "
           "and videos/{id}.mp4)")


def quote(text: str) -> str:
    """``repr(text)``, cut to its first :data:`MAX_QUOTED_CHARS` characters (and saying how long
    it is) so that no message quotes megabytes."""
    if len(text) <= MAX_QUOTED_CHARS:
        return repr(text)
    return f"{text[:MAX_QUOTED_CHARS]!r}... ({len(text):,} characters)"


def _conversion_hint(data: bytes, name: str) -> str:
    """How to convert bytes that are not UTF-8 into UTF-8: the source encoding named."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return f"it is UTF-16 (it starts with a UTF-16 byte order mark): iconv -f UTF-16 -t UTF-8 {name} > fixed.csv"
    try:
        data.decode("cp1252")
    except UnicodeDecodeError:
        return (f"it is not Windows-1252 either: find its encoding (`file -i {name}`, or the program that "
                f"wrote it) and convert it, e.g. iconv -f GB18030 -t UTF-8 {name} > fixed.csv")
    # Latin-1 reads bytes 0x80-0x9F (curly quotes, dashes, the euro sign in Windows-1252) as
    # C1 control characters, so the Windows-1252 conversion is the one that keeps them.
    return (f"it reads as Windows-1252 (the usual encoding of Western text written on Windows; not "
            f"latin1, which turns its curly quotes, dashes and euro signs into control characters): "
            f"iconv -f WINDOWS-1252 -t UTF-8 {name} > fixed.csv")


def read_text(path: Path, what: str) -> str:
    """The file as text (UTF-8, a BOM allowed). Raises ``DataError`` naming the line and byte of
    the first byte sequence that is not UTF-8 and the ``iconv`` conversion to run."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise DataError(
            f"{path}, line {line}, byte {column}: {data[error.start:error.end]!r} is not UTF-8 "
            f"({error.reason}); {what} must be UTF-8 text: convert it; "
            f"{_conversion_hint(data, path.name)}"
        ) from None


_LONE_CR = re.compile(r"\r(?!\n)")
# Line ends of other conventions: NEL, LINE SEPARATOR, PARAGRAPH SEPARATOR.
_OTHER_LINE_ENDS = re.compile("[\x85\u2028\u2029]")
_C1 = re.compile("[\x80-\x9f]")


def _sed_bytes(char: str) -> str:
    """``char``'s UTF-8 bytes as GNU sed escapes (``\\xe2\\x80\\xa8``)."""
    return "".join(f"\\x{byte:02x}" for byte in char.encode("utf-8"))


def _line_at(text: str, position: int) -> tuple[int, str]:
    """The 1-based number (lines end at LF) and the text of the line holding ``position``."""
    start = text.rfind("\n", 0, position) + 1
    end = text.find("\n", position)
    return text.count("\n", 0, position) + 1, text[start : end if end >= 0 else len(text)]


def read_table_text(path: Path, what: str) -> str:
    """:func:`read_text`, then the checks every raw table passes before its rows are read; the
    text is returned with CRLF line ends as LF.

    Raises ``DataError`` with the line, a short quote and the fix for: a carriage return not
    followed by a line feed (a file whose lines end in CR alone, as old Mac programs write, is
    otherwise one huge line 1); a file with no line feed whose lines end in NEL, U+2028 or
    U+2029; a C1 control character (U+0080-U+009F), which UTF-8 text does not contain but a
    Windows-1252 file decoded as Latin-1 does (curly quotes, dashes, the euro sign).
    """
    text = read_text(path, what)
    if lone := _LONE_CR.search(text):
        line, content = _line_at(text, lone.start())
        if "\n" not in text:
            raise DataError(
                f"{path}: the lines end in a carriage return alone (CR, as old Mac programs and some "
                f"spreadsheet exports write), so the file reads as one line {quote(text)}; lines must end "
                f"in LF or CRLF: convert it, e.g. tr '\\r' '\\n' < {path.name} > fixed.csv"
            )
        raise DataError(
            f"{path}, line {line}: a carriage return (CR) that is not followed by a line feed, "
            f"in {quote(content)}; lines must end in LF or CRLF (a CR alone is not a line end, and no "
            "field may contain one): remove it, or convert the file's line ends"
        )
    if "\n" not in text.rstrip() and (other := _OTHER_LINE_ENDS.search(text)):
        raise DataError(
            f"{path}: the lines end in U+{ord(other.group()):04X}, not LF or CRLF, so the file reads as "
            f"one line {quote(text)}; convert the line ends to LF, e.g. "
            f"sed 's/{_sed_bytes(other.group())}/\\n/g' {path.name} > fixed.csv"
        )
    if c1 := _C1.search(text):
        line, content = _line_at(text, c1.start())
        raise DataError(
            f"{path}, line {line}: control character U+{ord(c1.group()):04X} in {quote(content)}; "
            "UTF-8 text has none of U+0080-U+009F: this file was most likely converted from "
            "Windows-1252 as if it were Latin-1 (iconv -f latin1 turns curly quotes, dashes and euro "
            f"signs into these). Convert the original with iconv -f WINDOWS-1252 -t UTF-8, or repair "
            f"this file: iconv -f UTF-8 -t LATIN1 {path.name} | iconv -f WINDOWS-1252 -t UTF-8 > fixed.csv"
        )
    return text.replace("\r\n", "\n")


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


# What a timestamp is (README, "Your own data"): the code only orders by it.
TIMESTAMP_RULE = "in any unit, MicroLens' is Unix milliseconds; only their order counts"


def read_interactions(path: Path) -> tuple[pl.DataFrame, int]:
    """Parse ``user,item,timestamp`` rows (header optional).

    Returns ``(frame, raw_rows)`` where ``frame`` has columns ``user``, ``item`` (Int64 when
    every id of the column is a canonical integer, else String, see the module doc),
    ``timestamp`` (Int64) and ``line`` (1-based line number in the file). Raises
    ``DataError`` naming the file and the first offending lines for rows with a wrong field
    count, an id that breaks :data:`ID_RULE`, a timestamp that is not :data:`TIMESTAMP_RULE`,
    and for a file that is empty, not UTF-8 or fails :func:`read_table_text`. The first line
    is a header when it is three names of letters and ``_``, else a data row like any other
    (a float or a date there is reported as a timestamp that is not an integer).
    """
    if not path.is_file():
        raise DataError(f"interaction file {path} does not exist")
    text = read_table_text(path, "the interaction file")
    lines = pl.DataFrame({"text": physical_lines(text)}, schema={"text": pl.String}).with_row_index("line", offset=1)
    lines = lines.filter(pl.col("text").str.strip_chars() != "")
    if lines.is_empty():
        raise DataError(f"{path}: the interaction file is empty")
    first_line = lines["text"][0]
    first = [field.strip() for field in first_line.split(",")]
    is_header = len(first) == 3 and all(field.replace("_", "").isalpha() for field in first)
    if is_header:
        lines = lines.slice(1)
    elif not any(character.isdigit() for character in first_line):
        # neither a header nor a row: a data row has a timestamp, so at least one digit
        raise DataError(
            f"{path}, line {lines['line'][0]}: expected a header 'user,item,timestamp' (three names of "
            f"letters and '_') or a data row, got {quote(first_line)}"
        )
    if lines.is_empty():
        raise DataError(f"{path}: the interaction file has a header but no rows")
    fields = lines.with_columns(parts=pl.col("text").str.split(","))
    wrong_count = fields.filter(pl.col("parts").list.len() != 3)
    # a first line read as data is named so when it is refused: it may be a header misspelt
    read_as_data = None if is_header else int(lines["line"][0])
    _fail_on_rows(path, wrong_count, "expected 3 fields user,item,timestamp", read_as_data)
    parsed = fields.with_columns(
        *(pl.col("parts").list.get(i).str.strip_chars().alias(name) for i, name in enumerate(ID_COLUMNS)),
        pl.col("parts").list.get(2).str.strip_chars().str.to_integer(strict=False).alias("timestamp"),
    )
    _fail_on_rows(path, parsed.filter(pl.col("timestamp").is_null()),
                  f"timestamps must be integers within 64 bits ({TIMESTAMP_RULE}): write a date or a "
                  "fraction as a whole number, e.g. Unix milliseconds", read_as_data)
    _fail_on_rows(path, parsed.filter(pl.col("timestamp") < 0),
                  f"timestamps must be integers >= 0 ({TIMESTAMP_RULE})", read_as_data)
    for column in ID_COLUMNS:
        distinct = parsed[column].unique().to_list()
        bad = {value for value in distinct if id_problem(value)}
        if bad:
            rows = parsed.filter(pl.col(column).is_in(list(bad)))
            why = id_problem(rows[column][0])
            _fail_on_rows(path, rows, f"{column} ids must be usable as file names (the first: {why}); {ID_RULE}",
                          read_as_data)
        if canonical_integers(distinct):
            parsed = parsed.with_columns(pl.col(column).cast(pl.Int64))
    return parsed.select(*COLUMNS, "line"), lines.height


# Characters str.splitlines ends a line at besides LF and CR: a row that holds one was most
# likely meant as several lines.
_LINE_BREAKING = re.compile("[\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


def _fail_on_rows(path: Path, bad: pl.DataFrame, what: str, read_as_data: int | None = None) -> None:
    """Raise ``DataError`` quoting the first :data:`MAX_REPORTED_ROWS` rows of ``bad`` (columns
    ``line`` and ``text``), each cut to :data:`MAX_QUOTED_CHARS`; ``read_as_data``: the number of
    the file's first line when it was read as a data row, not a header."""
    if bad.is_empty():
        return
    shown = "\n".join(
        f"  line {row['line']}: {quote(row['text'])}" for row in bad.head(MAX_REPORTED_ROWS).iter_rows(named=True)
    )
    more = f"\n  ... and {bad.height - MAX_REPORTED_ROWS} more" if bad.height > MAX_REPORTED_ROWS else ""
    first = bad.row(0, named=True)
    note = ""
    if separator := _LINE_BREAKING.search(first["text"]):
        note = (f"\nLine {first['line']} holds U+{ord(separator.group()):04X}, which some programs take as "
                "a line end; here lines end in LF or CRLF only: replace it by a line feed if it ends a row.")
    if read_as_data is not None and first["line"] == read_as_data:
        note += (f"\nLine {read_as_data} is read as a data row: a header is three names of letters and '_' "
                 "(user_id,item_id,timestamp).")
    raise DataError(
        f"{path}: {bad.height} malformed row(s), {what}:\n{shown}{more}{note}\n"
        "Fix or remove these rows and rerun."
    )


# An RFC 4180 record: fields either quoted whole ("..." with "" for a quote) or free of quotes.
_FIELD = r'(?:"[^"]*(?:""[^"]*)*"|[^",\n]*)'
_RECORD = re.compile(rf"{_FIELD}(?:,{_FIELD})*")
# A quote after spaces at a field's start: meant to open the field, but part of it.
_SPACED_QUOTE = re.compile(r'(?:^|,)[ \t]+"')
# Control characters a title row may not hold (C1 is refused for the whole file): C0 but the
# tab and the line feed (which a quoted title may hold), and DEL.
_TITLE_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")
_QUOTING = ('a title with a comma or a quote is quoted whole, the quote right after the comma, and a '
            'quote inside it is written "" (12,"Skillet, 12 inch"; 12,"the ""best"" pan")')


def read_titles(path: Path, item_ids: Collection[str] = ()) -> dict[str, str]:
    """Read the title file: RFC 4180 CSV, no header, rows ``id,title`` (a title with a comma or
    a quote is quoted; a quoted one may span lines); blank lines are skipped.

    Returns ``{item_id: title}``, the id and the title as written (surrounding spaces removed).
    Each row is read exactly as written or refused (``DataError`` with the line, a short quote
    and the fix): a row that is not two fields, a quote that does not enclose a whole field, a
    quote never closed (``item_ids``, the interactions' items, help to name the line it
    swallowed), a control character but a tab (and a line break inside a quoted title), an
    empty id, an id given two different titles (both lines named), and whatever
    :func:`read_table_text` refuses. The last line is read like any other, with or without a
    final line feed. A row repeated exactly (same id and title) is dropped and counted in the log.
    """
    if not path.is_file():
        raise DataError(f"title file {path} does not exist")
    text = read_table_text(path, "the title file")
    lines = text.split("\n")  # as the csv reader counts them (its line_num): no CR is left
    titles: dict[str, str] = {}
    first_line: dict[str, int] = {}
    repeated: list[int] = []
    known = set(item_ids)
    row_like: list[tuple[int, int]] = []  # (first line of a multi-line title, a later line that looks like a row)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    end = 0
    while True:
        start = end + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            raise _quote_error(path, lines, start, reader.line_num, known, str(error)) from None
        end = reader.line_num
        record = "\n".join(lines[start - 1 : end])
        if not record.strip():
            continue
        if problem := _title_row_problem(row, record):
            raise DataError(f"{path}, line {start}: {problem}")
        item_id, title = row[0].strip(), row[1].strip()
        if item_id in titles:
            if titles[item_id] != title:
                raise DataError(
                    f"{path}, line {start}: item {item_id!r} has a second title row with a different title "
                    f"({quote(lines[start - 1])}; line {first_line[item_id]} gives it {quote(titles[item_id])}); "
                    "keep one of the two rows and rerun"
                )
            repeated.append(start)
            continue
        titles[item_id] = title
        first_line[item_id] = start
        if end > start and (inner := next(
                (n for n in range(start + 1, end + 1) if _looks_like_row(lines[n - 1], known)), None)):
            row_like.append((start, inner))
    if row_like:  # valid CSV, read as written; but a quote left open reads the same way
        start, inner = row_like[0]
        log.warning("%s: %d quoted title(s) span lines that look like rows of their own, e.g. the title "
                    "opened on line %d holds line %d, %s; if a quote was left open there, close it",
                    path, len(row_like), start, inner, quote(lines[inner - 1]))
    if repeated:
        log.warning("%s: dropped %d title row(s) that repeat an earlier row exactly (same id and title), "
                    "e.g. line(s) %s", path, len(repeated), ", ".join(map(str, repeated[:MAX_REPORTED_ROWS])))
    return titles


def _title_row_problem(row: list[str], record: str) -> str | None:
    """Why the title row ``row``, read from the text ``record`` (its lines joined), is refused, or None."""
    shown = quote(record.partition("\n")[0])
    if control := _TITLE_CONTROL.search(record):
        return (f"control character U+{ord(control.group()):04X} in {shown}; remove it (a title may hold a "
                "tab, and line breaks inside quotes, but no other control character)")
    if not _RECORD.fullmatch(record):
        spaced = " (a space before the opening quote makes the quote part of the field)" if _SPACED_QUOTE.search(
            record) else ""
        return f"a quote that does not enclose a whole field, in {shown}{spaced}; {_QUOTING}"
    if len(row) != 2:
        return (f"expected 2 fields id,title, got {len(row)}, in {shown}; {_QUOTING}; an empty title is "
                "written '12,'; a row cut short (e.g. the file's last line) is completed or removed")
    if not row[0].strip():
        return f"the item id is empty (expected rows 'id,title' with no header), in {shown}"
    return None


def _looks_like_row(line: str, known: set[str]) -> bool:
    """Whether ``line`` starts like a title row: an integer id, or a known item id, then a comma."""
    if _TITLE_ROW_START.match(line):
        return True
    head, comma, _ = line.partition(",")
    return bool(comma) and head.strip().strip('"') in known


def _quote_error(path: Path, lines: list[str], start: int, end: int, known: set[str], reason: str) -> DataError:
    """The error for a row from line ``start`` the csv reader could not read up to line ``end``
    (``reason``, its message): a quote opened on line ``start`` and never closed, or closed in
    the middle of a field. A quoted title may span lines, so a swallowed row is only named."""
    end = min(max(end, start), len(lines))
    swallowed = next((n for n in range(start + 1, end + 1) if _looks_like_row(lines[n - 1], known)), None)
    fix = 'close the quote (a quote inside a quoted title is written "") or remove it, and rerun'
    if swallowed is not None:
        return DataError(
            f"{path}, line {start}: the quote that opens this row is never closed, so the lines after it "
            f"were read into it (line {swallowed}, {quote(lines[swallowed - 1])}, is a row of its own); {fix}"
        )
    if "end of data" in reason:
        return DataError(
            f"{path}, line {start}: the quote that opens this row, {quote(lines[start - 1])}, is never closed "
            f"(it runs to the end of the file{', line ' + str(end) if end > start else ''}); {fix}"
        )
    if end == start:
        return DataError(f"{path}, line {start}: a quote that does not enclose a whole field, in "
                         f"{quote(lines[start - 1])}; {_QUOTING}")
    return DataError(
        f"{path}, line {start}: the quoted field that opens on this line, {quote(lines[start - 1])}, is "
        f"closed on line {end} in the middle of a field ({quote(lines[end - 1])}; {reason}); {fix}"
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
