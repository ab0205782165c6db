"""GRCN: Graph-Refined Convolutional Network.

Yinwei Wei, Xiang Wang, Liqiang Nie, Xiangnan He, Tat-Seng Chua. "Graph-Refined Convolutional
Network for Multimedia Recommendation with Implicit Feedback", ACM Multimedia 2020,
arXiv:2111.02036. Reference code: the authors' ``weiyinwei/GRCN`` (``Model_routing.py``,
``main.py``) and MMRec's port (``enoche/MMRec``, ``src/models/grcn.py``, ``GRCN.yaml``).

Consumes the training pairs (the observed user-item edges) and every modality's item content
``features[m]`` / ``has_feature[m]``; not the normalised adjacency and not the kNN graphs.

**Graph refining layer**, per modality ``m``:

* prototypical network: item content ``f_i = normalize(leaky_relu(W_m x_i + b_m))`` ``[C]``,
  user preference ``p_u = normalize(P_m[u])``, a free ``[U, C]`` parameter;
* neighbour routing, ``n_routing`` times (``routing = "users"``, the paper's):
  ``r_ui = softmax_{i in N_u}(p_u . f_i)``, ``p_u <- normalize(p_u + sum_i r_ui f_i)``;
  ``routing = "items"`` is what both codes compute, see below;
* affinities of every edge ``u - i`` in both directions:
  ``a_{i->u} = softmax_{i in N_u}(p_u . f_i)`` (the user's view) and
  ``a_{u->i} = softmax_{u in N_i}(p_u . f_i)`` (the item's view);
* the modality's content representations, one attention-weighted hop on the refined pairs:
  ``c_u = p_u + sum_i a_{i->u} f_i`` and ``c_i = f_i + sum_u a_{u->i} p_u`` ``[C]``.

**Edge refining**: each directed edge ``j -> t`` gets one weight from its modalities' affinities,
``weight_mode`` ``"confid"`` (the reference default): ``w = max_m(a^m_{j->t} * s_j^m)`` with a
learnt confidence ``s`` ``[U + I, M]`` of the message's source node; ``"max"``: ``max_m a^m``;
``"mean"``: ``mean_m a^m``. ``pruning`` (hard pruning) is ``w <- relu(w)``: an edge with a
negative weight is removed from the graph.

**Graph convolution** on the refined graph for the ID embeddings ``E`` ``[U + I, d]``:
``x0 = normalize(E)``, ``x_{l+1}[t] = sum_{j -> t} w_{j->t} x_l[j]`` (sum aggregation, no
activation), ``h = x0 + x1 + ... + x_L`` with ``L = 2``.

**Prediction**: ``[h_u ; c_u^1 ; ... ; c_u^M] . [h_i ; c_i^1 ; ... ; c_i^M]``, representations of
size ``d + M * C``.

**Loss**: mean BPR plus ``reg_weight`` times the reference's regulariser, the element mean of the
squared raw ID embeddings of the batch's (user, positive) and (user, negative) rows, plus, per
modality, the element mean of the squared raw preferences of the batch's users:
``mean(e_u^2) + (mean(e_p^2) + mean(e_n^2)) / 2 + sum_m mean(P_m[u]^2)``.

**Defaults** (:class:`GRCNConfig`): ``embedding_dim = content_dim = 64`` (``dim_E``/``dim_C`` of
the authors' ``main.py``, ``embedding_size``/``latent_embedding`` of MMRec), ``n_routing = 3``
(``num_routing``; MMRec's ``n_layers``), two ID layers (hard-coded in both), ``weight_mode =
"confid"`` (the default of both), ``pruning = True`` (``main.py``'s default and MMRec's hard-coded
value; the authors' README commands run ``--is_pruning=False``), ``reg_weight = 1e-4`` (the
authors' MovieLens command; their ``main.py`` default is 1e-5, TikTok 1e-3, Kwai 0.1, and MMRec
searches 1e-5 ... 1e-1). Edge dropout is 0 in both references and is left out; ``has_act`` False
and ``has_norm`` True (both references' defaults) are fixed. Initialisation: Xavier-normal ID
embeddings, preferences and confidences (both references), Xavier-normal projection weights
(MMRec; the authors' code keeps PyTorch's default), PyTorch's default projection bias.

**M modalities.** The reference has a hand-written branch per modality (visual, acoustic,
textual); here there is one :class:`ModalityGraph` per name in ``graph.modalities`` (canonical
order), the confidence has one column per modality, the max/mean run over the modalities, and
the concatenation follows the canonical order (so the representation size is ``d + M * C``).

**Choices where the sources are silent or disagree:**

* Routing (``routing``, the run's ``training.grcn_routing``): ``"users"`` (default) updates the
  user preferences from their items, as the paper describes. Both reference codes
  (``Model_routing.py`` ``CGCN.forward``, lines 84-90 at weiyinwei/GRCN 24bd1fa; MMRec
  ``src/models/grcn.py`` ``CGCN.forward``) run their ``GATConv`` on the one-way ``(user, item)``
  edges, so the messages (softmax over each item's users, ``GATConv.py``) are aggregated at the
  item rows (PyG's target is ``edge_index[1]``); they then add the user rows, which are zero,
  so their routing only normalises ``p_u``: ``"items"`` reproduces that (``p_u =
  normalize(P_m[u])``, the routing rounds change nothing), i.e. the code that produced the
  published numbers.
* Missing content: in modality ``m`` only the edges whose item has content take part (routing,
  both softmaxes, the content hop); an item without ``m`` has ``c_i^m = 0`` (:func:`mask_items`
  after the hop too, so no bias or user preference leaks into it), gets no ``a^m`` and adds no
  softmax mass to its users. An edge's weight takes the max/mean over the modalities its item
  has; an edge whose item has no content at all gets weight 0 (no modality can vouch for it;
  the item then keeps its own ID embedding only, and its users do not aggregate it).
* Softmaxes are not max-shifted: ``p_u . f_i`` lies in ``[-1, 1]`` (both unit or zero vectors).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crossan.graph_file.sparse import edge_propagate
from crossan.models.graph.base import GraphData, GraphRecommender, bpr_loss, mask_items
from crossan.runs.settings import CONVENTIONS

WEIGHT_MODES = ("confid", "max", "mean")
ROUTINGS: tuple[str, ...] = CONVENTIONS["grcn_routing"]  # ("users", "items")


@dataclass(frozen=True)
class GRCNConfig:
    """GRCN hyper-parameters; defaults from the authors' code (see the module docstring)."""

    embedding_dim: int = 64  # d: ID embeddings
    content_dim: int = 64  # C: each modality's preference/content size
    n_routing: int = 3  # routing iterations of the prototypical network
    n_layers: int = 2  # graph convolutions of the ID embeddings on the refined graph
    weight_mode: str = "confid"  # how the modalities' affinities make one edge weight
    pruning: bool = True  # relu on the edge weights (drop negative edges)
    reg_weight: float = 1e-4
    routing: str = "users"  # users: the paper's routing; items: both codes' (p_u only normalised)


