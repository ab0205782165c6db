"""Benchmark: one training step of FFT, Adapter and LoRA (BERT + ViT in the loop) vs CROSSAN.

The paper's Table 4 at base size, in one invocation: randomly initialised BERT-base and
ViT-B/16 at 224 px (:func:`~crossan.models.e2e.item_encoder.paper_backbones`, the shapes of
``bert-base-uncased`` and ``google/vit-base-patch16-224``) trained end to end by full
fine-tuning, Houlsby adapters (bottleneck ``--hidden``) or LoRA (rank ``--hidden``), against
CROSSAN T+I on cached states (adapter size ``--hidden``; ``--modalities`` for another set).

Each method runs in its own fresh child process (a clean peak-memory reading), alternating
FFT, Adapter, LoRA, CROSSAN, then the reverse, ... over ``--repeats`` rounds so machine load
drifts hit every method alike. One step is the real training step
(:func:`crossan.train.loop.batch_loss`, then backward and Adam, as in
:func:`crossan.train.loop.fit`): the batch's distinct items through the item encoder, SASRec,
the debiased in-batch loss, backward, Adam. The batch is synthetic and the same for every
method: ``--users`` users' 11-item windows over ``--items-per-step`` distinct items ``N`` (what
drives the encoders' cost; a MicroLens batch of 64 users has several hundred). Per item the
end-to-end encoders read random token ids ``long[N, --text-tokens]`` (``[CLS] ... [SEP]``, full
attention) and random ``pixel_values`` ``float[N, 3, 224, 224]``, with gradients through both
encoders; CROSSAN reads random cached states ``float[N, 7, 768]`` per modality. Only the
step's ``N`` items are held, not a catalogue's inputs.

Precision as in training: on CUDA the encoders run under bfloat16 autocast where supported,
else float16 with a gradient scaler (:func:`crossan.train.e2e.autocast_dtype`;
``--no-mixed-precision`` for float32); CROSSAN, SASRec and the loss in float32; the CPU in
float32, with the deterministic kernels CPU training uses, on one thread by default (as the
workflow's train jobs; ``--threads``). ``--gradient-checkpointing`` recomputes the encoders'
activations in the backward pass.

Printed: per method, seconds per step (median over the ``--steps`` timed steps after
``--warmup`` untimed ones, then median over rounds), peak memory (CUDA max allocated on a
GPU; on the CPU the process's peak RSS), its growth over the baseline taken once the inputs
are built (what the model and its training add), and trainable parameters; then each
end-to-end method's ratio to CROSSAN beside the paper's (Table 4, MicroLens-100K, per epoch on
an A6000, from :mod:`crossan.results.paper`: FFT / CROSSAN about 23x in time). The paper's
CROSSAN row is T+I+V+A, which costs more than T+I, so the same end-to-end costs give larger
ratios against T+I; ``--modalities TIVA`` measures the paper's row. The time ratio grows with
``N``, which the encoders' cost follows and CROSSAN's barely does.

    python bench/e2e.py                                  # CPU: N = 8, 2 rounds x 2 steps, about 5 min
    python bench/e2e.py --items-per-step 8 --steps 2 --warmup 1 --repeats 1
    python bench/e2e.py --device cuda --items-per-step 512 --gradient-checkpointing
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
from torch import Tensor, nn

from crossan.models import ModelConfig, build_model, count_trainable
from crossan.results.paper import PAPER
from crossan.runs.vocabulary import MODALITY_LETTERS, modality_letters
from crossan.train.cached import item_encoder
from crossan.train.devices import deterministic_on_cpu, peak_memory, resolve_device
from crossan.train.inputs import (
    ItemStates,
    TrainBatch,
    TrainSplit,
    default_storage_dtype,
    item_popularity_counts,
    make_batch,
)
from crossan.train.loop import ItemEncoder, batch_loss, optimizer_step
from crossan.train.loss import log_popularity_from_counts

METHODS: tuple[str, ...] = ("fft", "adapter", "lora", "crossan")
END_TO_END: tuple[str, ...] = METHODS[:3]
LABELS: dict[str, str] = {"fft": "FFT (T+I)", "adapter": "Adapter (T+I)", "lora": "LoRA (T+I)"}
# Table 4 row of each method (crossan.results.paper; columns TT s/epoch, GM MiB, TP parameters)
PAPER_ROWS: dict[str, str] = {
    "fft": "Full Finetuning (T+I)",
    "adapter": "Adapter (T+I)",
    "lora": "LoRA (T+I)",
    "crossan": "CROSSAN (T+I+V+A) (ours)",
}
WINDOW = 11  # items per user window: max_len 10 inputs + the last target
STATE_LAYERS, STATE_DIM = 7, 768  # cached states kept per modality (paper: 7 layers of 768)
# Defaults per device. CPU: one thread, as the workflow's train jobs; with two threads on a
# busy 2-core machine, OpenMP waits made CROSSAN's small step 60x slower (0.07 s -> 4.5 s),
# while FFT's large matrix products barely noticed. A CPU FFT step at N = 8 takes about 13 s.
DEFAULTS: dict[str, dict[str, int]] = {
    "cpu": {"items_per_step": 8, "steps": 2, "warmup": 1, "threads": 1},
    "cuda": {"items_per_step": 256, "steps": 10, "warmup": 3, "threads": 0},
}


# (model, encode: item ids [K] -> [K, 64], autocast dtype or None, memory baseline MiB)
Built = tuple[nn.Module, Callable[[Tensor], Tensor], torch.dtype | None, float]


@dataclass(frozen=True)
class Measurement:
    """One method in one child process. ``memory``/``growth`` in MiB (see the module docstring)."""

    seconds: float
    memory: float
    growth: float
    parameters: float
    precision: str


# ====================================================================== inputs (child side)


def synthetic_batch(users: int, n_items: int, generator: torch.Generator) -> tuple[TrainBatch, Tensor]:
    """A training batch of ``users`` full 11-item windows in which each of the ids ``1..n_items``
    occurs at least once (so ``batch.unique_items`` has ``n_items`` rows), and the ``[n_items + 1]``
    log-popularity of those windows (every candidate finite)."""
    positions = users * WINDOW
    if not 2 <= n_items <= positions:
        raise ValueError(f"--items-per-step must be in 2..{positions} (users x {WINDOW}), got {n_items}")
    ids = torch.cat([torch.randperm(n_items, generator=generator) + 1,
                     torch.randint(1, n_items + 1, (positions - n_items,), generator=generator)])
    windows = ids[torch.randperm(positions, generator=generator)].reshape(users, WINDOW)
    split = TrainSplit(user_index=torch.arange(users), inputs=windows[:, :-1].contiguous(),
                       targets=windows[:, 1:].contiguous(), sequences=windows, n_items=n_items)
    return make_batch(split, torch.arange(users)), log_popularity_from_counts(item_popularity_counts(split))


def random_states(n_items: int, modalities: str, device: torch.device, generator: torch.Generator) -> ItemStates:
    """Cached states of ``n_items`` items (+ padding row 0): modality -> ``[n_items + 1, 7, 768]``,
    stored as training stores them (float16 on CUDA, float32 on the CPU; gathered as float32)."""
    names = [MODALITY_LETTERS[letter] for letter in modalities]
    shape = (n_items + 1, STATE_LAYERS, STATE_DIM)
    storage = default_storage_dtype(device)
    return ItemStates(
        states={m: torch.randn(shape, generator=generator).to(device, storage) for m in names},
        available={m: torch.ones(shape[0], dtype=torch.bool, device=device) for m in names},
        modalities=modalities,
        item_ids=[str(i) for i in range(1, n_items + 1)],
    )


class PreparedPixels:
    """Stands in for :class:`~crossan.encoders.inputs.PixelInputs` in
    :class:`~crossan.train.e2e_inputs.ItemInputs`: the stored pixels already are
    ``pixel_values`` (random; no checkpoint processor to apply), so ``to_device`` only moves them."""

    def to_device(self, prepared: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
        return {"pixel_values": prepared["pixel_values"].to(device)}


# ====================================================================== models (child side)


def build_end_to_end(method: str, args: argparse.Namespace, device: torch.device,
                     generator: torch.Generator) -> Built:
    """The step's inputs, the memory baseline (:func:`take_baseline`), then ``method``'s model:
    returns ``(model, encode, autocast dtype, baseline MiB)``; ``encode`` (item ids ``[K] ->
    [K, 64]``) is the training's own (:func:`~crossan.train.e2e.make_e2e_encoder`)."""
    # Imported here, not at the top: a spawned child re-imports this module, and the CROSSAN
    # child must not load transformers and peft (about 160 MiB of RSS that cached-state
    # training never has).
    from transformers import BertConfig, ViTConfig

    from crossan.models.e2e.item_encoder import (
        EndToEndConfig,
        build_e2e_model,
        paper_backbones,
    )
    from crossan.train.e2e import autocast_dtype, make_e2e_encoder
    from crossan.train.e2e_inputs import ItemInputs

    text, image = BertConfig(), ViTConfig()  # paper_backbones' shapes
    rows = args.items_per_step + 1  # row 0 = padding
    input_ids = torch.randint(1000, text.vocab_size, (rows, args.text_tokens), generator=generator)
    input_ids[:, 0], input_ids[:, -1] = 101, 102  # [CLS] ... [SEP] of bert-base-uncased
    side = image.image_size
    inputs = ItemInputs(
        text={"input_ids": input_ids.to(device),
              "token_type_ids": torch.zeros_like(input_ids, device=device),
              "attention_mask": torch.ones_like(input_ids, device=device)},
        pixels=torch.randn((rows, image.num_channels, side, side), generator=generator).to(device),
        has_image=torch.ones(rows, dtype=torch.bool, device=device),
        item_ids=[str(i) for i in range(1, rows)],
        pixel_builder=PreparedPixels(),  # type: ignore[arg-type]
    )
    baseline = take_baseline(device)
    torch.manual_seed(0)
    model = build_e2e_model(EndToEndConfig.of(method, args.hidden), *paper_backbones()).to(device)
    if args.gradient_checkpointing:
        for tower in (model.item_encoder.text, model.item_encoder.image):
            tower.backbone.activation_checkpointing_enable({"use_reentrant": False})
    dtype = autocast_dtype(device, args.mixed_precision)
    return model, make_e2e_encoder(model, inputs, dtype), dtype, baseline


