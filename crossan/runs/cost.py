"""What ``all`` will cost before it starts: CPU-hours per stage, from measured per-unit costs.

:func:`estimate_cost` prices one dataset's plan (every run ``all`` trains: the experiment plan of
:mod:`crossan.results.plan` and the extra ``runs``) in CPU-hours, i.e. core-hours: a job on one
thread for an hour is one CPU-hour, an extraction job on ``features.threads`` threads counts
each. Three stages:

* **media sampling**: per item and sampled modality (video, audio, image): decoding and JPEG
  encoding (``bench/cost.py`` on synthetic 640x360 clips and 640x640 covers; larger sources cost
  more to decode);
* **feature extraction**: per item and encoder, by model size: full-size encoders at
  ``bench/extract.py``'s measured seconds per item (README, "Frozen encoders", 2 threads),
  the demo's tiny encoders at the demo build's (any model under ``resources/models/``, which the
  workflow builds itself, is a tiny one, :func:`crossan.encoders.options.built_model_root`);
* **training**: per run, seconds per epoch times epochs, plus the process's start and final
  evaluation (:func:`run_cost`). Seconds per epoch by family:

  - cached-state side adapters: ``users * (sequence + towers * pairs * tower(h))`` for the
    training pass plus ``items * towers * tower_item(h) + users * items * rank`` for the
    validation ranking, where ``towers`` is the number of adapter towers (CROSSAN, INDSAN and
    CROSSAN-MoDA one per modality, IISAN(-E) one more) and ``tower(h)`` is linear in the tower's
    multiply-adds (:func:`tower_work`: kept layers x 2 x state size x h, plus the head); ID-SASRec
    is the sequence part alone;
  - end-to-end (fft, adapter, lora): each training window item through BERT and ViT, forward
    and backward, then every item forward once for validation;
  - graph recommenders: ``ceil(pairs / graph_batch_size)`` batches, each propagating over the
    whole graph (``a * pairs + b * items + M * (c * pairs + d * items) + M (M - 1) / 2 * e * items``
    seconds for M modalities, per model; the last term, contrast between every two modalities,
    is MHCR's), plus a scoring forward and the ranking; every grid point of
    ``training.graph_grid`` is a full training;
  - popularity: its start and one ranking.

Epochs: ``at most`` is ``max_epochs`` (graph runs: ``graph_max_epochs`` per grid point);
``typical`` assumes early stopping after :data:`TYPICAL_PATIENCES` x ``patience`` epochs (best
epoch then ``patience`` more), which issue 28's measured runs bear out (README, "Your own data").

Dataset size (:func:`dataset_size`): ``results/{dataset}/data/stats.json`` when the data step has
run, else the demo's configured size, else MicroLens' published one (the paper's Table 2), else
unknown: then the training estimate needs ``--users``/``--items`` and only what is known is
printed.

Torch-free: the Snakefile and ``crossan plan`` call it at start (``tests/test_cost.py`` checks
that importing it loads no torch).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from crossan.config import dataset_modalities, encoder_spec
from crossan.encoders.options import built_model_root
from crossan.results.plan import experiment_runs, target_plan
from crossan.runs.identity import run_name
from crossan.runs.run_config import RunConfig
from crossan.runs.settings import training_settings
from crossan.runs.specs import planned_run_names, run_from_name
from crossan.runs.vocabulary import CACHED_STATE, END_TO_END, GRAPH, MODALITY_LETTERS

# ----------------------------------------------------------------------------- measured constants

# CPU seconds on one thread unless said otherwise. Measured by `python bench/cost.py --calibrate`
# (2 rounds; the graph models' six shapes in two invocations, --graph-shapes and --merge) on this
# project's 2-core x86-64 VM (python 3.11, torch CPU, float32), 2026-12-04, with other jobs running
# beside it (load average 3-7): CPU time, not wall time, so that load counts less; medians of 2
# rotations, which differed by up to 10% (MMGCN at the largest shape 30%).
CONSTANTS: Mapping[str, Any] = MappingProxyType({
    # a training process's start, data and states loading, model build and outputs, beyond its
    # epochs and two more evaluations (final valid + test)
    "run_start_s": 4.7,
    # cached-state runs: crossan train on 4,000 users x 8,000 items (5.36 training pairs per
    # user), 768-d x 7 states; ID-SASRec, then CROSSAN T at h = 64 and 1,024 (two unknowns each)
    "seq_user_s": 2.5e-4,          # SASRec + loss + Adam, per training user and epoch
    "rank_pair_s": 1.5e-8,         # full ranking, per (validation user, item)
    "tower_pair_s": 3.9e-5,        # one adapter tower, per training pair: fixed part
    "tower_pair_mac_s": 6.6e-11,   # ... and per multiply-add of the tower (tower_work)
    "tower_item_s": 4.7e-5,        # one tower, per item encoded for validation: fixed part
    "tower_item_mac_s": 2.2e-11,   # ... and per multiply-add
    # graph recommenders: seconds per batch = pair_s * pairs + item_s * items + M * (modality_pair_s
    # * pairs + modality_item_s * items) + M (M - 1) / 2 * modality_pairs_item_s * items, fitted (least
    # squares on relative errors, none negative) to 6 random graphs (bench/cost.py GRAPH_SHAPES:
    # 4,000-20,000 users, 8,000-16,000 items, 1-4 modalities; within 12% of each, MHCR 30%);
    # forward_batches: the scoring forward, in batches
    "graph": MappingProxyType({
        "mmgcn": MappingProxyType({"pair_s": 0.0, "item_s": 8.6e-06, "modality_pair_s": 4.2e-06,
            "modality_item_s": 1.1e-05, "modality_pairs_item_s": 5.3e-06, "forward_batches": 0.37}),
        "grcn": MappingProxyType({"pair_s": 1.2e-06, "item_s": 2.3e-06, "modality_pair_s": 3.8e-06,
            "modality_item_s": 0.0, "modality_pairs_item_s": 0.0, "forward_batches": 0.37}),
        "bm3": MappingProxyType({"pair_s": 0.0, "item_s": 3.7e-06, "modality_pair_s": 0.0,
            "modality_item_s": 3.8e-06, "modality_pairs_item_s": 0.0, "forward_batches": 0.06}),
        "freedom": MappingProxyType({"pair_s": 0.0, "item_s": 5.3e-06, "modality_pair_s": 0.0,
            "modality_item_s": 4.5e-06, "modality_pairs_item_s": 0.0, "forward_batches": 0.12}),
        "mgcn": MappingProxyType({"pair_s": 9.1e-07, "item_s": 9.9e-06, "modality_pair_s": 0.0,
            "modality_item_s": 9.4e-06, "modality_pairs_item_s": 0.0, "forward_batches": 0.22}),
        "mhcr": MappingProxyType({"pair_s": 0.0, "item_s": 0.0, "modality_pair_s": 5.4e-06,
            "modality_item_s": 2.8e-05, "modality_pairs_item_s": 5.8e-05, "forward_batches": 0.14}),
    }),
    "knn_item2_s": 9.7e-8,         # the graph file's kNN, per item^2 and modality (768-d)
    # end-to-end runs, per item through BERT-base + ViT-B/16 and back (bench/e2e.py's step, 8
    # items), and forward only for validation (bench/extract.py's text + image, x 2 threads)
    "e2e_item_train_s": MappingProxyType({"fft": 1.56, "adapter": 1.27, "lora": 1.34}),
    "e2e_item_eval_s": 0.6,
    # the demo's tiny encoders in the loop: the demo build's fft, adapter, lora train logs
    "tiny_e2e_item_train_s": 4.0e-4,
    "tiny_e2e_item_eval_s": 3.8e-4,
    # media sampling, per item: synthetic 640x360 H.264/AAC clips of 8 s, 640x640 JPEG covers
    "media_item_s": MappingProxyType({"video": 0.073, "audio": 0.0079, "image": 0.0070}),
    # feature extraction, CPU seconds per item (wall x the 2 threads it ran on): full-size
    # encoders bench/extract.py (README, "Frozen encoders": 0.011, 0.29, 3.1, 2.5 s wall); tiny ones
    # the demo build's results/demo/benchmarks/extract_*.tsv (cpu_time / 400 items, start included)
    "extract_item_s": MappingProxyType({
        "full": MappingProxyType({"text": 0.022, "image": 0.58, "video": 6.2, "audio": 5.0}),
        "tiny": MappingProxyType({"text": 0.0125, "image": 0.027, "video": 0.021, "audio": 0.040}),
    }),
})
MEASURED_BY = "bench/cost.py, 2-core x86-64 VM, 2026-12-04"
# typical epochs = this many x patience (the best epoch about (k - 1) x patience, then patience
# more). Issue 28's runs at 10,000 users: IISAN-E T h=1,024 took 37 min, 21.5 epochs of the 103 s
# bench/cost.py measures at that shape (4.3 x patience 5); MMGCN's first grid point 33.5 min, 92
# epochs of 21.8 s (4.6 x graph_patience 20). The demo's 40 runs stop after 3.6 x patience (median).
TYPICAL_PATIENCES: Mapping[str, float] = MappingProxyType({"sequential": 4.0, "graph": 5.0})
# training pairs per user when no stats.json says (MicroLens-100K: 7.19 interactions, less 2)
DEFAULT_PAIRS_PER_USER = 5.2
# the paper's Table 2: users, items, interactions
MICROLENS_SIZES: Mapping[str, tuple[int, int, int]] = MappingProxyType({
    "100k": (100_000, 19_738, 719_405), "50k": (50_000, 19_099, 339_511),
})
WARN_HOURS = 1.0  # a typical total above this prints the warning
MEDIA_MODALITIES: tuple[str, ...] = ("video", "audio", "image")


@dataclass(frozen=True)
class EncoderSize:
    """What the cost of an encoder's states depends on: its hidden size, the kept layers, and
    whether it is a tiny demo encoder (:mod:`crossan.encoders.tiny`) or a full-size one."""

    dim: int
    layers: int
    tiny: bool


ENCODER_FULL = EncoderSize(768, 7, False)
TINY_HIDDEN = 32  # crossan.encoders.tiny.TinySpec().hidden_size (not imported: that module loads polars)


@dataclass(frozen=True)
class DatasetSize:
    """Users and items (``None``: unknown), training pairs per user, and where they come from."""

    users: int | None
    items: int | None
    pairs_per_user: float = DEFAULT_PAIRS_PER_USER
    source: str = ""

    @property
    def known(self) -> bool:
        return self.users is not None and self.items is not None


@dataclass(frozen=True)
class RunCost:
    """One run's CPU seconds per epoch, epochs (typical and at most, grid points included) and
    total CPU-hours."""

    name: str
    family: str
    epoch_seconds: float
    typical_epochs: float
    max_epochs: int
    typical_hours: float
    max_hours: float


@dataclass(frozen=True)
class StageCost:
    """A stage's CPU-hours (``None``: unknown, see ``detail``) and what they are made of."""

    stage: str
    typical_hours: float | None
    max_hours: float | None
    detail: str


