"""The training loop every sequential model shares (cached-state, ID and end-to-end runs).

Per epoch: :func:`~crossan.train.inputs.train_batches` shuffled by a generator seeded from
``seed``; per batch the item encoder runs only on ``batch.padded_unique_items`` (the batch's
distinct items plus the padding row, which ``lookup`` does not use), the sequence encoder on
the looked-up input embeddings, the in-batch debiased loss with every item of the users'
windows as a candidate (inputs and last target, ``run.negatives``), Adam. After each epoch
the validation HR@10 with full ranking decides early stopping (strict improvement; stop after
``patience`` epochs without one); the best ``state_dict`` is kept in memory and restored at
the end. Epochs are numbered from 1. The caller evaluates the best checkpoint and writes the
run's outputs (:func:`crossan.train.outputs.finish_run`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from crossan.models.trainable import count_trainable
from crossan.progress import Progress, log_progress
from crossan.runs.identity import run_name
from crossan.runs.run_config import RunConfig
from crossan.train.devices import sync_device
from crossan.train.evaluation import ITEM_CHUNK, evaluate_model
from crossan.train.inputs import (
    SequenceData,
    TrainBatch,
    batches_per_epoch,
    item_popularity_counts,
    train_batches,
)
from crossan.train.loss import NEGATIVES, check_finite, debiased_in_batch_loss, log_popularity_from_counts
from crossan.train.outputs import epoch_row, epoch_text, progress_label

log = logging.getLogger(__name__)

TrainingEncoder = Callable[[Tensor], tuple[Tensor, Tensor | None]]
"""Item ids ``[N]`` (0 = padding) -> ``(embeddings [N, d], weighted auxiliary loss or None)``."""


@dataclass(frozen=True)
class ItemEncoder:
    """How a model's items are encoded. ``embed``: ids ``[N] -> [N, d]`` (evaluation);
    ``train``: the same with the auxiliary loss of a training step (default: ``embed`` and
    none); ``chunk``: items through ``embed`` at once during evaluation."""

    embed: Callable[[Tensor], Tensor]
    train: TrainingEncoder | None = None
    chunk: int = ITEM_CHUNK

    def for_training(self) -> TrainingEncoder:
        return self.train or (lambda ids: (self.embed(ids), None))


@dataclass
class Trained:
    """What :func:`fit` leaves: the epoch log, the best epoch (restored in the model) and
    each epoch's mean weighted auxiliary loss per batch (empty without one)."""

    rows: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    auxiliary: list[float] = field(default_factory=list)


@dataclass
class Prepared:
    """A run ready for :func:`fit`: its sequences, its model (on ``device``) and item encoder,
    Adam (and a gradient scaler under float16 autocast), and what its ``metrics.json`` adds
    (``extra``). Each family builds one (:func:`crossan.train.cached.prepare_on_states`,
    :func:`crossan.train.e2e.prepare_end_to_end`); :func:`time_batches` times its steps."""

    data: SequenceData
    model: nn.Module
    encoder: ItemEncoder
    optimizer: torch.optim.Optimizer
    device: torch.device
    scaler: torch.amp.GradScaler | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class EarlyStopping:
    """Validation HR@10 bookkeeping every training loop shares: the best epoch's state is kept
    in memory; :meth:`update` says when ``patience`` epochs in a row brought no strict
    improvement; :meth:`restore` loads the best state back."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best_hr, self.best_epoch, self.since_best = -math.inf, 0, 0
        self.best_state: dict[str, Tensor] | None = None

    def update(self, model: nn.Module, epoch: int, hr: float) -> bool:
        """Record ``epoch``'s validation HR@10; ``True`` = stop now."""
        if hr > self.best_hr:
            self.best_hr, self.best_epoch, self.since_best = hr, epoch, 0
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return False
        self.since_best += 1
        return self.since_best >= self.patience

    def restore(self, model: nn.Module) -> None:
        assert self.best_state is not None, "no epoch was recorded"
        model.load_state_dict(self.best_state)


