"""Structural checks of files whose size no server stated: a real MP4, zips, cut copies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from http_stub import make_zip

from crossan.data.content_checks import check_mp4, check_zip, content_check_for
from crossan.media.encode import write_mp4


@pytest.fixture(scope="module")
def real_mp4(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("mp4") / "clip.mp4"
    frames = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
    audio = np.zeros(16000, dtype=np.float32)
    write_mp4(path, frames, 8, audio, 16000)
    return path.read_bytes()


def box(kind: bytes, body: bytes) -> bytes:
    return (8 + len(body)).to_bytes(4, "big") + kind + body


def test_a_real_mp4_is_whole_and_every_cut_copy_is_not(real_mp4: bytes, tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    path.write_bytes(real_mp4)
    assert check_mp4(path) is None
    for cut in (3, 8, 20, len(real_mp4) // 3, len(real_mp4) // 2, len(real_mp4) - 1):
        path.write_bytes(real_mp4[:cut])
        assert check_mp4(path) is not None, cut


def test_mp4_box_sizes_by_hand(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    ftyp, moov = box(b"ftyp", b"isom\0\0\2\0"), box(b"moov", b"\0" * 16)
    cases = {
        ftyp + moov: None,
        ftyp + moov + b"\0\0\0\0mdat" + b"x" * 50: None,  # size 0: to the end of the file
        ftyp + moov + b"\0\0\0\1mdat" + (16 + 50).to_bytes(8, "big") + b"x" * 50: None,  # 64-bit size
        ftyp + moov + b"\0\0\0\1mdat" + (16 + 51).to_bytes(8, "big") + b"x" * 50:
            "box b'mdat' at byte 40 ends at 107, past the end (106)",
        ftyp + moov[:-1]: "box b'moov' at byte 16 ends at 40, past the end (39)",
        ftyp + moov + b"\0\0": "a box header is cut at byte 40",
        ftyp + b"\0\0\0\4free": "box b'free' at byte 16 has an impossible size 4",
        moov + ftyp: "does not start with an ftyp box",
        ftyp + box(b"mdat", b"x"): "has no moov box",
    }
    for data, expected in cases.items():
        path.write_bytes(data)
        assert check_mp4(path) == expected


def test_zip_checks_its_directory_and_crcs(tmp_path: Path) -> None:
    path = tmp_path / "c.zip"
    whole = make_zip({"a.jpg": b"a" * 500, "b.jpg": b"b" * 500})
    path.write_bytes(whole)
    assert check_zip(path) is None
    path.write_bytes(whole[: len(whole) - 30])
    assert check_zip(path).startswith("not a readable zip")
    path.write_bytes(whole.replace(b"a" * 500, b"c" * 500))
    assert check_zip(path) == "zip member 'a.jpg' fails its CRC"


def test_which_files_have_a_check() -> None:
    assert content_check_for("videos/1.mp4") is check_mp4
    assert content_check_for("covers.zip") is check_zip
    assert content_check_for("pairs.csv") is None
