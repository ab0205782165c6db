"""Full-ranking evaluation of a sequential model: every item's embedding once, then every user.

Every item's embedding is computed once per evaluation, in chunks, under
``torch.inference_mode`` with ``model.eval()``; row 0 (padding) is set to zero, as
``TrainBatch.lookup`` does in training. The user state is the sequence encoder's output at
the last position of the left-padded history. Ranking and metrics are
:func:`crossan.train.metrics.evaluate_full_ranking`'s (history masked, ties pessimistic).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from crossan.progress import Progress
from crossan.runs.vocabulary import KS
from crossan.train.inputs import EvalSplit, SequenceData, eval_batches
from crossan.train.metrics import evaluate_full_ranking

ITEM_CHUNK = 4096  # items encoded at once during evaluation
USER_CHUNK = 1024  # users encoded / scored at once during evaluation

Evaluation = tuple[dict[str, float], dict[str, np.ndarray]]
"""``(summary, per_user)``: the split's mean metrics and each user's rank and metrics."""


def all_item_embeddings(encode: Callable[[Tensor], Tensor], n_items: int, device: torch.device,
                        chunk: int = ITEM_CHUNK, progress: Progress | None = None) -> Tensor:
    """``[n_items + 1, d]`` embeddings of every item id, row 0 (padding) zero. ``progress``:
    counts the ``n_items + 1`` ids as they are encoded."""
    ids = torch.arange(n_items + 1, device=device)
    parts = []
    for start in range(0, n_items + 1, chunk):
        parts.append(encode(ids[start : start + chunk]))
        if progress is not None:
            progress.update(len(parts[-1]))
    table = torch.cat(parts)
    table[0] = 0
    return table


def evaluate_split(model: nn.Module, table: Tensor, split: EvalSplit, device: torch.device,
                   repeat_targets: str) -> Evaluation:
    """Full-ranking metrics of ``split`` given every item's embedding ``table``
    (``repeat_targets``: see :func:`~crossan.train.metrics.rank_of_targets`)."""
    users = []
    for part in eval_batches(split, USER_CHUNK, device):
        states = model.encode_sequences(table[part.history], part.history != 0)
        users.append(states[:, -1])
    return evaluate_full_ranking(torch.cat(users), table, split.target, split.full_history, ks=KS,
                                 chunk_users=USER_CHUNK, repeat_targets=repeat_targets)


def evaluate_model(
    model: nn.Module, encode: Callable[[Tensor], Tensor], data: SequenceData, device: torch.device,
    repeat_targets: str, splits: tuple[str, ...] = ("valid",), item_chunk: int = ITEM_CHUNK,
    progress: Progress | None = None,
) -> dict[str, Evaluation]:
    """Evaluate ``splits`` of ``data`` with item embeddings computed once for all of them
    (``encode``: item ids ``[N] -> [N, d]``, ``item_chunk`` items at a time; ``progress``
    counts the ``n_items + 1`` ids encoded)."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            table = all_item_embeddings(encode, data.n_items, device, item_chunk, progress)
            return {name: evaluate_split(model, table, getattr(data, name), device, repeat_targets)
                    for name in splits}
    finally:
        model.train(was_training)
