"""Benchmark: the per-unit costs behind ``crossan cost`` (:mod:`crossan.runs.cost`), measured here.

Every constant of :data:`crossan.runs.cost.CONSTANTS` comes from one part of this script, on
synthetic data of a moderate size, with the real code of each stage on one CPU thread (as the
workflow's training jobs) unless said otherwise:

* ``cached``: ``crossan train`` itself, as a subprocess, exactly as the workflow launches a run
  (``--run NAME --training JSON --threads 1``), for 3 epochs (``max_epochs: 3``) on a dataset
  written by the real data step (``write_sequences``: MicroLens-like sequences, mean kept length
  about 7.2, every item used) with random 768-d x 7-layer cached states. Per epoch
  (``train_log.csv``, the median of epochs 2-3) and per run (the process's CPU time): ID-SASRec
  gives the sequence encoder's cost per training user and the full ranking's cost per
  (user, item) pair; CROSSAN T at two adapter sizes gives a tower's cost per user and per
  evaluated item, linear in the tower's multiply-adds; CROSSAN T+I and IISAN-E T (two towers
  each) are predicted from those and measured, as a check. ``--rounds`` rotations of the order.
* ``graph``: the six graph recommenders' training step (loss, backward, Adam, with the real
  negative sampler; as ``bench/graph.py``) and their scoring forward on random graphs of six
  shapes (users, items, modalities: :data:`GRAPH_SHAPES`); per model, the seconds per batch are
  fitted as ``a * pairs + b * items + M * (c * pairs + d * items) + M (M - 1) / 2 * e * items``
  (M modalities; the last term: contrast between every two modalities, MHCR's; least squares on
  relative errors, no negative coefficient), the scoring forward as a multiple of a batch.
  Pairs per user 5.2 (MicroLens-100K: 7.19 interactions per user, less validation and test).
* ``e2e``: ``bench/e2e.py``'s training step of FFT, Adapter and LoRA (random BERT-base +
  ViT-B/16, 224 px, 8 distinct items per step, one thread): seconds per item trained.
* ``media``: the sampler's per-item path (``crossan.media.workers.sample_item`` plus the JPEG
  encoding the store does) on synthetic 640x360 H.264/AAC clips of 8 s and 640x640 covers.

``--calibrate`` also measures IISAN-E T h=1024 (``crossan train``) and MMGCN T (the first grid
point) at the shape of issue 28's own dataset, 10,000 users and 20,618 items, text only, and
prints what the model predicts for them, so the issue's wall times (37 min and 33.5 min on a
2-core CPU) give the epochs those runs took.

Feature extraction's per-item costs are ``bench/extract.py``'s (README, "Frozen encoders");
the tiny demo encoders' are the demo build's Snakemake benchmarks
(``results/demo/benchmarks/extract_*.tsv``, ``cpu_time`` over 400 items) and its fft, adapter
and lora runs (``train_log.csv``), read from ``--demo`` when present.

    python bench/cost.py --calibrate --json /tmp/cost.json   # everything, about 50 min on 2 cores
    python bench/cost.py --families cached --rounds 3
    python bench/cost.py --families graph --graph-shapes 4000x8000x4 --merge /tmp/cost.json

Everything is CPU time (what the estimate counts), so other load on the machine inflates it
less than wall time: ``crossan train``'s per-epoch wall seconds are scaled by its process's CPU /
wall ratio, the graph steps and media items are timed with ``time.process_time``. Contention
for caches and memory bandwidth still shows: compare the rounds (printed).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import importlib
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
STATE_LAYERS, STATE_DIM = 7, 768  # cached states: the paper's 7 kept layers of 768-d
PAIRS_PER_USER = 5.2  # MicroLens-100K: 7.19 interactions per user, less validation and test
ISSUE_SHAPE = {"users": 10_000, "items": 20_618}  # issue 28's own dataset, text only
FAMILIES = ("cached", "graph", "e2e", "media")


# ====================================================================== synthetic data


def write_pairs(path: Path, users: int, items: int, seed: int, mean_length: float = 7.5) -> None:
    """``pairs.csv`` of ``users`` users with at least 5 interactions each (mean ``mean_length``
    before the 13-item truncation, about 7.2 after), over exactly ``items`` items: every item
    once, the rest drawn with a popularity skew (weight ``rank ** -0.7``)."""
    rng = np.random.default_rng(seed)
    lengths = 4 + rng.geometric(1.0 / (mean_length - 4.0), users)
    total = int(lengths.sum())
    if total < items:
        raise ValueError(f"{users} users x {mean_length} interactions cannot use {items} items")
    weights = np.arange(1, items + 1, dtype=np.float64) ** -0.7
    drawn = rng.choice(items, total - items, p=weights / weights.sum())
    sequence = np.concatenate([rng.permutation(items), drawn])
    sequence = sequence[rng.permutation(total)]
    with path.open("w", encoding="utf-8") as handle:
        handle.write("user,item,timestamp\n")
        start = 0
        for user, length in enumerate(lengths):
            for position, item in enumerate(sequence[start:start + length]):
                handle.write(f"u{user},i{item},{position}\n")
            start += length


def write_features(path: Path, item_ids: list[str], seed: int) -> None:
    """A whole-dataset feature file (:mod:`crossan.encoders.store`'s layout) of random states."""
    import h5py

    rng = np.random.default_rng(seed)
    features = rng.standard_normal((len(item_ids) + 1, STATE_LAYERS, STATE_DIM), dtype=np.float32)
    features[0] = 0
    valid = np.ones(len(item_ids) + 1, dtype=bool)
    valid[0] = False
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as file:
        file.create_dataset("features", data=features.astype(np.float16))
        file.create_dataset("valid", data=valid)
        file.create_dataset("item_id", data=np.array(["", *item_ids], dtype=object),
                            dtype=h5py.string_dtype("utf-8"))
        for key, value in {"config_hash": "bench", "first_row": 1, "total_items": len(item_ids),
                           "layers": list(range(STATE_LAYERS))}.items():
            file.attrs[key] = value


def synthetic_dataset(root: Path, users: int, items: int, modalities: str, seed: int = 0) -> dict[str, Any]:
    """``root/data`` (the real data step's files) and ``root/features`` (random states of
    ``modalities``); returns ``stats.json``."""
    from crossan.data.readers import read_item_ids
    from crossan.data.sequences import write_item_titles, write_sequences
    from crossan.runs.vocabulary import MODALITY_LETTERS

    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    write_pairs(root / "pairs.csv", users, items, seed)
    write_sequences(root / "pairs.csv", data)
    write_item_titles(data / "item_ids.csv", None, data / "items.csv")
    ids = [str(item) for item in read_item_ids(data / "item_ids.csv")]
    for offset, letter in enumerate(modalities):
        write_features(root / "features" / f"{MODALITY_LETTERS[letter]}.h5", ids, seed + offset)
    return json.loads((data / "stats.json").read_text())


# ====================================================================== cached-state runs


def children_cpu() -> float:
    """CPU seconds (user + system) of every finished child process so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_crossan_train(root: Path, method: str, modalities: str, hidden: int, epochs: int) -> dict[str, float]:
    """One ``crossan train`` process on ``root``'s dataset: ``{"wall", "cpu", "train", "eval"}``
    seconds; ``cpu`` is the process's CPU time, and the per-epoch ``train`` and ``eval`` (the
    median of the epochs after the first) are ``train_log.csv``'s wall seconds times the process's
    CPU / wall ratio, so that other load on the machine does not count (CPU seconds, as the
    estimate)."""
    from crossan.runs.identity import run_name
    from crossan.runs.run_config import RunConfig
    from crossan.runs.specs import method_training

    config = {"training": {"max_epochs": epochs, "patience": epochs + 1}, "catalog": {"bench": {}}}
    training = method_training(config, "bench", method)
    topk = 1 if len(modalities) == 1 else 2
    run = RunConfig(data_dir=str(root / "data"), features_dir="", out_dir="", dataset="bench", method=method,
                    modalities=modalities, hidden=hidden, topk=topk, max_epochs=epochs, patience=epochs + 1)
    name = run_name(run)
    out = root / "runs" / name
    command = [sys.executable, "-m", "crossan.cli", "train", "--run", name, "--training", json.dumps(training),
               "--data", str(root / "data"), "--out", str(out), "--threads", "1"]
    if run.uses_content:
        command += ["--features", str(root / "features")]
    for attempt in (1, 2):  # a shared machine may kill a process: once more, then give up
        subprocess.run(["rm", "-rf", str(out)], check=True)
        started, cpu_before = time.perf_counter(), children_cpu()
        done = subprocess.run(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall, cpu = time.perf_counter() - started, children_cpu() - cpu_before
        if done.returncode == 0:
            break
        print(f"  {name} failed (exit {done.returncode}, attempt {attempt}):\n{done.stderr[-2000:]}", flush=True)
    else:
        raise RuntimeError(f"crossan train --run {name} failed twice")
    with (out / "train_log.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    later = rows[1:] or rows
    ratio = cpu / wall
    result = {"wall": wall, "cpu": cpu, "train": statistics.median(float(r["train_seconds"]) for r in later) * ratio,
              "eval": statistics.median(float(r["eval_seconds"]) for r in later) * ratio, "epochs": len(rows)}
    subprocess.run(["rm", "-rf", str(out)], check=True)
    return result


CACHED_CONFIGS: tuple[tuple[str, str, int], ...] = (
    ("id-sasrec", "T", 512), ("crossan", "T", 64), ("crossan", "T", 1024),
    ("crossan", "TI", 512), ("iisan-e", "T", 1024),
)


def measure_cached(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Every :data:`CACHED_CONFIGS` run, ``args.rounds`` rotations; medians per configuration."""
    stats = synthetic_dataset(folder / "cached", args.users, args.items, "TI")
    print(f"cached: {stats['users']:,} users, {stats['items']:,} items, mean kept length "
          f"{stats['mean_sequence_length']}", flush=True)
    results: dict[str, list[dict[str, float]]] = {key(c): [] for c in CACHED_CONFIGS}
    for round_ in range(args.rounds):
        shift = round_ % len(CACHED_CONFIGS)
        for config in CACHED_CONFIGS[shift:] + CACHED_CONFIGS[:shift]:
            measured = run_crossan_train(folder / "cached", *config, epochs=3)
            results[key(config)].append(measured)
            print(f"  round {round_ + 1} {key(config):22s} train {measured['train']:7.2f} s  eval "
                  f"{measured['eval']:6.2f} s  process {measured['cpu']:7.1f} s CPU in {measured['wall']:7.1f} s",
                  flush=True)
    medians = {name: {field: statistics.median(r[field] for r in runs) for field in runs[0]}
               for name, runs in results.items()}
    return {"stats": stats, "runs": results, "medians": medians}


