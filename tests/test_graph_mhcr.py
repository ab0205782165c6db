"""MHCR (crossan.models.graph.mhcr): loss against a dense re-derivation, determinism, masked
items, any number of modalities, hyperedge memberships and fusion weights."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from crossan.graph_file.build import knn_neighbours, normalized_adjacency
from crossan.models.graph.base import GraphData
from crossan.models.graph.mhcr import MHCR, MHCRConfig, Noise
from tests.graph_fixtures import tiny_graph

MASKED = {"text": [3], "image": [3, 7], "audio": [0]}


def build(graph: GraphData, seed: int = 0, **overrides) -> MHCR:
    torch.manual_seed(seed)
    return MHCR(graph, MHCRConfig(embedding_dim=8, n_hyperedges=5, knn_k=3, **overrides))


def batch(graph: GraphData, size: int = 12, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randint(len(graph.user), (size,), generator=generator)
    return graph.user[rows], graph.item[rows], torch.randint(graph.n_items, (size,), generator=generator)


def noise(model: MHCR, seed: int = 7) -> Noise:
    return model.sample_noise(torch.Generator().manual_seed(seed))


def batch_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Training-mode BatchNorm1d by its formula: biased variance, eps 1e-5."""
    mean = x.mean(0)
    var = ((x - mean) ** 2).mean(0)
    return (x - mean) / torch.sqrt(var + 1e-5) * weight + bias


