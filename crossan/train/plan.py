"""The configured set of stage-2 runs, from ``config.yaml``'s ``training`` and ``runs`` blocks.

``runs`` is a list of run specs; each gives ``method`` and optionally ``modalities``,
``fusion``, ``topk``, ``hidden``, ``lr``, ``align``/``align_weight`` (the auxiliary alignment
loss, off at 0) and ``seeds`` (one run per seed). A dataset's own
``runs`` list replaces the global one; its ``training`` block overrides the global settings
key by key. :func:`planned_run_names` turns the specs into run directory names (see
:mod:`crossan.train.names`), so the workflow asks for ``results/{dataset}/runs/{name}/metrics.json``
and the name alone says what a run is. Settings in ``training`` (batch size, epochs,
patience, ..., and the conventions where the paper is silent) are the same for every run of a
dataset; those a method uses (:data:`crossan.train.identity.METHOD_SETTINGS`) that differ from
the schema's defaults are digested into its runs' names (``-x{digest}``), so changing one
gives new folders for exactly the runs it affects (``inter_tower``: IISAN and IISAN-E;
``max_epochs``: not popularity, not the graph recommenders) and leaves the others, and the
old folders, as they are. :func:`setting_flags` turns the same settings into ``crossan train``
flags (``e2e_batch_size`` and ``graph_batch_size`` become ``--batch-size`` of their runs);
:func:`run_by_name` checks a requested folder name against the configuration;
:func:`e2e_input_flags` names the end-to-end runs' inputs (the media folder and the two
checkpoints).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import Any

from crossan.config import dataset_letters, encoder_spec
from crossan.errors import ConfigError
from crossan.models.e2e import E2E_METHODS, E2E_MODALITIES
from crossan.train.identity import (
    changed_settings,
    describe_changed,
    run_fields,
    training_settings,
)
from crossan.train.names import name_digest, parse_run_name, run_name
from crossan.train.trainer import RunConfig

SPEC_DEFAULTS: dict[str, Any] = {
    "modalities": "TIVA",
    "fusion": None,
    "topk": 2,
    "hidden": 512,
    "lr": 1e-4,
    "seeds": [0],
    "align": "cmsa",
    "align_weight": 0.0,
}
# RunConfig field (crossan.train.identity.run_fields) -> ``crossan train`` flag, in the order
# the flags are written; a boolean field with a switch flag is written only when true
FIELD_FLAGS: dict[str, str] = {
    "batch_size": "--batch-size",
    "max_epochs": "--max-epochs",
    "patience": "--patience",
    "max_len": "--max-len",
    "weight_decay": "--weight-decay",
    "standardize_states": "--standardize-states",
    "text_lr": "--text-lr",
    "image_lr": "--image-lr",
    "lora_alpha": "--lora-alpha",
    "eval_batch_size": "--eval-batch-size",
    "gradient_checkpointing": "--gradient-checkpointing",
    "mixed_precision": "--mixed-precision",
    "graph_grid": "--grid",
    "graph_layer": "--graph-layer",
    "graph_k": "--graph-k",
    # conventions where the paper is silent (README "Conventions")
    "inter_tower": "--inter-tower",
    "layer0_previous": "--layer0-previous",
    "sequence_encoder": "--sequence-encoder",
    "negatives": "--negatives",
    "popularity_smoothing": "--popularity-smoothing",
    "repeat_targets": "--repeat-targets",
    # crossan-moda's experts
    "moda_rank": "--moda-rank",
    "moda_experts": "--moda-experts",
}
SWITCHES: tuple[str, ...] = ("standardize_states", "gradient_checkpointing")


def run_specs(config: Mapping[str, Any], dataset: str) -> list[dict[str, Any]]:
    """The dataset's run specs (its own ``runs`` or the global ones), defaults filled in: a
    spec without ``modalities`` reads every modality the dataset declares (and MOMEF's
    ``topk`` is at most their number)."""
    entry = config["catalog"][dataset]
    specs = entry["runs"] if entry.get("runs") is not None else config.get("runs", [])
    letters = dataset_letters(config, dataset)
    dataset_defaults = {"modalities": letters, "topk": min(SPEC_DEFAULTS["topk"], len(letters))}
    e2e_defaults = {"modalities": E2E_MODALITIES}  # their only modality set
    return [{**SPEC_DEFAULTS, **dataset_defaults, **(e2e_defaults if spec.get("method") in E2E_METHODS else {}),
             **spec} for spec in specs]


def configured_run(config: Mapping[str, Any], dataset: str, method: str, **name_fields: Any) -> RunConfig:
    """The run of ``method`` with ``name_fields`` (modalities, fusion, topk, hidden, lr, seed,
    align, align_weight)
    under ``dataset``'s training settings: what its name says, plus the settings its digest
    stands for. Paths are left empty."""
    return RunConfig(data_dir="", features_dir="", out_dir="", dataset=dataset, method=method, **name_fields,
                     **run_fields(training_settings(config, dataset), method))


def planned_run_names(config: Mapping[str, Any], dataset: str) -> list[str]:
    """Every configured run of ``dataset`` as a run directory name, in config order, once.

    Raises :class:`ConfigError` naming the spec when it is not a valid run (unknown method,
    ``iisan`` with modalities other than TI, ...).
    """
    names: list[str] = []
    for index, spec in enumerate(run_specs(config, dataset)):
        for seed in spec["seeds"]:
            try:
                run = configured_run(config, dataset, spec["method"], modalities=spec["modalities"],
                                     fusion=spec["fusion"], topk=spec["topk"], hidden=spec["hidden"],
                                     lr=float(spec["lr"]), seed=seed, align=spec["align"],
                                     align_weight=float(spec["align_weight"]))
            except ConfigError as error:
                raise ConfigError(f"runs of dataset {dataset!r}, entry {index + 1} ({spec}): {error}") from error
            name = run_name(run)
            if name not in names:
                names.append(name)
    return names


def run_by_name(config: Mapping[str, Any], dataset: str, name: str) -> RunConfig:
    """The run a folder name under ``results/{dataset}/runs/`` stands for, with the dataset's
    training settings. :class:`ConfigError` when the name is another dataset's, or not the
    name :func:`~crossan.train.names.run_name` gives that run under these settings (another
    settings digest, or a spelling of its own such as ``lr1.0e-03``), naming the right one."""
    fields = parse_run_name(name)
    if fields["dataset"] != dataset:
        raise ConfigError(f"run {name} belongs to dataset {fields['dataset']!r}, not {dataset!r}: "
                          f"ask for results/{fields['dataset']}/runs/{name}/metrics.json")
    run = configured_run(config, dataset, **{key: value for key, value in fields.items() if key != "dataset"})
    expected = run_name(run)
    if expected == name:
        return run
    if name_digest(name) != name_digest(expected):
        changed = describe_changed(changed_settings(run)) or "none"
        raise ConfigError(
            f"run {name} does not match the training settings of dataset {dataset!r} in config.yaml "
            f"(those of its method other than the defaults: {changed}): with them this run is named "
            f"{expected}. A name's -x suffix digests its settings (settings.json in a run's folder lists "
            "them); to train other settings, set them in config.yaml")
    raise ConfigError(f"run {name} is not canonical: the same run is named {expected}")


def setting_flags(settings: Mapping[str, Any], method: str) -> str:
    """``crossan train`` flags for the training settings a run of ``method`` uses
    (:data:`crossan.train.identity.METHOD_SETTINGS`; ``device`` and ``gpu`` excluded), so that
    a setting changes the command, like the name, of only the runs whose results it changes."""
    flags = []
    fields = run_fields(settings, method)
    for field, flag in FIELD_FLAGS.items():
        if field not in fields:
            continue
        value = fields[field]
        if field in SWITCHES:
            flags += [flag] if value else []
        elif field == "mixed_precision":
            flags.append(f"{flag} {'on' if value else 'off'}")
        elif field == "graph_grid":
            if value:
                flags.append(f"{flag} {shlex.quote(json.dumps(value, sort_keys=True, separators=(',', ':')))}")
        else:
            flags.append(f"{flag} {value}")
    return " ".join(flags)


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
