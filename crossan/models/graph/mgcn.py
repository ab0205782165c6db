"""MGCN: Multi-View Graph Convolutional Network for Multimedia Recommendation.

Penghang Yu, Zhiyi Tan, Guanming Lu, Bing-Kun Bao. ACM Multimedia 2023, arXiv:2308.03588.
Authors' code: github.com/demonph10/MGCN (built on MMRec, github.com/enoche/MMRec, whose
``src/models/mgcn.py`` is the widely used reference). Written from the paper and those sources,
not copied.

Consumes: the training user-item graph (``GraphData.adjacency``), one fixed kNN item-item graph
per modality (``GraphData.knn_index``) and the item content ``features[m]`` ``[I, D_m]``.

The model, in words (``d`` = ``embedding_dim``, ``M`` modalities, ``N = U + I`` nodes):

1. **Behaviour-guided purifier.** Each modality's features are projected to ``d``
   (``x_m = W_m f_m + b_m``) and gated by the item's ID embedding:
   ``p_m = e_i * sigmoid(G_m x_m + g_m)``. The ID embedding decides which content dimensions
   pass, so modality noise unrelated to behaviour is filtered out.
2. **User-item view.** LightGCN on the normalised user-item graph over the ID embeddings
   ``E = [E_u; E_i]``: ``E^(l+1) = A E^(l)``, behaviour view ``h = mean(E^(0), ..., E^(L_ui))``.
3. **Item-item view.** Per modality, ``p_m`` is propagated ``L_ii`` times on the modality's
   kNN graph, fixed during training: each item's ``k`` nearest items by cosine similarity on
   the raw features (self included), each kept edge weighted by that similarity
   (``S[i, j] = cos(f_i, f_j)`` for the top ``k`` ``j``, 0 elsewhere), normalised
   ``D^-1/2 S D^-1/2`` with ``D`` the row sums of ``S`` (both codes' ``build_sim`` +
   ``build_knn_normalized_graph(..., norm_type='sym')`` in ``src/utils/utils.py``; the
   similarities are ``GraphData.knn_score``, computed on the run's own item content):
   ``i_m = S_m^L_ii p_m``; users aggregate their items: ``u_m = R i_m`` with ``R`` the
   user-item block of the normalised adjacency. The modality view of every node is
   ``e_m = [u_m; i_m]``.
4. **Behaviour-aware fuser.** Attention across modalities: ``a_m = softmax_m(q^T tanh(W e_m +
   b))`` (shared ``W, b, q``), common part ``c = sum_m a_m e_m``; each modality's specific
   part ``s_m = e_m - c`` is weighted by the node's preference for that modality, computed
   from its behaviour view: ``s_m' = sigmoid(P_m h + p_m) * s_m``. The fused content view is
   ``side = (c + sum_m s_m') / (M + 1)``; the final representation is ``h + side`` for users
   and items, and a score is their dot product.
5. **Loss.** ``BPR(h + side) + reg_weight * L2(batch final embeddings) / 2B +
   cl_weight * (InfoNCE(side_i, h_i) over the batch's positive items + InfoNCE(side_u, h_u)
   over the batch's users)``, InfoNCE with cosine similarity, temperature ``tau`` and the
   other rows of the batch as negatives (duplicates included, as the reference).

Defaults are ``src/configs/model/MGCN.yaml`` (the same file in the authors' code and in MMRec;
both grid ``cl_loss`` over ``{0.001, 0.01, 0.1}``): ``embedding_dim 64``, ``n_ui_layers 2``,
``n_ii_layers 1``, ``knn_k 10``, ``reg_weight 1e-4``, ``cl_weight 0.01`` (the middle of that
search), temperature ``0.2`` (hard-coded in both codes), Xavier-uniform ID embeddings, PyTorch
defaults for the linear layers, and the raw features fine-tuned (``nn.Embedding.from_pretrained
(freeze=False)`` in both codes; ``finetune_features``). No dropout. The learning rate decays
as ``MGCN.yaml``'s ``learning_rate_scheduler: [0.96, 50]`` makes both codes' trainer
(``src/common/trainer.py``) do: ``lr * 0.96 ** (e / 50)`` in epoch ``e + 1``, a ``LambdaLR``
stepped after every epoch (``lr_decay``, ``lr_decay_epochs``; :mod:`crossan.train.graph`).

**Generalisation to M modalities** (the paper and codes have exactly image + text, one
``Linear``, purifier gate and preference gate per modality, one shared attention query): every
modality of ``graph.modalities`` gets its own projection, purifier gate, kNN graph and
preference gate; the attention softmax runs over the modalities; the divisor is ``M + 1`` (the
reference's ``3`` for two). With one modality, ``c = e_1``, ``s_1 = 0`` and
``side = e_1 / 2``.

**Choices where the sources are silent:**

* Softmax over modalities: the paper's equation, MMRec, and the authors' code from its second
  commit on (``nn.Softmax(dim=-1)`` on the ``[N, M]`` scores; their first commit had ``dim=0``,
  across nodes).
* Masked items (no usable media in modality ``m``): the projection ``x_m`` and the purified
  ``p_m`` are zeroed (the gate's bias would otherwise let ``e_i * sigmoid(g_m)`` through), and
  such an item has no kNN row and is nobody's neighbour, so ``i_m = 0``. A node *lacks*
  modality ``m`` when it is a masked item, or a user none of whose training items has it
  (``u_m = 0``). The fuser ignores lacking modalities: they get attention weight 0 (softmax
  over the modalities the node has) and no specific part; the divisor stays ``M + 1``. A node
  lacking every modality has ``side = 0``. Without masked items this is the reference's
  computation (for two modalities; up to ties in the kNN order, and a row whose similarities
  sum to less than 0, possible only with negative similarities: left empty here, NaN there).
* Raw features are a trainable copy (``finetune_features``); masked rows get zero gradient and
  stay zero. The kNN graphs are built once from the raw features and never change.
* ``R`` (items -> users) is the user-item block of ``GraphData.adjacency``
  (``1 / sqrt(d_u d_i)``), as the reference's ``norm_adj[:U, U:]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crossan.graph_file.sparse import coo
from crossan.models.graph.base import (
    GraphData,
    GraphRecommender,
    bpr_loss,
    l2_regularization,
    mask_items,
)


@dataclass(frozen=True)
class MGCNConfig:
    """MGCN hyper-parameters; defaults from the authors' ``MGCN.yaml`` (see the module docstring)."""

    embedding_dim: int = 64
    n_ui_layers: int = 2  # LightGCN layers on the user-item graph
    n_ii_layers: int = 1  # propagation steps on each kNN item-item graph
    knn_k: int = 10  # neighbours per item (self included); at most those stored in the graph
    reg_weight: float = 1e-4  # L2 on the batch's final embeddings
    cl_weight: float = 0.01  # weight of the InfoNCE term (paper: {0.001, 0.01, 0.1})
    temperature: float = 0.2  # InfoNCE temperature
    finetune_features: bool = True  # raw features trainable, as the reference
    lr_decay: float = 0.96  # learning rate x lr_decay ** (epoch / lr_decay_epochs) (MGCN.yaml)
    lr_decay_epochs: int = 50


