"""Sample the encoder's audio clip: the first seconds of the audio track, mono, resampled.

Decoded with PyAV (libavcodec + libswresample), stopping as soon as enough samples exist.
decord's ``AudioReader`` was measured and rejected: it decodes the whole track on open and,
on an AAC track, repeats part of the first frame (the samples from 1024 input samples on are
shifted against the true waveform), whereas PyAV reproduces the encoded sine in phase.
Stereo is down-mixed by libswresample's default matrix. The first ``seconds`` of the
decoded track are taken, after the decoder has dropped the encoder's priming samples,
regardless of the track's start offset in the container, and end where the container's
track duration ends.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

DECODE_ERRORS: tuple[type[BaseException], ...] = (av.error.FFmpegError, ValueError)


class NoAudioTrack(Exception):
    """The container has no audio stream (a normal case, masked with ``no audio track``)."""


def sample_audio(
    path: str | Path, sample_rate: int = 16000, seconds: float = 3.0
) -> tuple[np.ndarray, int]:
    """Decode the first ``seconds`` of ``path``'s first audio stream.

    Returns ``(waveform, num_samples)``: float32 ``[round(seconds * sample_rate)]`` mono,
    zero-padded after the ``num_samples`` real samples when the track is shorter.
    Raises :class:`NoAudioTrack`, or one of :data:`DECODE_ERRORS` for an undecodable file.
    """
    wanted = round(seconds * sample_rate)
    parts: list[np.ndarray] = []
    total = 0
    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise NoAudioTrack(str(path))
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        reached_end = True
        try:
            # The demuxer ends with an empty packet whose decode() flushes the decoder.
            for packet in container.demux(stream):
                for frame in packet.decode():
                    for out in resampler.resample(frame):
                        parts.append(out.to_ndarray().reshape(-1))
                        total += out.samples
                if total >= wanted:
                    reached_end = False
                    break
        except av.error.FFmpegError:
            if total == 0:
                raise
            # A truncated file ends in a partial packet: keep the samples decoded before it.
        if reached_end:
            for out in resampler.resample(None):
                parts.append(out.to_ndarray().reshape(-1))
                total += out.samples
        # The decoder drops the encoder's leading priming samples but not the zero padding of
        # the last AAC frame; the container's track duration says where the audio ends.
        if stream.duration and stream.time_base:
            total = min(total, round(float(stream.duration * stream.time_base) * sample_rate))
    if total <= 0:
        raise ValueError("audio stream has no decodable samples")
    samples = np.concatenate(parts)[: min(total, wanted)].astype(np.float32, copy=False)
    waveform = np.zeros(wanted, dtype=np.float32)
    waveform[: len(samples)] = samples
    return waveform, len(samples)
