"""Trainable-parameter counts (paper Table 4) and ``crossan params``.

The count is the model's own: :func:`paper_configuration_count` builds the real module tree
at the paper's configuration (768-d cached states, 7 kept layers, item dim 64, max length 10)
on the ``meta`` device, so no memory is allocated, and sums ``numel`` of every parameter
with ``requires_grad``. Nothing is added or subtracted by hand.

Breakdown at h=512 (768-d encoders, 7 layers; per tower 7 x 787,712 adapters + 639,808 head
= 6,153,792):

* IISAN-E T+I+V+A, concat: 5 towers 30,768,960 + ``Linear(320->64)`` 20,544 + 56 gates +
  SASRec 100,224 = 30,889,784 (paper: 30,889,784); h=1024: 58,432,824 (paper: same).
* IISAN T+I, concat: 3 towers 18,461,376 + ``Linear(192->64)`` 12,352 + 21 gates (14 intra,
  7 inter, as IISAN's code) + SASRec 100,224 = 18,573,973 (``inter_tower: convex``: 28 gates).
* CROSSAN T+I+V+A, MOMEF top-2: 4 towers 24,615,168 + 140 gate logits + MOMEF 17,668 +
  SASRec 100,224 = 24,733,200 (paper: 24,741,456, 0.033% less; the 8,256 difference is
  exactly the size of a ``Linear(128->64)``, not part of the architecture as described).
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from crossan.argtypes import positive_int
from crossan.models.adapters import letters_of, parse_modalities
from crossan.models.fusion import FUSIONS
from crossan.models.recommender import INTER_TOWERS, METHODS, ModelConfig, build_model

# MicroLens-100K's item count, used for the ID baseline's embedding table by default.
MICROLENS_100K_ITEMS = 19_738


def count_trainable(model: nn.Module) -> int:
    """Number of scalars in parameters with ``requires_grad`` (shared tensors once)."""
    seen: set[int] = set()
    total = 0
    for parameter in model.parameters():
        if parameter.requires_grad and id(parameter) not in seen:
            seen.add(id(parameter))
            total += parameter.numel()
    return total


def paper_configuration_count(
    method: str,
    modalities: str = "TIVA",
    hidden: int = 512,
    fusion: str | None = None,
    topk: int = 2,
    encoder_dim: int = 768,
    n_layers: int = 7,
    item_dim: int = 64,
    max_len: int = 10,
    n_items: int = MICROLENS_100K_ITEMS,
    inter_tower: str = "residual",
) -> int:
    """Trainable parameters of ``method`` at the paper's configuration, built on ``meta``.

    ``hidden`` is the adapters' bottleneck size; ``fusion=None`` uses the method's default
    (MOMEF for CROSSAN/INDSAN, concat for IISAN/IISAN-E). ``inter_tower`` only changes IISAN
    T+I (``"residual"``: 7 inter gates, IISAN's code; ``"convex"``: 14).
    """
    config = ModelConfig(
        method=method,
        modalities=letters_of(parse_modalities(modalities)),
        encoder_dim=encoder_dim,
        n_layers=n_layers,
        adapter_dim=hidden,
        item_dim=item_dim,
        fusion=fusion,
        topk=topk,
        max_len=max_len,
        n_items=n_items,
        inter_tower=inter_tower,
    )
    with torch.device("meta"):
        model = build_model(config)
    return count_trainable(model)


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``crossan params``: print a method's trainable-parameter count (last line = integer)."""
    parser = subparsers.add_parser("params", help="trainable-parameter count at the paper's configuration")
    parser.add_argument("--method", choices=METHODS, default="crossan")
    parser.add_argument("--modalities", default="TIVA", help="letters from TIVA (default: TIVA)")
    parser.add_argument("--hidden", type=positive_int, default=512, help="adapter bottleneck size h")
    parser.add_argument("--fusion", choices=FUSIONS, default=None, help="default: the method's own")
    parser.add_argument("--topk", type=positive_int, default=2, help="MOMEF's k")
    parser.add_argument("--encoder-dim", type=positive_int, default=768)
    parser.add_argument("--layers", type=positive_int, default=7, help="kept layers per encoder")
    parser.add_argument("--item-dim", type=positive_int, default=64)
    parser.add_argument("--max-len", type=positive_int, default=10)
    parser.add_argument(
        "--items", type=positive_int, default=MICROLENS_100K_ITEMS, help="item count (id-sasrec)"
    )
    parser.add_argument("--inter-tower", choices=INTER_TOWERS, default="residual",
                        help="IISAN/IISAN-E inter tower (default residual, IISAN's code)")
    parser.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    from crossan.errors import ConfigError

    try:
        modalities = letters_of(parse_modalities(args.modalities))
        count = paper_configuration_count(
            args.method,
            modalities,
            args.hidden,
            fusion=args.fusion,
            topk=args.topk,
            encoder_dim=args.encoder_dim,
            n_layers=args.layers,
            item_dim=args.item_dim,
            max_len=args.max_len,
            n_items=args.items,
            inter_tower=args.inter_tower,
        )
    except ValueError as error:
        raise ConfigError(str(error)) from error
    config = ModelConfig(method=args.method, modalities=modalities, fusion=args.fusion)
    print(
        f"method={args.method} modalities={modalities if args.method != 'id-sasrec' else '-'} "
        f"hidden={args.hidden} fusion={config.resolved_fusion()} encoder_dim={args.encoder_dim} "
        f"layers={args.layers}"
    )
    print(count)
    return 0
