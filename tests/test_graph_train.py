"""Graph building and the graph recommenders' shared training loop: the normalised adjacency
against the dense formula, blocked kNN against brute force, the training pairs, negatives,
grid selection on validation only, outputs, determinism."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from graph_fixtures import tiny_graph
from test_train_data import random_sequences, write_dataset, write_features
from torch import Tensor, nn

from crossan.errors import ConfigError, DataError
from crossan.graph_file.build import (
    build_graph,
    knn_neighbours,
    normalized_adjacency,
    read_graph,
    training_interactions,
)
from crossan.graph_file.sparse import edge_propagate, normalize_sparse, sparse_dropout
from crossan.models.graph.base import GraphData, GraphRecommender, bpr_loss, mask_items
from crossan.models.graph.grcn import GRCNConfig
from crossan.models.graph.mgcn import MGCNConfig
from crossan.models.graph.mhcr import MHCRConfig
from crossan.runs.identity import parse_run_name, run_name, settings_digest
from crossan.runs.run_config import RunConfig
from crossan.train import graph as graph_training
from crossan.train.entry import train
from crossan.train.graph import NegativeSampler, grid_points
from crossan.train.inputs import load_sequences

N_USERS, N_ITEMS = 40, 30


# ---------------------------------------------------------------- graphs


def test_normalized_adjacency_equals_the_dense_formula() -> None:
    user, item = torch.tensor([0, 0, 1, 2, 2, 2]), torch.tensor([0, 1, 1, 0, 1, 3])
    n_users, n_items = 4, 5  # user 3 and item 2, 4 have no edge
    r = torch.zeros(n_users, n_items)
    r[user, item] = 1
    a = torch.zeros(9, 9)
    a[:4, 4:], a[4:, :4] = r, r.T
    degree = a.sum(1)
    inv = torch.where(degree > 0, degree.pow(-0.5), torch.zeros_like(degree))
    expected = inv[:, None] * a * inv[None, :]
    assert torch.allclose(normalized_adjacency(user, item, n_users, n_items).to_dense(), expected)
    assert normalized_adjacency(user, item, n_users, n_items).to_dense()[3].abs().sum() == 0


def test_blocked_knn_equals_brute_force_and_skips_masked_items() -> None:
    generator = torch.Generator().manual_seed(3)
    features = torch.randn(23, 6, generator=generator)
    valid = torch.ones(23, dtype=torch.bool)
    valid[[4, 17]] = False
    unit = features / features.norm(dim=1, keepdim=True)
    similarity = unit @ unit.T
    similarity[:, ~valid] = -torch.inf
    expected = similarity.argsort(dim=1, descending=True, stable=True)[:, :5]
    for block in (1, 4, 7, 100):
        index, score = knn_neighbours(features, valid, 5, block=block)
        assert torch.equal(index[valid], expected[valid])
        assert torch.allclose(score[valid], similarity[valid].gather(1, expected[valid]))
        assert (index[~valid] == -1).all() and not torch.isin(index, torch.tensor([4, 17])).any()
        assert torch.equal(index[valid][:, 0], torch.arange(23)[valid])  # itself first


def test_normalize_sparse_and_dropout() -> None:
    dense = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 0.0], [3.0, 0.0, 1.0]])
    matrix = dense.to_sparse().coalesce()
    degree = dense.sum(1)
    inv = torch.where(degree > 0, degree.pow(-0.5), torch.zeros_like(degree))
    assert torch.allclose(normalize_sparse(matrix, "sym").to_dense(), inv[:, None] * dense * inv[None, :])
    rw = torch.where(degree > 0, 1 / degree, torch.zeros_like(degree))
    assert torch.allclose(normalize_sparse(matrix, "rw").to_dense(), rw[:, None] * dense)
    assert sparse_dropout(matrix, 0.0) is matrix
    kept = sparse_dropout(matrix, 0.5, torch.Generator().manual_seed(0))
    assert set(map(tuple, kept.indices().T.tolist())) <= set(map(tuple, matrix.indices().T.tolist()))


def test_edge_propagate_is_the_sparse_product_with_value_gradients_per_edge() -> None:
    rows, cols = torch.tensor([0, 0, 2, 2, 1]), torch.tensor([1, 3, 0, 3, 3])  # row 1 -> col 3 too
    values = torch.tensor([0.5, -1.0, 2.0, 0.25, 3.0], requires_grad=True)
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    dense = torch.zeros(3, 4).index_put((rows, cols), values, accumulate=True)
    out = edge_propagate(rows, cols, values, 3, x)
    assert torch.allclose(out, dense @ x)
    out.sum().backward()
    assert values.grad.shape == (5,)  # one per edge, never a dense [3, 4] matrix
    assert torch.allclose(values.grad, x.sum(1)[cols])


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("graph")
    data = write_dataset(root / "data", random_sequences(N_USERS, N_ITEMS, seed=2), N_ITEMS)
    features = root / "features"
    ids = [str(100 + i) for i in range(1, N_ITEMS + 1)]
    for seed, name in enumerate(("text", "image")):
        values = np.random.default_rng(seed).standard_normal((N_ITEMS + 1, 2, 8)).astype(np.float16)
        valid = np.ones(N_ITEMS + 1, dtype=bool)
        valid[0] = False
        if name == "image":
            valid[5] = False  # dense id 5 (row 4 of the graph) has no cover
        values[~valid] = 0
        write_features(features / f"{name}.h5", values, valid, ids)
    graph = root / "graph.h5"
    build_graph(data, features, graph, modalities="TI", k=4)
    return {"data": data, "features": features, "graph": graph}


def test_training_pairs_are_the_sequential_models_training_windows(world) -> None:
    data = load_sequences(world["data"], 10)
    pairs = training_interactions(data)
    expected = set()
    for row, sequence in enumerate(data.train.sequences.tolist()):
        window = [i for i in sequence if i][-11:]
        expected |= {(row, i - 1) for i in window}
    assert set(zip(pairs.user.tolist(), pairs.item.tolist())) == expected
    valid_targets = set(zip(pairs.user_rows(data.valid.user_index).tolist(), (data.valid.target - 1).tolist()))
    assert not valid_targets <= expected  # targets are not edges (unless repeated in the window)
    stored = read_graph(world["graph"], data.item_ids)
    assert torch.equal(stored.interactions.user, pairs.user) and torch.equal(stored.interactions.item, pairs.item)
    assert (stored.item_graphs.index["image"][4] == -1).all()  # item id 5 = row 4 has no cover
    with pytest.raises(DataError, match="other items"):
        read_graph(world["graph"], data.item_ids[::-1])


def test_negatives_are_never_training_items() -> None:
    graph = tiny_graph()
    sampler = NegativeSampler(graph)
    users = graph.user.repeat(20)
    negatives = sampler(users, torch.Generator().manual_seed(0))
    positives = set(zip(graph.user.tolist(), graph.item.tolist()))
    assert not any((u, i) in positives for u, i in zip(users.tolist(), negatives.tolist()))
    assert len(set(negatives.tolist())) > graph.n_items // 2  # uniform-ish, not one item


def test_negatives_come_from_the_training_items_or_the_catalogue() -> None:
    graph = tiny_graph(n_users=9, n_items=14)
    # items 14..19 exist in the catalogue but have no training pair (e.g. only ever a test target)
    wider = GraphData(graph.n_users, 20, graph.user, graph.item,
                      normalized_adjacency(graph.user, graph.item, graph.n_users, 20), {}, {}, {}, {})
    users = wider.user.repeat(50)
    positives = set(zip(wider.user.tolist(), wider.item.tolist()))
    training = NegativeSampler(wider, "training")(users, torch.Generator().manual_seed(0))
    catalogue = NegativeSampler(wider, "catalogue")(users, torch.Generator().manual_seed(0))
    assert set(training.tolist()) <= set(range(14))  # MMRec/MHCR: never an item without a training pair
    assert set(catalogue.tolist()) & set(range(14, 20))  # the whole catalogue reaches them
    for negatives in (training, catalogue):
        assert not any((u, i) in positives for u, i in zip(users.tolist(), negatives.tolist()))
    # catalogue is the earlier sampler's draw, number for number: uniform on range(n_items), redrawn
    generator = torch.Generator().manual_seed(0)
    earlier = torch.randint(20, users.shape, generator=generator)
    redo = torch.tensor([(u, i) in positives for u, i in zip(users.tolist(), earlier.tolist())])
    while redo.any():
        earlier[redo] = torch.randint(20, (int(redo.sum()),), generator=generator)
        redo = torch.tensor([(u, i) in positives for u, i in zip(users.tolist(), earlier.tolist())])
    assert torch.equal(catalogue, earlier)
    with pytest.raises(ConfigError, match="graph_negatives"):
        NegativeSampler(wider, "all")
    # a user with a pair on every training item has no negative under training, one under catalogue
    full = GraphData(2, 4, torch.tensor([0, 0, 0, 1]), torch.tensor([0, 1, 2, 0]),
                     normalized_adjacency(torch.tensor([0, 0, 0, 1]), torch.tensor([0, 1, 2, 0]), 2, 4),
                     {}, {}, {}, {})
    with pytest.raises(DataError, match="no negative"):
        NegativeSampler(full, "training")
    assert NegativeSampler(full, "catalogue")(torch.tensor([0, 0]), torch.Generator()).tolist() == [3, 3]


# ---------------------------------------------------------------- the loop, with a test-only model


@dataclass(frozen=True)
class IdConfig:
    embedding_dim: int = 64
    n_layers: int = 2
    reg_weight: float = 0.0


class LightGCNWithContent(GraphRecommender):
    """LightGCN on IDs plus a linear map of each modality's features (masked rows zeroed)."""

    def __init__(self, graph: GraphData, config: IdConfig) -> None:
        super().__init__()
        self.graph, self.config = graph, config
        self.embedding = nn.Embedding(graph.n_users + graph.n_items, config.embedding_dim)
        nn.init.normal_(self.embedding.weight, std=0.1)
        self.content = nn.ModuleDict({m: nn.Linear(graph.features[m].shape[1], config.embedding_dim)
                                      for m in graph.modalities})

    def forward(self) -> tuple[Tensor, Tensor]:
        x = self.embedding.weight
        layers = [x]
        for _ in range(self.config.n_layers):
            layers.append(torch.sparse.mm(self.graph.adjacency, layers[-1]))
        out = torch.stack(layers).mean(0)
        users, items = out[:self.graph.n_users], out[self.graph.n_users:]
        for m, linear in self.content.items():
            items = items + mask_items(linear(self.graph.features[m]), self.graph.has_feature[m])
        return users, items

    def loss(self, users: Tensor, positives: Tensor, negatives: Tensor) -> Tensor:
        u, i = self()
        return bpr_loss(u[users], i[positives], i[negatives]) + self.config.reg_weight * u[users].pow(2).mean()