@dataclass(frozen=True)
class CostEstimate:
    """:func:`estimate_cost`'s answer for one dataset."""

    dataset: str
    size: DatasetSize
    stages: tuple[StageCost, ...]
    runs: tuple[RunCost, ...]
    run_count: int
    notes: tuple[str, ...] = field(default=())
    scope: str = "all"  # what is priced: `all`'s runs, or one target's (table3, figure5, ...)

    @property
    def typical_hours(self) -> float | None:
        """Every stage's typical CPU-hours, ``None`` when one is unknown."""
        values = [stage.typical_hours for stage in self.stages]
        return None if None in values else sum(values)  # type: ignore[arg-type]

    @property
    def max_hours(self) -> float | None:
        values = [stage.max_hours for stage in self.stages]
        return None if None in values else sum(values)  # type: ignore[arg-type]

    def stage(self, name: str) -> StageCost:
        return next(stage for stage in self.stages if stage.stage == name)


# ----------------------------------------------------------------------------- sizes


def _read_stats(path: Path) -> dict[str, Any]:
    """``stats.json`` of the data step, or ``{}`` when it is absent, unfinished or of another
    layout: an estimate must never stop a workflow from starting."""
    try:
        stats = json.loads(path.read_text(encoding="utf-8"))
        return stats if all(key in stats for key in ("users", "items", "mean_sequence_length")) else {}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def dataset_size(config: Mapping[str, Any], dataset: str, users: int | None = None, items: int | None = None,
                 results: Path = Path("results")) -> DatasetSize:
    """The dataset's size: ``users``/``items`` when given, else ``results/{dataset}/data/stats.json``,
    else the demo's configured size, else MicroLens' published one, else unknown (``None``)."""
    entry = config["catalog"][dataset]
    stats_path = Path(results) / dataset / "data" / "stats.json"
    known: tuple[int | None, int | None, float, str] = (None, None, DEFAULT_PAIRS_PER_USER, "")
    if stats := _read_stats(stats_path):
        known = (int(stats["users"]), int(stats["items"]), float(stats["mean_sequence_length"]) - 2, str(stats_path))
    elif entry.get("kind") == "demo":
        known = (int(entry["users"]), int(entry["items"]), DEFAULT_PAIRS_PER_USER, f"catalog.{dataset}")
    elif entry.get("kind") == "microlens" and entry.get("variant") in MICROLENS_SIZES:
        n_users, n_items, interactions = MICROLENS_SIZES[entry["variant"]]
        max_items = int(config.get("sequences", {}).get("max_items", 13))
        known = (n_users, n_items, min(interactions / n_users, max_items) - 2,
                 f"MicroLens-{entry['variant'].upper()}, the paper's Table 2")
    if users is not None or items is not None:
        given = " and ".join(flag for flag, value in (("--users", users), ("--items", items)) if value is not None)
        source = given if users is not None and items is not None else f"{given}, {known[3] or 'nothing else known'}"
        known = (users if users is not None else known[0], items if items is not None else known[1], known[2], source)
    n_users, n_items, pairs, source = known
    max_len = int(training_settings(config, dataset)["max_len"])
    return DatasetSize(n_users, n_items, max(min(pairs, max_len + 1), 1.0), source)


