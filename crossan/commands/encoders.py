"""Arguments of ``crossan tiny-encoders``, ``extract-features`` and ``merge-features``; their
work is in :mod:`crossan.encoders.tiny` and :mod:`crossan.encoders.extract`."""

from __future__ import annotations

import argparse
from pathlib import Path

from crossan.argtypes import non_negative_int, positive_int
from crossan.encoders.options import AUTOCAST, TinySpec
from crossan.encoders.pooling import DEFAULT_LAYERS
from crossan.runs.vocabulary import MODALITIES


def parse_layers(text: str) -> list[int]:
    """``"0,2,4"`` -> ``[0, 2, 4]``."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from error


def register_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the encoder commands."""
    _add_tiny_encoders(subparsers)
    _add_extract_features(subparsers)
    _add_merge_features(subparsers)


def _add_tiny_encoders(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``crossan tiny-encoders``."""
    default = TinySpec()
    parser = subparsers.add_parser(
        "tiny-encoders", help="tiny random BERT/ViT/VideoMAE/AST checkpoints for demo and tests"
    )
    parser.add_argument("--items", type=Path, required=True, help="items.csv (titles -> vocab)")
    parser.add_argument("--out", type=Path, required=True, help="output directory (replaced)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden-size", type=int, default=default.hidden_size)
    parser.add_argument("--layers", type=int, default=default.num_layers)
    parser.add_argument("--image-size", type=int, default=default.image_size)
    parser.add_argument("--audio-max-length", type=int, default=default.audio_max_length)
    parser.set_defaults(handler="crossan.encoders.tiny:run_cli")


def _add_extract_features(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``crossan extract-features``."""
    parser = subparsers.add_parser(
        "extract-features",
        help="run a frozen encoder once and cache pooled hidden states of kept layers",
        description="Run one modality's frozen encoder over every item (or one shard of the "
        "items) and store the pooled vector of each kept hidden state in HDF5; resumable.",
    )
    parser.add_argument("--modality", choices=MODALITIES, required=True)
    parser.add_argument("--model", required=True, help="Hugging Face id or local directory")
    parser.add_argument(
        "--layers", type=parse_layers, default=list(DEFAULT_LAYERS),
        help="hidden-state indices to keep, 0 = embedding output (default 0,2,4,6,8,10,12)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument(
        "--max-length", type=positive_int, default=None,
        help="text: tokens per title (30); audio: filterbank frames (default: checkpoint's)",
    )
    parser.add_argument("--items", type=Path, required=True, help="items.csv")
    parser.add_argument("--media", type=Path, default=None, help="{image,video,audio}.h5 (not text)")
    parser.add_argument("--out", type=Path, required=True, help="feature (or shard) file")
    parser.add_argument("--shard", type=non_negative_int, default=None, help="0-based shard")
    parser.add_argument("--num-shards", type=positive_int, default=None)
    parser.add_argument("--chunk-batches", type=positive_int, default=4,
                        help="batches per resumable write (4)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--autocast", choices=AUTOCAST, default="float16",
                        help="mixed precision on CUDA (ignored on CPU)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="CPU threads for torch (default: torch's own)")
    parser.add_argument("--no-progress", action="store_true", help="no progress lines (items done, rate, ETA)")
    parser.set_defaults(handler="crossan.encoders.extract:run_extract")


def _add_merge_features(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``crossan merge-features``."""
    merge = subparsers.add_parser(
        "merge-features",
        help="merge feature shard files into one (checks config and row coverage)",
    )
    merge.add_argument("--out", type=Path, required=True, help="merged feature file")
    merge.add_argument("shards", type=Path, nargs="+", help="shard files")
    merge.set_defaults(handler="crossan.encoders.extract:run_merge")
