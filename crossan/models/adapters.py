"""Side-adapter towers over cached frozen-encoder states: CROSSAN, INDSAN, IISAN, IISAN-E.

Every method here reads, per modality ``m``, the cached pooled states of the frozen encoder,
``states[m]: [N, L, D]`` (``L`` kept layers, index 0 = embedding output; ``D`` = encoder
hidden size, 768 for the paper's encoders), and returns one ``item_dim`` vector per tower,
``[N, n_towers, item_dim]``. The fusion (:mod:`crossan.models.fusion`) turns those into one
item embedding.

A tower is ``L`` Houlsby adapters (one per kept layer) and a head. What differs between the
methods is only what each adapter reads:

* CROSSAN (paper eq. 5): adapter ``k`` of tower ``t`` reads a convex combination (softmax over
  learnable logits, one set per tower and layer) of *every* tower's adapter output at layer
  ``k - 1`` and tower ``t``'s own frozen state at layer ``k``.
* INDSAN: the same with only tower ``t``'s own previous output and own frozen state.
* IISAN / IISAN-E: one intra tower per modality with a sigmoid gate between its own frozen
  state and its own previous output, plus one inter tower reading a gated sum of all
  modalities' frozen states.

Layer 0 has no previous adapter output. Every method here treats "the output of tower ``t``
before layer 0" as tower ``t``'s own frozen layer-0 state (the embedding output), so the
layer-0 gates exist (the paper's 140 CROSSAN logits = 4 towers x 7 layers x 5 sources, and
IISAN-E's 56 scalars = 7 gates per intra tower + 4 per inter layer, need them) and CROSSAN's
layer-0 cross terms mix the other modalities' embedding outputs. For INDSAN and the IISAN
intra towers this makes the layer-0 gate inert (both sources are the same vector); it is kept
so the parameter layout matches the paper's count and Figure 4's seven rows.

Missing media: an item whose media was invalid has all-zero cached states for that
modality. The towers treat the zero vector as an ordinary input (it simply contributes
nothing to a gated sum; at initialisation an adapter maps it to ~0); it is the fusion that
drops the modality for that item and renormalises over the available ones (see
:mod:`crossan.models.fusion`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# The paper's four modalities, in its canonical order, with their one-letter names.
MODALITY_LETTERS: dict[str, str] = {"T": "text", "I": "image", "V": "video", "A": "audio"}
MODALITIES: tuple[str, ...] = tuple(MODALITY_LETTERS.values())


def parse_modalities(spec: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``"TIVA"``, ``"it"`` or ``["text", "image"]`` -> full names in canonical T, I, V, A order."""
    if isinstance(spec, str):
        letters = spec.upper()
        unknown = sorted(set(letters) - set(MODALITY_LETTERS))
        if unknown or len(set(letters)) != len(letters) or not letters:
            raise ValueError(f"modalities must be distinct letters from TIVA, got {spec!r}")
        names = {MODALITY_LETTERS[letter] for letter in letters}
    else:
        names = set(spec)
        unknown = sorted(names - set(MODALITIES))
        if unknown or len(names) != len(spec) or not names:
            raise ValueError(f"modalities must be distinct names from {MODALITIES}, got {spec!r}")
    return tuple(m for m in MODALITIES if m in names)


def letters_of(modalities: tuple[str, ...]) -> str:
    """``("text", "image")`` -> ``"TI"``."""
    return "".join(m[0].upper() for m in modalities)