def info_nce(view1: Tensor, view2: Tensor, temperature: float) -> Tensor:
    """Mean InfoNCE of ``[B, d]`` row pairs: row ``b`` of ``view1`` against all rows of
    ``view2`` by cosine similarity / ``temperature``, its own row being the positive."""
    logits = F.normalize(view1, dim=1) @ F.normalize(view2, dim=1).T / temperature  # [B, B]
    return F.cross_entropy(logits, torch.arange(len(logits), device=logits.device))


def lightgcn(adjacency: Tensor, embeddings: Tensor, n_layers: int) -> Tensor:
    """Mean of ``embeddings`` ``[N, d]`` and its ``n_layers`` propagations by ``adjacency``."""
    layers = [embeddings]
    for _ in range(n_layers):
        layers.append(torch.sparse.mm(adjacency, layers[-1]))
    return torch.stack(layers).mean(0)


class BehaviourGuidedPurifier(nn.Module):
    """Per modality: project the features to ``d``, then gate the item ID embeddings with them."""

    def __init__(self, feature_dims: dict[str, int], dim: int) -> None:
        super().__init__()
        self.project = nn.ModuleDict({m: nn.Linear(n, dim) for m, n in feature_dims.items()})
        self.gate = nn.ModuleDict({m: nn.Sequential(nn.Linear(dim, dim), nn.Sigmoid()) for m in feature_dims})

    def forward(self, features: dict[str, Tensor], has_feature: dict[str, Tensor], item_ids: Tensor) -> dict[str, Tensor]:
        """``features[m]`` ``[I, D_m]``, ``item_ids`` ``[I, d]`` -> purified ``[I, d]`` per
        modality, zero for masked items."""
        purified = {}
        for m, project in self.project.items():
            content = mask_items(project(features[m]), has_feature[m])
            purified[m] = mask_items(item_ids * self.gate[m](content), has_feature[m])
        return purified


