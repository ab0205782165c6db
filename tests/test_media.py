"""Media sampling: frame-index rule, decoded frames, geometry, audio, masks, HDF5 files."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import av
import decord
import h5py
import numpy as np
import pytest
from killing import kill_after_marks
from PIL import Image

from crossan.cli import build_parser, handler_of
from crossan.data.layout import DatasetLayout, write_manifest
from crossan.encoders.inputs import MediaSource
from crossan.errors import DataError
from crossan.media import sample as media
from crossan.media import store as media_store
from crossan.media import video as video_module
from crossan.media import workers as media_workers
from crossan.media.audio import NoAudioTrack, sample_audio
from crossan.media.encode import write_mp4
from crossan.media.image import (
    load_cover,
    resize_shorter_center_crop,
    resize_square,
    shorter_side_size,
)
from crossan.media.spec import DECODER_CODES, DEFAULT_JPEG_QUALITY, MediaSpec
from crossan.media.video import frame_indices, frame_timestamps, sample_video

SR = 16000


# ---------------------------------------------------------------- fixtures


def flat_frames(values: list[int], height: int = 24, width: int = 32) -> np.ndarray:
    """uint8 ``[T, H, W, 3]`` with frame ``t`` filled with ``values[t]``."""
    return np.stack([np.full((height, width, 3), v, dtype=np.uint8) for v in values])


def sine(freq: float, seconds: float, rate: int = SR, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * freq * np.arange(round(seconds * rate)) / rate)).astype(
        np.float32
    )


def make_dataset(
    root: Path, kinds: dict[str, tuple[str, str]], audio_seconds: float = 2.0
) -> tuple[DatasetLayout, Path, Path]:
    """A raw tree with one item per entry of ``kinds``: item_id -> (video kind, cover kind).

    Video kinds: ok, noaudio, missing, corrupt, truncated. Cover kinds: ok, missing, corrupt,
    cmyk, gray. Video ``i`` (0-based) is 2 s at 10 fps with flat frames ``5 * t + i`` and a
    ``300 + 20 * i`` Hz tone of ``audio_seconds`` (AAC encoding is the slow part). Returns the
    layout, dataset.json and items.csv.
    """
    videos, covers = root / "videos", root / "covers"
    videos.mkdir(parents=True)
    covers.mkdir()
    (root / "pairs.csv").write_text("user,item,timestamp\n")
    (root / "titles.csv").write_text("")
    rng = np.random.default_rng(0)
    lines = ["dense_id,item_id,title"]
    for i, (item_id, (video_kind, cover_kind)) in enumerate(kinds.items()):
        lines.append(f"{i + 1},{item_id},title {item_id}")
        path = videos / f"{item_id}.mp4"
        frames = flat_frames([5 * t + i for t in range(20)])
        tone = None if video_kind == "noaudio" else sine(300 + 20 * i, audio_seconds)
        if video_kind in ("ok", "noaudio", "truncated"):
            write_mp4(path, frames, 10, tone, SR)
        if video_kind == "truncated":  # the moov atom is at the end: unreadable
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        if video_kind == "corrupt":
            path.write_bytes(rng.bytes(4000))
        cover = covers / f"{item_id}.jpg"
        pixels = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
        if cover_kind == "ok":
            Image.fromarray(pixels).save(cover)
        elif cover_kind == "cmyk":
            Image.fromarray(pixels).convert("CMYK").save(cover)
        elif cover_kind == "gray":
            Image.fromarray(pixels).convert("L").save(cover)
        elif cover_kind == "corrupt":
            Image.fromarray(pixels).save(cover)
            cover.write_bytes(cover.read_bytes()[:200])
    items_csv = root / "items.csv"
    items_csv.write_text("\n".join(lines) + "\n")
    layout = DatasetLayout("toy", "local", root / "pairs.csv", root / "titles.csv", covers, videos)
    write_manifest(layout, root / "dataset.json")
    return layout, root / "dataset.json", items_csv


def read_all(path: Path) -> dict[str, np.ndarray]:
    """Every dataset's values: strings as str, JPEG images as their bytes (comparable)."""
    values = {}
    with h5py.File(path, "r") as file:
        for name, dataset in file.items():
            if h5py.check_string_dtype(dataset.dtype) is not None:
                values[name] = dataset.asstr()[:]
            elif h5py.check_vlen_dtype(dataset.dtype) is not None:
                stored = dataset[:]
                values[name] = np.empty(stored.shape, dtype=object)
                for index in np.ndindex(stored.shape):
                    values[name][index] = stored[index].tobytes()
            else:
                values[name] = dataset[:]
    return values


def stored_bytes(values: np.ndarray) -> np.ndarray:
    """int ``values.shape``: the length of each stored JPEG (``read_all``'s bytes)."""
    return np.vectorize(len, otypes=[int])(values)


def decoded(path: Path, modality: str) -> np.ndarray:
    """The valid rows' media as a reader gets them (decoded), uint8 ``[valid, *shape]``."""
    with h5py.File(path, "r") as file:
        ids = list(file["item_id"].asstr()[1:])
    source = MediaSource(path, modality, ids)
    try:
        return source.read(1, len(ids) + 1).payload
    finally:
        source.close()


def assert_same_files(a: Path, b: Path) -> None:
    for name in media.FILE_NAMES.values():
        left, right = read_all(a / name), read_all(b / name)
        assert left.keys() == right.keys()
        for key in left:
            np.testing.assert_array_equal(left[key], right[key], err_msg=f"{name}:{key}")


SMALL = {"video_size": 16, "image_size": 12}

# What decord2 3.4's get_batch raised on valid 16x48 clips on some CPUs.
DECORD_SIZE_ERROR = (
    "[10:00:00] /project/src/runtime/ndarray.cc:171: Check failed: from_size == to_size "
    "(4608 vs. 2304) DECORDArrayCopyFromTo: The size must exactly match"
)


def break_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make decord's fast path fail as it does on an unlucky CPU (forked workers inherit it)."""

    def fail(*args: object, **kwargs: object) -> None:
        raise decord.DECORDError(DECORD_SIZE_ERROR)

    monkeypatch.setattr(video_module, "decode_frames_decord", fail)


