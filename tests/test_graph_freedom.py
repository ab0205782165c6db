"""FREEDOM (crossan.models.graph.freedom): its loss against a dense, loop-by-loop reference,
determinism, masked items, any modality subset, the frozen item graph and the pruning."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from crossan.models.graph.freedom import FREEDOM, FREEDOMConfig
from tests.graph_fixtures import tiny_graph

WEIGHTS = {"text": 0.9, "image": 0.1, "video": 0.1, "audio": 0.1}


def dense_user_item(pairs: list[tuple[int, int]], n_users: int, n_items: int) -> torch.Tensor:
    """``D^-1/2 A D^-1/2`` of the bipartite graph, dense, from an explicit edge list."""
    n = n_users + n_items
    a = torch.zeros(n, n, dtype=torch.float64)
    for u, i in pairs:
        a[u, n_users + i] = a[n_users + i, u] = 1.0
    degree = a.sum(1)
    out = torch.zeros_like(a)
    for r in range(n):
        for c in range(n):
            if a[r, c]:
                out[r, c] = 1.0 / math.sqrt(degree[r] * degree[c])
    return out


def dense_item_graph(graph, k: int) -> torch.Tensor:
    """``S[i, j] = sum_m w_m / sqrt(d_m(i) d_m(j)) [j in kNN_m(i)] / sum_{m: i has m} w_m``."""
    n = graph.n_items
    s = torch.zeros(n, n, dtype=torch.float64)
    for m in graph.modalities:
        index = graph.knn_index[m][:, :k].tolist()
        degree = [sum(j >= 0 for j in row) for row in index]
        for i in range(n):
            total = sum(WEIGHTS[name] for name in graph.modalities if graph.has_feature[name][i])
            for j in index[i]:
                if j >= 0:
                    s[i, j] += WEIGHTS[m] / total / math.sqrt(degree[i] * degree[j])
    return s


def naive_loss(model: FREEDOM, graph, pairs, users, positives, negatives, config: FREEDOMConfig) -> torch.Tensor:
    """The loss recomputed with dense matrices and a loop over the triples."""
    n_users = graph.n_users
    adjacency = dense_user_item(pairs, n_users, graph.n_items)
    ego = torch.cat([model.user_embedding, model.item_embedding]).detach().double()
    layers = [ego]
    for _ in range(config.n_ui_layers):
        layers.append(adjacency @ layers[-1])
    mean = sum(layers) / len(layers)
    semantic = model.item_embedding.detach().double()
    for _ in range(config.n_ii_layers):
        semantic = dense_item_graph(graph, config.knn_k) @ semantic
    user_final, item_final = mean[:n_users], mean[n_users:] + semantic

    def log_sigmoid(x: float) -> float:
        return -math.log1p(math.exp(-x))

    main = []
    modality_terms = {m: [] for m in graph.modalities}
    for u, p, n in zip(users.tolist(), positives.tolist(), negatives.tolist()):
        main.append(-log_sigmoid(float(user_final[u] @ item_final[p] - user_final[u] @ item_final[n])))
        for m in graph.modalities:
            if not (graph.has_feature[m][p] and graph.has_feature[m][n]):
                continue  # a masked item takes no part in the modality's term
            content = model.content[m]
            weight, bias = content.projection.weight.detach().double(), content.projection.bias.detach().double()
            features = content.features.detach().double()
            positive, negative = weight @ features[p] + bias, weight @ features[n] + bias
            modality_terms[m].append(-log_sigmoid(float(user_final[u] @ positive - user_final[u] @ negative)))
    loss = sum(main) / len(main)
    for terms in modality_terms.values():
        if terms:
            loss += config.modality_loss_weight * sum(terms) / len(terms)
    if config.l2_weight:
        user_embedding, item_embedding = model.user_embedding.detach(), model.item_embedding.detach()
        ego_norm = sum(float(user_embedding[u].double().pow(2).sum()) for u in users.tolist())
        ego_norm += sum(float(item_embedding[i].double().pow(2).sum()) for i in positives.tolist())
        ego_norm += sum(float(item_embedding[i].double().pow(2).sum()) for i in negatives.tolist())
        loss += config.l2_weight * ego_norm / (2 * len(users))
    return torch.tensor(loss, dtype=torch.float64)


def batch(graph, size: int = 12, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randperm(len(graph.user), generator=generator)[:size]
    return graph.user[rows], graph.item[rows], torch.randint(graph.n_items, (size,), generator=generator)


def kept_pairs(model: FREEDOM) -> list[tuple[int, int]]:
    """The user-item edges of the model's current pruned graph."""
    row, col = model.pruned_adjacency.indices()
    users_first = row < model.n_users
    return sorted(zip(row[users_first].tolist(), (col[users_first] - model.n_users).tolist()))


