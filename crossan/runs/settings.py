"""The ``training`` settings: their defaults and choices (the schema's), and which of them a run
of each method is given.

``config.yaml``'s ``training`` block (a dataset's own block on top, key by key) holds settings
that apply to every run of a dataset. A method uses some of them (:attr:`Method.settings`);
:func:`run_fields` gives a run exactly those, as :class:`~crossan.runs.run_config.RunConfig`
fields. The defaults and the choices are read from ``workflow/schemas/config.schema.yaml``
once, so neither is written anywhere else.

Settings are named as in ``config.yaml``; ``e2e_batch_size`` and ``graph_batch_size`` (and
``graph_max_epochs``, ``graph_patience``) fill the run's batch size (epochs, patience) in
those methods (:data:`SETTING_FIELDS`), and a per-method block (``e2e_text_lr``,
``e2e_image_lr``, ``graph_grid``) gives the run its own method's entry only.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from typing import Any

from crossan.config import load_schema
from crossan.runs.vocabulary import METHODS

# setting -> the RunConfig field it fills, where the names differ
SETTING_FIELDS: Mapping[str, str] = {
    "e2e_batch_size": "batch_size",
    "graph_batch_size": "batch_size",
    "graph_max_epochs": "max_epochs",
    "graph_patience": "patience",
    "e2e_text_lr": "text_lr",
    "e2e_image_lr": "image_lr",
}
# settings whose value is a block by method ({fft: ..., lora: ...}); a run counts its own entry
PER_METHOD_SETTINGS: tuple[str, ...] = ("e2e_text_lr", "e2e_image_lr", "graph_grid")
# Conventions where the paper is silent (README, "Conventions"): the settings with a fixed set of
# values, the reference code's behaviour the default.
CONVENTION_SETTINGS: tuple[str, ...] = ("inter_tower", "layer0_previous", "sequence_encoder", "negatives",
                                        "popularity_smoothing", "repeat_targets", "graph_negatives",
                                        "grcn_routing", "mhcr_final_sum", "lr_groups")


@functools.cache
def _training_schema() -> dict[str, Any]:
    return load_schema()["$defs"]["training"]["properties"]


@functools.cache
def _defaults() -> dict[str, Any]:
    return {key: spec["default"] for key, spec in _training_schema().items() if "default" in spec}


def training_default(key: str) -> Any:
    """The schema's default of ``training.{key}`` (a fresh copy)."""
    return copy.deepcopy(_defaults()[key])


def default_training() -> dict[str, Any]:
    """The schema's default of every ``training`` setting (a fresh copy)."""
    return copy.deepcopy(_defaults())


def setting_choices(key: str) -> tuple[str, ...]:
    """The values ``training.{key}`` may take (its schema ``enum``), the default first."""
    choices = tuple(_training_schema()[key]["enum"])
    default = _defaults()[key]
    return (default, *(choice for choice in choices if choice != default))


CONVENTIONS: Mapping[str, tuple[str, ...]] = {key: setting_choices(key) for key in CONVENTION_SETTINGS}


def training_settings(config: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    """A dataset's training settings: the schema's defaults, the global ``training`` block, then
    ``catalog.{dataset}.training``, key by key."""
    return {**default_training(), **config.get("training", {}), **config["catalog"][dataset].get("training", {})}


def setting_value(settings: Mapping[str, Any], key: str, method: str) -> Any:
    """``settings[key]`` (the schema's default when absent) as ``method`` sees it: a per-method
    block gives the method's entry (``None`` when it has none)."""
    value = settings[key] if key in settings else _defaults().get(key)
    if key in PER_METHOD_SETTINGS:
        value = (value or {}).get(method)
    return value


def run_fields(settings: Mapping[str, Any], method: str) -> dict[str, Any]:
    """The :class:`~crossan.runs.run_config.RunConfig` fields that a dataset's ``training``
    settings give a run of ``method`` (settings it does not use are left out; a missing one is
    the schema's default; a per-method entry the method lacks keeps the field's default)."""
    fields = {}
    for key in METHODS[method].settings:
        value = setting_value(settings, key, method)
        if value is not None:
            fields[SETTING_FIELDS.get(key, key)] = copy.deepcopy(value)
    return fields
