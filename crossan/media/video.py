"""Sample the encoder's video clip: ``num_frames`` frames evenly spread over the first seconds.

Timestamp rule (stored in ``video.h5``'s attributes as :data:`TIMESTAMP_RULE`): the sampled
span is ``D = min(seconds, len / fps)`` and frame ``k`` sits at the middle of the ``k``-th of
``num_frames`` equal slices of it, ``t_k = (k + 0.5) * D / num_frames``; its index is
``floor(t_k * fps)`` clipped to ``[0, len - 1]``. Midpoints (rather than ``linspace``'s
endpoints) never ask for the frame at ``t = D``, which does not exist in a clip of length
``D``, and treat both ends of the span alike. A clip shorter than ``num_frames`` frames
repeats indices.

Two decoders, both of which seek and never decode past the last sampled frame:

* **Fast path**: decord's ``get_batch`` on the distinct indices. decord2 3.4 rejects valid
  clips of some frame widths on some CPUs (``DECORDArrayCopyFromTo: The size must exactly
  match``; seen for widths 16, 24, 32, 48, 96 and 144 at height 48), and its single-frame
  access returns wrongly shaped arrays for the same clips, so it cannot be its own fallback.
* **Fallback**: PyAV. The frame index is built from the demuxed packets (no decoding): frame
  ``i`` is the packet with the ``i``-th smallest presentation time, exactly how decord counts
  frames, so a truncated file is the shorter clip it really is under both. For each needed
  frame it seeks to the keyframe at or before it and decodes forward, continuing instead of
  seeking again when the next needed frame lies in the same group of pictures.

Only a video that neither decoder can read raises; :attr:`VideoClip.decoder` says which one
produced the frames, and the sampler counts the fallbacks.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import decord
import numpy as np

from crossan.media.image import resize_shorter_center_crop

TIMESTAMP_RULE = (
    "t_k = (k + 0.5) * D / num_frames, D = min(seconds, num_video_frames / fps); "
    "index_k = clip(floor(t_k * fps), 0, num_video_frames - 1)"
)

# decord raises RuntimeError ("Error reading x.mp4...") on open and DECORDError from its
# C++ side; PyAV's probe raises FFmpegError; ValueError is ours (no frames, bad frame rate,
# frames of the wrong shape).
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    RuntimeError,
    decord.DECORDError,
    av.error.FFmpegError,
    ValueError,
)

FAST_DECODER = "decord"
FALLBACK_DECODER = "pyav"

# decord's C++ errors start with "[hh:mm:ss] /src/file.cc:123: "; dropped so reasons are stable.
_DECORD_PREFIX = re.compile(r"^\[\d\d:\d\d:\d\d\] \S+:\d+: ")

# Guards floor() against t_k * fps landing a hair under an integer in floating point.
_EPSILON = 1e-6


@dataclass(frozen=True)
class VideoClip:
    """The sampled frames of one video and where they came from."""

    frames: np.ndarray  # uint8 [num_frames, size, size, 3]
    indices: np.ndarray  # int64 [num_frames], source frame index of each frame
    source_frames: int  # frames the decoder can demux from the file
    fps: float  # the stream's average frame rate
    decoder: str = FAST_DECODER  # FAST_DECODER, or FALLBACK_DECODER when the fast path failed
    fast_path_error: str = ""  # why the fast path failed ("" when it did not)


@dataclass(frozen=True)
class DecodedFrames:
    """Raw frames of one video at the sampled indices, before geometry."""

    frames: np.ndarray  # uint8 [U, H, W, 3], one per distinct index, ascending
    indices: np.ndarray  # int64 [num_frames], the sampled index of each output frame
    distinct_position: np.ndarray  # int64 [num_frames], row of `frames` for each output frame
    source_frames: int
    fps: float


def frame_timestamps(duration: float, num_frames: int = 16, seconds: float = 3.0) -> np.ndarray:
    """Sampling times in seconds, float64 ``[num_frames]``, for a clip of ``duration`` s."""
    span = min(seconds, duration)
    return (np.arange(num_frames) + 0.5) * span / num_frames


def frame_indices(
    num_video_frames: int, fps: float, num_frames: int = 16, seconds: float = 3.0
) -> np.ndarray:
    """Indices of the frames to sample, int64 ``[num_frames]`` (non-decreasing, may repeat)."""
    if num_video_frames < 1:
        raise ValueError("video has no frames")
    if not fps > 0:
        raise ValueError(f"invalid frame rate {fps}")
    times = frame_timestamps(num_video_frames / fps, num_frames, seconds)
    indices = np.floor(times * fps + _EPSILON).astype(np.int64)
    return np.clip(indices, 0, num_video_frames - 1)


def probe_video(path: str | Path) -> tuple[int, int]:
    """Open the container with PyAV, check it has a video stream and return its
    ``(height, width)``.

    decord reports an unreadable file only as "Error reading x.mp4..." (and logs the cause to
    stderr); PyAV's exception names the cause, e.g. "Invalid data found when processing
    input", so it gives the stored reason.
    """
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        context = container.streams.video[0].codec_context
        return int(context.height), int(context.width)


def error_message(error: BaseException) -> str:
    """The first line of a decoder's error, without decord's timestamp and source prefix."""
    text = str(error).strip()
    return _DECORD_PREFIX.sub("", text.splitlines()[0]) if text else type(error).__name__


def _sampled(
    source_frames: int, fps: float, num_frames: int, seconds: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(indices [num_frames], distinct ascending [U], position of each index in distinct)``."""
    indices = frame_indices(source_frames, fps, num_frames, seconds)
    distinct, position = np.unique(indices, return_inverse=True)
    return indices, distinct, position.reshape(-1)


