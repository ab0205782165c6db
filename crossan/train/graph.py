"""Training a multimodal graph recommender run (Table 8: MMGCN, GRCN, BM3, FREEDOM, MGCN, MHCR).

Same splits, evaluation and output files as every other run; what differs is the data and the
loop, which follow MMRec's protocol for these models:

* inputs: the dataset's graph file (:mod:`crossan.graph_file.build`: the training pairs, the
  normalised user-item adjacency, the kNN item graphs) and, for the run's modalities, the
  cached pooled state of the layer the graph was built on (``standardize_states``: z-scored
  as for the other methods), both resident on the device for the whole run;
* an epoch: every training pair once, shuffled, in batches of ``batch_size`` pairs (2048),
  each with one negative drawn uniformly from the items the user has no training pair with,
  among the items of the training pairs (``graph_negatives: training``, MMRec's and MHCR's
  ``TrainDataLoader``) or the whole catalogue (``catalogue``); Adam at ``lr``, for MGCN and
  MHCR decayed after every epoch to ``lr * lr_decay ** (epochs done / lr_decay_epochs)``
  (``LambdaLR``, as the ``learning_rate_scheduler`` of their references'
  ``src/common/trainer.py``; the others keep ``lr``, MMRec's ``overall.yaml`` ``[1.0, 50]``);
  the model's own loss (:class:`~crossan.models.graph.base.GraphRecommender`);
* after each epoch: validation HR@10 by full ranking (history masked, as for every run);
  early stopping after ``patience`` epochs without a strictly better one, best state restored;
* a grid (``grid``: parameter -> values, on top of the model's defaults): every point is
  trained, the point with the best validation HR@10 is kept (ties: the first), and only it is
  evaluated on test. Test never selects anything.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from crossan.errors import ConfigError, DataError
from crossan.graph_file.build import StoredGraph, read_graph
from crossan.models.graph.base import GraphData, GraphRecommender
from crossan.models.graph.registry import graph_model
from crossan.progress import Progress, log_progress
from crossan.runs.identity import run_name
from crossan.runs.run_config import RunConfig
from crossan.runs.settings import CONVENTIONS
from crossan.runs.vocabulary import GRAPH, GRAPH_METHODS, KS
from crossan.train.devices import deterministic_on_cpu, reset_peak_memory, resolve_device, sync_device
from crossan.train.evaluation import USER_CHUNK, Evaluation
from crossan.train.inputs import EvalSplit, SequenceData, load_item_states, load_sequences
from crossan.train.loop import EarlyStopping, optimizer_step
from crossan.train.loss import check_finite
from crossan.train.metrics import evaluate_full_ranking
from crossan.train.outputs import (
    RunResult,
    epoch_row,
    epoch_text,
    finish_run,
    log_result,
    mean_of,
    progress_label,
    start_run,
)
from crossan.train.towers import empty_item_towers


def graph_data(stored: StoredGraph, features_dir: Path, modalities: str, item_ids: list[str],
               device: torch.device, standardize: bool) -> GraphData:
    """:class:`GraphData` of ``modalities`` from a graph file and the cached states of its layer."""
    states = load_item_states(features_dir, modalities, "cpu", item_ids=item_ids,
                              storage_dtype=torch.float32, standardize=standardize)
    layer = stored.item_graphs.layer
    if stored.item_graphs.standardized != standardize:
        raise DataError(f"the graph's kNN was built on {'z-scored' if stored.item_graphs.standardized else 'raw'} "
                        f"states but this run reads {'z-scored' if standardize else 'raw'} ones; pass the same "
                        "--standardize-states to crossan graph and crossan train")
    if layer >= states.n_layers:
        raise DataError(f"the graph was built on kept layer {layer}, but {features_dir} has {states.n_layers}; "
                        "rebuild the graph")
    missing = [name for name in states.names if name not in stored.item_graphs.index]
    if missing:
        raise DataError(f"the graph file has no kNN graph for {', '.join(missing)}; rebuild it with "
                        f"--modalities covering {modalities}")
    features = {name: states.states[name][1:, layer].contiguous() for name in states.names}
    has_feature = {name: states.available[name][1:].clone() for name in states.names}
    for name in states.names:
        if not torch.equal(has_feature[name], stored.item_graphs.valid[name]):
            raise DataError(f"the graph file's {name} items with usable media differ from {features_dir}; "
                            "rebuild the graph")
    interactions = stored.interactions
    return GraphData(
        interactions.n_users, interactions.n_items, interactions.user, interactions.item,
        stored.adjacency, features, has_feature,
        {name: stored.item_graphs.index[name] for name in states.names},
        {name: stored.item_graphs.score[name] for name in states.names},
    ).to(device)


GRAPH_NEGATIVES: tuple[str, ...] = CONVENTIONS["graph_negatives"]  # ("training", "catalogue")


class NegativeSampler:
    """Uniform negatives: for each pair, an item the user has no training pair with, drawn among
    ``candidates`` (rejection sampling on the CPU ``generator``; users with a training pair with
    every candidate are not allowed).

    ``negatives``: ``"training"``, the candidates are the items of the training pairs (MMRec's
    and MHCR's ``TrainDataLoader``: ``all_items`` = the training split's items); ``"catalogue"``,
    every item (items without a training pair too)."""

    def __init__(self, graph: GraphData, negatives: str = GRAPH_NEGATIVES[0]) -> None:
        if negatives not in GRAPH_NEGATIVES:
            raise ConfigError(f"graph_negatives must be one of {', '.join(GRAPH_NEGATIVES)}, got {negatives!r}")
        self.n_items = graph.n_items
        self.candidates = (torch.unique(graph.item.cpu()) if negatives == "training"
                           else torch.arange(graph.n_items))  # long[C], sorted
        self.keys = torch.sort((graph.user * graph.n_items + graph.item).cpu()).values
        degree = torch.bincount(graph.user.cpu(), minlength=graph.n_users)
        if graph.n_users and int(degree.max()) >= len(self.candidates):
            raise DataError(f"a user has a training pair with every item it could get as a negative "
                            f"({negatives}: {len(self.candidates)} items): no negative to sample")

    def is_positive(self, users: Tensor, items: Tensor) -> Tensor:
        keys = users * self.n_items + items
        found = torch.searchsorted(self.keys, keys).clamp_max(len(self.keys) - 1)
        return self.keys[found] == keys

    def __call__(self, users: Tensor, generator: torch.Generator) -> Tensor:
        """``long[B]`` negatives for ``users`` ``long[B]`` (CPU)."""
        n = len(self.candidates)
        items = self.candidates[torch.randint(n, users.shape, generator=generator)]
        redo = self.is_positive(users, items)
        while redo.any():
            items[redo] = self.candidates[torch.randint(n, (int(redo.sum()),), generator=generator)]
            redo = self.is_positive(users, items)
        return items


# training settings a model reads from its run: method -> {config field: RunConfig field}
RUN_SETTINGS: dict[str, dict[str, str]] = {"grcn": {"routing": "grcn_routing"},
                                           "mhcr": {"final_sum": "mhcr_final_sum"}}


def model_config(run: RunConfig, config_type: type, params: dict[str, Any]) -> Any:
    """The model's config: embedding size ``run.hidden``, the run's settings the model reads
    (:data:`RUN_SETTINGS`), then the grid point ``params``."""
    settings = {name: getattr(run, key) for name, key in RUN_SETTINGS.get(run.method, {}).items()}
    clash = sorted(set(params) & {"embedding_dim", *settings})
    if clash:
        raise ConfigError(f"grid parameter(s) {', '.join(clash)} of {run.method} come from the run "
                          "(embedding_dim: its h; the others: its training settings), not from graph_grid")
    return config_type(embedding_dim=run.hidden, **settings, **params)


def learning_rate_schedule(optimizer: torch.optim.Optimizer, config: Any) -> torch.optim.lr_scheduler.LambdaLR:
    """MMRec's ``learning_rate_scheduler: [decay, epochs]``: the rate of epoch ``e + 1`` is
    ``lr * decay ** (e / epochs)`` (``LambdaLR``, stepped after every epoch; not a staircase).
    From the config's ``lr_decay`` / ``lr_decay_epochs`` (MGCN, MHCR); ``1.0`` (constant)
    for a model without them."""
    decay, every = float(getattr(config, "lr_decay", 1.0)), getattr(config, "lr_decay_epochs", 1)
    if not (0 < decay <= 1) or not (isinstance(every, int) and every >= 1):
        raise ConfigError(f"lr_decay must be in (0, 1] and lr_decay_epochs a positive integer, "
                          f"got {decay!r} and {every!r}")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: decay ** (epoch / every))


def grid_points(grid: dict[str, list[Any]], config_type: type) -> list[dict[str, Any]]:
    """Every combination of ``grid`` (parameter -> values), in order; ``[{}]`` for an empty grid."""
    known = {field.name for field in fields(config_type)}
    unknown = sorted(set(grid) - known)
    if unknown:
        raise ConfigError(f"grid parameter(s) {', '.join(unknown)} are not {config_type.__name__} fields; "
                          f"known: {', '.join(sorted(known))}")
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid.{name} must be a non-empty list, got {values!r}")
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def evaluate_graph_model(model: GraphRecommender, rows: Tensor, split: EvalSplit, repeat_targets: str) -> Evaluation:
    """Full-ranking ``(summary, per_user)`` of ``split`` whose users are graph rows ``rows``."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            users, items = model()
            table = torch.cat([items.new_zeros(1, items.shape[1]), items])  # row 0 = padding
            return evaluate_full_ranking(users[rows.to(users.device)], table, split.target, split.full_history,
                                         ks=KS, chunk_users=USER_CHUNK, repeat_targets=repeat_targets)
    finally:
        model.train(was_training)


