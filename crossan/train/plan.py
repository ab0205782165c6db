"""The configured set of stage-2 runs, from ``config.yaml``'s ``training`` and ``runs`` blocks.

``runs`` is a list of run specs; each gives ``method`` and optionally ``modalities``,
``fusion``, ``topk``, ``hidden``, ``lr`` and ``seeds`` (one run per seed). A dataset's own
``runs`` list replaces the global one; its ``training`` block overrides the global settings
key by key. :func:`planned_run_names` turns the specs into run directory names (see
:mod:`crossan.train.names`), so the workflow asks for ``results/{dataset}/runs/{name}/metrics.json``
and the name alone says what a run is. Settings in ``training`` (batch size, epochs,
patience, ..., and the conventions where the paper is silent) are the same for every run of a
dataset and are not part of names: :func:`setting_flags` turns them into ``crossan train``
flags, which the workflow passes as a rule parameter, so changing one reruns the runs whose
command it changes. A convention's flag is passed only to the methods whose results it
changes (:data:`CONVENTION_FLAGS`): ``inter_tower`` reruns only IISAN and IISAN-E runs.
The end-to-end settings (:data:`E2E_FLAGS`) likewise go only to ``fft``, ``adapter`` and
``lora`` runs, whose batch size is ``e2e_batch_size`` instead of ``batch_size``;
:func:`e2e_input_flags` names their inputs (the media folder and the two checkpoints).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import Any

from crossan.config import encoder_spec
from crossan.errors import ConfigError
from crossan.models.e2e import E2E_METHODS, E2E_MODALITIES
from crossan.models.graph import GRAPH_METHODS

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
TRAINED_METHODS: tuple[str, ...] = (*ADAPTER_METHODS, "id-sasrec", *E2E_METHODS)
# end-to-end settings -> ``crossan train`` flags (fft, adapter and lora runs only); a dict
# value is per method ({fft: ..., adapter: ..., lora: ...}), a method it leaves out gets none
E2E_FLAGS: dict[str, str] = {
    "e2e_batch_size": "--batch-size",
    "e2e_text_lr": "--text-lr",
    "e2e_image_lr": "--image-lr",
    "lora_alpha": "--lora-alpha",
    "eval_batch_size": "--eval-batch-size",
}
# graph recommender settings -> ``crossan train`` flags (their runs only; they replace
# batch_size, max_epochs and patience, which are the sequential models')
GRAPH_FLAGS: dict[str, str] = {
    "graph_batch_size": "--batch-size",
    "graph_max_epochs": "--max-epochs",
    "graph_patience": "--patience",
}
GRAPH_REPLACES: dict[str, str] = {"batch_size": "graph_batch_size", "max_epochs": "graph_max_epochs",
                                  "patience": "graph_patience"}
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
    e2e_defaults = {"modalities": E2E_MODALITIES}  # their only modality set
    return [{**SPEC_DEFAULTS, **(e2e_defaults if spec.get("method") in E2E_METHODS else {}), **spec}
            for spec in specs]


def planned_run_names(config: Mapping[str, Any], dataset: str) -> list[str]:
    """Every configured run of ``dataset`` as a run directory name, in config order, once.

    Raises :class:`ConfigError` naming the spec when it is not a valid run (unknown method,
    ``iisan`` with modalities other than TI, ...).
    """
    from crossan.train.names import run_name
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
    e2e, graph = method in E2E_METHODS, method in GRAPH_METHODS
    flags = [f"{flag} {settings[key]}" for key, flag in SETTING_FLAGS.items()
             if key in settings and not (e2e and key == "batch_size" and "e2e_batch_size" in settings)
             and not (graph and GRAPH_REPLACES.get(key) in settings)]
    if settings.get("standardize_states"):
        flags.append("--standardize-states")
    if e2e:
        flags += _e2e_flags(settings, method)
    if graph:
        flags += [f"{flag} {settings[key]}" for key, flag in GRAPH_FLAGS.items() if key in settings]
        grid = (settings.get("graph_grid") or {}).get(method)
        if grid:
            flags.append(f"--grid {shlex.quote(json.dumps(grid, sort_keys=True, separators=(',', ':')))}")
    for key, (flag, methods) in CONVENTION_FLAGS.items():
        if key in settings and (method is None or methods is None or method in methods):
            flags.append(f"{flag} {settings[key]}")
    return " ".join(flags)


def _e2e_flags(settings: Mapping[str, Any], method: str) -> list[str]:
    """The end-to-end settings as flags for ``method`` (``lora_alpha`` for ``lora`` only)."""
    flags = []
    for key, flag in E2E_FLAGS.items():
        value = settings.get(key)
        if isinstance(value, Mapping):
            value = value.get(method)
        if value is None or (key == "lora_alpha" and method != "lora"):
            continue
        flags.append(f"{flag} {value}")
    if settings.get("gradient_checkpointing"):
        flags.append("--gradient-checkpointing")
    if "mixed_precision" in settings:
        flags.append(f"--mixed-precision {'on' if settings['mixed_precision'] else 'off'}")
    return flags


def graph_build_flags(settings: Mapping[str, Any]) -> str:
    """``crossan graph`` flags from the training settings: the kept layer, k, the sequential
    models' ``max_len`` (the training window) and the z-scoring of the states."""
    flags = [f"--layer {settings.get('graph_layer', -1)}", f"--k {settings.get('graph_k', 10)}",
             f"--max-len {settings.get('max_len', 10)}"]
    if settings.get("standardize_states"):
        flags.append("--standardize-states")
    return " ".join(flags)


def e2e_input_flags(config: Mapping[str, Any], dataset: str) -> str:
    """``crossan train`` flags naming an end-to-end run's inputs: the media folder (for
    ``image.h5``), the dataset's text and image checkpoints and the title length (the
    ``encoders`` block, as stage 1 uses them)."""
    text, image = encoder_spec(config, dataset, "text"), encoder_spec(config, dataset, "image")
    return (f"--media results/{dataset}/media --text-model {shlex.quote(str(text['model']))}"
            f" --image-model {shlex.quote(str(image['model']))}"
            f" --text-max-length {text.get('max_length', 30)}")
