"""Arguments of ``crossan demo-data``, ``download``, ``verify-data``, ``sequences`` and
``item-titles``; their work is in :mod:`crossan.data`."""

from __future__ import annotations

import argparse
from pathlib import Path

from crossan.argtypes import non_negative_int, positive_float, positive_int
from crossan.data.options import CATALOGUES, MICROLENS_VARIANTS

DATASET_KINDS: tuple[str, ...] = ("demo", "microlens", "local")


def register_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the data commands."""
    _add_demo_data(subparsers)
    _add_download(subparsers)
    _add_verify_data(subparsers)
    _add_sequences(subparsers)


def _add_demo_data(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``crossan demo-data --out DIR [--users N] [--items N] [--topics N] [--seed N]``."""
    parser = subparsers.add_parser(
        "demo-data",
        help="generate the embedded demo dataset (deterministic, offline)",
        description="Generate the demo dataset in the MicroLens raw layout.",
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory (replaced)")
    parser.add_argument("--users", type=int, default=1000, help="number of users (default 1000)")
    parser.add_argument("--items", type=int, default=400, help="number of items (default 400)")
    parser.add_argument("--topics", type=int, default=8, help="number of latent topics (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.set_defaults(handler="crossan.data.demo:run_cli")


def _add_download(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``crossan download``."""
    download = subparsers.add_parser(
        "download",
        help="download MicroLens (resumable, retried, checked)",
        description="Download MicroLens into the canonical raw layout and record a manifest.",
    )
    add = download.add_argument
    add("--base-url", default=None, help="remote folder (default: the official one of --variant)")
    add("--variant", choices=MICROLENS_VARIANTS, default="100k", help="MicroLens variant (default 100k)")
    add("--out", type=Path, required=True, help="output directory (resumed if present)")
    add("--dataset-json", type=Path, default=None, help="also write the dataset manifest here")
    add("--name", default=None, help="dataset name in that manifest (default microlens-VARIANT)")
    add("--workers", type=positive_int, default=8, help="parallel video downloads (default 8)")
    add("--retries", type=non_negative_int, default=5, help="retries per file (default 5)")
    add("--timeout", type=positive_float, default=60.0, help="seconds a socket may stay silent (default 60)")
    add("--min-bytes-per-s", type=positive_float, default=1024.0,
        help="slower than this over --stall-window ends the attempt (default 1024)")
    add("--stall-window", type=positive_float, default=60.0, help="seconds the speed is averaged over (default 60)")
    add("--deadline", type=positive_float, default=7200.0,
        help="seconds one attempt at one file may take; a retry resumes it (default 7200)")
    add("--max-items", type=positive_int, default=None, help="only the first N items' videos")
    download.set_defaults(handler="crossan.data.download:run_download")


def _add_verify_data(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``crossan verify-data``."""
    verify = subparsers.add_parser(
        "verify-data",
        help="check a raw dataset tree and write its dataset manifest",
        description="List exactly which items lack a title, cover or video; record the layout.",
    )
    add = verify.add_argument
    add("--data-dir", type=Path, required=True, help="raw tree in the MicroLens layout")
    add("--name", default=None, help="dataset name (default: the folder name)")
    add("--kind", choices=DATASET_KINDS, default="local", help="dataset kind (default local)")
    add("--dataset-json", type=Path, default=None, help="write the dataset manifest here")
    add("--report", type=Path, default=None, help="write the JSON list of missing ids here")
    verify.set_defaults(handler="crossan.data.download:run_verify")


def _add_sequences(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``crossan sequences`` and ``crossan item-titles``."""
    parser = subparsers.add_parser(
        "sequences", help="interactions -> cleaned, truncated, leave-one-out user sequences"
    )
    parser.add_argument("--dataset-json", type=Path, required=True, help="dataset manifest")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--min-interactions", type=int, default=5)
    parser.add_argument("--max-items", type=int, default=13)
    parser.add_argument("--catalogue", choices=CATALOGUES, default=CATALOGUES[0],
                        help="items that get an id: every item of the kept users' full histories (history) "
                             "or of their last --max-items (window, IISAN's preprocess.py)")
    parser.set_defaults(handler="crossan.data.sequences:run_cli")

    titled = subparsers.add_parser("item-titles", help="item_ids.csv + the title file -> items.csv")
    titled.add_argument("--dataset-json", type=Path, required=True, help="dataset manifest")
    titled.add_argument("--item-ids", type=Path, required=True, help="item_ids.csv of the sequences step")
    titled.add_argument("--out", type=Path, required=True, help="items.csv to write")
    titled.add_argument("--report", type=Path, default=None, help="titles.json to write (counts)")
    titled.set_defaults(handler="crossan.data.sequences:run_titles_cli")