def key(config: tuple[str, str, int]) -> str:
    method, modalities, hidden = config
    return f"{method} {modalities} h{hidden}" if method != "id-sasrec" else "id-sasrec"


def tower_work(hidden: int, dim: int = STATE_DIM, layers: int = STATE_LAYERS) -> float:
    """:func:`crossan.runs.cost.tower_work` (imported lazily: the same formula)."""
    from crossan.runs.cost import tower_work as work

    return work(hidden, dim, layers)


def fit_cached(measured: dict[str, Any]) -> dict[str, float]:
    """The cached-state constants from the ID-SASRec and the two CROSSAN T runs."""
    m, stats = measured["medians"], measured["stats"]
    users, items = stats["users"], stats["items"]
    ppu = stats["mean_sequence_length"] - 2
    sasrec = m["id-sasrec"]
    seq_user = sasrec["train"] / users
    rank_pair = sasrec["eval"] / (users * items)
    small, large = m["crossan T h64"], m["crossan T h1024"]
    w_small, w_large = tower_work(64), tower_work(1024)
    per_user = [(r["train"] / users - seq_user) / ppu for r in (small, large)]  # per tower per training pair
    per_item = [(r["eval"] - rank_pair * users * items) / items for r in (small, large)]
    user_mac = max((per_user[1] - per_user[0]) / (w_large - w_small), 0.0)
    item_mac = max((per_item[1] - per_item[0]) / (w_large - w_small), 0.0)
    overheads = [r["cpu"] - r["epochs"] * (r["train"] + r["eval"]) - 2 * r["eval"] for r in m.values()]
    return {
        "seq_user_s": seq_user,
        "rank_pair_s": rank_pair,
        "tower_pair_s": max(per_user[0] - user_mac * w_small, 0.0),
        "tower_pair_mac_s": user_mac,
        "tower_item_s": max(per_item[0] - item_mac * w_small, 0.0),
        "tower_item_mac_s": item_mac,
        "run_start_s": statistics.median(overheads),
        "bench_pairs_per_user": ppu,
    }