def encoder_size(config: Mapping[str, Any], dataset: str, modality: str) -> EncoderSize:
    """Tiny (a model the workflow builds under ``resources/models/``) or full-size (any other)."""
    spec = encoder_spec(config, dataset, modality)
    layers = len(spec.get("layers") or range(ENCODER_FULL.layers))
    if built_model_root(str(spec["model"])) is not None:
        return EncoderSize(TINY_HIDDEN, layers, True)
    return EncoderSize(ENCODER_FULL.dim, layers, False)


# ----------------------------------------------------------------------------- per-epoch models


def tower_work(hidden: int, dim: int = ENCODER_FULL.dim, layers: int = ENCODER_FULL.layers) -> float:
    """Multiply-adds of one adapter tower per item: a ``dim -> hidden -> dim`` adapter per kept
    layer, and the head ``Linear(dim -> dim)``, ``Linear(dim -> 64)``."""
    return layers * 2.0 * dim * hidden + dim * dim + dim * 64.0


def tower_count(method: str, modalities: str) -> int:
    """Adapter towers a cached-state run trains: one per modality (CROSSAN, INDSAN, CROSSAN-MoDA,
    whose shared tower runs once per modality), plus IISAN(-E)'s inter tower; none for ID-SASRec."""
    if method == "id-sasrec":
        return 0
    return len(modalities) + (1 if method in ("iisan", "iisan-e") else 0)