def train_one(run: RunConfig, graph: GraphData, data: SequenceData, valid_rows: Tensor, params: dict[str, Any],
              sampler: NegativeSampler, device: torch.device,
              point: str = "") -> tuple[GraphRecommender, float, int, list[dict[str, float]]]:
    """Train one grid point: ``(model at its best epoch, best valid HR@10, best epoch, log rows)``
    (``sampler``: the run's negatives, the same for every grid point). Each epoch is a progress
    line (:func:`~crossan.train.outputs.epoch_text`, after ``point``, e.g. ``grid point 2/4, ``);
    an epoch longer than 30 s also counts its batches every 30 s."""
    label = progress_label(run_name(run))
    config_type, model_type = graph_model(run.method)
    config = model_config(run, config_type, params)
    torch.manual_seed(run.seed)
    model = model_type(graph, config).to(device)  # h = embedding size
    optimizer = torch.optim.Adam(model.parameters(), lr=run.lr, weight_decay=run.weight_decay)
    schedule = learning_rate_schedule(optimizer, config)
    generator = torch.Generator().manual_seed(run.seed)
    users_all, items_all = graph.user.cpu(), graph.item.cpu()
    rows: list[dict[str, float]] = []
    stopping = EarlyStopping(run.patience)
    for epoch in range(1, run.max_epochs + 1):
        model.train()
        model.start_epoch(generator)
        started = time.perf_counter()
        order = torch.randperm(len(users_all), generator=generator)
        total = 0.0
        starts = range(0, len(order), run.batch_size)
        with Progress(label, len(starts), "batches", step=f"{point}epoch {epoch}/{run.max_epochs}",
                      summary=False) as progress:
            for step, start in enumerate(starts):
                index = order[start:start + run.batch_size]
                users, positives = users_all[index], items_all[index]
                negatives = sampler(users, generator)
                loss = model.loss(users.to(device), positives.to(device), negatives.to(device))
                check_finite(loss.detach(), epoch, step)
                optimizer_step(loss, optimizer)
                total += float(loss.detach()) * len(index)
                progress.update()
        schedule.step()  # after the epoch, as MMRec's trainer (the next epoch's rate)
        sync_device(device)
        train_seconds = time.perf_counter() - started
        started = time.perf_counter()
        valid, _ = evaluate_graph_model(model, valid_rows, data.valid, run.repeat_targets)
        eval_seconds = time.perf_counter() - started
        rows.append(epoch_row(epoch, total / max(len(order), 1), valid, train_seconds, eval_seconds))
        log_progress(label, point + epoch_text(rows[-1], run.max_epochs))
        if stopping.update(model, epoch, valid["HR@10"]):
            break
    stopping.restore(model)
    return model, stopping.best_hr, stopping.best_epoch, rows