class Adapter(nn.Module):
    """Houlsby bottleneck adapter: ``x + up(relu(down(x)))``; ``[..., D] -> [..., D]``.

    Weights N(0, 0.01) and zero biases, so at initialisation the block is ~identity. No
    LayerNorm (as in IISAN's side adapters). Parameters: ``2*D*h + h + D``.
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.down = nn.Linear(dim, hidden)
        self.up = nn.Linear(hidden, dim)
        for linear in (self.down, self.up):
            nn.init.normal_(linear.weight, mean=0.0, std=0.01)
            nn.init.zeros_(linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.up(F.relu(self.down(x)))


class TowerHead(nn.Module):
    """``Linear(D->D)`` then ``Linear(D->item_dim)``; ``[..., D] -> [..., item_dim]``.

    Two linear maps with no activation between them, as the method facts describe the
    IISAN-family head (the count, ``D*D + D + D*d + d``, is what Table 4 reproduces).
    """

    def __init__(self, dim: int, item_dim: int) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, item_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.dense(x))


class AdapterTower(nn.Module):
    """One side-adapter tower: ``n_layers`` adapters (applied by the owning network) + head."""

    def __init__(self, dim: int, hidden: int, n_layers: int, item_dim: int) -> None:
        super().__init__()
        self.adapters = nn.ModuleList(Adapter(dim, hidden) for _ in range(n_layers))
        self.head = TowerHead(dim, item_dim)


def stack_states(
    states: dict[str, Tensor], modalities: tuple[str, ...], n_layers: int, dim: int, dtype: torch.dtype
) -> Tensor:
    """``{m: [N, L, D]}`` -> ``[N, M, L, D]`` in ``modalities`` order, cast to ``dtype``; checks L, D."""
    missing = [m for m in modalities if m not in states]
    if missing:
        raise KeyError(f"no cached states for modalities {missing}; got {sorted(states)}")
    stacked = torch.stack([states[m].to(dtype) for m in modalities], dim=1)
    if stacked.dim() != 4 or stacked.shape[2] != n_layers or stacked.shape[3] != dim:
        shape = tuple(states[modalities[0]].shape)
        raise ValueError(f"cached states must be [N, {n_layers}, {dim}] per modality, got {shape}")
    return stacked


class CrossModalSideAdapters(nn.Module):
    """CROSSAN's towers (``cross=True``) or INDSAN's (``cross=False``).

    Gate logits ``[M, L, S]`` (tower, layer, source), softmax over sources divided by
    ``temperature``. Sources, in Figure 4's order: ``"H"`` (the tower's own frozen state at
    this layer), then the previous-layer adapter output of each tower (CROSSAN: all ``M``
    towers, ``S = M + 1``; INDSAN: only its own, ``S = 2``). Logits start at 0 (uniform
    weights). ``temperature`` defaults to 0.1, the scale IISAN uses for its gates, so the
    logits learn at the same rate as the IISAN baselines' gates.

    Input ``states[m]: [N, L, D]``; output ``[N, M, item_dim]``.
    """

    def __init__(
        self,
        modalities: tuple[str, ...],
        dim: int,
        hidden: int,
        n_layers: int,
        item_dim: int,
        cross: bool = True,
        temperature: float = 0.1,
    ) -> None:
        super().__init__()
        self.modalities = modalities
        self.tower_names = modalities
        self.cross = cross
        self.n_layers, self.dim = n_layers, dim
        self.temperature = temperature
        self.towers = nn.ModuleDict({m: AdapterTower(dim, hidden, n_layers, item_dim) for m in modalities})
        n_sources = len(modalities) + 1 if cross else 2
        self.gate_logits = nn.Parameter(torch.zeros(len(modalities), n_layers, n_sources))

    @property
    def gate_sources(self) -> tuple[str, ...]:
        """Column names of :meth:`gate_values`: ``"H"`` then the source towers' letters."""
        return ("H",) + (tuple(m[0].upper() for m in self.modalities) if self.cross else ("self",))

    def gate_weights(self) -> Tensor:
        """Convex gate weights ``[M, L, S]``; every ``[t, k, :]`` sums to 1."""
        return torch.softmax(self.gate_logits / self.temperature, dim=-1)

    def gate_values(self) -> dict[str, Tensor]:
        """Figure 4's heatmap data: ``{tower: [L, S]}`` with columns :attr:`gate_sources`."""
        weights = self.gate_weights().detach()
        return {m: weights[t] for t, m in enumerate(self.modalities)}

    def forward(self, states: dict[str, Tensor]) -> Tensor:
        hidden = stack_states(
            states, self.modalities, self.n_layers, self.dim, self.gate_logits.dtype
        )  # [N, M, L, D]
        weights = self.gate_weights()  # [M, L, S]
        prev = hidden[:, :, 0]  # [N, M, D]: "output before layer 0" = own embedding output
        for k in range(hidden.shape[2]):
            w = weights[:, k]  # [M, S]
            x = w[:, 0, None] * hidden[:, :, k]  # own frozen state, [N, M, D]
            if self.cross:
                x = x + torch.einsum("ts,nsd->ntd", w[:, 1:], prev)
            else:
                x = x + w[:, 1, None] * prev
            prev = torch.stack(
                [tower.adapters[k](x[:, t]) for t, tower in enumerate(self.towers.values())], dim=1
            )
        return torch.stack([tower.head(prev[:, t]) for t, tower in enumerate(self.towers.values())], dim=1)


