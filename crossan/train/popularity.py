"""Popularity baseline: every user gets the same ranking, items by training-split popularity.

The score of item ``i`` is its count in the training split
(:func:`~crossan.train.inputs.item_popularity_counts`: every user's ``train.parquet`` items;
validation and test targets are not counted). Validation and test are ranked with the same
:func:`~crossan.train.metrics.evaluate_full_ranking` as the models (history masked, ties
pessimistic, a target repeated from the history a miss unless ``repeat_targets`` is
``ranked``), by scoring ``ones[U, 1] @ counts[1, n_items + 1]``. Outputs are those of a
trained run (:mod:`crossan.runs.folder`) with no training: ``best_epoch = epochs_run = 0``,
``trainable_parameters = 0``, ``seconds_per_epoch = 0``, an empty ``gates.json``, an
``item_towers.h5`` without towers and a ``train_log.csv`` with only its header.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from crossan.runs.identity import run_name
from crossan.runs.run_config import RunConfig
from crossan.runs.vocabulary import KS, POPULARITY
from crossan.train.devices import resolve_device
from crossan.train.evaluation import Evaluation
from crossan.train.inputs import EvalSplit, SequenceData, item_popularity_counts, load_sequences
from crossan.train.metrics import REPEAT_TARGETS, evaluate_full_ranking
from crossan.train.outputs import RunResult, finish_run, log_result, start_run
from crossan.train.towers import empty_item_towers

log = logging.getLogger(__name__)


def popularity_scores(data: SequenceData) -> torch.Tensor:
    """``[n_items + 1, 1]`` float64 "item embeddings": the training counts (row 0 = 0)."""
    return item_popularity_counts(data).to(torch.float64).unsqueeze(1)


def evaluate_popularity(data: SequenceData, split: EvalSplit, device: torch.device | str = "cpu",
                        repeat_targets: str = REPEAT_TARGETS[0]) -> Evaluation:
    """``(summary, per_user)`` of the popularity ranking on ``split`` (``repeat_targets``:
    see :func:`~crossan.train.metrics.rank_of_targets`)."""
    items = popularity_scores(data).to(device)
    users = torch.ones(len(split), 1, dtype=torch.float64, device=device)
    return evaluate_full_ranking(users, items, split.target, split.full_history, ks=KS,
                                 repeat_targets=repeat_targets)


def run_popularity(run: RunConfig) -> RunResult:
    """The popularity baseline's run: the same files as a trained run (no epochs, no model)."""
    if run.method != POPULARITY:
        raise ValueError(f"run_popularity needs method {POPULARITY!r}, got {run.method!r}")
    device = resolve_device(run.device)
    start_run(run)
    data = load_sequences(Path(run.data_dir), run.max_len)
    started = time.perf_counter()
    final = {split: evaluate_popularity(data, getattr(data, split), device, run.repeat_targets)
             for split in ("valid", "test")}
    eval_seconds = time.perf_counter() - started
    result = finish_run(run, data, device, final, rows=[], best_epoch=0,
                        towers=empty_item_towers(data.item_ids, run_name(run)), eval_seconds=eval_seconds)
    log_result(result)
    return result
