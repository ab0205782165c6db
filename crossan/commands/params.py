"""Arguments of ``crossan params``; its work is in :mod:`crossan.models.params`."""

from __future__ import annotations

import argparse

from crossan.argtypes import positive_int
from crossan.runs.paper_shape import MICROLENS_100K_ITEMS, PAPER_ENCODER_DIM, PAPER_ITEM_DIM, PAPER_LAYERS
from crossan.runs.settings import CONVENTIONS, training_default
from crossan.runs.vocabulary import CACHED_STATE_METHODS, END_TO_END_METHODS, FUSIONS, NAME_DEFAULTS


def register_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``crossan params``: print a method's trainable-parameter count (last line = integer)."""
    parser = subparsers.add_parser("params", help="trainable-parameter count at the paper's configuration")
    parser.add_argument("--method", choices=(*CACHED_STATE_METHODS, *END_TO_END_METHODS), default="crossan")
    parser.add_argument("--modalities", default=None,
                        help="letters from TIVA (default: TIVA; TI for iisan, fft, adapter and lora)")
    parser.add_argument("--hidden", type=positive_int, default=NAME_DEFAULTS["hidden"],
                        help="adapter bottleneck size h (the LoRA rank for lora)")
    parser.add_argument("--fusion", choices=FUSIONS, default=None, help="default: the method's own")
    parser.add_argument("--topk", type=positive_int, default=NAME_DEFAULTS["topk"], help="MOMEF's k")
    parser.add_argument("--encoder-dim", type=positive_int, default=PAPER_ENCODER_DIM)
    parser.add_argument("--layers", type=positive_int, default=PAPER_LAYERS, help="kept layers per encoder")
    parser.add_argument("--item-dim", type=positive_int, default=PAPER_ITEM_DIM)
    parser.add_argument("--max-len", type=positive_int, default=training_default("max_len"))
    parser.add_argument(
        "--items", type=positive_int, default=MICROLENS_100K_ITEMS, help="item count (id-sasrec)"
    )
    parser.add_argument("--inter-tower", choices=CONVENTIONS["inter_tower"], default=CONVENTIONS["inter_tower"][0],
                        help="IISAN/IISAN-E inter tower (default: IISAN's code)")
    parser.add_argument("--moda-rank", type=positive_int, default=training_default("moda_rank"),
                        help="crossan-moda: total rank of each adapter projection's low-rank experts")
    parser.add_argument("--moda-experts", type=positive_int, default=training_default("moda_experts"), help="crossan-moda: experts per projection")
    parser.set_defaults(handler="crossan.models.params:run_cli")