def build_crossan(args: argparse.Namespace, device: torch.device, generator: torch.Generator) -> Built:
    """Cached states, the baseline, then CROSSAN of ``args.modalities`` (see :func:`build_end_to_end`)."""
    states = random_states(args.items_per_step, args.modalities, device, generator)
    baseline = take_baseline(device)
    torch.manual_seed(0)
    model = build_model(ModelConfig(method="crossan", modalities=args.modalities, encoder_dim=STATE_DIM,
                                    n_layers=STATE_LAYERS, adapter_dim=args.hidden)).to(device)
    return model, item_encoder(model, states, device).embed, None, baseline


def take_baseline(device: torch.device) -> float:
    """MiB held once the inputs are built: CUDA allocated (and the peak counter reset), else peak RSS."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**20
    return peak_memory(device)[0]


# ====================================================================== the step (child side)


def time_steps(model: nn.Module, encode: Callable[[Tensor], Tensor], batch: TrainBatch, log_popularity: Tensor,
               dtype: torch.dtype | None, args: argparse.Namespace, device: torch.device) -> float:
    """Median seconds of ``args.steps`` training steps after ``args.warmup`` untimed ones."""
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    model.train()
    seconds = []
    for step in range(args.warmup + args.steps):
        started = time.perf_counter()
        loss, _ = batch_loss(model, ItemEncoder(encode).for_training(), batch, log_popularity)
        optimizer_step(loss, optimizer, scaler)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step >= args.warmup:
            seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def measure(method: str, args: argparse.Namespace) -> Measurement:
    """One child process: the synthetic batch and inputs, ``method``'s model, timed steps."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)  # the same batch and inputs in every child
    with deterministic_on_cpu(device):
        batch, log_popularity = synthetic_batch(args.users, args.items_per_step, generator)
        batch, log_popularity = batch.to(device), log_popularity.to(device)
        if method == "crossan":
            model, encode, dtype, baseline = build_crossan(args, device, generator)
        else:
            model, encode, dtype, baseline = build_end_to_end(method, args, device, generator)
        seconds = time_steps(model, encode, batch, log_popularity, dtype, args, device)
    memory = peak_memory(device)[0]  # CUDA max allocated, or the CPU peak RSS
    return Measurement(seconds=seconds, memory=memory, growth=memory - baseline,
                       parameters=count_trainable(model),
                       precision=f"{str(dtype).removeprefix('torch.')} autocast" if dtype else "float32")


