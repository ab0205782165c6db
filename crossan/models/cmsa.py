"""CMSA, cross-modal structural alignment (issue 17; SDA, Rao et al. 2025), and plain InfoNCE.

For one batch of ``n`` items with two modality embeddings ``X, Y: [n, D]`` (row ``i`` of both
is the same item), both L2-normalised row-wise:

* logits ``Z = X Y^T / tau``, ``[n, n]``;
* soft targets ``T = row_softmax(tau * S)`` with ``S = (X X^T + Y Y^T) / 2``: each modality's
  own similarity structure is the teacher. Note the *same* ``tau`` multiplies here while it
  divides the logits (as in the issue and SDA's ``Contrastive_Loss``): a larger ``tau`` softens
  the student and sharpens the teacher;
* loss ``= mean_i [ CE(T_i, softmax(Z_i)) + CE(T_i, softmax(Z^T_i)) ] / 2`` with the soft
  cross-entropy ``CE(t, p) = -sum_j t_j log p_j``.

Because ``S`` is symmetric, ``row_softmax(tau * S^T) = T``, so both directions use ``T``'s
rows as their targets. (SDA's code takes ``T^T`` for the second direction, whose rows are
columns of a row-stochastic matrix and in general do not sum to 1; we keep the proper
distribution.) Gradients flow into the teacher as well, as in SDA; ``detach_targets=True``
stops them.

Normalisation: SDA's loss class itself does not normalise (it receives pooled LVLM
embeddings); we always L2-normalise, so the dot products are cosines in ``[-1, 1]`` and
``tau`` means the same thing whatever the towers' output scale.

Temperature: learnable, stored as ``log_tau`` (``tau = exp(log_tau)`` stays positive whatever
the optimiser does), initialised to ``log(3)`` so ``tau = 3`` at step 0. SDA stores ``tau``
raw as ``nn.Parameter([3.])``; the log keeps it from crossing 0 (where ``Z`` would blow up).

Masking: only rows with ``mask[i] = True`` take part (an item whose media was invalid has an
all-zero cached state for that modality and must not act as a negative or a teacher row).
Masked rows are indexed out before anything is computed, so they get exactly zero gradient.
Fewer than two valid rows give an exact ``0`` that is still attached to the graph with
zero (never NaN) gradients, so a training step can always call ``backward``.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crossan.runs.vocabulary import ALIGNMENTS



def soft_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Row-wise ``-sum_j targets[i, j] * log_softmax(logits)[i, j]``; ``[n, n] -> [n]``."""
    return -(targets * F.log_softmax(logits, dim=-1)).sum(dim=-1)


class StructuralAlignmentLoss(nn.Module):
    """CMSA loss (``kind="cmsa"``) or symmetric InfoNCE (``kind="infonce"``), module docstring.

    ``forward(x [B, D], y [B, D], mask bool [B] | None) -> scalar``. InfoNCE uses the same
    learnable ``tau`` and logits, with the identity as hard targets.
    """

    def __init__(self, tau_init: float = 3.0, kind: str = "cmsa", detach_targets: bool = False) -> None:
        super().__init__()
        if kind not in ALIGNMENTS:
            raise ValueError(f"kind must be one of {ALIGNMENTS}, got {kind!r}")
        if not tau_init > 0:
            raise ValueError(f"tau_init must be positive, got {tau_init}")
        self.kind = kind
        self.detach_targets = detach_targets
        self.log_tau = nn.Parameter(torch.tensor(math.log(tau_init)))

    @property
    def tau(self) -> Tensor:
        """The temperature, ``exp(log_tau)`` (a 0-d tensor in the graph)."""
        return self.log_tau.exp()

    def forward(self, x: Tensor, y: Tensor, mask: Tensor | None = None) -> Tensor:
        if x.shape != y.shape or x.dim() != 2:
            raise ValueError(f"x and y must both be [B, D], got {tuple(x.shape)} and {tuple(y.shape)}")
        if mask is not None:
            if mask.shape != x.shape[:1] or mask.dtype != torch.bool:
                raise ValueError(f"mask must be bool [{x.shape[0]}], got {mask.dtype} {tuple(mask.shape)}")
            x, y = x[mask], y[mask]  # [n, D]; masked rows leave the graph here
        if x.shape[0] < 2:
            # Exact 0, attached to every input so backward() works and gives zero gradients.
            return x.sum() * 0.0 + y.sum() * 0.0 + self.log_tau * 0.0
        x = F.normalize(x, dim=-1)
        y = F.normalize(y, dim=-1)
        tau = self.tau
        logits = x @ y.T / tau  # [n, n]
        if self.kind == "infonce":
            labels = torch.arange(x.shape[0], device=x.device)
            return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        structure = (x @ x.T + y @ y.T) / 2  # [n, n], symmetric
        targets = torch.softmax(tau * structure, dim=-1)  # [n, n], rows sum to 1
        if self.detach_targets:
            targets = targets.detach()
        per_item = (soft_cross_entropy(logits, targets) + soft_cross_entropy(logits.T, targets)) / 2
        return per_item.mean()


def pairwise_alignment(
    outputs: dict[str, Tensor], masks: dict[str, Tensor], loss_fn: StructuralAlignmentLoss
) -> Tensor:
    """Mean of ``loss_fn`` over every pair of modality tower outputs of one batch's unique items.

    ``outputs[m]: [B, D]`` (row ``i`` = item ``i`` in every modality), ``masks[m]: bool [B]``
    (valid media). Pair ``(a, b)`` (dict order, each unordered pair once) uses the rows valid in
    both, ``masks[a] & masks[b]``. The mean is over the pairs with at least two such rows; if
    none has, the result is an exact 0 attached to the graph (zero gradients). The caller
    should pass each item once (duplicates would be each other's false negatives).
    """
    names = list(outputs)
    if set(names) != set(masks):
        raise KeyError(f"outputs and masks must name the same modalities, got {names} and {list(masks)}")
    losses: list[Tensor] = []
    for a, b in itertools.combinations(names, 2):
        both = masks[a] & masks[b]
        if int(both.sum()) >= 2:
            losses.append(loss_fn(outputs[a], outputs[b], both))
    if not losses:
        zero = loss_fn.log_tau * 0.0
        for name in names:
            zero = zero + outputs[name][masks[name]].sum() * 0.0
        return zero
    return torch.stack(losses).mean()