class IISANSideAdapters(nn.Module):
    """IISAN-E's towers: one intra tower per modality plus one inter tower (IISAN = T+I).

    Intra tower ``m``, layer ``k``: ``x = g*h_m[k] + (1-g)*prev_m; prev_m = adapter_k(x)``
    with ``g = sigmoid(p/0.1)``, ``p`` initialised 0 (``g = 0.5``); ``M*L`` scalars.

    Inter tower, layer ``k``: the gated sum of all modalities' frozen states, with one scalar
    ``g_m = sigmoid(q_m/0.1)`` per modality and layer (``M*L`` scalars)::

        x = sum_m (g_m / M) * h_m[k] + (1 - mean_m g_m) * prev_inter

    a convex combination that reduces to the intra rule for ``M = 1``; ``prev_inter`` before
    layer 0 is the mean of the modalities' embedding outputs. The inter tower reads the frozen
    states, never the intra outputs. For T+I+V+A this is 4*7 + 4*7 = 56 gate scalars, the
    count Table 4's IISAN-E rows need.

    Input ``states[m]: [N, L, D]``; output ``[N, M + 1, item_dim]`` (intra towers in
    modality order, then ``"inter"``).
    """

    def __init__(
        self,
        modalities: tuple[str, ...],
        dim: int,
        hidden: int,
        n_layers: int,
        item_dim: int,
        temperature: float = 0.1,
    ) -> None:
        super().__init__()
        self.modalities = modalities
        self.tower_names = modalities + ("inter",)
        self.n_layers, self.dim = n_layers, dim
        self.temperature = temperature
        self.intra = nn.ModuleDict({m: AdapterTower(dim, hidden, n_layers, item_dim) for m in modalities})
        self.inter = AdapterTower(dim, hidden, n_layers, item_dim)
        self.intra_gate_logits = nn.Parameter(torch.zeros(len(modalities), n_layers))
        self.inter_gate_logits = nn.Parameter(torch.zeros(n_layers, len(modalities)))

    def intra_gates(self) -> Tensor:
        """``g`` per intra tower and layer, ``[M, L]``: weight of the frozen state."""
        return torch.sigmoid(self.intra_gate_logits / self.temperature)

    def inter_gates(self) -> Tensor:
        """``g_m`` per layer and modality, ``[L, M]``."""
        return torch.sigmoid(self.inter_gate_logits / self.temperature)

    def gate_values(self) -> dict[str, Tensor]:
        """``{modality: [L, 2]}`` (columns: frozen state ``g``, previous output ``1-g``) and
        ``{"inter": [L, M + 1]}`` (columns: each modality's ``g_m/M``, then the previous
        output's weight), so every row is a convex weight vector, like CROSSAN's."""
        intra = self.intra_gates().detach()
        values = {m: torch.stack([intra[t], 1 - intra[t]], dim=-1) for t, m in enumerate(self.modalities)}
        inter = self.inter_gates().detach() / len(self.modalities)
        values["inter"] = torch.cat([inter, 1 - inter.sum(-1, keepdim=True)], dim=-1)
        return values

    def forward(self, states: dict[str, Tensor]) -> Tensor:
        hidden = stack_states(
            states, self.modalities, self.n_layers, self.dim, self.intra_gate_logits.dtype
        )  # [N, M, L, D]
        n_modalities = hidden.shape[1]
        g_intra = self.intra_gates()  # [M, L]
        g_inter = self.inter_gates()  # [L, M]
        prev = hidden[:, :, 0]  # [N, M, D]
        prev_inter = hidden[:, :, 0].mean(dim=1)  # [N, D]
        for k in range(hidden.shape[2]):
            g = g_intra[:, k, None]  # [M, 1]
            x = g * hidden[:, :, k] + (1 - g) * prev
            prev = torch.stack(
                [tower.adapters[k](x[:, t]) for t, tower in enumerate(self.intra.values())], dim=1
            )
            gm = g_inter[k]  # [M]
            x_inter = (
                torch.einsum("m,nmd->nd", gm / n_modalities, hidden[:, :, k]) + (1 - gm.mean()) * prev_inter
            )
            prev_inter = self.inter.adapters[k](x_inter)
        outputs = [tower.head(prev[:, t]) for t, tower in enumerate(self.intra.values())]
        outputs.append(self.inter.head(prev_inter))
        return torch.stack(outputs, dim=1)