def cached_epoch_seconds(method: str, modalities: str, hidden: int, size: DatasetSize, encoder: EncoderSize,
                         table: Mapping[str, Any] = CONSTANTS) -> float:
    """Seconds of one epoch (training pass and validation ranking) of a cached-state run."""
    users, items = _known(size)
    towers = tower_count(method, modalities)
    work = tower_work(hidden, encoder.dim, encoder.layers)
    pairs = size.pairs_per_user
    train = users * (table["seq_user_s"] + towers * pairs * (table["tower_pair_s"] + table["tower_pair_mac_s"] * work))
    evaluate = items * towers * (table["tower_item_s"] + table["tower_item_mac_s"] * work)
    return train + evaluate + users * items * table["rank_pair_s"]


def e2e_epoch_seconds(method: str, size: DatasetSize, tiny: bool, table: Mapping[str, Any] = CONSTANTS) -> float:
    """Seconds of one epoch of an end-to-end run: every training window item (its inputs and
    last target) through BERT and ViT and back, every item forward for validation, the ranking."""
    users, items = _known(size)
    train_item = table["tiny_e2e_item_train_s"] if tiny else table["e2e_item_train_s"][method]
    eval_item = table["tiny_e2e_item_eval_s"] if tiny else table["e2e_item_eval_s"]
    return users * (size.pairs_per_user + 1) * train_item + items * eval_item + users * items * table["rank_pair_s"]


