"""Sample the encoder's video clip: ``num_frames`` frames evenly spread over the first seconds.

Timestamp rule (stored in ``video.h5``'s attributes as :data:`TIMESTAMP_RULE`): the sampled
span is ``D = min(seconds, len / fps)`` and frame ``k`` sits at the middle of the ``k``-th of
``num_frames`` equal slices of it, ``t_k = (k + 0.5) * D / num_frames``; its index is
``floor(t_k * fps)`` clipped to ``[0, len - 1]``. Midpoints (rather than ``linspace``'s
endpoints) never ask for the frame at ``t = D``, which does not exist in a clip of length
``D``, and treat both ends of the span alike. A clip shorter than ``num_frames`` frames
repeats indices.

Decoding goes through decord's ``get_batch`` on the distinct indices only: it seeks to the
keyframes it needs and never decodes past the last sampled frame. decord counts the frames
it can actually demux, so a truncated file is sampled as the shorter clip it really is.
"""

from __future__ import annotations

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
# C++ side; PyAV's probe raises FFmpegError; ValueError is ours (no frames, bad frame rate).
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    RuntimeError,
    decord.DECORDError,
    av.error.FFmpegError,
    ValueError,
)

# Guards floor() against t_k * fps landing a hair under an integer in floating point.
_EPSILON = 1e-6


@dataclass(frozen=True)
class VideoClip:
    """The sampled frames of one video and where they came from."""

    frames: np.ndarray  # uint8 [num_frames, size, size, 3]
    indices: np.ndarray  # int64 [num_frames], source frame index of each frame
    source_frames: int  # frames decord can read from the file
    fps: float  # the stream's average frame rate


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


def probe_video(path: str | Path) -> None:
    """Open the container with PyAV and check it has a video stream.

    decord reports an unreadable file only as "Error reading x.mp4..." (and logs the cause to
    stderr); PyAV's exception names the cause, e.g. "Invalid data found when processing
    input", so it gives the stored reason.
    """
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("no video stream")


def sample_video(
    path: str | Path, size: int = 224, num_frames: int = 16, seconds: float = 3.0
) -> VideoClip:
    """Decode the sampled frames of one video, with the VideoMAE geometry (shorter side to
    ``size``, center crop) applied: ``clip.frames`` is uint8 ``[num_frames, size, size, 3]``.

    Raises one of :data:`DECODE_ERRORS` when the file cannot be decoded.
    """
    probe_video(path)
    # One decoder thread: parallelism comes from the worker processes.
    reader = decord.VideoReader(str(path), num_threads=1)
    try:
        source_frames, fps = len(reader), float(reader.get_avg_fps())
        indices = frame_indices(source_frames, fps, num_frames, seconds)
        distinct, position = np.unique(indices, return_inverse=True)
        decoded = reader.get_batch(distinct.tolist()).asnumpy()  # [U, H, W, 3]
    finally:
        del reader
    if decoded.ndim != 4 or decoded.shape[0] != len(distinct) or decoded.shape[-1] != 3:
        raise ValueError(f"decoder returned frames of shape {decoded.shape}")
    processed = np.stack([resize_shorter_center_crop(frame, size) for frame in decoded])
    return VideoClip(processed[position.reshape(-1)], indices, source_frames, fps)
