"""Counting a model's trainable parameters (paper Table 4's TP)."""

from __future__ import annotations

from torch import nn


def count_trainable(model: nn.Module) -> int:
    """Number of scalars in parameters with ``requires_grad`` (shared tensors once)."""
    seen: set[int] = set()
    total = 0
    for parameter in model.parameters():
        if parameter.requires_grad and id(parameter) not in seen:
            seen.add(id(parameter))
            total += parameter.numel()
    return total
