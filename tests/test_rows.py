"""Issue 27, classes 7 and 8: every field of a raw table is read as written or its row is refused
with the file, the line, a short quote and the fix.

Class 7 (rows not read as written): a third field in a title row; a quote inside an unquoted
title; C1 control characters (Windows-1252 decoded as Latin-1) and the iconv source that fixes
them; other control characters; a valid multi-line title whose next line starts like a row; a
file cut inside its last line; a duplicate title row. Class 8 (messages): line ends of another
convention quoted whole; a float or a date as the first row's timestamp; the timestamp's unit.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from crossan.data.readers import read_interactions, read_titles
from crossan.errors import DataError

README = Path(__file__).parents[1] / "README.md"
# A message quotes at most a few rows, each cut to MAX_QUOTED_CHARS characters.
SHORT_MESSAGE = 1500


def refusal(reader, path: Path, body: str | bytes) -> str:
    """The message ``reader`` raises for a file holding ``body``."""
    if isinstance(body, str):
        path.write_bytes(body.encode("utf-8"))
    else:
        path.write_bytes(body)
    with pytest.raises(DataError) as error:
        reader(path)
    return str(error.value)


# --- class 7: rows not read as written ------------------------------------------------------------

@pytest.mark.parametrize("row", ['2, "Skillet, 12 inch"', "2,Skillet, 12 inch"])
def test_a_third_field_in_a_title_row_is_refused(tmp_path: Path, row: str) -> None:
    """Before: the third field was appended to the title (``"Skillet, 12 inch"`` with its quotes,
    or the unquoted comma swallowed)."""
    path = tmp_path / "titles.csv"
    message = refusal(read_titles, path, f"1,a\n{row}\n3,c\n")
    assert message.startswith(f"{path}, line 2: ")
    assert repr(row) in message
    assert '12,"Skillet, 12 inch"' in message  # the fix: quote the whole title


def test_a_quote_inside_an_unquoted_title_is_refused(tmp_path: Path) -> None:
    """A bare quote is ambiguous (an inch mark, or a quote meant to open the field): the row is
    refused with the quoting rule instead of being read one way silently."""
    path = tmp_path / "titles.csv"
    message = refusal(read_titles, path, '1,a\n2,12" pizza\n')
    assert message.startswith(f"{path}, line 2: a quote that does not enclose a whole field, in '2,12\" pizza'")
    assert '12,"the ""best"" pan"' in message
    path.write_text('1,a\n2,"12"" pizza"\n')
    assert read_titles(path) == {"1": "a", "2": '12" pizza'}


@pytest.mark.parametrize("reader", [read_titles, read_interactions])
def test_c1_control_characters_name_the_windows_1252_conversion(tmp_path: Path, reader) -> None:
    """``iconv -f latin1`` of a Windows-1252 file turns curly quotes and the euro sign into C1
    control characters, which were accepted in titles and ids."""
    path = tmp_path / "table.csv"
    mangled = "\u201cBest\u201d pan \u20ac9".encode("cp1252").decode("latin-1")  # '\x93Best\x94 pan \x809'
    body = f"1,a,5\n2,{mangled},6\n" if reader is read_interactions else f"1,a\n2,{mangled}\n"
    message = refusal(reader, path, body)
    assert message.startswith(f"{path}, line 2: control character U+0093")
    assert "iconv -f WINDOWS-1252 -t UTF-8" in message
    assert "iconv -f UTF-8 -t LATIN1 table.csv | iconv -f WINDOWS-1252 -t UTF-8 > fixed.csv" in message


def test_a_windows_1252_file_is_told_to_convert_from_windows_1252(tmp_path: Path) -> None:
    """The old advice, ``iconv -f latin1``, is what produces the C1 characters above."""
    path = tmp_path / "titles.csv"
    message = refusal(read_titles, path, "1,\u201cBest\u201d pan\n".encode("cp1252"))
    assert message.startswith(f"{path}, line 1, byte 3: b'\\x93' is not UTF-8")
    assert "iconv -f WINDOWS-1252 -t UTF-8 titles.csv > fixed.csv" in message
    assert "-f latin1" not in message


@pytest.mark.parametrize("control", ["\x01", "\x1b", "\x7f", "\x0c"])
def test_control_characters_in_a_title_are_refused(tmp_path: Path, control: str) -> None:
    path = tmp_path / "titles.csv"
    message = refusal(read_titles, path, f"1,a\n2,b{control}c\n")
    row = f"2,b{control}c"
    assert message.startswith(f"{path}, line 2: control character U+{ord(control):04X} in {row!r}")
    path.write_text('1,a\tb\n2,"two\nlines"\n')  # a tab, and a line break inside quotes, are kept
    assert read_titles(path) == {"1": "a\tb", "2": "two\nlines"}


def test_a_quoted_title_whose_next_line_starts_like_a_row_is_read_as_written(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Valid CSV: before, its second line ('2, the sequel') was taken for a row and the quote for
    one never closed. It is read as written, and the log says a quote left open would read the same."""
    path = tmp_path / "titles.csv"
    path.write_text('1,"Top 10\n2, the sequel"\n2,b\r\n')
    with caplog.at_level(logging.WARNING):
        assert read_titles(path) == {"1": "Top 10\n2, the sequel", "2": "b"}
    assert "the title opened on line 1 holds line 2, '2, the sequel\"'" in caplog.text


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ('1,a\n2,"b, c', "the quote that opens this row, '2,\"b, c', is never closed"),  # a quote left open
        ("1,a\n2", "expected 2 fields id,title, got 1, in '2'"),  # the comma and title cut off
    ],
)
def test_a_file_cut_inside_its_last_line_is_refused(tmp_path: Path, body: str, why: str) -> None:
    """Before: a final line without a line feed was read however it ended. The interaction file's
    last line is checked like the others too."""
    path = tmp_path / "titles.csv"
    assert refusal(read_titles, path, body).startswith(f"{path}, line 2: {why}")
    pairs = tmp_path / "pairs.csv"
    assert "line 2: '4,5'" in refusal(read_interactions, pairs, "1,2,3\n4,5")


