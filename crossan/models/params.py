"""``crossan params``: trainable-parameter counts of every method at the paper's configuration
(Table 4's TP), the end-to-end baselines' too.

Cached-state methods: :func:`crossan.models.counts.paper_configuration_count` (its docstring
gives the breakdown). End-to-end methods (T+I; :mod:`crossan.models.e2e`), BERT-base + ViT-B/16
without poolers, two ``Linear(768->64)`` heads 98,432 + ``Linear(128->64)`` 8,256 + SASRec
100,224, built on ``meta`` like the others:

* ``fft``: every encoder weight, 108,891,648 + 85,798,656 -> 194,897,216 (paper: same);
* ``adapter`` h=512: 48 Houlsby adapters x 787,712 -> 38,017,088 (paper: same);
* ``lora`` rank 512: 48 query/value projections x (786,432 LoRA + 768 bias) -> 37,992,512
  (paper: same).

This module imports transformers and peft (through the end-to-end family); training a
cached-state run never imports it, nor does ``crossan params --help`` (the command's
arguments are in :mod:`crossan.commands.params`).
"""

from __future__ import annotations

import argparse

import torch

from crossan.errors import ConfigError
from crossan.models.adapters import letters_of, parse_modalities
from crossan.models.counts import paper_configuration_count as cached_state_count
from crossan.models.e2e.item_encoder import EndToEndConfig, build_e2e_model, paper_backbones
from crossan.models.recommender import ModelConfig
from crossan.models.trainable import count_trainable
from crossan.runs.paper_shape import PAPER_ITEM_DIM
from crossan.runs.settings import training_default
from crossan.runs.vocabulary import ALL_LETTERS, E2E_LETTERS, END_TO_END_METHODS, METHODS, NAME_DEFAULTS


def end_to_end_count(method: str, size: int = NAME_DEFAULTS["hidden"], item_dim: int = PAPER_ITEM_DIM,
                     max_len: int = training_default("max_len")) -> int:
    """Trainable parameters of end-to-end ``method`` with BERT-base and ViT-B/16 (whatever the
    cached states' size): ``size`` is the Houlsby adapters' bottleneck (``adapter``) or the
    LoRA rank (``lora``), unused by ``fft``."""
    with torch.device("meta"):
        text, image = paper_backbones()
        model = build_e2e_model(EndToEndConfig.of(method, size, item_dim=item_dim, max_len=max_len), text, image)
    return count_trainable(model)


def paper_configuration_count(method: str, modalities: str = ALL_LETTERS, hidden: int = NAME_DEFAULTS["hidden"],
                              fusion: str | None = None, **shape: object) -> int:
    """Trainable parameters of any trained ``method`` at the paper's configuration: the
    end-to-end ones (T+I, concat) by :func:`end_to_end_count`, the others by
    :func:`crossan.models.counts.paper_configuration_count` (``shape``: its keywords)."""
    if method in END_TO_END_METHODS:
        if letters_of(parse_modalities(modalities)) != E2E_LETTERS or fusion not in (None, "concat"):
            raise ValueError(f"{method} is a text+image method with concat fusion (modalities TI)")
        return end_to_end_count(method, hidden, **{k: v for k, v in shape.items() if k in ("item_dim", "max_len")})
    return cached_state_count(method, modalities, hidden, fusion, **shape)


def run_cli(args: argparse.Namespace) -> int:
    """Run ``crossan params`` (:mod:`crossan.commands.params`); returns the exit status."""
    e2e = args.method in END_TO_END_METHODS
    try:
        default = METHODS[args.method].fixed.get("modalities", ALL_LETTERS)
        modalities = letters_of(parse_modalities(args.modalities or default))
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
