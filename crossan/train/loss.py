"""In-batch debiased cross entropy (paper eq. 7-8, ``method-facts.md`` "Stage 2").

Every non-padding position ``(b, l)`` of a batch is one classification row. Its candidate
columns are the batch's own target embeddings (all ``B * L`` positions), scored
``<h_{b,l}, e_j> - log p(item_j)`` with ``p`` the item's popularity in the training split;
the positive is the row's own column ``(b, l)``.

Masking conventions (a masked column simply has no term in the softmax denominator):

* padding columns (target id 0) never take part. They are dropped rather than filled with
  ``-inf``, which is equivalent and keeps a garbage or non-finite padding embedding from
  reaching the gradients;
* a column whose item id appears anywhere in user ``b``'s sequence is masked for every
  row of user ``b`` (paper: ``j not in I_u``), whichever user the column came from;
* a column whose item id equals the row's positive item is masked even if the caller's
  ``sequences`` do not contain that target: it is the same item as the positive, so
  treating it as a negative would be a false negative. (With ``sequences`` holding the
  targets, as specified, this already follows from the previous rule.)
* the row's own positive column ``(b, l)`` is never masked.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from crossan.errors import CrossanError


class NonFiniteLossError(FloatingPointError, CrossanError):
    """The training loss became NaN or infinite."""


def log_popularity_from_counts(counts: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Log of add-one-smoothed item popularity.

    Args:
        counts: ``[n_items + 1]`` interaction counts per item id in the training split
            (index 0 = padding; its count is ignored).
        dtype: floating dtype of the result.

    Returns:
        ``[n_items + 1]`` ``log p(i)`` with ``p(i) = (count_i + 1) / sum_{j>=1} (count_j + 1)``.
        Add-one smoothing keeps items never seen in training (possible: validation and test
        targets are not training interactions) finite instead of ``log 0 = -inf``, which
        would give them an infinite logit. Entry 0 is set like an item with count 0 so it
        is finite; the loss never uses it.
    """
    if counts.dim() != 1 or counts.numel() < 2:
        raise ValueError(
            f"counts must be 1-D [n_items + 1] with n_items >= 1, got shape {tuple(counts.shape)}"
        )
    if (counts < 0).any():
        raise ValueError("counts must be non-negative")
    smoothed = counts.to(torch.float64) + 1.0
    smoothed[0] = 1.0
    total = smoothed[1:].sum()
    return torch.log(smoothed / total).to(dtype)


def debiased_in_batch_loss(
    user_states: Tensor,
    targets: Tensor,
    target_embeddings: Tensor,
    sequences: Tensor,
    log_popularity: Tensor,
    reduction: str = "mean",
) -> Tensor:
    """In-batch debiased cross entropy over every non-padding position.

    Args:
        user_states: ``[B, L, d]`` sequence-encoder outputs ``h_{b,l}``.
        targets: ``[B, L]`` long, next-item id per position, 0 = padding.
        target_embeddings: ``[B, L, d]`` item embeddings of ``targets``.
        sequences: ``[B, S]`` long, each user's full item-id sequence (inputs and
            targets), 0 = padding.
        log_popularity: ``[n_items + 1]`` ``log p(i)`` from the training split.
        reduction: ``"mean"`` (scalar, averaged over non-padding positions) or
            ``"none"`` (``[B, L]`` per-position losses, 0 at padding).

    Returns:
        ``[]`` or ``[B, L]`` loss, see ``reduction``.
    """
    _check_shapes(user_states, targets, target_embeddings, sequences)
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    batch, length, dim = user_states.shape
    flat_targets = targets.reshape(-1)
    valid = (flat_targets != 0).nonzero(as_tuple=True)[0]
    if valid.numel() == 0:
        raise ValueError("the batch has no non-padding target positions")

    # Rows and columns are the same set of valid positions, so row r's positive is column r.
    items = flat_targets[valid]  # [R]
    rows = user_states.reshape(-1, dim)[valid]  # [R, d]
    columns = target_embeddings.reshape(-1, dim)[valid]  # [R, d]
    row_users = valid // length  # [R]

    logits = rows @ columns.T - log_popularity.to(device=rows.device, dtype=rows.dtype)[items]
    masked = _negative_mask(items, row_users, sequences)
    logits = logits.masked_fill(masked, float("-inf"))
    per_row = torch.logsumexp(logits, dim=1) - logits.diagonal()  # [R]

    if reduction == "mean":
        return per_row.mean()
    out = per_row.new_zeros(batch * length)
    return out.index_copy(0, valid, per_row).reshape(batch, length)


def _negative_mask(items: Tensor, row_users: Tensor, sequences: Tensor) -> Tensor:
    """``[R, R]`` bool, True where column c is excluded from row r's softmax.

    ``items``: ``[R]`` item id per valid position; ``row_users``: ``[R]`` its user index;
    ``sequences``: ``[B, S]``.
    """
    # [B, R]: does column c's item occur in user b's sequence?
    in_sequence = (sequences.unsqueeze(-1) == items.view(1, 1, -1)).any(dim=1)
    masked = in_sequence[row_users] | (items.unsqueeze(0) == items.unsqueeze(1))
    masked.fill_diagonal_(False)
    return masked


def _check_shapes(user_states: Tensor, targets: Tensor, target_embeddings: Tensor, sequences: Tensor) -> None:
    if user_states.dim() != 3:
        raise ValueError(f"user_states must be [B, L, d], got shape {tuple(user_states.shape)}")
    if target_embeddings.shape != user_states.shape:
        raise ValueError(
            f"target_embeddings {tuple(target_embeddings.shape)} must match user_states {tuple(user_states.shape)}"
        )
    if targets.shape != user_states.shape[:2]:
        raise ValueError(f"targets {tuple(targets.shape)} must be [B, L] = {tuple(user_states.shape[:2])}")
    if sequences.dim() != 2 or sequences.shape[0] != user_states.shape[0]:
        raise ValueError(
            f"sequences must be [B, S] with B = {user_states.shape[0]}, got {tuple(sequences.shape)}"
        )


def check_finite(loss: Tensor | float, epoch: int, step: int) -> None:
    """Raise :class:`NonFiniteLossError` if ``loss`` is NaN or infinite.

    Converting to a Python float synchronises with the device; the trainer calls this once
    per step, where it logs the loss anyway.
    """
    value = float(loss)
    if not math.isfinite(value):
        raise NonFiniteLossError(
            f"non-finite loss ({value}) at epoch {epoch} step {step}: "
            "lower the learning rate or check the cached features"
        )
