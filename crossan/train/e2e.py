"""Training an end-to-end run (``fft``, ``adapter``, ``lora``): BERT and ViT in the loop.

Same loop, loss, early stopping, evaluation and outputs as the cached-state runs
(:func:`crossan.train.loop.fit`, :func:`crossan.train.outputs.finish_run`); what differs is
the item side:

* inputs: :func:`~crossan.train.e2e_inputs.load_item_inputs`, read and tokenised once;
* model: the two frozen checkpoints loaded as in stage 1 (:func:`~crossan.encoders.load.load_encoder`)
  and prepared by the method (:func:`~crossan.models.e2e.item_encoder.build_e2e_model`);
* per step, only the batch's distinct items go through the encoders (and get gradients);
  evaluation encodes every item once, ``eval_batch_size`` at a time, under
  ``torch.inference_mode``;
* optimiser: Adam with IISAN ``Code_Uncached/run.py``'s groups: ``lr`` for the recommender
  (heads, fusion, SASRec), ``text_lr`` and ``image_lr`` for each encoder's trainable weights
  (all of them, its adapters, or its LoRA matrices); LoRA's trainable biases get
  ``lora_text_bias_lr`` and ``lora_image_bias_lr``, IISAN's fine-tuning rates (its
  ``fine_tune_lr_text``/``fine_tune_lr_image`` groups take every encoder weight whose name
  says neither adapter nor LoRA, and ``loralib`` leaves those biases trainable);
* ``standardize_states`` (the demo's setting): each tower z-scores its ``[CLS]`` state with
  statistics of the model as built, before any update, over every item with a usable input
  (:func:`fit_cls_standardization`); fixed afterwards, like the cached methods' z-scores;
* on CUDA with ``mixed_precision``: the encoders run under autocast in bfloat16 where the GPU
  supports it, else float16 with a :class:`torch.amp.GradScaler`; SASRec and the loss stay in
  float32. ``gradient_checkpointing`` recomputes the encoders' layer activations in the
  backward pass (less memory, about a third more time). The CPU computes in float32.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from crossan.encoders.load import load_encoder
from crossan.errors import ConfigError
from crossan.models.e2e.item_encoder import EndToEndConfig, build_e2e_model
from crossan.progress import Progress
from crossan.runs.identity import run_name
from crossan.runs.run_config import RunConfig
from crossan.runs.vocabulary import END_TO_END
from crossan.train.devices import deterministic_on_cpu, reset_peak_memory, resolve_device
from crossan.train.e2e_inputs import ItemInputs, load_item_inputs
from crossan.train.inputs import load_sequences
from crossan.train.loop import ItemEncoder, Prepared, evaluate_best, fit
from crossan.train.outputs import RunResult, finish_run, log_result, progress_label, start_run
from crossan.train.towers import compute_item_towers

log = logging.getLogger(__name__)


def autocast_dtype(device: torch.device, mixed_precision: bool) -> torch.dtype | None:
    """bfloat16 on a CUDA device that supports it, else float16; ``None`` (float32) on the CPU
    or when ``mixed_precision`` is off."""
    if device.type != "cuda" or not mixed_precision:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def parameter_groups(model: nn.Module, run: RunConfig) -> list[dict[str, object]]:
    """Adam groups: the recommender at ``run.lr``, each encoder's trainable weights at its own
    rate (``None`` = ``run.lr``); in a ``lora`` run the encoders' trainable biases (those of the
    LoRA projections, the only trainable weights outside the LoRA matrices) at
    ``lora_text_bias_lr`` / ``lora_image_bias_lr``, as IISAN ``Code_Uncached/run.py`` gives them
    its fine-tuning rates. Frozen weights are in no group; empty groups are left out."""
    encoder = model.item_encoder
    groups: list[dict[str, object]] = []
    in_backbones: set[int] = set()
    for name, tower, rate, bias_rate in (("text", encoder.text, run.text_lr, run.lora_text_bias_lr),
                                         ("image", encoder.image, run.image_lr, run.lora_image_bias_lr)):
        trainable = [(path, p) for path, p in tower.backbone.named_parameters() if p.requires_grad]
        in_backbones.update(id(p) for _, p in trainable)
        if run.method == "lora":
            biases = [p for path, p in trainable if not _is_lora_matrix(path)]
            weights = [p for path, p in trainable if _is_lora_matrix(path)]
        else:
            biases, weights = [], [p for _, p in trainable]
        groups.append({"params": weights, "lr": rate or run.lr, "name": f"{name} encoder"})
        groups.append({"params": biases, "lr": bias_rate, "name": f"{name} LoRA biases"})
    recommender = [p for p in model.parameters() if p.requires_grad and id(p) not in in_backbones]
    groups.insert(0, {"params": recommender, "lr": run.lr, "name": "recommender"})
    return [group for group in groups if group["params"]]


def _is_lora_matrix(path: str) -> bool:
    """``peft``'s LoRA factors: ``...query.lora_A.default.weight``, ``...lora_B...``."""
    return ".lora_A." in path or ".lora_B." in path


