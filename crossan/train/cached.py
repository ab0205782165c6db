"""Training a cached-state run: side adapters (CROSSAN, INDSAN, IISAN, IISAN-E, CROSSAN-MoDA)
over the frozen encoders' cached states, or ID-SASRec over item IDs, then SASRec.

The cached states are read once into memory (:func:`~crossan.train.inputs.load_item_states`;
``standardize_states`` z-scores them first); the model is
:func:`crossan.models.build_model`'s; the loop is :func:`crossan.train.loop.fit`'s. Beyond
the paper, a side-adapter run with ``align_weight > 0`` adds the alignment loss between its
modality towers to every training step (:meth:`~crossan.models.recommender.ContentItemEncoder.encode_for_training`).

Determinism: ``torch.manual_seed(seed)`` is called right before the model is built (it also
drives dropout), the batch order has its own generator seeded with ``seed``, and CPU runs use
``torch.use_deterministic_algorithms``: the same seed and thread count give identical metrics
on the CPU (a different thread count may round differently).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from crossan.errors import ConfigError
from crossan.models import ModelConfig, build_model
from crossan.models.counts import paper_configuration_count
from crossan.runs.identity import run_name
from crossan.runs.run_config import RunConfig
from crossan.runs.vocabulary import ALL_LETTERS, CACHED_STATE_METHODS, NO_FUSION
from crossan.train.devices import deterministic_on_cpu, reset_peak_memory, resolve_device
from crossan.train.inputs import ItemStates, load_item_states, load_sequences
from crossan.train.loop import ItemEncoder, Trained, evaluate_best, fit
from crossan.train.outputs import RunResult, finish_run, log_result, start_run
from crossan.train.towers import compute_item_towers, empty_item_towers

log = logging.getLogger(__name__)


def model_config(run: RunConfig, states: ItemStates | None, n_items: int) -> ModelConfig:
    """The model of ``run`` on ``states`` (their hidden size and kept layers; ID-SASRec: none)."""
    return ModelConfig(
        method=run.method,
        encoder_dim=states.hidden if states else 768,
        n_layers=states.n_layers if states else 7,
        adapter_dim=run.hidden,
        modalities=run.modalities or ALL_LETTERS,  # unused by id-sasrec
        fusion=None if run.fusion in (None, NO_FUSION) else run.fusion,
        topk=run.topk,
        max_len=run.max_len,
        n_items=n_items,
        inter_tower=run.inter_tower,
        layer0_previous=run.layer0_previous,
        sequence_encoder=run.sequence_encoder,
        moda_rank=run.moda_rank,
        moda_experts=run.moda_experts,
        align=run.align,
        align_weight=run.align_weight,
    )


def item_encoder(model: nn.Module, states: ItemStates | None, device: torch.device) -> ItemEncoder:
    """ids ``[N] -> [N, d]`` through the model's item encoder: the ID table, or the content
    towers on the gathered states (in training, once for the items and for the alignment
    loss, whose rows exclude padding, id 0)."""
    if states is None:
        return ItemEncoder(lambda ids: model.encode_items(ids.to(device)))

    def embed(ids: Tensor) -> Tensor:
        gathered, available = states.gather(ids)
        return model.encode_items(gathered, available)

    def train(ids: Tensor) -> tuple[Tensor, Tensor | None]:
        gathered, available = states.gather(ids)
        return model.item_encoder.encode_for_training(gathered, available, ids.to(device) != 0)

    return ItemEncoder(embed, train)


def paper_configuration(run: RunConfig) -> dict[str, Any]:
    """``{"paper_configuration_parameters": n}`` for a side-adapter run: its model's trainable
    parameters at the paper's configuration (768-d states, 7 kept layers, item dim 64;
    :func:`crossan.models.counts.paper_configuration_count`), whatever its encoders' size
    here (the demo's are 32-d); ``{}`` for ID-SASRec."""
    if not run.info.has_towers:
        return {}
    count = paper_configuration_count(
        run.method, run.modalities, run.hidden, fusion=None if run.fusion in (None, NO_FUSION) else run.fusion,
        topk=run.topk, max_len=run.max_len, inter_tower=run.inter_tower, moda_rank=run.moda_rank,
        moda_experts=run.moda_experts, align=run.align, align_weight=run.align_weight,
    )
    return {"paper_configuration_parameters": count}


def alignment_metrics(run: RunConfig, model: nn.Module, trained: Trained) -> dict[str, Any]:
    """``{"alignment": {"align", "weight", "tau", "loss_per_epoch"}}`` of a run trained with the
    auxiliary alignment loss (the learned temperature at the best checkpoint); ``{}`` without."""
    if run.align_weight == 0:
        return {}
    tau = float(model.item_encoder.alignment.tau.detach())
    return {"alignment": {"align": run.align, "weight": run.align_weight, "tau": tau,
                          "loss_per_epoch": trained.auxiliary}}


def train_on_states(run: RunConfig) -> RunResult:
    """Train, early-stop, evaluate and write the outputs of a cached-state or ID run.

    Raises:
        NonFiniteLossError: the loss became NaN or infinite (names the epoch and step).
        DataError, ConfigError: bad inputs or configuration.
    """
    if run.method not in CACHED_STATE_METHODS:
        raise ConfigError(f"train_on_states trains {', '.join(CACHED_STATE_METHODS)}, not {run.method!r}")
    device = resolve_device(run.device)
    with deterministic_on_cpu(device):
        start_run(run)
        reset_peak_memory(device)
        data = load_sequences(Path(run.data_dir), run.max_len)
        states = None
        if run.uses_content:
            states = load_item_states(Path(run.features_dir), run.modalities, device,
                                      item_ids=data.item_ids, standardize=run.standardize_states)
        torch.manual_seed(run.seed)
        try:
            model = build_model(model_config(run, states, data.n_items)).to(device)
        except ValueError as error:
            raise ConfigError(str(error)) from error
        optimizer = torch.optim.Adam(model.parameters(), lr=run.lr, weight_decay=run.weight_decay)
        encoder = item_encoder(model, states, device)
        extra = paper_configuration(run)
        trained = fit(run, data, model, encoder, optimizer, device)
        final = evaluate_best(run, data, model, encoder, device)
        towers = (compute_item_towers(model, states, run_name(run)) if states is not None
                  else empty_item_towers(data.item_ids, run_name(run)))
        result = finish_run(run, data, device, final, rows=trained.rows, best_epoch=trained.best_epoch,
                            towers=towers, model=model,
                            extra=extra | alignment_metrics(run, model, trained))
    log_result(result)
    return result

