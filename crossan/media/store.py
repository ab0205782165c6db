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

Images (video frames, covers) of a field with ``jpeg_quality`` > 0 (:class:`Field`) are stored
as JPEG: a variable-length ``uint8`` dataset ``[n + 1]`` whose element ``r`` is item ``r``'s
images in one blob, ``count`` little-endian uint32 byte lengths followed by that many
baseline JPEG streams (``count`` = F frames, or 1 cover; the decoded per-item shape is the
dataset's ``item_shape`` attribute). An invalid row holds an empty blob: 16 bytes of
element descriptor, no image bytes. One blob per item, not one element per frame: HDF5's
global heap wasted about 1.3 kB per 15-30 kB object (5 % of a video file), and 100 bytes
per item as one blob. Encoding happens in the sampling workers (:func:`stack_rows`),
decoding on read (:func:`read_valid`). HDF5 chunk compression was measured instead on
H.264-decoded natural frames at 224 px (``bench/media_store.py``): gzip-1 and gzip-6 saved
9 % of the bytes (lzf 4 %), JPEG at the default quality 86 %. Other arrays (audio, or
frames with ``jpeg_quality`` 0) are stored raw, one item per chunk (a reader pulls one item
with one chunk read), and an invalid row of them is never written, so its chunk is never
allocated; small per-item fields (flags, counts, strings) share chunks of about 64 KiB.

Every file carries ``media_format`` (:data:`FORMAT_VERSION`): 2 for this layout. Files
without it were written before JPEG storage existed (format 1: raw arrays, invalid rows
zero-filled); that layout is a special case of this one and is read as is. A file of a
later format is refused by :func:`check_format`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from PIL import Image

from crossan.atomic import partial_path
from crossan.errors import DataError

log = logging.getLogger(__name__)

DONE = "_done"
PADDING_REASON = "padding"
_STRING = h5py.string_dtype("utf-8")
_SMALL_CHUNK_BYTES = 64 * 1024
CONTENT_DIGEST = "content_sha256"
_DIGEST_BLOCK_BYTES = 64 * 1024 * 1024  # rows read at a time by content_digest
_VLEN_DIGEST_ROWS = 64  # rows of a variable-length dataset read at a time by content_digest
# What reading a damaged file raises (RuntimeError: e.g. a broken group symbol table;
# TypeError: a group where a dataset should be).
UNREADABLE = (OSError, KeyError, ValueError, RuntimeError, TypeError)

FORMAT_ATTR = "media_format"
FORMAT_VERSION = 2
_BYTES = h5py.vlen_dtype(np.uint8)
# 4:4:4, no chroma subsampling: per byte it stays closer to the raw frames than PIL's default
# 4:2:0 (natural frames: 4:4:4 at quality 75 is smaller and closer than 4:2:0 at 85, in PSNR and
# in the tiny encoders' features; bench/media_store.py).
JPEG_SUBSAMPLING = "4:4:4"
_PIL_SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}
ITEM_SHAPE_ATTR = "item_shape"


@dataclass(frozen=True)
class Field:
    """A per-item array: each row has ``shape`` and ``dtype``; rows never written hold ``fill``.

    ``one_per_chunk`` stores each item in its own chunk (the raw media arrays; an invalid
    row's chunk is then never written); other fields share chunks of about 64 KiB.
    ``jpeg_quality`` > 0 (uint8 ``[..., S, S, 3]`` fields only) stores each trailing
    ``[S, S, 3]`` image as a JPEG at that quality, an item's images in one blob
    (:func:`encode_jpeg`): the dataset is variable-length ``uint8`` ``[n + 1]`` and an
    invalid row holds no bytes."""

    shape: tuple[int, ...]
    dtype: str
    fill: float | int = 0
    one_per_chunk: bool = False
    jpeg_quality: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be 0 (raw) to 100, got {self.jpeg_quality}")
        if self.jpeg_quality and (
            self.dtype != "uint8" or len(self.shape) < 3 or self.shape[-1] != 3
        ):
            raise ValueError(f"JPEG needs uint8 [..., S, S, 3] items, got {self.dtype} {self.shape}")

    @property
    def jpeg(self) -> bool:
        return self.jpeg_quality > 0

    @property
    def stored_shape(self) -> tuple[int, ...]:
        """Per-row shape of the dataset: ``shape`` raw, ``()`` (one blob) for JPEG."""
        return () if self.jpeg else self.shape