def segment_softmax(scores: Tensor, segment: Tensor, n_segments: int, keep: Tensor) -> Tensor:
    """Softmax of ``scores`` ``[E]`` within each group of equal ``segment`` ``long[E]`` over the
    entries where ``keep`` ``bool[E]``; the others get 0. Scores must be small (no max shift)."""
    exp = scores.exp() * keep
    total = torch.zeros(n_segments, device=scores.device, dtype=scores.dtype).index_add_(0, segment, exp)
    return exp / total.clamp_min(1e-30)[segment]  # a group with no kept entry has numerator 0


def propagate(rows: Tensor, cols: Tensor, values: Tensor, shape: tuple[int, int], x: Tensor) -> Tensor:
    """``M x`` for the sparse ``M`` ``[shape]`` with ``values`` ``[E]`` at ``(rows, cols)`` (the
    values are trained: :func:`~crossan.graph_file.sparse.edge_propagate` keeps their gradient sparse)."""
    return edge_propagate(rows, cols, values, shape[0], x)


class ModalityOutput(NamedTuple):
    """One modality's refining layer. ``users`` ``[U, C]``, ``items`` ``[I, C]``: content
    representations; ``to_user``, ``to_item`` ``[E]``: affinities ``a_{i->u}``, ``a_{u->i}`` of
    each training pair (0 where ``available`` ``bool[E]``, the item's content, is False)."""

    users: Tensor
    items: Tensor
    to_user: Tensor
    to_item: Tensor
    available: Tensor


