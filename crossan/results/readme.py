"""``crossan readme``: the README's demo numbers, written from ``results/`` and checked against it.

README.md quotes the demo's tables between marker comments, each block exactly the file the
workflow wrote (framed by one blank line each side, so Markdown renders it)::

    <!-- demo:table3 -->

    **Table 3** (demo): ...      <- results/demo/tables/table3.md, verbatim
    ...

    <!-- /demo:table3 -->

A block is named after a table (``table1``, ``table3``, ... under ``tables/``; ``tableB1``, ...
under ``beyond/``) or a list of findings (``findings``, ``findings-beyond``): sentences
computed from the tables' CSVs that say what the numbers show (:mod:`crossan.results.findings`),
so that no conclusion about the demo is typed by hand. The measured columns (time per epoch,
peak memory) are left out of the quoted tables: they change from run to run, so a README that
quoted them would always disagree with a fresh run.

``crossan readme --results results/demo --readme README.md`` rewrites every block from the
results folder; with ``--check`` it writes nothing and exits 1, printing a unified diff, when
the README and the results disagree. Either way a malformed, unclosed, unknown or duplicated
marker, a block of :data:`README_BLOCKS` missing from the README, or a table missing from the
results is an error that names it.

Reads only the ``.md`` and ``.csv`` files the workflow writes, with the standard library (no
torch, no polars, no numpy): ``crossan readme --check`` takes well under a second.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from crossan.atomic import write_text_atomic
from crossan.errors import CrossanError
from crossan.results.findings import FINDINGS, MEASURED_COLUMNS, Results
from crossan.results.plan import BEYOND_TABLES, TABLES

OPEN = re.compile(r"^<!-- demo:(?P<name>[A-Za-z0-9_-]+) -->$")
CLOSE = re.compile(r"^<!-- /demo:(?P<name>[A-Za-z0-9_-]+) -->$")
MARKER_LIKE = re.compile(r"^\s*<!--\s*/?\s*demo:")  # a line meant as a marker, well-formed or not
WRAP = 100  # findings' line width in the README source


# The blocks README.md must hold (in its order): the demo's tables and what they show.
README_BLOCKS: tuple[str, ...] = ("table1", "table3", "table4", "table5", "table8", "findings",
                                  "tableB1", "tableB2", "tableB3", "findings-beyond")


def findings_markdown(name: str, results: Results) -> str:
    """Block ``name``'s findings as a Markdown list, one wrapped item per finding."""
    items = []
    for finding in FINDINGS[name]:
        items.append(textwrap.fill(finding(results), WRAP, initial_indent="- ", subsequent_indent="  ",
                                   break_long_words=False, break_on_hyphens=False))
    return "\n".join(items) + "\n"


def block_content(name: str, results: Results) -> str:
    """What block ``name`` holds: the table's Markdown file verbatim without its measured
    columns (:data:`~crossan.results.findings.MEASURED_COLUMNS`), or the findings."""
    if name in FINDINGS:
        return findings_markdown(name, results)
    return without_columns(results.markdown(name), MEASURED_COLUMNS.get(name, ()))


def without_columns(markdown: str, columns: Sequence[str]) -> str:
    """``markdown`` with the columns headed ``columns`` removed from its table (the lines that
    start with ``|``); every other line as it is."""
    if not columns:
        return markdown
    lines, drop = markdown.split("\n"), None
    for number, line in enumerate(lines):
        if not line.startswith("|"):
            continue
        cells = line.strip().strip("|").split("|")
        if drop is None:  # the header row
            drop = {i for i, cell in enumerate(cells) if cell.strip() in columns}
            if len(drop) != len(columns):
                raise CrossanError(f"the table has no column {', '.join(c for c in columns if c not in line)}")
        lines[number] = "|" + "|".join(cell for i, cell in enumerate(cells) if i not in drop) + "|"
    return "\n".join(lines)


# ====================================================================== the README's blocks


@dataclass(frozen=True)
class Block:
    """A generated block of the README: its name and the line numbers (0-based) of its markers."""

    name: str
    start: int
    end: int