def train_graph_run(run: RunConfig) -> RunResult:
    """Train every grid point of a graph recommender run, keep the best on validation, evaluate
    it on validation and test, and write the run's outputs."""
    if run.family != GRAPH:
        raise ConfigError(f"train_graph_run trains {', '.join(GRAPH_METHODS)}, not {run.method!r}")
    if not run.graph_file:
        raise ConfigError(f"{run.method} needs the dataset's graph file (crossan train --graph; "
                          "built by crossan graph)")
    device = resolve_device(run.device)
    with deterministic_on_cpu(device):
        start_run(run)
        reset_peak_memory(device)
        data = load_sequences(Path(run.data_dir), run.max_len)
        stored = read_graph(Path(run.graph_file), data.item_ids)
        graph = graph_data(stored, Path(run.features_dir), run.modalities, data.item_ids, device,
                           run.standardize_states)
        valid_rows = stored.interactions.user_rows(data.valid.user_index)
        test_rows = stored.interactions.user_rows(data.test.user_index)
        config_type, _ = graph_model(run.method)
        points = grid_points(dict(run.graph_grid), config_type)
        label = progress_label(run_name(run))
        log_progress(label, f"{run.method} on {run.modalities}: {graph.n_users} users, {graph.n_items} items, "
                     f"{len(graph.user)} training pairs, {len(points)} grid point(s), on {device}")

        sampler = NegativeSampler(graph, run.graph_negatives)
        results, best = [], None
        for number, params in enumerate(points):
            point = f"grid point {number + 1}/{len(points)}, " if len(points) > 1 else ""
            model, hr, epoch, rows = train_one(run, graph, data, valid_rows, params, sampler, device, point)
            seconds = mean_of(rows, "train_seconds")
            results.append({"params": params, "valid_HR@10": hr, "best_epoch": epoch, "epochs_run": len(rows),
                            "seconds_per_epoch": seconds})
            log_progress(label, f"grid point {number + 1}/{len(points)} {params or '(defaults)'}: valid HR@10 "
                         f"{hr:.4f} at epoch {epoch} of {len(rows)} ({seconds:.3f} s/epoch)")
            if best is None or hr > best[1]:
                best = (model, hr, epoch, rows, params, number)
            else:
                del model
        model, _, best_epoch, rows, params, _ = best
        final = {"valid": evaluate_graph_model(model, valid_rows, data.valid, run.repeat_targets),
                 "test": evaluate_graph_model(model, test_rows, data.test, run.repeat_targets)}
        k = int(graph.knn_index[graph.modalities[0]].shape[1])
        result = finish_run(run, data, device, final, rows=rows, best_epoch=best_epoch, model=model,
                            towers=empty_item_towers(data.item_ids, run_name(run)), extra={
                                "hyper_parameters": asdict(model.config),
                                "grid": results,
                                "graph": {"file": str(run.graph_file), "layer": stored.item_graphs.layer,
                                          "training_pairs": len(graph.user), "k": k},
                            })
    log_result(result)
    return result
