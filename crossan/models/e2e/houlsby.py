"""Houlsby adapters inside a frozen encoder (paper Table 3, "Adapter"; Houlsby et al. 2019).

Two bottleneck adapters per transformer layer, one after the attention output projection and
one after the feed-forward output projection, each ``x + up(relu(down(x)))``
(:class:`~crossan.models.adapters.Adapter`, the block the side adapters use too). The adapter
reads the projection's output before dropout, the skip connection and LayerNorm, as in
Houlsby's placement ("applied to the output of each sub-layer, after projection back to the
input size, and before adding the skip connection back"); IISAN ``Code_Uncached/`` applies
dropout first, which only matters in training mode.

Everything else in the encoder stays frozen. Parameters per adapter: ``2*D*h + h + D``
(787,712 at D=768, h=512), so 48 adapters in BERT-base + ViT-base = 37,810,176.
"""

from __future__ import annotations

import re

from torch import Tensor, nn
from transformers import PreTrainedModel

from crossan.models.adapters import Adapter

# Each architecture's two output projections per layer, as module-name patterns.
OUTPUT_PROJECTIONS: dict[str, re.Pattern[str]] = {
    "BertModel": re.compile(r"^encoder\.layer\.\d+\.(attention\.output|output)\.dense$"),
    "ViTModel": re.compile(r"^layers\.\d+\.(attention\.o_proj|mlp\.fc2)$"),
}


class AdaptedProjection(nn.Module):
    """A frozen ``nn.Linear`` followed by a trainable Houlsby adapter: ``[..., in] -> [..., D]``."""

    def __init__(self, projection: nn.Linear, hidden: int) -> None:
        super().__init__()
        self.projection = projection
        self.adapter = Adapter(projection.out_features, hidden)

    def forward(self, x: Tensor) -> Tensor:
        return self.adapter(self.projection(x))


def add_houlsby_adapters(backbone: PreTrainedModel, hidden: int) -> PreTrainedModel:
    """Freeze ``backbone`` and wrap both output projections of every layer with an adapter of
    bottleneck ``hidden`` (in place; returned for chaining).

    Raises ValueError for an architecture without a known layout, or when the layout does not
    give exactly two projections per layer.
    """
    name = type(backbone).__name__
    if name not in OUTPUT_PROJECTIONS:
        raise ValueError(f"no Houlsby adapter layout for {name}; known: {', '.join(OUTPUT_PROJECTIONS)}")
    backbone.requires_grad_(False)
    targets = [path for path, _ in backbone.named_modules() if OUTPUT_PROJECTIONS[name].match(path)]
    expected = 2 * int(backbone.config.num_hidden_layers)
    if len(targets) != expected:
        raise ValueError(f"{name}: found {len(targets)} output projections, expected {expected}")
    for path in targets:
        backbone.set_submodule(path, AdaptedProjection(backbone.get_submodule(path), hidden))
    return backbone
