"""Training a cached-state run: side adapters (CROSSAN, INDSAN, IISAN, IISAN-E, CROSSAN-MoDA)
over the frozen encoders' cached states, or ID-SASRec over item IDs, then SASRec.

The cached states are read once into memory (:func:`~crossan.train.inputs.load_item_states`;
``standardize_states`` z-scores them first); the model is
:func:`crossan.models.build_model`'s; the loop is :func:`crossan.train.loop.fit`'s. Beyond
the paper, a side-adapter run with ``align_weight > 0`` adds the alignment loss between its
modality towers to every training step (:meth:`~crossan.models.recommender.ContentItemEncoder.encode_for_training`).

Optimiser: Adam; ``lr_groups: single`` puts every parameter at the run's ``lr``; ``iisan`` gives
a side-adapter model IISAN ``Code_Cached/run.py``'s five groups (:func:`parameter_groups`).
``cached_mixed_precision`` on CUDA runs the training step's towers and fusion under float16
autocast with a :class:`torch.amp.GradScaler`, as IISAN ``run.py`` (SASRec, the loss and
evaluation stay float32); on the CPU, or when off, nothing changes.

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
from crossan.runs.vocabulary import ALL_LETTERS, CACHED_STATE_METHODS
from crossan.train.devices import deterministic_on_cpu, reset_peak_memory, resolve_device
from crossan.train.inputs import ItemStates, load_item_states, load_sequences
from crossan.train.loop import ItemEncoder, Prepared, Trained, evaluate_best, fit
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
        fusion=run.model_fusion(),
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


# IISAN Code_Cached/scripts/run_IISAN.py's rates over its lr (2e-4), by the group of run.py that
# takes them: lr (recommender), adapter_bert_lr and adapter_cv_lr 1e-4 (adapters),
# fine_tune_lr_text 5e-5 and fine_tune_lr_image 1e-4 (the heads' first layer, fc_bert / fc_cv)
IISAN_LR_SCALES: dict[str, float] = {"recommender": 1.0, "text adapters": 0.5, "adapters": 0.5,
                                     "text head": 0.25, "head": 0.5}


def iisan_parts(towers: nn.Module) -> dict[int, str]:
    """``id(parameter) -> group`` of :data:`IISAN_LR_SCALES` for the tower parameters that are
    not the recommender's, as IISAN ``Code_Cached/run.py`` sorts them by name:

    * a modality's own tower: its adapters ``"text adapters"`` (BERT side, ``adapter_bert_lr``) or
      ``"adapters"`` (every other modality: ViT's side, ``adapter_cv_lr``); its head's
      ``Linear(D->D)`` ``"text head"`` (``fc_bert``, ``fine_tune_lr_text``) or ``"head"``
      (``fc_cv``, ``fine_tune_lr_image``); its ``Linear(D->item_dim)`` stays the recommender's
      (``bert_pre_fc``, ``cv_pre_fc``);
    * a tower serving every modality (IISAN's inter tower; crossan-moda's shared tower): its
      adapters ``"adapters"`` (``mm_adapter``, ``adapter_cv_lr``), its whole head the
      recommender's (``fc_mm``, ``fc_mm_down``).

    Everything else (gates, fusion, SASRec, the alignment temperature) is the recommender's.
    IISAN's image intra gates (``side_gate_params_cv``, a ``cv`` name) land in its
    ``fine_tune_lr_image`` group; here every tower's gates are one tensor, in the recommender's.
    """
    own, shared = towers.modality_towers()
    parts: dict[int, str] = {}
    for modality, tower in own.items():
        text = modality == "text"
        parts.update({id(p): "text adapters" if text else "adapters" for p in tower.adapters.parameters()})
        parts.update({id(p): "text head" if text else "head" for p in tower.head.dense.parameters()})
    for tower in shared:
        parts.update({id(p): "adapters" for p in tower.adapters.parameters()})
    return parts


def parameter_groups(model: nn.Module, run: RunConfig) -> list[dict[str, Any]]:
    """Adam's groups for ``run``: ``lr_groups: single`` (and ID-SASRec, which has no towers) one
    group of every parameter at ``run.lr``; ``iisan`` the groups of :func:`iisan_parts` at
    ``run.lr`` times :data:`IISAN_LR_SCALES` (IISAN's own rates at ``lr`` 2e-4), empty ones left
    out. Each group has a ``name``."""
    if run.lr_groups == "single" or not run.info.has_towers:
        return [{"params": list(model.parameters()), "lr": run.lr, "name": "all"}]
    parts = iisan_parts(model.item_encoder.towers)
    members: dict[str, list[nn.Parameter]] = {name: [] for name in IISAN_LR_SCALES}
    for parameter in model.parameters():
        members[parts.get(id(parameter), "recommender")].append(parameter)
    return [{"params": params, "lr": run.lr * IISAN_LR_SCALES[name], "name": name}
            for name, params in members.items() if params]


def uses_cached_autocast(run: RunConfig, device: torch.device) -> bool:
    """float16 autocast of the training step's towers: ``cached_mixed_precision`` on CUDA only."""
    return run.cached_mixed_precision and device.type == "cuda"


def item_encoder(model: nn.Module, states: ItemStates | None, device: torch.device,
                 autocast: bool = False) -> ItemEncoder:
    """ids ``[N] -> [N, d]`` through the model's item encoder: the ID table, or the content
    towers on the gathered states (in training, once for the items and for the alignment
    loss, whose rows exclude padding, id 0). ``autocast``: the training step's towers and fusion
    run under CUDA float16 autocast and return float32 (IISAN ``Code_Cached/run.py``);
    evaluation always computes in float32, as IISAN's."""
    if states is None:
        return ItemEncoder(lambda ids: model.encode_items(ids.to(device)))

    def embed(ids: Tensor) -> Tensor:
        gathered, available = states.gather(ids)
        return model.encode_items(gathered, available)

    def train(ids: Tensor) -> tuple[Tensor, Tensor | None]:
        gathered, available = states.gather(ids)
        return model.item_encoder.encode_for_training(gathered, available, ids.to(device) != 0)

    def train_autocast(ids: Tensor) -> tuple[Tensor, Tensor | None]:
        with torch.autocast(device.type, dtype=torch.float16):
            items, auxiliary = train(ids)
        return items.float(), None if auxiliary is None else auxiliary.float()

    return ItemEncoder(embed, train_autocast if autocast else train)


def paper_configuration(run: RunConfig) -> dict[str, Any]:
    """``{"paper_configuration_parameters": n}`` for a side-adapter run: its model's trainable
    parameters at the paper's configuration (768-d states, 7 kept layers, item dim 64;
    :func:`crossan.models.counts.paper_configuration_count`), whatever its encoders' size
    here (the demo's are 32-d); ``{}`` for ID-SASRec."""
    if not run.info.has_towers:
        return {}
    count = paper_configuration_count(
        run.method, run.modalities, run.hidden, fusion=run.model_fusion(),
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


def prepare_on_states(run: RunConfig, device: torch.device) -> tuple[Prepared, ItemStates | None]:
    """A cached-state or ID run ready for :func:`~crossan.train.loop.fit` on ``device``: its
    sequences and cached states loaded, the model built under ``run.seed``, Adam with its
    groups (and the gradient scaler of float16 autocast); also the states (``None`` for
    ID-SASRec), which the item towers read after training. (:func:`train_on_states` checks
    that ``run`` is such a run.)

    Raises:
        DataError, ConfigError: bad inputs or configuration.
    """
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
    groups = parameter_groups(model, run)
    optimizer = torch.optim.Adam(groups, weight_decay=run.weight_decay)
    autocast = uses_cached_autocast(run, device) and states is not None
    scaler = torch.amp.GradScaler(device.type) if autocast else None
    if len(groups) > 1 or autocast:
        log.info("%s: learning rates %s; %s", run.method,
                 ", ".join(f"{g['name']} {g['lr']:g} ({len(g['params'])} tensors)" for g in groups),
                 "float16 autocast + gradient scaler" if autocast else "float32")
    extra = paper_configuration(run)
    if len(groups) > 1:
        extra["learning_rates"] = {str(g["name"]): g["lr"] for g in groups}
    if autocast:
        extra["precision"] = "float16 autocast"
    encoder = item_encoder(model, states, device, autocast=autocast)
    return Prepared(data, model, encoder, optimizer, device, scaler, extra), states


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
        prepared, states = prepare_on_states(run, device)
        data, model, encoder = prepared.data, prepared.model, prepared.encoder
        trained = fit(run, data, model, encoder, prepared.optimizer, device, prepared.scaler)
        final = evaluate_best(run, data, model, encoder, device)
        name = run_name(run)
        towers = (compute_item_towers(model, states, name) if states is not None
                  else empty_item_towers(data.item_ids, name))
        result = finish_run(run, data, device, final, rows=trained.rows, best_epoch=trained.best_epoch,
                            towers=towers, model=model,
                            extra=prepared.extra | alignment_metrics(run, model, trained))
    log_result(result)
    return result
