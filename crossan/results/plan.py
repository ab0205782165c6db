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

Beyond the paper (:data:`BEYOND_TARGETS`, written under ``results/{dataset}/beyond/``):

* ``tableB1``: CROSSAN with and without the auxiliary tower-alignment loss (``align``,
  ``align_weight``) on every set of ``modalities``, plus mutual information as in Table 1; the
  plain CROSSAN rows are the runs Tables 1 and 3 read (same setting, same names).
* ``tableB2``: CROSSAN vs CROSSAN-MoDA (one shared adapter tower with modality-gated low-rank
  experts) on ``modalities``, both at CROSSAN's setting: parameters, time and test metrics.
* ``tableB3``: test HR/NDCG@10 by the popularity of the target item (head, torso, tail) of
  CROSSAN and IISAN(-E) on ``modalities``, the ``end_to_end`` baselines and the graph
  recommenders ``models``; ``figureB1`` draws its HR@10 (its rows, without the not-run ones).

A dataset that declares fewer modalities (``catalog.{name}.modalities``) gets a plan restricted
to them: every modality set loses the letters the dataset lacks (T+I+V+A becomes T for a
text-only dataset; a set with none of its letters is a ``ConfigError``), the end-to-end rows and
Table 8's IISAN (T+I) row stay as rows marked "not run" without text and image, while Table 3's
IISAN (T+I) row follows its set (:meth:`_Planner.iisan_row`: IISAN on T+I itself, IISAN-E on any
other set): T+I restricted becomes, e.g., T, whose row is IISAN-E (T), kept once with the other
sets that restrict to T (no IISAN (T+I) row), MOMEF's top-k is clamped to
the number of modalities, Table 1 (two towers' mutual information) is left out with fewer
than two (:func:`dropped_targets` says why), and so is Table B1 when none of its sets keeps two
(a set that keeps one is left out with a note), and with one modality Table 6's INDSAN row reads
CROSSAN's runs, the two being the same model. Each such change is a note of the
:class:`TargetPlan`, printed under the table, and captions name the dataset's modalities.

:func:`target_plan` turns this into a :class:`TargetPlan`: rows, each with the run names
of its seeds (:mod:`crossan.runs.identity` names), so a table is rebuilt from run directories
alone and every number can be traced to one.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from crossan.config import dataset_letters
from crossan.errors import ConfigError
from crossan.results.captions import CAPTIONS, modality_words, target_caption
from crossan.runs.identity import parse_run_name, run_name
from crossan.runs.specs import configured_run
from crossan.runs.vocabulary import (
    ALIGN_LABELS,
    ALL_LETTERS,
    E2E_LETTERS,
    END_TO_END_METHODS,
    FUSION_LABELS,
    GRAPH_METHODS,
    METHOD_LABELS,
    MODALITY_WORDS,
    NAME_DEFAULTS,
    TOPK_METHODS,
    modality_letters,
)

TABLES: tuple[str, ...] = ("table1", "table3", "table4", "table5", "table6", "table7", "table8")
FIGURES: tuple[str, ...] = ("figure3", "figure4", "figure5")
# Beyond the paper (issue 17): separate from the paper's, written under results/{dataset}/beyond/.
BEYOND_TABLES: tuple[str, ...] = ("tableB1", "tableB2", "tableB3")
BEYOND_FIGURES: tuple[str, ...] = ("figureB1",)
BEYOND_TARGETS: tuple[str, ...] = BEYOND_TABLES + BEYOND_FIGURES
TARGETS: tuple[str, ...] = TABLES + FIGURES + BEYOND_TARGETS

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
        **{method: {"hidden": 64, "lr": 1e-3} for method in GRAPH_METHODS},
    },
    "table1": {"modalities": "TI"},
    "table3": {"modalities": ["TI", "TIA", "TIV", "TIVA"], "baselines": ["popularity", "id-sasrec"],
               "end_to_end": ["fft", "adapter", "lora"]},
    "table4": {"modalities": "TIVA", "end_to_end": ["fft", "adapter", "lora"]},
    "table5": {"modalities": "TIVA", "fusions": ["momef", "dynamic", "static", "concat"]},
    "table6": {"modalities": "TIVA"},
    "table7": {"modalities": "TIVA", "topk": [4, 3, 2, 1]},
    "table8": {"modalities": "TIVA", "models": list(GRAPH_METHODS)},
    "figure3": {"modalities": "TIVA", "hidden": [32, 64, 128, 256, 512, 1024, 2048, 4096, 8192]},
    "figure4": {"modalities": "TIVA"},
    "figure5": {
        "modalities": "TIVA",
        "hidden": [32, 64, 128, 256, 512, 1024, 2048, 4096, 8192],
        "lr": [1e-5, 5e-5, 1e-4, 5e-4, 1e-3],
    },
    # beyond the paper
    "tableB1": {"modalities": ["TI", "TIVA"], "align": "cmsa", "align_weight": 0.1},
    "tableB2": {"modalities": "TIVA"},
    "tableB3": {"modalities": "TIVA", "end_to_end": ["fft", "adapter", "lora"], "models": list(GRAPH_METHODS)},
    "figureB1": {},  # tableB3's rows
}
NOT_RUN_NOTE = "not run: left out of experiments.{target}.end_to_end"
NEEDS_TI_NOTE = "not run: {method} needs text and image, and dataset '{dataset}' declares {words}"
# A target whose rows are another's (its block holds its seeds at most).
ROWS_OF: dict[str, str] = {"figureB1": "tableB3"}
# A method planned at another's setting (experiments.settings has none of its own): the shared tower
# at CROSSAN's (Table B2).
SETTING_OF: dict[str, str] = {"crossan-moda": "crossan"}


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
    caption: str = ""  # "" = the paper's (CAPTIONS); else the dataset's modalities are named
    notes: tuple[str, ...] = field(default=())  # how the plan departs from the paper's

    @property
    def title(self) -> str:
        """The caption to print: :attr:`caption`, else the paper's."""
        return self.caption or CAPTIONS[self.target]

    def runs(self) -> list[str]:
        """Every run name of the plan, once, in row order."""
        return list(dict.fromkeys(name for row in self.rows for name in row.runs))

    def row(self, label: str) -> PlanRow:
        for row in self.rows:
            if row.label == label:
                return row
        raise KeyError(f"{self.target} has no row {label!r}")

    def to_json(self) -> str:
        record = asdict(self)
        for key in ("caption", "notes"):  # left out when empty: a full dataset's plan reads as before
            if not record[key]:
                del record[key]
        return json.dumps(record, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TargetPlan:
        data = json.loads(text)
        return cls(
            target=data["target"], dataset=data["dataset"], paper_dataset=data.get("paper_dataset", ""),
            rows=tuple(PlanRow(**{**row, "runs": tuple(row["runs"])}) for row in data["rows"]),
            comparisons=tuple(Comparison(**c) for c in data["comparisons"]),
            caption=data.get("caption", ""), notes=tuple(data.get("notes", ())),
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


def method_setting(plan: Mapping[str, Any], method: str) -> dict[str, Any]:
    """The setting (``hidden``, ``lr``, ``topk``) ``method``'s rows use in ``plan`` (an
    :func:`experiment_config`): its own in ``settings``, or that of the method it is planned at
    (:data:`SETTING_OF`); empty when it has neither (the name defaults then apply)."""
    return dict(plan["settings"].get(SETTING_OF.get(method, method), {}))


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
    return "+".join(MODALITY_WORDS[letter].capitalize() for letter in letters)


class _Planner:
    """Run names for one dataset's experiment plan, restricted to the dataset's modalities."""

    def __init__(self, config: Mapping[str, Any], dataset: str) -> None:
        self.dataset = dataset
        self.plan = experiment_config(config, dataset)
        self.paper_dataset = paper_dataset(config, dataset)
        self.config = config  # its training settings are digested into the names (crossan.runs.identity)
        self.available = dataset_letters(config, dataset)
        self.notes: list[str] = []  # the current target's
        self.restricted: dict[str, str] = {}  # the current target's planned set -> the one used
        self.clamped: dict[int, int] = {}  # the current target's MOMEF top-k -> the one used

    def seeds(self, target: str) -> list[int]:
        """The target's own seeds, else (a target drawn from another's rows) that one's, else the global ones."""
        if "seeds" not in self.plan[target] and target in ROWS_OF:
            return self.seeds(ROWS_OF[target])
        return list(self.plan[target].get("seeds", self.plan["seeds"]))

    def runs(self, target: str, method: str, modalities: str = "", **override: Any) -> tuple[str, ...]:
        """The run names (one per seed) of ``method`` at its setting, with ``override``; MOMEF's
        top-k clamped to the number of modalities (one expert each)."""
        setting = {**NAME_DEFAULTS, **method_setting(self.plan, method), **override}
        topk = int(setting["topk"])
        if method in TOPK_METHODS and modalities and topk > len(modalities):
            if setting.get("fusion") in (None, "momef"):
                self.clamped[topk] = len(modalities)
            topk = len(modalities)
        names = []
        for seed in self.seeds(target):
            try:
                run = configured_run(
                    self.config, self.dataset, method, modalities=modalities or ALL_LETTERS, fusion=setting.get("fusion"),
                    topk=topk, hidden=int(setting["hidden"]), lr=float(setting["lr"]), seed=seed,
                    align=setting["align"], align_weight=float(setting["align_weight"]),
                )
            except ConfigError as error:
                raise ConfigError(f"experiments.{target} of dataset {self.dataset!r}: {error}") from error
            names.append(run_name(run))
        return tuple(dict.fromkeys(names))  # popularity has no seed: one run serves every seed

    def restrict(self, target: str, letters: str) -> str:
        """``letters`` without the modalities the dataset does not declare."""
        kept = "".join(letter for letter in letters if letter in self.available)
        if not kept:
            raise ConfigError(
                f"experiments.{target} of dataset {self.dataset!r}: modalities {letters} include none of "
                f"the dataset's ({modality_words(self.available)}, key 'catalog.{self.dataset}.modalities'); "
                "plan the target on those"
            )
        if kept != letters:
            self.restricted[letters] = kept
        return kept

    def modalities(self, target: str) -> str:
        return self.restrict(target, modality_letters(self.plan[target]["modalities"]))

    def planned_sets(self, target: str) -> list[str]:
        """The sets of the target's list ``modalities``, as canonical letters."""
        return [modality_letters(s) for s in self.plan[target]["modalities"]]

    def modality_sets(self, target: str) -> list[str]:
        """Each set of the target's list ``modalities``, restricted, once each in order."""
        return list(dict.fromkeys(self.restrict(target, letters) for letters in self.planned_sets(target)))

    def tower_pairs(self, target: str) -> list[str]:
        """The sets of ``target`` that keep two or more of the dataset's modalities (towers to
        compare), restricted, once each; never a ``ConfigError`` (:meth:`dropped` asks)."""
        kept = ("".join(letter for letter in letters if letter in self.available) for letters in self.planned_sets(target))
        return list(dict.fromkeys(letters for letters in kept if len(letters) >= 2))

    def has_text_and_image(self) -> bool:
        return all(letter in self.available for letter in E2E_LETTERS)

    def needs_ti_note(self, method: str) -> str:
        return NEEDS_TI_NOTE.format(method=METHOD_LABELS[method], dataset=self.dataset,
                                    words=modality_words(self.available))

    def dropped(self, target: str) -> str:
        """Why ``target`` cannot be built for this dataset, or ``""``."""
        if target == "table1":
            wanted = self.modalities("table1")
            if len(wanted) < 2:
                planned = modality_letters(self.plan["table1"]["modalities"])
                reason = (f"Table 1 compares two towers' outputs (mutual information), and of the planned "
                          f"{modality_label(planned)} dataset {self.dataset!r} declares only {modality_words(wanted)}")
                if len(self.available) >= 2:
                    reason += (f"; set catalog.{self.dataset}.experiments.table1.modalities to two of "
                               f"{self.available} to build it")
                return reason
        if target == "tableB1" and not self.tower_pairs("tableB1"):
            planned = ", ".join(modality_label(letters) for letters in self.planned_sets("tableB1"))
            return (f"Table B1 aligns two or more towers' outputs, and of the planned {planned} dataset "
                    f"{self.dataset!r} declares at most one per set ({modality_words(self.available)})")
        return ""

    def target(self, target: str) -> TargetPlan:
        if target not in TARGETS:
            raise ConfigError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
        self.notes, self.restricted, self.clamped = [], {}, {}
        if reason := self.dropped(target):
            raise ConfigError(f"experiments.{target} of dataset {self.dataset!r}: {reason}")
        rows, comparisons = getattr(self, target)()
        notes = []
        if self.restricted:
            changes = ", ".join(f"{modality_label(a)} -> {modality_label(b)}" for a, b in self.restricted.items())
            notes.append(f"Modalities restricted to the dataset's ({modality_words(self.available)}, "
                         f"catalog.{self.dataset}.modalities): {changes}.")
        if self.clamped:
            ks = ", ".join(str(k) for k in sorted(self.clamped, reverse=True))
            n = min(self.clamped.values())
            notes.append(f"MOMEF top-k {ks} clamped to {n}: k is at most the number of modalities "
                         f"(one expert each).")
        notes += self.notes
        letters = self.modalities(target) if target in ("table1", "figure4") else self.available
        caption = target_caption(target, self.available, letters)
        return TargetPlan(target, self.dataset, tuple(rows), tuple(comparisons), self.paper_dataset,
                          caption="" if caption == CAPTIONS[target] else caption, notes=tuple(notes))

    def end_to_end_rows(self, target: str) -> list[PlanRow]:
        """Full fine-tuning, Adapter and LoRA on T+I, in the paper's order; one left out of
        ``experiments.{target}.end_to_end`` (of the target it takes its rows from, :data:`ROWS_OF`),
        or any on a dataset without text and image, is a row without runs, marked "not run"."""
        chosen = set(self.plan[ROWS_OF.get(target, target)].get("end_to_end", END_TO_END_METHODS))
        label = modality_label(E2E_LETTERS)
        rows = []
        for m in END_TO_END_METHODS:
            if not self.has_text_and_image():
                rows.append(PlanRow(f"{METHOD_LABELS[m]} ({label})", note=self.needs_ti_note(m)))
            elif m in chosen:
                rows.append(PlanRow(f"{METHOD_LABELS[m]} ({label})", self.runs(target, m, E2E_LETTERS), m))
            else:
                rows.append(PlanRow(f"{METHOD_LABELS[m]} ({label})",
                                    note=NOT_RUN_NOTE.format(target=ROWS_OF.get(target, target))))
        return rows

    def iisan_row(self, target: str, letters: str) -> PlanRow:
        """IISAN on T+I, IISAN-E on any other set (at its best setting)."""
        method = "iisan" if letters == "TI" else "iisan-e"
        return PlanRow(f"{METHOD_LABELS[method]} ({modality_label(letters)})", self.runs(target, method, letters), method)

    # ------------------------------------------------------------------ tables

    def table1(self):
        m = self.modalities("table1")  # two or more: dropped() stops the target otherwise
        return [PlanRow("INDSAN", self.runs("table1", "indsan", m), "indsan"),
                PlanRow("CROSSAN", self.runs("table1", "crossan", m), "crossan")], []

    def table3(self):
        block = self.plan["table3"]
        sets = self.modality_sets("table3")
        rows = [PlanRow(METHOD_LABELS[b], self.runs("table3", b), b) for b in block.get("baselines", [])]
        rows += self.end_to_end_rows("table3")
        comparisons = []
        iisan = [self.iisan_row("table3", letters) for letters in sets]
        rows += iisan
        for letters, baseline in zip(sets, iisan):
            label = f"CROSSAN ({modality_label(letters)}) (ours)"
            rows.append(PlanRow(label, self.runs("table3", "crossan", letters), "crossan"))
            comparisons.append(Comparison(modality_names(letters), label, baseline.label))
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
        if len(m) == 1:
            self.notes.append(
                f"With one modality ({MODALITY_WORDS[m]}) D-Gated and S-Gated fusion weight the single tower "
                "by 1 (the same function), and MOMEF is its one expert, a linear layer like Concat's: the "
                "rows differ by their initialisation only.")
        return [PlanRow(FUSION_LABELS[f], self.runs("table5", "crossan", m, fusion=f), "crossan")
                for f in self.plan["table5"]["fusions"]], []

    def table6(self):
        m = self.modalities("table6")
        crossan = self.runs("table6", "crossan", m)
        if len(m) == 1:  # the same model: train it once
            return [PlanRow("Cross-modal", crossan, "crossan"),
                    PlanRow("Independent", crossan, "crossan", note=(
                        f"INDSAN and CROSSAN coincide with one modality ({MODALITY_WORDS[m]}): each layer's "
                        "gate mixes the tower's frozen state with the tower's own previous output either way, "
                        "so this row reads the Cross-modal row's runs"))], []
        return [PlanRow("Cross-modal", crossan, "crossan"),
                PlanRow("Independent", self.runs("table6", "indsan", m), "indsan")], []

    def table7(self):
        m = self.modalities("table7")
        ks = list(dict.fromkeys(min(int(k), len(m)) for k in self.plan["table7"]["topk"]))
        for k in self.plan["table7"]["topk"]:
            if int(k) > len(m):
                self.clamped[int(k)] = len(m)
        return [PlanRow(str(k), self.runs("table7", "crossan", m, topk=k, fusion="momef"), "crossan")
                for k in ks], []

    def table8(self):
        m = self.modalities("table8")
        rows = [PlanRow(METHOD_LABELS[model], self.runs("table8", model, m), model)
                for model in self.plan["table8"]["models"]]
        iisan = f"IISAN ({modality_label('TI')})"
        rows += [PlanRow(iisan, self.runs("table8", "iisan", "TI"), "iisan") if self.has_text_and_image()
                 else PlanRow(iisan, note=self.needs_ti_note("iisan")),
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


    # ------------------------------------------------------------------ beyond the paper

    def tableB1(self):
        block = self.plan["tableB1"]
        align, weight = block["align"], float(block["align_weight"])
        pairs = self.tower_pairs("tableB1")  # one at least: dropped() stops the target otherwise
        for letters in self.modality_sets("tableB1"):
            if letters not in pairs:
                self.notes.append(f"CROSSAN ({modality_label(letters)}) left out: one tower, nothing to align.")
        rows, comparisons = [], []
        for letters in pairs:
            label = modality_label(letters)
            plain = PlanRow(f"CROSSAN ({label})", self.runs("tableB1", "crossan", letters), "crossan")
            aligned = PlanRow(f"CROSSAN+{ALIGN_LABELS[align]} ({label})",
                              self.runs("tableB1", "crossan", letters, align=align, align_weight=weight), "crossan")
            rows += [plain, aligned]
            comparisons.append(Comparison(modality_names(letters), aligned.label, plain.label))
        return rows, comparisons

    def tableB2(self):
        m = self.modalities("tableB2")
        label = modality_label(m)
        rows = [PlanRow(f"CROSSAN ({label})", self.runs("tableB2", "crossan", m), "crossan"),
                PlanRow(f"CROSSAN-MoDA ({label}) (shared tower)",
                        self.runs("tableB2", "crossan-moda", m), "crossan-moda")]  # at CROSSAN's setting
        return rows, [Comparison("Shared vs CROSSAN", rows[1].label, rows[0].label)]

    def popularity_rows(self, target: str) -> list[PlanRow]:
        """Table B3's rows (its block), with ``target``'s seeds: CROSSAN and IISAN(-E) on its
        modalities, the end-to-end baselines (T+I), the graph recommenders."""
        m = self.modalities("tableB3")
        rows = [PlanRow(f"CROSSAN ({modality_label(m)})", self.runs(target, "crossan", m), "crossan"),
                self.iisan_row(target, m)]
        rows += self.end_to_end_rows(target)
        rows += [PlanRow(METHOD_LABELS[model], self.runs(target, model, m), model)
                 for model in self.plan["tableB3"]["models"]]
        return rows

    def tableB3(self):
        return self.popularity_rows("tableB3"), []

    def figureB1(self):
        return [row for row in self.popularity_rows("figureB1") if row.runs], []


def target_plan(config: Mapping[str, Any], dataset: str, target: str) -> TargetPlan:
    """The rows (and run names) of ``target`` for ``dataset``; :class:`ConfigError` names the
    block when a row is not a valid run (e.g. ``iisan`` on a set other than T+I)."""
    return _Planner(config, dataset).target(target)


def planned_targets(config: Mapping[str, Any], dataset: str) -> list[str]:
    """The targets ``all`` builds for ``dataset``: ``experiments.targets`` less those its
    modalities cannot make (:func:`dropped_targets`)."""
    dropped = dropped_targets(config, dataset)
    return [target for target in experiment_config(config, dataset)["targets"] if target not in dropped]


def dropped_targets(config: Mapping[str, Any], dataset: str) -> dict[str, str]:
    """The targets of ``experiments.targets`` the dataset's modalities cannot make, and why
    (Table 1 with fewer than two modalities, Table B1 without a set that keeps two)."""
    planner = _Planner(config, dataset)
    reasons = {target: planner.dropped(target) for target in planner.plan["targets"]}
    return {target: reason for target, reason in reasons.items() if reason}


def experiment_runs(config: Mapping[str, Any], dataset: str) -> list[str]:
    """Every run the dataset's planned targets read, once, in plan order."""
    planner = _Planner(config, dataset)
    names: list[str] = []
    for target in planned_targets(config, dataset):
        names += planner.target(target).runs()
    return list(dict.fromkeys(names))


def check_run_modalities(config: Mapping[str, Any], dataset: str, names: list[str]) -> None:
    """Raise :class:`ConfigError` naming each of ``names`` (the dataset's extra runs, key
    ``runs``) that reads a modality the dataset does not declare."""
    available = dataset_letters(config, dataset)
    problems = []
    for name in names:
        letters = parse_run_name(name)["modalities"]
        if missing := "".join(letter for letter in letters if letter not in available):
            problems.append(f"run {name} reads {modality_words(missing)}, which dataset {dataset!r} does not "
                            f"declare (catalog.{dataset}.modalities: {modality_words(available)}); give its "
                            f"spec under 'runs' modalities from {available}")
    if problems:
        raise ConfigError("invalid config.yaml:\n  " + "\n  ".join(problems))
