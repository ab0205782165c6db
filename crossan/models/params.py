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

End-to-end methods (T+I; :mod:`crossan.models.e2e`), BERT-base + ViT-B/16 without poolers, two
``Linear(768->64)`` heads 98,432 + ``Linear(128->64)`` 8,256 + SASRec 100,224:

* ``fft``: every encoder weight, 108,891,648 + 85,798,656 -> 194,897,216 (paper: same);
* ``adapter`` h=512: 48 Houlsby adapters x 787,712 -> 38,017,088 (paper: same);
* ``lora`` rank 512: 48 query/value projections x (786,432 LoRA + 768 bias) -> 37,992,512
  (paper: same).
"""

from __future__ import annotations

import argparse

import torch

from crossan.argtypes import positive_int
from crossan.errors import ConfigError
from crossan.models.adapters import letters_of, parse_modalities
from crossan.models.e2e import E2E_METHODS, E2E_MODALITIES
from crossan.models.e2e.item_encoder import (
    EndToEndConfig,
    build_e2e_model,
    paper_backbones,
)
from crossan.models.fusion import FUSIONS
from crossan.models.recommender import INTER_TOWERS, METHODS, ModelConfig, build_model
from crossan.models.trainable import count_trainable

# MicroLens-100K's item count, used for the ID baseline's embedding table by default.
MICROLENS_100K_ITEMS = 19_738


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
    moda_rank: int = 8,
    moda_experts: int = 4,
    align: str = "cmsa",
    align_weight: float = 0.0,
) -> int:
    """Trainable parameters of ``method`` at the paper's configuration, built on ``meta``.

    ``hidden`` is the adapters' bottleneck size (the LoRA rank for ``lora``; unused by ``fft``,
    whose encoders are BERT-base and ViT-B/16 whatever ``encoder_dim`` says); ``fusion=None`` uses the method's default
    (MOMEF for CROSSAN/INDSAN, concat for IISAN/IISAN-E). ``inter_tower`` only changes IISAN
    T+I (``"residual"``: 7 inter gates, IISAN's code; ``"convex"``: 14). ``moda_rank`` and
    ``moda_experts``: ``crossan-moda``'s experts; ``align_weight > 0`` adds the alignment
    loss's temperature (one parameter).
    """
    if method in E2E_METHODS:
        if letters_of(parse_modalities(modalities)) != E2E_MODALITIES or fusion not in (None, "concat"):
            raise ValueError(f"{method} is a text+image method with concat fusion (modalities TI)")
        with torch.device("meta"):
            text, image = paper_backbones()
            e2e = build_e2e_model(EndToEndConfig(method=method, hidden=hidden, item_dim=item_dim,
                                                 max_len=max_len), text, image)
        return count_trainable(e2e)
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
        moda_rank=moda_rank,
        moda_experts=moda_experts,
        align=align,
        align_weight=align_weight,
    )
    with torch.device("meta"):
        model = build_model(config)
    return count_trainable(model)


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``crossan params``: print a method's trainable-parameter count (last line = integer)."""
    parser = subparsers.add_parser("params", help="trainable-parameter count at the paper's configuration")
    parser.add_argument("--method", choices=(*METHODS, *E2E_METHODS), default="crossan")
    parser.add_argument("--modalities", default=None,
                        help="letters from TIVA (default: TIVA; TI for fft, adapter and lora)")
    parser.add_argument("--hidden", type=positive_int, default=512,
                        help="adapter bottleneck size h (the LoRA rank for lora)")
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
    parser.add_argument("--moda-rank", type=positive_int, default=8,
                        help="crossan-moda: total rank of each adapter projection's low-rank experts")
    parser.add_argument("--moda-experts", type=positive_int, default=4, help="crossan-moda: experts per projection")
    parser.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    e2e = args.method in E2E_METHODS
    try:
        modalities = letters_of(parse_modalities(args.modalities or (E2E_MODALITIES if e2e else "TIVA")))
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
            moda_rank=args.moda_rank,
            moda_experts=args.moda_experts,
        )
    except ValueError as error:
        raise ConfigError(str(error)) from error
    if e2e:
        size = "" if args.method == "fft" else f" {'rank' if args.method == 'lora' else 'hidden'}={args.hidden}"
        print(f"method={args.method} modalities={modalities}{size} fusion=concat "
              "encoders=bert-base+vit-base-patch16-224 (in the training loop)")
    else:
        config = ModelConfig(method=args.method, modalities=modalities, fusion=args.fusion)
        print(
            f"method={args.method} modalities={modalities if args.method != 'id-sasrec' else '-'} "
            f"hidden={args.hidden} fusion={config.resolved_fusion()} encoder_dim={args.encoder_dim} "
            f"layers={args.layers}"
            + (f" moda_rank={args.moda_rank} moda_experts={args.moda_experts}" if args.method == "crossan-moda" else "")
        )
    print(count)
    return 0
