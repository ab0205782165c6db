"""A small random :class:`GraphData` for the graph recommenders' tests."""

from __future__ import annotations

import torch

from crossan.graph_file.build import knn_neighbours, normalized_adjacency
from crossan.models.graph.base import GraphData

DIMS = {"text": 12, "image": 10, "video": 8, "audio": 6}


def tiny_graph(n_users: int = 9, n_items: int = 14, modalities: tuple[str, ...] = ("text", "image", "audio"),
               masked: dict[str, list[int]] | None = None, k: int = 4, seed: int = 0) -> GraphData:
    """Random pairs (every user >= 2 items, every item >= 1 user), random features, kNN graphs.
    ``masked``: modality -> items without usable media (zero features, no kNN row)."""
    generator = torch.Generator().manual_seed(seed)
    pairs = {(u, int(i)) for u in range(n_users) for i in torch.randperm(n_items, generator=generator)[:2 + u % 3]}
    pairs |= {(int(torch.randint(n_users, (1,), generator=generator)), i) for i in range(n_items)}
    user, item = (torch.tensor(x) for x in zip(*sorted(pairs)))
    features, has_feature, knn_index, knn_score = {}, {}, {}, {}
    for name in modalities:
        valid = torch.ones(n_items, dtype=torch.bool)
        valid[(masked or {}).get(name, [])] = False
        values = torch.randn(n_items, DIMS[name], generator=generator) * valid.unsqueeze(1)
        features[name], has_feature[name] = values, valid
        knn_index[name], knn_score[name] = knn_neighbours(values, valid, k)
    return GraphData(n_users, n_items, user, item, normalized_adjacency(user, item, n_users, n_items),
                     features, has_feature, knn_index, knn_score)
