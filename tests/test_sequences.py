"""Interactions -> sequences: values checked against hand-worked cases."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from crossan.data.sequences import prepare_sequences, read_interactions, read_titles, write_item_titles
from crossan.errors import DataError

# user 1: six rows, one exact duplicate, timestamps out of order; user 2: too short;
# user 3: six items; user 4: a tie at timestamp 7 (file order decides).
PAIRS = """user,item,timestamp
1,10,5
1,11,3
2,10,1
1,12,4
1,13,1
1,14,2
1,14,2
2,11,2
3,20,1
3,21,2
3,22,3
3,23,4
3,24,5
3,25,6
4,31,7
4,30,7
4,10,1
4,11,2
4,12,3
"""
TITLES = '10,ten\n11,"eleven, twelve"\n12,\n13,thirteen\n14,x\n20,a\n21,b\n22,c\n23,d\n24,e\n30,p\n31,q\n'


@pytest.fixture
def outputs(tmp_path: Path) -> tuple[dict, Path]:
    (tmp_path / "pairs.csv").write_text(PAIRS)
    (tmp_path / "titles.csv").write_text(TITLES)
    prepare_sequences(tmp_path / "pairs.csv", tmp_path / "titles.csv", tmp_path / "out", 5, 4)
    return json.loads((tmp_path / "out" / "stats.json").read_text(encoding="utf-8")), tmp_path / "out"


def test_stats(outputs: tuple[dict, Path]) -> None:
    stats, out = outputs
    assert stats["users"] == 3  # user 2 has two interactions
    assert stats["users_dropped_short"] == 1
    assert stats["duplicate_rows_dropped"] == 1
    assert stats["raw_rows"] == 19
    assert stats["interactions"] == 5 + 6 + 5  # before truncation
    assert stats["interactions_kept"] == 4 + 4 + 4  # last 4 per user
    assert stats["items"] == 5 + 6 + 2  # 10..14, 20..25, 30, 31 (10..12 shared with user 1)
    assert stats["repeat_target_users"] == {"valid": 0, "test": 0}
    # Dense ids 13->1, 14->2, 11->3, 12->4, 10->5, 20..25->6..11, 31->12, 30->13; train lists
    # [14, 11], [22, 23], [11, 12]: counts id 3 -> 2, ids 2, 4, 8, 9 -> 1, the other 8 -> 0.
    # 6 interactions, a third is 2: head >= 2 (id 3 holds 2); the tail needs the count-1 ids
    # (0 + 4 >= 2) but keeps only the lowest of the three distinct counts: tail <= 0 (8 ids),
    # torso = count 1 (ids 2, 4, 8, 9). (Terciles over items gave head >= 1, no torso.)
    buckets = stats["popularity_buckets"]
    assert (buckets["head_min_count"], buckets["tail_max_count"]) == (2, 0)
    assert buckets["items"] == {"head": 1, "torso": 4, "tail": 8}
    assert buckets["interactions"] == {"head": 2, "torso": 4, "tail": 0}
    assert buckets["empty_buckets"] == []
    assert buckets["valid_targets"] == {"head": 0, "torso": 1, "tail": 2}  # 12 (id 4); 24, 31
    assert buckets["test_targets"] == {"head": 0, "torso": 0, "tail": 3}  # 10, 25, 30
    titles = json.loads((out / "titles.json").read_text(encoding="utf-8"))  # the title step's counts
    assert titles == {"items": 13, "items_without_title": 1, "empty_titles": 1}  # item 25; item 12


def test_repeat_targets_are_counted_per_split(tmp_path: Path) -> None:
    # user 1: 1 2 3 1 2 -> valid target 1 repeats, test target 2 repeats
    # user 2: 4 5 6 7 4 -> valid target 7 is new, test target 4 repeats
    # user 3: 8 9 10 11 12 -> no repeat
    rows = [(1, i, t) for t, i in enumerate([1, 2, 3, 1, 2])]
    rows += [(2, i, t) for t, i in enumerate([4, 5, 6, 7, 4])]
    rows += [(3, i, t) for t, i in enumerate([8, 9, 10, 11, 12])]
    (tmp_path / "pairs.csv").write_text("user,item,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows))
    (tmp_path / "titles.csv").write_text("".join(f"{i},t{i}\n" for i in range(1, 13)))
    stats = prepare_sequences(tmp_path / "pairs.csv", tmp_path / "titles.csv", tmp_path / "out")
    assert stats.repeat_target_users == {"valid": 1, "test": 2}
    written = json.loads((tmp_path / "out" / "stats.json").read_text(encoding="utf-8"))
    assert written["repeat_target_users"] == {"valid": 1, "test": 2}
    assert written["items"] == 12 and written["interactions"] == 15


def test_dense_ids_follow_first_appearance_in_time_order(outputs: tuple[dict, Path]) -> None:
    _, out = outputs
    items = pl.read_csv(out / "items.csv")
    # user 1 in time order: 13, 14, 11, 12, 10; then user 3: 20..25; then user 4: 31, 30.
    assert items["item_id"].to_list() == [13, 14, 11, 12, 10, 20, 21, 22, 23, 24, 25, 31, 30]
    assert items["dense_id"].to_list() == list(range(1, 14))
    assert items.filter(pl.col("item_id") == 11)["title"].item() == "eleven, twelve"
    assert items.filter(pl.col("item_id") == 25)["title"].item() in ("", None)
    # the ids alone, from the interactions alone: what media sampling reads
    assert pl.read_csv(out / "item_ids.csv").to_dicts() == items.select("dense_id", "item_id").to_dicts()


def test_the_titles_step_reads_only_the_ids_and_the_title_file(tmp_path: Path) -> None:
    (tmp_path / "item_ids.csv").write_text('"dense_id","item_id"\n1,12\n2,7\n3,99\n')
    (tmp_path / "titles.csv").write_text('7,"seven, eight"\n12,\n')
    stats = write_item_titles(tmp_path / "item_ids.csv", tmp_path / "titles.csv", tmp_path / "items.csv")
    assert (stats.items, stats.items_without_title, stats.empty_titles) == (3, 1, 1)  # 99; 12
    assert (tmp_path / "items.csv").read_text() == '"dense_id","item_id","title"\n1,12,""\n2,7,"seven, eight"\n3,99,""\n'
    (tmp_path / "item_ids.csv").write_text("dense_id,item_id\n1,12\n3,7\n")
    with pytest.raises(DataError, match=r"item_ids.csv:3: expected dense_id 2 and an item_id, got '3','7'"):
        write_item_titles(tmp_path / "item_ids.csv", tmp_path / "titles.csv", tmp_path / "items.csv")


def test_truncation_and_leave_one_out(outputs: tuple[dict, Path]) -> None:
    _, out = outputs
    sequences = pl.read_parquet(out / "sequences.parquet")
    by_user = dict(zip(sequences["user"].to_list(), sequences["items"].to_list()))
    # user 1: 13,14,11,12,10 -> dense 1,2,3,4,5 -> last four 2,3,4,5
    assert by_user[1] == [2, 3, 4, 5]
    # user 4: 10,11,12 then the tie 31 (line 16) before 30 (line 17) -> 5,3,4,12,13 -> 3,4,12,13
    assert by_user[4] == [3, 4, 12, 13]
    train = pl.read_parquet(out / "train.parquet")
    valid = pl.read_parquet(out / "valid.parquet")
    test = pl.read_parquet(out / "test.parquet")
    row = lambda frame: frame.filter(pl.col("user") == 1).row(0, named=True)  # noqa: E731
    assert row(train)["items"] == [2, 3]
    assert (row(valid)["history"], row(valid)["target"]) == ([2, 3], 4)
    assert (row(test)["history"], row(test)["target"]) == ([2, 3, 4], 5)


def test_headerless_pairs_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("1,2,3\n4,5,6\n")
    frame, raw_rows = read_interactions(path)
    assert raw_rows == 2
    assert frame["item"].to_list() == [2, 5]


@pytest.mark.parametrize(
    ("body", "line", "why"),
    [
        ("user,item,timestamp\n1,2,3\n1,2,x\n", "line 3: '1,2,x'", "timestamps must be integers"),
        ("user,item,timestamp\n1,2,3\n\n1,2\n", "line 4: '1,2'", "expected 3 fields"),
        ("user,item,timestamp\n1,2,3,4\n", "line 2: '1,2,3,4'", "expected 3 fields"),
        ("user,item,timestamp\n1,,4\n", "line 2: '1,,4'", "item ids must be usable as file names (the first: empty)"),
        ("1,2,3\n4,5,-60\n", "line 2: '4,5,-60'", "timestamps must be integers >= 0"),
        # a form feed or U+2028 inside a line does not end it: later line numbers stay right
        ("1,2,3\f\n4,5,6\u2028\n7,8,x\n", "line 3: '7,8,x'", "timestamps must be integers"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path: Path, body: str, line: str, why: str) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text(body)
    with pytest.raises(DataError) as error:
        read_interactions(path)
    assert str(path) in str(error.value)
    assert line in str(error.value)
    assert why in str(error.value)


def test_a_zero_byte_interaction_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="the interaction file is empty"):
        read_interactions(path)


@pytest.mark.parametrize("reader", [read_interactions, read_titles])
def test_non_utf8_files_name_the_line_and_byte(tmp_path: Path, reader) -> None:
    path = tmp_path / "table.csv"
    path.write_bytes(b"1,2,3\n" + "4,caf\u00e9,6\n".encode("latin-1"))
    with pytest.raises(DataError) as error:
        reader(path)
    message = str(error.value)
    assert f"{path}, line 2, byte 6: b'\\xe9' is not UTF-8" in message and "iconv" in message


def test_an_empty_title_id_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "titles.csv"
    path.write_text("1,a\nabc,b\n ,c\n")
    with pytest.raises(DataError, match=r"titles.csv, line 3: the item id is empty"):
        read_titles(path)
    path.write_text("1,a\nabc,b\n")
    assert read_titles(path) == {"1": "a", "abc": "b"}  # ids are text, as written


@pytest.mark.parametrize(
    "body",
    [
        '1,a\n2,"b, c\n3,d\n\n4,e\n',  # never closed: every later row joins item 2's title
        '1,a\n2,"b, c\n3,d\n4,"e"\n',  # the next quote "closes" it three lines on
    ],
)
def test_an_unclosed_quote_in_a_title_names_its_line(tmp_path: Path, body: str) -> None:
    path = tmp_path / "titles.csv"
    path.write_text(body)
    with pytest.raises(DataError) as error:
        read_titles(path)
    assert str(error.value) == (
        f"{path}, line 2: the quote that opens this row is never closed, so the lines after it "
        "were read into it (line 3, '3,d', is a row of its own); close the quote (a quote "
        'inside a quoted title is written "") or remove it, and rerun'
    )
    # a quoted title may still span lines when no line in it looks like a row
    path.write_text('1,"two\nlines, one title"\n2,b\n')
    assert read_titles(path) == {"1": "two\nlines, one title", "2": "b"}


def test_no_partial_outputs_on_failure(tmp_path: Path) -> None:
    (tmp_path / "pairs.csv").write_text("user,item,timestamp\n1,1,1\n")
    (tmp_path / "titles.csv").write_text("1,a\n")
    with pytest.raises(DataError, match="no user has 5 or more"):
        prepare_sequences(tmp_path / "pairs.csv", tmp_path / "titles.csv", tmp_path / "out")
    assert not (tmp_path / "out" / "stats.json").exists()


# ASIN-like item ids, UUID-like user ids, and "0042": all digits but not canonical, so the item
# column stays text (an integer column would turn it into 42 and look for covers/42.jpg).
STRING_PAIRS = """user,item,timestamp
7f3e-b2,B00XYZ0001,5
7f3e-b2,B00XYZ0002,6
7f3e-b2,0042,7
7f3e-b2,B00XYZ0001,8
7f3e-b2,B00XYZ0003,9
1a2b-c3,B00XYZ0003,1
1a2b-c3,B00XYZ0002,2
1a2b-c3, B00XYZ0004 ,3
1a2b-c3,0042,4
1a2b-c3,B00XYZ0005,5
"""
STRING_TITLES = 'B00XYZ0001,first\nB00XYZ0002,"second, with a comma"\n0042,answer\n42,not item 0042\nB00XYZ0005,\n'


def test_string_ids_are_mapped_to_dense_ids(tmp_path: Path) -> None:
    (tmp_path / "pairs.csv").write_text(STRING_PAIRS)
    (tmp_path / "titles.csv").write_text(STRING_TITLES)
    stats = prepare_sequences(tmp_path / "pairs.csv", tmp_path / "titles.csv", tmp_path / "out", 5, 13)
    assert (stats.users, stats.items) == (2, 6)
    out = tmp_path / "out"
    # users in text order: 1a2b-c3 is user 0; its items first, in time order, get dense ids 1..5
    assert (out / "user_ids.csv").read_text() == '"user_index","user_id"\n0,"1a2b-c3"\n1,"7f3e-b2"\n'
    assert (out / "item_ids.csv").read_text() == (
        '"dense_id","item_id"\n1,"B00XYZ0003"\n2,"B00XYZ0002"\n3,"B00XYZ0004"\n4,"0042"\n5,"B00XYZ0005"\n'
        '6,"B00XYZ0001"\n')
    assert (out / "items.csv").read_text() == (
        '"dense_id","item_id","title"\n1,"B00XYZ0003",""\n2,"B00XYZ0002","second, with a comma"\n'
        '3,"B00XYZ0004",""\n4,"0042","answer"\n5,"B00XYZ0005",""\n6,"B00XYZ0001","first"\n')
    test = pl.read_parquet(out / "test.parquet").sort("user_index")
    assert test["user"].to_list() == ["1a2b-c3", "7f3e-b2"]
    assert test["history"].to_list() == [[1, 2, 3, 4], [6, 2, 4, 6]] and test["target"].to_list() == [5, 1]
    titles = json.loads((out / "titles.json").read_text(encoding="utf-8"))
    assert titles == {"items": 6, "items_without_title": 2, "empty_titles": 1}  # 0003, 0004; 0005


def test_integer_ids_stay_integers(tmp_path: Path) -> None:
    (tmp_path / "pairs.csv").write_text(PAIRS)
    frame, _ = read_interactions(tmp_path / "pairs.csv")
    assert frame.schema["user"] == pl.Int64 and frame.schema["item"] == pl.Int64
    (tmp_path / "pairs.csv").write_text(PAIRS.replace("4,12,3", "4,012,3"))
    frame, _ = read_interactions(tmp_path / "pairs.csv")  # 012 is not 12: the ids stay text
    assert frame.schema["user"] == pl.Int64 and frame["item"].to_list()[-1] == "012"


@pytest.mark.parametrize(
    ("row", "why"),
    [
        ("u1,covers/../x,5", "item ids must be usable as file names (the first: contains '/')"),
        ("u1,a\x00b,5", "item ids must be usable as file names (the first: contains '\\x00')"),
        ("u1,..,5", "item ids must be usable as file names (the first: '..' is not a file name)"),
        ('"u1",7,5', "user ids must be usable as file names (the first: contains '\"')"),
        ("u1," + "x" * 201 + ",5", "item ids must be usable as file names (the first: longer than 200 bytes)"),
    ],
)
def test_ids_unusable_as_file_names_name_the_line(tmp_path: Path, row: str, why: str) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text(f"user,item,timestamp\nu1,B001,4\n{row}\n")
    with pytest.raises(DataError) as error:
        read_interactions(path)
    assert str(error.value).startswith(f"{path}: 1 malformed row(s), {why}; an id must be non-empty")
    assert f"line 3: {row!r}" in str(error.value)


def test_an_unclosed_quote_is_found_with_string_ids(tmp_path: Path) -> None:
    path = tmp_path / "titles.csv"
    path.write_text('B001,a\nB002,"b, c\nB003,d\nB004,e\n')
    with pytest.raises(DataError, match=r"line 2: the quote that opens this row is never closed.*line 3, 'B003,d'"):
        read_titles(path, ["B001", "B002", "B003", "B004"])
    # without the item ids no line is named, but a quote open at the end of the file is refused
    with pytest.raises(DataError, match=r"line 2: the quote that opens this row, 'B002,\"b, c', is never closed"):
        read_titles(path)


def test_the_titles_step_without_a_title_file_gives_empty_titles(tmp_path: Path) -> None:
    (tmp_path / "item_ids.csv").write_text('"dense_id","item_id"\n1,"B2"\n2,"B1"\n')
    stats = write_item_titles(tmp_path / "item_ids.csv", None, tmp_path / "items.csv")
    assert (stats.items, stats.items_without_title) == (2, 2)
    assert (tmp_path / "items.csv").read_text() == '"dense_id","item_id","title"\n1,"B2",""\n2,"B1",""\n'


def test_runs_bucket_with_the_thresholds_of_stats_json(outputs: tuple[dict, Path]) -> None:
    """The training code recomputes the buckets from its loaded training split: same thresholds."""
    import numpy as np

    from crossan.train.inputs import load_sequences
    from crossan.train.outputs import test_by_popularity

    stats, out = outputs
    data = load_sequences(out)
    per_user = {"HR@10": np.ones(len(data.test)), "NDCG@10": np.ones(len(data.test))}
    by_pop = test_by_popularity(data, per_user)
    for key in ("by", "head_min_count", "tail_max_count", "items", "interactions", "empty_buckets"):
        assert by_pop[key] == stats["popularity_buckets"][key]
    assert {b: by_pop[b]["users"] for b in ("head", "torso", "tail")} == stats["popularity_buckets"]["test_targets"]


@pytest.mark.parametrize("catalogue", ["history", "window"])
def test_the_catalogue_rule_on_hand_made_users(tmp_path: Path, catalogue: str) -> None:
    (tmp_path / "pairs.csv").write_text(PAIRS)
    (tmp_path / "titles.csv").write_text(TITLES)
    stats = prepare_sequences(tmp_path / "pairs.csv", tmp_path / "titles.csv", tmp_path / "out", 5, 4, catalogue)
    ids = pl.read_csv(tmp_path / "out" / "item_ids.csv")
    sequences = pl.read_parquet(tmp_path / "out" / "sequences.parquet")["items"].to_list()
    # last 4 per user (time order): user 1 14 11 12 10 (13 earlier); user 3 22 23 24 25 (20, 21
    # earlier); user 4 11 12 31 30 (10 earlier, but in user 1's window)
    if catalogue == "history":  # every item of the full histories, first appearance in time order
        assert ids["item_id"].to_list() == [13, 14, 11, 12, 10, 20, 21, 22, 23, 24, 25, 31, 30]
        assert sequences == [[2, 3, 4, 5], [8, 9, 10, 11], [3, 4, 12, 13]]
    else:  # IISAN's preprocess.py: only items of some user's last max_items
        assert ids["item_id"].to_list() == [14, 11, 12, 10, 22, 23, 24, 25, 31, 30]
        assert sequences == [[1, 2, 3, 4], [5, 6, 7, 8], [2, 3, 9, 10]]
        assert {i for seq in sequences for i in seq} == set(ids["dense_id"].to_list())  # each item ranked is seen
    assert stats.items == ids.height == (13 if catalogue == "history" else 10)
    assert stats.catalogue == catalogue and stats.interactions == 16 and stats.interactions_kept == 12
    saved = json.loads((tmp_path / "out" / "stats.json").read_text(encoding="utf-8"))
    assert saved["catalogue"] == catalogue and saved["items"] == stats.items
    assert pl.read_csv(tmp_path / "out" / "items.csv")["item_id"].to_list() == ids["item_id"].to_list()


def test_the_catalogue_setting_schema_cli_and_workflow_agree() -> None:
    from crossan.cli import build_parser
    from crossan.config import load_schema, validate_config
    from crossan.data.sequences import CATALOGUES, build_sequences
    from crossan.errors import ConfigError

    spec = load_schema()["properties"]["sequences"]["properties"]["catalogue"]
    assert tuple(spec["enum"]) == CATALOGUES and spec["default"] == CATALOGUES[0] == "history"
    config = validate_config({"datasets": ["d"], "catalog": {"d": {"kind": "demo"}}})
    assert config["sequences"]["catalogue"] == "history"  # the paper's Table 2 counts
    with pytest.raises(ConfigError, match="catalogue"):
        validate_config({"datasets": ["d"], "catalog": {"d": {"kind": "demo"}}, "sequences": {"catalogue": "all"}})
    parser = build_parser()
    args = parser.parse_args(["sequences", "--dataset-json", "m.json", "--out", "o", "--catalogue", "window"])
    assert args.catalogue == "window"
    assert parser.parse_args(["sequences", "--dataset-json", "m.json", "--out", "o"]).catalogue == "history"
    with pytest.raises(ValueError, match="catalogue must be one of history, window"):
        build_sequences(read_interactions_frame(), catalogue="all")
    rule = (Path(__file__).parents[1] / "workflow" / "rules" / "data.smk").read_text(encoding="utf-8")
    assert 'catalogue=config["sequences"]["catalogue"]' in rule and "--catalogue {params.catalogue}" in rule


def read_interactions_frame() -> pl.DataFrame:
    return pl.DataFrame({"user": [1], "item": [1], "timestamp": [1], "line": [2]})


@pytest.mark.parametrize(("user_type", "users_in_order"), [(pl.Int64, [2, 10]), (pl.String, ["10", "2"])])
def test_dense_ids_follow_user_id_order_then_time_not_global_time(user_type, users_in_order) -> None:
    """Items are numbered by first appearance reading user by user in id order (numeric for
    integer ids, text order otherwise), each user's interactions in time order: user 10 acts
    first in time, yet with integer ids user 2's items are numbered first."""
    from crossan.data.sequences import build_sequences

    rows = [(10, "A", 1), (10, "B", 2), (10, "C", 3), (10, "D", 4), (10, "E", 5),
            (2, "E", 100), (2, "F", 101), (2, "G", 102), (2, "H", 103), (2, "A", 104)]
    frame = pl.DataFrame({"user": [u for u, _, _ in rows], "item": [i for _, i, _ in rows],
                          "timestamp": [t for _, _, t in rows], "line": list(range(1, len(rows) + 1))})
    sequences, items, _ = build_sequences(frame.with_columns(pl.col("user").cast(user_type)), 5, 13)
    assert sequences["user"].to_list() == users_in_order
    assert sequences["user_index"].to_list() == [0, 1]
    expected = "EFGHABCD" if user_type == pl.Int64 else "ABCDEFGH"
    assert items["item"].to_list() == list(expected)
    assert items["dense_id"].to_list() == list(range(1, 9))