class ModalityGraph(nn.Module):
    """One modality's prototypical network: routing, edge affinities and the content hop."""

    def __init__(self, features: Tensor, has_feature: Tensor, n_users: int, dim: int, n_routing: int,
                 routing: str = ROUTINGS[0]):
        super().__init__()
        if routing not in ROUTINGS:
            raise ValueError(f"routing must be one of {', '.join(ROUTINGS)}, got {routing!r}")
        self.n_users, self.n_items = n_users, features.shape[0]
        # the codes' routing sends its messages to the item rows and keeps the (zero) user rows
        self.n_routing = n_routing if routing == "users" else 0
        self.register_buffer("features", features, persistent=False)
        self.register_buffer("has_feature", has_feature, persistent=False)
        self.projection = nn.Linear(features.shape[1], dim, device=features.device)
        nn.init.xavier_normal_(self.projection.weight)
        self.preference = nn.Parameter(nn.init.xavier_normal_(torch.empty(n_users, dim, device=features.device)))

    def content(self) -> Tensor:
        """``f`` ``[I, C]``: unit rows, zero rows for items without this modality."""
        return F.normalize(mask_items(F.leaky_relu(self.projection(self.features)), self.has_feature), dim=1)

    def forward(self, user: Tensor, item: Tensor) -> ModalityOutput:
        """Refine the training pairs ``user``, ``item`` ``long[E]`` in this modality."""
        U, I = self.n_users, self.n_items
        available = self.has_feature[item]
        content = self.content()
        preference = F.normalize(self.preference, dim=1)
        for _ in range(self.n_routing):
            routing = segment_softmax((preference[user] * content[item]).sum(1), user, U, available)
            preference = F.normalize(preference + propagate(user, item, routing, (U, I), content), dim=1)
        affinity = (preference[user] * content[item]).sum(1)
        to_user = segment_softmax(affinity, user, U, available)
        to_item = segment_softmax(affinity, item, I, available)
        users = preference + propagate(user, item, to_user, (U, I), content)
        items = mask_items(content + propagate(item, user, to_item, (I, U), preference), self.has_feature)
        return ModalityOutput(users, items, to_user, to_item, available)


class EdgeRefiner(nn.Module):
    """One weight per directed edge from the modalities' affinities (``weight_mode``)."""

    def __init__(self, n_users: int, n_items: int, n_modalities: int, weight_mode: str, pruning: bool,
                 device: torch.device):
        super().__init__()
        if weight_mode not in WEIGHT_MODES:
            raise ValueError(f"weight_mode must be one of {WEIGHT_MODES}, got {weight_mode!r}")
        self.n_users, self.weight_mode, self.pruning = n_users, weight_mode, pruning
        if weight_mode == "confid":
            self.confidence = nn.Parameter(nn.init.xavier_normal_(
                torch.empty(n_users + n_items, n_modalities, device=device)))

    def combine(self, affinity: Tensor, available: Tensor) -> Tensor:
        """``[E, M]`` scores -> ``[E]``: max or mean over the available modalities, 0 if none."""
        if self.weight_mode == "mean":
            return (affinity * available).sum(1) / available.sum(1).clamp_min(1)
        best = affinity.masked_fill(~available, float("-inf")).max(1).values
        return torch.where(available.any(1), best, torch.zeros_like(best))

    def forward(self, user: Tensor, item: Tensor, to_user: Tensor, to_item: Tensor,
                available: Tensor) -> tuple[Tensor, Tensor]:
        """Affinities ``[E, M]`` of the messages item -> user and user -> item -> their weights
        ``[E]`` each."""
        if self.weight_mode == "confid":  # the confidence of the message's source node
            to_user = to_user * self.confidence[self.n_users + item]
            to_item = to_item * self.confidence[user]
        weights = self.combine(to_user, available), self.combine(to_item, available)
        return tuple(F.relu(w) for w in weights) if self.pruning else weights