def graph_batch_seconds(method: str, modalities: int, size: DatasetSize, table: Mapping[str, Any] = CONSTANTS) -> float:
    """Seconds of one training batch of a graph recommender (it propagates over the whole graph)."""
    users, items = _known(size)
    c = table["graph"][method]
    pairs = users * size.pairs_per_user
    return (c["pair_s"] * pairs + c["item_s"] * items
            + modalities * (c["modality_pair_s"] * pairs + c["modality_item_s"] * items)
            + modalities * (modalities - 1) / 2 * c["modality_pairs_item_s"] * items)


def graph_epoch_seconds(method: str, modalities: int, size: DatasetSize, batch_size: int = 2048,
                        table: Mapping[str, Any] = CONSTANTS) -> float:
    """Seconds of one epoch (every training pair once, then validation) of one grid point."""
    users, items = _known(size)
    batch = graph_batch_seconds(method, modalities, size, table)
    batches = math.ceil(users * size.pairs_per_user / batch_size)
    return (batches + table["graph"][method]["forward_batches"]) * batch + users * items * table["rank_pair_s"]


def _known(size: DatasetSize) -> tuple[int, int]:
    if not size.known:
        raise ValueError("the training estimate needs the dataset's users and items")
    return int(size.users), int(size.items)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- runs


def grid_points(run: RunConfig) -> int:
    """Grid points a graph run trains (the product of ``graph_grid``'s value counts); 1 otherwise."""
    if run.family != GRAPH:
        return 1
    return math.prod(len(values) for values in (run.graph_grid or {}).values())


def run_cost(run: RunConfig, size: DatasetSize, encoders: Mapping[str, EncoderSize],
             table: Mapping[str, Any] = CONSTANTS) -> RunCost:
    """One run's CPU cost: epochs x seconds per epoch (grid points x epochs for a graph run),
    plus its start and the final validation and test evaluation (two more evaluations)."""
    users, items = _known(size)
    ranking = users * items * table["rank_pair_s"]
    name, start = run_name(run), table["run_start_s"]
    if run.family == CACHED_STATE:
        encoder = encoders.get(MODALITY_LETTERS[run.modalities[0]], ENCODER_FULL) if run.modalities else ENCODER_FULL
        epoch = cached_epoch_seconds(run.method, run.modalities, run.hidden, size, encoder, table)
        evaluate = ranking + _cached_item_part(run, size, encoder, table)
        patience, most, kind = run.patience, run.max_epochs, "sequential"
    elif run.family == END_TO_END:
        tiny = encoders.get("text", ENCODER_FULL).tiny and encoders.get("image", ENCODER_FULL).tiny
        epoch = e2e_epoch_seconds(run.method, size, tiny, table)
        evaluate = items * (table["tiny_e2e_item_eval_s"] if tiny else table["e2e_item_eval_s"]) + ranking
        patience, most, kind = run.patience, run.max_epochs, "sequential"
    elif run.family == GRAPH:
        epoch = graph_epoch_seconds(run.method, len(run.modalities), size, run.batch_size, table)
        evaluate = table["graph"][run.method]["forward_batches"] * graph_batch_seconds(
            run.method, len(run.modalities), size, table) + ranking
        patience, most, kind = run.patience, run.max_epochs, "graph"
    else:  # popularity: counts, then ranks validation and test once
        seconds = start + 2 * ranking
        return RunCost(name, run.family, 0.0, 0.0, 0, seconds / 3600, seconds / 3600)
    points = grid_points(run)
    typical = points * min(float(most), TYPICAL_PATIENCES[kind] * patience)
    fixed = start + 2 * evaluate
    return RunCost(name, run.family, epoch, typical, points * most, (fixed + typical * epoch) / 3600,
                   (fixed + points * most * epoch) / 3600)