@pytest.fixture
def id_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(graph_training, "graph_model", lambda method: (IdConfig, LightGCNWithContent))


# config()'s loop settings, not MMRec's (2048 pairs, 1000 epochs, patience 20), and no grid (the
# default is FREEDOM's published search): in the run name's digest
CHANGED = {"graph_batch_size": 64, "graph_max_epochs": 6, "graph_patience": 3, "graph_grid": {}}
DIGEST = settings_digest(CHANGED)


def config(world, out: Path, **kw) -> RunConfig:
    defaults = {"method": "freedom", "modalities": "TI", "hidden": 16, "lr": 1e-2, "batch_size": 64,
                "max_epochs": 6, "patience": 3, "device": "cpu", "dataset": "demo"}
    return RunConfig(data_dir=world["data"], features_dir=world["features"], out_dir=out,
                     **({"graph_file": world["graph"]} | defaults | kw))


def test_a_graph_run_writes_every_output(world, tmp_path: Path, id_model) -> None:
    result = train(config(world, tmp_path / "r"))
    for name in ("metrics.json", "per_user_valid.parquet", "per_user_test.parquet", "gates.json",
                 "item_towers.h5", "train_log.csv", "settings.json"):
        assert (tmp_path / "r" / name).is_file(), name
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["run_name"] == "demo__freedom-TI-h16-lr1e-02-s0-x" + DIGEST  # no fusion, no top-k
    settings = json.loads((tmp_path / "r" / "settings.json").read_text(encoding="utf-8"))
    assert settings["changed"] == CHANGED and settings["settings"]["graph_k"] == 10
    assert parse_run_name(metrics["run_name"])["method"] == "freedom"
    assert metrics["graph"]["layer"] == 1 and metrics["graph"]["k"] == 4
    assert metrics["hyper_parameters"] == {"embedding_dim": 16, "n_layers": 2, "reg_weight": 0.0}
    assert metrics["trainable_parameters"] == (N_USERS + N_ITEMS) * 16 + 2 * (8 * 16 + 16)
    assert 0 <= metrics["test"]["HR@10"] <= 1 and 1 <= metrics["epochs_run"] <= 6
    assert len(result.per_user_test["HR@10"]) == N_USERS