def naive_loss(model: MHCR, graph: GraphData, users, positives, negatives, noise: Noise) -> torch.Tensor:
    """The MHCR objective from the equations: dense matrices, explicit sums and Python loops."""
    cfg = model.config
    P = dict(model.named_parameters())
    n_users, n_items, names = graph.n_users, graph.n_items, graph.modalities
    n = n_users + n_items
    pairs = list(zip(graph.user.tolist(), graph.item.tolist()))

    def linear(x, prefix):
        return x @ P[f"{prefix}.weight"].T + P.get(f"{prefix}.bias", 0)

    def gate(x):
        h = torch.relu(batch_norm(linear(x, "gate.net.0"), P["gate.net.1.weight"], P["gate.net.1.bias"]))
        return torch.sigmoid(batch_norm(linear(h, "gate.net.3"), P["gate.net.4.weight"], P["gate.net.4.bias"]))

    def cos(a, b):  # F.normalize's convention: each norm at least 1e-12
        return (a @ b) / (torch.clamp(a.norm(), min=1e-12) * torch.clamp(b.norm(), min=1e-12))

    # collaborative view: LightGCN on the dense D^-1/2 A D^-1/2
    adjacency = torch.zeros(n, n)
    for u, i in pairs:
        adjacency[u, n_users + i] = adjacency[n_users + i, u] = 1.0
    degree = adjacency.sum(1)
    for a in range(n):
        for b in range(n):
            if adjacency[a, b]:
                adjacency[a, b] = 1.0 / math.sqrt(degree[a] * degree[b])
    layer = torch.cat([P["user_embedding"], P["item_embedding"]])
    layers = [layer]
    for _ in range(cfg.n_ui_layers):
        layer = adjacency @ layer
        layers.append(layer)
    collaborative = sum(layers) / len(layers)

    # modality views over the kNN graphs (only items with the modality are gated)
    views = {}
    for m in names:
        has = graph.has_feature[m]
        rows = [i for i in range(n_items) if has[i]]
        gated = P["item_embedding"][rows] * gate(linear(graph.features[m][rows], f"transform.{m}"))
        content = torch.zeros(n_items, cfg.embedding_dim)
        for r, i in enumerate(rows):
            content[i] = gated[r]
        knn = torch.zeros(n_items, n_items)  # each top-k edge weighted by its cosine similarity
        for i in range(n_items):
            for j, score in zip(graph.knn_index[m][i, :cfg.knn_k].tolist(), graph.knn_score[m][i, :cfg.knn_k]):
                if j >= 0:
                    knn[i, j] = score
        knn_degree = knn.sum(1)
        for i in range(n_items):
            for j in range(n_items):
                if knn[i, j]:
                    knn[i, j] = knn[i, j] / math.sqrt(knn_degree[i] * knn_degree[j])
        items = content
        for _ in range(cfg.n_item_layers):
            items = knn @ items
        views[m] = torch.cat([adjacency[:n_users, n_users:] @ items, items])

    # fusion: softmax attention over the modalities a node has
    has_node = {m: [True] * n_users + graph.has_feature[m].tolist() for m in names}
    scores = {}
    for m in names:
        nodes = [v for v in range(n) if has_node[m][v]]
        hidden = torch.tanh(batch_norm(linear(views[m][nodes], "attention.net.0"),
                                       P["attention.net.1.weight"], P["attention.net.1.bias"]))
        s = (hidden @ P["attention.net.3.weight"].T).squeeze(1)
        scores[m] = {v: s[r] for r, v in enumerate(nodes)}
    preference = gate(collaborative)
    side_rows = []
    for v in range(n):
        present = [m for m in names if has_node[m][v]]
        total = sum(torch.exp(scores[m][v]) for m in present)
        common = sum((torch.exp(scores[m][v]) / total * views[m][v] for m in present),
                     torch.zeros(cfg.embedding_dim))
        specific = sum((preference[v] * (views[m][v] - common) for m in present), torch.zeros(cfg.embedding_dim))
        side_rows.append((specific + common) / (len(names) + 1))
    side = torch.stack(side_rows)

    # hypergraph views
    interactions = torch.zeros(n_users, n_items)
    for u, i in pairs:
        interactions[u, i] = 1.0
    hyper_users, hyper_items = {}, {}
    for m in names:
        has = graph.has_feature[m].float().unsqueeze(1)
        logits = (graph.features[m] * has) @ P[f"hyperedges.{m}"]
        item_m = torch.softmax((logits + noise.gumbel_items[m]) / cfg.gumbel_tau, 1) * has * noise.keep_items[m]
        user_m = torch.softmax((interactions @ logits + noise.gumbel_users[m]) / cfg.gumbel_tau, 1) \
            * noise.keep_users[m]
        h = collaborative[n_users:]
        for _ in range(cfg.n_hyper_layers):
            edges = item_m.T @ h
            h = item_m @ edges
            hu = user_m @ edges
        hyper_users[m], hyper_items[m] = hu, h
    hyper = torch.cat([sum(hyper_users.values()), sum(hyper_items.values())])
    joined = side if cfg.final_sum == "fused" else layers[-1]  # last-layer: A^L [E_u; E_i], the code's
    final = collaborative + joined + cfg.alpha * hyper / torch.clamp(hyper.norm(dim=1, keepdim=True), min=1e-12)
    U, I = final[:n_users], final[n_users:]

    B = len(users)
    bpr = sum(-torch.log(torch.sigmoid(U[users[b]] @ I[positives[b]] - U[users[b]] @ I[negatives[b]]))
              for b in range(B)) / B
    reg = sum(U[users[b]].pow(2).sum() + I[positives[b]].pow(2).sum() + I[negatives[b]].pow(2).sum()
              for b in range(B)) / (2 * B)

    def nce(a_rows, b_rows, tau):
        total = 0.0
        for x in range(len(a_rows)):
            denominator = sum(torch.exp(cos(a_rows[x], b_rows[y]) / tau) for y in range(len(b_rows)))
            total = total - torch.log(torch.exp(cos(a_rows[x], b_rows[x]) / tau) / denominator)
        return total / len(a_rows)

    item_idx, user_idx = positives.tolist(), users.tolist()
    cl = (nce(side[n_users:][item_idx], collaborative[n_users:][item_idx], cfg.cl_tau)
          + nce(side[:n_users][user_idx], collaborative[:n_users][user_idx], cfg.cl_tau))
    emb = (U.pow(2).sum().sqrt() + I.pow(2).sum().sqrt()) / n_items

    def multi_view(table, rows, tau):
        total = 0.0
        candidates = table[names[0]]
        for r in rows:
            vectors = [table[m][r] for m in names]
            positive = sum(torch.exp(cos(vectors[a], vectors[b]) / tau)
                           for a in range(len(names)) for b in range(a + 1, len(names)))
            denominator = sum(torch.exp(cos(vec, c) / tau) for vec in vectors for c in candidates)
            total = total - torch.log(positive / denominator)
        return total

    hc = (multi_view(hyper_users, user_idx, cfg.hc_tau) + multi_view(hyper_items, item_idx, cfg.hc_tau)
          if len(names) > 1 else 0.0)

    ghc = 0.0
    for m in names:
        nodes = [v for v in range(n) if has_node[m][v]]
        y = torch.sort(torch.cat([hyper_users[m], hyper_items[m]])[nodes], dim=1).values
        g = torch.sort(views[m][nodes], dim=1).values
        perm = noise.permutation[m].tolist()
        terms = []
        for r in range(len(nodes)):
            pos = torch.exp(cos(y[r], g[r]) / cfg.ghc_tau)
            neg = torch.exp(cos(y[r], g[perm[r]]) / cfg.ghc_tau)
            terms.append(-torch.log(pos / (pos + neg)))
        ghc = ghc + sum(terms) / len(terms)

    return (bpr + cfg.reg_weight * reg + cfg.cl_weight * cl + cfg.emb_weight * emb + cfg.hc_weight * hc
            + cfg.ghc_weight * ghc)


