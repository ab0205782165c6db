"""GRCN (crossan.models.graph.grcn): the loss against a loop-by-loop reference, determinism,
masked items, any set of modalities, and the refined edge weights by value."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from graph_fixtures import tiny_graph

from crossan.models.graph.grcn import GRCN, GRCNConfig

MASKED = {"text": [1, 3], "image": [3, 5], "audio": [3]}  # item 3 has no content at all


def unit(vector: torch.Tensor) -> torch.Tensor:
    norm = math.sqrt(float((vector * vector).sum()))
    return vector / max(norm, 1e-12)


def naive_loss(model: GRCN, graph, users, positives, negatives) -> torch.Tensor:
    """The GRCN loss from the equations, with Python loops and dense matrices."""
    U, I, config = graph.n_users, graph.n_items, model.config
    pairs = list(zip(graph.user.tolist(), graph.item.tolist()))
    n_modalities = len(graph.modalities)
    to_user = {pair: [None] * n_modalities for pair in pairs}  # affinities, None if the item lacks m
    to_item = {pair: [None] * n_modalities for pair in pairs}
    user_content, item_content = [], []
    for m, name in enumerate(graph.modalities):
        module, has = model.modality[name], graph.has_feature[name].tolist()
        raw = F.leaky_relu(graph.features[name] @ module.projection.weight.T + module.projection.bias)
        f = [unit(raw[i]) if has[i] else torch.zeros(config.content_dim) for i in range(I)]
        p = [unit(module.preference[u]) for u in range(U)]
        items_of = {u: [i for (v, i) in pairs if v == u and has[i]] for u in range(U)}
        users_of = {i: [u for (u, j) in pairs if j == i] if has[i] else [] for i in range(I)}
        for _ in range(config.n_routing):
            if config.routing == "items":  # both codes: GATConv on the one-way (user, item) edges
                rows = [torch.zeros(config.content_dim) for _ in range(U + I)]  # x_hat_1, users first
                for i in range(I):  # messages p_u go to the item rows, softmax over the item's users
                    if users_of[i]:
                        weights = torch.softmax(torch.stack([p[u] @ f[i] for u in users_of[i]]), 0)
                        for w, u in zip(weights, users_of[i]):
                            rows[U + i] = rows[U + i] + w * p[u]
                p = [unit(p[u] + rows[u]) for u in range(U)]  # preference + x_hat_1[:num_user]
                continue
            new = []
            for u in range(U):
                total = p[u].clone()
                if items_of[u]:
                    weights = torch.softmax(torch.stack([p[u] @ f[i] for i in items_of[u]]), 0)
                    for w, i in zip(weights, items_of[u]):
                        total = total + w * f[i]
                new.append(unit(total))
            p = new
        c_user, c_item = [], []
        for u in range(U):
            rep = p[u].clone()
            if items_of[u]:
                weights = torch.softmax(torch.stack([p[u] @ f[i] for i in items_of[u]]), 0)
                for w, i in zip(weights, items_of[u]):
                    to_user[(u, i)][m] = w
                    rep = rep + w * f[i]
            c_user.append(rep)
        for i in range(I):
            rep = f[i].clone()
            if users_of[i]:
                weights = torch.softmax(torch.stack([p[u] @ f[i] for u in users_of[i]]), 0)
                for w, u in zip(weights, users_of[i]):
                    to_item[(u, i)][m] = w
                    rep = rep + w * p[u]
            c_item.append(rep if has[i] else torch.zeros(config.content_dim))
        user_content.append(torch.stack(c_user))
        item_content.append(torch.stack(c_item))
    confidence = model.refiner.confidence
    adjacency = torch.zeros(U + I, U + I)  # [target, source]
    for (u, i) in pairs:
        to_u = [a * confidence[U + i, m] for m, a in enumerate(to_user[(u, i)]) if a is not None]
        to_i = [a * confidence[u, m] for m, a in enumerate(to_item[(u, i)]) if a is not None]
        adjacency[u, U + i] = max(max(to_u), 0) if to_u else 0.0
        adjacency[U + i, u] = max(max(to_i), 0) if to_i else 0.0
    x = torch.stack([unit(row) for row in model.id_gcn.embedding])
    ids = x + adjacency @ x + adjacency @ (adjacency @ x)
    user_rep = torch.cat([ids[:U]] + user_content, 1)
    item_rep = torch.cat([ids[U:]] + item_content, 1)
    loss = 0.0
    for u, i, j in zip(users.tolist(), positives.tolist(), negatives.tolist()):
        loss = loss - math.log(1 / (1 + math.exp(-float(user_rep[u] @ item_rep[i] - user_rep[u] @ item_rep[j]))))
    bpr = loss / len(users)
    e, d = model.id_gcn.embedding.detach(), config.embedding_dim
    reg = sum(2 * float(e[u] @ e[u]) + float(e[U + i] @ e[U + i]) + float(e[U + j] @ e[U + j])
              for u, i, j in zip(users.tolist(), positives.tolist(), negatives.tolist())) / (2 * len(users) * d)
    for name in graph.modalities:
        pref = model.modality[name].preference.detach()
        reg += sum(float(pref[u] @ pref[u]) for u in users.tolist()) / (len(users) * config.content_dim)
    return torch.tensor(bpr + config.reg_weight * reg)


def batch(graph, n: int = 6, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randperm(len(graph.user), generator=generator)[:n]
    return graph.user[rows], graph.item[rows], torch.randint(graph.n_items, (n,), generator=generator)


def build(graph, **changes) -> GRCN:
    torch.manual_seed(0)
    return GRCN(graph, replace(GRCNConfig(embedding_dim=8, content_dim=6, reg_weight=0.1), **changes))


@pytest.mark.parametrize("routing", ["users", "items"])
def test_loss_matches_naive_reference(routing):
    graph = tiny_graph(masked=MASKED)
    model = build(graph, routing=routing)
    users, positives, negatives = batch(graph)
    with torch.no_grad():
        expected = naive_loss(model, graph, users, positives, negatives)
        got = model.loss(users, positives, negatives)
    assert torch.allclose(got, expected.to(got.dtype), rtol=1e-5, atol=1e-6)


def test_routing_switch():
    """items (the codes'): the routing rounds leave p_u = normalize(P[u]); users (the paper's)
    moves p_u towards its items' content, which changes the forward pass."""
    graph = tiny_graph(masked=MASKED)
    paper, code = build(graph), build(graph, routing="items")
    with torch.no_grad():
        text = code.modality["text"]
        out = text(code.user, code.item)
        preference = F.normalize(text.preference, dim=1)
        content = text.content()
        hop = torch.zeros_like(preference).index_add_(
            0, code.user, out.to_user.unsqueeze(1) * content[code.item])
        assert torch.allclose(out.users, preference + hop, atol=1e-6)
        assert not torch.allclose(paper.modality["text"](paper.user, paper.item).users, out.users)
        assert not torch.allclose(paper()[0], code()[0]) and not torch.allclose(paper()[1], code()[1])
    with pytest.raises(ValueError, match="routing"):
        build(graph, routing="paper")


