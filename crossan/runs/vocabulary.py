"""The vocabulary of methods and runs: every method once, and every choice a run can make.

A :class:`Method` says everything the rest of the code asks about a method: its family
(which trainer runs it and which model folder holds it), the fields its run name spells out,
the ``training`` settings that change its results (so its name's ``-x`` digest covers them),
its default fusion, its label in tables, whether it reads item content, and what its size
``h`` (the run name's ``-h``) means. Adding a method is one entry in :data:`METHODS` plus its
model and, for a new family, its trainer.

Choices of the ``training`` block (the conventions where the paper is silent) are read from the
config schema, ``workflow/schemas/config.schema.yaml``, whose descriptions name each value's
source; their defaults are the schema's too (:mod:`crossan.runs.settings`). The method names,
fusions and alignment losses are defined here; the schema, which validates ``config.yaml``
before any of this runs, lists them too, and ``tests/test_trainer.py`` checks that it lists
these.

Standard library only: the workflow plans with it, and model code imports it without cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

# ------------------------------------------------------------------------- modalities

# The paper's four modalities in its canonical order, by their one-letter names.
MODALITY_LETTERS: Mapping[str, str] = MappingProxyType({"T": "text", "I": "image", "V": "video", "A": "audio"})
MODALITIES: tuple[str, ...] = tuple(MODALITY_LETTERS.values())
ALL_LETTERS = "".join(MODALITY_LETTERS)  # "TIVA"
MODALITY_WORDS: Mapping[str, str] = MODALITY_LETTERS  # "T" -> "text", for captions

# ------------------------------------------------------------------------- choices of a run

FUSIONS: tuple[str, ...] = ("momef", "dynamic", "static", "concat")
NO_FUSION = "none"  # methods that fuse nothing (ID-SASRec, popularity) or fuse inside the model (graphs)
FUSION_LABELS: Mapping[str, str] = MappingProxyType({
    "momef": "MOMEF", "dynamic": "D-Gated Fusion", "static": "S-Gated Fusion", "concat": "Concat Fusion",
})
# the auxiliary tower-alignment losses (beyond the paper): SDA's structural alignment, InfoNCE
ALIGNMENTS: tuple[str, ...] = ("cmsa", "infonce")
ALIGN_LABELS: Mapping[str, str] = MappingProxyType({"cmsa": "CMSA", "infonce": "InfoNCE"})
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
# Full-ranking cutoffs and the metrics every run reports, in metrics.json's order.
KS: tuple[int, ...] = (10, 20)
METRIC_NAMES: tuple[str, ...] = tuple(f"{metric}@{k}" for k in KS for metric in ("HR", "NDCG"))

# ------------------------------------------------------------------------- families

CACHED_STATE = "cached-state"  # SASRec over side adapters on cached states, or over item IDs
END_TO_END = "end-to-end"  # BERT and ViT in the training loop
GRAPH = "graph"  # multimodal graph recommenders on the training graph
POPULARITY_FAMILY = "popularity"  # no training: items by training-split count
FAMILIES: tuple[str, ...] = (CACHED_STATE, END_TO_END, GRAPH, POPULARITY_FAMILY)

# ------------------------------------------------------------------------- name fields and settings

# Every field a run name can spell out, in the order it is written.
NAME_FIELDS: tuple[str, ...] = ("modalities", "fusion", "topk", "hidden", "lr", "align", "seed")
# The value of each name field a spec, a plan or a command leaves out.
NAME_DEFAULTS: Mapping[str, Any] = MappingProxyType({
    "modalities": ALL_LETTERS, "fusion": None, "topk": 2, "hidden": 512, "lr": 1e-4, "seed": 0,
    "align": ALIGNMENTS[0], "align_weight": 0.0,
})

_SIDE_ADAPTER_FIELDS = ("modalities", "fusion", "topk", "hidden", "lr", "align", "seed")
# the sequential models' training loop (SASRec on item IDs or on adapted states)
_LOOP = ("batch_size", "max_epochs", "patience", "max_len", "weight_decay")
# conventions every trained sequential model follows
_SEQUENTIAL_CONVENTIONS = ("sequence_encoder", "negatives", "popularity_smoothing", "repeat_targets")
# lr_groups and cached_mixed_precision: IISAN Code_Cached/run.py's optimiser groups and fp16 autocast
_SIDE_ADAPTER_SETTINGS = (*_LOOP, "standardize_states", "layer0_previous", *_SEQUENTIAL_CONVENTIONS, "lr_groups",
                          "cached_mixed_precision")
# gradient_checkpointing, mixed_precision and eval_batch_size change the end-to-end runs' time
# and memory (Table 4), if not their metrics
_END_TO_END_SETTINGS = ("e2e_batch_size", "max_epochs", "patience", "max_len", "weight_decay",
                        "standardize_states", "e2e_text_lr", "e2e_image_lr", "gradient_checkpointing",
                        "mixed_precision", "eval_batch_size", *_SEQUENTIAL_CONVENTIONS)
# graph_layer and graph_k build the graph file the run reads (with max_len and standardize_states)
_GRAPH_SETTINGS = ("graph_batch_size", "graph_max_epochs", "graph_patience", "max_len", "weight_decay",
                   "standardize_states", "graph_grid", "graph_layer", "graph_k", "repeat_targets",
                   "graph_negatives")


@dataclass(frozen=True)
class Method:
    """One method: what its runs are named by, what they use, and who trains them.

    ``name_fields``: the fields of :data:`NAME_FIELDS` its run name writes, in that order.
    ``settings``: the ``config.yaml`` ``training`` keys that change its results.
    ``fixed``: run fields the method always has (IISAN is T+I; the end-to-end baselines are T+I,
    concat): a run spec or command that leaves them out gets these.
    ``default_fusion``: the fusion a run gets when its spec names none (:data:`NO_FUSION` for
    methods that fuse nothing themselves). ``size``: what the run name's ``h`` is for it.
    """

    name: str
    label: str
    family: str
    name_fields: tuple[str, ...]
    settings: tuple[str, ...]
    default_fusion: str = NO_FUSION
    reads_content: bool = True
    size: str = ""
    fixed: Mapping[str, Any] = field(default_factory=dict)

    @property
    def has_towers(self) -> bool:
        """Side adapters with one tower per modality (the alignment loss aligns them)."""
        return self.family == CACHED_STATE and self.reads_content

    @property
    def has_topk(self) -> bool:
        """MOMEF by default: one expert per modality, of which the top k are mixed."""
        return self.default_fusion == "momef"


def _side_adapter(name: str, label: str, fusion: str, *extra_settings: str,
                  fixed: Mapping[str, Any] = MappingProxyType({})) -> Method:
    return Method(name, label, CACHED_STATE, _SIDE_ADAPTER_FIELDS, (*_SIDE_ADAPTER_SETTINGS, *extra_settings),
                  default_fusion=fusion, size="adapter bottleneck", fixed=fixed)


def _end_to_end(name: str, label: str, name_fields: tuple[str, ...], size: str, *extra: str) -> Method:
    return Method(name, label, END_TO_END, name_fields, (*_END_TO_END_SETTINGS, *extra), default_fusion="concat",
                  size=size, fixed=MappingProxyType({"modalities": "TI", "fusion": "concat"}))


def _graph(name: str, label: str, *extra_settings: str) -> Method:
    return Method(name, label, GRAPH, ("modalities", "hidden", "lr", "seed"), (*_GRAPH_SETTINGS, *extra_settings),
                  size="embedding size")


# Every method, in the order the schema and the command line list them.
METHODS: Mapping[str, Method] = MappingProxyType({method.name: method for method in (
    _side_adapter("crossan", "CROSSAN", "momef"),
    _side_adapter("indsan", "INDSAN", "momef"),
    _side_adapter("iisan", "IISAN", "concat", "inter_tower", fixed=MappingProxyType({"modalities": "TI"})),
    _side_adapter("iisan-e", "IISAN-E", "concat", "inter_tower"),
    _side_adapter("crossan-moda", "CROSSAN-MoDA", "momef", "moda_rank", "moda_experts"),
    Method("id-sasrec", "SASRec (item IDs)", CACHED_STATE, ("lr", "seed"), (*_LOOP, *_SEQUENTIAL_CONVENTIONS),
           reads_content=False),
    # counts the training items: no loop, no states, no seed
    Method("popularity", "Popularity", POPULARITY_FAMILY, (), ("repeat_targets",), reads_content=False),
    _end_to_end("fft", "Full Finetuning", ("lr", "seed"), ""),
    _end_to_end("adapter", "Adapter", ("hidden", "lr", "seed"), "adapter bottleneck"),
    _end_to_end("lora", "LoRA", ("hidden", "lr", "seed"), "LoRA rank", "lora_alpha", "lora_text_bias_lr",
                "lora_image_bias_lr"),
    _graph("mmgcn", "MMGCN"),
    _graph("grcn", "GRCN", "grcn_routing"),
    _graph("bm3", "BM3"),
    _graph("freedom", "FREEDOM"),
    _graph("mgcn", "MGCN"),
    _graph("mhcr", "MHCR", "mhcr_final_sum"),
)})


def methods_of(family: str) -> tuple[str, ...]:
    """The names of ``family``'s methods, in :data:`METHODS` order."""
    return tuple(name for name, method in METHODS.items() if method.family == family)


