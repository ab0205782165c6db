"""BM3: Bootstrap Latent Representations for Multi-modal Recommendation.

Xin Zhou, Hongyu Zhou, Yong Liu, Zhiwei Zeng, Chunyan Miao, Pengwei Wang, Yuan You, Feijun
Jiang, WWW 2023, arXiv:2207.05969. Reference implementation: ``enoche/BM3`` and the MMRec
toolbox (``enoche/MMRec``, ``src/models/bm3.py``, ``src/configs/model/BM3.yaml``).

Consumes the normalised user-item adjacency and the raw item features of each modality (the kNN
graphs are not used). No negatives, no augmented graphs: the training signal is a
BYOL/SimSiam-style bootstrap between an online predictor and a stop-gradient target whose
"augmentation" is plain dropout on latent vectors.

Equations, in words (``cos`` is cosine similarity, ``sg`` stop-gradient, means over the batch):

* ID encoder: LightGCN on the user-item graph, ``H = mean(E, A E, ..., A^L E)`` of the
  ``[U + I, d]`` ID table ``E``; items add their own ID embedding once more (a residual),
  ``h_i = H_i + e_i``; users take ``h_u = H_u``.
* Modality projection, one per modality ``m``: ``h_i^m = W_m x_i^m + b_m``.
* Predictor ``f`` (one linear layer, **shared** by IDs and every modality) gives the online
  view ``~h = f(h)``; the target view is ``.h = sg(dropout_p(h))``.
* Graph reconstruction: ``L_rec = (1 - cos(~h_u, .h_i)) + (1 - cos(~h_i, .h_u))`` over the
  batch's (user, positive item) pairs.
* Inter-modality alignment: ``L_align^m = 1 - cos(~h_i^m, .h_i)`` (content predicts the item's
  ID target); intra-modality (masked) alignment: ``L_mask^m = 1 - cos(~h_i^m, .h_i^m)``.
* Regularisation, as the reference's ``EmbLoss`` on the full encoder outputs:
  ``R = (||H_users||_F + ||H_items||_F) / I`` (Frobenius norms, not squared, of all ``U``
  user and ``I`` item rows, divided by the number of items).
* ``L = L_rec + alignment_weight * sum_m (L_align^m + L_mask^m) + reg_weight * R``.
* Score: ``f(h_u) . f(h_i)``: :meth:`BM3.forward` returns the online (predicted) views.

Defaults (:class:`BM3Config`): 64-d embeddings; ``n_layers = 1``, ``dropout = 0.5``,
``reg_weight = 0.1``: the best setting on Baby in the authors' README (``enoche/BM3``: Baby
1/0.5/0.1, Sports 1/0.5/0.01, Elec 2/0.3/0.1; the tuned grid in MMRec's ``BM3.yaml`` is
``n_layers {1, 2}`` x ``dropout {0.3, 0.5}`` x ``reg_weight {0.1, 0.01}``);
``alignment_weight = 2.0`` (MMRec's ``cl_weight``); ``train_features = True`` (the reference
loads the features with ``nn.Embedding.from_pretrained(freeze=False)``, so they are fine-tuned).
Initialisation as the reference: Xavier-uniform ID tables, Xavier-normal weights of the
predictor and projections, PyTorch's default bias init.

Generalisation to ``M`` modalities and choices where the paper and the reference are silent:

* one projection ``W_m, b_m`` per modality in ``graph.modalities``, all into ``d``; the
  predictor is shared by all of them as in the paper; the per-modality terms are **summed**
  over modalities (the reference adds its text and image terms; with text + image this is the
  reference exactly, with ``M`` modalities the alignment weighs ``M / 2`` times as much);
* masked items (``has_feature`` False): their projected content and its prediction are zeroed
  (:func:`~crossan.models.graph.base.mask_items`, so the biases do not leak in), and both
  per-modality terms are averaged over the batch rows whose item has the modality only; a
  modality that no batch item has contributes 0. A masked item still gets the ID terms;
* the target's dropout masks are drawn on the batch rows (users, then positive items, then each
  modality in ``graph.modalities`` order), not on the full tables as the reference does: the
  same distribution per row, but a user repeated in a batch gets independent masks; dropout
  (torch's global RNG) is active in training mode only, so in ``eval()`` the targets are the
  un-dropped latents (useful for a deterministic loss);
* the projections run on the batch's items only (the reference projects every item per
  batch); the result is the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crossan.models.graph.base import GraphData, GraphRecommender, mask_items


@dataclass(frozen=True)
class BM3Config:
    """BM3 hyper-parameters (defaults: the authors' best on Baby, ``enoche/BM3`` README)."""

    embedding_dim: int = 64
    n_layers: int = 1  # LightGCN layers on the user-item graph
    dropout: float = 0.5  # dropout ratio of the target views
    reg_weight: float = 0.1  # weight of the embedding-norm regulariser
    alignment_weight: float = 2.0  # weight of the per-modality terms (MMRec's cl_weight)
    train_features: bool = True  # fine-tune the raw item features (reference: freeze=False)


def cosine_loss(online: Tensor, target: Tensor) -> Tensor:
    """``1 - cos(online, sg(target))`` per row: ``[B]`` from two ``[B, d]``."""
    return 1 - F.cosine_similarity(online, target.detach(), dim=-1)


def embedding_norm_penalty(users: Tensor, items: Tensor) -> Tensor:
    """The reference's ``EmbLoss``: ``(||users||_F + ||items||_F) / I`` for ``[U, d]`` and
    ``[I, d]`` tables (plain Frobenius norms, divided by the item count)."""
    return (torch.linalg.norm(users) + torch.linalg.norm(items)) / items.shape[0]


class LightGCN(nn.Module):
    """ID encoder: user and item embeddings averaged over ``n_layers`` propagations on the
    normalised user-item graph, plus an item residual."""

    def __init__(self, adjacency: Tensor, n_users: int, n_items: int, dim: int, n_layers: int) -> None:
        super().__init__()
        self.register_buffer("adjacency", adjacency)
        self.n_users, self.n_layers = n_users, n_layers
        self.user = nn.Parameter(torch.empty(n_users, dim, device=adjacency.device))
        self.item = nn.Parameter(torch.empty(n_items, dim, device=adjacency.device))
        nn.init.xavier_uniform_(self.user)
        nn.init.xavier_uniform_(self.item)

    def forward(self) -> tuple[Tensor, Tensor]:
        """``(h_users [U, d], h_items [I, d])``."""
        layer = torch.cat([self.user, self.item])
        total = layer
        for _ in range(self.n_layers):
            layer = torch.sparse.mm(self.adjacency, layer)
            total = total + layer
        mean = total / (self.n_layers + 1)
        return mean[:self.n_users], mean[self.n_users:] + self.item


class ModalityProjection(nn.Module):
    """One modality's item content ``W x + b`` in the ID space, zero for masked items."""

    def __init__(self, features: Tensor, has_feature: Tensor, dim: int, trainable: bool) -> None:
        super().__init__()
        self.features = nn.Parameter(features.clone(), requires_grad=trainable)
        self.register_buffer("has_feature", has_feature)
        self.linear = nn.Linear(features.shape[1], dim, device=features.device)
        nn.init.xavier_normal_(self.linear.weight)

    def forward(self, items: Tensor) -> Tensor:
        """``[B, d]`` content of the items ``long[B]``; rows of masked items are zero."""
        return mask_items(self.linear(self.features[items]), self.has_feature[items])


class BM3(GraphRecommender):
    """LightGCN IDs + per-modality projections, trained by bootstrapping dropout views through a
    shared predictor (no negatives)."""

    config_type = BM3Config

    def __init__(self, graph: GraphData, config: BM3Config) -> None:
        super().__init__()
        self.config = config
        self.modalities = graph.modalities
        device, dim = graph.device, config.embedding_dim
        self.encoder = LightGCN(graph.adjacency, graph.n_users, graph.n_items, dim, config.n_layers)
        self.predictor = nn.Linear(dim, dim, device=device)
        nn.init.xavier_normal_(self.predictor.weight)
        self.projections = nn.ModuleDict({
            m: ModalityProjection(graph.features[m], graph.has_feature[m], dim, config.train_features)
            for m in self.modalities
        })

    def content(self, modality: str, items: Tensor) -> Tensor:
        """``[B, d]`` projected content of ``items`` ``long[B]`` in ``modality`` (0 if masked)."""
        return self.projections[modality](items)

    def forward(self) -> tuple[Tensor, Tensor]:
        """Online views ``(f(h_users) [U, d], f(h_items) [I, d])``."""
        users, items = self.encoder()
        return self.predictor(users), self.predictor(items)

    def target(self, latent: Tensor) -> Tensor:
        """Stop-gradient dropout view ``[B, d]`` of ``[B, d]`` latents (dropout in training only)."""
        return F.dropout(latent.detach(), self.config.dropout, training=self.training)

    def loss(self, users: Tensor, positives: Tensor, negatives: Tensor) -> Tensor:
        """BM3's loss for the pairs (``users``, ``positives``), ``long[B]``; ``negatives`` unused."""
        h_users, h_items = self.encoder()
        h_u, h_i = h_users[users], h_items[positives]
        target_u, target_i = self.target(h_u), self.target(h_i)
        reconstruction = (cosine_loss(self.predictor(h_u), target_i)
                          + cosine_loss(self.predictor(h_i), target_u)).mean()
        alignment = h_u.new_zeros(())
        for modality in self.modalities:
            present = self.projections[modality].has_feature[positives]
            content = self.content(modality, positives)
            target_m = self.target(content)
            online_m = mask_items(self.predictor(content), present)
            per_item = cosine_loss(online_m, target_i) + cosine_loss(online_m, target_m)
            alignment = alignment + per_item[present].sum() / present.sum().clamp_min(1)
        penalty = embedding_norm_penalty(h_users, h_items)
        return reconstruction + self.config.alignment_weight * alignment + self.config.reg_weight * penalty


MODEL = BM3  # what crossan.models.graph.registry loads for method 'bm3'