# ====================================================================== graph recommenders


# (users, items, modalities): around the one, then each doubled, then a larger four-modality one
GRAPH_SHAPES: tuple[tuple[int, int, int], ...] = ((4000, 8000, 1), (8000, 8000, 1), (4000, 16000, 1), (4000, 8000, 2),
                                                  (4000, 8000, 4), (20000, 16000, 4))


def random_graph(users: int, items: int, modalities: int, seed: int = 0):
    """A :class:`~crossan.models.graph.base.GraphData` with about ``PAIRS_PER_USER * users``
    distinct pairs (uniform) and ``modalities`` 768-d contents with k=10 kNN graphs."""
    import torch

    from crossan.graph_file.build import knn_neighbours, normalized_adjacency
    from crossan.models.graph.base import GraphData
    from crossan.runs.vocabulary import MODALITIES

    generator = torch.Generator().manual_seed(seed)
    keys = torch.unique(torch.randint(users * items, (int(PAIRS_PER_USER * users),), generator=generator))
    user, item = keys // items, keys % items
    features, has_feature, index, score = {}, {}, {}, {}
    for name in MODALITIES[:modalities]:
        features[name] = torch.randn(items, STATE_DIM, generator=generator)
        has_feature[name] = torch.ones(items, dtype=torch.bool)
        index[name], score[name] = knn_neighbours(features[name], has_feature[name], 10)
    return GraphData(users, items, user, item, normalized_adjacency(user, item, users, items),
                     features, has_feature, index, score)