@pytest.mark.parametrize("modalities,final_sum", [(("text", "image", "audio"), "fused"), (("image",), "fused"),
                                                  (("text", "image", "audio"), "last-layer")])
def test_loss_matches_dense_reference(modalities, final_sum):
    graph = tiny_graph(modalities=modalities, masked=MASKED)
    # large loss weights so that every term shows in the comparison
    model = build(graph, n_ui_layers=2, n_hyper_layers=2, cl_weight=0.3, hc_weight=0.05, ghc_weight=0.4,
                  emb_weight=0.2, reg_weight=0.01, final_sum=final_sum)
    users, positives, negatives = batch(graph)
    draws = noise(model)
    with torch.no_grad():
        got = model.objective(users, positives, negatives, draws)
        want = naive_loss(model, graph, users, positives, negatives, draws)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6), (got, want)


def test_loss_draws_its_noise_from_the_model_generator():
    graph = tiny_graph(masked=MASKED)
    model = build(graph)
    users, positives, negatives = batch(graph)
    model.start_epoch(torch.Generator().manual_seed(3))
    generator = torch.Generator()
    generator.set_state(model.generator.get_state())
    want = model.objective(users, positives, negatives, model.sample_noise(generator))
    assert torch.equal(model.loss(users, positives, negatives), want)
    # the same epoch seed gives the same loss; the noise changes from one step to the next
    model.start_epoch(torch.Generator().manual_seed(3))
    first = model.loss(users, positives, negatives)
    assert torch.equal(first, want)
    assert not torch.equal(model.loss(users, positives, negatives), first)


def test_deterministic_on_cpu():
    graph = tiny_graph(masked=MASKED)
    users, positives, negatives = batch(graph)
    runs = []
    for _ in range(2):
        model = build(graph)
        model.start_epoch(torch.Generator().manual_seed(0))
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        losses = []
        for _ in range(3):
            loss = model.loss(users, positives, negatives)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
        runs.append((model(), torch.stack(losses)))
    (u1, i1), l1 = runs[0]
    (u2, i2), l2 = runs[1]
    assert torch.equal(u1, u2) and torch.equal(i1, i2) and torch.equal(l1, l2)


def test_forward_is_noise_free():
    graph = tiny_graph(masked=MASKED)
    model = build(graph)
    users, items = model()
    model.loss(*batch(graph))  # advances the noise generator
    again_users, again_items = model()
    assert torch.equal(users, again_users) and torch.equal(items, again_items)


def test_masked_item_has_no_feature_contribution():
    graph = tiny_graph(masked=MASKED)
    noisy = dict(graph.features)
    noisy["image"] = graph.features["image"].clone()
    noisy["image"][[3, 7]] = torch.randn(2, graph.features["image"].shape[1]) * 10
    altered = dataclasses.replace(graph, features=noisy)
    base, other = build(graph), build(altered)
    for a, b in zip(base(), other()):
        assert torch.equal(a, b)
    users, positives, negatives = batch(graph)
    draws = noise(base)
    assert torch.equal(base.objective(users, positives, negatives, draws),
                       other.objective(users, positives, negatives, draws))

    views = other.propagate(draws)
    n_users = graph.n_users
    image = other.modalities.index("image")
    for item in (3, 7):
        assert torch.count_nonzero(views.content["image"][item]) == 0
        assert torch.count_nonzero(views.modality["image"][n_users + item]) == 0
        assert torch.count_nonzero(views.item_membership["image"][item]) == 0
        assert torch.count_nonzero(views.hyper_items["image"][item]) == 0
        assert views.attention[n_users + item, image] == 0
    # no gradient reaches a masked item's feature row
    other.objective(users, positives, negatives, draws).backward()
    grad = other.features["image"].grad
    assert torch.count_nonzero(grad[[3, 7]]) == 0 and torch.count_nonzero(grad) > 0


@pytest.mark.parametrize("modalities", [("video",), ("text", "image"), ("text", "image", "video", "audio")])
def test_any_number_of_modalities_trains(modalities):
    graph = tiny_graph(modalities=modalities, masked=MASKED)
    model = build(graph)
    users, items = model()
    assert users.shape == (graph.n_users, 8) and items.shape == (graph.n_items, 8)
    fixed = noise(model)
    training = (graph.user, graph.item, torch.roll(graph.item, 5))
    before = model.objective(*training, fixed).item()
    assert math.isfinite(before)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        loss = model.loss(*training)
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert model.objective(*training, fixed).item() < before - 0.05