def make_e2e_encoder(
    model: nn.Module, inputs: ItemInputs, dtype: torch.dtype | None
) -> Callable[[Tensor], Tensor]:
    """``ids [N] -> float32 [N, d]`` through the encoders; id 0 (padding) gives a zero row
    without running them."""
    device = inputs.device

    def encode(ids: Tensor) -> Tensor:
        ids = ids.to(device)
        rows = ids.nonzero().squeeze(1)
        batch, _ = inputs.gather(ids.index_select(0, rows))
        autocast = (torch.autocast(device.type, dtype=dtype) if dtype is not None
                    else contextlib.nullcontext())
        with autocast:
            items = model.encode_items(batch).float()
        return items.new_zeros(len(ids), items.shape[1]).index_copy(0, rows, items)

    return encode


def fit_cls_standardization(
    model: nn.Module, inputs: ItemInputs, chunk: int, dtype: torch.dtype | None
) -> dict[str, int]:
    """Fit both towers' :class:`~crossan.models.e2e.item_encoder.Standardize` on their ``[CLS]``
    states at step 0 (eval mode, ``chunk`` items at a time): the text tower over every item, the
    image tower over the items with a readable cover. Returns the item count per tower.

    Why: the demo's randomly initialised encoders give every item nearly the same ``[CLS]``
    state (item differences ~1% of its scale), so heads and adapters would spend tens of epochs
    amplifying them; real checkpoints do not need it (the paper feeds ``[CLS]`` raw).
    """
    encoder = model.item_encoder
    was_training = model.training
    model.eval()
    states: dict[str, list[Tensor]] = {"text": [], "image": []}
    autocast = (torch.autocast(inputs.device.type, dtype=dtype) if dtype is not None
                else contextlib.nullcontext())
    with torch.inference_mode(), autocast:
        for start in range(1, inputs.n_items + 1, chunk):
            ids = torch.arange(start, min(start + chunk, inputs.n_items + 1), device=inputs.device)
            batch, _ = inputs.gather(ids)
            states["text"].append(encoder.text.cls_state(**batch.text).float())
            rows = batch.has_image.nonzero().squeeze(1)
            if len(rows):
                pixels = batch.pixels.index_select(0, rows)
                states["image"].append(encoder.image.cls_state(pixel_values=pixels).float())
    counts = {}
    for name, tower in (("text", encoder.text), ("image", encoder.image)):
        values = torch.cat(states[name]).clone() if states[name] else torch.empty(0)
        counts[name] = len(values)
        if counts[name] >= 2:
            tower.standardize.fit(values)
    model.train(was_training)
    return counts


def check_end_to_end(run: RunConfig) -> None:
    """:class:`ConfigError` unless ``run`` is an end-to-end run with its media folder and both
    checkpoints."""
    if run.family != END_TO_END:
        raise ConfigError(f"end-to-end runs are fft, adapter and lora, not {run.method!r}")
    missing = [name for name in ("media_dir", "text_model", "image_model") if not getattr(run, name)]
    if missing:
        raise ConfigError(f"{run.method} trains the encoders themselves and needs {', '.join(missing)} "
                          "(crossan train --media, --text-model, --image-model)")