@pytest.fixture(params=["auto", "fallback"])
def decoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a video test twice: with whichever path this machine takes, and with decord's
    fast path forced to fail, so the PyAV fallback is tested on every machine."""
    if request.param == "fallback":
        break_fast_path(monkeypatch)
    return request.param


def full_pyav_decode(path: Path) -> list[np.ndarray]:
    """Every frame of the file as uint8 ``[H, W, 3]``, decoded front to back by PyAV."""
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def textured_clip(
    path: Path, num_frames: int, height: int = 48, width: int = 64, **encoder: int
) -> Path:
    """A moving random texture at 10 fps (every frame differs everywhere)."""
    rng = np.random.default_rng(width)
    texture = rng.integers(0, 256, (height + num_frames, width + num_frames, 3), dtype=np.uint8)
    frames = np.stack([texture[t : t + height, t : t + width] for t in range(num_frames)])
    write_mp4(path, frames, 10, None, SR, **encoder)
    return path


# ---------------------------------------------------------------- frame-index rule


def test_timestamps_are_slice_midpoints() -> None:
    np.testing.assert_allclose(frame_timestamps(10.0, 4, 2.0), [0.25, 0.75, 1.25, 1.75])
    np.testing.assert_allclose(frame_timestamps(1.0, 2, 3.0), [0.25, 0.75])


@pytest.mark.parametrize(
    ("num_video_frames", "fps", "expected"),
    [
        # 5 s at 25 fps: t_k * 25 = (k + 0.5) * 4.6875
        (125, 25.0, [2, 7, 11, 16, 21, 25, 30, 35, 39, 44, 49, 53, 58, 63, 67, 72]),
        # 1.2 s at 25 fps (30 frames): spread over the 1.2 s, (k + 0.5) * 1.875
        (30, 25.0, [0, 2, 4, 6, 8, 10, 12, 14, 15, 17, 19, 21, 23, 25, 27, 29]),
        # 10 s at 30 fps: (k + 0.5) * 5.625
        (300, 30.0, [2, 8, 14, 19, 25, 30, 36, 42, 47, 53, 59, 64, 70, 75, 81, 87]),
        # 5 frames only: indices repeat
        (5, 25.0, [0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 4, 4, 4]),
    ],
)
def test_frame_indices_hand_cases(num_video_frames: int, fps: float, expected: list[int]) -> None:
    assert frame_indices(num_video_frames, fps).tolist() == expected


def test_frame_indices_reject_empty_video_and_bad_fps() -> None:
    with pytest.raises(ValueError, match="no frames"):
        frame_indices(0, 25.0)
    with pytest.raises(ValueError, match="frame rate"):
        frame_indices(10, 0.0)


# ---------------------------------------------------------------- video decoding


def test_sampled_frames_are_the_right_ones(tmp_path: Path, decoder: str) -> None:
    path = tmp_path / "v.mp4"
    values = [6 * t for t in range(40)]  # 4 s at 10 fps
    write_mp4(path, flat_frames(values), 10, None, SR)
    clip = sample_video(path, size=16)
    expected = [0, 2, 4, 6, 8, 10, 12, 14, 15, 17, 19, 21, 23, 25, 27, 29]
    assert clip.indices.tolist() == expected
    assert (clip.source_frames, clip.fps) == (40, 10.0)
    assert clip.frames.shape == (16, 16, 16, 3) and clip.frames.dtype == np.uint8
    means = clip.frames.reshape(16, -1).mean(axis=1)
    np.testing.assert_allclose(means, [6 * i for i in expected], atol=2.5)


def test_short_clip_repeats_frames(tmp_path: Path, decoder: str) -> None:
    path = tmp_path / "v.mp4"
    write_mp4(path, flat_frames([40 * t for t in range(5)]), 10, None, SR)  # 0.5 s
    clip = sample_video(path, size=8)
    assert clip.indices.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    means = clip.frames.reshape(16, -1).mean(axis=1)
    np.testing.assert_allclose(means, [40 * i for i in clip.indices], atol=2.5)


def faststart_copy(source: Path, target: Path) -> None:
    """Remux with the index (moov) in front, as streamed MP4s are: truncating such a file
    leaves a readable beginning."""
    with av.open(str(source)) as src, av.open(
        str(target), "w", format="mp4", options={"movflags": "faststart"}
    ) as dst:
        streams = {s.index: dst.add_stream_from_template(s) for s in src.streams}
        for packet in src.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                dst.mux(packet)


def test_truncated_file_is_sampled_as_the_shorter_clip_it_is(
    tmp_path: Path, decoder: str
) -> None:
    whole, cut = tmp_path / "whole.mp4", tmp_path / "cut.mp4"
    write_mp4(whole, flat_frames([6 * t for t in range(40)]), 10, sine(440.0, 4.0), SR)
    faststart_copy(whole, tmp_path / "fast.mp4")
    data = (tmp_path / "fast.mp4").read_bytes()
    cut.write_bytes(data[: len(data) // 2])

    clip = sample_video(cut, size=8)
    assert 5 < clip.source_frames < 30  # what is left of the 40 frames, under 3 s
    assert clip.source_frames == len(full_pyav_decode(cut))
    assert clip.indices.tolist() == frame_indices(clip.source_frames, 10.0).tolist()
    means = clip.frames.reshape(16, -1).mean(axis=1)
    np.testing.assert_allclose(means, [6 * i for i in clip.indices], atol=2.5)
    waveform, count = sample_audio(cut)
    assert 0 < count < 48000 and not waveform[count:].any()


@pytest.mark.parametrize(
    "encoder", [{}, {"keyframe_interval": 7, "bframes": 2}], ids=["one-gop", "gops-and-bframes"]
)
def test_fallback_returns_exactly_the_frames_of_a_full_pyav_decode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encoder: dict[str, int]
) -> None:
    path = textured_clip(tmp_path / "v.mp4", 40, **encoder)  # 4 s: frames past 3 s unused
    break_fast_path(monkeypatch)
    clip = sample_video(path, size=24)
    assert clip.decoder == video_module.FALLBACK_DECODER
    assert clip.fast_path_error.startswith("Check failed: from_size == to_size (4608 vs. 2304)")
    decoded = full_pyav_decode(path)
    assert (clip.source_frames, clip.fps) == (len(decoded), 10.0)
    assert clip.indices.tolist() == frame_indices(len(decoded), 10.0).tolist()
    # seeks land on the very frames a front-to-back decode gives: same decoder, same bytes
    reference = np.stack([resize_shorter_center_crop(decoded[i], 24) for i in clip.indices])
    np.testing.assert_array_equal(clip.frames, reference)


def test_a_video_neither_decoder_reads_names_both_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = textured_clip(tmp_path / "v.mp4", 10)
    break_fast_path(monkeypatch)

    def fail(*args: object, **kwargs: object) -> None:
        raise av.error.InvalidDataError(1094995529, "Invalid data found when processing input")

    monkeypatch.setattr(video_module, "decode_frames_pyav", fail)
    with pytest.raises(ValueError, match=r"Invalid data found.*\(PyAV\); Check failed.*\(decord\)"):
        sample_video(path, size=8)


# decord2 3.4 failed on widths 16-48 and 96, 144 at height 48 on some CPUs, not on the others.
@pytest.mark.parametrize("width", [16, 24, 32, 48, 96, 144, 40, 56, 64, 80, 100, 120])
def test_every_width_gives_the_frames_of_a_full_pyav_decode(tmp_path: Path, width: int) -> None:
    path = textured_clip(tmp_path / "v.mp4", 30, height=48, width=width)
    clip = sample_video(path, size=16)  # whichever decoder this machine's CPU lets through
    decoded = full_pyav_decode(path)
    assert clip.source_frames == len(decoded) == 30
    reference = np.stack([resize_shorter_center_crop(decoded[i], 16) for i in clip.indices])
    difference = np.abs(reference.astype(int) - clip.frames.astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 0.01


# ---------------------------------------------------------------- geometry


def test_shorter_side_size_rounds_the_longer_side_down() -> None:
    assert shorter_side_size(48, 96, 24) == (24, 48)
    assert shorter_side_size(96, 48, 24) == (48, 24)
    assert shorter_side_size(360, 640, 224) == (224, 398)  # int(224 * 640 / 360) = 398
    assert shorter_side_size(101, 77, 32) == (41, 32)


def _bands(height: int, width: int, horizontal: bool) -> np.ndarray:
    """Red | green | blue bands of 1/4, 1/2, 1/4 of the longer side."""
    long = width if horizontal else height
    image = np.zeros((height, width, 3), dtype=np.uint8)
    cut = [slice(0, long // 4), slice(long // 4, 3 * long // 4), slice(3 * long // 4, long)]
    for channel, part in enumerate(cut):
        if horizontal:
            image[:, part, channel] = 255
        else:
            image[part, :, channel] = 255
    return image


@pytest.mark.parametrize("horizontal", [True, False])
def test_center_crop_keeps_the_middle_of_the_longer_side(horizontal: bool) -> None:
    shape = (48, 96) if horizontal else (96, 48)
    out = resize_shorter_center_crop(_bands(*shape, horizontal), 24)
    assert out.shape == (24, 24, 3) and out.dtype == np.uint8
    # the crop is exactly the green half; only its border may blend with red/blue
    inner = out[:, 1:-1] if horizontal else out[1:-1, :]
    assert (inner[..., 1] == 255).all() and (inner[..., [0, 2]] == 0).all()


def test_video_geometry_on_a_non_square_video(tmp_path: Path, decoder: str) -> None:
    path = tmp_path / "wide.mp4"
    frames = np.repeat(_bands(48, 96, horizontal=True)[None], 10, axis=0)
    write_mp4(path, frames, 10, None, SR)
    clip = sample_video(path, size=24)
    middle = clip.frames[:, :, 3:-3].astype(int)  # away from the chroma-blurred edges
    assert middle[..., 1].min() > 200 and middle[..., [0, 2]].max() < 50


def test_cover_is_resized_directly_without_crop() -> None:
    out = resize_square(_bands(40, 80, horizontal=True), 20)
    assert out.shape == (20, 20, 3)
    assert (out[:, :4, 0] == 255).all() and (out[:, -4:, 2] == 255).all()  # red and blue kept


@pytest.mark.parametrize("mode", ["RGB", "CMYK", "L", "P", "RGBA"])
def test_cover_modes_become_rgb(tmp_path: Path, mode: str) -> None:
    rgb = np.random.default_rng(2).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    path = tmp_path / f"cover.{'png' if mode in ('P', 'RGBA') else 'jpg'}"
    Image.fromarray(rgb).convert(mode).save(path)
    out = load_cover(path, 12)
    assert out.shape == (12, 12, 3) and out.dtype == np.uint8
    if mode == "L":
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    if mode == "RGBA":
        np.testing.assert_array_equal(out, resize_square(rgb, 12))


# ---------------------------------------------------------------- audio


def test_audio_recovers_a_sine_at_16k(tmp_path: Path) -> None:
    path = tmp_path / "a.mp4"
    write_mp4(path, flat_frames([0] * 40), 10, sine(440.0, 4.0, 22050), 22050)
    waveform, count = sample_audio(path)
    assert waveform.shape == (48000,) and waveform.dtype == np.float32 and count == 48000
    spectrum = np.abs(np.fft.rfft(waveform))
    assert np.fft.rfftfreq(48000, 1 / SR)[spectrum.argmax()] == pytest.approx(440.0, abs=1.0)
    # in phase with the source from the first sample (priming dropped, nothing repeated)
    ideal = sine(440.0, 3.0)
    assert np.corrcoef(waveform[1000:-1000], ideal[1000:-1000])[0, 1] > 0.99


def test_short_audio_is_zero_padded_with_its_true_length(tmp_path: Path) -> None:
    path = tmp_path / "a.mp4"
    write_mp4(path, flat_frames([0] * 15), 10, sine(500.0, 1.5), SR)
    waveform, count = sample_audio(path)
    assert count == 24000
    assert not waveform[count:].any()
    assert np.abs(waveform[1000:count - 1000]).max() > 0.4


def test_video_without_audio_raises_no_audio_track(tmp_path: Path) -> None:
    path = tmp_path / "silent.mp4"
    write_mp4(path, flat_frames([0] * 10), 10, None, SR)
    with pytest.raises(NoAudioTrack):
        sample_audio(path)
    item = media_workers.Item(1, "x", str(path), "")
    fields, reason = media_workers.sample_item("audio", item, MediaSpec())
    assert reason == "no audio track"
    assert fields["waveform"].shape == (48000,) and not fields["waveform"].any()
    assert fields["num_samples"] == 0


# ---------------------------------------------------------------- whole runs

KINDS = {
    "101": ("ok", "ok"),
    "102": ("missing", "ok"),
    "103": ("corrupt", "missing"),
    "104": ("noaudio", "corrupt"),
    "105": ("truncated", "cmyk"),
    "106": ("ok", "gray"),
}


def test_run_masks_bad_media_and_counts_it(tmp_path: Path) -> None:
    layout, dataset_json, items_csv = make_dataset(tmp_path / "raw", KINDS)
    out = tmp_path / "media"
    report = media.sample_media(
        layout, items_csv, out, workers=0, chunk_items=4, dataset_json=dataset_json, **SMALL
    )
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "audio.h5", "audio_report.json", "image.h5", "image_report.json",
        "video.h5", "video_report.json",
    ]

    v, a, i = read_all(out / "video.h5"), read_all(out / "audio.h5"), read_all(out / "image.h5")
    assert v["frames"].shape == (7,)  # one blob of 16 JPEGs per item
    assert decoded(out / "video.h5", "video").shape == (3, 16, 16, 16, 3)
    assert a["waveform"].shape == (7, 48000) and a["waveform"].dtype == np.float32
    assert i["pixels"].shape == (7,) and decoded(out / "image.h5", "image").shape == (4, 12, 12, 3)
    for data in (v, a, i):
        assert list(data["item_id"]) == ["", *KINDS]
        assert data["reason"][0] == "padding" and not data["valid"][0]
    videos = Path(layout.videos)
    assert v["valid"].tolist() == [False, True, False, False, True, False, True]
    assert v["reason"][2] == f"missing file: {videos / '102.mp4'}"
    assert v["reason"][3].startswith("corrupt: ") and "Invalid data" in v["reason"][3]
    assert v["reason"][5].startswith("corrupt: ")
    assert a["valid"].tolist() == [False, True, False, False, False, False, True]
    assert a["reason"][4] == "no audio track"
    assert i["valid"].tolist() == [False, True, True, False, False, True, True]
    assert i["reason"][3] == f"missing file: {Path(layout.covers) / '103.jpg'}"
    assert i["reason"][4].startswith("corrupt: ")

    # masked rows hold fill values and no image bytes, valid rows real data
    assert (stored_bytes(v["frames"]) > 0).tolist() == v["valid"].tolist()
    assert (v["frame_index"][[0, 2, 3, 5]] == -1).all()
    # 2 s clip, 20 frames: floor((k + 0.5) * 1.25)
    assert v["frame_index"][1].tolist() == [0, 1, 3, 4, 5, 6, 8, 9, 10, 11, 13, 14, 15, 16, 18, 19]
    assert not a["waveform"][4].any() and a["num_samples"].tolist() == [0, 32000, 0, 0, 0, 0, 32000]
    assert a["waveform"][1].any() and (stored_bytes(i["pixels"]) > 0).tolist() == i["valid"].tolist()

    video_report = report.modalities["video"]
    assert (video_report.valid, video_report.invalid) == (3, 3)
    # which decoder read each valid video depends on the CPU (see the fallback tests)
    assert sum(video_report.decoders.values()) == 3
    assert v["decoder"][[0, 2, 3, 5]].tolist() == [0, 0, 0, 0]
    assert set(v["decoder"][[1, 4, 6]].tolist()) <= set(DECODER_CODES.values())
    assert video_report.reasons == {"missing file": 1, "corrupt": 2}
    audio_reasons = report.modalities["audio"].reasons
    assert audio_reasons == {"missing file": 1, "corrupt": 2, "no audio track": 1}
    assert report.modalities["image"].reasons == {"missing file": 1, "corrupt": 1}
    def saved(modality: str) -> dict:  # type: ignore[type-arg]
        return json.loads((out / f"{modality}_report.json").read_text(encoding="utf-8"))

    assert saved("audio")["reasons"] == audio_reasons and saved("audio")["valid"] == 2
    assert saved("video")["examples"]["corrupt"][0]["item_id"] == "103"
    assert saved("image")["examples"]["missing file"][0]["file"] == "103.jpg"
    assert saved("video")["spec"]["video_size"] == 16

    with h5py.File(out / "video.h5", "r") as file:
        assert file.attrs["video_size"] == 16 and file.attrs["num_frames"] == 16
        assert file.attrs["seconds"] == 3.0 and "(k + 0.5)" in file.attrs["timestamps"]
        assert file.attrs["dataset"] == "toy" and file.attrs["dataset_json"] == str(dataset_json)
        assert "crossan_version" in file.attrs and "created" in file.attrs
        assert file.attrs["jpeg_quality"] == DEFAULT_JPEG_QUALITY
        assert file.attrs["media_format"] == media_store.FORMAT_VERSION
        assert file["frames"].attrs["item_shape"].tolist() == [16, 16, 16, 3]
    with h5py.File(out / "audio.h5", "r") as file:
        assert file.attrs["sample_rate"] == 16000 and file["waveform"].chunks == (1, 48000)

    # worker processes produce the same files as the in-process path
    parallel = media.sample_media(
        layout, items_csv, tmp_path / "parallel", workers=2, chunk_items=2,
        dataset_json=dataset_json, progress=False, **SMALL,
    )
    assert parallel.modalities["video"].decoded == 6
    assert_same_files(out, tmp_path / "parallel")

    again = media.sample_media(
        layout, items_csv, out, workers=0, dataset_json=dataset_json, **SMALL
    )
    assert all(r.up_to_date and r.decoded == 0 for r in again.modalities.values())
    assert again.modalities["video"].reasons == video_report.reasons


def test_fast_path_failure_keeps_every_item_valid_and_is_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    kinds = {"401": ("ok", "ok"), "402": ("corrupt", "ok"), "403": ("noaudio", "ok")}
    layout, _, items_csv = make_dataset(tmp_path / "raw", kinds, audio_seconds=0.25)
    auto = media.sample_media(layout, items_csv, tmp_path / "auto", workers=0, **SMALL)
    break_fast_path(monkeypatch)
    for workers in (0, 1):  # in this process, and in a forked worker
        out = tmp_path / f"fallback{workers}"
        with caplog.at_level("INFO", logger="crossan.media.sample"), caplog.at_level(
            "INFO", logger="crossan.media.workers"
        ):
            report = media.sample_media(
                layout, items_csv, out, workers=workers, progress=False, **SMALL
            )
        v = read_all(out / "video.h5")
        assert v["valid"].tolist() == [False, True, False, True]
        assert v["decoder"].tolist() == [0, 2, 0, 2]
        assert v["frame_index"][1].tolist() == read_all(tmp_path / "auto" / "video.h5")[
            "frame_index"
        ][1].tolist()
        video_report = report.modalities["video"]
        assert video_report.decoders == {"decord": 0, "pyav": 2} and video_report.fallback == 2
        saved = json.loads((out / "video_report.json").read_text(encoding="utf-8"))
        assert saved["fallback"] == 2 and saved["decoders"] == {"decord": 0, "pyav": 2}
        assert [e["item_id"] for e in saved["fallback_examples"]] == ["401", "403"]
        assert report.modalities["audio"].reasons == auto.modalities["audio"].reasons
    assert "2 item(s) decoded by the PyAV fallback" in caplog.text
    assert "video of item 401 (401.mp4): decord failed (Check failed" in caplog.text


def test_only_requested_modalities_are_built(tmp_path: Path) -> None:
    layout, _, items_csv = make_dataset(tmp_path / "raw", {"1": ("ok", "ok")})
    report = media.sample_media(
        layout, items_csv, tmp_path / "m", modalities=("image",), workers=0, **SMALL
    )
    assert list(report.modalities) == ["image"]
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["image.h5", "image_report.json"]


def test_decoder_crash_masks_only_that_item(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kinds = {str(n): ("ok", "ok") for n in range(201, 207)}
    layout, _, items_csv = make_dataset(tmp_path / "raw", kinds, audio_seconds=0.25)
    real = video_module.sample_video

    def crash_on_202_and_205(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if Path(path).name in ("202.mp4", "205.mp4"):
            os._exit(3)  # what a segfaulting decoder does to its worker
        return real(path, *args, **kwargs)

    # forked workers inherit the patched module
    monkeypatch.setattr(video_module, "sample_video", crash_on_202_and_205)
    report = media.sample_media(
        layout, items_csv, tmp_path / "m", workers=2, chunk_items=1, progress=False, **SMALL
    )
    v, a = read_all(tmp_path / "m" / "video.h5"), read_all(tmp_path / "m" / "audio.h5")
    assert v["valid"].tolist() == [False, True, False, True, True, False, True]
    assert v["reason"][2] == v["reason"][5] == media_workers.CRASH_REASON
    assert a["valid"][1:].all()
    assert report.modalities["video"].reasons == {"corrupt": 2}


def interrupt_at_second_block(
    monkeypatch: pytest.MonkeyPatch, layout: DatasetLayout, items_csv: Path, out: Path, **options: Any
) -> None:
    """Sample in blocks of 2 items (``options`` added to :data:`SMALL`) and stop (as Ctrl-C
    would) when the second block starts: every modality's partial file then holds the first
    block only."""
    real = media_workers.sample_block

    def stop_at_second_block(block, spec):  # type: ignore[no-untyped-def]
        if block.index == 1:
            raise KeyboardInterrupt
        return real(block, spec)

    with monkeypatch.context() as patch:
        patch.setattr(media_workers, "sample_block", stop_at_second_block)
        with pytest.raises(KeyboardInterrupt):
            media.sample_media(layout, items_csv, out, workers=0, chunk_items=2, **(SMALL | options))


def test_interrupted_run_resumes_and_a_changed_spec_starts_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kinds = {str(n): ("ok", "ok") for n in range(301, 307)}
    layout, _, items_csv = make_dataset(tmp_path / "raw", kinds)
    out = tmp_path / "m"
    interrupt_at_second_block(monkeypatch, layout, items_csv, out)
    assert sorted(p.name for p in out.iterdir()) == [
        "audio.h5.partial", "image.h5.partial", "video.h5.partial"
    ]
    (out / "image.h5.partial").write_bytes(b"garbage")

    report = media.sample_media(
        layout, items_csv, out, workers=0, chunk_items=2, video_size=8, image_size=12
    )
    audio_report, video_report = report.modalities["audio"], report.modalities["video"]
    assert (audio_report.resumed, audio_report.decoded) == (2, 4)
    assert audio_report.discarded_partial is None
    assert video_report.resumed == 0 and video_report.decoded == 6
    assert video_report.discarded_partial.startswith("sampling spec changed")
    assert report.modalities["image"].discarded_partial.startswith("unreadable")
    with h5py.File(out / "video.h5", "r") as file:
        assert file["frames"].attrs["item_shape"].tolist() == [16, 8, 8, 3] and "_done" not in file

    fresh = media.sample_media(
        layout, items_csv, tmp_path / "fresh", workers=0, video_size=8, image_size=12
    )
    assert fresh.modalities["audio"].decoded == 6
    assert_same_files(out, tmp_path / "fresh")


def btree_nodes(path: Path) -> list[int]:
    """Offsets of the HDF5 B-tree nodes (signature ``TREE``) in ``path``: the group's symbol
    table and every chunked dataset's chunk index."""
    data = path.read_bytes()
    return [offset for offset in range(len(data)) if data.startswith(b"TREE", offset)]


