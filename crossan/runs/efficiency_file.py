"""``results/{dataset}/efficiency/table4.json``: Table 4's time and memory, measured side by side.

(``efficiency-x…/`` for settings given with ``--config``, :mod:`crossan.runs.variants`.)

Each training run records its own ``seconds_per_epoch`` and ``peak_memory_mib`` in its
``metrics.json``, but the runs are separate jobs: with ``--cores 8`` on a 2-core machine
eight of them share the CPU and a run's epoch took 11.76 s against 1.45 s alone. ``crossan
efficiency`` (:mod:`crossan.train.efficiency`) measures the runs of a table's plan again in
one job that takes every core, and writes this file; Table 4 reads its TT and GM here.

Layout (:class:`EfficiencyRecord`, JSON): the dataset and target, how it was measured
(``device``, ``device_name``, ``threads``, ``cpu_count``, ``repeats``, ``warmup_batches``,
``order``: the runs in the order each round measured them), ``versions``, and ``runs``: per
run name a :class:`RunEfficiency`. Torch-free: the tables read it without loading torch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from crossan.atomic import write_text_atomic
from crossan.errors import DataError
from crossan.runs.folder import to_json

@dataclass(frozen=True)
class RoundMeasurement:
    """One round's measurement of one run, in its own process: the round (from 0), the run's
    place in that round's order (from 0), each timed batch's seconds and the peak memory."""

    round: int
    position: int
    batch_seconds: tuple[float, ...]
    peak_memory_mib: float


@dataclass(frozen=True)
class RunEfficiency:
    """One run's cost, over ``repeats`` rounds of ``batches`` timed training batches each.

    ``seconds_per_batch``: the median over every timed batch of every round;
    ``seconds_per_epoch``: ``batches_per_epoch x seconds_per_batch`` (the epoch's last, smaller
    batch counted as a whole one); ``peak_memory_mib``: the median of the rounds' peaks, of kind
    ``peak_memory_kind`` (``cuda_max_allocated`` or ``cpu_peak_rss``, as in ``metrics.json``).
    """

    method: str
    batch_size: int
    batches_per_epoch: int
    batches: int
    repeats: int
    seconds_per_batch: float
    seconds_per_epoch: float
    peak_memory_mib: float
    peak_memory_kind: str
    device: str
    rounds: tuple[RoundMeasurement, ...] = ()

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> RunEfficiency:
        rounds = tuple(RoundMeasurement(**{**r, "batch_seconds": tuple(r["batch_seconds"])})
                       for r in record.get("rounds", ()))
        return cls(**{**record, "rounds": rounds})


@dataclass(frozen=True)
class EfficiencyRecord:
    """The whole measurement of one plan (see the module docstring)."""

    dataset: str
    target: str
    device: str
    device_name: str
    threads: int
    cpu_count: int
    repeats: int
    warmup_batches: int
    order: tuple[tuple[str, ...], ...]
    runs: dict[str, RunEfficiency]
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> EfficiencyRecord:
        return cls(**{**record, "order": tuple(tuple(names) for names in record["order"]),
                      "runs": {name: RunEfficiency.from_dict(run) for name, run in record["runs"].items()}})

    def write(self, path: Path) -> None:
        """Write the record to ``path`` atomically."""
        write_text_atomic(path, to_json(self.to_dict()))

    @classmethod
    def read(cls, path: Path) -> EfficiencyRecord:
        """The record in ``path``; a :class:`DataError` naming the file for a missing or broken one."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path} is missing: measure it with `snakemake --cores N {path}`")
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as error:
            raise DataError(f"{path} is not an efficiency record ({type(error).__name__}: {error}); "
                            "delete it and measure again") from error

    def of(self, names: Sequence[str], source: str = "the efficiency record") -> list[RunEfficiency]:
        """The measurements of runs ``names``; a :class:`DataError` names any it lacks (the
        record of another plan)."""
        if missing := [name for name in names if name not in self.runs]:
            raise DataError(f"{source} has no measurement of run(s) {', '.join(missing)}: it was measured for "
                            "another plan; measure it again")
        return [self.runs[name] for name in names]
