"""Item encoder + sequence encoder = one sequential recommender, built from :class:`ModelConfig`.

Methods: ``crossan`` (cross-modal side adapters, default fusion MOMEF), ``indsan``
(independent side adapters, MOMEF), ``iisan`` (IISAN, text + image only, concat fusion),
``iisan-e`` (IISAN extended to any modality subset, concat fusion), ``crossan-moda``
(CROSSAN's gates over one shared tower of MoDA adapters, :mod:`crossan.models.moda`; MOMEF)
and ``id-sasrec`` (item-ID embeddings, no content). The frozen encoders are not part of the
model: it reads their cached states, so every parameter of the model is trainable.

Any content method may add an auxiliary alignment loss between its modality towers'
outputs (``align_weight > 0``; ``align``: ``cmsa``, SDA's structural alignment, or
``infonce``; :mod:`crossan.models.cmsa`). Its learnable temperature is then a parameter of the
item encoder (one more trainable parameter).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from crossan.models.adapters import (
    CrossModalSideAdapters,
    IISANSideAdapters,
    letters_of,
    parse_modalities,
)
from crossan.models.cmsa import StructuralAlignmentLoss, pairwise_alignment
from crossan.models.fusion import build_fusion
from crossan.models.moda import SharedMoDASideAdapters
from crossan.models.sasrec import IDItemEncoder, SASRec
from crossan.runs.settings import CONVENTIONS, training_default
from crossan.runs.vocabulary import ALIGNMENTS, CACHED_STATE_METHODS, FUSIONS, METHODS, NAME_DEFAULTS


@dataclass(frozen=True)
class ModelConfig:
    """Everything that decides a model's shape. Defaults = the paper's CROSSAN T+I+V+A.

    ``method``: one of :data:`~crossan.runs.vocabulary.CACHED_STATE_METHODS`. ``modalities``:
    letters from ``TIVA``. ``encoder_dim``/``n_layers``: the cached states' hidden size and
    kept-layer count. ``adapter_dim``: the adapters' bottleneck ``h`` (a run's ``hidden``).
    ``fusion``: one of :data:`~crossan.runs.vocabulary.FUSIONS`, ``None`` = the method's
    default. ``n_items``: only for ``id-sasrec``. Conventions where the paper is silent
    (:data:`~crossan.runs.settings.CONVENTIONS`; defaults = IISAN's and MicroLens' code):
    ``inter_tower``, ``layer0_previous`` and ``sequence_encoder``. Defaults of what a run
    sets come from :mod:`crossan.runs` (its name fields and the schema's training defaults).
    ``moda_rank``/``moda_experts``: ``crossan-moda``'s total expert rank ``r`` and expert
    count ``E``. ``align_weight``: the weight ``lambda`` of the auxiliary tower-alignment loss
    ``align`` (:data:`ALIGNMENTS`), off at 0.
    """

    method: str = "crossan"
    modalities: str = NAME_DEFAULTS["modalities"]
    encoder_dim: int = 768
    n_layers: int = 7
    adapter_dim: int = NAME_DEFAULTS["hidden"]
    item_dim: int = 64
    fusion: str | None = NAME_DEFAULTS["fusion"]
    topk: int = NAME_DEFAULTS["topk"]
    gate_temperature: float = 0.1
    max_len: int = training_default("max_len")
    n_blocks: int = 2
    n_heads: int = 2
    dropout: float = 0.1
    n_items: int = 0
    inter_tower: str = training_default("inter_tower")
    layer0_previous: str = training_default("layer0_previous")
    sequence_encoder: str = training_default("sequence_encoder")
    moda_rank: int = training_default("moda_rank")
    moda_experts: int = training_default("moda_experts")
    align: str = NAME_DEFAULTS["align"]
    align_weight: float = NAME_DEFAULTS["align_weight"]

    def resolved_fusion(self) -> str:
        """The fusion actually used (``"none"`` for ``id-sasrec``)."""
        return self.fusion or METHODS[self.method].default_fusion


class ContentItemEncoder(nn.Module):
    """Side-adapter towers + fusion: cached states -> item embeddings ``[N, item_dim]``.

    ``states[m]: [N, L, D]`` for each modality of the model (any float dtype; cast to the
    parameters' dtype), ``has_modality[m]: bool[N]`` (optional; False = the item's media for
    ``m`` was invalid and its states are zero). The IISAN inter tower counts as available
    whenever any modality is. ``alignment`` (optional): the auxiliary loss over every pair of
    modality towers that :meth:`encode_for_training` adds, times ``align_weight``.
    """

    def __init__(
        self,
        towers: CrossModalSideAdapters | IISANSideAdapters | SharedMoDASideAdapters,
        fusion: nn.Module,
        alignment: StructuralAlignmentLoss | None = None,
        align_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.towers = towers
        self.fusion = fusion
        self.alignment = alignment
        self.align_weight = align_weight

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.towers.modalities

    @property
    def tower_names(self) -> tuple[str, ...]:
        """The towers' names, in output order (``text``, ``image``, ..., IISAN's ``inter``)."""
        return tuple(self.towers.tower_names)

    def availability(
        self, states: dict[str, Tensor], has_modality: dict[str, Tensor] | None
    ) -> Tensor | None:
        """``bool[N, n_towers]`` in :attr:`towers.tower_names` order, or ``None`` (all)."""
        if has_modality is None:
            return None
        n = states[self.modalities[0]].shape[0]
        device = states[self.modalities[0]].device
        columns = [
            has_modality[m].to(device=device, dtype=torch.bool)
            if m in has_modality
            else torch.ones(n, dtype=torch.bool, device=device)
            for m in self.modalities
        ]
        available = torch.stack(columns, dim=1)
        if "inter" in self.towers.tower_names:
            available = torch.cat([available, available.any(dim=1, keepdim=True)], dim=1)
        return available

    def tower_outputs(self, states: dict[str, Tensor]) -> Tensor:
        """``[N, n_towers, item_dim]``, before fusion."""
        return self.towers(states)

    def forward(self, states: dict[str, Tensor], has_modality: dict[str, Tensor] | None = None) -> Tensor:
        return self.fusion(self.towers(states), self.availability(states, has_modality))

    def encode_for_training(
        self, states: dict[str, Tensor], has_modality: dict[str, Tensor] | None, real: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        """``(items [N, item_dim], align_weight * alignment loss or None)`` with the towers run
        once. ``real: bool[N]``: the rows that are items (False for padding rows); the
        alignment reads those rows only, each modality pair over the items valid in both."""
        outputs = self.towers(states)  # [N, n_towers, item_dim]
        available = self.availability(states, has_modality)
        items = self.fusion(outputs, available)
        if self.alignment is None:
            return items, None
        valid = real[:, None].expand(-1, outputs.shape[1])  # [N, n_towers]
        if available is not None:
            valid = valid & available
        by_modality = {m: outputs[:, t] for t, m in enumerate(self.tower_names) if m in self.modalities}
        masks = {m: valid[:, t] for t, m in enumerate(self.tower_names) if m in self.modalities}
        return items, self.align_weight * pairwise_alignment(by_modality, masks, self.alignment)

    def gate_values(self) -> dict[str, Tensor]:
        """The towers' learned gates (see the towers' ``gate_values``)."""
        return self.towers.gate_values()

    def gate_sources(self) -> dict[str, tuple[str, ...]]:
        """The column names of :meth:`gate_values`, per tower."""
        return self.towers.gate_sources()


class SequentialRecommender(nn.Module):
    """``item_encoder`` (content or ID) + :class:`SASRec`.

    Typical training step: ``items = model.encode_items(...)`` for the batch's deduplicated
    items (``[N, d]``), ``users = model.encode_sequences(items[index], valid)`` with
    ``index: long[B, L]`` into those rows (``[B, L, d]``), then logits ``users @ items.T``.
    """

    def __init__(self, config: object, item_encoder: nn.Module, sequence_encoder: SASRec) -> None:
        """``config``: the shape it was built from (:class:`ModelConfig`, or the end-to-end
        family's ``EndToEndConfig``)."""
        super().__init__()
        self.config = config
        self.item_encoder = item_encoder
        self.sequence_encoder = sequence_encoder

    def encode_items(self, *inputs: object, **kw: object) -> Tensor:
        """Content: ``(states, has_modality=None)``; ID: ``(item_ids,)`` -> ``[N, d]``."""
        return self.item_encoder(*inputs, **kw)

    def encode_sequences(self, item_embeddings: Tensor, valid: Tensor) -> Tensor:
        """``[B, L, d]`` + ``bool[B, L]`` -> user states ``[B, L, d]``."""
        return self.sequence_encoder(item_embeddings, valid)

    def forward(
        self, index: Tensor, valid: Tensor, *item_inputs: object, **kw: object
    ) -> tuple[Tensor, Tensor]:
        """``index: long[B, L]`` rows into the encoded items (padding may point anywhere,
        e.g. 0), ``valid: bool[B, L]`` -> ``(user_states [B, L, d], items [N, d])``."""
        items = self.encode_items(*item_inputs, **kw)
        return self.encode_sequences(items[index], valid), items

    def gate_values(self) -> dict[str, Tensor]:
        """Learned gate values for Figure 4, ``{tower: [L, sources]}`` (empty without gates)."""
        return self.item_encoder.gate_values()

    def gate_sources(self) -> dict[str, tuple[str, ...]]:
        """The column names of :meth:`gate_values`, ``{tower: (source, ...)}``."""
        return self.item_encoder.gate_sources()


def build_model(config: ModelConfig) -> SequentialRecommender:
    """The model ``config`` describes, freshly initialised (seed with ``torch.manual_seed``)."""
    if config.method not in CACHED_STATE_METHODS:
        raise ValueError(f"unknown method {config.method!r}; choose from {', '.join(CACHED_STATE_METHODS)}")
    for name in ("inter_tower", "layer0_previous", "sequence_encoder"):
        if getattr(config, name) not in (allowed := CONVENTIONS[name]):
            raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(config, name)!r}")
    sequence_encoder = SASRec(
        config.item_dim, config.max_len, config.n_blocks, config.n_heads, config.dropout,
        layout=config.sequence_encoder,
    )
    if config.method == "id-sasrec":
        if config.n_items < 1:
            raise ValueError("id-sasrec needs n_items >= 1")
        return SequentialRecommender(config, IDItemEncoder(config.n_items, config.item_dim), sequence_encoder)
    modalities = parse_modalities(config.modalities)
    fusion_name = config.resolved_fusion()
    if fusion_name not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion_name!r}; choose from {', '.join(FUSIONS)}")
    shape = {
        "dim": config.encoder_dim,
        "hidden": config.adapter_dim,
        "n_layers": config.n_layers,
        "item_dim": config.item_dim,
    }
    if config.method in ("crossan", "indsan"):
        towers: CrossModalSideAdapters | IISANSideAdapters | SharedMoDASideAdapters = CrossModalSideAdapters(
            modalities, cross=config.method == "crossan", temperature=config.gate_temperature,
            layer0_previous=config.layer0_previous, **shape,
        )
    elif config.method == "crossan-moda":
        towers = SharedMoDASideAdapters(
            modalities, rank=config.moda_rank, n_experts=config.moda_experts,
            temperature=config.gate_temperature, layer0_previous=config.layer0_previous, **shape,
        )
    else:
        if config.method == "iisan" and letters_of(modalities) != "TI":
            raise ValueError(f"iisan is the text+image method; use iisan-e for {config.modalities!r}")
        if config.inter_tower == "convex":
            inter_gate = "convex"
        else:
            inter_gate = "iisan" if config.method == "iisan" else "softmax"
        towers = IISANSideAdapters(
            modalities, inter_gate=inter_gate, temperature=config.gate_temperature,
            layer0_previous=config.layer0_previous, **shape,
        )
    fusion = build_fusion(fusion_name, len(towers.tower_names), config.item_dim, topk=config.topk)
    if config.align not in ALIGNMENTS:
        raise ValueError(f"align must be one of {', '.join(ALIGNMENTS)}, got {config.align!r}")
    if not (math.isfinite(config.align_weight) and config.align_weight >= 0):
        raise ValueError(f"align_weight must be a number >= 0, got {config.align_weight!r}")
    alignment = StructuralAlignmentLoss(kind=config.align) if config.align_weight > 0 else None
    item_encoder = ContentItemEncoder(towers, fusion, alignment, config.align_weight)
    return SequentialRecommender(config, item_encoder, sequence_encoder)
