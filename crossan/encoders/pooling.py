"""Pool each kept hidden state to one vector per item, the way each model pools itself.

The hidden states are the model's ``output_hidden_states``: index 0 is the embedding output,
index ``i`` the output of layer ``i``. They are the raw residual-stream states, *before* any
final LayerNorm (ViT, VideoMAE with ``use_mean_pooling=False`` and AST apply one only to
``last_hidden_state``; BERT has none), so the last kept index is not ``last_hidden_state``
for those models.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING

from crossan.errors import ConfigError

if TYPE_CHECKING:
    import torch

DEFAULT_LAYERS: tuple[int, ...] = (0, 2, 4, 6, 8, 10, 12)  # LayerDrop of a 12-layer model

POOLING: dict[str, str] = {"text": "cls", "image": "cls", "video": "mean", "audio": "cls_dist"}
POOLING_RULES: dict[str, str] = {
    "cls": "token 0 ([CLS]) of each kept hidden state (BERT, ViT)",
    "mean": "mean over all tokens of each kept hidden state (VideoMAE, which has no [CLS])",
    "cls_dist": "mean of token 0 ([CLS]) and token 1 (distillation) of each kept hidden "
    "state (AST)",
}


def validate_layers(layers: Sequence[int], num_layers: int, *, where: str = "layers") -> list[int]:
    """``layers`` as a list after checking it is a non-empty, strictly increasing list of
    hidden-state indices in ``0..num_layers`` (0 = embedding output)."""
    chosen = list(layers)
    if not chosen or any(isinstance(i, bool) or not isinstance(i, int) for i in chosen):
        raise ConfigError(f"{where}: expected a non-empty list of integers, got {chosen}")
    out_of_range = [i for i in chosen if not 0 <= i <= num_layers]
    if out_of_range:
        raise ConfigError(
            f"{where}: hidden-state indices {out_of_range} out of range; the model has "
            f"num_hidden_layers={num_layers}, so indices 0..{num_layers} exist "
            f"(0 = embedding output)"
        )
    if any(b <= a for a, b in itertools.pairwise(chosen)):
        raise ConfigError(f"{where}: indices must be strictly increasing, got {chosen}")
    return chosen


def pool(hidden_states: Sequence[torch.Tensor], layers: Sequence[int], rule: str) -> torch.Tensor:
    """Pooled vectors ``[B, len(layers), D]`` in float32 from ``hidden_states`` (each
    ``[B, tokens, D]``, any float dtype) by ``rule`` (a key of :data:`POOLING_RULES`)."""
    # deferred: torch is not in the workflow env; the Snakefile imports this via encoders.load
    import torch

    pooled = []
    for index in layers:
        states = hidden_states[index]
        if rule == "cls":
            vector = states[:, 0].float()
        elif rule == "mean":
            vector = states.float().mean(dim=1)
        elif rule == "cls_dist":
            vector = (states[:, 0].float() + states[:, 1].float()) / 2
        else:
            raise ValueError(f"unknown pooling rule {rule!r}")
        pooled.append(vector)
    return torch.stack(pooled, dim=1)
