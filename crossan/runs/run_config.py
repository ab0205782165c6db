"""``RunConfig``: one stage-2 run of any method, checked when it is made.

Its defaults are the vocabulary's for the fields a run name spells out
(:data:`~crossan.runs.vocabulary.NAME_DEFAULTS`) and the schema's for the ``training``
settings (:mod:`crossan.runs.settings`); nothing here repeats them. Paths are strings (the
config goes into ``metrics.json``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crossan.config import load_schema
from crossan.errors import ConfigError
from crossan.runs.settings import CONVENTIONS, training_default
from crossan.runs.vocabulary import (
    ALIGNMENTS,
    DEVICES,
    FUSIONS,
    METHODS,
    NAME_DEFAULTS,
    NO_FUSION,
    RUN_METHODS,
    SIDE_ADAPTER_METHODS,
    Method,
    modality_letters,
)

# the end-to-end runs' title length when none is given: the text encoder's, as stage 1 reads titles
TEXT_MAX_LENGTH: int = load_schema()["properties"]["encoders"]["properties"]["text"]["default"]["max_length"]
_POSITIVE_INTEGERS = ("topk", "hidden", "batch_size", "max_epochs", "patience", "max_len", "text_max_length",
                      "eval_batch_size", "graph_k", "moda_rank", "moda_experts")
_PATHS = ("data_dir", "features_dir", "out_dir", "media_dir", "text_model", "image_model", "graph_file")


@dataclass(frozen=True)
class RunConfig:
    """One training run (or the popularity baseline's counting).

    Named fields (:data:`~crossan.runs.vocabulary.NAME_FIELDS`): ``method``; ``modalities``,
    letters from ``TIVA`` in canonical order (``""`` for methods that read no content);
    ``fusion`` (``None`` = the method's default, resolved when made; ``"none"`` for methods
    without one); ``topk`` (MOMEF's k); ``hidden``, the method's size ``h``: the side adapters'
    and the Houlsby adapters' bottleneck, the LoRA rank, the graph recommenders' embedding size
    (:attr:`Method.size`); ``lr`` (end-to-end methods: the recommender's; their encoders have
    ``text_lr`` and ``image_lr``, ``None`` = ``lr``); ``align``/``align_weight``, the
    auxiliary tower-alignment loss of the side-adapter methods (off at 0); ``seed``.

    Training settings: the ``training`` keys of ``config.yaml`` the method uses
    (:attr:`Method.settings`), by field name (:data:`~crossan.runs.settings.SETTING_FIELDS`).
    ``graph_layer`` and ``graph_k`` say how the graph file was built: a graph run does not read
    them, they make part of its identity.

    Inputs, not part of its identity: ``data_dir`` (``results/{dataset}/data``),
    ``features_dir``, ``out_dir``, ``media_dir`` and the ``text_model``/``image_model``
    checkpoints with ``text_max_length`` (end-to-end runs), ``graph_file`` (graph
    recommenders), ``device`` (``auto``: CUDA when available). ``dataset``: the name used in
    the run name; default: ``data_dir``'s parent's name.
    """

    data_dir: str
    features_dir: str
    out_dir: str
    method: str = "crossan"
    modalities: str = NAME_DEFAULTS["modalities"]
    fusion: str | None = NAME_DEFAULTS["fusion"]
    topk: int = NAME_DEFAULTS["topk"]
    hidden: int = NAME_DEFAULTS["hidden"]
    lr: float = NAME_DEFAULTS["lr"]
    seed: int = NAME_DEFAULTS["seed"]
    batch_size: int = training_default("batch_size")
    max_epochs: int = training_default("max_epochs")
    patience: int = training_default("patience")
    max_len: int = training_default("max_len")
    device: str = DEVICES[0]
    weight_decay: float = training_default("weight_decay")
    standardize_states: bool = training_default("standardize_states")
    inter_tower: str = training_default("inter_tower")
    layer0_previous: str = training_default("layer0_previous")
    sequence_encoder: str = training_default("sequence_encoder")
    negatives: str = training_default("negatives")
    popularity_smoothing: str = training_default("popularity_smoothing")
    repeat_targets: str = training_default("repeat_targets")
    dataset: str = ""
    media_dir: str = ""
    text_model: str = ""
    image_model: str = ""
    text_max_length: int = TEXT_MAX_LENGTH
    text_lr: float | None = None
    image_lr: float | None = None
    lora_alpha: float = training_default("lora_alpha")
    gradient_checkpointing: bool = training_default("gradient_checkpointing")
    mixed_precision: bool = training_default("mixed_precision")
    eval_batch_size: int = training_default("eval_batch_size")
    lora_text_bias_lr: float = training_default("lora_text_bias_lr")
    lora_image_bias_lr: float = training_default("lora_image_bias_lr")
    lr_groups: str = training_default("lr_groups")
    cached_mixed_precision: bool = training_default("cached_mixed_precision")
    graph_file: str = ""
    graph_grid: dict[str, list[Any]] = field(default_factory=dict)
    graph_layer: int = training_default("graph_layer")
    graph_k: int = training_default("graph_k")
    graph_negatives: str = training_default("graph_negatives")
    grcn_routing: str = training_default("grcn_routing")
    mhcr_final_sum: str = training_default("mhcr_final_sum")
    align: str = NAME_DEFAULTS["align"]
    align_weight: float = NAME_DEFAULTS["align_weight"]
    moda_rank: int = training_default("moda_rank")
    moda_experts: int = training_default("moda_experts")

    def __post_init__(self) -> None:
        for name in _PATHS:
            object.__setattr__(self, name, str(getattr(self, name)))
        if self.method not in RUN_METHODS:
            raise ConfigError(f"unknown method {self.method!r}; choose from {', '.join(RUN_METHODS)}")
        self._resolve_content()
        self._check_numbers()
        for name, choices in {**CONVENTIONS, "device": DEVICES, "align": ALIGNMENTS}.items():
            if getattr(self, name) not in choices:
                raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        self._resolve_alignment()
        if not self.dataset:
            object.__setattr__(self, "dataset", default_dataset_name(self.data_dir))

    @property
    def info(self) -> Method:
        """The run's :class:`~crossan.runs.vocabulary.Method`."""
        return METHODS[self.method]

    @property
    def family(self) -> str:
        return self.info.family

    @property
    def uses_content(self) -> bool:
        return self.info.reads_content

    def model_fusion(self) -> str | None:
        """The fusion to build the model with: ``None`` for the method's default."""
        return None if self.fusion in (None, NO_FUSION) else self.fusion

    def resolved_fusion(self) -> str:
        """The fusion actually used (resolved when the run is made)."""
        return self.fusion or self.info.default_fusion

    def _resolve_content(self) -> None:
        """Canonical ``modalities`` and a resolved ``fusion``; what the method fixes is checked."""
        info = self.info
        if not info.reads_content:  # no content: modalities and fusion do not apply
            object.__setattr__(self, "modalities", "")
            object.__setattr__(self, "fusion", NO_FUSION)
            return
        try:
            object.__setattr__(self, "modalities", modality_letters(self.modalities))
        except ValueError as error:
            raise ConfigError(f"modalities {self.modalities!r}: {error}") from error
        if self.method == "iisan" and self.modalities != "TI":
            raise ConfigError(f"iisan is the text+image method; use iisan-e for {self.modalities}")
        fixed_fusion = info.fixed.get("fusion")
        if info.fixed.get("modalities", self.modalities) != self.modalities:
            raise ConfigError(f"{self.method} trains BERT and ViT end to end: text+image only "
                              f"(modalities {info.fixed['modalities']}), got {self.modalities}")
        if fixed_fusion and self.fusion not in (None, fixed_fusion):
            raise ConfigError(f"{self.method} fuses text and image by concatenation; fusion "
                              f"{self.fusion!r} is not available for it")
        if info.default_fusion == NO_FUSION and self.fusion not in (None, NO_FUSION):
            raise ConfigError(f"{self.method} combines its modalities itself; fusion must be none, "
                              f"got {self.fusion!r}")
        if self.fusion is not None and self.fusion not in (*FUSIONS, NO_FUSION):
            raise ConfigError(f"unknown fusion {self.fusion!r}; choose from {', '.join(FUSIONS)}")
        if info.default_fusion == NO_FUSION:
            object.__setattr__(self, "fusion", NO_FUSION)

    def _check_numbers(self) -> None:
        for name in _POSITIVE_INTEGERS:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.graph_layer, int) or isinstance(self.graph_layer, bool):
            raise ConfigError(f"graph_layer must be an integer, got {self.graph_layer!r}")
        if not (isinstance(self.seed, int) and self.seed >= 0):
            raise ConfigError(f"seed must be an integer >= 0, got {self.seed!r}")
        for name in ("lr", "lora_alpha", "text_lr", "image_lr"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number, got {value!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.moda_rank % self.moda_experts:
            raise ConfigError(f"moda_rank {self.moda_rank} must be a multiple of moda_experts {self.moda_experts} "
                              "(the rank is split evenly over the experts)")

    def _resolve_alignment(self) -> None:
        if isinstance(self.align_weight, bool) or not (math.isfinite(self.align_weight) and self.align_weight >= 0):
            raise ConfigError(f"align_weight must be a number >= 0, got {self.align_weight!r}")
        object.__setattr__(self, "align_weight", float(self.align_weight))
        if self.align_weight == 0:
            object.__setattr__(self, "align", ALIGNMENTS[0])  # off: one canonical value, so equal runs compare equal
        elif self.method not in SIDE_ADAPTER_METHODS:
            raise ConfigError(f"align_weight applies to the side-adapter methods ({', '.join(SIDE_ADAPTER_METHODS)}), "
                              f"whose modality towers it aligns; {self.method} has none")


def default_dataset_name(data_dir: str | Path) -> str:
    """``results/demo/data`` -> ``demo``; any other folder -> its own name."""
    path = Path(data_dir).resolve()
    return path.parent.name if path.name == "data" and path.parent.name else path.name
