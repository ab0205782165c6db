"""Popularity baseline: every user gets the same ranking, items by training-split popularity.

The score of item ``i`` is its count in the training split
(:func:`~crossan.train.data.item_popularity_counts`: every user's ``train.parquet`` items;
validation and test targets are not counted). Validation and test are ranked with the same
:func:`~crossan.train.metrics.evaluate_full_ranking` as the models (history masked, ties
pessimistic, a target repeated from the history a miss unless ``repeat_targets`` is
``ranked``), by scoring ``ones[U, 1] @ counts[1, n_items + 1]``. Outputs are those of a
trained run (:mod:`crossan.train.trainer`) with no training: ``best_epoch = epochs_run = 0``,
``trainable_parameters = 0``, ``seconds_per_epoch = 0``, an empty ``gates.json``, an
``item_towers.h5`` without towers and a ``train_log.csv`` with only its header.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

import torch

from crossan.train.data import (
    EvalSplit,
    SequenceData,
    item_popularity_counts,
    load_sequences,
)
from crossan.train.metrics import evaluate_full_ranking
from crossan.train.towers import empty_item_towers
from crossan.train.trainer import (
    KS,
    POPULARITY,
    RunConfig,
    RunResult,
    base_metrics,
    peak_memory,
    resolve_device,
    start_run,
    versions,
    write_outputs,
)

log = logging.getLogger(__name__)


def popularity_scores(data: SequenceData) -> torch.Tensor:
    """``[n_items + 1, 1]`` float64 "item embeddings": the training counts (row 0 = 0)."""
    return item_popularity_counts(data).to(torch.float64).unsqueeze(1)


def evaluate_popularity(data: SequenceData, split: EvalSplit, device: torch.device | str = "cpu",
                        repeat_targets: str = "miss"):
    """``(summary, per_user)`` of the popularity ranking on ``split`` (``repeat_targets``:
    see :func:`~crossan.train.metrics.rank_of_targets`)."""
    items = popularity_scores(data).to(device)
    users = torch.ones(len(split), 1, dtype=torch.float64, device=device)
    return evaluate_full_ranking(users, items, split.target, split.full_history, ks=KS,
                                 repeat_targets=repeat_targets)


def run_popularity(run: RunConfig) -> RunResult:
    """The popularity baseline's run: same files as :func:`crossan.train.trainer.fit` writes."""
    if run.method != POPULARITY:
        raise ValueError(f"run_popularity needs method {POPULARITY!r}, got {run.method!r}")
    device = resolve_device(run.device)
    out_dir = start_run(run)
    data = load_sequences(Path(run.data_dir), run.max_len)
    started = time.perf_counter()
    valid, per_user_valid = evaluate_popularity(data, data.valid, device, run.repeat_targets)
    test, per_user_test = evaluate_popularity(data, data.test, device, run.repeat_targets)
    eval_seconds = time.perf_counter() - started
    memory_mib, memory_kind = peak_memory(device)
    metrics = base_metrics(run, data, device) | {
        "valid": valid,
        "test": test,
        "best_epoch": 0,
        "epochs_run": 0,
        "stopped_early": False,
        "trainable_parameters": 0,
        "seconds_per_epoch": 0.0,
        "eval_seconds": eval_seconds,
        "peak_memory_mib": memory_mib,
        "peak_memory_kind": memory_kind,
        "config": asdict(run),
        "versions": versions(),
    }
    write_outputs(out_dir, metrics, [], (data.valid.user_index, per_user_valid),
                  (data.test.user_index, per_user_test), {},
                  empty_item_towers(data.item_ids, metrics["run_name"]), data=data)
    log.info("popularity: valid HR@10 %.4f, test HR@10 %.4f NDCG@10 %.4f -> %s",
             valid["HR@10"], test["HR@10"], test["NDCG@10"], out_dir)
    return RunResult(out_dir, metrics, [], per_user_valid, per_user_test, None)
