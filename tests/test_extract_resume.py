"""Stage 1b robustness: a SIGKILLed extraction resumes from its last committed chunk and ends
bit-identical to an uninterrupted run; three shards merge into the unsharded file bit for
bit; a merge refuses missing, overlapping or mismatched shards."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from killing import kill_after_marks
from test_extract import LAYERS, NUM_ITEMS, build_world, run
from test_media import btree_nodes

from crossan.atomic import partial_path
from crossan.cli import build_parser, handler_of
from crossan.encoders import extract as extract_module
from crossan.encoders.store import merge_shards
from crossan.errors import DataError

pytestmark = pytest.mark.filterwarnings("ignore:At least one mel filter:UserWarning")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return build_world(tmp_path_factory.mktemp("resume"))


def read(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as file:
        return {
            "features": file["features"][:],
            "valid": file["valid"][:],
            "reason": np.array(file["reason"].asstr()[:]),
            "item_id": np.array(file["item_id"].asstr()[:]),
            "config_hash": file.attrs["config_hash"],
        }


def assert_bit_identical(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a["features"].dtype == b["features"].dtype == np.float16
    assert np.array_equal(a["features"].view(np.uint16), b["features"].view(np.uint16))
    for key in ("valid", "reason", "item_id", "config_hash"):
        assert np.array_equal(a[key], b[key]), key


def _done_mask(path: Path, timeout: float = 10.0) -> np.ndarray:
    """The partial file's done mask once the killed process has let go of it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with h5py.File(path, "r") as file:
                return file["_done"][:]
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


CHILD = """
import logging, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
from crossan.cli import build_parser, handler_of
args = build_parser().parse_args(sys.argv[1:])
sys.exit(handler_of(args)(args))
"""


def test_sigkilled_run_resumes_and_ends_bit_identical(world: dict, tmp_path: Path) -> None:
    out = tmp_path / "image.h5"
    command = [
        sys.executable, "-c", CHILD, "extract-features", "--modality", "image",
        "--model", str(world["models"]["image"]), "--items", str(world["items"]),
        "--media", str(world["media"]["image"]), "--out", str(out),
        "--layers", ",".join(map(str, LAYERS)), "--batch-size", "4", "--chunk-batches", "1",
        "--device", "cpu", "--no-progress",
    ]
    kill_after_marks(command, os.environ | {extract_module.PAUSE_ENV: "3"}, "chunk committed", 3)
    assert not out.exists() and partial_path(out).exists()
    done = _done_mask(partial_path(out))
    assert done[0] and done[1:13].all() and not done[13:].any()  # 3 chunks of 4 items

    resumed = run(world, "image", out, batch_size=4, chunk_batches=1)
    assert (resumed.chunks, resumed.chunks_resumed, resumed.chunks_computed) == (15, 3, 12)
    assert resumed.items_computed == 48 - 1  # item 17's cover is invalid; item 3 was done
    assert resumed.discarded_partial is None and not partial_path(out).exists()

    whole = run(world, "image", tmp_path / "whole.h5", batch_size=4, chunk_batches=1)
    assert whole.chunks_computed == 15 and whole.items_computed == NUM_ITEMS - 2
    assert_bit_identical(read(out), read(tmp_path / "whole.h5"))