class ItemItemView(nn.Module):
    """Propagation of the purified item content on each modality's fixed kNN graph, and the
    users' aggregation of their items' result."""

    def __init__(self, graph: GraphData, knn_k: int, n_layers: int) -> None:
        super().__init__()
        self.modalities = graph.modalities
        self.n_layers = n_layers
        for m in self.modalities:
            self.register_buffer(f"knn_{m}", graph.knn_adjacency(m, knn_k, "sym", weighted=True),
                                 persistent=False)
        index, value = graph.adjacency.indices(), graph.adjacency.values()
        block = (index[0] < graph.n_users) & (index[1] >= graph.n_users)
        user_item = coo(index[:, block] - torch.tensor([[0], [graph.n_users]], device=graph.device),
                        value[block], (graph.n_users, graph.n_items))
        self.register_buffer("user_item", user_item, persistent=False)

    def forward(self, purified: dict[str, Tensor]) -> dict[str, Tensor]:
        """Purified ``[I, d]`` per modality -> modality view ``[U + I, d]`` (users first)."""
        views = {}
        for m in self.modalities:
            items = purified[m]
            for _ in range(self.n_layers):
                items = torch.sparse.mm(getattr(self, f"knn_{m}"), items)
            views[m] = torch.cat([torch.sparse.mm(self.user_item, items), items])
        return views


class BehaviourAwareFuser(nn.Module):
    """Attention across modalities (common part) plus behaviour-gated modality-specific parts."""

    def __init__(self, modalities: tuple[str, ...], dim: int) -> None:
        super().__init__()
        self.modalities = modalities
        self.query = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1, bias=False))
        self.prefer = nn.ModuleDict({m: nn.Sequential(nn.Linear(dim, dim), nn.Sigmoid()) for m in modalities})

    def weights(self, views: Tensor, present: Tensor) -> Tensor:
        """Attention ``[M, N]`` of modality views ``[M, N, d]``: softmax over the modalities a
        node has (``present`` ``bool[M, N]``), 0 elsewhere (all 0 for a node with none)."""
        logits = self.query(views).squeeze(-1).masked_fill(~present, float("-inf"))
        logits = logits.masked_fill(~present.any(0, keepdim=True), 0.0)  # avoid NaN: all -inf
        return torch.softmax(logits, dim=0) * present

    def forward(self, views: dict[str, Tensor], present: Tensor, behaviour: Tensor) -> Tensor:
        """Modality views ``[N, d]``, ``present`` ``bool[M, N]``, behaviour view ``[N, d]`` ->
        fused content view ``[N, d]``."""
        stacked = torch.stack([views[m] for m in self.modalities])  # [M, N, d]
        common = (self.weights(stacked, present).unsqueeze(-1) * stacked).sum(0)
        fused = common
        for j, m in enumerate(self.modalities):
            specific = mask_items(stacked[j] - common, present[j])
            fused = fused + self.prefer[m](behaviour) * specific
        return fused / (len(self.modalities) + 1)