def _cached_item_part(run: RunConfig, size: DatasetSize, encoder: EncoderSize, table: Mapping[str, Any]) -> float:
    """The towers' validation encoding of every item (part of a cached-state epoch)."""
    work = tower_work(run.hidden, encoder.dim, encoder.layers)
    return int(size.items) * tower_count(run.method, run.modalities) * (  # type: ignore[arg-type]
        table["tower_item_s"] + table["tower_item_mac_s"] * work)


def all_run_names(config: Mapping[str, Any], dataset: str) -> list[str]:
    """Every run ``all`` trains for ``dataset``: the experiment plan's, then the extra ``runs``."""
    return list(dict.fromkeys(experiment_runs(config, dataset) + planned_run_names(config, dataset)))


# ----------------------------------------------------------------------------- the estimate


def estimate_cost(config: Mapping[str, Any], dataset: str, users: int | None = None, items: int | None = None,
                  results: Path = Path("results"), target: str | None = None,
                  table: Mapping[str, Any] = CONSTANTS) -> CostEstimate:
    """CPU-hours per stage (media sampling, feature extraction, training) of ``all`` for
    ``dataset`` of a validated ``config`` (``target``: of that table's or figure's runs only, after
    the same first stages); ``users``/``items`` override what is known of its size
    (:func:`dataset_size`). A stage whose size is unknown has ``None`` hours."""
    size = dataset_size(config, dataset, users, items, results)
    modalities = dataset_modalities(config, dataset)
    encoders = {modality: encoder_size(config, dataset, modality) for modality in modalities}
    names = target_plan(config, dataset, target).runs() if target else all_run_names(config, dataset)
    settings = training_settings(config, dataset)
    runs = [run_from_name(name, settings) for name in names]
    notes: list[str] = []
    stages = [_media_stage(modalities, size, table), _extraction_stage(encoders, size, table)]
    if size.known:
        costs = tuple(run_cost(run, size, encoders, table) for run in runs)
        graph_modalities = len(modalities) if any(run.family == GRAPH for run in runs) else 0
        knn = table["knn_item2_s"] * int(size.items) ** 2 * graph_modalities / 3600  # type: ignore[arg-type]
        typical = sum(cost.typical_hours for cost in costs) + knn
        most = sum(cost.max_hours for cost in costs) + knn
        assumption = (f"typical: {TYPICAL_PATIENCES['sequential']:g} x patience epochs, graph runs "
                      f"{TYPICAL_PATIENCES['graph']:g} x graph_patience per grid point")
        stages.append(StageCost("training", typical, most, f"{len(runs)} runs; {assumption}"))
    else:
        costs = ()
        stages.append(StageCost("training", None, None, f"{len(runs)} runs; needs the dataset's users and items"))
        notes.append(f"the training estimate needs the size of dataset {dataset!r}: run its data step "
                     f"(results/{dataset}/data/stats.json) or pass --users and --items")
    return CostEstimate(dataset, size, tuple(stages), costs, len(runs), tuple(notes), target or "all")


