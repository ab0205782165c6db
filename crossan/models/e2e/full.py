"""Full fine-tuning: every weight of the encoder is trained (paper Table 3, "Full Finetuning")."""

from __future__ import annotations

from transformers import PreTrainedModel


def make_fully_trainable(backbone: PreTrainedModel) -> PreTrainedModel:
    """Unfreeze every parameter of ``backbone`` (in place; returned for chaining).

    The pooler is not part of the backbone here (:func:`~crossan.models.e2e.item_encoder.drop_pooler`
    removes it first), so BERT-base + ViT-base contribute 108,891,648 + 85,798,656 weights.
    """
    return backbone.requires_grad_(True)
