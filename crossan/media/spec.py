"""What ``crossan sample-media`` stores per item: :class:`MediaSpec`, the sampled geometry
and storage of each modality, with the datasets (:meth:`MediaSpec.fields`) and file attributes
(:meth:`MediaSpec.attrs`) of ``video.h5``, ``audio.h5`` and ``image.h5``.

The attributes are written to each file and compared on resume (:mod:`crossan.media.store`),
so a file sampled under another spec is rebuilt. Frames and covers are stored as JPEG at
``jpeg_quality`` (0: raw uint8); the audio file's spec does not depend on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import crossan
from crossan.media import store, video
from crossan.media.options import DEFAULT_JPEG_QUALITY, MODALITIES

# video.h5's per-item ``decoder`` field; stored in the file's attributes too.
DECODER_CODES = {video.FAST_DECODER: 1, video.FALLBACK_DECODER: 2}


@dataclass(frozen=True)
class MediaSpec:
    """What is sampled per item; written to each file's attributes and checked on resume."""

    video_size: int = 224
    image_size: int = 224
    num_frames: int = 16
    seconds: float = 3.0
    sample_rate: int = 16000
    jpeg_quality: int = DEFAULT_JPEG_QUALITY  # frames and covers; 0 stores them raw

    def __post_init__(self) -> None:
        for name in ("video_size", "image_size", "num_frames", "sample_rate"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not self.seconds > 0:
            raise ValueError(f"seconds must be positive, got {self.seconds}")
        if not 0 <= int(self.jpeg_quality) <= 100:
            raise ValueError(f"jpeg_quality must be 0 (raw) to 100, got {self.jpeg_quality}")

    @property
    def audio_samples(self) -> int:
        return round(self.seconds * self.sample_rate)

    def fields(self, modality: str) -> dict[str, store.Field]:
        """The per-item datasets of ``modality``'s file."""
        if modality == "video":
            s = self.video_size
            return {
                "frames": store.Field(
                    (self.num_frames, s, s, 3), "uint8", one_per_chunk=True,
                    jpeg_quality=self.jpeg_quality,
                ),
                "frame_index": store.Field((self.num_frames,), "int32", -1),
                "source_frames": store.Field((), "int32"),
                "source_fps": store.Field((), "float32"),
                "decoder": store.Field((), "uint8"),
            }
        if modality == "audio":
            return {
                "waveform": store.Field((self.audio_samples,), "float32", one_per_chunk=True),
                "num_samples": store.Field((), "int32"),
            }
        if modality == "image":
            s = self.image_size
            return {
                "pixels": store.Field(
                    (s, s, 3), "uint8", one_per_chunk=True, jpeg_quality=self.jpeg_quality
                )
            }
        raise ValueError(f"unknown modality {modality!r}; choose from {', '.join(MODALITIES)}")

    def attrs(self, modality: str) -> dict[str, Any]:
        """The spec attributes of ``modality``'s file (without the source description)."""
        common = {"modality": modality, "crossan_version": crossan.__version__}
        # Only the image files depend on the storage: audio.h5 keeps its spec, so a file
        # sampled before JPEG storage existed is not resampled for nothing.
        storage = {
            "jpeg_quality": self.jpeg_quality,
            "storage": f"JPEG per image, quality {self.jpeg_quality}, {store.JPEG_SUBSAMPLING}"
            if self.jpeg_quality
            else "raw uint8",
        }
        if modality == "video":
            return common | storage | {
                "video_size": self.video_size,
                "num_frames": self.num_frames,
                "seconds": float(self.seconds),
                "timestamps": video.TIMESTAMP_RULE,
                "geometry": "shorter side resized to video_size (PIL bilinear), "
                "center crop video_size x video_size (VideoMAE processor)",
                "decoder": "decord get_batch on the sampled indices, RGB24; where it fails, "
                "PyAV seeking to each sampled frame's keyframe (per-item field 'decoder')",
                "decoder_codes": json.dumps(DECODER_CODES | {"not decoded": 0}),
            }
        if modality == "audio":
            return common | {
                "sample_rate": self.sample_rate,
                "seconds": float(self.seconds),
                "num_samples_per_item": self.audio_samples,
                "channels": "mono (libswresample down-mix)",
                "decoder": "PyAV, first audio stream, float32",
            }
        return common | storage | {
            "image_size": self.image_size,
            "geometry": "converted to RGB, resized to image_size x image_size "
            "(PIL bilinear, no crop; ViT processor)",
        }