def _child(method: str, args: argparse.Namespace, queue: mp.Queue) -> None:
    queue.put(measure(method, args))


def run_isolated(method: str, args: argparse.Namespace) -> Measurement:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(method, args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


# ====================================================================== report (parent side)


def median_measurement(runs: list[Measurement]) -> Measurement:
    """Field-wise median over rounds (``precision`` is the same in every round)."""
    numbers = {f.name: statistics.median(getattr(r, f.name) for r in runs)
               for f in fields(Measurement) if f.name != "precision"}
    return Measurement(**numbers, precision=runs[0].precision)


def paper_ratios(method: str) -> tuple[float, float, float]:
    """Table 4's ``method`` / CROSSAN (T+I+V+A) ratios of time, memory and parameters."""
    table = PAPER["table4"]["microlens-100k"]
    row, cross = table[PAPER_ROWS[method]], table[PAPER_ROWS["crossan"]]
    time_, memory, parameters = (row[column] / cross[column] for column in ("TT", "GM", "TP"))
    return time_, memory, parameters


def print_report(summary: dict[str, Measurement], args: argparse.Namespace) -> None:
    labels = LABELS | {"crossan": f"CROSSAN ({'+'.join(args.modalities)})"}
    memory_kind = "CUDA max allocated" if args.device == "cuda" else "peak RSS"
    checkpointing = ", gradient checkpointing" if args.gradient_checkpointing else ""
    print(f"\nBERT-base + ViT-B/16 (224 px), random init, {args.text_tokens} tokens; h = {args.hidden}; "
          f"{args.users} users x {WINDOW}-item windows, N = {args.items_per_step} distinct items per step")
    threads = args.threads or torch.get_num_threads()
    print(f"{args.device}, {summary['fft'].precision} end to end{checkpointing}, "
          f"{threads} thread{'s' if threads > 1 else ''}; "
          f"{args.repeats} rounds x {args.steps} steps (after {args.warmup} warm-up)")
    print(f"{'':20s}{'s/step':>10s}{'peak MiB':>12s}{'growth MiB':>12s}{'trainable params':>18s}   ({memory_kind})")
    for method in METHODS:
        m = summary[method]
        print(f"{labels[method]:20s}{m.seconds:10.3f}{m.memory:12,.0f}{m.growth:12,.0f}{m.parameters:18,.0f}")

    cross = summary["crossan"]
    print(f"\nratio to {labels['crossan']}: measured, then the paper's (Table 4, MicroLens-100K, per epoch, "
          f"vs {PAPER_ROWS['crossan'].removesuffix(' (ours)')})")
    print(f"{'':20s}{'time':>9s}{'paper':>8s}{'memory':>10s}{'paper':>8s}{'growth':>10s}{'params':>10s}{'paper':>8s}")
    for method in END_TO_END:
        m = summary[method]
        time_p, memory_p, params_p = paper_ratios(method)
        print(f"{labels[method]:20s}{m.seconds / cross.seconds:9.2f}{time_p:8.2f}{m.memory / cross.memory:10.2f}"
              f"{memory_p:8.2f}{m.growth / cross.growth:10.2f}{m.parameters / cross.parameters:10.2f}{params_p:8.2f}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cpu, cuda = DEFAULTS["cpu"], DEFAULTS["cuda"]
    parser.add_argument("--items-per-step", type=int, default=None,
                        help=f"distinct items N through the encoders per step (default {cpu['items_per_step']} "
                             f"on the CPU, {cuda['items_per_step']} on CUDA)")
    parser.add_argument("--users", type=int, default=64, help="users per batch (paper 64)")
    parser.add_argument("--text-tokens", type=int, default=30, help="tokens per title (training's text_max_length)")
    parser.add_argument("--hidden", type=int, default=512, help="adapter bottleneck / LoRA rank / CROSSAN h")
    parser.add_argument("--modalities", default="TI", help="CROSSAN's cached-state modalities (paper row: TIVA)")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"timed steps per round (default {cpu['steps']} on the CPU, {cuda['steps']} on CUDA)")
    parser.add_argument("--warmup", type=int, default=None,
                        help=f"untimed steps first (default {cpu['warmup']} on the CPU, {cuda['warmup']} on CUDA)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating rounds")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=None,
                        help=f"torch threads per child, 0 = torch's default (default {cpu['threads']} on the CPU, "
                             f"{cuda['threads']} on CUDA)")
    parser.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction, default=True,
                        help="CUDA autocast for the end-to-end encoders, as training")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="end-to-end encoders only")
    args = parser.parse_args()
    args.device = resolve_device(args.device).type  # children get a concrete device
    for name, value in DEFAULTS[args.device].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.steps < 1 or args.warmup < 0 or args.repeats < 1 or args.threads < 0:
        parser.error("--steps and --repeats must be >= 1, --warmup and --threads >= 0")
    try:
        args.modalities = modality_letters(args.modalities)
    except ValueError as error:
        parser.error(f"--modalities {args.modalities!r}: {error}")
    if not 2 <= args.items_per_step <= args.users * WINDOW:
        parser.error(f"--items-per-step must be in 2..{args.users * WINDOW} (--users x {WINDOW})")
    return args


def main() -> int:
    args = parse_args()
    runs: dict[str, list[Measurement]] = {m: [] for m in METHODS}
    for round_ in range(args.repeats):
        for method in METHODS if round_ % 2 == 0 else METHODS[::-1]:
            runs[method].append(run_isolated(method, args))
            print(f"round {round_ + 1} {method:8s} {runs[method][-1].seconds:.3f} s/step", flush=True)
    print_report({m: median_measurement(runs[m]) for m in METHODS}, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