class MGCN(GraphRecommender):
    """Purifier -> user-item and item-item views -> fuser; score = ``(h + side)_u . (h + side)_i``."""

    config_type = MGCNConfig

    def __init__(self, graph: GraphData, config: MGCNConfig) -> None:
        super().__init__()
        self.config = config
        self.n_users, self.n_items = graph.n_users, graph.n_items
        self.modalities = graph.modalities
        dim = config.embedding_dim
        self.user_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(graph.n_users, dim)))
        self.item_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(graph.n_items, dim)))
        self.features = nn.ParameterDict({m: nn.Parameter(graph.features[m].clone(), config.finetune_features)
                                          for m in self.modalities})
        self.register_buffer("adjacency", graph.adjacency, persistent=False)
        # a user lacks modality m when none of its training items has it (its u_m is then 0)
        present = []
        for m in self.modalities:
            items_with = graph.has_feature[m]
            users_with = torch.zeros(graph.n_users, device=graph.device).index_add_(
                0, graph.user, items_with[graph.item].float()) > 0
            present.append(torch.cat([users_with, items_with]))
        self.register_buffer("present", torch.stack(present), persistent=False)  # bool[M, U + I]

        self.purifier = BehaviourGuidedPurifier({m: graph.features[m].shape[1] for m in self.modalities}, dim)
        self.item_item = ItemItemView(graph, config.knn_k, config.n_ii_layers)
        self.fuser = BehaviourAwareFuser(self.modalities, dim)
        self.to(graph.device)  # parameters are initialised on the CPU: the same values on any device

    @property
    def has_feature(self) -> dict[str, Tensor]:
        """Modality name -> ``bool[I]``."""
        return {m: self.present[j, self.n_users:] for j, m in enumerate(self.modalities)}

    def views(self) -> tuple[Tensor, Tensor]:
        """``(behaviour h [U + I, d], fused content side [U + I, d])``, users first."""
        behaviour = lightgcn(self.adjacency, torch.cat([self.user_embedding, self.item_embedding]),
                             self.config.n_ui_layers)
        purified = self.purifier(dict(self.features), self.has_feature, self.item_embedding)
        side = self.fuser(self.item_item(purified), self.present, behaviour)
        return behaviour, side

    def forward(self) -> tuple[Tensor, Tensor]:
        """``(users [U, d], items [I, d])`` = ``h + side``."""
        behaviour, side = self.views()
        return torch.split(behaviour + side, [self.n_users, self.n_items])

    def loss(self, users: Tensor, positives: Tensor, negatives: Tensor) -> Tensor:
        """BPR + L2 on the batch's final embeddings + ``cl_weight`` * InfoNCE between the fused
        content and behaviour views of the batch's users and positive items."""
        behaviour, side = self.views()
        final_users, final_items = torch.split(behaviour + side, [self.n_users, self.n_items])
        u, p, n = final_users[users], final_items[positives], final_items[negatives]
        item_rows = positives + self.n_users
        contrast = (info_nce(side[item_rows], behaviour[item_rows], self.config.temperature)
                    + info_nce(side[users], behaviour[users], self.config.temperature))
        return (bpr_loss(u, p, n) + self.config.reg_weight * l2_regularization(u, p, n)
                + self.config.cl_weight * contrast)


MODEL = MGCN  # what crossan.models.graph.registry loads for method 'mgcn'
