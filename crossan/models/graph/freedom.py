"""FREEDOM: a frozen multimodal item-item graph plus a denoised user-item graph.

Xin Zhou and Zhiqi Shen, "A Tale of Two Graphs: Freezing and Denoising Graph Structures for
Multimodal Recommendation", ACM Multimedia 2023, arXiv:2211.06924. Reference implementation:
``enoche/FREEDOM`` / ``enoche/MMRec`` (``src/models/freedom.py``, ``configs/model/FREEDOM.yaml``).

Consumes (:class:`~crossan.models.graph.base.GraphData`): the training pairs and their
normalised user-item adjacency, each modality's kNN item graph (``knn_index``, self included)
and each modality's item features ``x_m`` ``[I, D_m]``.

The model, in words:

* **Frozen item-item graph.** Per modality the kNN graph on the first ``knn_k`` neighbours,
  every edge of weight 1 (unlike MGCN's and MHCR's similarity weights: the reference's
  ``get_knn_adj_mat`` keeps only the top-k indices), ``A_m = D^-1/2 K_m D^-1/2`` (row degrees,
  as the reference); the graphs are mixed by fixed
  modality weights, ``S = sum_m w_m A_m``, once, before training, and never updated.
* **Denoised user-item graph.** Before every training epoch ``keep = floor(E (1 - rho))`` of the
  ``E`` training edges are drawn without replacement with probability proportional to
  ``1 / sqrt(d_u d_i)`` (degrees in the full graph), so edges between popular nodes, the
  likeliest noise, are pruned most; the kept edges are re-normalised ``D^-1/2 A D^-1/2`` with
  their own degrees. In eval mode (``model.eval()``) the full graph is used, as the reference
  does at test time.
* **Representations.** LightGCN on the (pruned) user-item graph from ID embeddings ``E_u, E_i``:
  ``e^(l+1) = A e^(l)``, averaged over layers ``0..n_ui_layers``; the item ID embeddings are also
  convolved ``n_ii_layers`` times on ``S``: ``h = S^L E_i``. Users: ``u = mean_l e_u^(l)``; items:
  ``i = mean_l e_i^(l) + h``; score ``u . i``. The features shape the scores only through ``S``
  and the auxiliary loss below, as in the reference.
* **Loss.** ``BPR(u, i+, i-) + lambda * sum_m BPR(u, p_m(i+), p_m(i-))`` with the projected
  content ``p_m(i) = W_m x_m(i) + b_m`` (a ``[D_m -> d]`` linear layer on a trainable copy of the
  features, which the reference fine-tunes), plus an optional L2 term on the batch's ego
  embeddings (weight ``l2_weight``; the reference has none: its ``reg_weight`` is ``lambda``
  and its optimizer's weight decay is 0).

Defaults (``FREEDOMConfig``), from the paper's implementation details and the reference's
``FREEDOM.yaml`` / ``overall.yaml``: ``embedding_dim = 64`` (also the projected content's size,
``feat_embed_dim = 64``), ``n_ui_layers = 2``, ``n_ii_layers = 1`` (``n_mm_layers``),
``knn_k = 10``, image weight 0.1 / text weight 0.9 (``mm_image_weight = 0.1``), Xavier-uniform
ID embeddings, trainable raw features. The reference tunes ``dropout`` rho in {0.8, 0.9} and
``reg_weight`` lambda in {0, 1e-5, 1e-4, 1e-3} per dataset and ships no single value: we default
to ``rho = 0.8`` (the first of its grid) and ``lambda = 1e-4`` (the middle non-zero value).

Generalisation to M modalities (FREEDOM has exactly image and text) and our choices where the
sources are silent:

* each modality name has a configurable weight (default text 0.9, image 0.1, video 0.1,
  audio 0.1: text keeps 9x the weight of each other modality, as in the reference's pair);
  ``S``'s row ``i`` is ``sum_m w_m A_m[i] / sum_{m: item i has m} w_m``: the weights are
  re-normalised over the run's modalities *per item*, over those the item has. For text + image
  and an item with both this is exactly the reference's ``0.1 A_image + 0.9 A_text``; with one
  modality it is that modality's graph, as the reference's single-modality branch; an item
  masked in a modality mixes only its other modalities' neighbours (row sum 1 again), and an
  item masked in every modality has an empty row (``h = 0``);
* items masked in a modality have no kNN row and are nobody's neighbour there
  (:func:`~crossan.graph_file.build.knn_neighbours`), so a masked modality adds nothing to ``S``;
* the auxiliary BPR term of modality ``m`` averages only over the batch's triples whose
  positive and negative items both have ``m`` (the reference has no missing media); a masked
  item's projected content is zeroed after the linear layer (its bias must not leak) and a
  batch without such a triple contributes 0;
* the per-modality BPR terms are summed (not averaged) over modalities, as the reference's
  ``mf_t_loss + mf_v_loss``;
* ``keep`` is ``floor(E (1 - rho))`` as the reference's ``int(...)``; the draw uses the
  ``generator`` passed to :meth:`FREEDOM.start_epoch`; until the first call training uses the
  full graph;
* ``knn_k`` larger than the stored neighbour count uses all stored neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from crossan.graph_file.sparse import coo
from crossan.models.graph.base import (
    GraphData,
    GraphRecommender,
    bpr_loss,
    l2_regularization,
    mask_items,
)

DEFAULT_MODALITY_WEIGHTS: tuple[tuple[str, float], ...] = (("text", 0.9), ("image", 0.1), ("video", 0.1),
                                                            ("audio", 0.1))


@dataclass(frozen=True)
class FREEDOMConfig:
    """FREEDOM's hyper-parameters (defaults: the paper / MMRec ``FREEDOM.yaml``; see the module
    docstring).

    Attributes:
        embedding_dim: ID embedding size, also the projected content's size.
        n_ui_layers: LightGCN layers on the user-item graph.
        n_ii_layers: convolutions of the item ID embeddings on the frozen item-item graph.
        knn_k: neighbours per item in each modality's kNN graph (self included).
        modality_weights: (modality name, weight) pairs mixing the kNN graphs; re-normalised
            per item over the modalities it has.
        edge_dropout: fraction ``rho`` of user-item edges pruned each epoch.
        modality_loss_weight: ``lambda``, weight of the per-modality BPR terms (MMRec's
            ``reg_weight``).
        l2_weight: weight of an L2 term on the batch's ego embeddings (0 in the reference).
        tune_features: fine-tune a copy of the raw item features (the reference does).
    """

    embedding_dim: int = 64
    n_ui_layers: int = 2
    n_ii_layers: int = 1
    knn_k: int = 10
    modality_weights: tuple[tuple[str, float], ...] = DEFAULT_MODALITY_WEIGHTS
    edge_dropout: float = 0.8
    modality_loss_weight: float = 1e-4
    l2_weight: float = 0.0
    tune_features: bool = True


def frozen_item_graph(graph: GraphData, weights: dict[str, float], k: int) -> Tensor:
    """The mixed item-item graph ``S`` as sparse COO ``[I, I]``: each modality's sym-normalised
    kNN graph weighted by ``weights[m]``, each row divided by the summed weight of the
    modalities its item has (empty rows for items without any)."""
    missing = [m for m in graph.modalities if m not in weights]
    if missing:
        raise ValueError(f"FREEDOM has no modality weight for {missing}; set modality_weights")
    mixed = coo(torch.empty(2, 0, dtype=torch.long, device=graph.device), torch.empty(0, device=graph.device),
                (graph.n_items, graph.n_items))
    available = torch.zeros(graph.n_items, device=graph.device)  # [I] summed weight of the item's modalities
    for m in graph.modalities:
        mixed = mixed + weights[m] * graph.knn_adjacency(m, k, "sym")
        available += weights[m] * graph.has_feature[m].to(available.dtype)
    mixed = mixed.coalesce()
    inverse = torch.where(available > 0, available.reciprocal(), torch.zeros_like(available))
    row = mixed.indices()[0]
    return coo(mixed.indices(), mixed.values() * inverse[row], mixed.shape)


class DegreeSensitivePruning:
    """Samples FREEDOM's denoised user-item graph: edges kept with probability proportional to
    ``1 / sqrt(d_u d_i)``, without replacement, then re-normalised."""

    def __init__(self, graph: GraphData, dropout: float):
        self.n_users, self.n_items = graph.n_users, graph.n_items
        self.user, self.item = graph.user, graph.item  # long[E]
        self.keep = int(len(graph.user) * (1.0 - dropout))
        user_degree = torch.bincount(graph.user, minlength=graph.n_users).double()
        item_degree = torch.bincount(graph.item, minlength=graph.n_items).double()
        # on the CPU: torch.multinomial draws on the (CPU) generator passed to sample()
        self.probability = (user_degree[graph.user] * item_degree[graph.item]).rsqrt().float().cpu()  # [E]

    def sample(self, generator: torch.Generator) -> Tensor:
        """A pruned, sym-normalised adjacency: sparse COO ``[U + I, U + I]``, users first."""
        if self.keep > 0:
            kept = torch.multinomial(self.probability, self.keep, replacement=False, generator=generator)
        else:
            kept = torch.empty(0, dtype=torch.long)
        kept = kept.to(self.user.device)
        return bipartite_adjacency(self.user[kept], self.item[kept], self.n_users, self.n_items)


def bipartite_adjacency(user: Tensor, item: Tensor, n_users: int, n_items: int) -> Tensor:
    """``D^-1/2 A D^-1/2`` of the bipartite graph with edges ``(user[e], item[e])`` ``long[E]``,
    sparse COO ``[U + I, U + I]``, users first (each degree from the given edges)."""
    user_degree = torch.bincount(user, minlength=n_users).float()
    item_degree = torch.bincount(item, minlength=n_items).float()
    value = (user_degree[user] * item_degree[item]).rsqrt()  # every degree here is >= 1
    row = torch.cat([user, item + n_users])
    col = torch.cat([item + n_users, user])
    n = n_users + n_items
    return coo(torch.stack([row, col]), torch.cat([value, value]), (n, n))


class ModalityContent(nn.Module):
    """One modality's projected content ``p_m(i) = W_m x_m(i) + b_m``, zero for masked items."""

    def __init__(self, features: Tensor, has_feature: Tensor, dim: int, tune_features: bool):
        super().__init__()
        if tune_features:
            self.features = nn.Parameter(features.clone())  # [I, D_m]
        else:
            self.register_buffer("features", features.clone(), persistent=False)
        self.register_buffer("has_feature", has_feature.clone(), persistent=False)  # bool[I]
        self.projection = nn.Linear(features.shape[1], dim)

    def forward(self, items: Tensor) -> Tensor:
        """``[N, d]`` content of the items ``long[N]``."""
        return mask_items(self.projection(self.features[items]), self.has_feature[items])