def test_a_partial_damaged_in_the_middle_is_discarded_and_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    kinds = {str(n): ("ok", "ok") for n in range(301, 307)}
    layout, _, items_csv = make_dataset(tmp_path / "raw", kinds, audio_seconds=0.25)
    interrupted = tmp_path / "interrupted"
    interrupt_at_second_block(monkeypatch, layout, items_csv, interrupted)
    fresh = tmp_path / "fresh"
    media.sample_media(layout, items_csv, fresh, workers=0, progress=False, **SMALL)

    for modality in ("image", "audio"):
        name = media.FILE_NAMES[modality]
        nodes = btree_nodes(interrupted / f"{name}.partial")
        assert len(nodes) >= 6  # the symbol table, then the chunk indexes mid-file
        for offset in nodes:
            out = tmp_path / f"{modality}-{offset}"
            out.mkdir()
            damaged = out / f"{name}.partial"
            data = bytearray((interrupted / f"{name}.partial").read_bytes())
            data[offset : offset + 4] = b"\xab" * 4
            damaged.write_bytes(bytes(data))
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="crossan.media.store"):
                report = media.sample_media(
                    layout, items_csv, out, modalities=(modality,), workers=0, chunk_items=2,
                    progress=False, **SMALL,
                )
            why = report.modalities[modality].discarded_partial
            assert why is not None and "(wrong B-tree signature)" in why, (offset, why)
            assert why.startswith("unreadable (")
            assert caplog.messages == [f"{name}: starting over, discarding {damaged}: {why}"]
            assert report.modalities[modality].decoded == len(kinds)
            assert sorted(p.name for p in out.iterdir()) == [name, f"{modality}_report.json"]
            left, right = read_all(out / name), read_all(fresh / name)
            assert left.keys() == right.keys()
            for key in left:
                np.testing.assert_array_equal(left[key], right[key], err_msg=f"{offset}:{key}")