def test_deterministic_on_cpu():
    graph = tiny_graph(masked=MASKED)
    runs = []
    for _ in range(2):
        model = build(graph)
        forward = model()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        losses = []
        for step in range(3):
            loss = model.loss(*batch(graph, seed=step))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
        runs.append((forward, torch.stack(losses), model()))
    (f1, l1, a1), (f2, l2, a2) = runs
    assert all(torch.equal(x, y) for x, y in zip(f1 + a1, f2 + a2))
    assert torch.equal(l1, l2)


def test_masked_item_has_no_feature_contribution():
    graph = tiny_graph(masked=MASKED)
    model = build(graph)
    with torch.no_grad():
        users, items = model()
        for name, rows in MASKED.items():  # garbage in the masked rows' raw features
            model.modality[name].features[rows] = torch.randn(len(rows), graph.features[name].shape[1]) * 100
        users2, items2 = model()
        outputs, _, _ = model.refine()
    assert torch.equal(users, users2) and torch.equal(items, items2)
    for (name, rows), output in zip(MASKED.items(), outputs):
        assert torch.equal(output.items[rows], torch.zeros(len(rows), model.config.content_dim))
        assert output.items[[i for i in range(graph.n_items) if i not in rows]].abs().sum(1).gt(0).all()


@pytest.mark.parametrize("modalities", [("image",), ("text", "audio"), ("text", "image", "video", "audio")])
def test_any_modalities_shapes_and_learning(modalities):
    graph = tiny_graph(modalities=modalities, masked={"text": [2], "audio": [0, 5]})
    model = build(graph, reg_weight=1e-4)
    users, items = model()
    width = 8 + 6 * len(modalities)
    assert users.shape == (graph.n_users, width) and items.shape == (graph.n_items, width)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    fixed = (graph.user, graph.item, torch.randint(graph.n_items, (len(graph.user),), generator=generator))
    first = model.loss(*fixed).item()
    assert math.isfinite(first)
    for _ in range(40):
        loss = model.loss(graph.user, graph.item, torch.randint(graph.n_items, (len(graph.user),), generator=generator))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert model.loss(*fixed).item() < 0.7 * first