def _media_stage(modalities: tuple[str, ...], size: DatasetSize, table: Mapping[str, Any]) -> StageCost:
    sampled = [m for m in MEDIA_MODALITIES if m in modalities]
    if not sampled:
        return StageCost("media sampling", 0.0, 0.0, "nothing to sample")
    if size.items is None:
        return StageCost("media sampling", None, None, f"{', '.join(sampled)}; needs the number of items")
    seconds = sum(table["media_item_s"][m] for m in sampled)
    hours = size.items * seconds / 3600
    detail = f"{size.items:,} items x {seconds:.3g} s ({', '.join(sampled)})"
    return StageCost("media sampling", hours, hours, detail)


def _extraction_stage(encoders: Mapping[str, EncoderSize], size: DatasetSize, table: Mapping[str, Any]) -> StageCost:
    kinds = {m: "tiny" if e.tiny else "full" for m, e in encoders.items()}
    parts = ", ".join(f"{m} {table['extract_item_s'][kinds[m]][m]:.3g} s ({kinds[m]}-size)" for m in encoders)
    if size.items is None:
        return StageCost("feature extraction", None, None, f"per item: {parts}; needs the number of items")
    hours = size.items * sum(table["extract_item_s"][kinds[m]][m] for m in encoders) / 3600
    return StageCost("feature extraction", hours, hours, f"{size.items:,} items; per item: {parts}")


# ----------------------------------------------------------------------------- the printout


def _hours(value: float | None) -> str:
    if value is None:
        return "unknown"
    if value < 10:
        return f"{value:.2f} h"
    return f"{value:,.0f} h" if value >= 100 else f"{value:.1f} h"


def format_estimate(estimate: CostEstimate, top: int = 3) -> str:
    """A short block: CPU-hours per stage (typical and at most), the run count, the ``top`` most
    expensive runs, and a one-line warning with the way to cut it when the typical total is
    above :data:`WARN_HOURS`."""
    size = estimate.size
    known = (f"{size.users:,} users" if size.users is not None else "users unknown") + ", " + (
        f"{size.items:,} items" if size.items is not None else "items unknown")
    source = size.source or "size unknown"
    lines = [f"cost of `{estimate.scope}` for dataset {estimate.dataset!r} ({known}; {source}) in CPU-hours, "
             f"one core busy for an hour (per-unit costs: {MEASURED_BY}):"]
    for stage in (*estimate.stages, StageCost("total", estimate.typical_hours, estimate.max_hours, "")):
        figure = _hours(stage.typical_hours)
        if None not in (stage.typical_hours, stage.max_hours) and stage.max_hours > stage.typical_hours * 1.001:
            figure += f" typical, at most {_hours(stage.max_hours)}"
        lines.append(f"  {stage.stage:<19} {figure:<34} {stage.detail}".rstrip())
    if estimate.runs:
        ranked = sorted(estimate.runs, key=lambda cost: cost.typical_hours, reverse=True)[:top]
        width = max(len(cost.name) for cost in ranked)
        lines.append(f"{'  most expensive runs':<{width + 5}}{'typical':>9}{'at most':>11}")
        lines += [f"    {cost.name:<{width}} {_hours(cost.typical_hours):>9} {_hours(cost.max_hours):>10}"
                  for cost in ranked]
    lines += [f"  note: {note}" for note in estimate.notes]
    total = estimate.typical_hours
    if total is not None and total > WARN_HOURS:
        lines.append(
            f"  warning: about {_hours(total).removesuffix(' h')} CPU-hours before every result of "
            f"{estimate.dataset!r} is in; to cut it, list only the tables you need in "
            f"catalog.{estimate.dataset}.experiments.targets, "
            f"leave out the sweeps (figure3, figure5) and the end-to-end runs, and shrink training.graph_grid "
            f"(README 'Your own data' has a first-pass experiments block of about an hour)")
    return "\n".join(lines)
