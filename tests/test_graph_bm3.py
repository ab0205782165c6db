"""BM3 (crossan.models.graph.bm3): the loss against a naive dense re-computation, determinism,
masked items, any modality subset, and learning on a tiny graph."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from graph_fixtures import tiny_graph

from crossan.models.graph.bm3 import BM3, BM3Config

MASKED = {"text": [2, 5], "audio": [5, 7]}
SMALL = BM3Config(embedding_dim=8)


def build(graph, config: BM3Config = SMALL, seed: int = 0) -> BM3:
    torch.manual_seed(seed)
    return BM3(graph, config)


def batch(graph, size: int = 12, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randint(len(graph.user), (size,), generator=generator)
    negatives = torch.randint(graph.n_items, (size,), generator=generator)
    return graph.user[rows], graph.item[rows], negatives


def naive_cosine_loss(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return 1 - dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def naive_loss(model: BM3, graph, users, items, masks: dict[str, torch.Tensor]) -> torch.Tensor:
    """BM3's loss from the equations with dense matrices and Python loops; ``masks`` are the
    dropout multipliers (already scaled by 1 / (1 - p)) of the target views."""
    config = model.config
    n_users, n_items = graph.n_users, graph.n_items
    n = n_users + n_items
    adjacency = torch.zeros(n, n, dtype=torch.float64)
    for u, i in zip(graph.user.tolist(), graph.item.tolist()):
        adjacency[u, n_users + i] = adjacency[n_users + i, u] = 1.0
    degree = adjacency.sum(1)
    for a in range(n):
        for b in range(n):
            if adjacency[a, b]:
                adjacency[a, b] /= math.sqrt(degree[a] * degree[b])
    user_table = model.encoder.user.detach().double()
    item_table = model.encoder.item.detach().double()
    layer = torch.cat([user_table, item_table])
    layers = [layer]
    for _ in range(config.n_layers):
        layer = adjacency @ layer
        layers.append(layer)
    mean = sum(layers) / len(layers)
    h_users, h_items = mean[:n_users], mean[n_users:] + item_table
    weight, bias = model.predictor.weight.detach().double(), model.predictor.bias.detach().double()

    def predict(x: torch.Tensor) -> torch.Tensor:
        return x @ weight.T + bias

    batch_size = len(users)
    reconstruction = 0.0
    for row, (u, i) in enumerate(zip(users.tolist(), items.tolist())):
        target_u = (h_users[u] * masks["user"][row]).tolist()
        target_i = (h_items[i] * masks["item"][row]).tolist()
        reconstruction += naive_cosine_loss(predict(h_users[u]).tolist(), target_i)
        reconstruction += naive_cosine_loss(predict(h_items[i]).tolist(), target_u)
    reconstruction /= batch_size

    alignment = 0.0
    for m in graph.modalities:
        projection = model.projections[m]
        w, b = projection.linear.weight.detach().double(), projection.linear.bias.detach().double()
        total, count = 0.0, 0
        for row, i in enumerate(items.tolist()):
            content = graph.features[m][i].double() @ w.T + b
            if not graph.has_feature[m][i]:
                continue
            target_i = (h_items[i] * masks["item"][row]).tolist()
            target_m = (content * masks[m][row]).tolist()
            total += naive_cosine_loss(predict(content).tolist(), target_i)
            total += naive_cosine_loss(predict(content).tolist(), target_m)
            count += 1
        alignment += total / max(count, 1)

    frobenius = math.sqrt(sum(x * x for x in h_users.flatten().tolist())) + math.sqrt(
        sum(x * x for x in h_items.flatten().tolist()))
    penalty = frobenius / n_items
    return torch.tensor(reconstruction + config.alignment_weight * alignment + config.reg_weight * penalty,
                        dtype=torch.float64)


@pytest.mark.parametrize("n_layers", [0, 1, 2])
def test_loss_matches_naive_reference_without_dropout(n_layers):
    graph = tiny_graph(masked=MASKED)
    model = build(graph, BM3Config(embedding_dim=8, n_layers=n_layers, reg_weight=0.3, alignment_weight=1.5))
    users, items, negatives = batch(graph)
    items[0] = 5  # masked in text and audio
    model.eval()  # dropout off: the targets are the latents themselves
    ones = {key: torch.ones(len(users), 8, dtype=torch.float64) for key in ("user", "item", *graph.modalities)}
    expected = naive_loss(model, graph, users, items, ones)
    assert torch.allclose(model.loss(users, items, negatives).double(), expected, rtol=1e-5, atol=1e-6)


def test_loss_matches_naive_reference_with_seeded_dropout():
    graph = tiny_graph(masked=MASKED)
    model = build(graph, BM3Config(embedding_dim=8, n_layers=2, dropout=0.4))
    users, items, negatives = batch(graph)
    model.train()
    torch.manual_seed(123)
    actual = model.loss(users, items, negatives)
    # the same draws in the documented order: users, items, then each modality
    torch.manual_seed(123)
    masks = {key: F.dropout(torch.ones(len(users), 8), 0.4, training=True).double()
             for key in ("user", "item", *graph.modalities)}
    assert any((mask == 0).any() for mask in masks.values())
    expected = naive_loss(model, graph, users, items, masks)
    assert torch.allclose(actual.double(), expected, rtol=1e-5, atol=1e-6)


def test_dropout_only_in_training_and_negatives_ignored():
    graph = tiny_graph()
    model = build(graph)
    users, items, negatives = batch(graph)
    model.eval()
    first = model.loss(users, items, negatives)
    assert torch.equal(first, model.loss(users, items, torch.zeros_like(negatives)))
    torch.manual_seed(5)
    assert torch.equal(first, model.loss(users, items, negatives))  # no RNG in eval
    model.train()
    torch.manual_seed(5)
    noisy = model.loss(users, items, negatives)
    assert not torch.equal(first, noisy)
    torch.manual_seed(5)
    assert torch.equal(noisy, model.loss(users, items, negatives + 1))


def test_forward_scores_are_predicted_lightgcn_views():
    graph = tiny_graph()
    model = build(graph, BM3Config(embedding_dim=8, n_layers=1))
    users, items = model()
    assert users.shape == (graph.n_users, 8) and items.shape == (graph.n_items, 8)
    dense = graph.adjacency.to_dense()
    table = torch.cat([model.encoder.user, model.encoder.item])
    mean = (table + dense @ table) / 2
    assert torch.allclose(users, model.predictor(mean[:graph.n_users]), atol=1e-6)
    assert torch.allclose(items, model.predictor(mean[graph.n_users:] + model.encoder.item), atol=1e-6)


def adam_steps(model: BM3, graph, steps: int, lr: float = 1e-2) -> list[float]:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    users, items, negatives = batch(graph, size=24)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = model.loss(users, items, negatives)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_deterministic_on_cpu():
    graph = tiny_graph(masked=MASKED)
    runs = []
    for _ in range(2):
        model = build(graph)
        before = model()
        torch.manual_seed(7)  # dropout draws
        losses = adam_steps(model, graph, 3)
        runs.append((before, losses, model()))
    (before_a, losses_a, after_a), (before_b, losses_b, after_b) = runs
    assert all(torch.equal(a, b) for a, b in zip(before_a, before_b))
    assert losses_a == losses_b
    assert all(torch.equal(a, b) for a, b in zip(after_a, after_b))


def test_masked_item_has_no_feature_contribution():
    graph = tiny_graph(masked=MASKED)
    noisy = tiny_graph(masked=MASKED)
    noisy.features["text"][2] = torch.randn(noisy.features["text"].shape[1]) * 10
    noisy.features["audio"][7] = torch.randn(noisy.features["audio"].shape[1]) * 10
    every = torch.arange(graph.n_items)
    users, items, negatives = batch(graph)
    items[:3] = torch.tensor([2, 7, 5])
    results = []
    for g in (graph, noisy):
        model = build(g)
        for modality, masked in MASKED.items():
            content = model.content(modality, every)
            assert torch.equal(content[masked], torch.zeros(len(masked), 8))
            assert (content[[i for i in range(g.n_items) if i not in masked]] != 0).any(dim=1).all()
        model.train()
        torch.manual_seed(3)
        loss = model.loss(users, items, negatives)
        loss.backward()
        assert torch.equal(model.projections["text"].features.grad[[2, 5]], torch.zeros(2, 12))
        model.zero_grad()
        torch.manual_seed(4)
        adam_steps(model, g, 3)
        results.append((loss, model(), model.content("text", every)))
    (loss_a, out_a, text_a), (loss_b, out_b, text_b) = results
    assert torch.equal(loss_a, loss_b)
    assert all(torch.equal(a, b) for a, b in zip(out_a, out_b))
    assert torch.equal(text_a, text_b)


@pytest.mark.parametrize("modalities", [("image",), ("text", "video"), ("text", "image", "video", "audio")])
def test_any_modality_subset_and_learns(modalities):
    graph = tiny_graph(modalities=modalities, masked={modalities[0]: [1]})
    model = build(graph)
    assert list(model.projections) == list(modalities)
    users, items = model()
    assert users.shape == (graph.n_users, 8) and items.shape == (graph.n_items, 8)
    torch.manual_seed(0)
    losses = adam_steps(model, graph, 40)
    assert all(math.isfinite(x) for x in losses)
    model.eval()
    assert model.loss(*batch(graph, size=24)).item() < losses[0] - 0.2


def test_frozen_features_option():
    graph = tiny_graph()
    model = build(graph, BM3Config(embedding_dim=8, train_features=False))
    assert all(not p.features.requires_grad for p in model.projections.values())
    before = model.projections["text"].features.clone()
    torch.manual_seed(0)
    adam_steps(model, graph, 3)
    assert torch.equal(model.projections["text"].features, before)
    assert torch.equal(before, graph.features["text"])
