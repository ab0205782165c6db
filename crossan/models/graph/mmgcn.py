"""MMGCN: one user-item graph convolution per modality, fused by averaging.

Yinwei Wei, Xiang Wang, Liqiang Nie, Xiangnan He, Richang Hong, Tat-Seng Chua, "MMGCN:
Multi-modal Graph Convolution Network for Personalized Recommendation of Micro-video", ACM
Multimedia 2019 (no arXiv version; doi 10.1145/3343031.3351034). Reference code: the authors'
``weiyinwei/MMGCN`` (``Model_MMGCN.py``, ``main.py``) and MMRec's ``src/models/mmgcn.py``.

Consumes the training pairs (one bipartite user-item graph, shared by all modalities) and one
content matrix ``F_m`` ``[I, D_m]`` per modality; the kNN item graphs are not used.

Per modality ``m`` the nodes start from ``x^0 = normalize([P_m ; mask(F_m W_0 + b_0)])``:
a learned preference vector ``P_m[u]`` per user (the user's taste in that modality) and the
item's projected content, each row L2-normalised. Each of the ``L`` layers then does

* aggregation (the paper's Eq. 1, ``f_avg``): ``h = LeakyReLU(mean_{j in N(v)} W_1 x_j)``,
  the mean over the node's graph neighbours (users see items, items see users);
* combination (Eq. 5, ``g_co``): ``x^ = LeakyReLU(W_2 x_v + b_2) + e_v`` with ``e_v`` the
  node's ID embedding (shared by all modalities and layers), then
  ``x_v <- LeakyReLU(W_3 [h || x^] + b_3)``.

The final representations average the modalities, ``u* = mean_m x_m^L[u]`` (same for items),
and score ``y_ui = u*^T i*``, so :meth:`MMGCN.forward` returns ``[U, d]`` and ``[I, d]``.
Loss: BPR over (user, positive, negative) plus ``reg_weight`` times the reference's squared-norm
term, ``mean(e_u^2) + (mean(e_p^2) + mean(e_n^2)) / 2 + sum_m mean(P_m^2)`` (means over
entries, i.e. the reference's mean over its ``[2B, d]`` interleaved pairs).

Defaults: ``embedding_dim = 64``, ``n_layers = 2``, mean aggregation, ``reg_weight = 1e-5``
(the authors' full-ranking ``main.py``, which passes its ``weight_decay = 1e-5`` as this
regulariser, with learning rate ``1e-4``; MMRec's ``MMGCN.yaml`` has 64 and 2 and tunes
``reg_weight`` over ``{0, 1e-5, 1e-4, 1e-3, 1e-2, 0.1}`` and the learning rate over
``{1e-4, 5e-4, 1e-3, 5e-3, 1e-2}``); ``latent_dim = 256`` (the reference's projection of its
visual features).

Where the paper and the reference code disagree or are silent, this module chooses:

* **Fusion**: the paper writes ``u* = sum_m u_m^L``; both codes average, which is the same
  ranking and the same loss landscape up to the score scale; we average, as the code that
  produced the published numbers. (The score is the dot product of the *fused* vectors, so
  it includes cross-modality terms ``u_m . i_m'``; it is not a sum of per-modality scores.)
* **Combination**: both codes pass ``concate='False'`` as a string, which is truthy, so what
  runs is the concatenation ``g_co`` with ID (``W_3 [h || x^]``); we implement that.
* **Trainable IDs and preferences**: in both codes ``id_embedding`` and ``preference`` are
  plain tensors that never reach the optimiser (a bug: the paper learns them); here they are
  parameters. Initialisation as the reference: Xavier-normal for them, for ``W_1`` (no bias)
  and for every ``W_2``/``W_3`` weight (the reference leaves the later layers' ``W_3`` at
  PyTorch's default), PyTorch's default for the biases and the projection ``W_0``.
* **M modalities**: every modality has its own projection ``W_0`` to ``latent_dim``, its own
  preferences and its own layers (the reference projects only the visual modality and feeds
  its 100-d text and 128-d audio raw; here every modality is a pooled encoder state),
  and every modality's preferences are regularised (the reference regularises only the
  projected, visual one). The fusion is the mean over however many modalities there are.
* **Layers**: MMRec reads ``n_layers`` but always runs three; the authors' Tiktok/Kwai code
  honours it and their ``main.py`` passes 2; we run ``n_layers``. The first layer's ``W_1``
  is ``latent_dim x latent_dim`` and its ``W_3`` reads ``latent_dim + d``; later ones are in
  ``d``.
* **Mean aggregation** is the row-normalised adjacency ``D^-1 A`` (PyG's ``aggr='mean'``);
  a node without edges aggregates zero.
* **Masked items** (no usable media in ``m``): the projected content is zeroed after the
  projection (its bias must not leak in), so their normalised ``x^0`` row is zero; the first
  layer's own-content term ``LeakyReLU(W_2 x^0 + b_2)`` is zeroed for them too, for the same
  reason. Such an item still sends a zero message to its users (and counts in their mean),
  and from the first layer on carries its ID embedding and what its users aggregate.
* The BPR term uses ``log sigmoid`` (the reference takes ``log(sigmoid(.))``, equal in value).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crossan.graph_file.sparse import coo, normalize_sparse
from crossan.models.graph.base import GraphData, GraphRecommender, bpr_loss, mask_items


@dataclass(frozen=True)
class MMGCNConfig:
    """MMGCN hyper-parameters (defaults: the authors' ``main.py`` and MMRec's ``MMGCN.yaml``)."""

    embedding_dim: int = 64  # d: ID embeddings and every layer's output
    latent_dim: int = 256  # projected content and user preferences (the reference's visual branch)
    n_layers: int = 2
    reg_weight: float = 1e-5


def mean_adjacency(graph: GraphData) -> Tensor:
    """Sparse COO ``[U + I, U + I]``: ``D^-1 A`` of the bipartite user-item graph (users first),
    so that multiplying by it averages each node's neighbours."""
    user, item = graph.user, graph.item + graph.n_users
    n = graph.n_users + graph.n_items
    indices = torch.stack([torch.cat([user, item]), torch.cat([item, user])])
    values = torch.ones(indices.shape[1], device=graph.device)
    return normalize_sparse(coo(indices, values, (n, n)), "rw")


