"""Feature files: one per modality, ``results/{dataset}/features/{modality}.h5``.

Layout (rows = dense item ids; the file covers items ``first_row .. first_row + m - 1``, and
its local row ``r`` holds item ``first_row + r - 1``; row 0 is padding):

* ``features`` float16 ``[m + 1, n_layers, hidden]``: the pooled vector of each kept hidden
  state (see :mod:`crossan.encoders.pooling`); zeros in row 0 and in invalid rows;
* ``valid`` bool ``[m + 1]``, ``reason`` str ``[m + 1]`` (the media stage's reason, "" when
  valid, "padding" in row 0), ``item_id`` str ``[m + 1]``;
* attributes: ``config_hash`` (SHA-256 of ``config_json``, everything that decides the
  numbers), ``model``, ``layers``, ``pooling``, ``input_spec``, ``media_spec``, package
  versions, device, ``created``/``completed`` and, for a shard, ``shard``/``num_shards``.

A whole-dataset file has ``first_row = 1`` and ``m = total_items``; a shard file covers one
contiguous range. Files are written by :class:`crossan.media.store.PartialStore` (resumable
``name.h5.partial`` with a done mask, committed chunk by chunk, renamed when complete).
:func:`merge_shards` checks that shard files agree and tile all rows exactly once, and writes
the whole-dataset file the same way.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from crossan.atomic import partial_path
from crossan.errors import DataError
from crossan.media.store import UNREADABLE, Field, PartialStore, unreadable_file

log = logging.getLogger(__name__)

FEATURES = "features"
FEATURE_DTYPE = "float16"
# Attributes a resume compares verbatim (via the store's spec_json), in this order.
SPEC_KEYS = (
    "modality", "model", "config_hash", "layers", "pooling", "hidden_size", "dtype",
    "first_row", "total_items",
)
SHARD_KEYS = ("shard", "num_shards")
MERGE_BLOCK_ROWS = 4096  # rows copied at a time by merge_shards (bounded memory)


def feature_fields(num_layers: int, hidden_size: int) -> dict[str, Field]:
    """The per-item dataset of a feature file."""
    return {FEATURES: Field((num_layers, hidden_size), FEATURE_DTYPE)}


def config_hash(config: dict[str, Any]) -> tuple[str, str]:
    """``(sha256, canonical_json)`` of a JSON-serialisable config."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest(), text


def file_spec(
    *,
    modality: str,
    model: str,
    digest: str,
    layers: list[int],
    pooling: str,
    hidden_size: int,
    first_row: int,
    total_items: int,
    shard: tuple[int, int] | None,
) -> dict[str, Any]:
    """The attributes a resume compares verbatim (:data:`SPEC_KEYS`: the hash plus where the
    file sits), with :data:`SHARD_KEYS` for a shard file."""
    values = (modality, model, digest, list(layers), pooling, hidden_size, FEATURE_DTYPE,
              first_row, total_items)
    spec: dict[str, Any] = dict(zip(SPEC_KEYS, values, strict=True))
    if shard is not None:
        spec["shard"], spec["num_shards"] = shard
    return spec


def discard_stale_partial(final: Path, digest: str) -> str | None:
    """Remove ``final``'s partial file when it was made under another config hash; return
    why (None when there was nothing to discard)."""
    path = partial_path(final)
    if not path.exists():
        return None
    try:
        with h5py.File(path, "r") as file:
            stored = file.attrs.get("config_hash")
    except BlockingIOError as error:  # never discard a running extraction's work
        raise DataError(f"{path} is open in another process (an extraction still going?)") from error
    except UNREADABLE as error:  # e.g. killed in the middle of a flush
        why: str | None = f"unreadable ({error})"
    else:
        why = None if stored == digest else f"config hash changed ({stored} -> {digest})"
    if why is None:
        return None
    log.warning("%s: starting over, discarding %s: %s", final.name, path, why)
    path.unlink()
    return why


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class FeatureFile:
    """What a finished feature file says about itself."""

    path: Path
    attrs: dict[str, Any]
    first_row: int
    num_items: int  # m: rows 1..m of the file
    total_items: int

    @property
    def stop_row(self) -> int:
        """One past the last absolute row covered."""
        return self.first_row + self.num_items


