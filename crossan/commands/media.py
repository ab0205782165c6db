"""Arguments of ``crossan sample-media``; its work is in :mod:`crossan.media.sample`."""

from __future__ import annotations

import argparse
from pathlib import Path

from crossan.argtypes import non_negative_int, positive_float, positive_int
from crossan.media.options import DEFAULT_JPEG_QUALITY, MODALITIES


def jpeg_quality(text: str) -> int:
    """argparse type of ``--jpeg-quality``: an integer 0..100."""
    value = non_negative_int(text)
    if value > 100:
        raise argparse.ArgumentTypeError(f"must be 0 (raw) to 100, got {value}")
    return value


def register_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``sample-media`` subcommand."""
    parser = subparsers.add_parser(
        "sample-media",
        help="sample video frames, audio and covers of every item into HDF5",
        description="Sample every item's video frames, audio and cover into one HDF5 file "
        "per modality; bad media is masked, an interrupted run resumes.",
    )
    parser.add_argument("--dataset-json", type=Path, required=True, help="dataset manifest")
    parser.add_argument("--items", type=Path, required=True, help="item_ids.csv (or items.csv) of the sequences step")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument(
        "--modalities", nargs="+", default=list(MODALITIES),
        help="any of video audio image (space or comma separated; default all)",
    )
    parser.add_argument("--video-size", type=positive_int, default=224, help="frame side (224)")
    parser.add_argument("--image-size", type=positive_int, default=224, help="cover side (224)")
    parser.add_argument("--frames", type=positive_int, default=16, help="frames per video (16)")
    parser.add_argument("--seconds", type=positive_float, default=3.0, help="clip length (3.0)")
    parser.add_argument("--sample-rate", type=positive_int, default=16000, help="audio Hz (16000)")
    parser.add_argument(
        "--jpeg-quality", type=jpeg_quality, default=DEFAULT_JPEG_QUALITY,
        help=f"JPEG quality of stored frames and covers, 1-100; 0 stores them raw "
        f"({DEFAULT_JPEG_QUALITY})",
    )
    parser.add_argument(
        "--workers", type=non_negative_int, default=2, help="decoder processes (0: in-process)"
    )
    parser.add_argument("--chunk-items", type=positive_int, default=16, help="items per task (16)")
    parser.set_defaults(handler="crossan.media.sample:run_cli")