def test_a_partial_damaged_in_the_middle_is_discarded_and_extracted_again(
    world: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    interrupted = tmp_path / "interrupted" / "image.h5"
    real = extract_module.forward_pooled
    calls = []

    def stop_at_fourth_batch(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(extract_module, "forward_pooled", stop_at_fourth_batch)
    with pytest.raises(KeyboardInterrupt):
        run(world, "image", interrupted, batch_size=4, chunk_batches=1)
    monkeypatch.setattr(extract_module, "forward_pooled", real)
    assert _done_mask(partial_path(interrupted))[1:13].all()  # 3 chunks of 4 committed
    whole = read(Path(run(world, "image", tmp_path / "whole.h5", batch_size=4, chunk_batches=1).path))

    data = partial_path(interrupted).read_bytes()
    nodes = btree_nodes(partial_path(interrupted))
    assert len(nodes) >= 5  # the symbol table, then each dataset's chunk index
    for offset in nodes:
        out = tmp_path / str(offset) / "image.h5"
        out.parent.mkdir()
        damaged = bytearray(data)
        damaged[offset : offset + 4] = b"\xab" * 4
        partial_path(out).write_bytes(bytes(damaged))
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            report = run(world, "image", out, batch_size=4, chunk_batches=1)
        why = report.discarded_partial
        assert why is not None and why.startswith("unreadable (") and "wrong B-tree signature" in why
        assert caplog.messages == [f"image.h5: starting over, discarding {partial_path(out)}: {why}"]
        assert (report.chunks_resumed, report.chunks_computed) == (0, 15)
        assert not partial_path(out).exists()
        assert_bit_identical(read(out), whole)


def test_three_shards_merge_to_the_unsharded_file_bit_for_bit(
    world: dict, tmp_path: Path
) -> None:
    options = {"batch_size": 7, "chunk_batches": 1}
    whole = run(world, "video", tmp_path / "whole.h5", **options)
    shards = [tmp_path / f"video-{k}-of-3.h5" for k in range(3)]
    reports = [run(world, "video", shards[k], shard=k, num_shards=3, **options) for k in range(3)]
    assert [(r.first_row, r.items) for r in reports] == [(1, 21), (22, 21), (43, 18)]
    assert {r.config_hash for r in reports} == {whole.config_hash}

    args = build_parser().parse_args(["merge-features", "--out", str(tmp_path / "video.h5"),
                              *map(str, reversed(shards))])
    assert handler_of(args)(args) == 0
    merged, unsharded = read(tmp_path / "video.h5"), read(tmp_path / "whole.h5")
    assert_bit_identical(merged, unsharded)
    assert not merged["valid"][[4, 5, 41]].any() and merged["valid"].sum() == NUM_ITEMS - 3
    with h5py.File(tmp_path / "video.h5", "r") as file:
        assert file.attrs["first_row"] == 1 and "shard" not in file.attrs and "_done" not in file

    bad = tmp_path / "bad.h5"
    with pytest.raises(DataError, match=r"rows 43\.\.60 are in no shard file"):
        merge_shards(shards[:2], bad)
    with pytest.raises(DataError, match=r"rows 22\.\.42 are in no shard file"):
        merge_shards([shards[0], shards[2]], bad)
    with pytest.raises(DataError, match=r"rows 22\.\.42 are in more than one shard file"):
        merge_shards([shards[0], shards[1], shards[1], shards[2]], bad)
    fewer_layers = run(world, "video", tmp_path / "layers-2-of-3.h5", shard=2, num_shards=3,
                       layers=LAYERS[:-1], **options)
    with pytest.raises(DataError, match=r"disagree on layers: .*\[0, 1, 2, 3, 4, 5, 6\]"):
        merge_shards([shards[0], shards[1], Path(fewer_layers.path)], bad)
    other = run(world, "video", tmp_path / "other-2-of-3.h5", shard=2, num_shards=3,
                **(options | {"batch_size": 6}))  # covers rows 41-60, but the hash is checked first
    assert other.config_hash != whole.config_hash
    with pytest.raises(DataError, match=r"disagree on config_hash: .*settings: batch_size\)"):
        merge_shards([shards[0], shards[1], Path(other.path)], bad)
    with pytest.raises(DataError, match="unfinished|does not exist"):
        merge_shards([shards[0], tmp_path / "nope.h5"], bad)
    assert not bad.exists() and not partial_path(bad).exists()


def test_more_shards_than_batches_leaves_empty_shards_that_merge(world: dict, tmp_path: Path) -> None:
    options = {"batch_size": 40, "chunk_batches": 1}  # 2 batches, 3 shards
    shards = [Path(run(world, "text", tmp_path / f"t-{k}.h5", shard=k, num_shards=3, **options).path)
              for k in range(3)]
    assert [read(p)["features"].shape[0] - 1 for p in shards] == [0, 40, 20]
    merge_shards(shards, tmp_path / "text.h5")
    whole = run(world, "text", tmp_path / "whole.h5", **options)
    assert_bit_identical(read(tmp_path / "text.h5"), read(Path(whole.path)))
    with h5py.File(tmp_path / "text.h5", "r") as file:
        assert file.attrs["empty_titles"] == 1  # item 7 (in shard 1), summed over shards
