"""Trainable-parameter counts of the cached-state models at the paper's configuration (Table 4).

:func:`paper_configuration_count` builds the real module tree at the paper's configuration
(768-d cached states, 7 kept layers, item dim 64, max length 10) on the ``meta`` device, so no
memory is allocated, and sums ``numel`` of every parameter with ``requires_grad``. Nothing is
added or subtracted by hand. The end-to-end baselines' counts, and the ``crossan params``
command, are in :mod:`crossan.models.params` (they need transformers and peft).

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

import torch

from crossan.models.adapters import letters_of, parse_modalities
from crossan.models.recommender import ModelConfig, build_model
from crossan.models.trainable import count_trainable
from crossan.runs.settings import training_default
from crossan.runs.paper_shape import MICROLENS_100K_ITEMS, PAPER_ENCODER_DIM, PAPER_ITEM_DIM, PAPER_LAYERS
from crossan.runs.vocabulary import ALL_LETTERS, NAME_DEFAULTS


def paper_configuration_count(
    method: str,
    modalities: str = ALL_LETTERS,
    hidden: int = NAME_DEFAULTS["hidden"],
    fusion: str | None = None,
    topk: int = NAME_DEFAULTS["topk"],
    encoder_dim: int = PAPER_ENCODER_DIM,
    n_layers: int = PAPER_LAYERS,
    item_dim: int = PAPER_ITEM_DIM,
    max_len: int = training_default("max_len"),
    n_items: int = MICROLENS_100K_ITEMS,
    inter_tower: str = training_default("inter_tower"),
    moda_rank: int = training_default("moda_rank"),
    moda_experts: int = training_default("moda_experts"),
    align: str = NAME_DEFAULTS["align"],
    align_weight: float = NAME_DEFAULTS["align_weight"],
) -> int:
    """Trainable parameters of cached-state ``method`` at the paper's configuration, built on ``meta``.

    ``hidden`` is the adapters' bottleneck size; ``fusion=None`` uses the method's default
    (MOMEF for CROSSAN/INDSAN, concat for IISAN/IISAN-E). ``inter_tower`` only changes IISAN
    T+I (``"residual"``: 7 inter gates, IISAN's code; ``"convex"``: 14). ``moda_rank`` and
    ``moda_experts``: ``crossan-moda``'s experts; ``align_weight > 0`` adds the alignment
    loss's temperature (one parameter).
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
        moda_rank=moda_rank,
        moda_experts=moda_experts,
        align=align,
        align_weight=align_weight,
    )
    with torch.device("meta"):
        model = build_model(config)
    return count_trainable(model)
