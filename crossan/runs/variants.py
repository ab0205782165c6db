"""Folders that keep settings apart: what a command-line override changes lands beside the defaults.

The defaults of a dataset are what the config files say (``config.yaml`` and any
``--configfile``). Settings given with ``--config`` that differ from them change the folder
names of exactly the outputs they change, by a suffix ``-x{digest}`` (the 8 hex digits of
:func:`crossan.runs.identity.settings_digest` over the changed settings and their new values)::

    results/{dataset}/media[-x…]/       media settings (frames, seconds, sizes, JPEG quality, rate)
    results/{dataset}/features[-x…]/    those, and the encoders' model, kept layers, max_length
    results/{dataset}/graph[-x…]/       as features (the graph's kNN basis is a cached layer)
    results/{dataset}/runs[-x…]/        as features (a run's name spells its own training settings)
    results/{dataset}/tables[-x…]/      all of the above, the training settings, the
    results/{dataset}/figures[-x…]/     dataset's experiments and its extra runs: every table,
    results/{dataset}/beyond[-x…]/      figure and the report of other settings land beside
    results/{dataset}/efficiency[-x…]/  the default ones, and both stay

So ``--config 'training={inter_tower: convex}'`` retrains the seven IISAN runs (their names
change) and writes the tables to ``tables-x…/``; ``--config 'media={frames: 8}'`` samples
video again into ``media-x…/`` and extracts, trains and tabulates beside the defaults.
Settings that change nothing an output holds (workers, batch sizes of extraction, GPUs) are
not part of any digest. The ``sequences`` block defines the dataset itself: it is rebuilt in
place (define a second catalog entry to keep both).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from crossan.config import dataset_media, dataset_modalities, encoder_spec
from crossan.runs.identity import SUFFIX_PREFIX, settings_digest
from crossan.runs.settings import training_settings
from crossan.runs.specs import run_specs

# media keys that change the sampled file (not workers, chunk_items)
MEDIA_KEYS: tuple[str, ...] = ("frames", "seconds", "sample_rate", "video_size", "image_size", "jpeg_quality")
# encoder keys that change the cached states (not batch_size)
ENCODER_KEYS: tuple[str, ...] = ("model", "layers", "max_length")
# training keys that change no result: what a cluster job asks for
RESOURCE_KEYS: tuple[str, ...] = ("gpu",)
FOLDERS: tuple[str, ...] = ("media", "features", "graph", "runs", "tables", "figures", "beyond", "efficiency")
SUFFIX_PATTERN = rf"(?:{SUFFIX_PREFIX}[0-9a-f]{{8}})?"  # what a folder name may add to its stage


def _plain(value: Any) -> Any:
    """``value`` as JSON would give it back: tuples as lists, keys as text, compared alike."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _with_dataset(base: Mapping[str, Any], config: Mapping[str, Any], dataset: str) -> Mapping[str, Any]:
    """``base``, with ``dataset``'s catalog entry taken from ``config`` when the files do not
    define it (a dataset defined on the command line is its own default)."""
    if dataset in base.get("catalog", {}):
        return base
    return {**base, "catalog": {**base.get("catalog", {}), dataset: config["catalog"][dataset]}}


def _differences(prefix: str, now: Mapping[str, Any], before: Mapping[str, Any],
                 keys: Sequence[str] | None = None) -> dict[str, Any]:
    """``{prefix}.{key}: new value`` for each of ``keys`` (default: all) whose value differs."""
    keys = sorted(set(now) | set(before)) if keys is None else keys
    return {f"{prefix}.{key}": _plain(now.get(key)) for key in keys if _plain(now.get(key)) != _plain(before.get(key))}


def _media_changes(config: Mapping[str, Any], base: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    return _differences("media", dataset_media(config, dataset), dataset_media(base, dataset), MEDIA_KEYS)


def _encoder_changes(config: Mapping[str, Any], base: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for modality in dataset_modalities(config, dataset):
        now, before = encoder_spec(config, dataset, modality), encoder_spec(base, dataset, modality)
        changes |= _differences(f"encoders.{modality}", now, before, ENCODER_KEYS)
    return changes


def _result_changes(config: Mapping[str, Any], base: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    """Training settings, the dataset's experiments (what each table plans) and its extra runs."""
    now, before = training_settings(config, dataset), training_settings(base, dataset)
    keys = [key for key in sorted(set(now) | set(before)) if key not in RESOURCE_KEYS]
    changes = _differences("training", now, before, keys)
    changes |= _differences("experiments", config.get("experiments") or {}, base.get("experiments") or {})
    changes |= _differences(f"catalog.{dataset}.experiments", config["catalog"][dataset].get("experiments") or {},
                            base["catalog"][dataset].get("experiments") or {})
    if _plain(run_specs(config, dataset)) != _plain(run_specs(base, dataset)):
        changes["runs"] = _plain(run_specs(config, dataset))
    return changes


def _suffix(changes: Mapping[str, Any]) -> str:
    digest = settings_digest(changes)
    return f"{SUFFIX_PREFIX}{digest}" if digest else ""


@dataclass(frozen=True)
class DatasetFolders:
    """The folder names (under ``results/{dataset}/``) of one dataset under one invocation's
    settings, and the settings that made each differ from the defaults."""

    dataset: str
    names: Mapping[str, str]  # stage -> folder name: "media" or "media-x1a2b3c4"
    changes: Mapping[str, Mapping[str, Any]]  # stage -> the changed settings behind its suffix

    def __getitem__(self, stage: str) -> str:
        return self.names[stage]

    def suffix(self, stage: str) -> str:
        """``""`` or ``-x{digest}``: what the stage's folder name adds to the stage."""
        return self.names[stage][len(stage):]

    def path(self, stage: str, root: str = "results") -> str:
        """``results/{dataset}/{folder}``."""
        return f"{root}/{self.dataset}/{self.names[stage]}"

    @property
    def is_default(self) -> bool:
        return all(name == stage for stage, name in self.names.items())

    def describe(self) -> str:
        """One line per folder that differs from the default, with the changed settings."""
        lines = []
        for stage in FOLDERS:
            if self.names[stage] != stage:
                changed = ", ".join(f"{key}={json.dumps(value)}" for key, value in self.changes[stage].items())
                lines.append(f"results/{self.dataset}/{self.names[stage]}/ ({changed})")
        return "\n".join(lines)


def dataset_folders(config: Mapping[str, Any], base: Mapping[str, Any], dataset: str) -> DatasetFolders:
    """The folder of each stage of ``dataset`` under ``config``, next to ``base`` (the settings
    of the config files alone): a stage's folder takes a suffix when a setting it depends on
    differs (module docstring)."""
    base = _with_dataset(base, config, dataset)
    media = _media_changes(config, base, dataset)
    content = media | _encoder_changes(config, base, dataset)
    results = content | _result_changes(config, base, dataset)
    changes = {"media": media, "features": content, "graph": content, "runs": content,
               "tables": results, "figures": results, "beyond": results, "efficiency": results}
    names = {stage: f"{stage}{_suffix(changes[stage])}" for stage in FOLDERS}
    return DatasetFolders(dataset, names, changes)
