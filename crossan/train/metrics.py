"""Full-ranking evaluation: ranks, HR@K and NDCG@K (``method-facts.md``, "Data and evaluation").

Conventions:

* every item ``1..n_items`` is a candidate; the padding item 0 and the user's history
  items are excluded (they neither count against the target nor can be hit);
* a target that also occurs earlier in the user's history (a repeat, ``repeat_targets``):
  ``"miss"`` (default, IISAN ``Code_Cached/data_utils/metrics.py``, which sets every history
  item's score to ``-inf`` before ranking) masks it with the rest of the history, so it ranks
  last, ``rank = n_items``, a miss at every ``K < n_items``; ``"ranked"`` (our earlier rule)
  keeps it a candidate and ranks it like any other target;
* ties are resolved pessimistically: ``rank = 1 + #{other candidates with score >= the
  target's}``. Any optimistic or "strictly greater only" rule gives a model that scores
  every item equally rank 1 and HR@10 = 1; here it gets the worst rank instead, and
  small ties cost a model only the tied positions;
* ranks are 1-based, ``HR@K = [rank <= K]`` and ``NDCG@K = 1 / log2(rank + 1)`` if
  ``rank <= K`` else 0 (one relevant item, so the ideal DCG is 1).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl
import torch
from torch import Tensor

from crossan.atomic import atomic_output
from crossan.runs.settings import CONVENTIONS

REPEAT_TARGETS: tuple[str, ...] = CONVENTIONS["repeat_targets"]


def rank_of_targets(scores: Tensor, targets: Tensor, history: Tensor, repeat_targets: str = REPEAT_TARGETS[0]) -> Tensor:
    """1-based pessimistic rank of each user's target among the candidate items.

    Args:
        scores: ``[U, n_items + 1]`` score of every item id (column 0 = padding).
        targets: ``[U]`` long, target item id in ``1..n_items``.
        history: ``[U, H]`` long, items to exclude per user, 0 = padding.
        repeat_targets: ``"miss"``: a target found in its history ranks ``n_items`` (masked
            with the history, as IISAN); ``"ranked"``: it is ranked like any target.

    Returns:
        ``[U]`` long ranks in ``1..n_items``.
    """
    if repeat_targets not in REPEAT_TARGETS:
        raise ValueError(f"repeat_targets must be one of {REPEAT_TARGETS}, got {repeat_targets!r}")
    if (
        scores.dim() != 2
        or targets.shape != scores.shape[:1]
        or history.dim() != 2
        or history.shape[0] != scores.shape[0]
    ):
        raise ValueError(
            f"expected scores [U, n+1], targets [U], history [U, H]; got {tuple(scores.shape)}, "
            f"{tuple(targets.shape)}, {tuple(history.shape)}"
        )
    n_columns = scores.shape[1]
    if targets.numel() and (targets.min() < 1 or targets.max() >= n_columns):
        raise ValueError(f"targets must be item ids in 1..{n_columns - 1}")
    if torch.isnan(scores).any():
        # NaN compares false with everything, which would silently give rank 1.
        raise ValueError("scores contain NaN: the model or its cached features are broken")

    users = torch.arange(scores.shape[0], device=scores.device)
    candidates = torch.ones_like(scores, dtype=torch.bool)
    candidates[:, 0] = False
    candidates.scatter_(1, history, False)  # history padding 0 hits column 0, already excluded
    candidates[users, targets] = False  # "other" candidates; also undoes a history mask on the target
    target_scores = scores[users, targets].unsqueeze(1)
    at_least_as_good = (scores >= target_scores) & candidates
    ranks = 1 + at_least_as_good.sum(dim=1)
    if repeat_targets == "miss":
        # IISAN's score[history] = -inf hits the target too: with pessimistic ties it ranks
        # behind every other item, masked or not.
        repeated = (history == targets.unsqueeze(1)).any(dim=1)
        ranks = torch.where(repeated, torch.full_like(ranks, n_columns - 1), ranks)
    return ranks


def hit_ndcg(ranks: Tensor, ks: Sequence[int] = (10, 20)) -> dict[str, Tensor]:
    """Per-user ``HR@K`` and ``NDCG@K`` for each ``K`` in ``ks``.

    Args:
        ranks: ``[U]`` 1-based ranks.
        ks: cut-offs.

    Returns:
        ``{"HR@K": [U], "NDCG@K": [U], ...}`` float64 tensors, keys ordered by ``ks``.
    """
    ranks = ranks.to(torch.float64)
    gains = 1.0 / torch.log2(ranks + 1.0)
    out: dict[str, Tensor] = {}
    for k in ks:
        hit = ranks <= k
        out[f"HR@{k}"] = hit.to(torch.float64)
        out[f"NDCG@{k}"] = torch.where(hit, gains, torch.zeros_like(gains))
    return out


def summarize(per_user: Mapping[str, Tensor | np.ndarray]) -> dict[str, float]:
    """Mean over users of each per-user metric vector (``[U]`` each)."""
    summary: dict[str, float] = {}
    for name, values in per_user.items():
        array = values.detach().cpu().numpy() if isinstance(values, Tensor) else np.asarray(values)
        if array.size == 0:
            raise ValueError(f"no users to average for {name}")
        summary[name] = float(array.astype(np.float64).mean())
    return summary


@torch.no_grad()
def evaluate_full_ranking(
    user_states: Tensor,
    item_embeddings: Tensor,
    targets: Tensor,
    history: Tensor,
    ks: Sequence[int] = (10, 20),
    chunk_users: int = 1024,
    repeat_targets: str = REPEAT_TARGETS[0],
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Score all items for every user, chunk by chunk, and compute HR@K / NDCG@K.

    Memory is bounded by ``chunk_users * (n_items + 1)`` scores (plus a bool mask).

    Args:
        user_states: ``[U, d]`` final sequence representation per user.
        item_embeddings: ``[n_items + 1, d]`` all item embeddings, computed once by the
            caller for this evaluation (row 0 = padding).
        targets: ``[U]`` target item ids; history: ``[U, H]`` items to exclude, 0 = padding.
        ks: cut-offs.
        chunk_users: users scored at once.
        repeat_targets: ``"miss"`` or ``"ranked"``, see :func:`rank_of_targets`.

    Returns:
        ``(summary, per_user)``: ``summary`` maps ``"HR@K"``/``"NDCG@K"`` to the mean over
        users; ``per_user`` maps ``"rank"`` and the same metric names to ``[U]`` numpy arrays.
    """
    if chunk_users < 1:
        raise ValueError(f"chunk_users must be >= 1, got {chunk_users}")
    if (
        user_states.dim() != 2
        or item_embeddings.dim() != 2
        or user_states.shape[1] != item_embeddings.shape[1]
    ):
        raise ValueError(
            f"expected user_states [U, d] and item_embeddings [n_items + 1, d], got "
            f"{tuple(user_states.shape)} and {tuple(item_embeddings.shape)}"
        )
    device = user_states.device
    targets = targets.to(device)
    history = history.to(device)
    items_t = item_embeddings.to(device=device, dtype=user_states.dtype).T
    ranks = [
        rank_of_targets(
            user_states[start : start + chunk_users] @ items_t,
            targets[start : start + chunk_users],
            history[start : start + chunk_users],
            repeat_targets,
        )
        for start in range(0, user_states.shape[0], chunk_users)
    ]
    all_ranks = torch.cat(ranks) if ranks else torch.empty(0, dtype=torch.long, device=device)
    metrics = hit_ndcg(all_ranks, ks)
    per_user = {"rank": all_ranks.cpu().numpy()} | {name: v.cpu().numpy() for name, v in metrics.items()}
    return summarize(metrics), per_user


