"""Benchmark: the sampler's per-item video + audio path against a naive full decode.

Sampler: decord ``get_batch`` on the 16 sampled indices (keyframe seeks, nothing decoded past
the last sampled frame) and PyAV audio decoding that stops after the first seconds.
Fallback: the sampler with decord's fast path switched off, i.e. PyAV seeking to each
sampled frame's keyframe (what an item costs when decord fails on it).
Naive: PyAV decodes every video frame to RGB and every audio frame, then picks the same
16 frames and the same first seconds. All three apply the same geometry and are checked
equal.

    python bench/media.py                      # the demo videos
    python bench/media.py --videos DIR         # any folder of .mp4
    python bench/media.py --synthetic 12       # generated 128x96 clips in a temp dir

Single process, one item at a time: this measures decoding, not the worker pool.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

from crossan.media.audio import NoAudioTrack, sample_audio
from crossan.media.encode import write_mp4
from crossan.media.image import resize_shorter_center_crop
from crossan.media.video import DECODE_ERRORS, frame_indices, sample_video

DEMO_VIDEOS = Path("resources/demo/demo/videos")


def sampler(
    path: Path, size: int, sample_rate: int, use_fast_path: bool = True
) -> tuple[np.ndarray, np.ndarray, int]:
    """The pipeline's path: frames uint8 ``[16, S, S, 3]``, waveform float32 ``[48000]``."""
    clip = sample_video(path, size, use_fast_path=use_fast_path)
    try:
        waveform, count = sample_audio(path, sample_rate)
    except NoAudioTrack:  # compare the video only
        waveform, count = np.zeros(0, np.float32), 0
    return clip.frames, waveform, count


def fallback(path: Path, size: int, sample_rate: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The pipeline's path when decord fails: PyAV seeks for the frames."""
    return sampler(path, size, sample_rate, use_fast_path=False)


def naive(path: Path, size: int, sample_rate: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Decode everything with PyAV, then pick the same frames and samples."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    picked = [frames[i] for i in frame_indices(len(frames), fps)]
    video = np.stack([resize_shorter_center_crop(frame, size) for frame in picked])
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return video, np.zeros(0, np.float32), 0
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        parts = [
            out.to_ndarray().reshape(-1)
            for frame in container.decode(stream)
            for out in resampler.resample(frame)
        ]
        parts += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
        length = round(float(stream.duration * stream.time_base) * sample_rate)
    samples = np.concatenate(parts)[: min(length, 3 * sample_rate)]
    waveform = np.zeros(3 * sample_rate, np.float32)
    waveform[: len(samples)] = samples
    return video, waveform, len(samples)


def readable(paths: list[Path], size: int) -> dict[Path, str]:
    """The videos the sampler can decode (the demo plants a corrupt one), each with the
    decoder that read it."""
    keep = {}
    for path in paths:
        try:
            keep[path] = sample_video(path, size).decoder
        except DECODE_ERRORS:
            print(f"skipping unreadable {path.name}", file=sys.stderr)
    return keep


def synthetic_clips(folder: Path, count: int, seconds: float) -> list[Path]:
    """``count`` textured, moving 128x96 clips of ``seconds`` at 25 fps with a tone."""
    rng = np.random.default_rng(0)
    paths = []
    num = int(seconds * 25)
    for n in range(count):
        texture = rng.integers(0, 256, (96 + num, 128 + num, 3), dtype=np.uint8)
        frames = np.stack([texture[t : t + 96, t : t + 128] for t in range(num)])
        tone = 0.3 * np.sin(2 * np.pi * (220 + 30 * n) * np.arange(int(seconds * 22050)) / 22050)
        path = folder / f"{n}.mp4"
        write_mp4(path, frames, 25, tone.astype(np.float32), 22050)
        paths.append(path)
    return paths


Sampled = tuple[np.ndarray, np.ndarray, int]


def timed(
    function: Callable[[Path, int, int], Sampled],
    paths: list[Path],
    size: int,
    rate: int,
    repeats: int,
) -> tuple[float, list[Sampled]]:
    """Best wall time of ``repeats`` passes over ``paths``, and the last pass's outputs."""
    best, outputs = float("inf"), []
    for _ in range(repeats):
        start = time.perf_counter()
        outputs = [function(path, size, rate) for path in paths]
        best = min(best, time.perf_counter() - start)
    return best, outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=Path, default=DEMO_VIDEOS, help="folder of .mp4")
    parser.add_argument("--synthetic", type=int, default=0, help="generate N clips instead")
    parser.add_argument("--clip-seconds", type=float, default=8.0, help="synthetic length")
    parser.add_argument("--limit", type=int, default=20, help="videos to use at most")
    parser.add_argument("--size", type=int, default=224, help="frame side")
    parser.add_argument("--repeats", type=int, default=2, help="best of N passes")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        if args.synthetic:
            decoder_of = readable(synthetic_clips(Path(tmp), args.synthetic, args.clip_seconds),
                                  args.size)
        else:
            decoder_of = readable(sorted(args.videos.glob("*.mp4"))[: args.limit], args.size)
        paths = list(decoder_of)
        if not paths:
            print(f"no .mp4 under {args.videos}; use --videos DIR or --synthetic N",
                  file=sys.stderr)
            return 1
        with av.open(str(paths[0])) as container:
            stream = container.streams.video[0]
            shape = f"{stream.codec_context.width}x{stream.codec_context.height}"
            length = float(stream.duration * stream.time_base) if stream.duration else float("nan")
        decoders = Counter(decoder_of.values())
        fast_s, fast = timed(sampler, paths, args.size, 16000, args.repeats)
        fallback_s, seek = timed(fallback, paths, args.size, 16000, args.repeats)
        slow_s, slow = timed(naive, paths, args.size, 16000, args.repeats)

    def worst_pixel(outputs: list[Sampled]) -> int:
        return max(int(np.abs(a[0].astype(int) - b[0].astype(int)).max())
                   for a, b in zip(outputs, slow))

    audio_equal = all(np.array_equal(a[1], b[1]) and a[2] == b[2] for a, b in zip(fast, slow))
    n = len(paths)
    print(f"{n} videos ({shape}, first {length:.1f} s long), frames {args.size}x{args.size}, "
          f"best of {args.repeats}; the sampler's decoder per item: {dict(decoders)}")
    print(f"{'path':<38}{'seconds':>10}{'ms/item':>10}{'max |diff|':>12}")
    for name, seconds, outputs in (
        ("sampler (decord seek + PyAV 3 s)", fast_s, fast),
        ("fallback (PyAV seek + PyAV 3 s)", fallback_s, seek),
        ("naive (PyAV full decode)", slow_s, slow),
    ):
        print(f"{name:<38}{seconds:>10.3f}{1000 * seconds / n:>10.1f}{worst_pixel(outputs):>12}")
    print(f"speed-up over naive: sampler {slow_s / fast_s:.2f}x, fallback "
          f"{slow_s / fallback_s:.2f}x; fallback / sampler {fallback_s / fast_s:.2f}x; "
          f"audio identical: {audio_equal}")
    return 0 if max(worst_pixel(fast), worst_pixel(seek)) <= 1 and audio_equal else 2


if __name__ == "__main__":
    sys.exit(main())
