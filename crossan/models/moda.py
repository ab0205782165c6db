"""MoDA, modality-disentangled adaptation (issue 17; SDA, Rao et al. 2025), for a shared tower.

:class:`LowRankExperts` is the low-rank update of one shared linear map ``W x``:

    delta(x, t) = sum_e g_e(t) * (alpha / r) * B_e A_e x,    g(t) = softmax(Linear(Embedding(t)))

with ``t`` the sample's modality id. The total rank ``r`` is split evenly over ``E`` experts
(``A_e: [r/E, in]``, ``B_e: [out, r/E]``), so the expert pathway costs as much as one rank-``r``
LoRA; ``alpha / r`` uses the *total* rank, as in the issue. ``A ~ N(0, 0.01)``
(std 0.01), ``B = 0``: at step 0 every update is exactly zero, and so are the gradients of
``A`` and of the gate (both reach the loss only through ``B``); only ``B`` moves on the first
step.

:class:`SharedMoDAAdapter` is the Houlsby bottleneck of :class:`crossan.models.adapters.Adapter`
(``x + up(relu(down(x)))``, the same module, shared by all modalities) with one
:class:`LowRankExperts` on each of its two projections:

    h = relu(down(x) + delta_down(x, t)),    out = x + up(h) + delta_up(h, t)

So one adapter stack serves every modality, and adding a modality adds only one gate
embedding row per expert set (``gate_dim`` parameters) instead of a whole tower.
With ``B = 0`` the output equals the bottleneck alone bit for bit.

:class:`SharedMoDASideAdapters` is CROSSAN with that stack: the same cross-modal gates per
tower and layer (:class:`crossan.models.adapters.CrossModalSideAdapters`), but one
:class:`SharedMoDAAdapter` per layer and one head serve every tower, each tower's rows
carrying its modality id. It is the training method ``crossan-moda``
(:func:`crossan.models.recommender.build_model`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crossan.models.adapters import (
    LAYER0_PREVIOUS,
    Adapter,
    CrossModalGating,
    TowerHead,
    check_layer0_previous,
    initial_previous,
    mix_sources,
    stack_states,
)


class LowRankExperts(nn.Module):
    """Modality-gated low-rank experts: ``x [B, in]``, ``modality [B]`` (long) -> ``[B, out]``.

    Parameters (``r`` total rank, ``M`` modalities, ``g`` gate embedding size, ``E`` experts):
    ``A: [E, r/E, in]``, ``B: [E, out, r/E]``, gate ``Embedding(M, g)`` and ``Linear(g, E)``:

        count = r * (in + out) + M * g + g * E + E
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        rank: int,
        n_experts: int,
        n_modalities: int,
        alpha: float | None = None,
        gate_dim: int = 16,
    ) -> None:
        super().__init__()
        if n_experts < 1 or rank < n_experts or rank % n_experts:
            raise ValueError(f"rank must be a positive multiple of n_experts, got rank={rank}, n_experts={n_experts}")
        self.scale = (rank if alpha is None else alpha) / rank
        per_expert = rank // n_experts
        self.A = nn.Parameter(torch.empty(n_experts, per_expert, in_dim))
        self.B = nn.Parameter(torch.zeros(n_experts, out_dim, per_expert))
        nn.init.normal_(self.A, mean=0.0, std=0.01)
        self.gate_embedding = nn.Embedding(n_modalities, gate_dim)
        self.gate = nn.Linear(gate_dim, n_experts)

    @staticmethod
    def count(in_dim: int, out_dim: int, rank: int, n_experts: int, n_modalities: int, gate_dim: int = 16) -> int:
        """Trainable parameters: ``r * (in + out) + M * g + g * E + E`` (class docstring)."""
        return rank * (in_dim + out_dim) + n_modalities * gate_dim + gate_dim * n_experts + n_experts

    def gates(self, modality: Tensor) -> Tensor:
        """Gate weights ``[B, E]`` for modality ids ``[B]``; each row sums to 1."""
        return torch.softmax(self.gate(self.gate_embedding(modality)), dim=-1)

    def forward(self, x: Tensor, modality: Tensor) -> Tensor:
        low = torch.einsum("eri,bi->ber", self.A, x)  # [B, E, r/E]
        per_expert = torch.einsum("eor,ber->beo", self.B, low)  # [B, E, out]
        g = self.gates(modality)  # [B, E]
        return self.scale * torch.einsum("be,beo->bo", g, per_expert)