def test_memberships_and_fusion_weights():
    graph = tiny_graph(masked={"text": [3], "image": [3, 7]}, modalities=("text", "image"))
    model = build(graph)
    views = model.propagate(noise(model))
    for m in graph.modalities:
        has = graph.has_feature[m]
        item_sums = views.item_membership[m].sum(1)
        assert torch.allclose(item_sums[has], torch.ones(int(has.sum())))
        assert torch.all(item_sums[~has] == 0)
        assert torch.allclose(views.user_membership[m].sum(1), torch.ones(graph.n_users))
    weights = views.attention.sum(1)
    assert torch.allclose(weights[:graph.n_users + 3], torch.ones(graph.n_users + 3))
    assert weights[graph.n_users + 3] == 0  # item 3 has neither modality: no common part
    assert torch.count_nonzero(views.side[graph.n_users + 3]) == 0
    assert torch.allclose(views.attention[graph.n_users + 7], torch.tensor([1.0, 0.0]))


def test_user_item_block_is_the_normalised_adjacency():
    graph = tiny_graph()
    model = build(graph)
    block = model.user_item.to_dense()
    degree_u = torch.bincount(graph.user, minlength=graph.n_users).float()
    degree_i = torch.bincount(graph.item, minlength=graph.n_items).float()
    want = torch.zeros(graph.n_users, graph.n_items)
    want[graph.user, graph.item] = 1 / torch.sqrt(degree_u[graph.user] * degree_i[graph.item])
    assert torch.allclose(block, want)
    assert torch.equal(model.interactions.to_dense().sum(1), degree_u)


def hand_graph() -> GraphData:
    """2 users, 3 items; text features (1, 0), (0.6, 0.8), (0, 1): cosines 0.6 (items 0-1), 0.8 (1-2),
    0 (0-2)."""
    features = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    valid = torch.ones(3, dtype=torch.bool)
    index, score = knn_neighbours(features, valid, 2)  # self + the most similar other item
    user, item = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 2])
    return GraphData(2, 3, user, item, normalized_adjacency(user, item, 2, 3), {"text": features},
                     {"text": valid}, {"text": index}, {"text": score})


def test_knn_edges_are_weighted_by_cosine_similarity():
    # by hand: rows 0: {0: 1, 1: 0.6}, 1: {1: 1, 2: 0.8}, 2: {2: 1, 1: 0.8}; row sums 1.6, 1.8, 1.8;
    # S[i, j] / sqrt(d_i d_j) (the reference's build_knn_normalized_graph, norm_type 'sym')
    r = math.sqrt(1.6 * 1.8)
    want = torch.tensor([[1 / 1.6, 0.6 / r, 0.0],
                         [0.0, 1 / 1.8, 0.8 / 1.8],
                         [0.0, 0.8 / 1.8, 1 / 1.8]])
    model = build(hand_graph())
    assert torch.allclose(model.knn_text.to_dense(), want, atol=1e-6)


def test_final_sum_switch_changes_only_what_joins_the_collaborative_view():
    graph = tiny_graph(masked=MASKED)
    fused, code = build(graph, n_ui_layers=3), build(graph, n_ui_layers=3, final_sum="last-layer")
    a, b = fused.propagate(), code.propagate()
    assert torch.equal(a.collaborative, b.collaborative) and torch.equal(a.side, b.side)
    ego = torch.cat([code.user_embedding, code.item_embedding])
    last = ego
    for _ in range(3):
        last = torch.sparse.mm(code.adjacency, last)  # A^3 [E_u; E_i]: the reference's side_embeddings
    assert torch.allclose(torch.cat([b.users, b.items]) - torch.cat([a.users, a.items]), last - a.side, atol=1e-6)
    assert not torch.allclose(a.items, b.items)
    with pytest.raises(ValueError, match="final_sum"):
        build(graph, final_sum="side")


def test_defaults_are_the_reference_values():
    config = MHCRConfig()
    assert (config.final_sum, config.lr_decay, config.lr_decay_epochs) == ("fused", 0.96, 50)
    assert (config.embedding_dim, config.n_ui_layers, config.n_item_layers, config.knn_k) == (64, 7, 1, 10)
    assert (config.n_hyperedges, config.n_hyper_layers, config.gumbel_tau, config.keep_rate) == (32, 4, 0.5, 0.7)
    assert (config.alpha, config.cl_weight, config.hc_weight, config.ghc_weight) == (0.05, 0.01, 1e-5, 0.01)
    assert (config.emb_weight, config.reg_weight, config.cl_tau, config.hc_tau, config.ghc_tau) == \
        (0.1, 1e-4, 0.2, 0.2, 0.1)


def test_frozen_features_are_not_trained():
    graph = tiny_graph()
    model = build(graph, train_features=False)
    assert not any(p.requires_grad for p in model.features.parameters())
    model.loss(*batch(graph)).backward()
    assert all(p.grad is None for p in model.features.parameters())
