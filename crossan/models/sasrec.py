"""SASRec-style sequence encoder, and the ID-embedding item encoder of the ID-only baseline.

The layout follows the MoRec/MicroLens sequence encoder that IISAN and CROSSAN build on
(MicroLens ``Code/VideoRec/SASRec/model/modules.py``, IISAN ``Code_Cached/model/modules.py``):
``LayerNorm(item + position)`` and dropout at the input, then post-LN Transformer blocks
whose attention projections (Q, K, V, output) have **no bias**, and a ReLU FFN of width 4d;
every LayerNorm has eps 1e-6. There is no final LayerNorm (the input one plays its role).
``SEQUENCE_LAYOUTS["gelu"]`` is our earlier variant (GELU FFN, PyTorch's default eps 1e-5 in
the blocks), kept so its effect can be measured; it has the same parameters.

Parameter count for d=64, 2 blocks, 10 positions: positions 640 + input LayerNorm 128 +
2 x (attention 4*64*64 = 16,384 + LayerNorm 128 + FFN 16,640 + 16,448 + LayerNorm 128)
= 100,224, the paper's figure. A pre-LN block with biased attention projections and a final
LayerNorm instead has 100,736: the 512 difference is exactly the attention biases,
2 blocks x (3*64 + 64).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crossan.runs.settings import training_default

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"relu": F.relu, "gelu": F.gelu}
# config name -> (FFN activation, LayerNorm eps inside the blocks); the input LayerNorm is 1e-6
SEQUENCE_LAYOUTS: dict[str, tuple[str, float]] = {
    "microlens": ("relu", 1e-6),  # MicroLens / IISAN modules.py
    "gelu": ("gelu", 1e-5),  # ours before: GELU, nn.LayerNorm's default eps
}


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention with a causal + key-padding mask; bias-free projections.

    ``x: [B, L, d]``, ``valid: bool[B, L]`` (True = a real item) -> ``[B, L, d]``. Position
    ``t`` attends to positions ``<= t`` that are real items, and always to itself (so a
    padding query never has an empty row; its output is ignored downstream).
    """

    def __init__(self, dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim {dim} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        b, length, dim = x.shape
        q, k, v = self.qkv(x).split(dim, dim=2)
        q, k, v = (t.view(b, length, self.n_heads, dim // self.n_heads).transpose(1, 2) for t in (q, k, v))
        causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
        eye = torch.eye(length, dtype=torch.bool, device=x.device)
        mask = (causal & valid[:, None, None, :]) | eye  # [B, 1, L, L]
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.proj(y.transpose(1, 2).reshape(b, length, dim))


class FeedForward(nn.Module):
    """``Linear(d -> 4d)``, activation (ReLU or GELU), ``Linear(4d -> d)``; ``[..., d] -> [..., d]``."""

    def __init__(self, dim: int, expansion: int = 4, activation: str = "relu") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got {activation!r}")
        self.fc = nn.Linear(dim, expansion * dim)
        self.out = nn.Linear(expansion * dim, dim)
        self.activation = ACTIVATIONS[activation]

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.activation(self.fc(x)))


class Block(nn.Module):
    """Post-LN Transformer block: ``x = LN(x + drop(attn(x))); x = LN(x + drop(ffn(x)))``;
    ``[B, L, d]`` + ``valid: bool[B, L]`` -> ``[B, L, d]``."""

    def __init__(self, dim: int, n_heads: int, dropout: float, activation: str = "relu", eps: float = 1e-6) -> None:
        super().__init__()
        self.attn = CausalSelfAttention(dim, n_heads, dropout)
        self.ln_attn = nn.LayerNorm(dim, eps=eps)
        self.ffn = FeedForward(dim, activation=activation)
        self.ln_ffn = nn.LayerNorm(dim, eps=eps)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        x = self.ln_attn(x + self.drop(self.attn(x, valid)))
        return self.ln_ffn(x + self.drop(self.ffn(x)))


class SASRec(nn.Module):
    """Sequence encoder: item embeddings ``[B, L, d]`` + ``valid: bool[B, L]`` -> ``[B, L, d]``.

    Output row ``t`` is the user state after items ``0..t`` (causal), used to score item
    ``t + 1``. Learned absolute positions ``0..max_len-1``; padding (left or right) is masked
    out of every attention row. Weights: Xavier-normal linear layers and positions, zero
    biases. ``layout``: a key of :data:`SEQUENCE_LAYOUTS` (``"microlens"``: ReLU FFN, eps 1e-6).
    """

    def __init__(
        self,
        dim: int = 64,
        max_len: int = training_default("max_len"),
        n_blocks: int = 2,
        n_heads: int = 2,
        dropout: float = 0.1,
        layout: str = training_default("sequence_encoder"),
    ) -> None:
        super().__init__()
        if layout not in SEQUENCE_LAYOUTS:
            raise ValueError(f"sequence encoder layout must be one of {tuple(SEQUENCE_LAYOUTS)}, got {layout!r}")
        activation, eps = SEQUENCE_LAYOUTS[layout]
        self.max_len = max_len
        self.positions = nn.Embedding(max_len, dim)
        self.ln_in = nn.LayerNorm(dim, eps=1e-6)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(dim, n_heads, dropout, activation, eps) for _ in range(n_blocks))
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_normal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.xavier_normal_(self.positions.weight)

    def forward(self, items: Tensor, valid: Tensor) -> Tensor:
        length = items.shape[1]
        if length > self.max_len:
            raise ValueError(f"sequence length {length} exceeds max_len {self.max_len}")
        valid = valid.to(torch.bool)
        position = torch.arange(length, device=items.device)
        x = self.drop(self.ln_in(items + self.positions(position)))
        for block in self.blocks:
            x = block(x, valid)
        return x


class IDItemEncoder(nn.Module):
    """ID-only baseline's item encoder: ``item_ids: long[N] -> [N, d]``.

    Table ``[n_items + 1, d]``, row 0 = padding (zero, no gradient); normal(0, 1/sqrt(d)) init.
    """

    def __init__(self, n_items: int, dim: int = 64) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_items + 1, dim, padding_idx=0)
        nn.init.normal_(self.embedding.weight, std=1.0 / math.sqrt(dim))
        with torch.no_grad():
            self.embedding.weight[0].zero_()

    def forward(self, item_ids: Tensor) -> Tensor:
        return self.embedding(item_ids)

    def gate_values(self) -> dict[str, Tensor]:
        """No gates: ``{}``."""
        return {}

    def gate_sources(self) -> dict[str, tuple[str, ...]]:
        """No gates: ``{}``."""
        return {}