def test_affinities_are_softmaxes_over_available_edges():
    graph = tiny_graph(masked=MASKED)
    model = build(graph)
    with torch.no_grad():
        outputs, _, _ = model.refine()
    for name, output in zip(graph.modalities, outputs):
        has = graph.has_feature[name]
        assert torch.equal(output.available, has[graph.item])
        assert torch.all(output.to_user[~output.available] == 0) and torch.all(output.to_item[~output.available] == 0)
        per_user = torch.zeros(graph.n_users).index_add_(0, graph.user, output.to_user)
        per_item = torch.zeros(graph.n_items).index_add_(0, graph.item, output.to_item)
        users_with = torch.zeros(graph.n_users, dtype=torch.bool)
        users_with[graph.user[output.available]] = True
        assert torch.allclose(per_user[users_with], torch.ones(int(users_with.sum())))
        assert torch.all(per_user[~users_with] == 0)
        linked = torch.zeros(graph.n_items, dtype=torch.bool)
        linked[graph.item] = True
        assert torch.allclose(per_item[has & linked], torch.ones(int((has & linked).sum())))
        assert torch.all(per_item[~has] == 0)


@pytest.mark.parametrize("weight_mode", ["confid", "max", "mean"])
def test_edge_weights_by_mode(weight_mode):
    graph = tiny_graph(masked=MASKED)
    model = build(graph, weight_mode=weight_mode)
    with torch.no_grad():
        outputs, to_user, to_item = model.refine()
        affinity = torch.stack([o.to_user for o in outputs], 1)
        available = torch.stack([o.available for o in outputs], 1)
        if weight_mode == "confid":
            affinity = affinity * model.refiner.confidence[graph.n_users + graph.item]
    nothing = graph.item == 3  # no modality: pruned
    assert nothing.any() and torch.all(to_user[nothing] == 0) and torch.all(to_item[nothing] == 0)
    for e in torch.nonzero(~nothing).flatten().tolist():
        scores = affinity[e][available[e]]
        expected = scores.mean() if weight_mode == "mean" else scores.max()
        assert torch.isclose(to_user[e], expected.clamp_min(0))
    if weight_mode == "confid":  # negative confidences prune some edges, the rest keep theirs
        pruned = (to_user[~nothing] == 0).float().mean()
        assert 0 < pruned < 1
    else:
        assert torch.all(to_user[~nothing] > 0) and torch.all(to_item[~nothing] > 0)


def test_pruning_off_keeps_negative_weights_and_bad_mode_raises():
    graph = tiny_graph(masked=MASKED)
    with torch.no_grad():
        _, to_user, _ = build(graph, pruning=False).refine()
    assert (to_user < 0).any()
    with pytest.raises(ValueError, match="weight_mode"):
        build(graph, weight_mode="sum")