RUN_METHODS: tuple[str, ...] = tuple(METHODS)
CACHED_STATE_METHODS: tuple[str, ...] = methods_of(CACHED_STATE)
END_TO_END_METHODS: tuple[str, ...] = methods_of(END_TO_END)
GRAPH_METHODS: tuple[str, ...] = methods_of(GRAPH)
POPULARITY = "popularity"
# the side-adapter methods: modality towers on cached states (the alignment loss applies to them)
SIDE_ADAPTER_METHODS: tuple[str, ...] = tuple(name for name, method in METHODS.items() if method.has_towers)
TOPK_METHODS: tuple[str, ...] = tuple(name for name, method in METHODS.items() if method.has_topk)
METHOD_LABELS: Mapping[str, str] = MappingProxyType({name: method.label for name, method in METHODS.items()})
E2E_LETTERS = "TI"  # the end-to-end baselines' only modalities (the paper fits no more encoders on a GPU)


def modality_letters(spec: str) -> str:
    """``"tiva"``, ``"AT"`` -> canonical letters in T, I, V, A order (``"TIVA"``, ``"TA"``);
    ``ValueError`` for other letters, repeats or an empty set."""
    letters = spec.upper()
    unknown = sorted(set(letters) - set(MODALITY_LETTERS))
    if unknown or len(set(letters)) != len(letters) or not letters:
        raise ValueError(f"modalities must be distinct letters from {ALL_LETTERS}, got {spec!r}")
    return "".join(letter for letter in MODALITY_LETTERS if letter in letters)


def modality_names(letters: str) -> tuple[str, ...]:
    """``"TA"`` -> ``("text", "audio")`` (canonical order)."""
    return tuple(MODALITY_LETTERS[letter] for letter in modality_letters(letters))
