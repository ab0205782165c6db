"""Sparse COO helpers shared by graph building and the graph recommenders (``torch.sparse``)."""

from __future__ import annotations

import torch
from torch import Tensor


def coo(indices: Tensor, values: Tensor, shape: tuple[int, int], check: bool = False) -> Tensor:
    """A coalesced sparse COO matrix; ``check`` validates the indices (for data read from disk)."""
    return torch.sparse_coo_tensor(indices, values, shape, check_invariants=check).coalesce()


def normalize_sparse(matrix: Tensor, normalization: str = "sym") -> Tensor:
    """Normalise a coalesced sparse COO matrix by its row sums: ``"sym"``
    ``D^-1/2 M D^-1/2`` (square matrices), ``"rw"`` ``D^-1 M``, ``"none"`` unchanged. Empty
    rows stay empty."""
    if normalization == "none":
        return matrix
    row, col = matrix.indices()
    degree = torch.zeros(matrix.shape[0], device=matrix.device).index_add_(0, row, matrix.values())
    if normalization == "sym":
        inv = torch.where(degree > 0, degree.pow(-0.5), torch.zeros_like(degree))
        values = inv[row] * matrix.values() * inv[col]
    elif normalization == "rw":
        inv = torch.where(degree > 0, degree.reciprocal(), torch.zeros_like(degree))
        values = inv[row] * matrix.values()
    else:
        raise ValueError(f"normalization must be sym, rw or none, got {normalization!r}")
    return coo(matrix.indices(), values, matrix.shape)


def sparse_dropout(matrix: Tensor, p: float, generator: torch.Generator | None = None) -> Tensor:
    """Drop each stored entry of a coalesced sparse COO matrix with probability ``p`` (no
    rescaling; the random draw on the CPU ``generator``); ``p = 0`` returns ``matrix``."""
    if p <= 0:
        return matrix
    keep = (torch.rand(matrix.values().shape, generator=generator) >= p).to(matrix.device)
    return coo(matrix.indices()[:, keep], matrix.values()[keep], matrix.shape)


def edge_propagate(rows: Tensor, cols: Tensor, values: Tensor, n_rows: int, x: Tensor) -> Tensor:
    """``M x`` for the sparse ``M`` with ``values`` ``[E]`` at ``(rows, cols)``: ``[n_rows, d]``.

    For edge weights that are trained (GRCN's refined graph): written as a gather and an
    ``index_add`` so the gradient of ``values`` is ``[E]``; ``torch.sparse.mm``'s backward
    materialises a dense ``[n_rows, n_cols]`` gradient for its sparse operand (57 GB for the
    MicroLens-100K user-item graph).
    """
    messages = values.unsqueeze(1).to(x.dtype) * x.index_select(0, cols)
    return x.new_zeros(n_rows, x.shape[1]).index_add_(0, rows, messages)