def time_graph_model(method: str, graph: Any, steps: int, batch: int = 2048) -> dict[str, float]:
    """``{"batch", "forward"}``: median CPU seconds of a training batch (after a warm-up) and of
    the full scoring forward (eval mode), on one thread."""
    import torch

    from crossan.models.graph.registry import graph_model
    from crossan.train.graph import NegativeSampler

    config_type, model_type = graph_model(method)
    torch.manual_seed(0)
    model = model_type(graph, config_type())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    sampler = NegativeSampler(graph)
    generator = torch.Generator().manual_seed(0)
    model.train()
    model.start_epoch(generator)
    seconds = []
    for step in range(steps + 1):
        index = torch.randint(len(graph.user), (batch,), generator=generator)
        users, positives = graph.user[index], graph.item[index]
        started = time.process_time()
        negatives = sampler(users, generator)
        loss = model.loss(users, positives, negatives)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step:
            seconds.append(time.process_time() - started)
    model.eval()
    started = time.process_time()
    with torch.inference_mode():
        model()
    return {"batch": statistics.median(seconds), "forward": time.process_time() - started}


def measure_graph(args: argparse.Namespace) -> dict[str, Any]:
    """Every graph model at every :data:`GRAPH_SHAPES` shape (``args.rounds`` rounds)."""
    import torch

    from crossan.runs.vocabulary import GRAPH_METHODS

    torch.set_num_threads(1)
    results: dict[str, dict[str, list[dict[str, float]]]] = {m: {} for m in GRAPH_METHODS}
    knn: list[dict[str, float]] = []
    shapes = [tuple(int(x) for x in shape.split("x")) for shape in args.graph_shapes] if args.graph_shapes \
        else GRAPH_SHAPES
    for users, items, modalities in shapes:
        started = time.perf_counter()
        graph = random_graph(users, items, modalities)
        knn.append({"items": items, "modalities": modalities, "seconds": time.perf_counter() - started})
        shape = f"{users}x{items}x{modalities}"
        print(f"graph {shape}: {len(graph.user):,} pairs (built in {knn[-1]['seconds']:.1f} s)", flush=True)
        for round_ in range(args.rounds):
            order = GRAPH_METHODS if round_ % 2 == 0 else GRAPH_METHODS[::-1]
            for method in order:
                measured = time_graph_model(method, graph, args.graph_steps)
                measured["pairs"] = float(len(graph.user))
                results[method].setdefault(shape, []).append(measured)
                print(f"  round {round_ + 1} {method:8s} {measured['batch']:.3f} s/batch  forward "
                      f"{measured['forward']:.3f} s", flush=True)
    return {"runs": results, "knn": knn}


