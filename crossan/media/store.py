"""One modality's HDF5 file: written under ``name.h5.partial``, resumable, renamed when complete.

Layout of a file for ``n`` items (row ``r`` = dense item id ``r``; row 0 is padding):

* one dataset per field, shape ``[n + 1, *field_shape]``;
* ``valid`` bool ``[n + 1]``, ``reason`` UTF-8 string ``[n + 1]`` ("" when valid, "padding"
  for row 0), ``item_id`` UTF-8 string ``[n + 1]`` ("" for row 0);
* attributes: the sampling spec (also as one canonical ``spec_json`` string, which is what a
  resume compares), descriptive ones that do not decide the content (the manifest path),
  ``created`` and, once complete, ``completed`` and ``content_sha256`` (a digest of every
  stored value, see :func:`content_digest`: what a later stage's provenance records, so that
  resampling identical media changes nothing downstream).

While partial the file also holds ``_done`` bool ``[n + 1]``. Rows are written, the file is
flushed, then their ``_done`` flags are set and flushed again, so a flag is only ever on disk
after its data. A rerun after a kill reopens the partial file and skips rows already done;
a partial file that cannot be read whole (cut short, bytes overwritten: see
:func:`check_readable`) or was made for another spec or item list is deleted with a logged
reason and started afresh.
``_done`` is unlinked before the rename, so a finished file is the same whether or not its
run was interrupted.

The media arrays are chunked one item per chunk (a reader pulls one item with one chunk
read); small per-item fields (flags, counts, strings) share chunks of about 64 KiB.
No compression: on natural video frames lzf saved 7 % and gzip-1 16 % of the space at 12x
and 26x the write time, and the single writer process would become the bottleneck.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from crossan.atomic import partial_path
from crossan.errors import DataError

log = logging.getLogger(__name__)

DONE = "_done"
PADDING_REASON = "padding"
_STRING = h5py.string_dtype("utf-8")
_SMALL_CHUNK_BYTES = 64 * 1024
CONTENT_DIGEST = "content_sha256"
_DIGEST_BLOCK_BYTES = 64 * 1024 * 1024  # rows read at a time by content_digest
# What reading a damaged file raises (RuntimeError: e.g. a broken group symbol table;
# TypeError: a group where a dataset should be).
UNREADABLE = (OSError, KeyError, ValueError, RuntimeError, TypeError)


@dataclass(frozen=True)
class Field:
    """A per-item array: each row has ``shape`` and ``dtype``; rows never written hold ``fill``.
    ``one_per_chunk`` stores each item in its own chunk (the media arrays); other fields share
    chunks of about 64 KiB."""

    shape: tuple[int, ...]
    dtype: str
    fill: float | int = 0
    one_per_chunk: bool = False


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _chunk_rows(field_shape: tuple[int, ...], itemsize: int, num_rows: int) -> int:
    item_bytes = int(np.prod(field_shape, dtype=np.int64)) * itemsize
    return max(1, min(num_rows, _SMALL_CHUNK_BYTES // max(item_bytes, 1)))


def _create_dataset(
    file: h5py.File,
    name: str,
    num_rows: int,
    shape: tuple[int, ...],
    dtype: Any,
    fill: Any,
    one_per_chunk: bool = False,
) -> h5py.Dataset:
    rows = 1 if one_per_chunk else _chunk_rows(shape, np.dtype(dtype).itemsize, num_rows)
    kwargs: dict[str, Any] = {} if fill is None else {"fillvalue": fill}
    return file.create_dataset(
        name, shape=(num_rows, *shape), dtype=dtype, chunks=(rows, *shape), **kwargs
    )


def spec_json(spec: dict[str, Any]) -> str:
    """Canonical text of a spec, compared verbatim on resume."""
    return json.dumps(spec, sort_keys=True)


def _runs(rows: list[int]) -> list[tuple[int, int, int]]:
    """Split sorted ``rows`` into contiguous runs: ``(first_row, stop_row, offset_in_rows)``."""
    runs: list[tuple[int, int, int]] = []
    start = 0
    for i in range(1, len(rows) + 1):
        if i == len(rows) or rows[i] != rows[i - 1] + 1:
            runs.append((rows[start], rows[i - 1] + 1, start))
            start = i
    return runs


def _mismatch(
    file: h5py.File, spec: dict[str, Any], item_ids: list[str], fields: dict[str, Field]
) -> str | None:
    """Why ``file`` does not hold this spec and item list (None when it does)."""
    stored = file.attrs.get("spec_json")
    if stored != spec_json(spec):
        return f"sampling spec changed (file has {stored}, run wants {spec_json(spec)})"
    for name, field in fields.items():
        if name not in file or file[name].shape[1:] != field.shape:
            return f"dataset '{name}' missing or of another shape"
    stored_ids = file["item_id"].asstr()[1:] if "item_id" in file else None
    if stored_ids is None or len(stored_ids) != len(item_ids) or list(stored_ids) != item_ids:
        return "item list changed"
    return None


def is_current(
    final: Path, spec: dict[str, Any], item_ids: list[str], fields: dict[str, Field]
) -> bool:
    """True when ``final`` is a complete file for exactly this spec and item list."""
    if not final.is_file():
        return False
    try:
        with h5py.File(final, "r") as file:
            return DONE not in file and _mismatch(file, spec, item_ids, fields) is None
    except UNREADABLE:
        return False


def check_readable(file: h5py.File) -> None:
    """Read what a resume or a reader relies on: every attribute, every dataset's metadata and
    chunk index, and all of ``_done``, ``valid``, ``reason`` and ``item_id`` (the media arrays
    themselves are not read). Bytes overwritten in the middle of a file often leave it
    opening fine and fail only here (a chunk index B-tree or a string heap), where a later
    write would otherwise fail, or worse. Raises what h5py raises (:data:`UNREADABLE`)."""
    dict(file.attrs)
    for name in file:
        dataset = file[name]
        if not isinstance(dataset, h5py.Dataset):
            raise TypeError(f"'{name}' is not a dataset")
        if dataset.chunks is not None:
            dataset.id.chunk_iter(lambda _chunk: None)  # walks the whole chunk index
    for name in (DONE, "valid", "reason", "item_id"):
        if name in file:
            file[name][:]


def content_digest(file: h5py.File) -> str:
    """SHA-256 of every dataset but ``_done``, in name order: its name, dtype and shape, then
    its values (strings as UTF-8, each prefixed with its length), read a block of rows at a
    time. Attributes are left out: the spec is recorded separately and the rest (paths,
    times) does not decide the content. Equal for equal values whatever the chunking or the
    order rows were written in."""
    digest = hashlib.sha256()
    for name in sorted(file):
        if name == DONE:
            continue
        dataset = file[name]
        header = [name, dataset.dtype.str, list(dataset.shape)]
        digest.update(json.dumps(header).encode("utf-8"))
        strings = h5py.check_string_dtype(dataset.dtype) is not None
        row_bytes = dataset.dtype.itemsize * int(np.prod(dataset.shape[1:], dtype=np.int64))
        step = max(1, _DIGEST_BLOCK_BYTES // max(row_bytes, 1))
        for start in range(0, dataset.shape[0], step):
            if strings:
                for value in dataset.asstr()[start : start + step]:
                    encoded = value.encode("utf-8")
                    digest.update(len(encoded).to_bytes(8, "little") + encoded)
            else:
                digest.update(np.ascontiguousarray(dataset[start : start + step]).data)
    return digest.hexdigest()


def _reopen(
    path: Path, fields: dict[str, Field], spec: dict[str, Any], item_ids: list[str]
) -> tuple[h5py.File | None, str | None]:
    """Open a partial file for resuming: ``(file, None)``, or ``(None, why not)``."""
    try:
        file = h5py.File(path, "r+")
    except BlockingIOError as error:
        # Never discard another process's work: a running sample-media (or, for a moment,
        # the workers of a killed one) still holds the file.
        raise DataError(
            f"{path} is open in another process (a sample-media run still going?): {error}"
        ) from error
    except UNREADABLE as error:  # e.g. killed in the middle of a flush
        return None, f"unreadable ({error})"
    try:
        check_readable(file)
        why = f"no '{DONE}' mask" if DONE not in file else _mismatch(file, spec, item_ids, fields)
    except UNREADABLE as error:
        why = f"unreadable ({error})"
    if why is None:
        return file, None
    file.close()
    return None, why


class PartialStore:
    """A modality file being written. Create or resume with :meth:`open`."""

    def __init__(self, final: Path, file: h5py.File, fields: dict[str, Field]) -> None:
        self.final = final
        self.path = partial_path(final)
        self._file = file
        self.fields = fields
        self.done: np.ndarray = file[DONE][:]  # bool [n + 1], mirrors the file

    @classmethod
    def open(
        cls,
        final: Path,
        fields: dict[str, Field],
        spec: dict[str, Any],
        item_ids: list[str],
        info: dict[str, Any] | None = None,
    ) -> tuple[PartialStore, str | None]:
        """Resume ``final``'s partial file when its spec and items match, else start afresh.

        ``spec`` decides what the file holds and must match to resume; ``info`` attributes
        are descriptive only (e.g. the manifest path). Returns the store and, when an
        existing partial file was discarded, why.
        """
        path = partial_path(final)
        discarded: str | None = None
        if path.exists():
            file, discarded = _reopen(path, fields, spec, item_ids)
            if file is not None:
                return cls(final, file, fields), None
            log.warning("%s: starting over, discarding %s: %s", final.name, path, discarded)
            path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        file = cls._create(path, fields, spec, item_ids, info or {})
        return cls(final, file, fields), discarded

    @staticmethod
    def _create(
        path: Path,
        fields: dict[str, Field],
        spec: dict[str, Any],
        item_ids: list[str],
        info: dict[str, Any],
    ) -> h5py.File:
        num_rows = len(item_ids) + 1
        file = h5py.File(path, "w")
        for name, field in fields.items():
            _create_dataset(
                file, name, num_rows, field.shape, field.dtype, field.fill, field.one_per_chunk
            )
        _create_dataset(file, "valid", num_rows, (), bool, False)
        reason = _create_dataset(file, "reason", num_rows, (), _STRING, None)
        ids = _create_dataset(file, "item_id", num_rows, (), _STRING, None)
        done = _create_dataset(file, DONE, num_rows, (), bool, False)
        ids[:] = np.array(["", *item_ids], dtype=object)
        reason[0] = PADDING_REASON
        done[0] = True
        for key, value in (info | spec).items():
            file.attrs[key] = value
        file.attrs["spec_json"] = spec_json(spec)
        file.attrs["created"] = _now()
        file.flush()
        return file

    def write(
        self, rows: list[int], data: dict[str, np.ndarray], reasons: list[str]
    ) -> None:
        """Write ``rows`` (sorted dense ids): ``data[field]`` is ``[len(rows), *field.shape]``,
        ``reasons[i]`` is "" for a valid row. Not durable until :meth:`commit`."""
        valid = np.array([reason == "" for reason in reasons], dtype=bool)
        reason_array = np.array(reasons, dtype=object)
        for first, stop, offset in _runs(rows):
            take = slice(offset, offset + stop - first)
            for name in self.fields:
                self._file[name][first:stop] = data[name][take]
            self._file["valid"][first:stop] = valid[take]
            self._file["reason"][first:stop] = reason_array[take]

    def commit(self, rows: list[int]) -> None:
        """Make written ``rows`` durable and mark them done (data flushed before the flags)."""
        self._file.flush()
        for first, stop, _ in _runs(rows):
            self._file[DONE][first:stop] = True
        self._file.flush()
        self.done[rows] = True

    def finalize(self) -> Path:
        """Drop the done mask, close and rename to the final name. All rows must be done."""
        if not self.done.all():
            raise RuntimeError(f"{self.path}: {int((~self.done).sum())} rows not written")
        del self._file[DONE]
        self._file.attrs[CONTENT_DIGEST] = content_digest(self._file)
        self._file.attrs["completed"] = _now()
        self._file.close()
        os.replace(self.path, self.final)
        return self.final

    def close(self) -> None:
        """Close without finalising; the partial file stays resumable."""
        if self._file.id.valid:
            self._file.close()


def unreadable_media(path: Path, error: BaseException) -> DataError:
    """The error for a finished media file h5py cannot read (cut short, overwritten)."""
    return DataError(
        f"media file {path} is unreadable (cut short or damaged: {error}); delete it and rerun "
        "snakemake, which samples it again"
    )


def read_status(path: Path) -> tuple[np.ndarray, list[str], list[str]]:
    """``(valid bool [n + 1], reason [n + 1], item_id [n + 1])`` of a modality file."""
    try:
        with h5py.File(path, "r") as file:
            return file["valid"][:], list(file["reason"].asstr()[:]), list(file["item_id"].asstr()[:])
    except UNREADABLE as error:
        raise unreadable_media(path, error) from error