def optimizer_step(loss: Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None = None) -> None:
    """Zero the gradients, backpropagate ``loss`` and step (through ``scaler`` for float16 autocast)."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()


def batch_loss(model: nn.Module, encode: TrainingEncoder, batch: TrainBatch,
               log_popularity: Tensor, negatives: str = NEGATIVES[0]) -> tuple[Tensor, Tensor | None]:
    """``(loss, auxiliary)`` of one batch: its distinct items through the item encoder
    (``encode``), SASRec over the inputs, the debiased in-batch cross entropy with the
    batch's windows as candidates (``negatives``, see :mod:`crossan.train.loss`), plus the
    encoder's weighted auxiliary loss when it has one (``auxiliary``, also returned alone for
    the log; ``None`` without)."""
    encoded, auxiliary = encode(batch.padded_unique_items)
    items = encoded[1:]  # row 0 = padding, unused
    inputs, targets = batch.lookup(items)
    user_states = model.encode_sequences(inputs, batch.valid)
    window = torch.cat([inputs, targets[:, -1:]], dim=1)  # embeddings of batch.window
    loss = debiased_in_batch_loss(user_states, batch.window, window, batch.sequences, log_popularity,
                                  negatives=negatives)
    return (loss if auxiliary is None else loss + auxiliary), auxiliary


def training_log_popularity(run: RunConfig, data: SequenceData, device: torch.device) -> Tensor:
    """The loss's log item popularity over the training split (``run.popularity_smoothing``), on ``device``."""
    return log_popularity_from_counts(item_popularity_counts(data), smoothing=run.popularity_smoothing).to(device)


def train_step(run: RunConfig, model: nn.Module, encode: TrainingEncoder, batch: TrainBatch, log_popularity: Tensor,
               optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None, epoch: int,
               step: int) -> tuple[Tensor, Tensor | None]:
    """One training step of :func:`fit`: :func:`batch_loss`, the finiteness check (naming
    ``epoch`` and ``step``), backward and Adam; returns ``(loss, auxiliary)``."""
    loss, auxiliary = batch_loss(model, encode, batch, log_popularity, run.negatives)
    check_finite(loss.detach(), epoch, step)
    optimizer_step(loss, optimizer, scaler)
    return loss, auxiliary


