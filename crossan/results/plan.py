"""The experiment plan: which runs make each of the paper's tables and figures.

``config.yaml``'s ``experiments`` block (and a dataset's own ``catalog.{name}.experiments``,
key by key on top; ``settings`` merged method by method) says, per target, what varies:

* ``settings``: each method's tuned setting (paper section 5: hidden size and learning rate
  searched on validation data). Every row uses its method's setting except for the one
  thing its table varies. IISAN-E's is its best (h=1024, paper section 6.2).
* ``table1``: INDSAN vs CROSSAN on ``modalities`` (T+I), plus mutual information.
* ``table3``: IISAN (T+I) / IISAN-E (other sets) and CROSSAN on every set of ``modalities``;
  ``baselines`` (popularity, ID-SASRec) as reference rows; the ``end_to_end`` baselines (full
  fine-tuning, Adapter, LoRA; T+I, encoders in the training loop) as rows; one left out of
  ``end_to_end`` stays as a row marked "not run", never dropped.
* ``table4``: efficiency of the ``end_to_end`` baselines (T+I), IISAN-E at its best setting
  and at CROSSAN's hidden size, and CROSSAN, on ``modalities``.
* ``table5``: CROSSAN with each of ``fusions``; ``table6``: CROSSAN vs INDSAN;
  ``table7``: CROSSAN with each MOMEF ``topk``.
* ``table8``: the graph recommenders ``models`` on ``modalities``, then IISAN (T+I) and CROSSAN
  on ``modalities`` (the Table 3 runs).
* ``figure3``: IISAN-E and CROSSAN over ``hidden``; ``figure4``: CROSSAN's gates;
  ``figure5``: CROSSAN over ``hidden`` and over ``lr``.
* ``seeds`` (global or per target): one run per seed; tables then show mean ± std.
* ``targets``: the tables and figures ``all`` builds.

:func:`target_plan` turns this into a :class:`TargetPlan`: rows, each with the run names
of its seeds (:mod:`crossan.train.names` names), so a table is rebuilt from run directories
alone and every number can be traced to one.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from crossan.errors import ConfigError
from crossan.train.identity import run_fields, training_settings

TABLES: tuple[str, ...] = ("table1", "table3", "table4", "table5", "table6", "table7", "table8")
FIGURES: tuple[str, ...] = ("figure3", "figure4", "figure5")
TARGETS: tuple[str, ...] = TABLES + FIGURES

# The multimodal graph recommenders of Table 8 (crossan.models.graph.GRAPH_METHODS, named here
# so that building a table does not import torch).
GRAPH_ROWS: tuple[str, ...] = ("mmgcn", "grcn", "bm3", "freedom", "mgcn", "mhcr")
# The paper's plan (section 5 and the tables' captions); config.yaml shows it in full.
PAPER_PLAN: dict[str, Any] = {
    "targets": list(TARGETS),
    "seeds": [0],
    "settings": {
        "crossan": {"hidden": 512, "lr": 1e-4, "topk": 2},
        "indsan": {"hidden": 512, "lr": 1e-4, "topk": 2},
        "iisan": {"hidden": 512, "lr": 1e-4},
        "iisan-e": {"hidden": 1024, "lr": 1e-4},
        "id-sasrec": {"lr": 1e-4},
        # IISAN Code_Uncached/scripts/run_{fft,adapter,lora}.py: the recommender's learning rate
        # (the encoders' are training.e2e_text_lr / e2e_image_lr); h = 512 as in Table 4's counts
        "fft": {"lr": 1e-4},
        "adapter": {"hidden": 512, "lr": 2e-4},
        "lora": {"hidden": 512, "lr": 2e-4},
        # the graph recommenders: MMRec's embedding size and learning rate
        **{method: {"hidden": 64, "lr": 1e-3} for method in GRAPH_ROWS},
    },
    "table1": {"modalities": "TI"},
    "table3": {"modalities": ["TI", "TIA", "TIV", "TIVA"], "baselines": ["popularity", "id-sasrec"],
               "end_to_end": ["fft", "adapter", "lora"]},
    "table4": {"modalities": "TIVA", "end_to_end": ["fft", "adapter", "lora"]},
    "table5": {"modalities": "TIVA", "fusions": ["momef", "dynamic", "static", "concat"]},
    "table6": {"modalities": "TIVA"},
    "table7": {"modalities": "TIVA", "topk": [4, 3, 2, 1]},
    "table8": {"modalities": "TIVA", "models": list(GRAPH_ROWS)},
    "figure3": {"modalities": "TIVA", "hidden": [32, 64, 128, 256, 512, 1024, 2048, 4096, 8192]},
    "figure4": {"modalities": "TIVA"},
    "figure5": {
        "modalities": "TIVA",
        "hidden": [32, 64, 128, 256, 512, 1024, 2048, 4096, 8192],
        "lr": [1e-5, 5e-5, 1e-4, 5e-4, 1e-3],
    },
}
METHOD_LABELS: dict[str, str] = {
    "crossan": "CROSSAN", "indsan": "INDSAN", "iisan": "IISAN", "iisan-e": "IISAN-E",
    "id-sasrec": "SASRec (item IDs)", "popularity": "Popularity",
    "fft": "Full Finetuning", "adapter": "Adapter", "lora": "LoRA",
    "mmgcn": "MMGCN", "grcn": "GRCN", "bm3": "BM3", "freedom": "FREEDOM", "mgcn": "MGCN", "mhcr": "MHCR",
}
MODALITY_NAMES: dict[str, str] = {"T": "Text", "I": "Image", "V": "Video", "A": "Audio"}
FUSION_LABELS: dict[str, str] = {
    "momef": "MOMEF", "dynamic": "D-Gated Fusion", "static": "S-Gated Fusion", "concat": "Concat Fusion",
}
# Each target's caption (tables, figures and the HTML report).
CAPTIONS: dict[str, str] = {
    "table1": "Performance comparison between INDSAN (independent side adapters) and CROSSAN "
              "(cross-modal side adapters), and the mutual information between their text and "
              "image tower outputs.",
    "table3": "Performance comparison of CROSSAN with raw modalities (T, I, V, A: text, image, "
              "video, audio) against IISAN and its extension IISAN-E.",
    "table4": "Efficiency: TT training time (s per epoch), GM peak memory (MiB), TP trainable "
              "parameters; lower is better; improvement over IISAN-E.",
    "table5": "Ablation on the fusion method: MOMEF, dynamic (D-Gated) and static (S-Gated) "
              "gated fusion, and concatenation.",
    "table6": "Ablation: cross-modal (CROSSAN) vs independent (INDSAN) side adapters.",
    "table7": "Top-K experts of CROSSAN's MOMEF.",
    "table8": "Comparison with multimodal graph recommenders (MMRecs) on the same splits, item "
              "content and full-ranking evaluation.",
    "figure3": "Adapter hidden size vs test HR@10 for IISAN-E and CROSSAN.",
    "figure4": "CROSSAN's learned gates per tower: layers (bottom 0) x sources (H: the tower's "
               "own frozen hidden state; T, I, V, A: the previous adapter layer's output of that "
               "tower, zeros before layer 0 unless training.layer0_previous is frozen).",
    "figure5": "CROSSAN's sensitivity: adapter hidden size (top) and learning rate (bottom) vs "
               "test HR and NDCG at 10 and 20.",
}
# The paper's end-to-end baselines (encoders in the training loop), text + image only.
E2E_ROWS: tuple[str, ...] = ("fft", "adapter", "lora")
E2E_LETTERS = "TI"
NOT_RUN_NOTE = "not run: left out of experiments.{target}.end_to_end"


@dataclass(frozen=True)
class PlanRow:
    """One row of a table (or one point of a figure).

    ``runs``: one run name per seed; empty for a row the pipeline cannot produce (``note``
    says why). ``series``/``x``: a figure's line and x value (hidden size or learning rate).
    """

    label: str
    runs: tuple[str, ...] = ()
    method: str = ""
    note: str = ""
    series: str = ""
    x: float | None = None


@dataclass(frozen=True)
class Comparison:
    """An improvement row: ``ours`` against ``baseline`` (row labels of the same table)."""

    label: str
    ours: str
    baseline: str


@dataclass(frozen=True)
class TargetPlan:
    """The rows of one table or figure for one dataset, and its improvement rows."""

    target: str
    dataset: str
    rows: tuple[PlanRow, ...]
    comparisons: tuple[Comparison, ...] = field(default=())
    paper_dataset: str = ""  # "microlens-100k"/"microlens-50k": show the published values

    def runs(self) -> list[str]:
        """Every run name of the plan, once, in row order."""
        return list(dict.fromkeys(name for row in self.rows for name in row.runs))

    def row(self, label: str) -> PlanRow:
        for row in self.rows:
            if row.label == label:
                return row
        raise KeyError(f"{self.target} has no row {label!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TargetPlan:
        data = json.loads(text)
        return cls(
            target=data["target"], dataset=data["dataset"], paper_dataset=data.get("paper_dataset", ""),
            rows=tuple(PlanRow(**{**row, "runs": tuple(row["runs"])}) for row in data["rows"]),
            comparisons=tuple(Comparison(**c) for c in data["comparisons"]),
        )


def experiment_config(config: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    """:data:`PAPER_PLAN`, then the global ``experiments`` block, then the dataset's own:
    key by key, and ``settings`` and each target block merged one level deeper."""
    plan = copy.deepcopy(PAPER_PLAN)
    for layer in (config.get("experiments") or {}, config["catalog"][dataset].get("experiments") or {}):
        for key, value in layer.items():
            if key == "settings":
                for method, setting in value.items():
                    plan["settings"][method] = {**plan["settings"].get(method, {}), **setting}
            elif key in TARGETS:
                plan[key] = {**plan[key], **value}
            else:
                plan[key] = copy.deepcopy(value)
    return plan


def paper_dataset(config: Mapping[str, Any], dataset: str) -> str:
    """``microlens-100k``/``microlens-50k`` for a MicroLens dataset (the paper reports on
    them), else ``""``."""
    entry = config["catalog"][dataset]
    return f"microlens-{entry['variant']}" if entry.get("kind") == "microlens" else ""


def modality_label(letters: str) -> str:
    """``"TIVA" -> "T+I+V+A"``."""
    return "+".join(letters)


def modality_names(letters: str) -> str:
    """``"TIA" -> "Text+Image+Audio"``."""
    return "+".join(MODALITY_NAMES[letter] for letter in letters)


class _Planner:
    """Run names for one dataset's experiment plan."""

    def __init__(self, config: Mapping[str, Any], dataset: str) -> None:
        self.dataset = dataset
        self.plan = experiment_config(config, dataset)
        self.paper_dataset = paper_dataset(config, dataset)
        self.training = training_settings(config, dataset)  # digested into the names (crossan.train.identity)

    def seeds(self, target: str) -> list[int]:
        return list(self.plan[target].get("seeds", self.plan["seeds"]))

    def runs(self, target: str, method: str, modalities: str = "", **override: Any) -> tuple[str, ...]:
        """The run names (one per seed) of ``method`` at its setting, with ``override``."""
        from crossan.train.names import run_name
        from crossan.train.plan import SPEC_DEFAULTS
        from crossan.train.trainer import RunConfig

        setting = {**SPEC_DEFAULTS, **self.plan["settings"].get(method, {}), **override}
        names = []
        for seed in self.seeds(target):
            try:
                run = RunConfig(
                    data_dir="", features_dir="", out_dir="", dataset=self.dataset, method=method,
                    modalities=modalities or "TIVA", fusion=setting.get("fusion"), topk=int(setting["topk"]),
                    hidden=int(setting["hidden"]), lr=float(setting["lr"]), seed=seed,
                    **run_fields(self.training, method),
                )
            except ConfigError as error:
                raise ConfigError(f"experiments.{target} of dataset {self.dataset!r}: {error}") from error
            names.append(run_name(run))
        return tuple(dict.fromkeys(names))  # popularity has no seed: one run serves every seed

    def modalities(self, target: str) -> str:
        from crossan.train.data import modality_letters

        return modality_letters(self.plan[target]["modalities"])

    def target(self, target: str) -> TargetPlan:
        if target not in TARGETS:
            raise ConfigError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
        rows, comparisons = getattr(self, target)()
        return TargetPlan(target, self.dataset, tuple(rows), tuple(comparisons), self.paper_dataset)

    def end_to_end_rows(self, target: str) -> list[PlanRow]:
        """Full fine-tuning, Adapter and LoRA on T+I, in the paper's order; one left out of
        ``experiments.{target}.end_to_end`` is a row without runs, marked "not run"."""
        chosen = set(self.plan[target].get("end_to_end", E2E_ROWS))
        label = modality_label(E2E_LETTERS)
        return [PlanRow(f"{METHOD_LABELS[m]} ({label})", self.runs(target, m, E2E_LETTERS), m)
                if m in chosen else PlanRow(f"{METHOD_LABELS[m]} ({label})", note=NOT_RUN_NOTE.format(target=target))
                for m in E2E_ROWS]

    # ------------------------------------------------------------------ tables

    def table1(self):
        m = self.modalities("table1")
        if len(m) < 2:
            raise ConfigError(f"experiments.table1 of dataset {self.dataset!r}: the mutual information "
                              f"needs two modalities (e.g. TI), got {m}")
        return [PlanRow("INDSAN", self.runs("table1", "indsan", m), "indsan"),
                PlanRow("CROSSAN", self.runs("table1", "crossan", m), "crossan")], []

    def table3(self):
        from crossan.train.data import modality_letters

        block = self.plan["table3"]
        sets = [modality_letters(s) for s in block["modalities"]]
        rows = [PlanRow(METHOD_LABELS[b], self.runs("table3", b), b) for b in block.get("baselines", [])]
        rows += self.end_to_end_rows("table3")
        comparisons = []
        for letters in sets:
            method = "iisan" if letters == "TI" else "iisan-e"
            rows.append(PlanRow(f"{METHOD_LABELS[method]} ({modality_label(letters)})",
                                self.runs("table3", method, letters), method))
        for letters in sets:
            label = f"CROSSAN ({modality_label(letters)}) (ours)"
            rows.append(PlanRow(label, self.runs("table3", "crossan", letters), "crossan"))
            baseline = f"{'IISAN' if letters == 'TI' else 'IISAN-E'} ({modality_label(letters)})"
            comparisons.append(Comparison(modality_names(letters), label, baseline))
        return rows, comparisons

    def table4(self):
        m = self.modalities("table4")
        same_hidden = self.plan["settings"]["crossan"]["hidden"]
        label = modality_label(m)
        rows = self.end_to_end_rows("table4")
        rows += [
            PlanRow(f"IISAN-E_best ({label})", self.runs("table4", "iisan-e", m), "iisan-e"),
            PlanRow(f"IISAN-E_same ({label})", self.runs("table4", "iisan-e", m, hidden=same_hidden), "iisan-e"),
            PlanRow(f"CROSSAN ({label}) (ours)", self.runs("table4", "crossan", m), "crossan"),
        ]
        ours = rows[-1].label
        return rows, [Comparison("Improvement_best", ours, rows[-3].label),
                      Comparison("Improvement_same", ours, rows[-2].label)]

    def table5(self):
        m = self.modalities("table5")
        return [PlanRow(FUSION_LABELS[f], self.runs("table5", "crossan", m, fusion=f), "crossan")
                for f in self.plan["table5"]["fusions"]], []

    def table6(self):
        m = self.modalities("table6")
        return [PlanRow("Cross-modal", self.runs("table6", "crossan", m), "crossan"),
                PlanRow("Independent", self.runs("table6", "indsan", m), "indsan")], []

    def table7(self):
        m = self.modalities("table7")
        return [PlanRow(str(k), self.runs("table7", "crossan", m, topk=k, fusion="momef"), "crossan")
                for k in self.plan["table7"]["topk"]], []

    def table8(self):
        m = self.modalities("table8")
        rows = [PlanRow(METHOD_LABELS[model], self.runs("table8", model, m), model)
                for model in self.plan["table8"]["models"]]
        rows += [PlanRow(f"IISAN ({modality_label('TI')})", self.runs("table8", "iisan", "TI"), "iisan"),
                 PlanRow(f"CROSSAN ({modality_label(m)}) (ours)", self.runs("table8", "crossan", m), "crossan")]
        return rows, []

    # ------------------------------------------------------------------ figures

    def figure3(self):
        m = self.modalities("figure3")
        return [PlanRow(f"{METHOD_LABELS[method]} h={h}", self.runs("figure3", method, m, hidden=h), method,
                        series=METHOD_LABELS[method], x=float(h))
                for method in ("iisan-e", "crossan") for h in self.plan["figure3"]["hidden"]], []

    def figure4(self):
        m = self.modalities("figure4")
        return [PlanRow(f"CROSSAN ({modality_label(m)})", self.runs("figure4", "crossan", m), "crossan")], []

    def figure5(self):
        m = self.modalities("figure5")
        block = self.plan["figure5"]
        rows = [PlanRow(f"h={h}", self.runs("figure5", "crossan", m, hidden=h), "crossan", series="hidden", x=float(h))
                for h in block["hidden"]]
        rows += [PlanRow(f"lr={lr:g}", self.runs("figure5", "crossan", m, lr=lr), "crossan", series="lr", x=float(lr))
                 for lr in block["lr"]]
        return rows, []


def target_plan(config: Mapping[str, Any], dataset: str, target: str) -> TargetPlan:
    """The rows (and run names) of ``target`` for ``dataset``; :class:`ConfigError` names the
    block when a row is not a valid run (e.g. ``iisan`` on a set other than T+I)."""
    return _Planner(config, dataset).target(target)


def planned_targets(config: Mapping[str, Any], dataset: str) -> list[str]:
    """The targets ``all`` builds for ``dataset`` (``experiments.targets``)."""
    return list(experiment_config(config, dataset)["targets"])


def experiment_runs(config: Mapping[str, Any], dataset: str) -> list[str]:
    """Every run the dataset's planned targets read, once, in plan order."""
    planner = _Planner(config, dataset)
    names: list[str] = []
    for target in planner.plan["targets"]:
        names += planner.target(target).runs()
    return list(dict.fromkeys(names))