def find_blocks(text: str, source: str = "README.md") -> list[Block]:
    """Every ``<!-- demo:NAME -->`` ... ``<!-- /demo:NAME -->`` block; :class:`CrossanError` for
    a malformed, unclosed, stray, nested, unknown or repeated marker (with its line number)."""
    blocks: list[Block] = []
    open_name, open_line = None, -1
    for number, line in enumerate(text.split("\n")):
        opening, closing = OPEN.match(line), CLOSE.match(line)
        where = f"{source}:{number + 1}"
        if not (opening or closing):
            if MARKER_LIKE.match(line):
                raise CrossanError(f"{where}: malformed marker {line.strip()!r}; write <!-- demo:NAME --> "
                                   "and <!-- /demo:NAME --> alone on their lines")
            continue
        if opening:
            name = opening["name"]
            if open_name is not None:
                raise CrossanError(f"{where}: <!-- demo:{name} --> opens inside block {open_name!r} "
                                   f"(opened at line {open_line + 1}, not closed)")
            if name not in (*FINDINGS, *TABLES, *BEYOND_TABLES):
                raise CrossanError(f"{where}: unknown block {name!r}: a table ({', '.join(TABLES + BEYOND_TABLES)}) or "
                                   f"one of {', '.join(FINDINGS)}")
            if any(block.name == name for block in blocks):
                raise CrossanError(f"{where}: block {name!r} appears twice")
            open_name, open_line = name, number
        else:
            name = closing["name"]
            if open_name != name:
                raise CrossanError(f"{where}: <!-- /demo:{name} --> closes "
                                   + (f"block {open_name!r}" if open_name else "no open block"))
            blocks.append(Block(name, open_line, number))
            open_name = None
    if open_name is not None:
        raise CrossanError(f"{source}:{open_line + 1}: block {open_name!r} is never closed "
                           f"(add <!-- /demo:{open_name} -->)")
    return blocks


def render_block(name: str, content: str) -> list[str]:
    """A block's lines: its markers around ``content``, one blank line each side."""
    return [f"<!-- demo:{name} -->", "", *content.rstrip("\n").split("\n"), "", f"<!-- /demo:{name} -->"]


def regenerate(text: str, results: Results, require: Sequence[str] = README_BLOCKS,
               source: str = "README.md") -> tuple[str, list[str]]:
    """``text`` with every block rewritten from ``results``, and the names of the blocks that
    changed; :class:`CrossanError` when a block of ``require`` is missing."""
    blocks = find_blocks(text, source)
    missing = [name for name in require if name not in {block.name for block in blocks}]
    if missing:
        raise CrossanError(f"{source} lacks the block{'s' if len(missing) > 1 else ''} "
                           f"{', '.join(missing)}: add <!-- demo:NAME --> and <!-- /demo:NAME --> "
                           "where each belongs, then run `crossan readme` to fill them")
    lines = text.split("\n")
    out: list[str] = []
    changed: list[str] = []
    previous = 0
    for block in blocks:
        out += lines[previous:block.start]
        new = render_block(block.name, block_content(block.name, results))
        if new != lines[block.start:block.end + 1]:
            changed.append(block.name)
        out += new
        previous = block.end + 1
    out += lines[previous:]
    return "\n".join(out), changed


# ====================================================================== command line


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    readme = subparsers.add_parser(
        "readme", help="write README.md's demo tables and findings from results/ (--check: compare only)",
        description="Rewrite every <!-- demo:NAME --> block of the README from a results folder: a table's "
        "Markdown file verbatim, or findings computed from the tables' CSVs. With --check, write nothing and "
        "exit 1 with a diff when they disagree.",
    )
    readme.add_argument("--results", type=Path, default=Path("results/demo"),
                        help="the dataset's results folder (default results/demo)")
    readme.add_argument("--readme", type=Path, default=Path("README.md"))
    readme.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 and print a diff when the README and the results disagree")
    readme.set_defaults(handler="crossan.results.readme:readme_cli")


def readme_cli(args: argparse.Namespace) -> int:
    """Regenerate (or, with ``--check``, compare) the README's blocks; returns the exit status."""
    if not args.readme.is_file():
        raise CrossanError(f"{args.readme} does not exist")
    if not args.results.is_dir():
        raise CrossanError(f"{args.results} is not a folder: run the demo first (`snakemake --cores 2 all`)")
    text = args.readme.read_text(encoding="utf-8")
    new, changed = regenerate(text, Results(args.results), source=str(args.readme))
    if args.check:
        if new == text:
            print(f"{args.readme} agrees with {args.results}")
            return 0
        sys.stdout.writelines(difflib.unified_diff(
            text.splitlines(keepends=True), new.splitlines(keepends=True),
            fromfile=str(args.readme), tofile=f"{args.readme} from {args.results}"))
        print(f"crossan readme: {args.readme} disagrees with {args.results} in {', '.join(changed)}; run "
              f"`crossan readme --results {args.results} --readme {args.readme}` to rewrite them "
              "(numbers differ slightly between CPU types: compare with a run on the machine that wrote them)",
              file=sys.stderr)
        return 1
    if new == text:
        print(f"{args.readme} already agrees with {args.results}")
        return 0
    write_text_atomic(args.readme, new)
    print(f"rewrote {', '.join(changed)} in {args.readme} from {args.results}")
    return 0