@pytest.mark.parametrize("pruned", [False, True])
def test_loss_matches_dense_reference(pruned: bool) -> None:
    graph = tiny_graph(masked={"image": [1, 4], "audio": [4, 7]})
    config = FREEDOMConfig(knn_k=3, edge_dropout=0.5 if pruned else 0.0, modality_loss_weight=0.3, l2_weight=0.01)
    torch.manual_seed(0)
    model = FREEDOM(graph, config)
    model.start_epoch(torch.Generator().manual_seed(3))
    pairs = kept_pairs(model) if pruned else list(zip(graph.user.tolist(), graph.item.tolist()))
    assert len(pairs) == (int(len(graph.user) * 0.5) if pruned else len(graph.user))
    users, positives, negatives = batch(graph)
    positives[0], negatives[1] = 4, 1  # masked items take part in the batch
    expected = naive_loss(model, graph, pairs, users, positives, negatives, config)
    assert torch.allclose(model.loss(users, positives, negatives).double(), expected, atol=1e-6)


def test_pruning_draws_edges_in_proportion_to_inverse_sqrt_degree() -> None:
    graph = tiny_graph()
    n_edges = len(graph.user)
    model = FREEDOM(graph, FREEDOMConfig(edge_dropout=1 - 1.5 / n_edges))  # keeps exactly one edge
    user_degree = torch.bincount(graph.user).double()
    item_degree = torch.bincount(graph.item).double()
    weight = (user_degree[graph.user] * item_degree[graph.item]).rsqrt()
    generator = torch.Generator().manual_seed(0)
    counts = torch.zeros(n_edges, dtype=torch.float64)
    position = {pair: e for e, pair in enumerate(zip(graph.user.tolist(), graph.item.tolist()))}
    draws = 8000
    for _ in range(draws):
        model.start_epoch(generator)
        (pair,) = kept_pairs(model)
        counts[position[pair]] += 1
    expected = weight / weight.sum()
    assert torch.allclose(counts / draws, expected, atol=0.008)  # ~4 standard deviations
    assert (expected - 1 / n_edges).abs().max() > 0.012  # which uniform sampling would miss


def test_pruned_graph_is_renormalised_and_eval_uses_the_full_graph() -> None:
    graph = tiny_graph()
    torch.manual_seed(0)
    model = FREEDOM(graph, FREEDOMConfig())
    model.start_epoch(torch.Generator().manual_seed(0))
    pairs = kept_pairs(model)
    assert len(pairs) == int(len(graph.user) * 0.2) and len(set(pairs)) == len(pairs)
    assert set(pairs) <= set(zip(graph.user.tolist(), graph.item.tolist()))
    dense = model.pruned_adjacency.to_dense().double()
    assert torch.allclose(dense, dense_user_item(pairs, graph.n_users, graph.n_items), atol=1e-7)
    train_items = model()[1]
    model.eval()
    eval_users, eval_items = model()
    full_users, full_items = model.propagate(graph.adjacency)
    assert torch.equal(eval_users, full_users) and torch.equal(eval_items, full_items)
    assert not torch.allclose(train_items, eval_items)