class SharedMoDAAdapter(nn.Module):
    """Shared bottleneck adapter plus modality-gated low-rank experts on both projections.

    ``x [B, D]``, ``modality [B]`` (long ids in ``[0, n_modalities)``) -> ``[B, D]`` (module
    docstring). ``self.bottleneck`` is a plain :class:`Adapter`, initialised as the other
    towers' adapters (N(0, 0.01) weights, zero biases). Parameters (``h`` hidden):

        count = (2*D*h + h + D) + 2 * r * (D + h) + 2 * (M * g + g * E + E)
    """

    def __init__(
        self,
        dim: int,
        hidden: int,
        rank: int,
        n_experts: int,
        n_modalities: int,
        alpha: float | None = None,
        gate_dim: int = 16,
    ) -> None:
        super().__init__()
        self.bottleneck = Adapter(dim, hidden)
        self.down_experts = LowRankExperts(dim, hidden, rank, n_experts, n_modalities, alpha, gate_dim)
        self.up_experts = LowRankExperts(hidden, dim, rank, n_experts, n_modalities, alpha, gate_dim)

    @staticmethod
    def count(dim: int, hidden: int, rank: int, n_experts: int, n_modalities: int, gate_dim: int = 16) -> int:
        """Trainable parameters (class docstring formula)."""
        adapter = 2 * dim * hidden + hidden + dim
        experts = LowRankExperts.count(dim, hidden, rank, n_experts, n_modalities, gate_dim)
        experts += LowRankExperts.count(hidden, dim, rank, n_experts, n_modalities, gate_dim)
        return adapter + experts

    def forward(self, x: Tensor, modality: Tensor) -> Tensor:
        if x.dim() != 2 or modality.shape != x.shape[:1]:
            raise ValueError(f"expected x [B, D] and modality [B], got {tuple(x.shape)} and {tuple(modality.shape)}")
        h = F.relu(self.bottleneck.down(x) + self.down_experts(x, modality))  # [B, h]
        return x + (self.bottleneck.up(h) + self.up_experts(h, modality))


class SharedMoDASideAdapters(CrossModalGating, nn.Module):
    """CROSSAN's cross-modal gating over one shared tower of MoDA adapters (module docstring).

    Input ``states[m]: [N, L, D]``; output ``[N, M, item_dim]``, as
    :class:`~crossan.models.adapters.CrossModalSideAdapters`. Gate logits ``[M, L, M + 1]``
    (:class:`~crossan.models.adapters.CrossModalGating`, always cross-modal) start at 0. Parameters (``h`` hidden, ``d`` item_dim):

        count = L * SharedMoDAAdapter.count(D, h, r, E, M, g) + (D*D + D + D*d + d) + M*L*(M + 1)

    against CROSSAN's ``M * (L * (2*D*h + h + D) + D*D + D + D*d + d) + M*L*(M + 1)``.
    """

    def __init__(
        self,
        modalities: tuple[str, ...],
        dim: int,
        hidden: int,
        n_layers: int,
        item_dim: int,
        rank: int = 8,
        n_experts: int = 4,
        gate_dim: int = 16,
        temperature: float = 0.1,
        layer0_previous: str = LAYER0_PREVIOUS[0],
    ) -> None:
        super().__init__()
        self.init_gates(modalities, n_layers, cross=True, temperature=temperature)
        self.n_layers, self.dim = n_layers, dim
        self.layer0_previous = check_layer0_previous(layer0_previous)
        n = len(modalities)
        self.adapters = nn.ModuleList(
            SharedMoDAAdapter(dim, hidden, rank, n_experts, n, gate_dim=gate_dim) for _ in range(n_layers)
        )
        self.head = TowerHead(dim, item_dim)
        self.register_buffer("modality_ids", torch.arange(n), persistent=False)

    @staticmethod
    def count(n_modalities: int, dim: int, hidden: int, n_layers: int, item_dim: int,
              rank: int = 8, n_experts: int = 4, gate_dim: int = 16) -> int:
        """Trainable parameters (class docstring formula)."""
        adapter = SharedMoDAAdapter.count(dim, hidden, rank, n_experts, n_modalities, gate_dim)
        head = dim * dim + dim + dim * item_dim + item_dim
        return n_layers * adapter + head + n_modalities * n_layers * (n_modalities + 1)

    def modality_towers(self) -> tuple[dict[str, nn.Module], list[nn.Module]]:
        """``(towers of one modality each, by modality; towers serving every modality)``, for
        optimiser groups that treat them differently (``lr_groups: iisan``)."""
        return {}, [self]

    def forward(self, states: dict[str, Tensor]) -> Tensor:
        hidden = stack_states(states, self.modalities, self.n_layers, self.dim, self.gate_logits.dtype)
        n, m = hidden.shape[:2]
        ids = self.modality_ids.repeat(n)  # tower of each row of x.reshape(N*M, D)
        weights = self.gate_weights()  # [M, L, M + 1]
        prev = initial_previous(hidden, self.layer0_previous)  # [N, M, D]
        for k, adapter in enumerate(self.adapters):
            x = mix_sources(weights[:, k], hidden[:, :, k], prev, self.cross)  # [N, M, D]
            prev = adapter(x.reshape(n * m, self.dim), ids).reshape(n, m, self.dim)
        return self.head(prev)