def test_resampled_identical_media_give_the_features_the_same_provenance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kinds = {"501": ("ok", "ok"), "502": ("corrupt", "ok"), "503": ("noaudio", "gray")}
    layout, _, items_csv = make_dataset(tmp_path / "raw", kinds, audio_seconds=0.25)
    ids = list(kinds)

    def sample(out: Path, when: str) -> dict[str, dict]:  # type: ignore[type-arg]
        """A separate run finishing at ``when``; what each file tells the features' hash."""
        monkeypatch.setattr(media_store, "_now", lambda: when)
        media.sample_media(layout, items_csv, out, workers=0, progress=False, **SMALL)
        return {m: describe(out / name, m) for m, name in media.FILE_NAMES.items()}

    def describe(path: Path, modality: str) -> dict:  # type: ignore[type-arg]
        source = MediaSource(path, modality, ids)
        try:
            return source.describe()
        finally:
            source.close()

    first = sample(tmp_path / "first", "2026-01-01T00:00:00+00:00")
    again = sample(tmp_path / "again", "2026-01-02T12:00:00+00:00")
    assert again == first  # the same media sampled a day later: the same inputs
    for modality, name in media.FILE_NAMES.items():
        with h5py.File(tmp_path / "again" / name, "r") as file:
            digest = file.attrs["content_sha256"]
            assert file.attrs["completed"] == "2026-01-02T12:00:00+00:00"
        assert len(digest) == 64 and first[modality]["media_content_sha256"] == digest
        assert "media_completed" not in first[modality]

    # a file sampled before digests were recorded gets the same digest, computed on reading
    old = tmp_path / "old" / "image.h5"
    old.parent.mkdir()
    shutil.copy(tmp_path / "again" / "image.h5", old)
    with h5py.File(old, "r+") as file:
        del file.attrs["content_sha256"]
    assert describe(old, "image") == first["image"]
    # one stored byte changed: another digest (the spec is unchanged)
    with h5py.File(old, "r+") as file:
        cover = file["pixels"][1].copy()
        cover[-3] ^= 1
        file["pixels"][1] = cover
    edited = describe(old, "image")
    assert edited["media_spec_json"] == first["image"]["media_spec_json"]
    assert edited["media_content_sha256"] != first["image"]["media_content_sha256"]

    # another cover for item 503: only the image file's digest changes
    Image.fromarray(np.full((20, 30, 3), 7, dtype=np.uint8)).save(Path(layout.covers) / "503.jpg")
    changed = sample(tmp_path / "changed", "2026-01-01T00:00:00+00:00")
    assert changed["image"]["media_content_sha256"] != first["image"]["media_content_sha256"]
    assert (changed["video"], changed["audio"]) == (first["video"], first["audio"])