def test_a_duplicate_title_row_is_refused_or_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Two different titles for one id: refused with both lines (before, the last one won
    silently). The same row twice: dropped and counted in the log."""
    path = tmp_path / "titles.csv"
    message = refusal(read_titles, path, "1,a\n2,b\n 1 ,c\n")
    assert message == (f"{path}, line 3: item '1' has a second title row with a different title (' 1 ,c'; "
                       "line 1 gives it 'a'); keep one of the two rows and rerun")
    path.write_text("1,a\n2,b\n1,a\n")
    with caplog.at_level(logging.WARNING):
        assert read_titles(path) == {"1": "a", "2": "b"}
    assert "dropped 1 title row(s) that repeat an earlier row exactly (same id and title), e.g. line(s) 3" in (
        caplog.text)


# --- class 8: messages that help -------------------------------------------------------------------

@pytest.mark.parametrize(
    ("reader", "row"),
    [(read_interactions, "1,2,3"), (read_titles, "1,a")],
)
def test_lines_ending_in_cr_alone_are_named_with_a_short_quote(tmp_path: Path, reader, row: str) -> None:
    """Before: the whole file was quoted as 'line 1' (megabytes), or, for titles, read silently."""
    path = tmp_path / "table.csv"
    message = refusal(reader, path, f"{row}\r" * 100_000)
    assert message.startswith(f"{path}: the lines end in a carriage return alone (CR")
    assert "tr '\\r' '\\n' < table.csv > fixed.csv" in message and len(message) < SHORT_MESSAGE
    message = refusal(reader, path, f"{row}\n{row}\r{row}\n")  # a stray CR: named by its line
    assert message.startswith(f"{path}, line 2: a carriage return (CR) that is not followed by a line feed")


def test_other_line_ends_and_long_lines_are_quoted_short(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    message = refusal(read_interactions, path, "1,2,3\u2028" * 100_000)
    assert message.startswith(f"{path}: the lines end in U+2028, not LF or CRLF")
    assert "sed 's/\\xe2\\x80\\xa8/\\n/g' pairs.csv > fixed.csv" in message and len(message) < SHORT_MESSAGE
    message = refusal(read_interactions, path, "1,2,3\n" * 3 + "4,5," + "6" * 1_000_000 + "x\n")
    assert "line 4: '4,5,666" in message and "... (1,000,005 characters)" in message
    assert len(message) < SHORT_MESSAGE


@pytest.mark.parametrize("timestamp", ["1.5", "2020-01-01T00:00:00", "1600000000.25"])
def test_a_float_or_a_date_timestamp_without_header_is_named(tmp_path: Path, timestamp: str) -> None:
    """Before: 'expected a header 'user,item,timestamp' or a data row' for line 1."""
    path = tmp_path / "pairs.csv"
    message = refusal(read_interactions, path, f"u1,B001,{timestamp}\nu1,B002,7\n")
    assert message.startswith(f"{path}: 1 malformed row(s), timestamps must be integers")
    assert f"line 1: 'u1,B001,{timestamp}'" in message


def test_the_timestamp_message_names_the_unit_the_readme_does(tmp_path: Path) -> None:
    """Only the order of timestamps counts; MicroLens' (and the demo's) are Unix milliseconds,
    as the README says. Before, the message said 'Unix seconds'."""
    readme = README.read_text(encoding="utf-8").splitlines()
    pairs_row = next(line for line in readme if line.startswith("| `pairs.csv`"))
    assert "Unix milliseconds" in pairs_row
    message = refusal(read_interactions, tmp_path / "pairs.csv", "1,2,3\n4,5,-60\n")
    assert ("timestamps must be integers >= 0 (in any unit, MicroLens' is Unix milliseconds; only their "
            "order counts)") in message
    assert "Unix seconds" not in message
