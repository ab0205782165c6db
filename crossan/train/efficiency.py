"""Table 4's training time and peak memory, measured side by side in one job.

Each training run's own ``metrics.json`` times its epochs, but the runs are separate Snakemake
jobs: several at once share the CPU (with ``--cores 8`` on a 2-core machine an epoch took
11.76 s against 1.45 s alone), so Table 4 would measure the scheduler. Here, as in
``bench/train.py``, the runs of a plan are measured in one invocation that has every core:

* each measurement runs in a fresh child process (``multiprocessing`` spawn): its own peak
  memory, nothing loaded or cached by another run;
* the runs take turns in rotating order (round 0: A, B, C; round 1: B, C, A; ...) over
  ``repeats`` rounds, so a drift in the machine's load hits them alike;
* a measurement builds the run exactly as its trainer does (:func:`crossan.train.cached.prepare_on_states`,
  :func:`crossan.train.e2e.prepare_end_to_end`: its real inputs, model, optimiser, precision
  and batch size) and times ``batches`` training steps of the real loop
  (:func:`crossan.train.loop.time_batches`) after ``warmup`` untimed ones;
* an epoch is extrapolated: ``seconds_per_epoch = batches per epoch x the median seconds per
  batch`` over every timed batch of every round (the epoch's last, smaller batch counted as a
  whole one); validation is not part of it, as it is not of ``metrics.json``'s
  ``seconds_per_epoch``;
* peak memory (:func:`crossan.train.devices.peak_memory`): CUDA max allocated on a GPU, else
  the child's peak RSS, over loading and the timed steps (no evaluation); the median of the
  rounds.

The result is an :class:`~crossan.runs.efficiency_file.EfficiencyRecord`.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import statistics
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import torch

from crossan.errors import ConfigError
from crossan.machine import machine_cores
from crossan.runs.efficiency_file import EfficiencyRecord, RoundMeasurement, RunEfficiency
from crossan.runs.run_config import RunConfig
from crossan.runs.vocabulary import CACHED_STATE, END_TO_END
from crossan.train.cached import prepare_on_states
from crossan.train.devices import deterministic_on_cpu, device_name, peak_memory, reset_peak_memory, resolve_device
from crossan.train.inputs import batches_per_epoch
from crossan.train.loop import Prepared, time_batches
from crossan.train.outputs import versions

log = logging.getLogger(__name__)

MEASURED_FAMILIES: tuple[str, ...] = (CACHED_STATE, END_TO_END)


@dataclass(frozen=True)
class Measurement:
    """What one child measured of one run."""

    batch_seconds: tuple[float, ...]
    batches_per_epoch: int
    peak_memory_mib: float
    peak_memory_kind: str
    device: str
    device_name: str


def check_measurable(runs: Mapping[str, RunConfig]) -> None:
    """:class:`ConfigError` for a run of a family the measurement does not train (graph
    recommenders, popularity): Table 4's are cached-state and end-to-end runs."""
    if others := [name for name, run in runs.items() if run.family not in MEASURED_FAMILIES]:
        raise ConfigError(f"crossan efficiency measures cached-state and end-to-end runs, not {', '.join(others)}")


def prepare(run: RunConfig, device: torch.device) -> Prepared:
    """``run`` built as its trainer builds it, ready to train on ``device``."""
    if run.family == END_TO_END:
        # deferred: the end-to-end family imports transformers and peft, whose memory a
        # cached-state run's peak RSS would otherwise count (as in crossan.train.entry)
        from crossan.train.e2e import prepare_end_to_end

        return prepare_end_to_end(run, device)[0]
    return prepare_on_states(run, device)[0]


def measure_run(run: RunConfig, batches: int, warmup: int) -> Measurement:
    """In this process: build ``run`` and time ``batches`` training steps after ``warmup``
    untimed ones; the peak memory since the build began (on the CPU, since the process began)."""
    device = resolve_device(run.device)
    with deterministic_on_cpu(device):
        reset_peak_memory(device)
        prepared = prepare(run, device)
        seconds = time_batches(run, prepared, batches, warmup)
        memory, kind = peak_memory(device)
    return Measurement(tuple(seconds), batches_per_epoch(prepared.data, run.batch_size), memory, kind,
                       device.type, device_name(device))