def inspect(path: Path) -> FeatureFile:
    """Open ``path`` read-only and check it is a finished feature file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"feature file {path} does not exist")
    try:
        with h5py.File(path, "r") as file:
            attrs = dict(file.attrs)
            if FEATURES not in file or "config_hash" not in attrs:
                raise DataError(f"{path} is not a crossan feature file")
            if "_done" in file:
                raise DataError(f"{path} is unfinished (it still has a done mask)")
            rows = file[FEATURES].shape[0] - 1
    except UNREADABLE as error:
        raise unreadable_file(path, error, "feature", "extracts") from error
    return FeatureFile(path, attrs, int(attrs["first_row"]), rows, int(attrs["total_items"]))


@dataclass(frozen=True)
class LoadedFeatures:
    """A whole-dataset feature file read into memory."""

    path: Path
    features: np.ndarray  # float16 [n + 1, n_layers, hidden]
    valid: np.ndarray  # bool [n + 1]
    item_ids: list[str]  # [n]
    attrs: dict[str, Any]


def load_features(path: Path) -> LoadedFeatures:
    """Check ``path`` is a finished whole-dataset feature file (not a shard) and read all of it."""
    info = inspect(path)
    if info.first_row != 1 or info.num_items != info.total_items:
        raise DataError(
            f"{path} is a shard (rows {info.first_row}..{info.stop_row - 1} of "
            f"{info.total_items}); merge the shards first (crossan merge-features)"
        )
    try:
        with h5py.File(path, "r") as file:
            features = file[FEATURES][:]
            valid = file["valid"][:].astype(bool)
            item_ids = list(file["item_id"].asstr()[1:]) if "item_id" in file else None
    except UNREADABLE as error:
        raise unreadable_file(path, error, "feature", "extracts") from error
    if features.ndim != 3:
        raise DataError(f"{path}: features must be [n + 1, n_layers, hidden], got {features.shape}")
    if item_ids is None:
        raise DataError(f"{path} has no item_id dataset; re-extract it")
    return LoadedFeatures(Path(path), features, valid, item_ids, info.attrs)


# ---------------------------------------------------------------- merging


def _check_shards(shards: list[FeatureFile]) -> None:
    """Same config, same item list length, rows 1..total covered exactly once."""
    first = shards[0]
    for key in ("modality", "total_items", "layers", "hidden_size", "config_hash"):
        for other in shards[1:]:
            mine, theirs = _plain(first.attrs.get(key)), _plain(other.attrs.get(key))
            if mine != theirs:
                raise DataError(
                    f"shard files disagree on {key}: {first.path.name} has {mine}, "
                    f"{other.path.name} has {theirs}{_config_difference(first, other)}"
                )
    expected = 1
    for shard in sorted(shards, key=lambda s: (s.first_row, s.stop_row)):
        if shard.num_items == 0:
            continue
        if shard.first_row > expected:
            raise DataError(
                f"rows {expected}..{shard.first_row - 1} are in no shard file (a missing "
                f"shard?); {len(shards)} given"
            )
        if shard.first_row < expected:
            raise DataError(
                f"rows {shard.first_row}..{min(expected, shard.stop_row) - 1} are in more than "
                f"one shard file (overlap at {shard.path.name})"
            )
        expected = shard.stop_row
    if expected != first.total_items + 1:
        raise DataError(
            f"rows {expected}..{first.total_items} are in no shard file (a missing shard?); "
            f"{len(shards)} given"
        )


def _config_difference(a: FeatureFile, b: FeatureFile) -> str:
    """`` (differing settings: ...)`` from the two files' ``config_json``, or ""."""
    try:
        left, right = json.loads(a.attrs["config_json"]), json.loads(b.attrs["config_json"])
    except (KeyError, TypeError, ValueError):
        return ""
    keys = sorted(k for k in set(left) | set(right) if left.get(k) != right.get(k))
    return f" (differing settings: {', '.join(keys)})" if keys else ""


def merge_shards(shard_paths: list[Path], out_path: Path) -> Path:
    """Merge shard files into the whole-dataset file ``out_path`` (written as
    ``out_path.partial`` and renamed). Raises :class:`DataError` when the shards come from
    different configs, or miss or repeat rows. The merged ``features`` equal an unsharded
    run's bit for bit (same batches, same bytes copied)."""
    if not shard_paths:
        raise DataError("merge-features: no shard files given")
    shards = [inspect(Path(p)) for p in shard_paths]
    _check_shards(shards)
    first = shards[0]
    attrs = first.attrs
    layers, hidden = len(np.atleast_1d(attrs["layers"])), int(attrs["hidden_size"])
    spec = {key: _plain(attrs[key]) for key in SPEC_KEYS} | {"first_row": 1}
    item_ids: list[str] = []
    ordered = sorted((s for s in shards if s.num_items), key=lambda s: s.first_row)
    for shard in ordered:
        with h5py.File(shard.path, "r") as file:
            item_ids += list(file["item_id"].asstr()[1:])
    skip = set(spec) | set(SHARD_KEYS) | {"created", "completed", "spec_json", "empty_titles"}
    info = {key: value for key, value in attrs.items() if key not in skip}
    info["merged_from"] = json.dumps([s.path.name for s in shards])
    if "empty_titles" in attrs:
        info["empty_titles"] = int(sum(int(s.attrs["empty_titles"]) for s in shards))
    out_path = Path(out_path)
    store, _ = PartialStore.open(out_path, feature_fields(layers, hidden), spec, item_ids, info)
    try:
        for shard in ordered:
            _copy_shard(shard, store)
        store.finalize()
    finally:
        store.close()
    log.info("merged %d shard files (%d items) -> %s", len(shards), len(item_ids), out_path)
    return out_path


def _copy_shard(shard: FeatureFile, store: PartialStore) -> None:
    """Copy a shard's rows into the merged store block by block, committing each block."""
    with h5py.File(shard.path, "r") as file:
        for local in range(1, shard.num_items + 1, MERGE_BLOCK_ROWS):
            stop = min(local + MERGE_BLOCK_ROWS, shard.num_items + 1)
            rows = list(range(shard.first_row + local - 1, shard.first_row + stop - 1))
            if store.done[rows].all():  # resumed merge
                continue
            reasons = list(file["reason"].asstr()[local:stop])
            store.write(rows, {FEATURES: file[FEATURES][local:stop]}, reasons)
            store.commit(rows)


def _plain(value: Any) -> Any:
    """An HDF5 attribute as the plain Python value :func:`file_spec` made."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value
