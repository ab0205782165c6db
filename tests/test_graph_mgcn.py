"""MGCN (crossan.models.graph.mgcn): loss against a dense re-derivation, determinism, masked
items, any number of modalities, and the fuser's attention."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from crossan.graph_file.build import knn_neighbours, normalized_adjacency
from crossan.models.graph.base import GraphData
from crossan.models.graph.mgcn import MGCN, MGCNConfig
from tests.graph_fixtures import tiny_graph

MASKED = {"text": [3], "image": [3, 7], "audio": [0]}


def build(graph: GraphData, seed: int = 0, **overrides) -> MGCN:
    torch.manual_seed(seed)
    return MGCN(graph, MGCNConfig(embedding_dim=8, **overrides))


def batch(graph: GraphData, size: int = 12, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randint(len(graph.user), (size,), generator=generator)
    return graph.user[rows], graph.item[rows], torch.randint(graph.n_items, (size,), generator=generator)


def naive_loss(model: MGCN, graph: GraphData, users, positives, negatives) -> torch.Tensor:
    """The MGCN objective from the equations: dense matrices and Python loops."""
    config = model.config
    n_users, n_items, names = graph.n_users, graph.n_items, graph.modalities
    n = n_users + n_items
    params = dict(model.named_parameters())
    sigmoid = torch.sigmoid

    # user-item view: dense D^-1/2 A D^-1/2, mean over layers 0..L
    adjacency = torch.zeros(n, n)
    for u, i in zip(graph.user.tolist(), graph.item.tolist()):
        adjacency[u, n_users + i] = adjacency[n_users + i, u] = 1.0
    degree = adjacency.sum(1)
    for a in range(n):
        for b in range(n):
            if adjacency[a, b]:
                adjacency[a, b] = 1.0 / math.sqrt(degree[a] * degree[b])
    ego = torch.cat([params["user_embedding"], params["item_embedding"]])
    layers, current = [ego], ego
    for _ in range(config.n_ui_layers):
        current = adjacency @ current
        layers.append(current)
    behaviour = sum(layers) / len(layers)

    views, present = [], []
    for m in names:
        has = graph.has_feature[m]
        weight, bias = params[f"purifier.project.{m}.weight"], params[f"purifier.project.{m}.bias"]
        gate_w, gate_b = params[f"purifier.gate.{m}.0.weight"], params[f"purifier.gate.{m}.0.bias"]
        purified = torch.zeros(n_items, config.embedding_dim)
        for i in range(n_items):
            if has[i]:
                content = weight @ params[f"features.{m}"][i] + bias
                purified[i] = params["item_embedding"][i] * sigmoid(gate_w @ content + gate_b)
        knn = torch.zeros(n_items, n_items)  # each top-k edge weighted by its cosine similarity
        for i in range(n_items):
            for j, score in zip(graph.knn_index[m][i, :config.knn_k].tolist(), graph.knn_score[m][i, :config.knn_k]):
                if j >= 0:
                    knn[i, j] = score
        knn_degree = knn.sum(1)
        for i in range(n_items):
            for j in range(n_items):
                if knn[i, j]:
                    knn[i, j] = knn[i, j] / math.sqrt(knn_degree[i] * knn_degree[j])
        items = purified
        for _ in range(config.n_ii_layers):
            items = knn @ items
        user_view = adjacency[:n_users, n_users:] @ items
        views.append(torch.cat([user_view, items]))
        user_has = [any(bool(has[i]) for uu, i in zip(graph.user.tolist(), graph.item.tolist()) if uu == u)
                    for u in range(n_users)]
        present.append(user_has + has.tolist())

    q_w, q_b, q_out = params["fuser.query.0.weight"], params["fuser.query.0.bias"], params["fuser.query.2.weight"]
    side = torch.zeros(n, config.embedding_dim)
    for node in range(n):
        have = [j for j in range(len(names)) if present[j][node]]
        scores = [(q_out @ torch.tanh(q_w @ views[j][node] + q_b)).squeeze() for j in have]
        weights = torch.softmax(torch.stack(scores), 0) if have else []
        common = sum((w * views[j][node] for w, j in zip(weights, have)), torch.zeros(config.embedding_dim))
        total = common.clone()
        for j in have:
            m = names[j]
            prefer = sigmoid(params[f"fuser.prefer.{m}.0.weight"] @ behaviour[node] + params[f"fuser.prefer.{m}.0.bias"])
            total = total + prefer * (views[j][node] - common)
        side[node] = total / (len(names) + 1)

    final = behaviour + side
    size = len(users_list := users.tolist())
    bpr, reg = 0.0, 0.0
    for u, p, q in zip(users_list, positives.tolist(), negatives.tolist()):
        eu, ep, eq = final[u], final[n_users + p], final[n_users + q]
        bpr = bpr - torch.log(sigmoid(eu @ ep - eu @ eq)) / size
        reg = reg + (eu.pow(2).sum() + ep.pow(2).sum() + eq.pow(2).sum()) / 2 / size

    def nce(rows: list[int]) -> torch.Tensor:
        total = 0.0
        unit = lambda x: x / max(float(x.norm()), 1e-12)  # a zero side view has cosine 0
        for a in rows:
            cos = [torch.dot(unit(side[a]), unit(behaviour[b])) for b in rows]
            own = torch.dot(unit(side[a]), unit(behaviour[a]))
            total = total - torch.log(torch.exp(own / config.temperature)
                                      / sum(torch.exp(c / config.temperature) for c in cos))
        return total / len(rows)

    contrast = nce([n_users + p for p in positives.tolist()]) + nce(users_list)
    return bpr + config.reg_weight * reg + config.cl_weight * contrast


@pytest.mark.parametrize("modalities", [("text", "image", "audio"), ("image",)])
def test_loss_matches_dense_reference(modalities):
    graph = tiny_graph(modalities=modalities, masked=MASKED)
    # a large regularisation and contrastive weight so that every term is visible
    model = build(graph, reg_weight=0.1, cl_weight=0.5, n_ii_layers=2, knn_k=3)
    users, positives, negatives = batch(graph)
    with torch.no_grad():
        expected = naive_loss(model, graph, users, positives, negatives)
        assert torch.allclose(model.loss(users, positives, negatives), expected, rtol=1e-5, atol=1e-6)


def test_user_lacking_a_modality_gets_no_attention_on_it():
    # every item of user 0 is masked in image: its image view is zero and it attends to text only
    graph = tiny_graph(modalities=("text", "image"))
    items = graph.item[graph.user == 0].tolist()
    graph = tiny_graph(modalities=("text", "image"), masked={"image": items})
    model = build(graph)
    with torch.no_grad():
        views = model.item_item(model.purifier(dict(model.features), model.has_feature, model.item_embedding))
        weights = model.fuser.weights(torch.stack([views["text"], views["image"]]), model.present)
    assert not model.present[1, 0] and model.present[0, 0]
    assert torch.equal(views["image"][0], torch.zeros(8))
    assert weights[:, 0].tolist() == [1.0, 0.0]


def test_attention_sums_to_one_and_item_graphs_are_normalised():
    graph = tiny_graph(masked=MASKED)
    model = build(graph, knn_k=3)
    with torch.no_grad():
        views = model.item_item(model.purifier(dict(model.features), model.has_feature, model.item_embedding))
        weights = model.fuser.weights(torch.stack([views[m] for m in graph.modalities]), model.present)
    assert torch.allclose(weights.sum(0), torch.ones(graph.n_users + graph.n_items))
    assert (weights[~model.present] == 0).all()
    for m in graph.modalities:
        knn = getattr(model.item_item, f"knn_{m}").to_dense()
        has = graph.has_feature[m]
        assert (knn[has] != 0).sum(1).eq(3).all()  # k = 3 neighbours, self included
        assert torch.equal(knn[~has], torch.zeros_like(knn[~has])) and (knn[:, ~has] == 0).all()
        weights = torch.zeros_like(knn)  # the top-3 cosine similarities, then D^-1/2 S D^-1/2
        index, score = graph.knn_index[m][:, :3], graph.knn_score[m][:, :3]
        rows = torch.arange(graph.n_items).unsqueeze(1).expand_as(index)
        weights[rows[index >= 0], index[index >= 0]] = score[index >= 0]
        degree = weights.sum(1)
        scale = torch.where(degree > 0, degree.rsqrt(), torch.zeros_like(degree))
        assert torch.allclose(knn, scale[:, None] * weights * scale[None, :])


def test_knn_edges_are_weighted_by_cosine_similarity():
    # 2 users, 3 items; text features (1, 0), (0.6, 0.8), (0, 1): cosines 0.6 (items 0-1), 0.8 (1-2), 0 (0-2)
    features = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    valid = torch.ones(3, dtype=torch.bool)
    index, score = knn_neighbours(features, valid, 2)  # self + the most similar other item
    user, item = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 2])
    graph = GraphData(2, 3, user, item, normalized_adjacency(user, item, 2, 3), {"text": features},
                      {"text": valid}, {"text": index}, {"text": score})
    # by hand: rows 0: {0: 1, 1: 0.6}, 1: {1: 1, 2: 0.8}, 2: {2: 1, 1: 0.8}; row sums 1.6, 1.8, 1.8;
    # S[i, j] / sqrt(d_i d_j) (the reference's build_knn_normalized_graph, norm_type 'sym')
    r = math.sqrt(1.6 * 1.8)
    want = torch.tensor([[1 / 1.6, 0.6 / r, 0.0],
                         [0.0, 1 / 1.8, 0.8 / 1.8],
                         [0.0, 0.8 / 1.8, 1 / 1.8]])
    model = build(graph, knn_k=2)
    assert torch.allclose(model.item_item.knn_text.to_dense(), want, atol=1e-6)
    # FREEDOM's graph (weight 1 per edge) stays: rows {1, 1} -> 1/2 on the diagonal and 0-1
    assert torch.allclose(graph.knn_adjacency("text", 2).to_dense()[0], torch.tensor([0.5, 0.5, 0.0]))
    assert MGCNConfig().lr_decay == 0.96 and MGCNConfig().lr_decay_epochs == 50  # MGCN.yaml: [0.96, 50]


def test_deterministic_on_cpu():
    graph = tiny_graph(masked=MASKED)
    users, positives, negatives = batch(graph)
    results = []
    for _ in range(2):
        model = build(graph)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        outputs = model()
        losses = []
        for _ in range(3):
            loss = model.loss(users, positives, negatives)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
        results.append((outputs, torch.stack(losses), model()))
    (out_a, loss_a, after_a), (out_b, loss_b, after_b) = results
    assert all(torch.equal(a, b) for a, b in zip(out_a + after_a, out_b + after_b))
    assert torch.equal(loss_a, loss_b)


def test_masked_item_has_no_feature_contribution():
    graph = tiny_graph(masked=MASKED)
    noisy_features = dict(graph.features)
    noisy_features["image"] = graph.features["image"].clone()
    noisy_features["image"][7] = torch.randn(graph.features["image"].shape[1]) * 10
    noisy = dataclasses.replace(graph, features=noisy_features)
    users, positives, negatives = batch(graph)
    clean_model, noisy_model = build(graph), build(noisy)
    for model in (clean_model, noisy_model):
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(3):
            loss = model.loss(users, positives.clone().fill_(7), negatives)  # item 7 everywhere
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(clean_model(), noisy_model()))
    with torch.no_grad():
        purified = noisy_model.purifier(dict(noisy_model.features), noisy_model.has_feature, noisy_model.item_embedding)
        views = noisy_model.item_item(purified)
    assert torch.equal(purified["image"][7], torch.zeros(8))
    assert torch.equal(views["image"][graph.n_users + 7], torch.zeros(8))
    assert purified["image"][6].abs().sum() > 0 and purified["text"][7].abs().sum() > 0


@pytest.mark.parametrize("modalities", [("text",), ("text", "image"), ("text", "image", "video", "audio")])
def test_any_number_of_modalities_and_learns(modalities):
    graph = tiny_graph(modalities=modalities, masked={"text": [2]})
    model = build(graph)
    users, items = model()
    assert users.shape == (graph.n_users, 8) and items.shape == (graph.n_items, 8)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    negatives = torch.randint(graph.n_items, (len(graph.user),), generator=generator)
    losses = []
    for _ in range(40):
        loss = model.loss(graph.user, graph.item, negatives)
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
