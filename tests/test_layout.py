"""Raw-layout verification: exactly which items lack a title, cover or video."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import pytest

from crossan.cli import build_parser, handler_of
from crossan.data.layout import (
    DatasetLayout,
    LayoutReport,
    check_declared_parts,
    find_layout,
    load_manifest,
    require_layout,
    verify_layout,
    write_manifest,
)
from crossan.data.raw_state import part_state, write_raw_state
from crossan.data.readers import item_ids
from crossan.errors import ConfigError, DataError

# items 3, 20, 100, 7 (numeric order 3, 7, 20, 100); title rows for 3, 20, 100, 555 (not 7),
# the one of 100 empty
PAIRS = "user,item,timestamp\n1,20,5\n1,3,6\n2,100,1\n2,20,2\n3,7,9\n\n"
TITLES = '3,three\n20,"twenty, a title with a comma"\n100,\n555,not in pairs\n'
ITEMS = ("3", "7", "20", "100")


def write_tree(root: Path, pairs_name: str = "pairs.csv", titles_name: str = "titles.csv") -> Path:
    (root / "covers").mkdir(parents=True)
    (root / "videos").mkdir()
    (root / pairs_name).write_text(PAIRS)
    (root / titles_name).write_text(TITLES)
    for item in ITEMS:
        (root / "covers" / f"{item}.jpg").write_bytes(b"\xff\xd8 cover")
        (root / "videos" / f"{item}.mp4").write_bytes(b"video " * 10)
    return root


def parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def test_read_ids_with_and_without_header(tmp_path: Path) -> None:
    with_header = tmp_path / "a.csv"
    with_header.write_text(PAIRS)
    assert item_ids(with_header) == list(ITEMS)
    bare = tmp_path / "c.csv"
    bare.write_text("1,12,5\n2,2,6\n")
    assert item_ids(bare) == ["2", "12"]


def test_unusable_interaction_files_are_data_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("user,item,timestamp\n")
    with pytest.raises(DataError, match="no rows"):
        item_ids(empty)
    short = tmp_path / "short.csv"
    short.write_text("user,item,timestamp\n1,2,3\n4\n")
    with pytest.raises(DataError, match="line 3"):
        item_ids(short)
    with pytest.raises(DataError, match="does not exist"):
        item_ids(tmp_path / "absent.csv")


def test_complete_tree_lacks_only_the_titles_of_7_and_100(tmp_path: Path) -> None:
    layout = find_layout(write_tree(tmp_path / "raw"), "ds", "local")
    report = verify_layout(layout)
    assert report == LayoutReport(name="ds", kind="local", n_items=4, missing_titles=("7",), empty_titles=("100",))
    assert not report.complete


def test_empty_titles_are_listed_apart_from_missing_rows(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = write_tree(tmp_path / "raw")
    # 3: spaces only (read stripped: empty); 20: a quoted empty title; 100: a title; 7: no row
    (root / "titles.csv").write_text('3,   \n20,""\n100,a title\n555,\n')
    with caplog.at_level(logging.WARNING, logger="crossan.data.layout"):
        report = verify_layout(find_layout(root, "ds", "local"))
    assert (report.missing_titles, report.empty_titles) == (("7",), ("3", "20"))
    assert report.counts == {"items": 4, "missing_titles": 1, "empty_titles": 2, "missing_covers": 0,
                             "missing_videos": 0}
    record = json.loads(report.to_json())
    assert record["missing"]["titles"] == ["7"] and record["empty"] == {"titles": ["3", "20"]}
    assert any("2 of 4 item(s) have an empty title" in m and m.endswith("e.g. 3, 20") for m in caplog.messages)
    (root / "titles.csv").write_text("3,a\n7,b\n20,c\n100,d\n")  # every item titled: complete
    whole = verify_layout(find_layout(root, "ds", "local"))
    assert whole.complete and whole.empty_titles == () and json.loads(whole.to_json())["empty"] == {"titles": []}


def test_lists_exactly_the_missing_ids(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = write_tree(tmp_path / "raw")
    (root / "covers" / "20.jpg").unlink()
    (root / "covers" / "555.jpg").write_bytes(b"not an item of the pairs")
    (root / "videos" / "3.mp4").unlink()
    (root / "videos" / "100.mp4").write_bytes(b"")  # empty counts as missing
    (root / "videos" / "7.mp4.partial").write_bytes(b"half")  # not a video
    (root / "titles.csv").write_text(TITLES.replace("100,\n", ""))
    layout = find_layout(root, "ds", "microlens")

    with caplog.at_level(logging.WARNING, logger="crossan.data.layout"):
        report = verify_layout(layout)

    assert report.missing_titles == ("7", "100")
    assert report.missing_covers == ("20",)
    assert report.missing_videos == ("3", "100")
    assert report.empty_titles == ()  # 100 has no row at all: missing, not empty
    assert report.counts == {"items": 4, "missing_titles": 2, "empty_titles": 0, "missing_covers": 1,
                             "missing_videos": 2}
    assert any("2 of 4 item(s) have no video" in m and "3, 100" in m for m in caplog.messages)
    assert any("1 of 4 item(s) have no cover" in m and "20" in m for m in caplog.messages)


def test_verify_data_cli_writes_report_and_dataset_manifest(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = write_tree(tmp_path / "raw", "MicroLens-50k_pairs.csv", "MicroLens-50k_title_en.csv")
    (root / "covers" / "100.jpg").unlink()
    report_path = tmp_path / "results" / "report.json"
    dataset_json = tmp_path / "resources" / "dataset.json"
    args = parse([
        "verify-data", "--data-dir", str(root), "--name", "mine", "--kind", "local",
        "--dataset-json", str(dataset_json), "--report", str(report_path),
    ])
    assert handler_of(args)(args) == 0
    assert "4 items; missing 1 title(s), 1 cover(s), 0 video(s); 1 empty title(s); listed in" in capsys.readouterr().out

    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["missing"] == {"titles": ["7"], "covers": ["100"], "videos": []}
    assert report["empty"] == {"titles": ["100"]}
    assert report["counts"] == {
        "items": 4, "missing_titles": 1, "empty_titles": 1, "missing_covers": 1, "missing_videos": 0,
    }
    assert (report["name"], report["kind"], report["complete"]) == ("mine", "local", False)
    assert load_manifest(dataset_json) == DatasetLayout(
        name="mine", kind="local", pairs=root / "MicroLens-50k_pairs.csv",
        titles=root / "MicroLens-50k_title_en.csv", covers=root / "covers", videos=root / "videos",
    )


@pytest.mark.parametrize(("remove", "kind"), [("videos", "microlens"), ("covers", "microlens"),
                                            ("titles.csv", "microlens"), ("pairs.csv", "local")])
def test_structural_absence_is_a_data_error(remove: str, kind: str, tmp_path: Path) -> None:
    root = write_tree(tmp_path / "raw")
    target = root / remove
    if target.is_dir():
        for child in target.iterdir():
            child.unlink()
        target.rmdir()
    else:
        target.unlink()
    with pytest.raises(FileNotFoundError):  # the existing API is unchanged
        find_layout(root, "ds", kind)
    with pytest.raises(DataError, match=remove.split(".")[0]) as caught:
        require_layout(root, "ds", kind)
    assert "data_dir" in str(caught.value)
    args = parse(["verify-data", "--data-dir", str(root), "--kind", kind, "--dataset-json", str(tmp_path / "d.json")])
    with pytest.raises(DataError):
        handler_of(args)(args)
    assert not (tmp_path / "d.json").exists()


def test_a_local_dataset_may_lack_titles_covers_and_videos(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "raw")
    for folder in ("covers", "videos"):
        for child in (root / folder).iterdir():
            child.unlink()
        (root / folder).rmdir()
    layout = find_layout(root, "ds", "local")
    assert (layout.absent, layout.covers, layout.titles) == (("covers", "videos"), root / "covers", root / "titles.csv")
    manifest = tmp_path / "dataset.json"
    write_manifest(layout, manifest)
    assert json.loads(manifest.read_text(encoding="utf-8"))["absent"] == ["covers", "videos"]
    assert load_manifest(manifest) == layout
    report = verify_layout(layout)  # the absent folders' items are not listed as missing
    assert (report.missing_titles, report.missing_covers, report.missing_videos) == (("7",), (), ())
    assert json.loads(report.to_json())["absent"] == ["covers", "videos"]
    layout.require("titles", "text")
    with pytest.raises(DataError) as caught:
        layout.require("covers", "image")
    assert str(caught.value) == (f"dataset 'ds': {root / 'covers'} does not exist, so its image cannot be read; "
                                 "add it, or leave image out of catalog.ds.modalities in config.yaml")
    (root / "titles.csv").unlink()
    assert find_layout(root, "ds", "local").absent == ("titles", "covers", "videos")
    full = find_layout(write_tree(tmp_path / "full"), "ds", "local")
    assert full.absent == () and "absent" not in full.to_json()  # a complete manifest reads as before


def test_a_declared_modality_without_its_folder_stops_before_any_job(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "raw")
    for child in (root / "videos").iterdir():
        child.unlink()
    (root / "videos").rmdir()
    config = {"datasets": ["mine"], "catalog": {"mine": {"kind": "local", "data_dir": str(root)}}}
    with pytest.raises(ConfigError) as caught:
        check_declared_parts(config)  # all four by default: video and audio read videos/
    assert str(caught.value).splitlines()[1:] == [
        f"  dataset 'mine' declares {modality} (key 'catalog.mine.modalities'), but folder {root / 'videos'} "
        "does not exist (nor any of MicroLens-100k_videos, MicroLens-50k_videos); add it, or leave "
        f"{modality} out of catalog.mine.modalities" for modality in ("video", "audio")]
    config["catalog"]["mine"]["modalities"] = ["image", "text"]
    check_declared_parts(config)
    config["catalog"]["mine"]["data_dir"] = str(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match=f"key 'catalog.mine.data_dir': folder {tmp_path / 'nowhere'} does not exist"):
        check_declared_parts(config)


def test_missing_data_dir_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        require_layout(tmp_path / "nowhere", "ds", "local")


# ---------------------------------------------------------------- raw-state fingerprints


def test_a_raw_state_file_changes_exactly_when_its_part_does(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "raw", pairs_name="MicroLens-100k_pairs.csv")
    states = tmp_path / "raw-state"
    covers = write_raw_state(root, "covers", states)
    assert json.loads(covers.read_text(encoding="utf-8")) == {
        "part": "covers", "path": "covers", "files": 4, "bytes": 4 * 8, "sha256": part_state(root, "covers")["sha256"]}
    os.utime(covers, ns=(0, 0))  # a rewrite would move this
    write_raw_state(root, "covers", states)
    assert covers.stat().st_mtime_ns == 0  # same files, same state: not rewritten

    cover = root / "covers" / "7.jpg"
    before = part_state(root, "covers")
    os.utime(cover, ns=(cover.stat().st_atime_ns, cover.stat().st_mtime_ns + 1))  # same bytes, new time
    assert part_state(root, "covers")["sha256"] != before["sha256"]
    write_raw_state(root, "covers", states)
    assert covers.stat().st_mtime_ns > 0
    (root / "covers" / "8.jpg").write_bytes(b"new")
    assert part_state(root, "covers")["files"] == 5
    assert part_state(root, "videos") == json.loads(write_raw_state(root, "videos", states).read_text())

    pairs = part_state(root, "pairs")
    assert (pairs["path"], pairs["files"], pairs["bytes"]) == ("MicroLens-100k_pairs.csv", 1, len(PAIRS))
    assert part_state(root, "layout") == {"part": "layout", "parts": {
        "pairs": "MicroLens-100k_pairs.csv", "titles": "titles.csv", "covers": "covers", "videos": "videos"}}
    (root / "titles.csv").unlink()
    assert part_state(root, "titles") == {"part": "titles", "path": None}  # verify-data says what is missing
    assert part_state(tmp_path / "nowhere", "layout")["parts"]["pairs"] is None
