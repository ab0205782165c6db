"""The end-to-end item encoder: BERT and ViT in the loop, each ``[CLS]`` through a head, fused.

As IISAN ``Code_Uncached/``: text ``[CLS]`` last hidden state -> ``Linear(768 -> 64)`` + GELU,
image ``[CLS]`` -> ``Linear(768 -> 64)`` + GELU, the two concatenated and fused by
``Linear(128 -> 64)`` (:class:`~crossan.models.fusion.ConcatFusion`), then the shared SASRec.
The image head is initialised as IISAN's (``Code_Uncached/run.py``: ViT's classifier replaced by
``Linear(768 -> 64)``, Xavier-normal weight, zero bias; :func:`~crossan.models.adapters.xavier_normal_head`);
the text head keeps PyTorch's default, as IISAN's ``title.fc``.
:func:`build_e2e_model` prepares the two backbones for one method (:data:`PREPARE`) and
returns a :class:`~crossan.models.recommender.SequentialRecommender`, so training, the loss
and evaluation are the ones every other method uses.

Missing covers: an item whose cover could not be read (``image.h5``'s ``valid`` False, as in
stage 1) never goes through ViT; its image tower output is exactly zero and the fusion drops
it (:class:`ConcatFusion` zeroes an unavailable slot). Titles are always valid; an empty one
is ``[CLS] [SEP]``, as in stage 1.

The poolers (BERT's tanh pooler, ViT's) are never used and are removed from the backbones
(:func:`drop_pooler`), so they are neither trained nor counted.

Each tower can z-score its ``[CLS]`` state with fixed statistics (:class:`Standardize`, the
identity unless fitted; ``training.standardize_states``, the demo's setting for its random
encoders, as the cached methods z-score their states): buffers, never trained or counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import BertConfig, BertModel, PreTrainedModel, ViTConfig, ViTModel

from crossan.models.adapters import xavier_normal_head
from crossan.models.e2e.full import make_fully_trainable
from crossan.models.e2e.houlsby import add_houlsby_adapters
from crossan.models.e2e.lora import add_lora
from crossan.models.fusion import ConcatFusion
from crossan.models.recommender import SequentialRecommender
from crossan.models.sasrec import SASRec
from crossan.runs.settings import training_default
from crossan.runs.vocabulary import END_TO_END_METHODS, NAME_DEFAULTS


@dataclass(frozen=True)
class EndToEndConfig:
    """Shape of an end-to-end model. ``adapter_dim``: the Houlsby adapters' bottleneck
    (``adapter``); ``lora_rank`` and ``lora_alpha``: LoRA's rank and scale numerator
    (``lora``); ``fft`` uses neither. :meth:`of` sets the one a method uses from a run's
    size ``h``."""

    method: str = "fft"
    adapter_dim: int = NAME_DEFAULTS["hidden"]
    lora_rank: int = NAME_DEFAULTS["hidden"]
    lora_alpha: float = training_default("lora_alpha")
    item_dim: int = 64
    max_len: int = training_default("max_len")
    n_blocks: int = 2
    n_heads: int = 2
    dropout: float = 0.1
    sequence_encoder: str = training_default("sequence_encoder")

    @classmethod
    def of(cls, method: str, size: int, **shape: Any) -> EndToEndConfig:
        """The config of ``method`` whose size ``h`` (a run's ``hidden``) is ``size``: the
        adapter bottleneck of ``adapter``, the rank of ``lora``, nothing of ``fft``."""
        sizes = {"adapter": {"adapter_dim": size}, "lora": {"lora_rank": size}}.get(method, {})
        return cls(method=method, **sizes, **shape)


@dataclass
class ItemBatch:
    """Raw inputs of ``N`` items on one device.

    ``text``: the tokenizer's ``input_ids``/``token_type_ids``/``attention_mask``, each
    ``long[N, max_length]``; ``pixels``: ``float[N, 3, S, S]`` normalised by the checkpoint's
    processor; ``has_image``: ``bool[N]``, False where the cover could not be read (its pixels
    are ignored).
    """

    text: dict[str, Tensor]
    pixels: Tensor
    has_image: Tensor

    def __len__(self) -> int:
        return int(self.has_image.shape[0])


def drop_pooler(backbone: PreTrainedModel) -> PreTrainedModel:
    """Remove ``backbone.pooler`` (BERT and ViT return ``pooler_output=None`` without it)."""
    if getattr(backbone, "pooler", None) is not None:
        backbone.pooler = None
    return backbone


class Standardize(nn.Module):
    """Per-feature z-scores with fixed statistics: ``[N, D] -> [N, D]``, ``(x - mean) * scale``.

    The exact identity until :meth:`fit`. A feature constant over the fitted rows gets scale 0
    (it carries nothing), as :func:`crossan.train.inputs.standardize_states` does for cached states.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    @torch.no_grad()
    def fit(self, x: Tensor) -> None:
        """Set the statistics from ``x`` ``[N, D]`` (N >= 2), computed in float64."""
        values = x.detach().to(torch.float64)
        mean, std = values.mean(0), values.std(0, unbiased=False)
        constant = std <= 1e-6 * mean.abs().clamp_min(1.0)
        self.mean.copy_(mean)
        self.scale.copy_(torch.where(constant, torch.zeros_like(std), 1.0 / std.clamp_min(1e-30)))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) * self.scale


