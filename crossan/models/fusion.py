"""Fusions of the towers' vectors into one item embedding (paper Table 5).

Every fusion maps ``towers: [N, n, d]`` (``n`` tower outputs of size ``d`` per item) and an
optional availability mask ``available: bool[N, n]`` to ``[N, d]``.

Missing media: a tower whose modality is missing for an item (its cached states are zero) is
dropped for that item. The gated fusions give it weight 0 and renormalise over the
available towers (MOMEF keeps ``min(k, available)`` experts); concat zeroes its slot. An
item with no available tower at all is treated as if every tower were available (its
embedding then comes from the zero states alone), so no row is ever undefined.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from crossan.runs.vocabulary import FUSIONS


def resolve_available(available: Tensor | None, towers: Tensor) -> Tensor:
    """``bool[N, n]``; ``None`` -> all True; rows with nothing available -> all True."""
    if available is None:
        return torch.ones(towers.shape[:2], dtype=torch.bool, device=towers.device)
    available = available.to(device=towers.device, dtype=torch.bool)
    return available | ~available.any(dim=1, keepdim=True)


def masked_softmax(scores: Tensor, keep: Tensor) -> Tensor:
    """Softmax over the last axis restricted to ``keep`` (other entries exactly 0)."""
    scores = scores.masked_fill(~keep, float("-inf"))
    return torch.softmax(scores, dim=-1).masked_fill(~keep, 0.0)


class ConcatFusion(nn.Module):
    """``Linear(n*d -> d)`` over the concatenated towers (IISAN's fusion)."""

    def __init__(self, n_towers: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(n_towers * dim, dim)

    def forward(self, towers: Tensor, available: Tensor | None = None) -> Tensor:
        available = resolve_available(available, towers)
        towers = towers * available[..., None].to(towers.dtype)
        return self.proj(towers.flatten(1))


class StaticGatedFusion(nn.Module):
    """One learnable logit per tower, softmax (the same weights for every item); ``n`` params."""

    def __init__(self, n_towers: int, dim: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(n_towers))

    def weights(self, towers: Tensor, available: Tensor | None = None) -> Tensor:
        """``[N, n]``, each row sums to 1 over the available towers."""
        available = resolve_available(available, towers)
        return masked_softmax(self.logits.expand(available.shape), available)

    def forward(self, towers: Tensor, available: Tensor | None = None) -> Tensor:
        return torch.einsum("nm,nmd->nd", self.weights(towers, available), towers)


class DynamicGatedFusion(nn.Module):
    """Per-item softmax weights from ``Linear(n*d -> n)`` over the concatenated towers.

    The weighted sum is over the tower vectors themselves (no experts, no top-k): Table 5's
    D-Gated baseline. MOMEF with ``topk = n`` is the "experts, no selection" variant.
    """

    def __init__(self, n_towers: int, dim: int) -> None:
        super().__init__()
        self.gate = nn.Linear(n_towers * dim, n_towers)

    def weights(self, towers: Tensor, available: Tensor | None = None) -> Tensor:
        """``[N, n]``, each row sums to 1 over the available towers."""
        available = resolve_available(available, towers)
        return masked_softmax(self.gate(towers.flatten(1)), available)

    def forward(self, towers: Tensor, available: Tensor | None = None) -> Tensor:
        return torch.einsum("nm,nmd->nd", self.weights(towers, available), towers)


class MOMEF(nn.Module):
    """Mixture of Modality Expert Fusion (paper eq. 6).

    Each tower ``m`` has an expert ``f_m = Linear(d -> d)``; a gate network
    ``Linear(n*d -> n)`` scores the towers from their concatenation; the top-``k`` scores of
    each item are kept and renormalised with a softmax over the kept ones (the rest get weight
    exactly 0); ``e = sum_{m in TopK} w_m f_m(tower_m)``. Parameters:
    ``n*(d*d + d) + n*d*n + n`` (17,668 for four towers of 64).
    """

    def __init__(self, n_towers: int, dim: int, topk: int = 2) -> None:
        super().__init__()
        if not 1 <= topk <= n_towers:
            raise ValueError(f"MOMEF top-k must be in 1..{n_towers}, got {topk}")
        self.topk = topk
        self.experts = nn.ModuleList(nn.Linear(dim, dim) for _ in range(n_towers))
        self.gate = nn.Linear(n_towers * dim, n_towers)

    def weights(self, towers: Tensor, available: Tensor | None = None) -> Tensor:
        """``[N, n]``: ``min(k, available)`` nonzero entries per row, summing to 1."""
        available = resolve_available(available, towers)
        scores = self.gate(towers.flatten(1)).masked_fill(~available, float("-inf"))
        top = scores.topk(self.topk, dim=-1).indices
        keep = torch.zeros_like(available).scatter(1, top, True) & available
        return masked_softmax(scores, keep)

    def forward(self, towers: Tensor, available: Tensor | None = None) -> Tensor:
        expert_out = torch.stack([expert(towers[:, m]) for m, expert in enumerate(self.experts)], dim=1)
        return torch.einsum("nm,nmd->nd", self.weights(towers, available), expert_out)


def build_fusion(name: str, n_towers: int, dim: int, topk: int = 2) -> nn.Module:
    """``name`` in :data:`FUSIONS` -> the fusion module over ``n_towers`` vectors of ``dim``."""
    if name == "momef":
        return MOMEF(n_towers, dim, topk=topk)
    if name == "dynamic":
        return DynamicGatedFusion(n_towers, dim)
    if name == "static":
        return StaticGatedFusion(n_towers, dim)
    if name == "concat":
        return ConcatFusion(n_towers, dim)
    raise ValueError(f"unknown fusion {name!r}; choose from {', '.join(FUSIONS)}")