def save_per_user(
    path: str | os.PathLike[str],
    user_index: Sequence | np.ndarray | Tensor,
    per_user: Mapping[str, np.ndarray | Tensor],
) -> None:
    """Write one parquet row per user: a ``user`` column then one column per metric.

    ``user_index[i]`` identifies the user of row ``i`` in every ``per_user`` vector, so two
    methods' files can be joined on ``user`` for paired t-tests. Written atomically.
    """
    users = user_index.cpu().numpy() if isinstance(user_index, Tensor) else np.asarray(user_index)
    columns: dict[str, np.ndarray] = {"user": users}
    for name, values in per_user.items():
        array = values.detach().cpu().numpy() if isinstance(values, Tensor) else np.asarray(values)
        if array.shape != users.shape:
            raise ValueError(f"per-user {name} has shape {array.shape}, user_index has {users.shape}")
        if name == "user":
            raise ValueError("'user' is reserved for the user_index column")
        columns[name] = array
    frame = pl.DataFrame(columns)
    with atomic_output(path) as tmp:
        frame.write_parquet(tmp)


def metrics_by_bucket(
    per_user: Mapping[str, np.ndarray | Tensor],
    targets: np.ndarray | Tensor,
    item_bucket: np.ndarray,
    buckets: Sequence[str] = ("head", "torso", "tail"),
    metrics: Sequence[str] = ("HR@10", "NDCG@10"),
) -> dict[str, dict[str, float | int | None]]:
    """Mean per-user ``metrics`` over the users whose target falls in each bucket.

    Args:
        per_user: the per-user vectors :func:`evaluate_full_ranking` returns (``[U]`` each).
        targets: ``[U]`` target item id of each user, in the same order.
        item_bucket: ``[n_items + 1]`` bucket index into ``buckets`` per item id.

    Returns:
        ``{bucket: {"users": n, "HR@10": mean, "NDCG@10": mean}}``; a bucket without test
        users has ``users: 0`` and ``None`` metrics.
    """
    def array(values: np.ndarray | Tensor) -> np.ndarray:
        return values.detach().cpu().numpy() if isinstance(values, Tensor) else np.asarray(values)

    target_bucket = np.asarray(item_bucket)[array(targets).astype(np.int64)]
    out: dict[str, dict[str, float | int | None]] = {}
    for index, name in enumerate(buckets):
        chosen = target_bucket == index
        users = int(chosen.sum())
        out[name] = {"users": users} | {
            metric: (float(array(per_user[metric]).astype(np.float64)[chosen].mean()) if users else None)
            for metric in metrics
        }
    return out