def fit(run: RunConfig, data: SequenceData, model: nn.Module, encoder: ItemEncoder, optimizer: torch.optim.Optimizer,
        device: torch.device, scaler: torch.amp.GradScaler | None = None) -> Trained:
    """Train ``model`` (on ``device``, its trainable parameters in ``optimizer``) until
    validation HR@10 stops improving or ``run.max_epochs``; the best epoch's state is restored.
    ``scaler``: a gradient scaler for float16 autocast (end-to-end runs on a GPU without bfloat16;
    side-adapter runs with ``cached_mixed_precision`` on a GPU, as IISAN ``Code_Cached/run.py``).

    Progress lines (:mod:`crossan.progress`, labelled ``crossan train <run name>``): one at the
    start, one per epoch (:func:`~crossan.train.outputs.epoch_text`), and, in an epoch that
    takes longer than 30 s (end-to-end runs), its batches and evaluated items every 30 s."""
    log_popularity = training_log_popularity(run, data, device)
    generator = torch.Generator().manual_seed(run.seed)
    label = progress_label(run_name(run))
    n_batches = batches_per_epoch(data, run.batch_size)
    log_progress(label, f"{count_trainable(model)} trainable parameters, {data.n_items} items, "
                 f"{int(data.train.trainable.sum())} training users ({n_batches} batches per epoch), on {device}")
    encode = encoder.for_training()
    trained, stopping = Trained(), EarlyStopping(run.patience)
    for epoch in range(1, run.max_epochs + 1):
        model.train()
        where = f"epoch {epoch}/{run.max_epochs}"
        started = time.perf_counter()
        total, positions, auxiliary, steps = 0.0, 0, 0.0, 0
        with Progress(label, n_batches, "batches", step=where, summary=False) as progress:
            for step, batch in enumerate(train_batches(data, run.batch_size, generator, device=device)):
                loss, aux = train_step(run, model, encode, batch, log_popularity, optimizer, scaler, epoch, step)
                n = int((batch.targets != 0).sum())
                total, positions = total + float(loss.detach()) * n, positions + n
                if aux is not None:
                    auxiliary, steps = auxiliary + float(aux.detach()), steps + 1
                progress.update()
        if steps:
            trained.auxiliary.append(auxiliary / steps)
            log.info("epoch %d: alignment loss (x %g) %.4f per batch", epoch, run.align_weight, auxiliary / steps)
        sync_device(device)
        train_seconds = time.perf_counter() - started

        started = time.perf_counter()
        with Progress(label, data.n_items + 1, "items", step=f"{where} evaluation", summary=False) as items:
            valid, _ = evaluate_model(model, encoder.embed, data, device, run.repeat_targets,
                                      item_chunk=encoder.chunk, progress=items)["valid"]
        sync_device(device)
        eval_seconds = time.perf_counter() - started
        trained.rows.append(epoch_row(epoch, total / max(positions, 1), valid, train_seconds, eval_seconds))
        log_progress(label, epoch_text(trained.rows[-1], run.max_epochs))
        if stopping.update(model, epoch, valid["HR@10"]):
            log.info("early stop: no validation HR@10 improvement for %d epochs; best epoch %d",
                     run.patience, stopping.best_epoch)
            break
    stopping.restore(model)
    model.eval()
    trained.best_epoch = stopping.best_epoch
    return trained


def time_batches(run: RunConfig, prepared: Prepared, batches: int, warmup: int = 0) -> list[float]:
    """Seconds of each of ``batches`` training steps of ``prepared``, after ``warmup`` untimed
    ones: :func:`fit`'s steps (its batch order under ``run.seed``, each batch made and moved to
    the device as there, :func:`train_step`, the loss read back), continuing into further
    epochs when one has fewer batches. A step's time runs from the end of the previous one to
    the device's synchronisation after it, so it includes making its batch. The model is left
    trained by those steps."""
    if batches < 1 or warmup < 0:
        raise ValueError(f"time_batches needs batches >= 1 and warmup >= 0, got {batches} and {warmup}")
    log_popularity = training_log_popularity(run, prepared.data, prepared.device)
    encode = prepared.encoder.for_training()
    generator = torch.Generator().manual_seed(run.seed)
    prepared.model.train()
    seconds: list[float] = []
    steps, epoch = 0, 0
    while len(seconds) < batches:
        epoch += 1
        started = time.perf_counter()
        for step, batch in enumerate(train_batches(prepared.data, run.batch_size, generator, device=prepared.device)):
            loss, _ = train_step(run, prepared.model, encode, batch, log_popularity, prepared.optimizer,
                                 prepared.scaler, epoch, step)
            float(loss.detach())  # fit reads every loss back
            sync_device(prepared.device)
            if steps >= warmup:
                seconds.append(time.perf_counter() - started)
            steps += 1
            if len(seconds) == batches:
                break
            started = time.perf_counter()
    return seconds


def evaluate_best(run: RunConfig, data: SequenceData, model: nn.Module, encoder: ItemEncoder,
                  device: torch.device) -> dict[str, tuple[dict[str, float], dict]]:
    """The restored best checkpoint's ``valid`` and ``test`` evaluations, with per-user vectors
    (its items counted in progress lines when they take longer than 30 s)."""
    with Progress(progress_label(run_name(run)), data.n_items + 1, "items", step="final evaluation",
                  summary=False) as items:
        return evaluate_model(model, encoder.embed, data, device, run.repeat_targets, splits=("valid", "test"),
                              item_chunk=encoder.chunk, progress=items)