def decode_frames_decord(
    path: str | Path, num_frames: int = 16, seconds: float = 3.0
) -> DecodedFrames:
    """The fast path: decord's ``get_batch`` on the distinct sampled indices."""
    # One decoder thread: parallelism comes from the worker processes.
    reader = decord.VideoReader(str(path), num_threads=1)
    try:
        source_frames, fps = len(reader), float(reader.get_avg_fps())
        indices, distinct, position = _sampled(source_frames, fps, num_frames, seconds)
        decoded = reader.get_batch(distinct.tolist()).asnumpy()  # [U, H, W, 3]
    finally:
        del reader
    return DecodedFrames(decoded, indices, position, source_frames, fps)


def _stream_rate(stream: av.video.stream.VideoStream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate is not None and rate > 0:
            return float(rate)
    raise ValueError("stream states no frame rate")


def decode_frames_pyav(
    path: str | Path, num_frames: int = 16, seconds: float = 3.0
) -> DecodedFrames:
    """The fallback: index the frames from the demuxed packets, then seek to each needed
    frame's keyframe and decode forward to it (see the module docstring)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        pts, keyframes = [], []
        for packet in container.demux(stream):
            if packet.pts is None or packet.size == 0:  # the demuxer's final flush packet
                continue
            pts.append(packet.pts)
            if packet.is_keyframe:
                keyframes.append(packet.pts)
        pts.sort()
        keyframes.sort()
        fps = _stream_rate(stream)
        indices, distinct, position = _sampled(len(pts), fps, num_frames, seconds)
        if not keyframes or keyframes[0] > pts[distinct[0]]:
            raise ValueError("no keyframe at or before the first sampled frame")
        frames: list[np.ndarray] = []
        decoding: Iterator[av.VideoFrame] | None = None  # frames after the last seek
        last = None  # pts of the last frame taken from `decoding`
        for target in (pts[i] for i in distinct):
            keyframe = keyframes[bisect.bisect_right(keyframes, target) - 1]
            if decoding is None or last is None or last >= target or keyframe > last:
                container.seek(keyframe, stream=stream, backward=True)
                decoding, last = container.decode(stream), None
            frame = next((f for f in decoding if f.pts is None or f.pts >= target), None)
            last = None if frame is None else frame.pts
            if last != target:
                raise ValueError(f"frame at pts {target} could not be decoded")
            frames.append(frame.to_ndarray(format="rgb24"))
    return DecodedFrames(np.stack(frames), indices, position, len(pts), fps)


def _checked(decoded: DecodedFrames, height: int, width: int) -> DecodedFrames:
    expected = (len(np.unique(decoded.indices)), height, width, 3)
    if decoded.frames.shape != expected:
        raise ValueError(f"decoder returned frames of shape {decoded.frames.shape}, not {expected}")
    return decoded


def sample_video(
    path: str | Path,
    size: int = 224,
    num_frames: int = 16,
    seconds: float = 3.0,
    use_fast_path: bool = True,
) -> VideoClip:
    """Decode the sampled frames of one video, with the VideoMAE geometry (shorter side to
    ``size``, center crop) applied: ``clip.frames`` is uint8 ``[num_frames, size, size, 3]``.

    Tries decord (unless ``use_fast_path`` is false), then PyAV. Raises one of
    :data:`DECODE_ERRORS` only when neither decoder can read the file.
    """
    height, width = probe_video(path)
    decoder, fast_error = FAST_DECODER, ""
    try:
        if not use_fast_path:
            raise ValueError("fast path not used")
        decoded = _checked(decode_frames_decord(path, num_frames, seconds), height, width)
    except DECODE_ERRORS as error:
        decoder, fast_error = FALLBACK_DECODER, error_message(error)
        try:
            decoded = _checked(decode_frames_pyav(path, num_frames, seconds), height, width)
        except DECODE_ERRORS as fallback_error:
            raise ValueError(
                f"{error_message(fallback_error)} (PyAV); {fast_error} (decord)"
            ) from fallback_error
    processed = np.stack([resize_shorter_center_crop(frame, size) for frame in decoded.frames])
    return VideoClip(
        processed[decoded.distinct_position],
        decoded.indices,
        decoded.source_frames,
        decoded.fps,
        decoder,
        fast_error,
    )