def test_same_seed_same_numbers(world, tmp_path: Path, id_model) -> None:
    first = train(config(world, tmp_path / "a"))
    second = train(config(world, tmp_path / "b"))
    assert first.test == second.test and [r["train_loss"] for r in first.log] == [r["train_loss"] for r in second.log]


def test_the_grid_is_selected_on_validation_only(world, tmp_path: Path, id_model, monkeypatch) -> None:
    """Every point is trained; the kept one has the best validation HR@10, whatever test says."""
    result = train(config(world, tmp_path / "g", graph_grid={"n_layers": [0, 1, 3], "reg_weight": [0.0]}))
    metrics = json.loads((tmp_path / "g" / "metrics.json").read_text(encoding="utf-8"))
    grid = metrics["grid"]
    assert [point["params"] for point in grid] == [{"n_layers": n, "reg_weight": 0.0} for n in (0, 1, 3)]
    best = max(range(3), key=lambda i: (grid[i]["valid_HR@10"], -i))
    assert metrics["hyper_parameters"]["n_layers"] == grid[best]["params"]["n_layers"]
    assert metrics["valid"]["HR@10"] == pytest.approx(grid[best]["valid_HR@10"])
    assert result.model.config.n_layers == grid[best]["params"]["n_layers"]


def test_grid_and_config_errors(world, tmp_path: Path) -> None:
    assert grid_points({}, IdConfig) == [{}]
    assert grid_points({"n_layers": [1, 2], "reg_weight": [0.0, 0.1]}, IdConfig)[1] == {"n_layers": 1, "reg_weight": 0.1}
    with pytest.raises(ConfigError, match="not IdConfig fields"):
        grid_points({"dropout": [0.1]}, IdConfig)
    with pytest.raises(ConfigError, match="fusion must be none"):
        config(world, tmp_path / "x", fusion="momef")
    with pytest.raises(ConfigError, match="graph file"):
        train(config(world, tmp_path / "y", graph_file=""))
    assert run_name(config(world, tmp_path / "z", modalities="IT")) == "demo__freedom-TI-h16-lr1e-02-s0-x" + DIGEST


