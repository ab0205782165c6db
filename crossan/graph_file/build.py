"""Graphs for the multimodal graph recommenders (Table 8), built once per dataset.

* **Interactions**: the training part of the leave-one-out split, exactly what the sequential
  models train on: every item of each user's training window (the last ``max_len + 1`` items
  of ``train.parquet``'s sequence, :class:`~crossan.train.inputs.TrainSplit`), each
  (user, item) pair once. Validation and test targets are never edges.
* **User-item adjacency**: ``A = [[0, R], [R^T, 0]]`` over ``n_users + n_items`` nodes (users
  first), normalised ``D^-1/2 A D^-1/2`` (LightGCN; a node without edges keeps an empty row).
* **kNN item graphs**, one per modality: each item's ``k`` most cosine-similar items on the
  cached pooled state of one kept layer (default the last), the item itself included (its
  similarity is 1, as in LATTICE/FREEDOM's code), stored with those cosine similarities
  (``knn/{modality}/score``: MGCN and MHCR weight each edge by it, FREEDOM uses weight 1, as
  their references). Items without usable media have no neighbours and are nobody's
  neighbour. Computed ``block`` rows at a time, so memory is ``block x n_items`` scores, not
  ``n_items^2``.

Everything is written to one HDF5 file (:func:`write_graph`, atomically) that the runs read
(:func:`read_graph`).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import Tensor

from crossan.atomic import atomic_output
from crossan.errors import DataError
from crossan.graph_file.options import DEFAULT_BLOCK, DEFAULT_K, DEFAULT_MAX_LEN
from crossan.graph_file.sparse import coo
from crossan.runs.vocabulary import MODALITY_LETTERS, modality_letters
from crossan.train.inputs import SequenceData, load_item_states, load_sequences

log = logging.getLogger(__name__)

GRAPH_FILE = "graph.h5"


@dataclass(frozen=True)
class Interactions:
    """Training (user, item) pairs; user rows index ``user_index`` (sorted), items are 0-based
    (dense id - 1). ``user``, ``item``: ``long[E]``, sorted by user then item, no duplicates."""

    n_users: int
    n_items: int
    user_index: Tensor  # long[n_users]: the split's user_index of each graph user row
    user: Tensor
    item: Tensor

    def user_rows(self, user_index: Tensor) -> Tensor:
        """Graph rows ``long[N]`` of the split users ``user_index`` ``[N]``.

        Raises DataError for a user without a training sequence."""
        rows = torch.searchsorted(self.user_index, user_index)
        rows = rows.clamp_max(max(self.n_users - 1, 0))
        if self.n_users == 0 or not torch.equal(self.user_index[rows], user_index):
            raise DataError("validation/test users without a training sequence; rebuild the splits")
        return rows


def training_interactions(data: SequenceData) -> Interactions:
    """The distinct (user, item) pairs of every user's training window: the last
    ``max_len + 1`` items of its training sequence."""
    split = data.train
    window = split.sequences[:, -(data.max_len + 1):]  # [U, <= max_len + 1], left-padded
    rows = torch.arange(window.shape[0]).unsqueeze(1).expand_as(window)
    keep = window != 0
    keys = torch.unique(rows[keep] * (data.n_items + 1) + window[keep])  # sorted, distinct
    return Interactions(
        n_users=int(window.shape[0]),
        n_items=data.n_items,
        user_index=split.user_index.clone(),
        user=keys // (data.n_items + 1),
        item=keys % (data.n_items + 1) - 1,
    )


def normalized_adjacency(user: Tensor, item: Tensor, n_users: int, n_items: int) -> Tensor:
    """``D^-1/2 A D^-1/2`` of the bipartite graph, sparse COO ``[U + I, U + I]`` float32,
    coalesced; ``A[u, U + i] = A[U + i, u] = 1`` for each pair."""
    n = n_users + n_items
    row = torch.cat([user, item + n_users])
    col = torch.cat([item + n_users, user])
    degree = torch.bincount(row, minlength=n).to(torch.float32)
    inv_sqrt = torch.where(degree > 0, degree.pow(-0.5), torch.zeros_like(degree))
    value = inv_sqrt[row] * inv_sqrt[col]
    return coo(torch.stack([row, col]), value, (n, n))


def knn_neighbours(features: Tensor, valid: Tensor, k: int, block: int = DEFAULT_BLOCK) -> tuple[Tensor, Tensor]:
    """Top-``k`` cosine neighbours of every item, ``block`` rows at a time.

    Args:
        features: ``[I, D]`` item features (any float dtype; computed in float32).
        valid: ``bool [I]``: items with usable media.
        k: neighbours per item (clamped to the number of valid items).

    Returns:
        ``(index long[I, k], score float32[I, k])``, best first; rows of invalid items are
        ``-1`` / ``0``. Ties are broken towards the lower index.
    """
    n = features.shape[0]
    k = min(k, int(valid.sum()))
    index = torch.full((n, k), -1, dtype=torch.long)
    score = torch.zeros(n, k, dtype=torch.float32)
    if k == 0:
        return index, score
    unit = torch.nn.functional.normalize(features.to(torch.float32), dim=1)
    unit = torch.where(valid.unsqueeze(1), unit, torch.zeros_like(unit))
    penalty = torch.where(valid, 0.0, -torch.inf)  # invalid items are nobody's neighbour
    for start in range(0, n, block):
        similarity = unit[start:start + block] @ unit.T + penalty  # [b, I]
        # stable descending sort = ties towards the lower index, independent of the block size
        order = torch.sort(similarity, dim=1, descending=True, stable=True)
        index[start:start + block] = order.indices[:, :k]
        score[start:start + block] = order.values[:, :k]
    index[~valid] = -1
    score[~valid] = 0.0
    return index, score


@dataclass(frozen=True)
class ItemGraphs:
    """Per-modality kNN neighbours (:func:`knn_neighbours`) and the layer they were built on."""

    layer: int
    standardized: bool
    index: dict[str, Tensor]  # modality name -> long[I, k]
    score: dict[str, Tensor]  # modality name -> float32[I, k]
    valid: dict[str, Tensor]  # modality name -> bool[I]


def build_item_graphs(features_dir: Path, modalities: str, item_ids: list[str], layer: int, k: int,
                      block: int = DEFAULT_BLOCK, standardize: bool = False) -> ItemGraphs:
    """kNN graphs of ``modalities`` from ``{features_dir}/{modality}.h5``'s kept layer
    ``layer`` (an index into the file's kept layers; negative counts from the last), on the
    z-scored states if ``standardize`` (the demo's ``standardize_states``, as its runs see them)."""
    states = load_item_states(features_dir, modalities, "cpu", item_ids=item_ids, storage_dtype=torch.float32,
                              standardize=standardize)
    if not -states.n_layers <= layer < states.n_layers:
        raise DataError(f"graph layer {layer} is not one of the {states.n_layers} kept layers of {features_dir}")
    layer = layer % states.n_layers
    index, score, valid = {}, {}, {}
    for name in states.names:
        features = states.states[name][1:, layer]
        valid[name] = states.available[name][1:].clone()
        index[name], score[name] = knn_neighbours(features, valid[name], k, block)
        log.info("%s: kNN k=%d on layer %d, %d items with usable media", name, k, layer, int(valid[name].sum()))
    return ItemGraphs(layer, standardize, index, score, valid)


def write_graph(path: Path, interactions: Interactions, graphs: ItemGraphs, item_ids: list[str]) -> None:
    """One HDF5 file: interactions, the normalised adjacency and the kNN graphs (atomically)."""
    adjacency = normalized_adjacency(interactions.user, interactions.item, interactions.n_users,
                                     interactions.n_items)
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as file:
        file.attrs.update(n_users=interactions.n_users, n_items=interactions.n_items, layer=graphs.layer,
                          standardized=graphs.standardized,
                          modalities="".join(letter for letter, name in MODALITY_LETTERS.items()
                                             if name in graphs.index))
        file["item_id"] = np.array(item_ids, dtype=h5py.string_dtype())
        file["user_index"] = interactions.user_index.numpy()
        file["interactions/user"] = interactions.user.numpy()
        file["interactions/item"] = interactions.item.numpy()
        file["adjacency/index"] = adjacency.indices().numpy()
        file["adjacency/value"] = adjacency.values().numpy()
        for name in graphs.index:
            file[f"knn/{name}/index"] = graphs.index[name].numpy()
            file[f"knn/{name}/score"] = graphs.score[name].numpy()
            file[f"knn/{name}/valid"] = graphs.valid[name].numpy()


@dataclass(frozen=True)
class StoredGraph:
    """What :func:`read_graph` returns."""

    interactions: Interactions
    adjacency: Tensor  # sparse COO [U + I, U + I]
    item_graphs: ItemGraphs


def read_graph(path: Path, item_ids: list[str] | None = None) -> StoredGraph:
    """Read a file of :func:`write_graph`; ``item_ids`` (items.csv order) must match if given."""
    if not Path(path).is_file():
        raise DataError(f"{path} does not exist; run the graph step (snakemake {path})")
    with h5py.File(path, "r") as file:
        stored_ids = [x.decode() if isinstance(x, bytes) else str(x) for x in file["item_id"][:]]
        if item_ids is not None and stored_ids != list(item_ids):
            raise DataError(f"{path} was built for other items than items.csv; rebuild it")
        n_users, n_items = int(file.attrs["n_users"]), int(file.attrs["n_items"])
        interactions = Interactions(n_users, n_items, torch.from_numpy(file["user_index"][:]),
                                    torch.from_numpy(file["interactions/user"][:]),
                                    torch.from_numpy(file["interactions/item"][:]))
        n = n_users + n_items
        adjacency = coo(torch.from_numpy(file["adjacency/index"][:]), torch.from_numpy(file["adjacency/value"][:]),
                        (n, n), check=True)
        names = list(file["knn"]) if "knn" in file else []
        graphs = ItemGraphs(
            layer=int(file.attrs["layer"]),
            standardized=bool(file.attrs["standardized"]),
            index={m: torch.from_numpy(file[f"knn/{m}/index"][:]) for m in names},
            score={m: torch.from_numpy(file[f"knn/{m}/score"][:]) for m in names},
            valid={m: torch.from_numpy(file[f"knn/{m}/valid"][:]) for m in names},
        )
    return StoredGraph(interactions, adjacency, graphs)


def build_graph(data_dir: Path, features_dir: Path, out: Path, modalities: str = "TIVA", layer: int = -1,
                k: int = DEFAULT_K, max_len: int = DEFAULT_MAX_LEN, block: int = DEFAULT_BLOCK,
                standardize: bool = False) -> StoredGraph:
    """Build and write ``out`` for the dataset in ``data_dir`` / ``features_dir``."""
    data = load_sequences(Path(data_dir), max_len)
    interactions = training_interactions(data)
    graphs = build_item_graphs(Path(features_dir), modality_letters(modalities), data.item_ids, layer, k, block,
                               standardize)
    write_graph(Path(out), interactions, graphs, data.item_ids)
    log.info("graph: %d users, %d items, %d training pairs -> %s", interactions.n_users,
             interactions.n_items, len(interactions.user), out)
    return read_graph(Path(out), data.item_ids)


def run_cli(args: argparse.Namespace) -> int:
    """Run ``crossan graph`` (:mod:`crossan.commands.graph`); returns the exit status."""
    build_graph(args.data, args.features, args.out, args.modalities, args.layer, args.k, args.max_len, args.block,
                args.standardize_states)
    return 0
