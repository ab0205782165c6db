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
  state and its own previous output, plus one inter tower that adds a gated sum of all
  modalities' frozen states to its own previous output (:class:`IISANInterGate`,
  :class:`SoftmaxInterGate`; :class:`ConvexInterGate` is our earlier rule).

Layer 0 has no previous adapter output. ``layer0_previous="zeros"`` (the default) feeds zeros
as every tower's "previous output" before layer 0, as IISAN's ``Code_Cached/model/model.py``
does; ``"frozen"`` (our earlier convention) feeds tower ``t``'s own frozen layer-0 state
instead (for the IISAN inter tower: the mean of the modalities' layer-0 states). Either way
the layer-0 gates exist, so the parameter layout is the same: the paper's 140 CROSSAN logits
(4 towers x 7 layers x 5 sources, Figure 4's rows and columns) and IISAN-E's 56 scalars.

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

from crossan.runs.settings import CONVENTIONS
from crossan.runs.vocabulary import MODALITIES, MODALITY_LETTERS

# What every tower reads as its "previous output" before layer 0 (module docstring).
LAYER0_PREVIOUS: tuple[str, ...] = CONVENTIONS["layer0_previous"]


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


def xavier_normal_head(linear: nn.Linear) -> nn.Linear:
    """Re-initialise ``linear`` as IISAN does its image head: Xavier-normal weight
    (std ``sqrt(2 / (fan_in + fan_out))``), zero bias (``Code_Cached/run.py`` and
    ``Code_Uncached/run.py``: ``xavier_normal_(cv_model.classifier.weight)``,
    ``constant_(cv_model.classifier.bias, 0)``). In place; returned for chaining."""
    nn.init.xavier_normal_(linear.weight)
    nn.init.zeros_(linear.bias)
    return linear


class TowerHead(nn.Module):
    """``Linear(D->D)`` then ``Linear(D->item_dim)``; ``[..., D] -> [..., item_dim]``.

    Two linear maps with no activation between them, as the method facts describe the
    IISAN-family head (the count, ``D*D + D + D*d + d``, is what Table 4 reproduces).
    PyTorch's default initialisation, except IISAN's image tower (:class:`IISANSideAdapters`).
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


def check_layer0_previous(layer0_previous: str) -> str:
    if layer0_previous not in LAYER0_PREVIOUS:
        raise ValueError(f"layer0_previous must be one of {LAYER0_PREVIOUS}, got {layer0_previous!r}")
    return layer0_previous


def initial_previous(hidden: Tensor, layer0_previous: str) -> Tensor:
    """Every tower's "previous output" before layer 0, ``[N, M, D]``, from ``hidden [N, M, L, D]``:
    zeros (``"zeros"``, IISAN) or each tower's own frozen layer-0 state (``"frozen"``)."""
    if layer0_previous == "zeros":
        return torch.zeros_like(hidden[:, :, 0])
    return hidden[:, :, 0]


def mix_sources(weights: Tensor, hidden: Tensor, prev: Tensor, cross: bool) -> Tensor:
    """One layer's adapter inputs ``[N, M, D]``: each tower's convex mix of its own frozen
    state ``hidden [N, M, D]`` and the previous layer's outputs ``prev [N, M, D]`` with
    ``weights [M, S]`` (column 0 the frozen state; then every tower's previous output when
    ``cross``, else the tower's own)."""
    x = weights[:, 0, None] * hidden  # own frozen state
    if cross:
        return x + torch.einsum("ts,nsd->ntd", weights[:, 1:], prev)
    return x + weights[:, 1, None] * prev


class CrossModalGating:
    """The gates of CROSSAN's towers, shared by :class:`CrossModalSideAdapters` and the
    shared MoDA tower (:class:`crossan.models.moda.SharedMoDASideAdapters`): logits
    ``gate_logits [M, L, S]`` (tower, layer, source), a softmax over the sources of
    ``logits / temperature``. Sources: ``"H"`` (the tower's own frozen state), then every
    tower's previous output (``cross``, ``S = M + 1``) or its own (``S = 2``)."""

    modalities: tuple[str, ...]
    cross: bool
    temperature: float
    gate_logits: nn.Parameter

    def init_gates(self, modalities: tuple[str, ...], n_layers: int, cross: bool, temperature: float) -> None:
        """Set the towers (one per modality) and their logits, 0 = uniform weights (call after
        ``nn.Module.__init__``)."""
        self.modalities = modalities
        self.tower_names = modalities
        self.cross = cross
        self.temperature = temperature
        n_sources = len(modalities) + 1 if cross else 2
        self.gate_logits = nn.Parameter(torch.zeros(len(modalities), n_layers, n_sources))

    def gate_sources(self) -> dict[str, tuple[str, ...]]:
        """Column names of :meth:`gate_values` per tower: ``"H"``, then the source towers'
        letters (``cross``) or ``"self"``."""
        sources = ("H",) + (tuple(m[0].upper() for m in self.modalities) if self.cross else ("self",))
        return {m: sources for m in self.modalities}

    def gate_weights(self) -> Tensor:
        """Convex gate weights ``[M, L, S]``; every ``[t, k, :]`` sums to 1."""
        return torch.softmax(self.gate_logits / self.temperature, dim=-1)

    def gate_values(self) -> dict[str, Tensor]:
        """Figure 4's heatmap data: ``{tower: [L, S]}`` with columns :meth:`gate_sources`."""
        weights = self.gate_weights().detach()
        return {m: weights[t] for t, m in enumerate(self.modalities)}


class CrossModalSideAdapters(CrossModalGating, nn.Module):
    """CROSSAN's towers (``cross=True``) or INDSAN's (``cross=False``).

    Gate logits ``[M, L, S]`` (tower, layer, source), softmax over sources divided by
    ``temperature``. Sources, in Figure 4's order: ``"H"`` (the tower's own frozen state at
    this layer), then the previous-layer adapter output of each tower (CROSSAN: all ``M``
    towers, ``S = M + 1``; INDSAN: only its own, ``S = 2``). Logits start at 0 (uniform
    weights). ``temperature`` defaults to 0.1, the scale IISAN uses for its gates, so the
    logits learn at the same rate as the IISAN baselines' gates. Before layer 0 the previous
    outputs are zeros or the towers' frozen layer-0 states (``layer0_previous``, module
    docstring); with zeros, layer 0's previous-output columns weight zero vectors.

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
        layer0_previous: str = LAYER0_PREVIOUS[0],
    ) -> None:
        super().__init__()
        self.init_gates(modalities, n_layers, cross, temperature)
        self.n_layers, self.dim = n_layers, dim
        self.layer0_previous = check_layer0_previous(layer0_previous)
        self.towers = nn.ModuleDict({m: AdapterTower(dim, hidden, n_layers, item_dim) for m in modalities})

    def modality_towers(self) -> tuple[dict[str, nn.Module], list[nn.Module]]:
        """``(towers of one modality each, by modality; towers serving every modality)``, for
        optimiser groups that treat them differently (``lr_groups: iisan``)."""
        return dict(self.towers.items()), []

    def forward(self, states: dict[str, Tensor]) -> Tensor:
        hidden = stack_states(
            states, self.modalities, self.n_layers, self.dim, self.gate_logits.dtype
        )  # [N, M, L, D]
        weights = self.gate_weights()  # [M, L, S]
        prev = initial_previous(hidden, self.layer0_previous)  # [N, M, D]
        for k in range(hidden.shape[2]):
            x = mix_sources(weights[:, k], hidden[:, :, k], prev, self.cross)  # [N, M, D]
            prev = torch.stack(
                [tower.adapters[k](x[:, t]) for t, tower in enumerate(self.towers.values())], dim=1
            )
        return torch.stack([tower.head(prev[:, t]) for t, tower in enumerate(self.towers.values())], dim=1)


class IISANInterGate(nn.Module):
    """IISAN's inter-tower gate (text + image; ``Code_Cached/model/model.py``).

    One logit ``p_k`` per layer, ``g_k = sigmoid(p_k / T)`` (0.5 at initialisation), and layer
    ``k`` of the inter tower reads ``prev + g_k * h_I[k] + (1 - g_k) * h_T[k]``: the previous
    inter output at weight 1. ``L`` parameters.
    """

    def __init__(self, n_modalities: int, n_layers: int, temperature: float) -> None:
        super().__init__()
        if n_modalities != 2:
            raise ValueError(f"IISAN's inter gate mixes text and image, got {n_modalities} modalities")
        self.temperature = temperature
        self.gate_logits = nn.Parameter(torch.zeros(n_layers))

    def weights(self) -> tuple[Tensor, Tensor]:
        """``(w [L, 2], w_prev [L])``: weights of (text, image) and of the previous output."""
        g = torch.sigmoid(self.gate_logits / self.temperature)
        return torch.stack([1 - g, g], dim=-1), torch.ones_like(g)


class SoftmaxInterGate(nn.Module):
    """IISAN-E's inter-tower gate: the paper's "gated sum of all modalities".

    Logits ``p [L, M]``, ``w[k] = softmax(p[k] / T)`` over the ``M`` modalities (uniform at
    initialisation), and layer ``k`` reads ``prev + sum_m w_m[k] * h_m[k]``, the previous
    inter output at weight 1. For ``M = 2`` this is :class:`IISANInterGate` with one redundant
    logit (``softmax([a, b])_I = sigmoid(b - a)``). ``L*M`` parameters.
    """

    def __init__(self, n_modalities: int, n_layers: int, temperature: float) -> None:
        super().__init__()
        self.temperature = temperature
        self.gate_logits = nn.Parameter(torch.zeros(n_layers, n_modalities))

    def weights(self) -> tuple[Tensor, Tensor]:
        """``(w [L, M], w_prev [L])``; every ``w[k]`` sums to 1, ``w_prev`` is 1."""
        w = torch.softmax(self.gate_logits / self.temperature, dim=-1)
        return w, torch.ones_like(w[:, 0])


class ConvexInterGate(nn.Module):
    """Our earlier inter-tower gate (``inter_tower: convex``), kept to measure the difference.

    One sigmoid ``g_m[k] = sigmoid(p[k, m] / T)`` per modality and layer; layer ``k`` reads
    ``sum_m (g_m[k] / M) * h_m[k] + (1 - mean_m g_m[k]) * prev``, a convex combination that
    reduces to the intra rule for ``M = 1``. ``L*M`` parameters.
    """

    def __init__(self, n_modalities: int, n_layers: int, temperature: float) -> None:
        super().__init__()
        self.temperature = temperature
        self.gate_logits = nn.Parameter(torch.zeros(n_layers, n_modalities))

    def weights(self) -> tuple[Tensor, Tensor]:
        """``(w [L, M], w_prev [L])`` with ``w.sum(-1) + w_prev == 1``."""
        g = torch.sigmoid(self.gate_logits / self.temperature)
        return g / g.shape[-1], 1 - g.mean(dim=-1)


INTER_GATES: dict[str, type[nn.Module]] = {
    "iisan": IISANInterGate,
    "softmax": SoftmaxInterGate,
    "convex": ConvexInterGate,
}


class IISANSideAdapters(nn.Module):
    """IISAN's and IISAN-E's towers: one intra tower per modality plus one inter tower.

    Intra tower ``m``, layer ``k``: ``x = g*h_m[k] + (1-g)*prev_m; prev_m = adapter_k(x)``
    with ``g = sigmoid(p/0.1)``, ``p`` initialised 0 (``g = 0.5``); ``M*L`` scalars.

    Inter tower, layer ``k``: ``prev_inter = adapter_k(w_prev[k] * prev_inter +
    sum_m w_m[k] * h_m[k])`` with the weights of ``inter_gate``: ``"iisan"``
    (:class:`IISANInterGate`, IISAN's T+I rule, ``L`` scalars), ``"softmax"``
    (:class:`SoftmaxInterGate`, IISAN-E, ``L*M``) or ``"convex"`` (:class:`ConvexInterGate`,
    our earlier rule, ``L*M``). The inter tower reads the frozen states, never the intra
    outputs. IISAN T+I: 14 + 7 = 21 gate scalars; IISAN-E T+I+V+A: 28 + 28 = 56, the count
    Table 4's IISAN-E rows need. Before layer 0 every "previous output" is zeros or the
    frozen layer-0 states (``layer0_previous``; the inter tower then starts from their mean).

    Heads: PyTorch's default initialisation, except the image tower's ``Linear(D->item_dim)``,
    Xavier-normal with a zero bias (:func:`xavier_normal_head`): in IISAN ``Code_Cached/`` that
    layer is ViT's replaced classifier (``cv_pre_fc``), initialised so in ``run.py``; its other
    head layers (``fc_cv``, ``fc_bert``, ``bert_pre_fc``, ``fc_mm``, ``fc_mm_down``) keep
    PyTorch's default.

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
        inter_gate: str = "softmax",
        temperature: float = 0.1,
        layer0_previous: str = LAYER0_PREVIOUS[0],
    ) -> None:
        super().__init__()
        if inter_gate not in INTER_GATES:
            raise ValueError(f"inter_gate must be one of {tuple(INTER_GATES)}, got {inter_gate!r}")
        self.modalities = modalities
        self.tower_names = modalities + ("inter",)
        self.n_layers, self.dim = n_layers, dim
        self.temperature = temperature
        self.layer0_previous = check_layer0_previous(layer0_previous)
        self.intra = nn.ModuleDict({m: AdapterTower(dim, hidden, n_layers, item_dim) for m in modalities})
        if "image" in self.intra:
            xavier_normal_head(self.intra["image"].head.out)
        self.inter = AdapterTower(dim, hidden, n_layers, item_dim)
        self.intra_gate_logits = nn.Parameter(torch.zeros(len(modalities), n_layers))
        self.inter_gate = INTER_GATES[inter_gate](len(modalities), n_layers, temperature)

    def intra_gates(self) -> Tensor:
        """``g`` per intra tower and layer, ``[M, L]``: weight of the frozen state."""
        return torch.sigmoid(self.intra_gate_logits / self.temperature)

    def gate_sources(self) -> dict[str, tuple[str, ...]]:
        """Column names of :meth:`gate_values` per tower: ``("H", "prev")`` for the intra
        towers, the modalities' letters then ``"prev"`` for the inter tower."""
        sources: dict[str, tuple[str, ...]] = {m: ("H", "prev") for m in self.modalities}
        sources["inter"] = (*(m[0].upper() for m in self.modalities), "prev")
        return sources

    def gate_values(self) -> dict[str, Tensor]:
        """``{modality: [L, 2]}`` (columns: frozen state ``g``, previous output ``1-g``) and
        ``{"inter": [L, M + 1]}`` (columns: each modality's weight, then the previous output's:
        1 for the IISAN and IISAN-E rules, so those rows sum to 2)."""
        intra = self.intra_gates().detach()
        values = {m: torch.stack([intra[t], 1 - intra[t]], dim=-1) for t, m in enumerate(self.modalities)}
        w, w_prev = (tensor.detach() for tensor in self.inter_gate.weights())
        values["inter"] = torch.cat([w, w_prev[:, None]], dim=-1)
        return values

    def modality_towers(self) -> tuple[dict[str, nn.Module], list[nn.Module]]:
        """``(towers of one modality each, by modality; towers serving every modality)``, for
        optimiser groups that treat them differently (``lr_groups: iisan``)."""
        return dict(self.intra.items()), [self.inter]

    def forward(self, states: dict[str, Tensor]) -> Tensor:
        hidden = stack_states(
            states, self.modalities, self.n_layers, self.dim, self.intra_gate_logits.dtype
        )  # [N, M, L, D]
        g_intra = self.intra_gates()  # [M, L]
        w_inter, w_prev = self.inter_gate.weights()  # [L, M], [L]
        prev = initial_previous(hidden, self.layer0_previous)  # [N, M, D]
        prev_inter = prev.mean(dim=1)  # [N, D]
        for k in range(hidden.shape[2]):
            g = g_intra[:, k, None]  # [M, 1]
            x = g * hidden[:, :, k] + (1 - g) * prev
            prev = torch.stack(
                [tower.adapters[k](x[:, t]) for t, tower in enumerate(self.intra.values())], dim=1
            )
            x_inter = w_prev[k] * prev_inter + torch.einsum("m,nmd->nd", w_inter[k], hidden[:, :, k])
            prev_inter = self.inter.adapters[k](x_inter)
        outputs = [tower.head(prev[:, t]) for t, tower in enumerate(self.intra.values())]
        outputs.append(self.inter.head(prev_inter))
        return torch.stack(outputs, dim=1)