class ClsTower(nn.Module):
    """An encoder's ``[CLS]`` last hidden state -> :class:`Standardize` -> ``Linear(D -> item_dim)``
    + GELU.

    ``forward(**inputs)`` takes the backbone's keyword inputs for ``N`` items -> ``[N, item_dim]``.
    """

    def __init__(self, backbone: PreTrainedModel, item_dim: int) -> None:
        super().__init__()
        hidden = int(backbone.config.hidden_size)
        self.backbone = backbone
        self.standardize = Standardize(hidden)
        self.head = nn.Linear(hidden, item_dim)

    def cls_state(self, **inputs: Tensor) -> Tensor:
        """The backbone's raw ``[CLS]`` last hidden state, ``[N, D]``."""
        return self.backbone(**inputs).last_hidden_state[:, 0]

    def forward(self, **inputs: Tensor) -> Tensor:
        return F.gelu(self.head(self.standardize(self.cls_state(**inputs))))


class EndToEndItemEncoder(nn.Module):
    """Text and image towers + concat fusion: :class:`ItemBatch` of ``N`` items -> ``[N, item_dim]``."""

    tower_names: tuple[str, ...] = ("text", "image")

    def __init__(self, text: ClsTower, image: ClsTower, item_dim: int) -> None:
        super().__init__()
        self.text = text
        self.image = image
        self.fusion = ConcatFusion(len(self.tower_names), item_dim)
        self.item_dim = item_dim

    def tower_outputs(self, batch: ItemBatch) -> Tensor:
        """``[N, 2, item_dim]``: text and image tower outputs; rows without a cover have an
        all-zero image output (ViT does not run on them)."""
        text = self.text(**batch.text)
        image = text.new_zeros(len(batch), self.item_dim)
        rows = batch.has_image.nonzero().squeeze(1)
        if len(rows):
            image = image.index_copy(0, rows, self.image(pixel_values=batch.pixels.index_select(0, rows)).to(image.dtype))
        return torch.stack([text, image], dim=1)

    def availability(self, batch: ItemBatch, has_modality: dict[str, Tensor] | None = None) -> Tensor:
        """``bool[N, 2]``: the text is always available, the image where the cover was read."""
        return torch.stack([torch.ones_like(batch.has_image), batch.has_image], dim=1)

    def forward(self, batch: ItemBatch, has_modality: dict[str, Tensor] | None = None) -> Tensor:
        return self.fusion(self.tower_outputs(batch), self.availability(batch))

    def gate_values(self) -> dict[str, Tensor]:
        return {}

    def gate_sources(self) -> dict[str, tuple[str, ...]]:
        """No gates: ``{}``."""
        return {}


# method -> how it prepares a backbone (after the pooler is dropped)
PREPARE: dict[str, Callable[[PreTrainedModel, EndToEndConfig], PreTrainedModel]] = {
    "fft": lambda backbone, config: make_fully_trainable(backbone),
    "adapter": lambda backbone, config: add_houlsby_adapters(backbone, config.adapter_dim),
    "lora": lambda backbone, config: add_lora(backbone, config.lora_rank, config.lora_alpha),
}


def build_e2e_model(
    config: EndToEndConfig, text_backbone: PreTrainedModel, image_backbone: PreTrainedModel
) -> SequentialRecommender:
    """The model of ``config.method`` around the two backbones (modified in place: pooler
    dropped, weights frozen or not, adapters or LoRA injected). Heads, fusion and SASRec are
    freshly initialised (seed with ``torch.manual_seed`` first); the image head as IISAN's
    (Xavier-normal weight, zero bias)."""
    if config.method not in END_TO_END_METHODS:
        raise ValueError(f"unknown end-to-end method {config.method!r}; choose from {', '.join(END_TO_END_METHODS)}")
    prepare = PREPARE[config.method]
    text = ClsTower(prepare(drop_pooler(text_backbone), config), config.item_dim)
    image = ClsTower(prepare(drop_pooler(image_backbone), config), config.item_dim)
    xavier_normal_head(image.head)
    sequence_encoder = SASRec(config.item_dim, config.max_len, config.n_blocks, config.n_heads,
                              config.dropout, layout=config.sequence_encoder)
    return SequentialRecommender(config, EndToEndItemEncoder(text, image, config.item_dim), sequence_encoder)


def paper_backbones() -> tuple[BertModel, ViTModel]:
    """Randomly initialised BERT-base and ViT-B/16 (224 px): the shapes of ``bert-base-uncased``
    and ``google/vit-base-patch16-224`` (transformers' default configs). Build them under
    ``torch.device("meta")`` to count parameters without allocating."""
    return BertModel(BertConfig()), ViTModel(ViTConfig())
