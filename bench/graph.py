"""Seconds per training epoch of the six graph recommenders (Table 8), side by side in one run.

Two shapes: the demo's (1,000 users, 400 items, ~5,500 training pairs, 32-d states) and
MicroLens-100K's (100,000 users, 19,738 items, ~600,000 training pairs, 768-d states), both
with four modalities and k=10 kNN graphs on random data. An epoch is ``ceil(pairs / 2048)``
batches; each model is timed on ``--steps`` batches (forward, loss, backward, Adam step) after
one warm-up batch, and the epoch time is extrapolated from their mean. Full-ranking scoring is
timed once (``forward`` in eval mode).

    python bench/graph.py                       # both shapes, every model, CPU
    python bench/graph.py --shape microlens-100k --device cuda --steps 20
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from crossan.graph_file.build import knn_neighbours, normalized_adjacency
from crossan.models.graph.base import GraphData
from crossan.models.graph.registry import graph_model
from crossan.runs.vocabulary import GRAPH_METHODS
from crossan.train.graph import NegativeSampler
from crossan.runs.vocabulary import MODALITIES

SHAPES: dict[str, dict[str, int]] = {
    "demo": {"users": 1000, "items": 400, "pairs": 5500, "dim": 32},
    "microlens-100k": {"users": 100_000, "items": 19_738, "pairs": 600_000, "dim": 768},
}
BATCH = 2048


def random_graph(shape: dict[str, int], device: torch.device, seed: int = 0) -> GraphData:
    """A random graph of ``shape`` (pairs drawn uniformly, duplicates removed)."""
    generator = torch.Generator().manual_seed(seed)
    users, items = shape["users"], shape["items"]
    keys = torch.unique(torch.randint(users * items, (shape["pairs"],), generator=generator))
    user, item = keys // items, keys % items
    features, has_feature, index, score = {}, {}, {}, {}
    for name in MODALITIES:
        features[name] = torch.randn(items, shape["dim"], generator=generator)
        has_feature[name] = torch.ones(items, dtype=torch.bool)
        index[name], score[name] = knn_neighbours(features[name], has_feature[name], 10)
    return GraphData(users, items, user, item, normalized_adjacency(user, item, users, items),
                     features, has_feature, index, score).to(device)


def time_model(method: str, graph: GraphData, steps: int, device: torch.device) -> tuple[float, float]:
    """``(seconds per epoch, seconds to score every item for every user)``."""
    config_type, model_type = graph_model(method)
    torch.manual_seed(0)
    model = model_type(graph, config_type()).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    sampler = NegativeSampler(graph)
    generator = torch.Generator().manual_seed(0)
    model.train()
    model.start_epoch(generator)
    seconds = []
    for step in range(steps + 1):
        index = torch.randint(len(graph.user), (BATCH,), generator=generator)
        users, positives = graph.user.cpu()[index], graph.item.cpu()[index]
        negatives = sampler(users, generator)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        loss = model.loss(users.to(device), positives.to(device), negatives.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step:  # the first batch warms up
            seconds.append(time.perf_counter() - started)
    model.eval()
    started = time.perf_counter()
    with torch.inference_mode():
        model()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    score_seconds = time.perf_counter() - started
    batches = math.ceil(len(graph.user) / BATCH)
    return sum(seconds) / len(seconds) * batches, score_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=(*SHAPES, "both"), default="both")
    parser.add_argument("--models", nargs="+", choices=GRAPH_METHODS, default=list(GRAPH_METHODS))
    parser.add_argument("--steps", type=int, default=3, help="timed batches per model (after one warm-up)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    shapes = list(SHAPES) if args.shape == "both" else [args.shape]
    print(f"device {device}, {torch.get_num_threads()} CPU threads, {args.steps} timed batches of {BATCH} pairs")
    for name in shapes:
        started = time.perf_counter()
        graph = random_graph(SHAPES[name], device)
        print(f"\n{name}: {graph.n_users:,} users, {graph.n_items:,} items, {len(graph.user):,} pairs, "
              f"4 x {SHAPES[name]['dim']}-d (graph built in {time.perf_counter() - started:.1f} s)")
        print(f"{'model':<8} {'s/epoch':>10} {'score all':>10}  ratio to the fastest")
        results = {method: time_model(method, graph, args.steps, device) for method in args.models}
        fastest = min(epoch for epoch, _ in results.values())
        for method, (epoch, score) in results.items():
            print(f"{method:<8} {epoch:>10.2f} {score:>10.2f}  {epoch / fastest:.1f}x")


if __name__ == "__main__":
    main()
