"""MHCR: multi-view hypergraph-based contrastive learning.

Sisuo Lyu, Xiuze Zhou, Xuming Hu, "Multi-view Hypergraph-based Contrastive Learning Model for
Cold-Start Micro-video Recommendation", ICASSP 2025, arXiv:2409.09638. Reference
implementation: github.com/sisuolv/MHCR (``src/models/mhcr.py``, defaults in
``src/configs/model/MHCR.yaml``), built on MMRec's MGCN (modality views, common/specific
fusion) and LGMRec (learnable hyperedges). This module is written from the paper's description
and that code's equations; no code is copied.

Consumes: the normalised user-item adjacency ``A``, its user-item block ``R`` (normalised) and
the raw interaction matrix ``Y`` ``[U, I]``, each modality's item features ``x_m`` ``[I, D_m]``
and its kNN item graph: the first ``knn_k`` neighbours by cosine similarity (self included),
each edge weighted by that similarity (``GraphData.knn_score``), ``D^-1/2 S D^-1/2`` with ``D``
the row sums, as the reference's ``load_or_build_adj`` (``build_sim`` +
``build_knn_normalized_graph(..., norm_type='sym')``, ``src/utils/utils.py``).

The views, for each modality ``m`` of the run (any non-empty subset of text/image/video/audio):

1. **Collaborative view** (LightGCN): ``c = mean_{l=0..L} A^l [E_u; E_i]`` (``L = n_ui_layers``).
2. **Modality views** (item-item graphs): an item's ID embedding gated by its content,
   ``e_m = E_i * gate(W_m x_m + b_m)``, propagated over the kNN graph (``n_item_layers`` times),
   users ``R e_m``: ``v_m = [R e_m; S_m e_m]``.
3. **Fusion** (common + specific): attention ``w_m = softmax_m(q^T tanh(BN(W v_m + b)))``,
   ``common = sum_m w_m v_m``; ``specific_m = gate(c) * (v_m - common)``;
   ``side = (sum_m specific_m + common) / (M + 1)``. ``gate`` is one MLP
   ``sigmoid(BN(W2 relu(BN(W1 h + b1)) + b2))`` shared by the content gates and the preference
   gate, as in the reference code.
4. **Hypergraph views** (learnable hyperedges): ``H`` hyperedges per modality with a learnable
   ``[D_m, H]`` matrix ``P_m``; item memberships ``softmax((x_m P_m + g) / tau)``, user
   memberships ``softmax((Y x_m P_m + g) / tau)`` (``g`` Gumbel noise while training, each
   membership then dropped out with keep rate ``keep_rate``). ``n_hyper_layers`` rounds of
   hyperedge message passing from the collaborative item embeddings ``c_i``:
   ``z = H_i^T h``, ``h <- H_i z``, users ``H_u z`` (last round): ``y_m = [H_u z; h]``.
5. **Representation**: ``[users; items] = c + side + alpha * normalize(sum_m y_m)``
   (``final_sum = "fused"``; ``"last-layer"`` adds ``A^L [E_u; E_i]`` instead of ``side``, as
   the reference code does, see below); a score is the dot product.

The loss for a batch (users ``u``, positives ``p``, negatives ``n``):
``BPR(u, p, n) + reg_weight * (|u|^2 + |p|^2 + |n|^2) / (2B)``
``+ cl_weight * (NCE(side[p], c[p]) + NCE(side[u], c[u]))`` (in-batch InfoNCE, ``cl_tau``, mean)
``+ emb_weight * (||users||_F + ||items||_F) / I`` (all final representations, unsquared norms)
``+ hc_weight * (MV(y_m[u] for m; all users of y_first) + MV(y_m[p] for m; all items of y_first))``
``+ ghc_weight * sum_m RANK(y_m, v_m)``.
``MV`` is the reference's multi-view NCE, summed over the batch: positive score the sum over
modality pairs of ``exp(cos(y_a, y_b) / hc_tau)``, denominator the sum over modalities ``a`` and
all nodes ``j`` of ``exp(cos(y_a, y_first_j) / hc_tau)``. ``RANK`` is the graph-hypergraph
contrast: each row's values sorted, positive ``cos(sort y, sort v)``, one negative per node
``cos(sort y, sort v[perm])``, ``-log(e^pos / (e^pos + e^neg))`` at ``ghc_tau``, mean.

Defaults: ``MHCR.yaml`` (embedding 64, ``n_ui_layers`` 7, ``n_layers`` 1, ``knn_k`` 10,
``hyper_num`` 32, ``n_hyper_layer`` 4, ``tau`` 0.5, ``keep_rate`` 0.7, ``alpha`` 0.05,
``cl_loss`` 0.01, ``embloss_weight`` 0.1, ``hc_loss_weight`` 1e-5, ``ghc_weight`` 0.01,
``reg_weight`` 1e-4; learning rate 1e-3 is the training loop's, decayed as ``MHCR.yaml``'s
``learning_rate_scheduler: [0.96, 50]`` makes the reference trainer (``src/common/trainer.py``,
MMRec's) do: ``lr * 0.96 ** (e / 50)`` in epoch ``e + 1``, stepped after every epoch
(``lr_decay``, ``lr_decay_epochs``)); the reference code's fixed temperatures: 0.2 for both NCE
losses, 0.1 for the rank contrast. ``MHCR.yaml`` runs these values (``hyper_parameters: [""]``)
and keeps its search as a comment: ``hyper_num`` {4, ..., 128}, ``hc_loss_weight``
{1e-6, ..., 1e-4}, ``ghc_weight`` {0.001, ..., 0.1} (and ``embloss_weight``, listed without
values).

Choices where the paper and the reference code are silent or where we deviate:

* **Any M modalities** (the reference hard-codes image, text, video): every per-modality
  module is built for each of ``graph.modalities``; the fusion divides by ``M + 1``
  (reference: 4 for 3 modalities); the multi-view NCE sums over all ``M (M - 1) / 2`` pairs and
  takes its negatives from the first modality in canonical order (text when present: the
  reference uses text) and is skipped when ``M = 1`` (no pair).
* **Final sum** (``final_sum``, the run's ``training.mhcr_final_sum``): the reference adds
  ``side_embeddings``, the last user-item propagation layer ``A^L [E_u; E_i]`` (a name one
  letter from MGCN's fused ``side_embeds``, which it computes and leaves out), where MGCN adds
  the fused ``side`` view. ``"fused"`` (default) adds ``side``, else the modality views would
  reach the scores only through the losses; ``"last-layer"`` is the reference's sum.
* **Masked items** (no usable media in ``m``): their raw features are zeroed before use, their
  content gate is computed only for items with features (so BatchNorm statistics are over
  those items), their modality-view row is exactly zero (no kNN edges either), their
  attention weight for ``m`` is zero (softmax over the modalities they have; an item without
  any has ``common = 0``), their ``specific_m`` is zero, and they belong to no hyperedge of
  ``m`` (membership row zero). BatchNorm of the attention and the rank contrast of ``m`` use
  only the users and the items with ``m``.
* **BatchNorm** always normalises with the statistics of the full node set it sees (no running
  statistics): every forward pass covers all nodes, so training and evaluation agree.
* **Features** are trainable, initialised from the cached features (the reference's
  ``nn.Embedding.from_pretrained(freeze=False)``); ``train_features=False`` freezes them.
* **Randomness**: :meth:`forward` (evaluation) is deterministic: no Gumbel noise (the memberships
  are ``softmax(logits / tau)``) and no dropout. :meth:`loss` draws Gumbel noise, dropout masks
  and the rank contrast's permutations from the model's own generator, seeded from the global
  RNG at construction and reseeded from the run's generator by :meth:`start_epoch`; it lives on
  the parameters' device, so the draws are reproducible per device type, not across devices.
* A masked item's zero hypergraph row stays among the multi-view NCE's candidates (cosine 0),
  as in the reference.
* Duplicate users/items in a batch are kept (as in the reference); ``Y`` holds ones.
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
from crossan.runs.settings import CONVENTIONS

FINAL_SUMS: tuple[str, ...] = CONVENTIONS["mhcr_final_sum"]  # ("fused", "last-layer")


@dataclass(frozen=True)
class MHCRConfig:
    """Hyper-parameters; defaults from the reference ``MHCR.yaml`` and code."""

    embedding_dim: int = 64
    n_ui_layers: int = 7  # LightGCN layers of the collaborative view
    n_item_layers: int = 1  # kNN item-graph layers of each modality view
    knn_k: int = 10
    n_hyperedges: int = 32  # hyper_num
    n_hyper_layers: int = 4
    gumbel_tau: float = 0.5
    keep_rate: float = 0.7  # hyperedge-membership dropout keeps this fraction
    alpha: float = 0.05  # weight of the (normalised) hypergraph view in the representation
    cl_weight: float = 0.01  # side/collaborative InfoNCE
    cl_tau: float = 0.2
    hc_weight: float = 1e-5  # multi-view hypergraph NCE
    hc_tau: float = 0.2
    ghc_weight: float = 0.01  # graph-hypergraph rank contrast
    ghc_tau: float = 0.1
    emb_weight: float = 0.1  # unsquared norms of all final representations
    reg_weight: float = 1e-4  # squared norms of the batch's representations
    train_features: bool = True
    final_sum: str = "fused"  # what joins c in the scores: fused (side) or last-layer (the code's A^L E)
    lr_decay: float = 0.96  # learning rate x lr_decay ** (epoch / lr_decay_epochs) (MHCR.yaml)
    lr_decay_epochs: int = 50


class Gate(nn.Module):
    """``sigmoid(BN(W2 relu(BN(W1 h + b1)) + b2))``: ``[N, d] -> [N, d]`` in ``(0, 1)``."""

    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, dim), nn.BatchNorm1d(dim, track_running_stats=False), nn.ReLU(),
            nn.Linear(dim, dim), nn.BatchNorm1d(dim, track_running_stats=False), nn.Sigmoid(),
        )

    def forward(self, h: Tensor) -> Tensor:
        return self.net(h)


class ModalityAttention(nn.Module):
    """Attention score of a modality view: ``q^T tanh(BN(W v + b))``, ``[N, d] -> [N]``."""

    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, dim), nn.BatchNorm1d(dim, track_running_stats=False), nn.Tanh(),
            nn.Linear(dim, 1, bias=False),
        )

    def forward(self, v: Tensor) -> Tensor:
        return self.net(v).squeeze(1)


class HypergraphConvolution(nn.Module):
    """Message passing through the hyperedges, ``layers`` rounds: ``z = H_i^T h``,
    ``h <- H_i z``; users read the last round's hyperedges, ``H_u z``."""

    def __init__(self, layers: int):
        super().__init__()
        self.layers = layers

    def forward(self, item_membership: Tensor, user_membership: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
        """Memberships ``[I, H]`` and ``[U, H]``, item embeddings ``[I, d]`` ->
        ``(users [U, d], items [I, d])``."""
        users = user_membership.new_zeros(user_membership.shape[0], items.shape[1])
        for _ in range(self.layers):
            hyperedges = item_membership.T @ items  # [H, d]
            items = item_membership @ hyperedges
            users = user_membership @ hyperedges
        return users, items


@dataclass(frozen=True)
class Noise:
    """One training step's randomness, per modality: Gumbel noise ``[I, H]`` / ``[U, H]``,
    dropout multipliers (0 or ``1 / keep_rate``) of the same shapes, and a permutation of the
    rank contrast's nodes."""

    gumbel_items: dict[str, Tensor]
    gumbel_users: dict[str, Tensor]
    keep_items: dict[str, Tensor]
    keep_users: dict[str, Tensor]
    permutation: dict[str, Tensor]


@dataclass(frozen=True)
class Views:
    """Every representation one propagation produces (nodes = users then items)."""

    users: Tensor  # [U, d] final
    items: Tensor  # [I, d] final
    collaborative: Tensor  # [U + I, d]
    side: Tensor  # [U + I, d] fused modality views
    modality: dict[str, Tensor]  # m -> [U + I, d] item-item graph view
    content: dict[str, Tensor]  # m -> [I, d] gated item embedding (zero rows: masked)
    attention: Tensor  # [U + I, M] fusion weights
    item_membership: dict[str, Tensor]  # m -> [I, H]
    user_membership: dict[str, Tensor]  # m -> [U, H]
    hyper_users: dict[str, Tensor]  # m -> [U, d]
    hyper_items: dict[str, Tensor]  # m -> [I, d]


def info_nce(anchors: Tensor, positives: Tensor, tau: float) -> Tensor:
    """Mean in-batch InfoNCE of ``[B, d]`` rows: row ``b`` of ``positives`` is the positive of
    row ``b`` of ``anchors``, the other rows its negatives (cosine / ``tau``)."""
    similarity = F.normalize(anchors, dim=1) @ F.normalize(positives, dim=1).T / tau  # [B, B]
    return (torch.logsumexp(similarity, dim=1) - similarity.diagonal()).mean()


def multi_view_nce(views: list[Tensor], candidates: Tensor, tau: float) -> Tensor:
    """The reference's multi-view NCE summed over a batch: ``views`` ``M x [B, d]`` (M >= 2),
    ``candidates`` ``[N, d]`` (all nodes of one view)."""
    views = [F.normalize(v, dim=1) for v in views]
    candidates = F.normalize(candidates, dim=1)
    pairs = [(views[a] * views[b]).sum(1) for a in range(len(views)) for b in range(a + 1, len(views))]
    positive = torch.logsumexp(torch.stack(pairs, dim=1) / tau, dim=1)  # [B]
    total = torch.logsumexp(torch.cat([v @ candidates.T for v in views], dim=1) / tau, dim=1)  # [B]
    return (total - positive).sum()


def rank_contrast(hyper: Tensor, graph: Tensor, permutation: Tensor, tau: float) -> Tensor:
    """Graph-hypergraph contrast of ``[N, d]`` views on sorted rows; the negative of node ``j``
    is ``graph[permutation[j]]``."""
    hyper = F.normalize(torch.sort(hyper, dim=1).values, dim=1)
    graph = F.normalize(torch.sort(graph, dim=1).values, dim=1)
    positive = (hyper * graph).sum(1) / tau
    negative = (hyper * graph[permutation]).sum(1) / tau
    return (torch.logaddexp(positive, negative) - positive).mean()


class MHCR(GraphRecommender):
    """Collaborative, item-item and hypergraph views of every modality, fused; see the module
    docstring."""

    config_type = MHCRConfig

    def __init__(self, graph: GraphData, config: MHCRConfig):
        super().__init__()
        self.config = config
        self.n_users, self.n_items = graph.n_users, graph.n_items
        self.modalities = graph.modalities
        if not self.modalities:
            raise ValueError("MHCR needs at least one modality")
        if config.final_sum not in FINAL_SUMS:
            raise ValueError(f"final_sum must be one of {', '.join(FINAL_SUMS)}, got {config.final_sum!r}")
        d, device = config.embedding_dim, graph.device

        self.user_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(graph.n_users, d, device=device)))
        self.item_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(graph.n_items, d, device=device)))
        self.transform = nn.ModuleDict()
        self.hyperedges = nn.ParameterDict()
        self.features = nn.ParameterDict()
        for m in self.modalities:
            features, has = graph.features[m], graph.has_feature[m]
            if int(has.sum()) < 2:
                raise ValueError(f"MHCR needs at least two items with {m} features (BatchNorm)")
            self.transform[m] = nn.Linear(features.shape[1], d, device=device)
            self.hyperedges[m] = nn.Parameter(nn.init.xavier_uniform_(
                torch.empty(features.shape[1], config.n_hyperedges, device=device)))
            self.features[m] = nn.Parameter(features * has.unsqueeze(1), requires_grad=config.train_features)
        self.gate = Gate(d).to(device)
        self.attention = ModalityAttention(d).to(device)
        self.hypergraph = HypergraphConvolution(config.n_hyper_layers)

        # graphs and index sets: non-persistent buffers, so that .to(device) moves them
        self.register_buffer("adjacency", graph.adjacency, persistent=False)
        index, value = graph.adjacency.indices(), graph.adjacency.values()
        block = (index[0] < graph.n_users) & (index[1] >= graph.n_users)
        self.register_buffer("user_item", coo(torch.stack([index[0][block], index[1][block] - graph.n_users]),
                                              value[block], (graph.n_users, graph.n_items)), persistent=False)
        self.register_buffer("interactions", graph.interaction_matrix(), persistent=False)
        users = torch.arange(graph.n_users, device=device)
        for m in self.modalities:
            has = graph.has_feature[m]
            self.register_buffer(f"knn_{m}", graph.knn_adjacency(m, config.knn_k, "sym", weighted=True),
                                 persistent=False)
            self.register_buffer(f"has_{m}", has.clone(), persistent=False)
            self.register_buffer(f"items_{m}", has.nonzero().squeeze(1), persistent=False)
            self.register_buffer(f"nodes_{m}", torch.cat([users, graph.n_users + has.nonzero().squeeze(1)]),
                                 persistent=False)
        self.generator = self.new_generator(int(torch.randint(2**62, (1,))))

    def new_generator(self, seed: int) -> torch.Generator:
        """A generator on the parameters' device (noise is drawn where it is used)."""
        return torch.Generator(device=self.item_embedding.device).manual_seed(seed)

    def start_epoch(self, generator: torch.Generator) -> None:
        """Reseed the model's noise generator from the run's CPU ``generator``."""
        self.generator = self.new_generator(int(torch.randint(2**62, (1,), generator=generator)))

    def sample_noise(self, generator: torch.Generator) -> Noise:
        """One step's Gumbel noise, dropout multipliers and permutations, drawn on
        ``generator`` (on its device; moved to the parameters' device)."""
        device, h, keep = self.item_embedding.device, self.config.n_hyperedges, self.config.keep_rate
        on = {"generator": generator, "device": generator.device}
        sizes = {"items": self.n_items, "users": self.n_users}
        gumbel: dict[str, dict[str, Tensor]] = {"items": {}, "users": {}}
        dropout: dict[str, dict[str, Tensor]] = {"items": {}, "users": {}}
        permutation: dict[str, Tensor] = {}
        for m in self.modalities:
            for side, n in sizes.items():
                gumbel[side][m] = -torch.empty(n, h, device=generator.device).exponential_(
                    generator=generator).log().to(device)
                dropout[side][m] = ((torch.rand(n, h, **on) < keep).float() / keep).to(device)
            permutation[m] = torch.randperm(len(getattr(self, f"nodes_{m}")), **on).to(device)
        return Noise(gumbel["items"], gumbel["users"], dropout["items"], dropout["users"], permutation)

    def propagate(self, noise: Noise | None = None) -> Views:
        """All views; ``noise`` ``None`` is evaluation (no Gumbel noise, no dropout)."""
        cfg, n_users, n_items = self.config, self.n_users, self.n_items
        d = cfg.embedding_dim

        # 1. collaborative view: LightGCN, mean over layers 0..L
        layer = torch.cat([self.user_embedding, self.item_embedding])
        layers = [layer]
        for _ in range(cfg.n_ui_layers):
            layer = torch.sparse.mm(self.adjacency, layer)
            layers.append(layer)
        collaborative = torch.stack(layers).mean(0)  # [U + I, d]

        # 2. modality views over the kNN item graphs
        content, modality = {}, {}
        for m in self.modalities:
            items = getattr(self, f"items_{m}")
            gated = self.item_embedding[items] * self.gate(self.transform[m](self.features[m][items]))
            content[m] = self.item_embedding.new_zeros(n_items, d).index_copy(0, items, gated)
            view = content[m]
            for _ in range(cfg.n_item_layers):
                view = torch.sparse.mm(getattr(self, f"knn_{m}"), view)
            modality[m] = torch.cat([torch.sparse.mm(self.user_item, view), view])

        # 3. fusion: attention over the modalities each node has, common + specific parts
        lowest = torch.finfo(collaborative.dtype).min
        scores, available = [], []
        for m in self.modalities:
            nodes = getattr(self, f"nodes_{m}")
            scores.append(collaborative.new_full((n_users + n_items,), lowest).index_copy(
                0, nodes, self.attention(modality[m][nodes])))
            available.append(torch.cat([getattr(self, f"has_{m}").new_ones(n_users), getattr(self, f"has_{m}")]))
        mask = torch.stack(available, dim=1).to(collaborative.dtype)  # [U + I, M]
        attention = torch.softmax(torch.stack(scores, dim=1), dim=1) * mask  # rows without any: 0
        common = sum(attention[:, j:j + 1] * modality[m] for j, m in enumerate(self.modalities))
        preference = self.gate(collaborative)
        specific = [mask[:, j:j + 1] * preference * (modality[m] - common) for j, m in enumerate(self.modalities)]
        side = (sum(specific) + common) / (len(self.modalities) + 1)

        # 4. hypergraph views with learnable hyperedges
        item_membership, user_membership, hyper_users, hyper_items = {}, {}, {}, {}
        for m in self.modalities:
            has = getattr(self, f"has_{m}")
            logits = mask_items(self.features[m], has) @ self.hyperedges[m]  # [I, H]
            user_logits = torch.sparse.mm(self.interactions, logits)  # [U, H]
            if noise is not None:
                logits, user_logits = logits + noise.gumbel_items[m], user_logits + noise.gumbel_users[m]
            item_membership[m] = mask_items(torch.softmax(logits / cfg.gumbel_tau, dim=1), has)
            user_membership[m] = torch.softmax(user_logits / cfg.gumbel_tau, dim=1)
            items, users = item_membership[m], user_membership[m]
            if noise is not None:
                items, users = items * noise.keep_items[m], users * noise.keep_users[m]
            hyper_users[m], hyper_items[m] = self.hypergraph(items, users, collaborative[n_users:])
        hyper = torch.cat([sum(hyper_users.values()), sum(hyper_items.values())])

        joined = side if cfg.final_sum == "fused" else layers[-1]  # last-layer: the reference's sum
        final = collaborative + joined + cfg.alpha * F.normalize(hyper, dim=1)
        users, items = torch.split(final, [n_users, n_items])
        return Views(users, items, collaborative, side, modality, content, attention, item_membership,
                     user_membership, hyper_users, hyper_items)

    def forward(self) -> tuple[Tensor, Tensor]:
        """``(users [U, d], items [I, d])`` for evaluation (deterministic)."""
        views = self.propagate()
        return views.users, views.items

    def loss(self, users: Tensor, positives: Tensor, negatives: Tensor) -> Tensor:
        """The training objective of a batch (``long[B]`` each), with fresh noise."""
        return self.objective(users, positives, negatives, self.sample_noise(self.generator))

    def objective(self, users: Tensor, positives: Tensor, negatives: Tensor, noise: Noise) -> Tensor:
        """The training objective of a batch under the given ``noise``."""
        cfg, n_users = self.config, self.n_users
        views = self.propagate(noise)
        u, p, n = views.users[users], views.items[positives], views.items[negatives]
        loss = bpr_loss(u, p, n) + cfg.reg_weight * l2_regularization(u, p, n)

        side_users, side_items = views.side[:n_users], views.side[n_users:]
        cf_users, cf_items = views.collaborative[:n_users], views.collaborative[n_users:]
        loss = loss + cfg.cl_weight * (info_nce(side_items[positives], cf_items[positives], cfg.cl_tau)
                                       + info_nce(side_users[users], cf_users[users], cfg.cl_tau))
        loss = loss + cfg.emb_weight * (views.users.norm() + views.items.norm()) / self.n_items

        if len(self.modalities) > 1:
            first = self.modalities[0]
            hc = (multi_view_nce([views.hyper_users[m][users] for m in self.modalities],
                                 views.hyper_users[first], cfg.hc_tau)
                  + multi_view_nce([views.hyper_items[m][positives] for m in self.modalities],
                                   views.hyper_items[first], cfg.hc_tau))
            loss = loss + cfg.hc_weight * hc

        ghc = 0.0
        for m in self.modalities:
            nodes = getattr(self, f"nodes_{m}")
            hyper = torch.cat([views.hyper_users[m], views.hyper_items[m]])
            ghc = ghc + rank_contrast(hyper[nodes], views.modality[m][nodes], noise.permutation[m], cfg.ghc_tau)
        return loss + cfg.ghc_weight * ghc


MODEL = MHCR  # what crossan.models.graph.registry loads for method 'mhcr'
