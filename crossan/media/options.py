"""The choices of ``crossan sample-media`` that the command line offers
(:mod:`crossan.commands.media`) and the sampling checks, without its dependencies (h5py, PyAV)."""

from __future__ import annotations

MODALITIES: tuple[str, ...] = ("video", "audio", "image")
# Frames and covers as JPEG at this quality: 14 % of the raw bytes on H.264-decoded natural
# frames at 224 px (6.6 GB for MicroLens-100K's videos, against 47.6 GB raw), pooled states of
# the tiny encoders 0.5 % (video) and 1.5 % (image) of the item-to-item spread away from raw
# (bench/media_store.py); 90 would pass 8 GB on that content.
DEFAULT_JPEG_QUALITY = 85
