"""Arguments of ``crossan graph``; its work is in :mod:`crossan.graph_file.build`."""

from __future__ import annotations

import argparse
from pathlib import Path

from crossan.graph_file.options import DEFAULT_BLOCK, DEFAULT_K, DEFAULT_MAX_LEN


def register_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``crossan graph``."""
    parser = subparsers.add_parser(
        "graph", help="build the user-item and kNN item graphs of the graph recommenders (Table 8)",
        description="Training interactions, their normalised adjacency and per-modality kNN item "
        "graphs from the cached states, in one HDF5 file.")
    parser.add_argument("--data", type=Path, required=True, help="results/{dataset}/data")
    parser.add_argument("--features", type=Path, required=True, help="results/{dataset}/features")
    parser.add_argument("--out", type=Path, required=True, help="the HDF5 file to write")
    parser.add_argument("--modalities", default="TIVA", help="letters of TIVA (default TIVA)")
    parser.add_argument("--layer", type=int, default=-1, help="kept layer to use (default -1: the last)")
    parser.add_argument("--k", type=int, default=DEFAULT_K, help=f"neighbours per item (default {DEFAULT_K})")
    parser.add_argument("--max-len", type=int, default=DEFAULT_MAX_LEN,
                        help=f"the sequential models' max_len (default {DEFAULT_MAX_LEN})")
    parser.add_argument("--block", type=int, default=DEFAULT_BLOCK, help="rows of similarities at once")
    parser.add_argument("--standardize-states", action="store_true",
                        help="kNN on z-scored states (the demo's setting, as its runs see them)")
    parser.set_defaults(handler="crossan.graph_file.build:run_cli")
