"""The shape of the paper's models, at which ``crossan params`` counts trainable parameters
(Table 4's TP): :mod:`crossan.models.counts` builds them; :mod:`crossan.commands.params`
offers these as the defaults of its flags. Standard library only."""

from __future__ import annotations

# MicroLens-100K's item count, used for the ID baseline's embedding table by default.
MICROLENS_100K_ITEMS = 19_738
PAPER_ENCODER_DIM = 768  # BERT-base, ViT-B/16, VideoMAE-base, AST
PAPER_LAYERS = 7  # hidden states 0, 2, ..., 12
PAPER_ITEM_DIM = 64
