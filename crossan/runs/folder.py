"""The run folder: the files every run writes, and :class:`RunMetrics`, its ``metrics.json``.

``results/{dataset}/runs/{name}/`` holds, for a run of any method (:data:`RUN_FILES`):

* ``settings.json``, written first: the training settings its method uses and those of them
  that differ from the defaults, which the name's ``-x`` digest stands for
  (:func:`crossan.runs.identity.settings_record`);
* ``train_log.csv``: one row per epoch (:data:`LOG_COLUMNS`; only the header without training);
* ``per_user_valid.parquet``, ``per_user_test.parquet``: one row per user (``user`` =
  ``user_index``) with ``rank`` and :data:`~crossan.runs.vocabulary.METRIC_NAMES` at the best
  checkpoint, for the paired t-tests;
* ``gates.json``: the learned gate values for Figure 4 (``{}`` for methods without gates);
* ``item_towers.h5``: every item's tower outputs at the best checkpoint, for the mutual
  information of Tables 1 and B1 (no towers for methods without);
* ``metrics.json``, written **last**: its presence means the run is complete
  (:class:`RunMetrics`).

Every trainer writes these through one function (``crossan.train.outputs.finish_run``), and
every reader (the tables, the workflow) names them from here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from crossan.atomic import write_text_atomic
from crossan.errors import DataError
from crossan.runs.vocabulary import METRIC_NAMES

METRICS_FILE = "metrics.json"
SETTINGS_FILE = "settings.json"
LOG_FILE = "train_log.csv"
GATES_FILE = "gates.json"
TOWERS_FILE = "item_towers.h5"
PER_USER_FILES: Mapping[str, str] = {"valid": "per_user_valid.parquet", "test": "per_user_test.parquet"}
# output key (the training rule's) -> file name, in the order a run writes them
RUN_FILES: Mapping[str, str] = {
    "settings": SETTINGS_FILE,
    "per_user_valid": PER_USER_FILES["valid"],
    "per_user_test": PER_USER_FILES["test"],
    "gates": GATES_FILE,
    "towers": TOWERS_FILE,
    "train_log": LOG_FILE,
    "metrics": METRICS_FILE,
}
LOG_COLUMNS: tuple[str, ...] = (
    "epoch", "train_loss", *(f"valid_{metric}" for metric in METRIC_NAMES), "train_seconds", "eval_seconds",
)


def to_json(record: Any) -> str:
    """A run file's JSON text: indented, keys in the order given, NaN allowed."""
    return json.dumps(record, indent=2, sort_keys=False, allow_nan=True) + "\n"


@dataclass
class RunMetrics:
    """``metrics.json``: what a run achieved and cost, in one record for every method family.

    ``valid``/``test``: :data:`~crossan.runs.vocabulary.METRIC_NAMES` at the best checkpoint
    (full ranking). ``best_epoch``/``epochs_run``: epochs from 1 (0 without training).
    ``trainable_parameters``, ``seconds_per_epoch`` (training only), ``eval_seconds`` (per
    validation), ``peak_memory_mib`` of kind ``peak_memory_kind`` (``cuda_max_allocated`` or
    ``cpu_peak_rss``): Table 4's efficiency. ``extra``: what only some families report, in the
    order written (side adapters: ``paper_configuration_parameters``, ``alignment``; end-to-end:
    ``inputs``, ``precision``, ``learning_rates``, ...; graph recommenders:
    ``hyper_parameters``, ``grid``, ``graph``). ``config``: the run's
    :class:`~crossan.runs.run_config.RunConfig`. ``test_by_popularity``: test HR/NDCG@10 and
    users per head / torso / tail target bucket, with the thresholds.
    """

    run_name: str
    dataset: str
    method: str
    fusion: str
    device: str
    n_items: int
    n_users: dict[str, int]
    valid: dict[str, float]
    test: dict[str, float]
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    trainable_parameters: int
    seconds_per_epoch: float
    eval_seconds: float
    peak_memory_mib: float
    peak_memory_kind: str
    extra: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    test_by_popularity: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON layout: the common keys, then ``extra``'s keys at the top level, then
        ``config``, ``versions`` and ``test_by_popularity``."""
        head = {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("extra", "config", "versions", "test_by_popularity")}
        record = {**head, **self.extra, "config": self.config, "versions": self.versions}
        if self.test_by_popularity is not None:
            record["test_by_popularity"] = self.test_by_popularity
        return record

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> RunMetrics:
        names = {f.name for f in fields(cls)} - {"extra"}
        missing = sorted(name for name in names - {"test_by_popularity", "config", "versions"} if name not in record)
        if missing:
            raise KeyError(", ".join(missing))
        return cls(**{key: value for key, value in record.items() if key in names},
                   extra={key: value for key, value in record.items() if key not in names})

    def has(self, key: str) -> bool:
        """Whether :meth:`number` has ``key`` (a top-level number or an ``extra`` key)."""
        return key in METRIC_NAMES or key in _FIELDS or key in self.extra

    def number(self, key: str, split: str = "test") -> float:
        """``split``'s metric ``key`` (one of :data:`METRIC_NAMES`), else the top-level number
        ``key`` (``seconds_per_epoch``, ``paper_configuration_parameters``, ...)."""
        if key in METRIC_NAMES:
            return float(getattr(self, split)[key])
        return float(self.extra[key] if key in self.extra else getattr(self, key))

    def write(self, folder: Path) -> None:
        """Write ``metrics.json`` into ``folder`` atomically (the run's last file)."""
        write_text_atomic(Path(folder) / METRICS_FILE, to_json(self.to_dict()))

    @classmethod
    def read(cls, folder: Path) -> RunMetrics:
        """``metrics.json`` of the run in ``folder``; a :class:`DataError` that says how to
        produce a missing one or redo a broken one."""
        path = Path(folder) / METRICS_FILE
        if not path.exists():
            raise DataError(f"{path} is missing: run {Path(folder).name} has not finished; "
                            f"build it with `snakemake --cores N {path}`")
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: not valid JSON ({error}); delete the run folder and rerun it") from error
        except KeyError as error:
            raise DataError(f"{path} lacks {error.args[0]}: it was not written by a finished run; delete the run "
                            "folder and rerun it") from error


_FIELDS = frozenset(f.name for f in fields(RunMetrics))
