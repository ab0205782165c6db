"""Benchmark: CROSSAN vs IISAN-E (and the shared MoDA tower) training cost at the same hidden
size and modalities.

The methods train the same epochs in one invocation, each in its own fresh child process
(so each gets a clean peak-memory reading), in rotating order (CROSSAN, IISAN-E, CROSSAN-MoDA,
then IISAN-E, CROSSAN-MoDA, CROSSAN, ...) for ``--repeats`` rounds so machine load drifts
hit them alike. One epoch is the real training
loop of :mod:`crossan.train.loop` (shuffled batches, the batch's distinct items through the
adapters, SASRec, the debiased in-batch loss, backward, Adam) over the demo's training users,
with item states of the paper's shape (768-d, 7 kept layers; random values, the cost does not
depend on them) held in memory as in a real run.

Printed: seconds per epoch (median over rounds), peak memory (CUDA max allocated on a GPU;
on the CPU the process's peak RSS and its growth once data and states are loaded, i.e. what
the model and its training add), trainable parameters, the CROSSAN / IISAN-E ratios (the
paper, Table 4, on a GPU: 0.70 time, 0.95 memory, 0.80 parameters) and the CROSSAN-MoDA /
CROSSAN ratios (``crossan-moda``, one shared tower with modality-gated low-rank experts;
beyond the paper, Table B2).

    python bench/train.py                     # needs results/demo/data (snakemake --cores 2 all)
    python bench/train.py --hidden 512 --modalities TIVA --epochs 2 --repeats 3
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time
from pathlib import Path


def measure(method: str, args: argparse.Namespace) -> dict[str, float]:
    """One child process: load data and states, build ``method``, time ``args.epochs`` epochs."""
    import torch

    from crossan.models import ModelConfig, build_model, count_trainable
    from crossan.runs.vocabulary import MODALITY_LETTERS
    from crossan.train.cached import item_encoder
    from crossan.train.devices import peak_memory, resolve_device
    from crossan.train.inputs import (
        ItemStates,
        item_popularity_counts,
        load_sequences,
        train_batches,
    )
    from crossan.train.loop import batch_loss
    from crossan.train.loss import log_popularity_from_counts

    torch.manual_seed(0)
    device = resolve_device(args.device)
    data = load_sequences(Path(args.data))
    names = [MODALITY_LETTERS[letter] for letter in args.modalities]
    shape = (data.n_items + 1, args.layers, args.dim)
    states = ItemStates(
        states={m: torch.randn(shape).to(device) for m in names},
        available={m: torch.ones(shape[0], dtype=torch.bool, device=device) for m in names},
        modalities=args.modalities,
        item_ids=data.item_ids,
    )
    log_popularity = log_popularity_from_counts(item_popularity_counts(data)).to(device)
    model = build_model(ModelConfig(method=method, modalities=args.modalities, encoder_dim=args.dim,
                                    n_layers=args.layers, adapter_dim=args.hidden)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    encode = item_encoder(model, states, device).for_training()
    generator = torch.Generator().manual_seed(0)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    loaded = peak_memory(torch.device("cpu"))[0]  # peak RSS so far
    seconds = []
    for _ in range(args.epochs + 1):  # the first epoch warms up allocators and kernels
        started = time.perf_counter()
        for batch in train_batches(data, args.batch_size, generator, device=device):
            loss, _ = batch_loss(model, encode, batch, log_popularity)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - started)
    result = {"seconds": statistics.median(seconds[1:]), "parameters": count_trainable(model)}
    result["memory"] = peak_memory(device)[0]  # CUDA max allocated, or the CPU peak RSS
    result["memory_growth"] = result["memory"] - (0.0 if device.type == "cuda" else loaded)
    return result


def _child(method: str, args: argparse.Namespace, queue: mp.Queue) -> None:
    queue.put(measure(method, args))


def run_isolated(method: str, args: argparse.Namespace) -> dict[str, float]:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(method, args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="results/demo/data", help="a dataset's results/{dataset}/data")
    parser.add_argument("--modalities", default="TIVA")
    parser.add_argument("--hidden", type=int, default=512, help="adapter bottleneck h (same for both)")
    parser.add_argument("--dim", type=int, default=768, help="encoder hidden size (paper 768)")
    parser.add_argument("--layers", type=int, default=7, help="kept layers (paper 7)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per round (after one warm-up)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating rounds")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    args = parser.parse_args()
    if not (Path(args.data) / "train.parquet").is_file():
        parser.error(f"{args.data}/train.parquet not found: run `snakemake --cores 2 all` first")

    methods = ("crossan", "iisan-e", "crossan-moda")
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
    for round_ in range(args.repeats):
        shift = round_ % len(methods)
        for method in methods[shift:] + methods[:shift]:
            runs[method].append(run_isolated(method, args))
            print(f"round {round_ + 1} {method:12s} {runs[method][-1]['seconds']:.2f} s/epoch", flush=True)

    summary = {m: {key: statistics.median(r[key] for r in runs[m]) for key in runs[m][0]} for m in methods}
    cross, base, shared = summary["crossan"], summary["iisan-e"], summary["crossan-moda"]
    print(f"\n{args.modalities}, h={args.hidden}, {args.dim}-d x {args.layers} layers, batch {args.batch_size}, "
          f"data {args.data}, {args.repeats} rounds x {args.epochs} epochs")
    print(f"{'':24s}{'CROSSAN':>14s}{'IISAN-E':>14s}{'CROSSAN-MoDA':>14s}"
          f"{'C / IISAN-E':>13s}   paper{'MoDA / C':>10s}")
    rows = [("seconds per epoch", "seconds", "0.70"), ("peak memory MiB", "memory", "0.95"),
            ("memory growth MiB", "memory_growth", "    "), ("trainable parameters", "parameters", "0.80")]
    for label, key, paper in rows:
        digits = 0 if key == "parameters" else 2
        print(f"{label:24s}{cross[key]:14,.{digits}f}{base[key]:14,.{digits}f}{shared[key]:14,.{digits}f}"
              f"{cross[key] / base[key]:13.3f}   {paper}{shared[key] / cross[key]:10.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
