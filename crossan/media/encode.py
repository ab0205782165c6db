"""Encode an MP4 (H.264 video + AAC audio) from numpy arrays through PyAV, no system ffmpeg.

Used by the demo generator and by tests that need real video files.
"""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np

AUDIO_FRAME_SAMPLES = 1024  # AAC's frame size


def write_mp4(
    path: str | Path,
    frames: np.ndarray,
    fps: int,
    audio: np.ndarray | None = None,
    sample_rate: int = 22050,
    keyframe_interval: int | None = None,
    bframes: int = 0,
) -> None:
    """Write ``frames`` (uint8 ``[T, H, W, 3]``, H and W even) and optional mono ``audio``
    (float32 ``[S]`` in [-1, 1]) to ``path`` as H.264/AAC in an MP4 container.

    Encoding is deterministic for identical inputs (single-threaded x264, fixed settings).
    ``keyframe_interval`` (frames; x264's default otherwise) and ``bframes`` let tests build
    clips with several groups of pictures and reordered frames.
    """
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    height, width = frames.shape[1:3]
    with av.open(str(path), mode="w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        # threads=1 keeps the bitstream byte-identical from run to run.
        video.options = {"preset": "ultrafast", "crf": "23", "threads": "1"}
        if keyframe_interval is not None:
            video.options |= {"g": str(keyframe_interval), "keyint_min": str(keyframe_interval)}
        if bframes:
            video.options |= {"bf": str(bframes)}
        video.codec_context.thread_count = 1
        audio_stream = None
        if audio is not None:
            audio_stream = container.add_stream("aac", rate=sample_rate)
            audio_stream.layout = "mono"
        for image in frames:
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            container.mux(video.encode(frame))
        container.mux(video.encode())
        if audio_stream is not None:
            samples = np.asarray(audio, dtype=np.float32)
            for start in range(0, len(samples), AUDIO_FRAME_SAMPLES):
                chunk = samples[start : start + AUDIO_FRAME_SAMPLES][None, :]
                frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
                frame.sample_rate = sample_rate
                frame.pts = start
                frame.time_base = fractions.Fraction(1, sample_rate)
                container.mux(audio_stream.encode(frame))
            container.mux(audio_stream.encode())
