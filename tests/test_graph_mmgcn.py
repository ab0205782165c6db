"""MMGCN (crossan.models.graph.mmgcn): the loss against a naive dense re-computation,
determinism, masked items, any modality subset, and learning on a tiny graph."""

from __future__ import annotations

import math

import pytest
import torch

from crossan.models.graph.mmgcn import MMGCN, MMGCNConfig, mean_adjacency
from tests.graph_fixtures import tiny_graph

MASKED = {"text": [2, 5], "audio": [5, 7]}
SMALL = MMGCNConfig(embedding_dim=8, latent_dim=6, reg_weight=0.1)


def build(graph, config: MMGCNConfig = SMALL, seed: int = 0) -> MMGCN:
    torch.manual_seed(seed)
    return MMGCN(graph, config)


def batch(graph, size: int = 12, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randint(len(graph.user), (size,), generator=generator)
    negatives = torch.randint(graph.n_items, (size,), generator=generator)
    return graph.user[rows], graph.item[rows], negatives


def leaky(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x > 0, x, 0.01 * x)


def naive_loss(model: MMGCN, graph, users, positives, negatives) -> torch.Tensor:
    """MMGCN's loss from the equations: dense matrices, neighbour lists and Python loops."""
    n_users, n_items = graph.n_users, graph.n_items
    n = n_users + n_items
    neighbours = [[] for _ in range(n)]
    for u, i in zip(graph.user.tolist(), graph.item.tolist()):
        neighbours[u].append(n_users + i)
        neighbours[n_users + i].append(u)
    ids = model.id_embedding.detach().double()
    finals = []
    for name in graph.modalities:
        gcn = model.gcns[name]
        valid = graph.has_feature[name]
        weight, bias = gcn.project.weight.detach().double(), gcn.project.bias.detach().double()
        rows = [gcn.preference.detach().double()[u] for u in range(n_users)]
        for i in range(n_items):
            projected = weight @ graph.features[name][i].double() + bias
            rows.append(projected if valid[i] else torch.zeros_like(projected))
        x = [r / r.norm() if r.norm() > 0 else r for r in rows]
        for depth, layer in enumerate(gcn.layers):
            w1 = layer.aggregate.detach().double()
            w2, b2 = layer.own.weight.detach().double(), layer.own.bias.detach().double()
            w3, b3 = layer.combine.weight.detach().double(), layer.combine.bias.detach().double()
            new = []
            for v in range(n):
                messages = [x[j] @ w1 for j in neighbours[v]]
                h = leaky(sum(messages) / len(messages)) if messages else torch.zeros(w1.shape[1], dtype=torch.float64)
                own = leaky(w2 @ x[v] + b2)
                if depth == 0 and v >= n_users and not valid[v - n_users]:
                    own = torch.zeros_like(own)
                new.append(leaky(w3 @ torch.cat([h, own + ids[v]]) + b3))
            x = new
        finals.append(torch.stack(x))
    fused = sum(finals) / len(finals)
    terms = []
    for u, p, q in zip(users.tolist(), positives.tolist(), negatives.tolist()):
        difference = fused[u] @ fused[n_users + p] - fused[u] @ fused[n_users + q]
        terms.append(-math.log(1 / (1 + math.exp(-float(difference)))))
    ranking = sum(terms) / len(terms)
    d = ids.shape[1]
    squares = sum(float(ids[u] @ ids[u]) * 2 + float(ids[n_users + p] @ ids[n_users + p])
                  + float(ids[n_users + q] @ ids[n_users + q])
                  for u, p, q in zip(users.tolist(), positives.tolist(), negatives.tolist()))
    reg = squares / (2 * len(terms) * d)  # the reference's mean over its [2B, d] interleaved rows
    reg += sum(float(model.gcns[m].preference.detach().double().pow(2).mean()) for m in graph.modalities)
    return torch.tensor(ranking + model.config.reg_weight * reg, dtype=torch.float64)


def test_loss_matches_naive_reference() -> None:
    graph = tiny_graph(masked=MASKED)
    model = build(graph)
    users, positives, negatives = batch(graph)
    loss = model.loss(users, positives, negatives)
    expected = naive_loss(model, graph, users, positives, negatives)
    assert torch.allclose(loss.double(), expected, rtol=1e-5, atol=1e-6)


def test_mean_adjacency_averages_neighbours() -> None:
    graph = tiny_graph()
    dense = mean_adjacency(graph).to_dense()
    degree = torch.zeros(graph.n_users + graph.n_items)
    degree.index_add_(0, graph.user, torch.ones(len(graph.user)))
    degree.index_add_(0, graph.item + graph.n_users, torch.ones(len(graph.item)))
    assert torch.allclose(dense.sum(1), torch.ones_like(degree))
    u, i = int(graph.user[0]), int(graph.item[0])
    assert dense[u, graph.n_users + i] == pytest.approx(1 / degree[u])
    assert dense[graph.n_users + i, u] == pytest.approx(1 / degree[graph.n_users + i])
    assert dense[:graph.n_users, :graph.n_users].abs().sum() == 0  # bipartite


def test_forward_averages_modalities() -> None:
    graph = tiny_graph(masked=MASKED)
    model = build(graph)
    users, items = model()
    per_modality = model.modality_representations()
    assert set(per_modality) == set(graph.modalities)
    fused = sum(per_modality.values()) / len(per_modality)
    assert torch.allclose(torch.cat([users, items]), fused, atol=1e-6)


def test_deterministic_on_cpu() -> None:
    graph = tiny_graph(masked=MASKED)
    outputs = []
    for _ in range(2):
        model = build(graph)
        forward = model()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        for step in range(3):
            optimizer.zero_grad()
            loss = model.loss(*batch(graph, seed=step))
            loss.backward()
            optimizer.step()
        outputs.append((forward, loss.detach()))
    (f1, l1), (f2, l2) = outputs
    assert torch.equal(f1[0], f2[0]) and torch.equal(f1[1], f2[1])
    assert torch.equal(l1, l2)


def test_masked_item_has_no_feature_contribution() -> None:
    graph = tiny_graph(masked=MASKED)
    model = build(graph)
    users, items = model()
    for name, rows in MASKED.items():
        content = model.gcns[name].content(graph.features[name], graph.has_feature[name])
        assert torch.equal(content[rows], torch.zeros_like(content[rows]))
        assert content[graph.has_feature[name]].abs().sum(1).min() > 0
    noisy = dict(graph.features)
    noisy["text"] = graph.features["text"].clone()
    noisy["text"][MASKED["text"]] = torch.randn(len(MASKED["text"]), noisy["text"].shape[1]) * 10
    model.features = noisy
    users2, items2 = model()
    assert torch.equal(users, users2) and torch.equal(items, items2)
    # an unmasked item's features do matter
    noisy["text"][0] = torch.randn(noisy["text"].shape[1])
    assert not torch.equal(items, model()[1])


@pytest.mark.parametrize("modalities", [("image",), ("text", "audio"), ("text", "image", "video", "audio")])
def test_any_modality_subset(modalities: tuple[str, ...]) -> None:
    graph = tiny_graph(modalities=modalities, masked={m: [3] for m in modalities})
    model = build(graph, MMGCNConfig())  # the defaults
    users, items = model()
    assert users.shape == (graph.n_users, 64) and items.shape == (graph.n_items, 64)
    assert set(model.gcns) == set(modalities)
    loss = model.loss(*batch(graph))
    assert torch.isfinite(loss)


def test_training_lowers_the_loss() -> None:
    graph = tiny_graph(masked=MASKED)
    model = build(graph, MMGCNConfig(embedding_dim=16, latent_dim=16))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    users, positives, negatives = batch(graph, size=len(graph.user), seed=3)
    first = model.loss(users, positives, negatives).item()
    for _ in range(40):
        optimizer.zero_grad()
        model.loss(users, positives, negatives).backward()
        optimizer.step()
    assert model.loss(users, positives, negatives).item() < 0.7 * first


def test_every_parameter_gets_a_gradient() -> None:
    """IDs and preferences are learned (the reference's plain tensors never were)."""
    graph = tiny_graph(masked=MASKED)
    model = build(graph)
    model.loss(*batch(graph)).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