class FREEDOM(GraphRecommender):
    """LightGCN on a per-epoch pruned user-item graph plus ID convolution on a frozen multimodal
    item-item graph, trained with BPR and per-modality BPR terms on projected content."""

    config_type = FREEDOMConfig

    def __init__(self, graph: GraphData, config: FREEDOMConfig):
        super().__init__()
        if not graph.modalities:
            raise ValueError("FREEDOM needs at least one modality")
        if not 0 <= config.edge_dropout < 1:
            raise ValueError(f"edge_dropout must be in [0, 1), got {config.edge_dropout}")
        self.config = config
        self.n_users, self.n_items = graph.n_users, graph.n_items
        self.modalities = graph.modalities
        self.user_embedding = nn.Parameter(torch.empty(graph.n_users, config.embedding_dim, device=graph.device))
        self.item_embedding = nn.Parameter(torch.empty(graph.n_items, config.embedding_dim, device=graph.device))
        nn.init.xavier_uniform_(self.user_embedding)
        nn.init.xavier_uniform_(self.item_embedding)
        self.content = nn.ModuleDict({
            m: ModalityContent(graph.features[m], graph.has_feature[m], config.embedding_dim, config.tune_features)
            for m in graph.modalities
        }).to(graph.device)
        self.pruning = DegreeSensitivePruning(graph, config.edge_dropout) if config.edge_dropout > 0 else None
        self.register_buffer("adjacency", graph.adjacency, persistent=False)  # sparse [U + I, U + I]
        self.register_buffer("pruned_adjacency", graph.adjacency, persistent=False)  # resampled each epoch
        item_graph = frozen_item_graph(graph, dict(config.modality_weights), config.knn_k)
        self.register_buffer("item_graph", item_graph, persistent=False)  # sparse [I, I], frozen

    def start_epoch(self, generator: torch.Generator) -> None:
        """Draw this epoch's pruned user-item graph."""
        if self.pruning is not None:
            self.pruned_adjacency = self.pruning.sample(generator).to(self.adjacency.device)

    def propagate(self, adjacency: Tensor) -> tuple[Tensor, Tensor]:
        """``(users [U, d], items [I, d])`` on the user-item graph ``adjacency``."""
        ego = torch.cat([self.user_embedding, self.item_embedding])  # [U + I, d]
        layers = [ego]
        for _ in range(self.config.n_ui_layers):
            layers.append(torch.sparse.mm(adjacency, layers[-1]))
        users, items = torch.stack(layers).mean(0).split([self.n_users, self.n_items])
        semantic = self.item_embedding
        for _ in range(self.config.n_ii_layers):
            semantic = torch.sparse.mm(self.item_graph, semantic)
        return users, items + semantic

    def forward(self) -> tuple[Tensor, Tensor]:
        """``(users [U, d], items [I, d])``: the pruned graph in training, the full one in eval."""
        return self.propagate(self.pruned_adjacency if self.training else self.adjacency)

    def loss(self, users: Tensor, positives: Tensor, negatives: Tensor) -> Tensor:
        """BPR on the final representations + ``lambda`` x per-modality BPR on the projected
        content (triples whose two items both have the modality) + optional L2."""
        all_users, all_items = self.forward()
        user = all_users[users]  # [B, d]
        loss = bpr_loss(user, all_items[positives], all_items[negatives])
        for m in self.modalities:
            content = self.content[m]
            valid = (content.has_feature[positives] & content.has_feature[negatives]).to(user.dtype)  # [B]
            margin = (user * (content(positives) - content(negatives))).sum(-1)
            modality_bpr = -(nn.functional.logsigmoid(margin) * valid).sum() / valid.sum().clamp_min(1)
            loss = loss + self.config.modality_loss_weight * modality_bpr
        if self.config.l2_weight > 0:
            loss = loss + self.config.l2_weight * l2_regularization(
                self.user_embedding[users], self.item_embedding[positives], self.item_embedding[negatives])
        return loss


MODEL = FREEDOM  # what crossan.models.graph.registry loads for method 'freedom'