class MMGCNLayer(nn.Module):
    """One aggregation + combination layer of one modality, ``[N, in_dim] -> [N, out_dim]``."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.aggregate = nn.Parameter(nn.init.xavier_normal_(torch.empty(in_dim, in_dim)))  # W_1
        self.own = nn.Linear(in_dim, out_dim)  # W_2
        self.combine = nn.Linear(in_dim + out_dim, out_dim)  # W_3 of g_co
        nn.init.xavier_normal_(self.own.weight)
        nn.init.xavier_normal_(self.combine.weight)

    def forward(self, x: Tensor, adjacency: Tensor, ids: Tensor, keep: Tensor | None = None) -> Tensor:
        """``x`` ``[N, in_dim]``, ``adjacency`` ``[N, N]`` (mean over neighbours), ``ids``
        ``[N, out_dim]``; ``keep`` ``[N, 1]`` zeroes the own-content term of masked items."""
        h = F.leaky_relu(torch.sparse.mm(adjacency, x @ self.aggregate))
        own = F.leaky_relu(self.own(x))
        if keep is not None:
            own = own * keep
        return F.leaky_relu(self.combine(torch.cat([h, own + ids], dim=1)))


class ModalityGCN(nn.Module):
    """One modality's graph: user preferences and projected item content through the layers."""

    def __init__(self, n_users: int, feature_dim: int, config: MMGCNConfig) -> None:
        super().__init__()
        self.preference = nn.Parameter(nn.init.xavier_normal_(torch.empty(n_users, config.latent_dim)))
        self.project = nn.Linear(feature_dim, config.latent_dim)  # W_0
        dims = [config.latent_dim] + [config.embedding_dim] * config.n_layers
        self.layers = nn.ModuleList(MMGCNLayer(dims[i], dims[i + 1]) for i in range(config.n_layers))

    def content(self, features: Tensor, has_feature: Tensor) -> Tensor:
        """``[I, latent_dim]`` projected item content, zero rows for masked items."""
        return mask_items(self.project(features), has_feature)

    def forward(self, features: Tensor, has_feature: Tensor, adjacency: Tensor, ids: Tensor) -> Tensor:
        """``[U + I, d]`` this modality's final user and item representations."""
        x = F.normalize(torch.cat([self.preference, self.content(features, has_feature)]), dim=1)
        users = torch.ones(len(self.preference), dtype=torch.bool, device=x.device)
        keep = torch.cat([users, has_feature]).unsqueeze(1).to(x.dtype)
        for index, layer in enumerate(self.layers):
            x = layer(x, adjacency, ids, keep if index == 0 else None)
        return x


class MMGCN(GraphRecommender):
    """MMGCN over ``graph.modalities``; ``forward`` gives the modality-averaged representations."""

    config_type = MMGCNConfig

    def __init__(self, graph: GraphData, config: MMGCNConfig) -> None:
        super().__init__()
        self.config = config
        self.n_users = graph.n_users
        self.features = graph.features
        self.has_feature = graph.has_feature
        self.adjacency = mean_adjacency(graph)
        n_nodes = graph.n_users + graph.n_items
        self.id_embedding = nn.Parameter(nn.init.xavier_normal_(torch.empty(n_nodes, config.embedding_dim)))
        self.gcns = nn.ModuleDict({m: ModalityGCN(graph.n_users, graph.features[m].shape[1], config)
                                   for m in graph.modalities})
        self.to(graph.device)

    def modality_representations(self) -> dict[str, Tensor]:
        """Modality name -> ``[U + I, d]`` its GCN's output (users first)."""
        return {m: gcn(self.features[m], self.has_feature[m], self.adjacency, self.id_embedding)
                for m, gcn in self.gcns.items()}

    def forward(self) -> tuple[Tensor, Tensor]:
        """``(users [U, d], items [I, d])``: the mean over modalities."""
        fused = torch.stack(list(self.modality_representations().values())).mean(0)
        return fused[:self.n_users], fused[self.n_users:]

    def loss(self, users: Tensor, positives: Tensor, negatives: Tensor) -> Tensor:
        """BPR on the fused representations plus ``reg_weight`` times the reference's mean
        squared ID embeddings of the batch and mean squared preferences of every modality."""
        user_rep, item_rep = self()
        ranking = bpr_loss(user_rep[users], item_rep[positives], item_rep[negatives])
        ids = self.id_embedding
        reg = (ids[users].pow(2).mean()
               + (ids[self.n_users + positives].pow(2).mean() + ids[self.n_users + negatives].pow(2).mean()) / 2
               + sum(gcn.preference.pow(2).mean() for gcn in self.gcns.values()))
        return ranking + self.config.reg_weight * reg


MODEL = MMGCN  # what crossan.models.graph.registry loads for method 'mmgcn'