# ---------------------------------------------------------------- the compact store


def smooth_image(seed: int, side: int = 64) -> np.ndarray:
    """uint8 ``[side, side, 3]``: colour gradients plus mild noise (natural-ish content)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side] / side
    phase = [x * (c + 1) + y * (2 - c) / 2 + seed for c in range(3)]
    base = np.stack([128 + 100 * np.sin(2 * np.pi * p) for p in phase], axis=-1)
    return np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)


def test_jpeg_round_trip_is_close_to_the_images_and_smaller() -> None:
    images = np.stack([np.stack([smooth_image(4 * item + frame) for frame in range(4)])
                       for item in range(3)])  # [3 items, 4 frames, 64, 64, 3]
    field = media_store.Field(images.shape[1:], "uint8", jpeg_quality=90)
    assert field.stored_shape == ()
    stored = media_store.stack_rows(field, list(images), [True, False, True])
    assert stored.shape == (3,) and stored.dtype == object
    assert len(stored[1]) == 0  # an invalid item: no bytes
    lengths = stored[0][:16].view("<u4")  # the blob lists its 4 JPEGs' lengths first
    assert len(stored[0]) == 16 + lengths.sum() and len(stored[0]) < images[0].nbytes / 4
    starts = (16 + np.concatenate([[0], np.cumsum(lengths)[:-1]])).astype(int).tolist()
    assert [bytes(stored[0][at : at + 2]) for at in starts] == [b"\xff\xd8"] * 4  # JPEG SOI
    back = np.stack([media_store.decode_jpeg(stored[row], (4, 64, 64, 3)) for row in (0, 2)])
    assert back.shape == (2, 4, 64, 64, 3) and back.dtype == np.uint8
    # lossy: close, not equal (libjpeg builds differ in the last bit, so no exact values)
    error = np.abs(back.astype(int) - images[[0, 2]].astype(int))
    assert error.mean() < 4 and error.max() < 40
    # decoding is deterministic on one machine
    np.testing.assert_array_equal(back[0], media_store.decode_jpeg(stored[0], (4, 64, 64, 3)))
    with pytest.raises(ValueError, match="no JPEG bytes"):
        media_store.decode_jpeg(stored[1], (4, 64, 64, 3))
    with pytest.raises(ValueError, match=r"JPEG 0 of the row is \(64, 64, 3\), expected \(32, 32, 3\)"):
        media_store.decode_jpeg(stored[0], (4, 32, 32, 3))
    with pytest.raises(ValueError, match="does not hold 2 images"):
        media_store.decode_jpeg(stored[0], (2, 64, 64, 3))
    with pytest.raises(ValueError, match="does not hold 4 images"):
        media_store.decode_jpeg(stored[0][:-10], (4, 64, 64, 3))
    with pytest.raises(ValueError, match="JPEG needs uint8"):
        media_store.Field((4, 64, 64), "uint8", jpeg_quality=90)


def test_jpeg_store_against_the_raw_store(tmp_path: Path) -> None:
    """The same media stored raw (jpeg_quality 0) and as JPEG: every other field identical,
    the images decoded close to the raw ones, the JPEG files far smaller on real content."""
    layout, _, items_csv = make_dataset(tmp_path / "raw", KINDS)
    for item_id in KINDS:  # covers with natural-ish content instead of noise
        cover = Path(layout.covers) / f"{item_id}.jpg"
        if cover.exists() and item_id not in ("104",):  # 104's cover stays corrupt
            Image.fromarray(smooth_image(int(item_id), 96)).save(cover, quality=95)
    options = {"video_size": 32, "image_size": 64, "workers": 0, "progress": False}
    media.sample_media(layout, items_csv, tmp_path / "plain", jpeg_quality=0, **options)
    media.sample_media(layout, items_csv, tmp_path / "jpeg", **options)
    for modality, name in media.FILE_NAMES.items():
        plain, jpeg = read_all(tmp_path / "plain" / name), read_all(tmp_path / "jpeg" / name)
        image_field = {"video": "frames", "image": "pixels"}.get(modality)
        assert plain.keys() == jpeg.keys()
        for key in plain.keys() - {image_field}:
            np.testing.assert_array_equal(plain[key], jpeg[key], err_msg=f"{name}:{key}")
        if image_field is None:
            continue
        raw = decoded(tmp_path / "plain" / name, modality).astype(int)
        back = decoded(tmp_path / "jpeg" / name, modality).astype(int)
        assert raw.shape == back.shape and np.abs(raw - back).mean() < 3
        stored = stored_bytes(jpeg[image_field])
        assert stored[1:].sum() < raw.nbytes / 8 / 4  # raw.nbytes counts int64 values
        assert ((stored > 0) == jpeg["valid"]).all()
    with h5py.File(tmp_path / "plain" / "video.h5", "r") as file:
        assert file["frames"].shape == (7, 16, 32, 32, 3) and file.attrs["jpeg_quality"] == 0
        assert file.attrs["storage"] == "raw uint8"
    with h5py.File(tmp_path / "jpeg" / "image.h5", "r") as file:
        assert file["pixels"].shape == (7,) and file["pixels"].attrs["item_shape"].tolist() == [64, 64, 3]
        assert file.attrs["storage"] == f"JPEG per image, quality 85, {media_store.JPEG_SUBSAMPLING}"


def test_invalid_rows_take_no_media_bytes(tmp_path: Path) -> None:
    kinds = {"1": ("ok", "ok")} | {str(n): ("missing", "missing") for n in range(2, 42)}
    layout, _, items_csv = make_dataset(tmp_path / "raw", kinds, audio_seconds=0.25)
    one = {"1": ("ok", "ok")}
    _, _, one_csv = make_dataset(tmp_path / "one", one, audio_seconds=0.25)
    for jpeg_quality in (85, 0):
        many_out, one_out = tmp_path / f"many{jpeg_quality}", tmp_path / f"one{jpeg_quality}"
        options = {"workers": 0, "progress": False, "jpeg_quality": jpeg_quality, **SMALL}
        media.sample_media(layout, items_csv, many_out, **options)
        media.sample_media(layout, one_csv, one_out, **options)
        for name in media.FILE_NAMES.values():
            grown = (many_out / name).stat().st_size - (one_out / name).stat().st_size
            # 40 invalid rows: element descriptors, flags and reason strings only; a raw
            # video row alone is 12 kB here, an audio row 192 kB
            assert grown < 40 * 1024, (jpeg_quality, name, grown)
    with h5py.File(tmp_path / "many0" / "audio.h5", "r") as file:
        waveform = file["waveform"]
        allocated = [waveform.id.get_chunk_info_by_coord((row, 0)).byte_offset is not None
                     for row in range(42)]
        assert allocated == [False, True] + [False] * 40
        assert not waveform[2:].any()  # unwritten rows read as the fill value


def test_a_row_rewritten_as_invalid_reads_as_fill(tmp_path: Path) -> None:
    """A killed run may have written a row that the resumed run finds invalid (e.g. its
    decoder died this time): the stale values are reset, whatever the storage."""
    fields = {
        "wave": media_store.Field((8,), "float32", one_per_chunk=True),
        "image": media_store.Field((16, 16, 3), "uint8", jpeg_quality=80),
    }
    store, _ = media_store.PartialStore.open(tmp_path / "x.h5", fields, {"spec": 1}, ["a", "b"])
    wave, image = np.ones((2, 8), np.float32), [smooth_image(0, 16)] * 2
    store.write([1, 2], {"wave": wave, "image": media_store.stack_rows(fields["image"], image, [True, True])},
                ["", ""])
    store.write([1], {"wave": np.zeros((1, 8), np.float32),
                      "image": media_store.stack_rows(fields["image"], image[:1], [False])}, ["corrupt: x"])
    store.commit([1, 2])
    store.finalize()
    with h5py.File(tmp_path / "x.h5", "r") as file:
        assert not file["wave"][1].any() and (file["wave"][2] == 1).all()
        assert len(file["image"][1]) == 0 and len(file["image"][2]) > 0
        assert file["valid"][:].tolist() == [False, False, True]


def test_old_raw_files_are_read_as_before_and_later_formats_refused(tmp_path: Path) -> None:
    layout, _, items_csv = make_dataset(tmp_path / "raw", KINDS, audio_seconds=0.25)
    out = tmp_path / "m"
    media.sample_media(layout, items_csv, out, workers=0, progress=False, jpeg_quality=0, **SMALL)
    ids = list(KINDS)
    for modality, field in (("video", "frames"), ("image", "pixels")):
        path = out / media.FILE_NAMES[modality]
        with h5py.File(path, "r+") as file:  # what crossan wrote before the compact store
            for key in ("media_format", "jpeg_quality", "storage"):
                del file.attrs[key]
            stored, valid = file[field][:], file["valid"][:]
        source = MediaSource(path, modality, ids)
        try:
            batch = source.read(1, len(ids) + 1)
            assert source.shape == stored.shape[1:]
            np.testing.assert_array_equal(batch.payload, stored[1:][valid[1:]])
        finally:
            source.close()
        with h5py.File(path, "r+") as file:
            file.attrs["media_format"] = media_store.FORMAT_VERSION + 1
        with pytest.raises(DataError, match=f"{path} has media format 3, this crossan reads "
                                            "formats up to 2"):
            MediaSource(path, modality, ids)


def test_a_partial_of_the_raw_layout_is_not_resumed_as_jpeg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kinds = {str(n): ("ok", "ok") for n in range(301, 305)}
    layout, _, items_csv = make_dataset(tmp_path / "raw", kinds, audio_seconds=0.25)
    out = tmp_path / "m"
    interrupt_at_second_block(monkeypatch, layout, items_csv, out, jpeg_quality=0, progress=False)
    report = media.sample_media(layout, items_csv, out, workers=0, chunk_items=2,
                                progress=False, **SMALL)
    for modality in ("video", "image"):
        assert report.modalities[modality].discarded_partial.startswith("sampling spec changed")
        assert report.modalities[modality].decoded == 4
    assert (report.modalities["audio"].resumed, report.modalities["audio"].decoded) == (2, 2)


def test_a_damaged_jpeg_names_the_file(tmp_path: Path) -> None:
    layout, _, items_csv = make_dataset(tmp_path / "raw", {"1": ("ok", "ok"), "2": ("ok", "ok")})
    out = tmp_path / "m"
    media.sample_media(layout, items_csv, out, modalities=("image",), workers=0, progress=False,
                       **SMALL)
    path = out / "image.h5"
    with h5py.File(path, "r+") as file:
        blob = file["pixels"][2].copy()
        blob[4:] = 0  # the lengths are right, the image is gone
        file["pixels"][2] = blob
    source = MediaSource(path, "image", ["1", "2"])
    try:
        with pytest.raises(DataError, match=f"media file {path} is unreadable .*JPEG 0 of the row"):
            source.read(1, 3)
    finally:
        source.close()


# ---------------------------------------------------------------- items table and CLI


def test_items_table_must_be_dense(tmp_path: Path) -> None:
    good = tmp_path / "items.csv"
    good.write_text("dense_id,item_id,title\n1,a,x\n2,b,y\n")
    assert media.read_items(good) == [(1, "a"), (2, "b")]
    bad = tmp_path / "bad.csv"
    bad.write_text("dense_id,item_id,title\n1,a,x\n3,b,y\n")
    with pytest.raises(DataError, match="expected dense_id 2"):
        media.read_items(bad)
    with pytest.raises(DataError, match="does not exist"):
        media.read_items(tmp_path / "none.csv")


def test_register_cli_parses_every_option() -> None:
    parser = build_parser()
    args = parser.parse_args(
        ["sample-media", "--dataset-json", "d.json", "--items", "i.csv", "--out", "o"]
    )
    assert (args.video_size, args.image_size, args.frames, args.seconds) == (224, 224, 16, 3.0)
    assert (args.sample_rate, args.workers, args.chunk_items) == (16000, 2, 16)
    assert args.jpeg_quality == DEFAULT_JPEG_QUALITY == 85
    assert args.modalities == ["video", "audio", "image"] and handler_of(args) is media.run_cli
    args = parser.parse_args(
        ["sample-media", "--dataset-json", "d.json", "--items", "i.csv", "--out", "o",
         "--modalities", "video,audio", "--video-size", "32", "--image-size", "24",
         "--frames", "8", "--seconds", "2", "--sample-rate", "8000", "--workers", "0",
         "--chunk-items", "4", "--jpeg-quality", "0"]
    )
    assert args.jpeg_quality == 0
    assert media._modalities(args.modalities) == ["video", "audio"]
    assert (args.video_size, args.image_size, args.frames, args.seconds) == (32, 24, 8, 2.0)
    assert (args.sample_rate, args.workers, args.chunk_items) == (8000, 0, 4)
    for bad in (["--video-size", "0"], ["--jpeg-quality", "101"], ["--jpeg-quality", "-1"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["sample-media", "--dataset-json", "d", "--items", "i", "--out", "o",
                               *bad])


# ---------------------------------------------------------------- SIGKILL and resume


def _done_masks(out: Path, timeout: float = 10.0) -> dict[str, np.ndarray]:
    """The partial files' done masks, once nothing holds them open any more (the killed
    run's workers die with it; a lingering worker would keep HDF5's lock and fail this)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            masks = {}
            for name in media.FILE_NAMES.values():
                with h5py.File(out / f"{name}.partial", "r") as file:
                    masks[name] = file["_done"][:]
            return masks
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def test_sigkilled_cli_run_resumes_without_redoing_finished_blocks(tmp_path: Path) -> None:
    kinds = {str(n): ("ok", "ok") for n in range(1001, 1041)}
    kinds["1007"], kinds["1022"] = ("corrupt", "missing"), ("noaudio", "ok")
    layout, dataset_json, items_csv = make_dataset(tmp_path / "raw", kinds, audio_seconds=0.25)
    out = tmp_path / "media"
    options = {"video_size": 16, "image_size": 12, "chunk_items": 4}
    command = [
        sys.executable, "-m", "crossan.cli", "-v", "sample-media",
        "--dataset-json", str(dataset_json), "--items", str(items_csv), "--out", str(out),
        "--video-size", "16", "--image-size", "12", "--chunk-items", "4", "--workers", "2",
    ]
    kill_after_marks(command, os.environ | {media.PAUSE_ENV: "3"}, "committed", 3)

    masks = _done_masks(out)
    for name in media.FILE_NAMES.values():
        assert not (out / name).exists()
    done = int(masks["video.h5"][1:].sum())
    assert done == 12  # the run paused after its third block of 4 until it was killed
    assert all(int(mask[1:].sum()) == done for mask in masks.values())

    resumed = media.sample_media(
        layout, items_csv, out, workers=0, dataset_json=dataset_json, progress=False, **options
    )
    for report in resumed.modalities.values():
        assert (report.resumed, report.decoded, report.discarded_partial) == (done, 40 - done, None)
    assert not any(p.name.endswith(".partial") for p in out.iterdir())

    uninterrupted = media.sample_media(
        layout, items_csv, tmp_path / "whole", workers=0, progress=False, **options
    )
    assert_same_files(out, tmp_path / "whole")
    for modality, report in resumed.modalities.items():
        assert report.reasons == uninterrupted.modalities[modality].reasons
    assert resumed.modalities["audio"].reasons == {"corrupt": 1, "no audio track": 1}