def test_graph_without_the_runs_modality_is_refused(world, tmp_path: Path, id_model) -> None:
    text_only = build_graph(world["data"], world["features"], tmp_path / "t.h5", modalities="T", k=4)
    assert set(text_only.item_graphs.index) == {"text"}
    with pytest.raises(DataError, match="no kNN graph for image"):
        train(config(world, tmp_path / "v", graph_file=tmp_path / "t.h5"))


def test_knn_and_run_must_agree_on_standardisation(world, tmp_path: Path, id_model) -> None:
    with pytest.raises(DataError, match="raw.*z-scored"):
        train(config(world, tmp_path / "s", standardize_states=True))
    zscored = build_graph(world["data"], world["features"], tmp_path / "z.h5", modalities="TI", k=4, standardize=True)
    assert zscored.item_graphs.standardized
    train(config(world, tmp_path / "ok", graph_file=tmp_path / "z.h5", standardize_states=True, max_epochs=1))


# ---------------------------------------------------------------- learning-rate schedule, run settings


def test_learning_rate_decays_as_mmrec_trainer_for_mgcn_and_mhcr() -> None:
    """MGCN.yaml / MHCR.yaml ``learning_rate_scheduler: [0.96, 50]``: LambdaLR with
    ``0.96 ** (epoch / 50)``, stepped after each epoch; the others keep their rate."""
    want = {1: 1.0, 50: 0.96 ** (49 / 50), 51: 0.96, 100: 0.96 ** (99 / 50), 101: 0.96 ** 2}
    for config in (MGCNConfig(), MHCRConfig()):
        optimizer = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=1e-3)
        schedule = graph_training.learning_rate_schedule(optimizer, config)
        rates = {}
        for epoch in range(1, 102):
            rates[epoch] = optimizer.param_groups[0]["lr"]  # the rate this epoch trains at
            optimizer.step()
            schedule.step()  # after the epoch, as train_one
        for epoch, factor in want.items():
            assert rates[epoch] == pytest.approx(1e-3 * factor, rel=1e-12), epoch
    optimizer = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=1e-3)
    schedule = graph_training.learning_rate_schedule(optimizer, IdConfig())  # no lr_decay: constant
    for _ in range(100):
        optimizer.step()
        schedule.step()
    assert optimizer.param_groups[0]["lr"] == 1e-3