def encode_jpeg(images: np.ndarray, quality: int) -> np.ndarray:
    """uint8 ``[*lead, S, S, 3]`` -> one blob, uint8 ``[bytes]``: the ``prod(lead)`` JPEG
    lengths (uint32 little-endian), then the baseline JPEGs at ``quality``,
    :data:`JPEG_SUBSAMPLING`, in ``lead``'s C order. Deterministic for a given libjpeg build."""
    streams = []
    for index in np.ndindex(images.shape[:-3]):
        buffer = io.BytesIO()
        Image.fromarray(images[index]).save(
            buffer, "JPEG", quality=quality, subsampling=_PIL_SUBSAMPLING[JPEG_SUBSAMPLING]
        )
        streams.append(buffer.getvalue())
    lengths = np.array([len(stream) for stream in streams], dtype="<u4")
    return np.frombuffer(lengths.tobytes() + b"".join(streams), dtype=np.uint8)


def decode_jpeg(blob: np.ndarray, item_shape: tuple[int, ...]) -> np.ndarray:
    """One blob of :func:`encode_jpeg` -> uint8 ``item_shape`` (``[*lead, S, S, 3]``).

    Raises ValueError for a blob that is empty (an invalid row), whose lengths do not add
    up, or whose images do not decode to ``[S, S, 3]`` (a damaged file; PIL refuses
    truncated data)."""
    lead, image_shape = tuple(item_shape[:-3]), tuple(item_shape[-3:])
    count = int(np.prod(lead, dtype=np.int64))
    data = memoryview(np.ascontiguousarray(blob, dtype=np.uint8)).cast("B")
    if len(data) == 0:
        raise ValueError("no JPEG bytes in a row marked valid")
    header = 4 * count
    whole = len(data) >= header
    lengths = np.frombuffer(data[:header] if whole else b"", dtype="<u4").astype(np.int64)
    if not whole or header + int(lengths.sum()) != len(data):
        raise ValueError(f"JPEG blob of {len(data)} bytes does not hold {count} images "
                         f"of the lengths it lists")
    out = np.empty((count, *image_shape), dtype=np.uint8)
    offset = header
    for index, length in enumerate(lengths):
        try:
            with Image.open(io.BytesIO(data[offset : offset + length])) as image:
                pixels = np.asarray(image.convert("RGB"))
        except (OSError, SyntaxError) as error:  # UnidentifiedImageError, truncated, broken
            raise ValueError(f"JPEG {index} of the row does not decode: {error}") from error
        if pixels.shape != image_shape:
            raise ValueError(f"JPEG {index} of the row is {pixels.shape}, expected {image_shape}")
        out[index] = pixels
        offset += int(length)
    return out.reshape(item_shape)


def stack_rows(field: Field, values: Sequence[np.ndarray], valid: Sequence[bool]) -> np.ndarray:
    """Items' values (each ``field.shape``) as :meth:`PartialStore.write` takes them:
    ``[k, *shape]`` for a raw field; for a JPEG field, object ``[k]`` of blobs
    (:func:`encode_jpeg`), empty for the items that are not ``valid`` (their values are
    ignored)."""
    if not field.jpeg:
        return np.stack(values)
    out = np.empty(len(values), dtype=object)
    for row, (value, ok) in enumerate(zip(values, valid)):
        out[row] = encode_jpeg(value, field.jpeg_quality) if ok else np.zeros(0, dtype=np.uint8)
    return out


def is_jpeg(dataset: h5py.Dataset) -> bool:
    """True for a dataset of JPEG-encoded images (see :class:`Field`)."""
    return h5py.check_vlen_dtype(dataset.dtype) is not None and ITEM_SHAPE_ATTR in dataset.attrs


