"""A run's outputs, the same for every method family: :func:`start_run` opens the folder,
:func:`finish_run` writes everything else, ``metrics.json`` last (the folder's contract:
:mod:`crossan.runs.folder`)."""

from __future__ import annotations

import csv
import io
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import crossan
from crossan.atomic import write_text_atomic
from crossan.data.buckets import bucket_record
from crossan.models.trainable import count_trainable
from crossan.progress import log_progress
from crossan.runs.folder import (
    GATES_FILE,
    LOG_COLUMNS,
    LOG_FILE,
    METRICS_FILE,
    PER_USER_FILES,
    SETTINGS_FILE,
    TOWERS_FILE,
    RunMetrics,
    to_json,
)
from crossan.runs.identity import run_name, settings_record
from crossan.runs.run_config import RunConfig
from crossan.runs.vocabulary import METRIC_NAMES
from crossan.train.devices import peak_memory
from crossan.train.evaluation import Evaluation
from crossan.train.inputs import SequenceData, item_popularity_counts
from crossan.train.metrics import metrics_by_bucket, save_per_user
from crossan.train.towers import ItemTowers, write_item_towers


@dataclass
class RunResult:
    """What a trainer returns: ``metrics`` (the content of ``metrics.json``), the epoch log,
    the per-user vectors and the model at its best checkpoint (eval mode; ``None`` without)."""

    out_dir: Path
    metrics: RunMetrics
    log: list[dict[str, float]]
    per_user_valid: dict[str, np.ndarray]
    per_user_test: dict[str, np.ndarray]
    model: nn.Module | None = field(default=None, repr=False)

    @property
    def valid(self) -> dict[str, float]:
        return self.metrics.valid

    @property
    def test(self) -> dict[str, float]:
        return self.metrics.test

    @property
    def best_epoch(self) -> int:
        return self.metrics.best_epoch


def start_run(run: RunConfig) -> Path:
    """Create the run's folder, remove a previous run's ``metrics.json`` (so its presence keeps
    meaning "complete" while this run overwrites the other files) and write ``settings.json``
    (:func:`~crossan.runs.identity.settings_record`: the settings the name's digest stands
    for). Returns the folder."""
    out_dir = Path(run.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / METRICS_FILE).unlink(missing_ok=True)
    write_text_atomic(out_dir / SETTINGS_FILE, to_json(settings_record(run)))
    return out_dir


def epoch_row(epoch: int, train_loss: float, valid: dict[str, float], train_seconds: float,
              eval_seconds: float) -> dict[str, float]:
    """One ``train_log.csv`` row (:data:`~crossan.runs.folder.LOG_COLUMNS`)."""
    return {"epoch": epoch, "train_loss": train_loss, **{f"valid_{m}": valid[m] for m in METRIC_NAMES},
            "train_seconds": train_seconds, "eval_seconds": eval_seconds}


def epoch_text(row: dict[str, float], max_epochs: int) -> str:
    """The progress line of an epoch from its :func:`epoch_row`: ``epoch 3/50: loss 1.2340,
    valid HR@10 0.1234 NDCG@10 0.0567 (1.2 s + 0.2 s eval)``."""
    return (f"epoch {int(row['epoch'])}/{max_epochs}: loss {row['train_loss']:.4f}, valid HR@10 "
            f"{row['valid_HR@10']:.4f} NDCG@10 {row['valid_NDCG@10']:.4f} "
            f"({row['train_seconds']:.1f} s + {row['eval_seconds']:.1f} s eval)")


def progress_label(name: str) -> str:
    """The label of a run's progress lines (:mod:`crossan.progress`): ``crossan train NAME``."""
    return f"crossan train {name}"


def versions() -> dict[str, str]:
    return {
        "crossan": crossan.__version__,
        "torch": torch.__version__,
        "python": ".".join(map(str, sys.version_info[:3])),
    }


def gates_payload(model: nn.Module | None) -> dict[str, Any]:
    """``gates.json``: ``{"towers": {tower: {"sources": [...], "layers": [0..L-1],
    "values": [[...] per layer]}}}`` from the model's ``gate_values`` and ``gate_sources``;
    ``{}`` without gates.

    Sources: CROSSAN ``["H", "T", "I", ...]`` (own frozen state, then each tower's previous
    adapter output), INDSAN ``["H", "self"]``, IISAN intra towers ``["H", "prev"]`` and its
    inter tower ``["T", "I", ..., "prev"]``. Every row is a convex weight vector except the
    IISAN/IISAN-E inter tower's, whose previous output keeps weight 1 (``inter_tower:
    residual``; its modality weights sum to 1).
    """
    values = model.gate_values() if model is not None else {}
    if not values:
        return {}
    sources = model.gate_sources()
    payload = {}
    for tower, tensor in values.items():
        matrix = tensor.detach().float().cpu()
        payload[tower] = {"sources": list(sources[tower]), "layers": list(range(matrix.shape[0])),
                          "values": matrix.tolist()}
    return {"towers": payload}