@dataclass(frozen=True)
class DecayingConfig(IdConfig):
    lr_decay: float = 0.5
    lr_decay_epochs: int = 2


def test_a_run_steps_the_schedule_once_per_epoch(world, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(graph_training, "graph_model", lambda method: (DecayingConfig, LightGCNWithContent))
    made, real = [], graph_training.learning_rate_schedule

    def schedule(optimizer, config):
        made.append((optimizer, real(optimizer, config)))
        return made[-1][1]

    monkeypatch.setattr(graph_training, "learning_rate_schedule", schedule)
    result = train(config(world, tmp_path / "d", max_epochs=4, patience=10))
    optimizer, scheduler = made[0]
    assert len(result.log) == 4 and scheduler.last_epoch == 4
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-2 * 0.5 ** (4 / 2))


def test_run_settings_reach_the_model_config(world, tmp_path: Path) -> None:
    grcn = config(world, tmp_path / "c", method="grcn", grcn_routing="items")
    assert graph_training.model_config(grcn, GRCNConfig, {"reg_weight": 0.1}) == GRCNConfig(
        embedding_dim=16, reg_weight=0.1, routing="items")
    mhcr = config(world, tmp_path / "c", method="mhcr", mhcr_final_sum="last-layer")
    assert graph_training.model_config(mhcr, MHCRConfig, {}).final_sum == "last-layer"
    assert graph_training.model_config(config(world, tmp_path / "c", method="mgcn"), MGCNConfig, {}) == MGCNConfig(
        embedding_dim=16)
    with pytest.raises(ConfigError, match="not from graph_grid"):
        graph_training.model_config(grcn, GRCNConfig, {"routing": ["users"]})
    with pytest.raises(ConfigError, match="grcn_routing must be one of users, items"):
        config(world, tmp_path / "c", method="grcn", grcn_routing="paper")
