"""In-batch debiased cross entropy (paper eq. 7-8, ``method-facts.md`` "Stage 2").

A batch holds each user's training **window**: the last ``L + 1`` items of the training
sequence, left-padded, ``window: [B, L + 1]`` (0 = padding). Position ``(b, l)`` of the
sequence encoder's output, ``h_{b,l}``, predicts ``window[b, l + 1]`` from items ``0..l``;
every position whose input and target are both items is one classification row.

Candidate columns (``negatives``):

* ``"window"`` (default, IISAN ``Code_Cached/model/model.py``): every non-padding item of every
  user's window, the first input item included. IISAN scores each query against the
  embeddings of all ``B * (L + 1)`` window items;
* ``"targets"`` (our earlier rule): only window positions that are some row's target, so a
  user's first window item (an input, never a target) is no candidate.

A column ``j`` is scored ``<h_{b,l}, e_j> - log p(item_j)`` with ``p`` the item's popularity in
the training split (:func:`log_popularity_from_counts`); the positive of row ``(b, l)`` is
column ``(b, l + 1)``. Masking (a masked column simply has no term in the softmax
denominator), the same under both rules:

* padding columns never take part. They are dropped rather than filled with ``-inf``, which is
  equivalent and keeps a garbage or non-finite padding embedding from reaching the gradients;
* a column whose item id appears anywhere in user ``b``'s sequence is masked for every row of
  user ``b`` (paper: ``j not in I_u``), whichever user the column came from;
* a column whose item id equals the row's positive item is masked even if the caller's
  ``sequences`` do not contain that target: it is the same item as the positive, so treating
  it as a negative would be a false negative (with ``sequences`` holding the window, as
  specified, this already follows from the previous rule);
* the row's own positive column ``(b, l + 1)`` is never masked.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from crossan.errors import CrossanError
from crossan.runs.settings import CONVENTIONS

NEGATIVES: tuple[str, ...] = CONVENTIONS["negatives"]
POPULARITY_SMOOTHING: tuple[str, ...] = CONVENTIONS["popularity_smoothing"]


class NonFiniteLossError(FloatingPointError, CrossanError):
    """The training loss became NaN or infinite."""


def log_popularity_from_counts(
    counts: Tensor, dtype: torch.dtype = torch.float32, smoothing: str = "none"
) -> Tensor:
    """Log of item popularity in the training split.

    Args:
        counts: ``[n_items + 1]`` interaction counts per item id in the training split
            (index 0 = padding; its count is ignored).
        dtype: floating dtype of the result.
        smoothing: ``"none"`` (default, IISAN ``Code_Cached/data_utils/preprocess.py``):
            ``p(i) = count_i / sum_{j>=1} count_j``; an item never seen in training gets
            ``log 0 = -inf``, which the loss never reads (every item of a training window has
            a count of at least 1). ``"add-one"`` (our earlier rule):
            ``p(i) = (count_i + 1) / sum_{j>=1} (count_j + 1)``, finite for every item.

    Returns:
        ``[n_items + 1]`` ``log p(i)``. Entry 0 (padding) is 0, i.e. ``p = 1`` as in IISAN's
        list; the loss never uses it.
    """
    if smoothing not in POPULARITY_SMOOTHING:
        raise ValueError(f"smoothing must be one of {POPULARITY_SMOOTHING}, got {smoothing!r}")
    if counts.dim() != 1 or counts.numel() < 2:
        raise ValueError(
            f"counts must be 1-D [n_items + 1] with n_items >= 1, got shape {tuple(counts.shape)}"
        )
    if (counts < 0).any():
        raise ValueError("counts must be non-negative")
    values = counts.to(torch.float64) + (1.0 if smoothing == "add-one" else 0.0)
    total = values[1:].sum()
    if total <= 0:
        raise ValueError("counts are all zero: no training interactions")
    log_p = torch.log(values / total)
    log_p[0] = 0.0
    return log_p.to(dtype)


def debiased_in_batch_loss(
    user_states: Tensor,
    window: Tensor,
    window_embeddings: Tensor,
    sequences: Tensor,
    log_popularity: Tensor,
    negatives: str = NEGATIVES[0],
    reduction: str = "mean",
) -> Tensor:
    """In-batch debiased cross entropy over every row (see the module docstring).

    Args:
        user_states: ``[B, L, d]`` sequence-encoder outputs ``h_{b,l}``.
        window: ``[B, L + 1]`` long, each user's window of item ids, left-padded with 0; the
            encoder's inputs are ``window[:, :-1]`` and row ``(b, l)``'s target is
            ``window[b, l + 1]``.
        window_embeddings: ``[B, L + 1, d]`` item embeddings of ``window``.
        sequences: ``[B, S]`` long, each user's full training sequence, 0 = padding (the
            same-user mask).
        log_popularity: ``[n_items + 1]`` ``log p(i)`` from the training split; must be
            finite for every candidate item.
        negatives: ``"window"`` or ``"targets"`` (module docstring).
        reduction: ``"mean"`` (scalar, averaged over the rows) or ``"none"`` (``[B, L]``
            per-position losses, 0 where there is no row).

    Returns:
        ``[]`` or ``[B, L]`` loss, see ``reduction``.
    """
    _check_shapes(user_states, window, window_embeddings, sequences)
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives must be one of {NEGATIVES}, got {negatives!r}")
    batch, length, dim = user_states.shape
    present = window != 0  # [B, L + 1]
    is_row = present[:, :-1] & present[:, 1:]  # [B, L]: input and target are items
    if negatives == "window":
        is_column = present
    else:  # the positions that are some row's target
        is_column = torch.cat([torch.zeros_like(is_row[:, :1]), is_row], dim=1)
    rows = is_row.reshape(-1).nonzero(as_tuple=True)[0]  # [R], flat index b * L + l
    if rows.numel() == 0:
        raise ValueError("the batch has no non-padding target positions")
    columns = is_column.reshape(-1).nonzero(as_tuple=True)[0]  # [C], flat index b * (L + 1) + j
    width = length + 1
    positive_flat = rows // length * width + rows % length + 1  # row (b, l) -> window (b, l + 1)
    column_of = torch.full((batch * width,), -1, dtype=torch.long, device=window.device)
    column_of[columns] = torch.arange(columns.numel(), device=window.device)
    positive = column_of[positive_flat]  # [R], index into the columns

    ids = window.reshape(-1)
    items = ids[columns]  # [C]
    offsets = log_popularity.to(device=user_states.device, dtype=user_states.dtype)[items]
    if not torch.isfinite(offsets).all():
        bad = items[~torch.isfinite(offsets)].unique().tolist()
        raise ValueError(f"log-popularity is not finite for candidate item(s) {bad[:10]}: "
                         "every item of a training window must have a training count")
    h = user_states.reshape(-1, dim)[rows]  # [R, d]
    e = window_embeddings.reshape(-1, dim)[columns]  # [C, d]
    logits = h @ e.T - offsets  # [R, C]
    masked = _negative_mask(items, ids[positive_flat], rows // length, sequences)
    masked[torch.arange(rows.numel(), device=masked.device), positive] = False
    logits = logits.masked_fill(masked, float("-inf"))
    positive_logits = logits.gather(1, positive[:, None]).squeeze(1)
    per_row = torch.logsumexp(logits, dim=1) - positive_logits  # [R]

    if reduction == "mean":
        return per_row.mean()
    out = per_row.new_zeros(batch * length)
    return out.index_copy(0, rows, per_row).reshape(batch, length)


def _negative_mask(items: Tensor, positives: Tensor, row_users: Tensor, sequences: Tensor) -> Tensor:
    """``[R, C]`` bool, True where column c is excluded from row r's softmax (before the
    positive is unmasked).

    ``items``: ``[C]`` item id per column; ``positives``: ``[R]`` each row's positive item;
    ``row_users``: ``[R]`` each row's user (batch index); ``sequences``: ``[B, S]``.
    """
    # [B, C]: does column c's item occur in user b's sequence?
    in_sequence = (sequences.unsqueeze(-1) == items.view(1, 1, -1)).any(dim=1)
    return in_sequence[row_users] | (items.unsqueeze(0) == positives.unsqueeze(1))


def _check_shapes(user_states: Tensor, window: Tensor, window_embeddings: Tensor, sequences: Tensor) -> None:
    if user_states.dim() != 3:
        raise ValueError(f"user_states must be [B, L, d], got shape {tuple(user_states.shape)}")
    batch, length, dim = user_states.shape
    if window.shape != (batch, length + 1):
        raise ValueError(f"window {tuple(window.shape)} must be [B, L + 1] = {(batch, length + 1)}")
    if window_embeddings.shape != (batch, length + 1, dim):
        raise ValueError(
            f"window_embeddings {tuple(window_embeddings.shape)} must be [B, L + 1, d] = {(batch, length + 1, dim)}"
        )
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