def _child(run: RunConfig, batches: int, warmup: int, threads: int, log_level: int) -> Measurement:
    """The child process's work: logging to stderr like the parent's, ``threads`` CPU threads."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    torch.set_num_threads(threads)
    return measure_run(run, batches, warmup)


def measure_isolated(run: RunConfig, batches: int, warmup: int, threads: int) -> Measurement:
    """:func:`measure_run` in a fresh spawned process, which ends with it."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_child, run, batches, warmup, threads, logging.getLogger().getEffectiveLevel()).result()


def rotations(names: Sequence[str], rounds: int) -> list[list[str]]:
    """Each round's order: round ``r`` starts at the ``r``-th name (modulo), the rest in turn."""
    names = list(names)
    return [names[r % len(names):] + names[:r % len(names)] for r in range(rounds)] if names else []


def summarise(run: RunConfig, measured: Sequence[tuple[int, int, Measurement]], batches: int) -> RunEfficiency:
    """A run's :class:`RunEfficiency` from its ``(round, position, measurement)`` triples."""
    first = measured[0][2]
    per_batch = statistics.median(s for _, _, m in measured for s in m.batch_seconds)
    return RunEfficiency(
        method=run.method, batch_size=run.batch_size, batches_per_epoch=first.batches_per_epoch, batches=batches,
        repeats=len(measured), seconds_per_batch=per_batch, seconds_per_epoch=first.batches_per_epoch * per_batch,
        peak_memory_mib=statistics.median(m.peak_memory_mib for _, _, m in measured),
        peak_memory_kind=first.peak_memory_kind, device=first.device,
        rounds=tuple(RoundMeasurement(r, p, m.batch_seconds, m.peak_memory_mib) for r, p, m in measured),
    )


def measure_runs(runs: Mapping[str, RunConfig], *, dataset: str, target: str = "table4", batches: int = 20,
                 end_to_end_batches: int = 10, warmup: int = 2, repeats: int = 2,
                 threads: int | None = None) -> EfficiencyRecord:
    """Measure every run of ``runs`` (name -> run) ``repeats`` times, one fresh process each, in
    rotating order: ``batches`` timed steps for a cached-state run, ``end_to_end_batches`` for
    an end-to-end one (seconds per step), after ``warmup`` untimed ones; ``threads`` CPU threads
    per child (default: every CPU available; more than that are cut to it).

    Raises:
        ConfigError: a run of another family (graph, popularity).
    """
    check_measurable(runs)
    if not runs:
        raise ConfigError(f"{target} of dataset {dataset!r} has no runs to measure")
    if min(batches, end_to_end_batches, repeats) < 1 or warmup < 0:
        raise ConfigError("crossan efficiency needs batches, end-to-end batches and repeats >= 1, warmup >= 0")
    cpus = machine_cores()
    if threads is not None and threads > cpus:
        log.warning("%d threads asked for, %d CPUs available: measuring with %d", threads, cpus, cpus)
    threads = min(threads or cpus, cpus)
    timed = {name: end_to_end_batches if run.family == END_TO_END else batches for name, run in runs.items()}
    order = rotations(list(runs), repeats)
    measured: dict[str, list[tuple[int, int, Measurement]]] = {name: [] for name in runs}
    for round_, names in enumerate(order):
        for position, name in enumerate(names):
            measurement = measure_isolated(runs[name], timed[name], warmup, threads)
            measured[name].append((round_, position, measurement))
            log.info("round %d/%d, %s: %.4f s per batch (median of %d), %.1f MiB peak", round_ + 1, repeats, name,
                     statistics.median(measurement.batch_seconds), timed[name], measurement.peak_memory_mib)
    first = measured[order[0][0]][0][2]
    return EfficiencyRecord(
        dataset=dataset, target=target, device=first.device, device_name=first.device_name, threads=threads,
        cpu_count=os.cpu_count() or cpus, repeats=repeats, warmup_batches=warmup,
        order=tuple(tuple(names) for names in order),
        runs={name: summarise(runs[name], measured[name], timed[name]) for name in runs}, versions=versions(),
    )