def test_frozen_item_graph_mixes_modalities_per_item() -> None:
    graph = tiny_graph(modalities=("text", "image"), masked={"text": [2, 5], "image": [2, 8]}, k=5)
    model = FREEDOM(graph, FREEDOMConfig())
    s = model.item_graph.to_dense().double()
    assert torch.allclose(s, dense_item_graph(graph, 10), atol=1e-7)
    row_sums = s.sum(1)
    assert row_sums[2] == 0  # masked in every modality: no neighbours
    assert torch.allclose(row_sums[[i for i in range(graph.n_items) if i != 2]], torch.tensor(1.0, dtype=s.dtype))
    text = graph.knn_adjacency("text", 10).to_dense().double()
    image = graph.knn_adjacency("image", 10).to_dense().double()
    assert torch.allclose(s[0], 0.9 * text[0] + 0.1 * image[0])  # the reference's mix
    assert torch.allclose(s[5], image[5]) and torch.allclose(s[8], text[8])
    before = s.clone()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model.loss(*batch(graph)).backward()
    optimizer.step()
    assert torch.equal(model.item_graph.to_dense().double(), before)  # frozen
    with pytest.raises(ValueError, match="modality weight"):
        FREEDOM(graph, FREEDOMConfig(modality_weights=(("text", 1.0),)))
    with pytest.raises(ValueError, match="edge_dropout"):
        FREEDOM(graph, FREEDOMConfig(edge_dropout=1.0))


def test_deterministic_on_cpu() -> None:
    graph = tiny_graph()
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        model = FREEDOM(graph, FREEDOMConfig())
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
        generator = torch.Generator().manual_seed(0)
        outputs = model()
        for _ in range(3):
            model.start_epoch(generator)
            loss = model.loss(*batch(graph))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        results.append((outputs, model.loss(*batch(graph)).detach()))
    (outputs_a, loss_a), (outputs_b, loss_b) = results
    assert all(torch.equal(a, b) for a, b in zip(outputs_a, outputs_b))
    assert torch.equal(loss_a, loss_b)


def test_masked_item_has_no_feature_contribution() -> None:
    graph = tiny_graph(masked={"image": [3]})
    noisy_image = graph.features["image"].clone()
    noisy_image[3] = torch.randn(noisy_image.shape[1]) * 100
    noisy = replace(graph, features={**graph.features, "image": noisy_image})
    models = []
    for g in (graph, noisy):
        torch.manual_seed(0)
        model = FREEDOM(g, FREEDOMConfig(modality_loss_weight=0.5))
        model.start_epoch(torch.Generator().manual_seed(0))
        models.append(model)
    users, positives, negatives = batch(graph)
    positives[:3] = 3
    losses = [model.loss(users, positives, negatives) for model in models]
    assert torch.equal(losses[0], losses[1])
    for model in models:
        model.eval()
    assert all(torch.equal(a, b) for a, b in zip(models[0](), models[1]()))
    content = models[1].content["image"](torch.arange(graph.n_items))
    assert torch.equal(content[3], torch.zeros_like(content[3]))
    assert content[torch.arange(graph.n_items) != 3].abs().sum(1).gt(0).all()
    losses[1].backward()
    assert torch.equal(models[1].content["image"].features.grad[3], torch.zeros(noisy_image.shape[1]))


@pytest.mark.parametrize("modalities", [("image",), ("text", "image"), ("text", "image", "video", "audio")])
def test_any_modality_subset_trains(modalities: tuple[str, ...]) -> None:
    graph = tiny_graph(modalities=modalities, masked={modalities[-1]: [0]})
    torch.manual_seed(0)
    model = FREEDOM(graph, FREEDOMConfig(modality_loss_weight=0.1))
    model.start_epoch(torch.Generator().manual_seed(0))
    users, items = model()
    assert users.shape == (graph.n_users, 64) and items.shape == (graph.n_items, 64)
    positives = graph.item
    negatives = torch.randint(graph.n_items, positives.shape, generator=torch.Generator().manual_seed(1))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    first = model.loss(graph.user, positives, negatives)
    assert torch.isfinite(first)
    for _ in range(40):
        loss = model.loss(graph.user, positives, negatives)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert model.loss(graph.user, positives, negatives) < 0.9 * first