def test_by_popularity(data: SequenceData, per_user_test: dict[str, np.ndarray]) -> dict[str, Any]:
    """Test HR@10 / NDCG@10 and users per target-popularity bucket (:mod:`crossan.data.buckets`:
    head and tail each the fewest items holding a third of the training interactions, the
    thresholds ``stats.json`` records), with the buckets' definition: ``{"by",
    "head_min_count", "tail_max_count", "items", "interactions", "empty_buckets", "head":
    {"users", "HR@10", "NDCG@10"}, "torso": {...}, "tail": {...}}`` (a bucket without test
    users: ``users`` 0 and ``None`` metrics)."""
    record, bucket = bucket_record(item_popularity_counts(data).numpy())
    return record | metrics_by_bucket(per_user_test, data.test.target, bucket)


def write_log_csv(path: Path, rows: list[dict[str, float]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(LOG_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({name: row[name] for name in LOG_COLUMNS})
    write_text_atomic(path, buffer.getvalue())


def log_result(result: RunResult) -> None:
    """The one line a finished run logs, a progress line: its best epoch and test metrics."""
    metrics = result.metrics
    log_progress(progress_label(metrics.run_name),
                 f"best epoch {metrics.best_epoch} of {metrics.epochs_run}: valid HR@10 {metrics.valid['HR@10']:.4f}, "
                 f"test HR@10 {metrics.test['HR@10']:.4f} NDCG@10 {metrics.test['NDCG@10']:.4f} -> {result.out_dir}")


def mean_of(rows: list[dict[str, float]], key: str) -> float:
    """The mean of ``key`` over epoch rows (:func:`epoch_row`)."""
    return float(np.mean([row[key] for row in rows]))


def finish_run(
    run: RunConfig,
    data: SequenceData,
    device: torch.device,
    final: dict[str, Evaluation],
    *,
    rows: list[dict[str, float]],
    best_epoch: int,
    towers: ItemTowers,
    model: nn.Module | None = None,
    extra: dict[str, Any] | None = None,
    eval_seconds: float | None = None,
) -> RunResult:
    """Write every output file of a finished run, ``metrics.json`` last, and return them.

    ``final``: the best checkpoint's ``valid`` and ``test`` evaluations. ``rows``: the epoch
    log (:func:`epoch_row`; empty without training, then ``eval_seconds`` is the one
    evaluation's time). ``model``: the best checkpoint, for its trainable parameters and its
    gates (``None``: no model).
    ``towers``: its tower outputs of every item. ``extra``: the family's own
    ``metrics.json`` keys (:attr:`~crossan.runs.folder.RunMetrics.extra`)."""
    out_dir = Path(run.out_dir)
    (valid, per_user_valid), (test, per_user_test) = final["valid"], final["test"]
    memory_mib, memory_kind = peak_memory(device)
    metrics = RunMetrics(
        run_name=run_name(run), dataset=run.dataset, method=run.method, fusion=run.resolved_fusion(),
        device=str(device), n_items=data.n_items,
        n_users={"train": int(data.train.trainable.sum()), "valid": len(data.valid), "test": len(data.test)},
        valid=valid, test=test, best_epoch=best_epoch, epochs_run=len(rows),
        stopped_early=bool(rows) and len(rows) < run.max_epochs,
        trainable_parameters=count_trainable(model) if model is not None else 0,
        seconds_per_epoch=mean_of(rows, "train_seconds") if rows else 0.0,
        eval_seconds=mean_of(rows, "eval_seconds") if rows else float(eval_seconds or 0.0),
        peak_memory_mib=memory_mib, peak_memory_kind=memory_kind, extra=dict(extra or {}),
        config=asdict(run), versions=versions(), test_by_popularity=test_by_popularity(data, per_user_test),
    )
    for split, per_user in (("valid", per_user_valid), ("test", per_user_test)):
        save_per_user(out_dir / PER_USER_FILES[split], getattr(data, split).user_index, per_user)
    write_text_atomic(out_dir / GATES_FILE, to_json(gates_payload(model)))
    write_item_towers(out_dir / TOWERS_FILE, towers)
    write_log_csv(out_dir / LOG_FILE, rows)
    metrics.write(out_dir)
    return RunResult(out_dir, metrics, rows, per_user_valid, per_user_test, model)
