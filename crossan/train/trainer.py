"""Stage 2 training: one run = one configuration trained, early-stopped and evaluated.

:func:`fit` is the loop every trained method shares (cached-state and ID runs via
:func:`train_on_states`, end-to-end runs via :func:`crossan.train.e2e.train_end_to_end`;
:func:`crossan.train.entry.train` picks). It writes the run's outputs into ``out_dir``:

* ``per_user_valid.parquet``, ``per_user_test.parquet``: one row per user (column ``user`` =
  ``user_index``) with ``rank``, ``HR@10``, ``NDCG@10``, ``HR@20``, ``NDCG@20`` of the best
  checkpoint, for paired t-tests;
* ``gates.json``: the learned gate values for Figure 4 (``{}`` for methods without gates);
* ``item_towers.h5``: every item's tower outputs at the best checkpoint, for Table 1's
  mutual information (:mod:`crossan.train.towers`; no towers for runs without content);
* ``settings.json``, written first: the training settings the run's method uses and the ones
  of them that differ from the defaults, which the run name's ``-x`` digest stands for
  (:mod:`crossan.train.identity`);
* ``train_log.csv``: one row per epoch, ``epoch, train_loss, valid_HR@10, valid_NDCG@10,
  valid_HR@20, valid_NDCG@20, train_seconds, eval_seconds``;
* ``metrics.json``, written **last**: its presence means the run is complete. Keys:
  ``run_name, dataset, method, valid, test, best_epoch, epochs_run, stopped_early,
  trainable_parameters, seconds_per_epoch, eval_seconds, peak_memory_mib,
  peak_memory_kind, device, n_items, n_users, config, versions, test_by_popularity`` (test
  HR@10 / NDCG@10 and users per head / torso / tail target bucket, :func:`test_by_popularity`).

Every file is written atomically; a stale ``metrics.json`` is removed when a run starts.

Training (``method-facts.md``, Stage 2): per epoch, :func:`~crossan.train.data.train_batches`
shuffled by a generator seeded from ``seed``; per batch the item encoder runs only on
``batch.padded_unique_items`` (the batch's distinct items plus the padding row, which
``lookup`` does not use), the sequence encoder on the looked-up input embeddings, the
in-batch debiased loss with every item of the users' windows as a candidate (inputs and last
target, ``run.negatives``), Adam. After each epoch the validation
HR@10 with full ranking decides early stopping (strict improvement; stop after ``patience``
epochs without one); the best ``state_dict`` is kept in memory and restored at the end,
where validation and test are evaluated with per-user vectors. Epochs are numbered from 1.

Evaluation: every item's embedding is computed once per evaluation, in chunks, under
``torch.inference_mode`` with ``model.eval()``; row 0 (padding) is set to zero, as
``TrainBatch.lookup`` does in training. The user state is the sequence encoder's output at
the last position of the left-padded history.

Determinism: ``torch.manual_seed(seed)`` is called right before the model is built (it also
drives dropout), the batch order has its own generator seeded with ``seed``, and CPU runs use
``torch.use_deterministic_algorithms``: the same seed and thread count give identical metrics
on the CPU (a different thread count may round differently).
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import logging
import math
import resource
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import crossan
from crossan.atomic import write_text_atomic
from crossan.errors import ConfigError
from crossan.models import METHODS, ModelConfig, build_model, count_trainable
from crossan.models.adapters import LAYER0_PREVIOUS
from crossan.models.e2e import E2E_FUSION, E2E_METHODS, E2E_MODALITIES
from crossan.models.fusion import FUSIONS
from crossan.models.graph import GRAPH_METHODS
from crossan.models.params import paper_configuration_count
from crossan.models.recommender import ALIGNMENTS, INTER_TOWERS
from crossan.models.sasrec import SEQUENCE_LAYOUTS
from crossan.train.data import (
    DEFAULT_MAX_LEN,
    EvalSplit,
    ItemStates,
    SequenceData,
    TrainBatch,
    eval_batches,
    item_popularity_counts,
    load_item_states,
    load_sequences,
    modality_letters,
    train_batches,
)
from crossan.train.identity import SETTINGS_FILE, settings_record
from crossan.train.loss import (
    NEGATIVES,
    POPULARITY_SMOOTHING,
    check_finite,
    debiased_in_batch_loss,
    log_popularity_from_counts,
)
from crossan.data.buckets import BUCKET_RULE, item_buckets
from crossan.train.metrics import REPEAT_TARGETS, evaluate_full_ranking, metrics_by_bucket, save_per_user
from crossan.train.names import run_name
from crossan.train.towers import (
    TOWERS_FILE,
    ItemTowers,
    compute_item_towers,
    empty_item_towers,
    write_item_towers,
)

log = logging.getLogger(__name__)

POPULARITY = "popularity"
RUN_METHODS: tuple[str, ...] = (*METHODS, *E2E_METHODS, *GRAPH_METHODS, POPULARITY)
# the methods on cached states with modality towers: the auxiliary alignment loss applies to them
ALIGNED_METHODS: tuple[str, ...] = tuple(method for method in METHODS if method != "id-sasrec")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
KS: tuple[int, ...] = (10, 20)
METRIC_NAMES: tuple[str, ...] = tuple(f"{m}@{k}" for k in KS for m in ("HR", "NDCG"))
LOG_COLUMNS: tuple[str, ...] = (
    "epoch", "train_loss", *(f"valid_{m}" for m in METRIC_NAMES), "train_seconds", "eval_seconds",
)
METRICS_FILE = "metrics.json"
# Conventions where the paper is silent (README, "Conventions"): RunConfig field -> choices;
# the first choice is the default, the reference code's behaviour.
CONVENTIONS: dict[str, tuple[str, ...]] = {
    "inter_tower": INTER_TOWERS,
    "layer0_previous": LAYER0_PREVIOUS,
    "sequence_encoder": tuple(SEQUENCE_LAYOUTS),
    "negatives": NEGATIVES,
    "popularity_smoothing": POPULARITY_SMOOTHING,
    "repeat_targets": REPEAT_TARGETS,
}
ITEM_CHUNK = 4096  # items encoded at once during evaluation
USER_CHUNK = 1024  # users encoded / scored at once during evaluation


@dataclass(frozen=True)
class RunConfig:
    """One training run. Paths are stored as strings (the config goes into ``metrics.json``).

    ``dataset``: the name used in the run name; default: the name of ``data_dir``'s parent
    (``results/{dataset}/data``). ``modalities``: letters from ``TIVA``, canonicalised to
    T, I, V, A order; ``id-sasrec`` and ``popularity`` use no content, so for them it is set
    to ``""`` and ``fusion`` to ``"none"``. ``fusion``: ``None`` = the method's default. ``hidden``: the adapters' bottleneck size.
    ``device``: ``auto`` (CUDA when available), ``cpu`` or ``cuda``. ``standardize_states``:
    z-score the cached states first (:func:`~crossan.train.data.standardize_states`); for
    ``fft``/``adapter``/``lora`` each encoder's ``[CLS]`` with its step-0 statistics
    (:func:`crossan.train.e2e.fit_cls_standardization`).

    Conventions where the paper is silent (:data:`CONVENTIONS`; defaults = IISAN's and
    MicroLens' code, the other value = our earlier rule): ``inter_tower`` (IISAN/IISAN-E inter
    tower, :class:`~crossan.models.ModelConfig`), ``layer0_previous`` (adapters' input before
    layer 0), ``sequence_encoder`` (SASRec FFN activation and LayerNorm eps), ``negatives`` and
    ``popularity_smoothing`` (the loss, :mod:`crossan.train.loss`), ``repeat_targets``
    (evaluation, :mod:`crossan.train.metrics`). They enter the run name's settings digest when
    not the default.

    End-to-end methods (``fft``, ``adapter``, ``lora``; text + image, concat fusion; ``hidden``
    = adapter bottleneck or LoRA rank; ``lr`` = the recommender's learning rate: heads, fusion,
    SASRec): ``media_dir`` (``results/{dataset}/media``, for ``image.h5``), ``text_model`` and
    ``image_model`` (Hugging Face ids or ``save_pretrained`` folders), ``text_max_length``,
    ``text_lr``/``image_lr`` (the encoders' trainable weights: the whole encoder, its adapters or
    its LoRA matrices; ``None`` = ``lr``), ``lora_alpha``, ``gradient_checkpointing``,
    ``mixed_precision`` (on CUDA: bfloat16 autocast where supported, else float16 with a
    gradient scaler; the CPU always computes in float32) and ``eval_batch_size`` (items through
    the encoders at once during evaluation). The settings among these enter the name's digest;
    the inputs (media, checkpoints, title length) do not: they come from stage 1's configuration.

    Graph recommenders (``mmgcn``, ``grcn``, ``bm3``, ``freedom``, ``mgcn``, ``mhcr``; any
    modalities; fusion ``none``, each model combines its modalities itself; ``hidden`` = the
    embedding size; ``batch_size`` = training pairs per batch): ``graph_file`` (the dataset's
    graph, :mod:`crossan.graph.build`) and ``graph_grid`` (model parameter -> values tried,
    selected on validation; empty = the model's defaults); ``graph_layer`` and ``graph_k`` say
    how that file was built (``crossan graph --layer --k``): not read by the run, they make
    part of its identity (:mod:`crossan.train.identity`), as the graph's other inputs
    ``max_len`` and ``standardize_states`` do.

    Beyond the paper (issue 17): ``align_weight`` (``lambda``, off at 0) adds ``align``
    (``cmsa``, SDA's structural alignment, or ``infonce``) between every pair of modality
    towers' outputs of each batch's items to the loss, for the methods of
    :data:`ALIGNED_METHODS`; it is a name field (``-cmsa1e-01``), written only when on.
    ``moda_rank``/``moda_experts``: ``crossan-moda``'s expert rank and count (settings).

    The settings of this run that change its results and differ from the defaults are
    digested into its name (:mod:`crossan.train.identity`) and listed in ``settings.json``.
    """

    data_dir: str
    features_dir: str
    out_dir: str
    method: str = "crossan"
    modalities: str = "TIVA"
    fusion: str | None = None
    topk: int = 2
    hidden: int = 512
    lr: float = 1e-4
    seed: int = 0
    batch_size: int = 64
    max_epochs: int = 50
    patience: int = 5
    max_len: int = DEFAULT_MAX_LEN
    device: str = "auto"
    weight_decay: float = 0.0
    standardize_states: bool = False
    inter_tower: str = "residual"
    layer0_previous: str = "zeros"
    sequence_encoder: str = "microlens"
    negatives: str = "window"
    popularity_smoothing: str = "none"
    repeat_targets: str = "miss"
    dataset: str = ""
    media_dir: str = ""
    text_model: str = ""
    image_model: str = ""
    text_max_length: int = 30
    text_lr: float | None = None
    image_lr: float | None = None
    lora_alpha: float = 1.0
    gradient_checkpointing: bool = False
    mixed_precision: bool = True
    eval_batch_size: int = 256
    graph_file: str = ""
    graph_grid: dict[str, list[Any]] = field(default_factory=dict)
    graph_layer: int = -1
    graph_k: int = 10
    align: str = "cmsa"
    align_weight: float = 0.0
    moda_rank: int = 8
    moda_experts: int = 4

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for name in ("data_dir", "features_dir", "out_dir", "media_dir", "text_model", "image_model", "graph_file"):
            set_(self, name, str(getattr(self, name)))
        if self.method not in RUN_METHODS:
            raise ConfigError(f"unknown method {self.method!r}; choose from {', '.join(RUN_METHODS)}")
        if self.uses_content:
            try:
                set_(self, "modalities", modality_letters(self.modalities))
            except ValueError as error:
                raise ConfigError(f"modalities {self.modalities!r}: {error}") from error
            if self.method == "iisan" and self.modalities != "TI":
                raise ConfigError(f"iisan is the text+image method; use iisan-e for {self.modalities}")
            if self.end_to_end and self.modalities != E2E_MODALITIES:
                raise ConfigError(f"{self.method} trains BERT and ViT end to end: text+image only "
                                  f"(modalities TI), got {self.modalities}")
            if self.end_to_end and self.fusion not in (None, E2E_FUSION):
                raise ConfigError(f"{self.method} fuses text and image by concatenation; fusion "
                                  f"{self.fusion!r} is not available for it")
            if self.graph_method:
                if self.fusion not in (None, "none"):
                    raise ConfigError(f"{self.method} combines its modalities itself; fusion must be none, "
                                      f"got {self.fusion!r}")
                set_(self, "fusion", "none")
            elif self.fusion is not None and self.fusion not in FUSIONS:
                raise ConfigError(f"unknown fusion {self.fusion!r}; choose from {', '.join(FUSIONS)}")
        else:  # no content: modalities and fusion do not apply (canonical "" and "none")
            set_(self, "modalities", "")
            set_(self, "fusion", "none")
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        for name in ("topk", "hidden", "batch_size", "max_epochs", "patience", "max_len",
                     "text_max_length", "eval_batch_size", "graph_k", "moda_rank", "moda_experts"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.graph_layer, int) or isinstance(self.graph_layer, bool):
            raise ConfigError(f"graph_layer must be an integer, got {self.graph_layer!r}")
        if not (isinstance(self.seed, int) and self.seed >= 0):
            raise ConfigError(f"seed must be an integer >= 0, got {self.seed!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a positive number, got {self.lr!r}")
        for name in ("text_lr", "image_lr"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number, got {value!r}")
        if not (math.isfinite(self.lora_alpha) and self.lora_alpha > 0):
            raise ConfigError(f"lora_alpha must be a positive number, got {self.lora_alpha!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        for name, choices in CONVENTIONS.items():
            if getattr(self, name) not in choices:
                raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        if self.align not in ALIGNMENTS:
            raise ConfigError(f"align must be one of {', '.join(ALIGNMENTS)}, got {self.align!r}")
        if isinstance(self.align_weight, bool) or not (math.isfinite(self.align_weight) and self.align_weight >= 0):
            raise ConfigError(f"align_weight must be a number >= 0, got {self.align_weight!r}")
        set_(self, "align_weight", float(self.align_weight))
        if self.align_weight == 0:
            set_(self, "align", "cmsa")  # off: one canonical value, so equal runs compare equal
        elif self.method not in ALIGNED_METHODS:
            raise ConfigError(f"align_weight applies to the side-adapter methods ({', '.join(ALIGNED_METHODS)}), "
                              f"whose modality towers it aligns; {self.method} has none")
        if self.moda_rank % self.moda_experts:
            raise ConfigError(f"moda_rank {self.moda_rank} must be a multiple of moda_experts {self.moda_experts} "
                              "(the rank is split evenly over the experts)")
        if not self.dataset:
            set_(self, "dataset", default_dataset_name(self.data_dir))

    def resolved_fusion(self) -> str:
        """The fusion actually used: ``"none"`` for ``id-sasrec`` and ``popularity``."""
        if self.method in ("id-sasrec", POPULARITY) or self.graph_method:
            return "none"
        if self.end_to_end:
            return E2E_FUSION
        return ModelConfig(method=self.method, fusion=self.fusion).resolved_fusion()

    @property
    def uses_content(self) -> bool:
        return self.method not in ("id-sasrec", POPULARITY)

    @property
    def graph_method(self) -> bool:
        """A multimodal graph recommender (Table 8)."""
        return self.method in GRAPH_METHODS

    @property
    def end_to_end(self) -> bool:
        """The encoders are in the training loop (``fft``, ``adapter``, ``lora``)."""
        return self.method in E2E_METHODS


def default_dataset_name(data_dir: str | Path) -> str:
    """``results/demo/data`` -> ``demo``; any other folder -> its own name."""
    path = Path(data_dir).resolve()
    return path.parent.name if path.name == "data" and path.parent.name else path.name


@dataclass
class RunResult:
    """What :func:`train` returns; ``metrics`` is the content of ``metrics.json``."""

    out_dir: Path
    metrics: dict[str, Any]
    log: list[dict[str, float]]
    per_user_valid: dict[str, np.ndarray]
    per_user_test: dict[str, np.ndarray]
    model: nn.Module | None = field(default=None, repr=False)  # best checkpoint, eval mode

    @property
    def valid(self) -> dict[str, float]:
        return self.metrics["valid"]

    @property
    def test(self) -> dict[str, float]:
        return self.metrics["test"]

    @property
    def best_epoch(self) -> int:
        return self.metrics["best_epoch"]


# ====================================================================== helpers


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but torch sees no CUDA device")
    return torch.device(name)


def sync_device(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory(device: torch.device) -> tuple[float, str]:
    """``(MiB, kind)``: CUDA max allocated on a GPU, else the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return (rss / 2**20 if sys.platform == "darwin" else rss / 1024), "cpu_peak_rss"


def versions() -> dict[str, str]:
    return {
        "crossan": crossan.__version__,
        "torch": torch.__version__,
        "python": ".".join(map(str, sys.version_info[:3])),
    }


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, allow_nan=True) + "\n"


def write_log_csv(path: Path, rows: list[dict[str, float]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(LOG_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({name: row[name] for name in LOG_COLUMNS})
    write_text_atomic(path, buffer.getvalue())


def gates_payload(model: nn.Module | None) -> dict[str, Any]:
    """``gates.json``: ``{"towers": {tower: {"sources": [...], "layers": [0..L-1],
    "values": [[...] per layer]}}}``; ``{}`` when the model has no gates.

    Sources: CROSSAN ``["H", "T", "I", ...]`` (own frozen state, then each tower's previous
    adapter output), INDSAN ``["H", "self"]``, IISAN intra towers ``["H", "prev"]`` and its
    inter tower ``["T", "I", ..., "prev"]``. Every row is a convex weight vector except the
    IISAN/IISAN-E inter tower's, whose previous output keeps weight 1 (``inter_tower:
    residual``; its modality weights sum to 1).
    """
    if model is None:
        return {}
    values = model.gate_values()
    if not values:
        return {}
    towers = getattr(model.item_encoder, "towers", None)
    sources = getattr(towers, "gate_sources", None)
    payload: dict[str, Any] = {}
    for tower, tensor in values.items():
        matrix = tensor.detach().float().cpu()
        if sources is not None:
            labels = list(sources)
        elif tower == "inter":
            labels = [m[0].upper() for m in towers.modalities] + ["prev"]
        else:
            labels = ["H", "prev"]
        if len(labels) != matrix.shape[-1]:
            labels = [str(i) for i in range(matrix.shape[-1])]
        payload[tower] = {
            "sources": labels,
            "layers": list(range(matrix.shape[0])),
            "values": matrix.tolist(),
        }
    return {"towers": payload}


def write_outputs(
    out_dir: Path,
    metrics: dict[str, Any],
    log_rows: list[dict[str, float]],
    per_user_valid: tuple[Tensor, dict[str, np.ndarray]],
    per_user_test: tuple[Tensor, dict[str, np.ndarray]],
    gates: dict[str, Any],
    towers: ItemTowers,
    *,
    data: SequenceData,
) -> None:
    """All of a run's files, ``metrics.json`` last. Every family writes through here, so here
    ``metrics`` gains ``test_by_popularity`` (:func:`test_by_popularity`) from the test
    per-user vectors and ``data``'s training counts."""
    metrics["test_by_popularity"] = test_by_popularity(data, per_user_test[1])
    save_per_user(out_dir / "per_user_valid.parquet", *per_user_valid)
    save_per_user(out_dir / "per_user_test.parquet", *per_user_test)
    write_text_atomic(out_dir / "gates.json", _json(gates))
    write_item_towers(out_dir / TOWERS_FILE, towers)
    write_log_csv(out_dir / "train_log.csv", log_rows)
    write_text_atomic(out_dir / METRICS_FILE, _json(metrics))


def test_by_popularity(data: SequenceData, per_user_test: dict[str, np.ndarray]) -> dict[str, Any]:
    """Test HR@10 / NDCG@10 and users per target-popularity bucket (:mod:`crossan.data.buckets`:
    training-count terciles over items, the thresholds ``stats.json`` records), with the
    thresholds: ``{"by", "head_min_count", "tail_max_count", "head": {"users", "HR@10",
    "NDCG@10"}, "torso": {...}, "tail": {...}}``."""
    head_min, tail_max, bucket = item_buckets(item_popularity_counts(data).numpy())
    by_bucket = metrics_by_bucket(per_user_test, data.test.target, bucket)
    return {"by": BUCKET_RULE, "head_min_count": head_min, "tail_max_count": tail_max} | by_bucket


def base_metrics(run: RunConfig, data: SequenceData, device: torch.device) -> dict[str, Any]:
    return {
        "run_name": run_name(run),
        "dataset": run.dataset,
        "method": run.method,
        "fusion": run.resolved_fusion(),
        "device": str(device),
        "n_items": data.n_items,
        "n_users": {"train": int(data.train.trainable.sum()), "valid": len(data.valid),
                    "test": len(data.test)},
    }


def start_run(run: RunConfig) -> Path:
    """Create the run's folder, remove a previous run's ``metrics.json`` (so its presence keeps
    meaning "complete" while this run overwrites the other files) and write ``settings.json``
    (:func:`~crossan.train.identity.settings_record`: the settings the name's digest stands
    for). Returns the folder."""
    out_dir = Path(run.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / METRICS_FILE).unlink(missing_ok=True)
    write_text_atomic(out_dir / SETTINGS_FILE, _json({"run_name": run_name(run), **settings_record(run)}))
    return out_dir


def open_run(run: RunConfig, device: torch.device) -> SequenceData:
    """Every trained run's first steps: :func:`start_run`, a fresh CUDA peak-memory counter
    (Table 4's GM is this run's alone), and the sequences."""
    start_run(run)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    return load_sequences(Path(run.data_dir), run.max_len)


# ====================================================================== encoding


def make_item_encoder(
    model: nn.Module, states: ItemStates | None, device: torch.device
) -> Callable[[Tensor], Tensor]:
    """``ids [N] -> [N, d]`` through the model's item encoder (content states or ID table)."""
    if states is None:
        return lambda ids: model.encode_items(ids.to(device))

    def encode(ids: Tensor) -> Tensor:
        gathered, available = states.gather(ids)
        return model.encode_items(gathered, available)

    return encode


TrainingEncoder = Callable[[Tensor], tuple[Tensor, Tensor | None]]
"""Item ids ``[N]`` (0 = padding) -> ``(embeddings [N, d], weighted auxiliary loss or None)``."""


def without_auxiliary(encode: Callable[[Tensor], Tensor]) -> TrainingEncoder:
    """A :data:`TrainingEncoder` of an item encoder without an auxiliary loss."""
    return lambda ids: (encode(ids), None)


def make_training_encoder(model: nn.Module, states: ItemStates, device: torch.device) -> TrainingEncoder:
    """The content item encoder of training: the towers run once for the items and for the
    alignment loss (:meth:`~crossan.models.recommender.ContentItemEncoder.encode_for_training`),
    whose rows exclude padding (id 0)."""

    def encode(ids: Tensor) -> tuple[Tensor, Tensor | None]:
        gathered, available = states.gather(ids)
        return model.item_encoder.encode_for_training(gathered, available, ids.to(device) != 0)

    return encode


def batch_loss(model: nn.Module, encode: TrainingEncoder, batch: TrainBatch,
               log_popularity: Tensor, negatives: str = "window") -> tuple[Tensor, Tensor | None]:
    """``(loss, auxiliary)`` of one batch: its distinct items through the item encoder
    (``encode``, see :func:`make_training_encoder`), SASRec over the inputs, the debiased
    in-batch cross entropy with the batch's windows as candidates (``negatives``, see
    :mod:`crossan.train.loss`), plus the encoder's weighted auxiliary loss when it has one
    (``auxiliary``, also returned alone for the log; ``None`` without)."""
    encoded, auxiliary = encode(batch.padded_unique_items)
    items = encoded[1:]  # row 0 = padding, unused
    inputs, targets = batch.lookup(items)
    user_states = model.encode_sequences(inputs, batch.valid)
    window = torch.cat([inputs, targets[:, -1:]], dim=1)  # embeddings of batch.window
    loss = debiased_in_batch_loss(user_states, batch.window, window, batch.sequences, log_popularity,
                                  negatives=negatives)
    return (loss if auxiliary is None else loss + auxiliary), auxiliary


def all_item_embeddings(encode: Callable[[Tensor], Tensor], n_items: int, device: torch.device,
                        chunk: int = ITEM_CHUNK) -> Tensor:
    """``[n_items + 1, d]`` embeddings of every item id, row 0 (padding) zero."""
    ids = torch.arange(n_items + 1, device=device)
    table = torch.cat([encode(ids[start : start + chunk]) for start in range(0, n_items + 1, chunk)])
    table[0] = 0
    return table


def evaluate_split(
    model: nn.Module, table: Tensor, split: EvalSplit, device: torch.device, repeat_targets: str = "miss"
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Full-ranking metrics of ``split`` given every item's embedding ``table``
    (``repeat_targets``: see :func:`~crossan.train.metrics.rank_of_targets`)."""
    users = []
    for part in eval_batches(split, USER_CHUNK, device):
        states = model.encode_sequences(table[part.history], part.history != 0)
        users.append(states[:, -1])
    user_states = torch.cat(users)
    return evaluate_full_ranking(user_states, table, split.target, split.full_history, ks=KS,
                                 chunk_users=USER_CHUNK, repeat_targets=repeat_targets)


def evaluate_model(
    model: nn.Module, encode: Callable[[Tensor], Tensor], data: SequenceData, device: torch.device,
    splits: tuple[str, ...] = ("valid",), repeat_targets: str = "miss", item_chunk: int = ITEM_CHUNK,
) -> dict[str, tuple[dict[str, float], dict[str, np.ndarray]]]:
    """Evaluate ``splits`` of ``data`` with item embeddings computed once for all of them
    (``item_chunk`` items through the item encoder at a time)."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            table = all_item_embeddings(encode, data.n_items, device, item_chunk)
            return {name: evaluate_split(model, table, getattr(data, name), device, repeat_targets)
                    for name in splits}
    finally:
        model.train(was_training)


# ====================================================================== training


@contextlib.contextmanager
def deterministic_on_cpu(device: torch.device) -> Iterator[None]:
    """``torch.use_deterministic_algorithms`` for CPU runs, restored afterwards.

    Bit-reproducible on the CPU: with several threads some default kernels accumulate in a
    scheduling-dependent order; the loss then differs in the 9th digit after one epoch and the
    runs drift apart (demo HR@10 0.213 vs 0.220 for the same seed). CUDA runs are not made
    deterministic (that needs CUBLAS_WORKSPACE_CONFIG and slower kernels).
    """
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(previous or device.type == "cpu")
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def train_on_states(run: RunConfig) -> RunResult:
    """Train, early-stop, evaluate and write the outputs of a cached-state or ID run (see the
    module docstring; :func:`crossan.train.entry.train` dispatches every method).

    Raises:
        NonFiniteLossError: the loss became NaN or infinite (names the epoch and step).
        DataError, ConfigError: bad inputs or configuration.
    """
    if run.method not in METHODS:
        raise ConfigError(f"train_on_states trains {', '.join(METHODS)}, not {run.method!r}")
    device = resolve_device(run.device)
    with deterministic_on_cpu(device):
        data = open_run(run, device)
        states: ItemStates | None = None
        if run.uses_content:
            states = load_item_states(Path(run.features_dir), run.modalities, device,
                                      item_ids=data.item_ids, standardize=run.standardize_states)
        torch.manual_seed(run.seed)
        config = ModelConfig(
            method=run.method,
            encoder_dim=states.hidden if states else 768,
            n_layers=states.n_layers if states else 7,
            adapter_dim=run.hidden,
            modalities=run.modalities or "TIVA",  # unused by id-sasrec
            fusion=None if run.fusion in (None, "none") else run.fusion,
            topk=run.topk,
            max_len=run.max_len,
            n_items=data.n_items,
            inter_tower=run.inter_tower,
            layer0_previous=run.layer0_previous,
            sequence_encoder=run.sequence_encoder,
            moda_rank=run.moda_rank,
            moda_experts=run.moda_experts,
            align=run.align,
            align_weight=run.align_weight,
        )
        try:
            model = build_model(config).to(device)
        except ValueError as error:
            raise ConfigError(str(error)) from error
        optimizer = torch.optim.Adam(model.parameters(), lr=run.lr, weight_decay=run.weight_decay)
        encode = make_item_encoder(model, states, device)
        return fit(run, data, model, encode, optimizer, device,
                   towers=lambda best: compute_item_towers(best, states, run_name(run)) if states is not None
                   else empty_item_towers(data.item_ids, run_name(run)),
                   encode_train=make_training_encoder(model, states, device) if states is not None else None,
                   extra_metrics=paper_size(run))


def paper_size(run: RunConfig) -> dict[str, Any]:
    """``{"paper_configuration_parameters": n}`` for a side-adapter run: its model's trainable
    parameters at the paper's configuration (768-d states, 7 kept layers, item dim 64;
    :func:`crossan.models.params.paper_configuration_count`), whatever its encoders' size
    here (the demo's are 32-d); ``{}`` for other methods."""
    if run.method not in ALIGNED_METHODS:
        return {}
    count = paper_configuration_count(
        run.method, run.modalities, run.hidden, fusion=None if run.fusion in (None, "none") else run.fusion,
        topk=run.topk, max_len=run.max_len, inter_tower=run.inter_tower, moda_rank=run.moda_rank,
        moda_experts=run.moda_experts, align=run.align, align_weight=run.align_weight,
    )
    return {"paper_configuration_parameters": count}


def alignment_metrics(run: RunConfig, model: nn.Module, per_epoch: list[float]) -> dict[str, Any]:
    """``{"alignment": {"align", "weight", "tau", "loss_per_epoch"}}`` of a run trained with the
    auxiliary alignment loss (the learned temperature at the best checkpoint); ``{}`` without."""
    module = getattr(getattr(model, "item_encoder", None), "alignment", None)
    if module is None:
        return {}
    return {"alignment": {"align": run.align, "weight": run.align_weight, "tau": float(module.tau.detach()),
                          "loss_per_epoch": per_epoch}}


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


def epoch_row(epoch: int, train_loss: float, valid: dict[str, float], train_seconds: float,
              eval_seconds: float) -> dict[str, float]:
    """One ``train_log.csv`` row (:data:`LOG_COLUMNS`)."""
    return {"epoch": epoch, "train_loss": train_loss, **{f"valid_{m}": valid[m] for m in METRIC_NAMES},
            "train_seconds": train_seconds, "eval_seconds": eval_seconds}


def fit(
    run: RunConfig,
    data: SequenceData,
    model: nn.Module,
    encode: Callable[[Tensor], Tensor],
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    *,
    towers: Callable[[nn.Module], ItemTowers],
    scaler: torch.amp.GradScaler | None = None,
    item_chunk: int = ITEM_CHUNK,
    extra_metrics: dict[str, Any] | None = None,
    encode_train: TrainingEncoder | None = None,
) -> RunResult:
    """The training loop every trained method shares, then the final evaluation and outputs.

    ``model``: a :class:`~crossan.models.SequentialRecommender` on ``device``; ``encode``: item
    ids ``[N] -> [N, d]`` through its item encoder (:func:`make_item_encoder`, or the
    end-to-end inputs); ``optimizer`` over its trainable parameters. ``towers``: the best
    checkpoint's ``item_towers.h5`` content. ``scaler``: a gradient scaler for float16
    autocast (end-to-end runs on a GPU without bfloat16). ``item_chunk``: items encoded at
    once during evaluation. ``extra_metrics``: more ``metrics.json`` keys. ``encode_train``:
    the item encoder of training steps (:func:`make_training_encoder`: with the auxiliary
    alignment loss); default ``encode`` without one.
    """
    out_dir = Path(run.out_dir)
    log_popularity = log_popularity_from_counts(item_popularity_counts(data),
                                                smoothing=run.popularity_smoothing).to(device)
    trainable = count_trainable(model)
    generator = torch.Generator().manual_seed(run.seed)
    log.info("%s: %d trainable parameters, %d items, %d training users, on %s",
             run.method, trainable, data.n_items, int(data.train.trainable.sum()), device)
    evaluate = functools.partial(evaluate_model, model, encode, data, device,
                                 repeat_targets=run.repeat_targets, item_chunk=item_chunk)

    encode_train = encode_train or without_auxiliary(encode)
    rows: list[dict[str, float]] = []
    alignment: list[float] = []  # each epoch's mean weighted alignment loss per batch
    stopping = EarlyStopping(run.patience)
    for epoch in range(1, run.max_epochs + 1):
        model.train()
        started = time.perf_counter()
        total, positions, aligned, steps = 0.0, 0, 0.0, 0
        for step, batch in enumerate(train_batches(data, run.batch_size, generator, device=device)):
            loss, auxiliary = batch_loss(model, encode_train, batch, log_popularity, run.negatives)
            value = loss.detach()
            check_finite(value, epoch, step)
            optimizer_step(loss, optimizer, scaler)
            n = int((batch.targets != 0).sum())
            total += float(value) * n
            positions += n
            if auxiliary is not None:
                aligned, steps = aligned + float(auxiliary.detach()), steps + 1
        if steps:
            alignment.append(aligned / steps)
            log.info("epoch %d: alignment loss (x %g) %.4f per batch", epoch, run.align_weight, alignment[-1])
        sync_device(device)
        train_seconds = time.perf_counter() - started

        started = time.perf_counter()
        valid, _ = evaluate()["valid"]
        sync_device(device)
        eval_seconds = time.perf_counter() - started
        row = epoch_row(epoch, total / max(positions, 1), valid, train_seconds, eval_seconds)
        rows.append(row)
        log.info("epoch %d: loss %.4f, valid HR@10 %.4f NDCG@10 %.4f (%.1fs + %.1fs eval)",
                 epoch, row["train_loss"], valid["HR@10"], valid["NDCG@10"], train_seconds, eval_seconds)
        if stopping.update(model, epoch, valid["HR@10"]):
            log.info("early stop: no validation HR@10 improvement for %d epochs; best epoch %d",
                     run.patience, stopping.best_epoch)
            break

    stopping.restore(model)
    best_epoch = stopping.best_epoch
    model.eval()
    final = evaluate(splits=("valid", "test"))
    (valid, per_user_valid), (test, per_user_test) = final["valid"], final["test"]
    memory_mib, memory_kind = peak_memory(device)
    metrics = base_metrics(run, data, device) | {
        "valid": valid,
        "test": test,
        "best_epoch": best_epoch,
        "epochs_run": len(rows),
        "stopped_early": len(rows) < run.max_epochs,
        "trainable_parameters": trainable,
        "seconds_per_epoch": float(np.mean([r["train_seconds"] for r in rows])),
        "eval_seconds": float(np.mean([r["eval_seconds"] for r in rows])),
        "peak_memory_mib": memory_mib,
        "peak_memory_kind": memory_kind,
        **(extra_metrics or {}),
        **alignment_metrics(run, model, alignment),
        "config": asdict(run),
        "versions": versions(),
    }
    write_outputs(
        out_dir, metrics, rows,
        (data.valid.user_index, per_user_valid), (data.test.user_index, per_user_test),
        gates_payload(model), towers(model), data=data,
    )
    log.info("best epoch %d of %d: valid HR@10 %.4f, test HR@10 %.4f NDCG@10 %.4f -> %s",
             best_epoch, len(rows), valid["HR@10"], test["HR@10"], test["NDCG@10"], out_dir)
    return RunResult(out_dir, metrics, rows, per_user_valid, per_user_test, model)
