"""Run identity: which ``training`` settings change a run's result, and the digest of them
that a run's name carries.

A run's name (:mod:`crossan.train.names`) spells out what a table varies (method, modalities,
fusion, top-k, hidden size, learning rate, seed). The settings of ``config.yaml``'s
``training`` block are too many to spell out, so a run's name ends in ``-x{8 hex digits}``
when any setting *its method uses* (:data:`METHOD_SETTINGS`) differs from the schema's
default: the first 8 hex digits of the SHA-256 of those settings and values (JSON, keys
sorted). With the defaults there is no suffix. Hence:

* two values of one setting give two run folders, side by side, to compare;
* changing a setting renames, and so reruns, only the runs whose method uses it: ``max_epochs``
  leaves the popularity baseline and the graph recommenders (``graph_max_epochs``) alone;
* the same suffix on two runs means the same settings; ``settings.json`` in a run's folder
  (:func:`settings_record`) lists them, the digest's input included.

Settings are named as in ``config.yaml``; ``e2e_batch_size`` and ``graph_batch_size`` (and
``graph_max_epochs``, ``graph_patience``) stand for the run's batch size (epochs, patience)
in those methods, and a per-method block (``e2e_text_lr``, ``e2e_image_lr``, ``graph_grid``)
counts with the run's own method's entry only. The defaults are the schema's
(``workflow/schemas/config.schema.yaml``), not a dataset's, so runs of two configurations
never share a folder. Not covered: settings of earlier steps (``sequences``, ``media``,
``encoders``, including the end-to-end runs' checkpoints and title length) change a run's
input files instead, and Snakemake reruns the run in place when they change.

Light on purpose (no torch): the workflow names runs while it builds its job graph.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from crossan.config import load_schema

# the sequential models' training loop (SASRec on item IDs or on adapted states)
_LOOP = ("batch_size", "max_epochs", "patience", "max_len", "weight_decay")
# conventions every trained sequential model follows (CONVENTION_FLAGS in crossan.train.plan)
_SEQUENTIAL_CONVENTIONS = ("sequence_encoder", "negatives", "popularity_smoothing", "repeat_targets")
_ADAPTERS = (*_LOOP, "standardize_states", "layer0_previous", *_SEQUENTIAL_CONVENTIONS)
_END_TO_END = ("e2e_batch_size", "max_epochs", "patience", "max_len", "weight_decay", "standardize_states",
               "e2e_text_lr", "e2e_image_lr", "gradient_checkpointing", "mixed_precision", "eval_batch_size",
               *_SEQUENTIAL_CONVENTIONS)
# graph_layer and graph_k build the graph file the run reads (with max_len and standardize_states)
_GRAPH = ("graph_batch_size", "graph_max_epochs", "graph_patience", "max_len", "weight_decay",
          "standardize_states", "graph_grid", "graph_layer", "graph_k", "repeat_targets")
# method -> the training settings that change its results. gradient_checkpointing, mixed_precision
# and eval_batch_size change the end-to-end runs' time and memory (Table 4), if not their metrics.
METHOD_SETTINGS: dict[str, tuple[str, ...]] = {
    "popularity": ("repeat_targets",),  # counts the training items: no loop, no states
    "id-sasrec": (*_LOOP, *_SEQUENTIAL_CONVENTIONS),  # reads no states
    "crossan": _ADAPTERS,
    "indsan": _ADAPTERS,
    "iisan": (*_ADAPTERS, "inter_tower"),
    "iisan-e": (*_ADAPTERS, "inter_tower"),
    "crossan-moda": (*_ADAPTERS, "moda_rank", "moda_experts"),
    "fft": _END_TO_END,
    "adapter": _END_TO_END,
    "lora": (*_END_TO_END, "lora_alpha"),
    **{method: _GRAPH for method in ("mmgcn", "grcn", "bm3", "freedom", "mgcn", "mhcr")},
}
# setting -> the RunConfig field it fills, where the names differ
SETTING_FIELDS: dict[str, str] = {
    "e2e_batch_size": "batch_size",
    "graph_batch_size": "batch_size",
    "graph_max_epochs": "max_epochs",
    "graph_patience": "patience",
    "e2e_text_lr": "text_lr",
    "e2e_image_lr": "image_lr",
}
# settings whose value is a block by method ({fft: ..., lora: ...}); a run counts its own entry
PER_METHOD_SETTINGS: tuple[str, ...] = ("e2e_text_lr", "e2e_image_lr", "graph_grid")
# compared and hashed as floats, so that 0 and 0.0 (or 1 and 1.0) are the same setting
_FLOAT_SETTINGS: tuple[str, ...] = ("weight_decay", "e2e_text_lr", "e2e_image_lr", "lora_alpha")
SUFFIX_PREFIX = "-x"
DIGEST_LENGTH = 8
SETTINGS_FILE = "settings.json"


@functools.cache
def _schema_defaults() -> dict[str, Any]:
    properties = load_schema()["$defs"]["training"]["properties"]
    return {key: spec["default"] for key, spec in properties.items() if "default" in spec}


def default_training() -> dict[str, Any]:
    """The schema's default of every ``training`` setting (a fresh copy)."""
    return copy.deepcopy(_schema_defaults())