def prepare_end_to_end(run: RunConfig, device: torch.device) -> tuple[Prepared, ItemInputs]:
    """An end-to-end run ready for :func:`~crossan.train.loop.fit` on ``device``: its sequences,
    the checkpoints and every item's inputs loaded, the model built under ``run.seed`` (with
    gradient checkpointing and the ``[CLS]`` standardisation its settings ask for), Adam with
    its groups (and a gradient scaler under float16 autocast); also the item inputs, which the
    item towers read after training.

    Raises:
        ConfigError: not an end-to-end method, or no media folder / encoder checkpoints given.
        DataError: missing or mismatched inputs (``items.csv``, ``image.h5``).
    """
    check_end_to_end(run)
    data = load_sequences(Path(run.data_dir), run.max_len)
    text_encoder = load_encoder("text", run.text_model)
    image_encoder = load_encoder("image", run.image_model)
    inputs = load_item_inputs(Path(run.data_dir), Path(run.media_dir), text_encoder, image_encoder,
                              run.text_max_length, device)

    torch.manual_seed(run.seed)
    config = EndToEndConfig.of(run.method, run.hidden, lora_alpha=run.lora_alpha, max_len=run.max_len,
                               sequence_encoder=run.sequence_encoder)
    model = build_e2e_model(config, text_encoder.model, image_encoder.model).to(device)
    if run.gradient_checkpointing:
        for tower in (model.item_encoder.text, model.item_encoder.image):
            tower.backbone.activation_checkpointing_enable({"use_reentrant": False})
    dtype = autocast_dtype(device, run.mixed_precision)
    standardized = (fit_cls_standardization(model, inputs, run.eval_batch_size, dtype)
                    if run.standardize_states else {})
    groups = parameter_groups(model, run)
    optimizer = torch.optim.Adam(groups, weight_decay=run.weight_decay)
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    log.info("%s: encoders %s + %s; learning rates %s; %s%s", run.method, run.text_model, run.image_model,
             ", ".join(f"{g['name']} {g['lr']:g}" for g in groups),
             f"autocast {dtype}" if dtype else "float32",
             ", gradient checkpointing" if run.gradient_checkpointing else "")
    encoder = ItemEncoder(make_e2e_encoder(model, inputs, dtype), chunk=run.eval_batch_size)
    extra = {
        "inputs": inputs.report,
        "precision": str(dtype).removeprefix("torch.") if dtype else "float32",
        "gradient_checkpointing": run.gradient_checkpointing,
        "learning_rates": {str(g["name"]): g["lr"] for g in groups},
        "standardized_cls_items": standardized,
    }
    return Prepared(data, model, encoder, optimizer, device, scaler, extra), inputs


def train_end_to_end(run: RunConfig) -> RunResult:
    """Train, early-stop, evaluate and write the outputs of an end-to-end run.

    Raises:
        ConfigError: not an end-to-end method, or no media folder / encoder checkpoints given.
        DataError: missing or mismatched inputs (``items.csv``, ``image.h5``).
        NonFiniteLossError: the loss became NaN or infinite.
    """
    check_end_to_end(run)
    device = resolve_device(run.device)
    with deterministic_on_cpu(device):
        start_run(run)
        reset_peak_memory(device)
        prepared, inputs = prepare_end_to_end(run, device)
        data, model, encoder = prepared.data, prepared.model, prepared.encoder
        trained = fit(run, data, model, encoder, prepared.optimizer, device, prepared.scaler)
        final = evaluate_best(run, data, model, encoder, device)
        with Progress(progress_label(run_name(run)), inputs.n_items, "items", step="item towers",
                      summary=False) as items:
            towers = compute_item_towers(model, inputs, run_name(run), chunk=run.eval_batch_size, progress=items)
        result = finish_run(run, data, device, final, rows=trained.rows, best_epoch=trained.best_epoch,
                            towers=towers, model=model, extra=prepared.extra)
    log_result(result)
    return result