class RefinedGCN(nn.Module):
    """ID embeddings convolved on the refined user-item graph (sum aggregation, no activation)."""

    def __init__(self, n_users: int, n_items: int, dim: int, n_layers: int, device: torch.device):
        super().__init__()
        self.n_users, self.n_items, self.n_layers = n_users, n_items, n_layers
        self.embedding = nn.Parameter(nn.init.xavier_normal_(torch.empty(n_users + n_items, dim, device=device)))

    def forward(self, user: Tensor, item: Tensor, to_user: Tensor, to_item: Tensor) -> Tensor:
        """``x0 + x1 + ... + xL`` ``[U + I, d]``; row = message target, column = its source."""
        n, item_node = self.n_users + self.n_items, item + self.n_users
        rows, cols = torch.cat([user, item_node]), torch.cat([item_node, user])
        weights = torch.cat([to_user, to_item])
        x = F.normalize(self.embedding, dim=1)
        out = x
        for _ in range(self.n_layers):
            x = edge_propagate(rows, cols, weights, n, x)
            out = out + x
        return out


class GRCN(GraphRecommender):
    """GRCN on any non-empty set of modalities; representations of size ``d + M * C``."""

    config_type = GRCNConfig

    def __init__(self, graph: GraphData, config: GRCNConfig):
        super().__init__()
        self.config = config
        self.n_users, self.n_items = graph.n_users, graph.n_items
        self.register_buffer("user", graph.user, persistent=False)
        self.register_buffer("item", graph.item, persistent=False)
        self.modality = nn.ModuleDict({
            name: ModalityGraph(graph.features[name], graph.has_feature[name], graph.n_users, config.content_dim,
                                config.n_routing, config.routing)
            for name in graph.modalities})
        self.refiner = EdgeRefiner(graph.n_users, graph.n_items, len(graph.modalities), config.weight_mode,
                                   config.pruning, graph.device)
        self.id_gcn = RefinedGCN(graph.n_users, graph.n_items, config.embedding_dim, config.n_layers, graph.device)

    def refine(self) -> tuple[list[ModalityOutput], Tensor, Tensor]:
        """Every modality's output and the refined weights ``[E]`` of the messages item -> user
        and user -> item."""
        outputs = [module(self.user, self.item) for module in self.modality.values()]
        to_user = torch.stack([o.to_user for o in outputs], dim=1)  # [E, M]
        to_item = torch.stack([o.to_item for o in outputs], dim=1)
        available = torch.stack([o.available for o in outputs], dim=1)
        to_user, to_item = self.refiner(self.user, self.item, to_user, to_item, available)
        return outputs, to_user, to_item

    def forward(self) -> tuple[Tensor, Tensor]:
        """``(users [U, d + M C], items [I, d + M C])``."""
        outputs, to_user, to_item = self.refine()
        ids = self.id_gcn(self.user, self.item, to_user, to_item)
        users = torch.cat([ids[:self.n_users]] + [o.users for o in outputs], dim=1)
        items = torch.cat([ids[self.n_users:]] + [o.items for o in outputs], dim=1)
        return users, items

    def loss(self, users: Tensor, positives: Tensor, negatives: Tensor) -> Tensor:
        """BPR on the full forward plus the reference's element-mean regulariser."""
        all_users, all_items = self()
        embedding = self.id_gcn.embedding
        reg = (embedding[users].pow(2).mean()
               + (embedding[self.n_users + positives].pow(2).mean() + embedding[self.n_users + negatives].pow(2).mean()) / 2
               + sum(module.preference[users].pow(2).mean() for module in self.modality.values()))
        return bpr_loss(all_users[users], all_items[positives], all_items[negatives]) + self.config.reg_weight * reg


MODEL = GRCN  # what crossan.models.graph.registry loads for method 'grcn'