def fit_graph(measured: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per model: the batch coefficients (non-negative least squares) and the forward ratio."""
    from scipy.optimize import nnls

    fitted = {}
    for method, shapes in measured["runs"].items():
        rows, seconds, ratios = [], [], []
        for shape, runs in shapes.items():
            users, items, modalities = (int(x) for x in shape.split("x"))
            pairs = statistics.median(r["pairs"] for r in runs)
            batch = statistics.median(r["batch"] for r in runs)
            modality_pairs = modalities * (modalities - 1) / 2
            rows.append([pairs, items, modalities * pairs, modalities * items, modality_pairs * items])
            seconds.append(batch)
            ratios.append(statistics.median(r["forward"] / r["batch"] for r in runs))
        # relative least squares: every shape weighs the same whatever its size
        matrix = np.array(rows) / np.array(seconds)[:, None]
        coefficients, _ = nnls(matrix, np.ones(len(seconds)))
        fitted[method] = {"pair_s": coefficients[0], "item_s": coefficients[1], "modality_pair_s": coefficients[2],
                          "modality_item_s": coefficients[3], "modality_pairs_item_s": coefficients[4],
                          "forward_batches": statistics.median(ratios)}
    return fitted


def knn_constant(measured: dict[str, Any]) -> float:
    """Seconds per item^2 per modality of the graph file's kNN (with 768-d states), from the
    largest shape (random GraphData building is kNN-dominated)."""
    largest = max(measured["knn"], key=lambda r: r["items"] ** 2 * r["modalities"])
    return largest["seconds"] / (largest["items"] ** 2 * largest["modalities"])


# ====================================================================== end-to-end baselines


def measure_e2e(args: argparse.Namespace) -> dict[str, float]:
    """``bench/e2e.py``'s step of FFT, Adapter, LoRA (8 items per step, one thread): seconds per item."""
    sys.path.insert(0, str(REPO / "bench"))  # a spawned child imports the module by this name
    module = importlib.import_module("e2e")
    options = argparse.Namespace(items_per_step=8, users=64, text_tokens=30, hidden=512, modalities="TI", steps=2,
                                 warmup=1, repeats=1, device="cpu", threads=1, mixed_precision=True,
                                 gradient_checkpointing=False)
    per_item = {}
    for method in module.END_TO_END:
        started, cpu_before = time.perf_counter(), children_cpu()
        measured = module.run_isolated(method, options)
        ratio = (children_cpu() - cpu_before) / (time.perf_counter() - started)  # the child's CPU / wall
        per_item[method] = measured.seconds * ratio / options.items_per_step
        print(f"e2e {method:8s} {measured.seconds:.2f} s per step of 8 items (x {ratio:.2f} CPU / wall)", flush=True)
    return per_item


# ====================================================================== media sampling


def measure_media(folder: Path, count: int = 6) -> dict[str, float]:
    """CPU seconds per item of each modality's sampling path (decode + JPEG encode as stored)."""
    from PIL import Image

    from crossan.media import store
    from crossan.media.encode import write_mp4
    from crossan.media.spec import MediaSpec
    from crossan.media.workers import Item, sample_item

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for index in range(count):
        base = rng.integers(0, 255, (1, 360, 640, 3), dtype=np.uint8)
        frames = np.concatenate([np.roll(base, shift * 4, axis=2) for shift in range(200)])  # 8 s at 25 fps
        sound = (0.3 * np.sin(np.linspace(0, 2000, 8 * 22050))).astype(np.float32)
        video = folder / f"{index}.mp4"
        write_mp4(video, frames, 25, sound)
        cover = folder / f"{index}.jpg"
        Image.fromarray(rng.integers(0, 255, (640, 640, 3), dtype=np.uint8)).save(cover, quality=90)
        items.append(Item(index + 1, str(index), str(video), str(cover)))
    spec = MediaSpec()
    per_item = {}
    for modality in ("video", "audio", "image"):
        seconds = []
        for item in items:
            started = time.process_time()
            fields, reason = sample_item(modality, item, spec)
            assert not reason, reason
            if modality in ("video", "image"):
                pixels = fields["frames"] if modality == "video" else fields["pixels"][None]
                store.encode_jpeg(pixels, spec.jpeg_quality)
            seconds.append(time.process_time() - started)
        per_item[modality] = statistics.median(seconds[1:])
        print(f"media {modality:6s} {per_item[modality] * 1000:.1f} ms per item", flush=True)
    return per_item


# ====================================================================== calibration


def calibrate(args: argparse.Namespace, folder: Path, constants: dict[str, Any]) -> dict[str, Any]:
    """IISAN-E T h=1024 and MMGCN T at the issue's shape: measured and predicted per epoch."""
    import torch

    from crossan.runs import cost

    root = folder / "issue"
    stats = synthetic_dataset(root, ISSUE_SHAPE["users"], ISSUE_SHAPE["items"], "T")
    size = cost.DatasetSize(users=stats["users"], items=stats["items"],
                            pairs_per_user=stats["mean_sequence_length"] - 2, source="bench")
    table = {**cost.CONSTANTS, **constants}  # the constants just measured, the table's for the rest
    measured = run_crossan_train(root, "iisan-e", "T", 1024, epochs=3)
    predicted = cost.cached_epoch_seconds("iisan-e", "T", 1024, size, cost.ENCODER_FULL, table)
    report: dict[str, Any] = {"iisan-e": {"measured": measured, "predicted_epoch": predicted}}
    print(f"calibration iisan-e T h1024 at {size.users:,} x {size.items:,}: measured {measured['train']:.1f} + "
          f"{measured['eval']:.1f} s per epoch, model {predicted:.1f} s; issue: 37 min = "
          f"{(37 * 60 - table['run_start_s']) / (measured['train'] + measured['eval']):.1f} epochs", flush=True)
    torch.set_num_threads(1)
    graph = random_graph(size.users, size.items, 1)
    timed = time_graph_model("mmgcn", graph, args.graph_steps)
    batches = math.ceil(len(graph.user) / 2048)
    epoch = (batches + timed["forward"] / timed["batch"]) * timed["batch"] + \
        table["rank_pair_s"] * size.users * size.items
    predicted = cost.graph_epoch_seconds("mmgcn", 1, size, table=table)
    report["mmgcn"] = {"measured": timed, "measured_epoch": epoch, "predicted_epoch": predicted}
    print(f"calibration mmgcn T at {size.users:,} x {size.items:,}: measured {epoch:.1f} s per epoch "
          f"({timed['batch']:.3f} s x {batches} batches + scoring), model {predicted:.1f} s; issue: 33.5 min = "
          f"{33.5 * 60 / epoch:.0f} epochs", flush=True)
    return report


# ====================================================================== main


def demo_extraction(folder: Path) -> dict[str, float]:
    """CPU seconds per item of the tiny demo encoders: the demo build's extraction benchmarks."""
    per_item = {}
    for modality in ("text", "image", "video", "audio"):
        path = folder / "benchmarks" / f"extract_{modality}_0-of-1.tsv"
        if path.is_file():
            row = list(csv.DictReader(path.open(encoding="utf-8"), delimiter="\t"))[-1]
            per_item[modality] = float(row["cpu_time"]) / 400
    return per_item


def demo_e2e(folder: Path, rank_pair_s: float) -> dict[str, float]:
    """Seconds per item of the tiny encoders in the loop: the demo build's fft, adapter and lora
    runs (``train_log.csv``, median epoch): trained per training window item, evaluated per item."""
    stats = json.loads((folder / "data" / "stats.json").read_text())
    users, items, window = stats["users"], stats["items"], stats["mean_sequence_length"] - 1
    train, evaluate = [], []
    for method in ("fft", "adapter", "lora"):
        for log in sorted(folder.glob(f"runs/*__{method}-*/train_log.csv")):
            rows = list(csv.DictReader(log.open(encoding="utf-8")))
            train.append(statistics.median(float(r["train_seconds"]) for r in rows) / (users * window))
            evaluate.append((statistics.median(float(r["eval_seconds"]) for r in rows)
                             - rank_pair_s * users * items) / items)
    if not train:
        return {}
    return {"tiny_e2e_item_train_s": statistics.median(train),
            "tiny_e2e_item_eval_s": max(statistics.median(evaluate), 0.0)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--users", type=int, default=4000, help="users of the cached-state dataset")
    parser.add_argument("--items", type=int, default=8000, help="items of the cached-state dataset")
    parser.add_argument("--rounds", type=int, default=2, help="rotations of the measuring order")
    parser.add_argument("--graph-steps", type=int, default=3, help="timed batches per graph model and shape")
    parser.add_argument("--calibrate", action="store_true", help="also measure at the issue's shape")
    parser.add_argument("--demo", type=Path, default=REPO / "results" / "demo",
                        help="a demo build's results/demo: its benchmarks and end-to-end runs give the tiny "
                        "encoders' costs")
    parser.add_argument("--json", type=Path, help="write the measurements and the fitted constants here")
    parser.add_argument("--graph-shapes", nargs="+", default=None, metavar="UxIxM",
                        help="graph shapes to measure instead of GRAPH_SHAPES, e.g. 4000x8000x4")
    parser.add_argument("--merge", type=Path, nargs="*", default=[],
                        help="earlier --json files whose graph measurements join this run's before the fit")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    print(f"{datetime.date.today()} {platform.node()} {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, python {platform.python_version()}", flush=True)
    record: dict[str, Any] = {"date": str(datetime.date.today()), "cpus": os.cpu_count()}
    constants: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="crossan-cost-") as tmp:
        folder = Path(tmp)
        if "media" in args.families:
            record["media"] = measure_media(folder / "media")
            constants["media_item_s"] = record["media"]
        if "cached" in args.families:
            record["cached"] = measure_cached(args, folder)
            constants.update(fit_cached(record["cached"]))
        if "graph" in args.families:
            record["graph"] = measure_graph(args)
            for earlier in args.merge:  # shapes measured by another invocation
                graph = json.loads(earlier.read_text())["graph"]
                record["graph"]["knn"] += graph["knn"]
                for method, shapes in graph["runs"].items():
                    for shape, runs in shapes.items():
                        record["graph"]["runs"][method].setdefault(shape, []).extend(runs)
            constants["graph"] = fit_graph(record["graph"])
            constants["knn_item2_s"] = knn_constant(record["graph"])
        if "e2e" in args.families:
            record["e2e"] = measure_e2e(args)
            constants["e2e_item_train_s"] = record["e2e"]
        tiny = demo_extraction(args.demo)
        if tiny:  # the table's full-size figures are bench/extract.py's
            constants["extract_item_s"] = {"tiny": tiny}
        if (args.demo / "data" / "stats.json").is_file():
            from crossan.runs.cost import CONSTANTS

            constants.update(demo_e2e(args.demo, constants.get("rank_pair_s", CONSTANTS["rank_pair_s"])))
        record["constants"] = constants
        print("\nfitted constants (seconds, one thread):")
        print(json.dumps(constants, indent=2, default=float))
        if "cached" in args.families:
            check_cached(record["cached"], constants)
        if args.calibrate:
            record["calibration"] = calibrate(args, folder, constants)
    if args.json:
        args.json.write_text(json.dumps(record, indent=2, default=float) + "\n")
    return 0


def check_cached(measured: dict[str, Any], constants: dict[str, float]) -> None:
    """Predicted vs measured seconds per epoch of every cached configuration (with the fitted
    constants, not the table's)."""
    from crossan.runs import cost

    stats = measured["stats"]
    size = cost.DatasetSize(users=stats["users"], items=stats["items"],
                            pairs_per_user=stats["mean_sequence_length"] - 2, source="bench")
    table = {**cost.CONSTANTS, **constants}
    print("\ncached-state seconds per epoch (train + eval): measured, fitted model")
    for config in CACHED_CONFIGS:
        m = measured["medians"][key(config)]
        method, modalities, hidden = config
        predicted = cost.cached_epoch_seconds(method, modalities, hidden, size, cost.ENCODER_FULL, table)
        seconds = m["train"] + m["eval"]
        print(f"  {key(config):22s} {seconds:8.2f} {predicted:8.2f}  ({predicted / seconds:.2f}x)")


if __name__ == "__main__":
    raise SystemExit(main())