def training_settings(config: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    """A dataset's training settings: the schema's defaults, the global ``training`` block, then
    ``catalog.{dataset}.training``, key by key."""
    return {**default_training(), **config.get("training", {}), **config["catalog"][dataset].get("training", {})}


def setting_value(settings: Mapping[str, Any], key: str, method: str) -> Any:
    """``settings[key]`` (the schema's default when absent) as ``method`` sees it: a per-method
    block gives the method's entry (``None`` when it has none)."""
    value = settings[key] if key in settings else _schema_defaults().get(key)
    if key in PER_METHOD_SETTINGS:
        value = (value or {}).get(method)
    return value


def run_fields(settings: Mapping[str, Any], method: str) -> dict[str, Any]:
    """The :class:`~crossan.train.trainer.RunConfig` fields that a dataset's ``training``
    settings give a run of ``method`` (settings it does not use are left out; a missing one is
    the schema's default; a per-method entry the method lacks keeps the field's default)."""
    fields = {}
    for key in METHOD_SETTINGS[method]:
        value = setting_value(settings, key, method)
        if value is not None:
            fields[SETTING_FIELDS.get(key, key)] = value
    return fields


def _normal(key: str, value: Any) -> Any:
    if key in _FLOAT_SETTINGS and value is not None:
        return float(value)
    if isinstance(value, Mapping):
        return json.loads(json.dumps(value, sort_keys=True))
    return value


def run_settings(run: Any) -> dict[str, Any]:
    """The settings a run (a :class:`~crossan.train.trainer.RunConfig`) was given, by
    ``config.yaml`` name, for the settings its method uses. An encoder learning rate left
    unset is the run's ``lr``, which it then uses."""
    values = {}
    for key in METHOD_SETTINGS[run.method]:
        value = getattr(run, SETTING_FIELDS.get(key, key))
        if key in ("e2e_text_lr", "e2e_image_lr") and value is None:
            value = run.lr
        values[key] = _normal(key, value)
    return values


@functools.cache
def _method_defaults(method: str) -> dict[str, Any]:
    values = {}
    for key in METHOD_SETTINGS[method]:
        value = setting_value({}, key, method)
        values[key] = _normal(key, {} if value is None and key == "graph_grid" else value)
    return values


def default_settings(method: str) -> dict[str, Any]:
    """The schema's default of every setting ``method`` uses (a fresh copy)."""
    return copy.deepcopy(_method_defaults(method))


def changed_settings(run: Any) -> dict[str, Any]:
    """The settings of ``run`` that differ from the schema's defaults: the digest's input."""
    defaults = _method_defaults(run.method)
    return {key: value for key, value in run_settings(run).items() if value != defaults[key]}


def settings_digest(changed: Mapping[str, Any]) -> str:
    """8 hex digits of the SHA-256 of ``changed`` as JSON (keys sorted); ``""`` when empty."""
    if not changed:
        return ""
    text = json.dumps(dict(changed), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:DIGEST_LENGTH]


def settings_suffix(run: Any) -> str:
    """``-x{digest}`` of the run's changed settings, ``""`` with the defaults."""
    digest = settings_digest(changed_settings(run))
    return f"{SUFFIX_PREFIX}{digest}" if digest else ""


def settings_record(run: Any) -> dict[str, Any]:
    """``settings.json``: the digest, its input (``changed``) and every setting the run's
    method uses (``settings``), by ``config.yaml`` name."""
    changed = changed_settings(run)
    return {"digest": settings_digest(changed), "changed": changed, "settings": run_settings(run)}


def describe_changed(changed: Mapping[str, Any]) -> str:
    """``"max_epochs=100, standardize_states=true"`` (JSON values, keys sorted)."""
    return ", ".join(f"{key}={json.dumps(changed[key], sort_keys=True)}" for key in sorted(changed))