def item_shape(dataset: h5py.Dataset) -> tuple[int, ...]:
    """What one item of a media dataset reads as: the decoded shape for JPEG."""
    if is_jpeg(dataset):
        return tuple(int(size) for size in dataset.attrs[ITEM_SHAPE_ATTR])
    return tuple(dataset.shape[1:])


def read_valid(dataset: h5py.Dataset, start: int, stop: int, keep: np.ndarray) -> np.ndarray:
    """Rows ``start..stop-1`` of a media dataset where ``keep`` (bool ``[stop - start]``), as
    ``[keep.sum(), *item_shape(dataset)]``: JPEG rows decoded, raw rows as stored."""
    rows = dataset[start:stop][keep]
    if not is_jpeg(dataset):
        return rows
    shape = item_shape(dataset)
    out = np.empty((len(rows), *shape), dtype=np.uint8)
    for index, blob in enumerate(rows):
        out[index] = decode_jpeg(blob, shape)
    return out


def check_format(file: h5py.File, path: Path) -> None:
    """Refuse a media file of a later layout than this crossan reads (DataError)."""
    version = int(file.attrs.get(FORMAT_ATTR, 1))
    if version > FORMAT_VERSION:
        raise DataError(
            f"{path} has media format {version}, this crossan reads formats up to "
            f"{FORMAT_VERSION}: update crossan, or delete the file and rerun sample-media"
        )


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
        if name not in file or file[name].shape[1:] != field.stored_shape:
            return f"dataset '{name}' missing or of another shape"
        if is_jpeg(file[name]) != field.jpeg or item_shape(file[name]) != field.shape:
            return f"dataset '{name}' stored in another layout"
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
    its values (strings as UTF-8 and variable-length bytes such as JPEG images as stored,
    each prefixed with its length), read a block of rows at a time. Attributes are left
    out: the spec is recorded separately and the rest (paths, times) does not decide the
    content. Equal for equal values whatever the chunking or the order rows were written in."""
    digest = hashlib.sha256()
    for name in sorted(file):
        if name == DONE:
            continue
        dataset = file[name]
        strings = h5py.check_string_dtype(dataset.dtype) is not None
        vlen = None if strings else h5py.check_vlen_dtype(dataset.dtype)
        dtype = f"vlen {np.dtype(vlen).str}" if vlen is not None else dataset.dtype.str
        digest.update(json.dumps([name, dtype, list(dataset.shape)]).encode("utf-8"))
        row_bytes = dataset.dtype.itemsize * int(np.prod(dataset.shape[1:], dtype=np.int64))
        step = _VLEN_DIGEST_ROWS if vlen is not None else max(1, _DIGEST_BLOCK_BYTES // max(row_bytes, 1))
        for start in range(0, dataset.shape[0], step):
            if strings:
                for value in dataset.asstr()[start : start + step]:
                    encoded = value.encode("utf-8")
                    digest.update(len(encoded).to_bytes(8, "little") + encoded)
            elif vlen is not None:
                for value in dataset[start : start + step].reshape(-1):
                    data = np.ascontiguousarray(value)
                    digest.update(data.nbytes.to_bytes(8, "little") + data.tobytes())
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


def _write_bytes(dataset: h5py.Dataset, first: int, values: np.ndarray) -> None:
    """Write object ``[k]`` of uint8 arrays to rows ``first..first+k-1`` of a variable-length
    dataset. Through the low-level API: h5py's ``dataset[a:b] = values``
    reshapes an object array whose elements happen to have equal lengths and then fails."""
    memory = h5py.h5s.create_simple(values.shape)
    target = dataset.id.get_space()
    target.select_hyperslab((first,) + (0,) * (values.ndim - 1), values.shape)
    dataset.id.write(memory, target, values, mtype=h5py.h5t.py_create(_BYTES))


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
            if field.jpeg:
                dataset = _create_dataset(file, name, num_rows, field.stored_shape, _BYTES, None)
                dataset.attrs[ITEM_SHAPE_ATTR] = list(field.shape)
                count = int(np.prod(field.shape[:-3], dtype=np.int64))
                dataset.attrs["encoding"] = (
                    f"per item: {count} uint32 little-endian byte lengths, then {count} JPEG "
                    f"images of {list(field.shape[-3:])} (quality {field.jpeg_quality}, "
                    f"{JPEG_SUBSAMPLING}) in item_shape order; empty when the row is invalid"
                )
            else:
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
        file.attrs[FORMAT_ATTR] = FORMAT_VERSION
        file.attrs["created"] = _now()
        file.flush()
        return file

    def write(
        self, rows: list[int], data: dict[str, np.ndarray], reasons: list[str]
    ) -> None:
        """Write ``rows`` (sorted dense ids): ``data[field]`` is ``[len(rows), *stored_shape]``
        (:func:`stack_rows`: a JPEG field's blobs are encoded by the caller, in the decoding
        workers), ``reasons[i]`` is "" for a valid row. Not durable until
        :meth:`commit`. A raw one-item-per-chunk field is written for the valid rows only."""
        valid = np.array([reason == "" for reason in reasons], dtype=bool)
        reason_array = np.array(reasons, dtype=object)
        for first, stop, offset in _runs(rows):
            take = slice(offset, offset + stop - first)
            for name, field in self.fields.items():
                if field.jpeg:
                    _write_bytes(self._file[name], first, data[name][take])
                elif field.one_per_chunk:
                    self._write_valid(name, field, rows[take], data[name][take], valid[take])
                else:
                    self._file[name][first:stop] = data[name][take]
            self._file["valid"][first:stop] = valid[take]
            self._file["reason"][first:stop] = reason_array[take]

    def _write_valid(
        self, name: str, field: Field, rows: list[int], values: np.ndarray, valid: np.ndarray
    ) -> None:
        """Write the valid rows of one run; an invalid row's chunk stays unallocated (it reads
        as ``fill``), unless an earlier, killed run wrote it: then it is reset to ``fill``."""
        dataset = self._file[name]
        for first, stop, offset in _runs([row for row, ok in zip(rows, valid) if ok]):
            at = int(np.flatnonzero(valid)[offset])
            dataset[first:stop] = values[at : at + stop - first]
        zeros = (0,) * len(field.shape)
        for row in np.asarray(rows)[~valid]:
            if dataset.id.get_chunk_info_by_coord((int(row), *zeros)).byte_offset is not None:
                dataset[row] = field.fill

    def commit(self, rows: list[int]) -> None:
        """Make written ``rows`` durable and mark them done (data flushed before the flags)."""
        self._file.flush()
        for first, stop, _ in _runs(rows):
            self._file[DONE][first:stop] = True
        self._file.flush()
        self.done[rows] = True

    def finalize(self, digest: bool = False) -> Path:
        """Drop the done mask, close and rename to the final name. All rows must be done.
        ``digest``: record ``content_sha256`` first (media files, whose digest later stages'
        provenance reads; it re-reads the whole file)."""
        if not self.done.all():
            raise RuntimeError(f"{self.path}: {int((~self.done).sum())} rows not written")
        del self._file[DONE]
        if digest:
            self._file.attrs[CONTENT_DIGEST] = content_digest(self._file)
        self._file.attrs["completed"] = _now()
        self._file.close()
        os.replace(self.path, self.final)
        return self.final

    def close(self) -> None:
        """Close without finalising; the partial file stays resumable."""
        if self._file.id.valid:
            self._file.close()


def unreadable_file(path: Path, error: BaseException, kind: str = "media", step: str = "samples") -> DataError:
    """The error for a finished ``kind`` file h5py cannot read (cut short, overwritten), which
    the workflow's ``step`` writes again."""
    return DataError(
        f"{kind} file {path} is unreadable (cut short or damaged: {error}); delete it and rerun "
        f"snakemake, which {step} it again"
    )


def read_status(path: Path) -> tuple[np.ndarray, list[str], list[str]]:
    """``(valid bool [n + 1], reason [n + 1], item_id [n + 1])`` of a modality file."""
    try:
        with h5py.File(path, "r") as file:
            return file["valid"][:], list(file["reason"].asstr()[:]), list(file["item_id"].asstr()[:])
    except UNREADABLE as error:
        raise unreadable_file(path, error) from error
