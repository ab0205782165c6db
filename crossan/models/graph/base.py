"""What every multimodal graph recommender shares: its inputs, its interface, and graph helpers.

A model is built from a :class:`GraphData` (the training graph and the item content of the run's
modalities, on one device) and its own frozen config dataclass (paper defaults), and implements
:class:`GraphRecommender`:

* ``forward() -> (users [U, d'], items [I, d'])``: the final representations; a user's score
  for an item is their dot product (a model that scores with a sum over modalities returns
  the concatenations);
* ``loss(users, positives, negatives) -> scalar``: the model's own training objective for one
  batch of training pairs (``long[B]`` each; BPR for most, BM3 ignores the negatives);
* ``start_epoch(generator)``: per-epoch resampling (FREEDOM's pruned graph), a no-op by default.

Item rows are 0-based (dense id - 1). Item content: ``features[m]`` ``float32[I, D_m]`` (one
kept layer's pooled state, :mod:`crossan.graph_file.build`), zero rows where ``has_feature[m]`` is
False. **A masked item has no feature contribution**: every model zeroes a masked item's
per-modality content representation after its transforms (a bias must not leak in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crossan.graph_file.sparse import coo, normalize_sparse


@dataclass(frozen=True)
class GraphData:
    """Inputs of a graph recommender, on one device.

    Attributes:
        n_users, n_items: node counts.
        user, item: ``long[E]`` training pairs (user row, 0-based item row), distinct.
        adjacency: sparse COO ``[U + I, U + I]`` float32, ``D^-1/2 A D^-1/2`` of the bipartite
            user-item graph, users first.
        features: modality name -> ``float32[I, D_m]``, zero rows for masked items.
        has_feature: modality name -> ``bool[I]``.
        knn_index: modality name -> ``long[I, k]`` top-k cosine neighbours, self included,
            best first; ``-1`` in the rows of masked items.
        knn_score: modality name -> ``float32[I, k]`` their cosine similarities (0 where -1).
    """

    n_users: int
    n_items: int
    user: Tensor
    item: Tensor
    adjacency: Tensor
    features: dict[str, Tensor]
    has_feature: dict[str, Tensor]
    knn_index: dict[str, Tensor]
    knn_score: dict[str, Tensor]

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modality names in canonical order (text, image, video, audio)."""
        return tuple(self.features)

    @property
    def device(self) -> torch.device:
        return self.user.device

    def interaction_matrix(self) -> Tensor:
        """Sparse COO ``[U, I]`` float32 with 1 at each training pair."""
        values = torch.ones(len(self.user), device=self.device)
        return coo(torch.stack([self.user, self.item]), values, (self.n_users, self.n_items))

    def knn_adjacency(self, modality: str, k: int | None = None, normalization: str = "sym",
                      weighted: bool = False) -> Tensor:
        """The modality's kNN graph as sparse COO ``[I, I]`` float32: an edge from each item to its
        first ``k`` neighbours (all stored ones if ``None``), of weight ``1`` (FREEDOM's
        ``get_knn_adj_mat``) or, ``weighted``, the pair's cosine similarity ``knn_score``
        (MMRec's ``build_knn_normalized_graph``: the top-k values, as MGCN and MHCR use it);
        normalised ``"sym"`` (``D^-1/2 A D^-1/2`` with the row sums ``D``), ``"rw"``
        (``D^-1 A``) or ``"none"``. A row whose weights sum to 0 or less (possible only with
        negative similarities) is left empty (the reference's ``deg.pow_(-0.5)`` gives NaN
        for a negative sum)."""
        index = self.knn_index[modality]
        score = self.knn_score[modality]
        index, score = (index, score) if k is None else (index[:, :k], score[:, :k])
        rows = torch.arange(self.n_items, device=self.device).unsqueeze(1).expand_as(index)
        keep = index >= 0
        values = score[keep].to(torch.float32) if weighted else torch.ones(int(keep.sum()), device=self.device)
        matrix = coo(torch.stack([rows[keep], index[keep]]), values, (self.n_items, self.n_items))
        return normalize_sparse(matrix, normalization)

    def to(self, device: torch.device | str) -> GraphData:
        def move(mapping: dict[str, Tensor]) -> dict[str, Tensor]:
            return {name: tensor.to(device) for name, tensor in mapping.items()}

        return GraphData(self.n_users, self.n_items, self.user.to(device), self.item.to(device),
                         self.adjacency.to(device), move(self.features), move(self.has_feature),
                         move(self.knn_index), move(self.knn_score))


def bpr_loss(users: Tensor, positives: Tensor, negatives: Tensor) -> Tensor:
    """Mean BPR loss ``-log sigmoid(u.p - u.n)`` over ``B`` rows of ``[B, d]`` embeddings."""
    return -F.logsigmoid((users * positives).sum(-1) - (users * negatives).sum(-1)).mean()


def l2_regularization(*tensors: Tensor) -> Tensor:
    """``sum ||t||^2 / 2`` over the tensors, divided by the batch size (rows of the first), as
    LightGCN/MMRec's ``EmbLoss``."""
    return sum(t.pow(2).sum() for t in tensors) / (2 * tensors[0].shape[0])


def mask_items(content: Tensor, has_feature: Tensor) -> Tensor:
    """``content`` ``[I, d]`` with the rows of masked items (``has_feature`` False) set to zero."""
    return content * has_feature.unsqueeze(1).to(content.dtype)


class GraphRecommender(nn.Module):
    """Base class: subclasses set up parameters in ``__init__(graph, config)`` and implement
    :meth:`forward` and :meth:`loss`; ``config_type`` is the dataclass of their parameters."""

    config_type: ClassVar[type]
    config: Any  # an instance of config_type, set by __init__ (metrics.json's hyper_parameters)

    def forward(self) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        """``(users [U, d'], items [I, d'])``: score = dot product."""
        raise NotImplementedError

    def loss(self, users: Tensor, positives: Tensor, negatives: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def gate_values(self) -> dict[str, Tensor]:
        """No gates (Figure 4 is CROSSAN's): ``{}``."""
        return {}

    def gate_sources(self) -> dict[str, tuple[str, ...]]:
        return {}

    def start_epoch(self, generator: torch.Generator) -> None:
        """Called before each training epoch (CPU ``generator`` seeded by the run)."""
