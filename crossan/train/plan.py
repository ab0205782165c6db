"""The configured set of stage-2 runs, from ``config.yaml``'s ``training`` and ``runs`` blocks.

``runs`` is a list of run specs; each gives ``method`` and optionally ``modalities``,
``fusion``, ``topk``, ``hidden``, ``lr`` and ``seeds`` (one run per seed). A dataset's own
``runs`` list replaces the global one; its ``training`` block overrides the global settings
key by key. :func:`planned_run_names` turns the specs into run directory names (see
:mod:`crossan.train.run`), so the workflow asks for ``results/{dataset}/runs/{name}/metrics.json``
and the name alone says what a run is. Settings in ``training`` (batch size, epochs,
patience, ..., and the conventions where the paper is silent) are the same for every run of a
dataset and are not part of names: :func:`setting_flags` turns them into ``crossan train``
flags, which the workflow passes as a rule parameter, so changing one reruns the runs whose
command it changes. A convention's flag is passed only to the methods whose results it
changes (:data:`CONVENTION_FLAGS`): ``inter_tower`` reruns only IISAN and IISAN-E runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crossan.errors import ConfigError

SPEC_DEFAULTS: dict[str, Any] = {
    "modalities": "TIVA",
    "fusion": None,
    "topk": 2,
    "hidden": 512,
    "lr": 1e-4,
    "seeds": [0],
}
# training settings -> ``crossan train`` flags
SETTING_FLAGS: dict[str, str] = {
    "batch_size": "--batch-size",
    "max_epochs": "--max-epochs",
    "patience": "--patience",
    "max_len": "--max-len",
    "weight_decay": "--weight-decay",
}
ADAPTER_METHODS: tuple[str, ...] = ("crossan", "indsan", "iisan", "iisan-e")
TRAINED_METHODS: tuple[str, ...] = (*ADAPTER_METHODS, "id-sasrec")
# convention settings (README "Conventions") -> (``crossan train`` flag, methods it changes;
# None = every method, the popularity baseline included)
CONVENTION_FLAGS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "inter_tower": ("--inter-tower", ("iisan", "iisan-e")),
    "layer0_previous": ("--layer0-previous", ADAPTER_METHODS),
    "sequence_encoder": ("--sequence-encoder", TRAINED_METHODS),
    "negatives": ("--negatives", TRAINED_METHODS),
    "popularity_smoothing": ("--popularity-smoothing", TRAINED_METHODS),
    "repeat_targets": ("--repeat-targets", None),
}


def training_settings(config: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    """The global ``training`` block, then ``catalog.{dataset}.training`` on top."""
    return {**config.get("training", {}), **config["catalog"][dataset].get("training", {})}


def run_specs(config: Mapping[str, Any], dataset: str) -> list[dict[str, Any]]:
    """The dataset's run specs (its own ``runs`` or the global ones), defaults filled in."""
    entry = config["catalog"][dataset]
    specs = entry["runs"] if entry.get("runs") is not None else config.get("runs", [])
    return [{**SPEC_DEFAULTS, **spec} for spec in specs]


def planned_run_names(config: Mapping[str, Any], dataset: str) -> list[str]:
    """Every configured run of ``dataset`` as a run directory name, in config order, once.

    Raises :class:`ConfigError` naming the spec when it is not a valid run (unknown method,
    ``iisan`` with modalities other than TI, ...).
    """
    from crossan.train.run import run_name
    from crossan.train.trainer import RunConfig

    names: list[str] = []
    for index, spec in enumerate(run_specs(config, dataset)):
        for seed in spec["seeds"]:
            try:
                run = RunConfig(
                    data_dir="", features_dir="", out_dir="", dataset=dataset,
                    method=spec["method"], modalities=spec["modalities"], fusion=spec["fusion"],
                    topk=spec["topk"], hidden=spec["hidden"], lr=float(spec["lr"]), seed=seed,
                )
            except ConfigError as error:
                raise ConfigError(f"runs of dataset {dataset!r}, entry {index + 1} ({spec}): {error}") from error
            name = run_name(run)
            if name not in names:
                names.append(name)
    return names


def setting_flags(settings: Mapping[str, Any], method: str | None = None) -> str:
    """``crossan train`` flags for the dataset's training settings (``device`` excluded).

    ``method``: the run's method; a convention setting becomes a flag only for the methods
    whose results it changes (:data:`CONVENTION_FLAGS`; ``None`` = every convention given).
    """
    flags = [f"{flag} {settings[key]}" for key, flag in SETTING_FLAGS.items() if key in settings]
    if settings.get("standardize_states"):
        flags.append("--standardize-states")
    for key, (flag, methods) in CONVENTION_FLAGS.items():
        if key in settings and (method is None or methods is None or method in methods):
            flags.append(f"{flag} {settings[key]}")
    return " ".join(flags)
