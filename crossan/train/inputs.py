"""Stage 2 inputs: cached item states on the device, padded user sequences, training batches.

Item side (:class:`ItemStates`, :func:`load_item_states`)
    Each requested modality's feature file (``results/{dataset}/features/{modality}.h5``,
    layout in :mod:`crossan.encoders.store`) is read **once**, at load time, into one tensor
    ``[n_items + 1, n_layers, hidden]`` on the training device; batches only index into it
    (no file access after loading). Row ``r`` is dense item id ``r``; row 0 is padding.

    Storage dtype: on CUDA the states stay float16 as stored (half the memory: MicroLens-100K
    is ~212 MB per modality instead of ~425 MB); on the CPU they are converted to float32
    once, because half-precision arithmetic and per-batch conversion are slow there.
    :meth:`ItemStates.gather` always returns ``compute_dtype`` (float32 by default). The
    float16 -> float32 conversion is exact, so the model sees bit-identical inputs whichever
    storage dtype was chosen.

Sequence side (:class:`SequenceData`, :func:`load_sequences`)
    All padding is on the **left** (SASRec convention), so the last position of every row is
    the most recent item and the user state used for ranking is ``user_states[:, -1]``.

    * Training, from ``train.parquet`` (each user's ``sequence[:-2]``): next-item prediction,
      ``inputs = seq[:-1]`` and ``targets = seq[1:]``, both cut to their last ``max_len``
      positions so they stay aligned, left-padded to ``max_len``. A position whose input is
      padding has target 0 too. A train sequence of one item (or none) has no next-item pair:
      its row is all padding and :func:`train_batches` skips it; its item still counts in
      :func:`item_popularity_counts` and is in the user's validation/test history. A train
      sequence longer than ``max_len + 1`` (impossible with Stage 1's 13-item truncation and
      ``max_len = 10``) trains on its last ``max_len`` pairs only.
    * ``TrainSplit.sequences``: each user's whole train sequence, left-padded to the longest
      one, for the loss's same-user masking (``debiased_in_batch_loss``'s ``sequences``);
      :attr:`TrainBatch.window` is the last ``max_len + 1`` of it (the loss's candidates).
      Validation and test items are never in it (that would leak the held-out targets).
    * Validation/test, from ``valid.parquet``/``test.parquet``: ``history`` = the last
      ``max_len`` items before the target (model input, left-padded), ``target``, and
      ``full_history`` = every item before the target (left-padded to the longest), the
      items excluded from the full ranking. The test history includes the validation item.

Batches (:func:`train_batches`)
    Users with at least one training pair are shuffled with the caller's
    :class:`torch.Generator` (same seed, same order). Each :class:`TrainBatch` carries the
    sorted distinct non-zero item ids of its inputs and targets (``unique_items [K]``) and
    ``inputs_local``/``targets_local`` in ``0..K``: local 0 is padding and local ``j >= 1`` is
    ``unique_items[j - 1]``; ``padded_unique_items = [0, *unique_items]`` maps local indices
    back to ids exactly. So only the ``K`` distinct items of a batch go through the adapters,
    and :meth:`TrainBatch.lookup` spreads their embeddings back over the positions.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import Tensor

from crossan.data.readers import read_item_table
from crossan.encoders.store import LoadedFeatures, load_features
from crossan.errors import DataError
from crossan.runs.settings import training_default
from crossan.runs.vocabulary import MODALITY_LETTERS, modality_letters

log = logging.getLogger(__name__)


# ====================================================================== item states


def default_storage_dtype(device: torch.device | str) -> torch.dtype:
    """float16 (as stored) on CUDA, float32 elsewhere (see the module docstring)."""
    return torch.float16 if torch.device(device).type == "cuda" else torch.float32


@dataclass
class ItemStates:
    """Every item's cached hidden states, resident on one device.

    Attributes:
        states: modality name (``"text"``, ``"image"``, ``"video"``, ``"audio"``) ->
            ``[n_items + 1, n_layers, hidden]`` in the storage dtype (row 0 = padding, zeros).
        available: modality name -> ``bool [n_items + 1]``, the file's ``valid`` mask (False
            for padding and for items whose media could not be read; their states are zeros).
        modalities: canonical letters of the loaded modalities, e.g. ``"TIVA"``.
        item_ids: ``[n_items]`` original item ids of dense ids ``1..n_items``.
        compute_dtype: dtype :meth:`gather` returns.
    """

    states: dict[str, Tensor]
    available: dict[str, Tensor]
    modalities: str
    item_ids: list[str]
    compute_dtype: torch.dtype = torch.float32

    @property
    def names(self) -> tuple[str, ...]:
        """Full modality names in canonical order (the keys of ``states``)."""
        return tuple(MODALITY_LETTERS[letter] for letter in self.modalities)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_layers(self) -> int:
        return self.states[self.names[0]].shape[1]

    @property
    def hidden(self) -> int:
        return self.states[self.names[0]].shape[2]

    @property
    def device(self) -> torch.device:
        return self.states[self.names[0]].device

    @property
    def storage_dtype(self) -> torch.dtype:
        return self.states[self.names[0]].dtype

    def gather(
        self, item_ids: Tensor, dtype: torch.dtype | None = None
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """States and availability of ``item_ids``.

        Args:
            item_ids: ``[N]`` long dense ids in ``0..n_items`` (0 = padding row), any device.
            dtype: floating dtype of the returned states (default ``compute_dtype``).

        Returns:
            ``(states, available)``: modality -> ``[N, n_layers, hidden]`` on this object's
            device in ``dtype``, and modality -> ``bool [N]``.
        """
        index = item_ids.to(device=self.device, dtype=torch.long)
        dtype = dtype or self.compute_dtype
        states = {m: s.index_select(0, index).to(dtype) for m, s in self.states.items()}
        available = {m: a.index_select(0, index) for m, a in self.available.items()}
        return states, available


def _check_agree(files: list[LoadedFeatures], expected_ids: Sequence[str] | None) -> None:
    """All files (and ``items.csv`` when given) hold the same items in the same order, with
    the same number of layers and hidden size. Raises :class:`DataError` naming the files."""
    first = files[0]
    for other in files[1:]:
        a, b = first.path.name, other.path.name
        if len(other.item_ids) != len(first.item_ids):
            raise DataError(
                f"feature files disagree on the number of items: {first.path} has "
                f"{len(first.item_ids)}, {other.path} has {len(other.item_ids)}; "
                "re-extract them from the same items.csv"
            )
        if other.item_ids != first.item_ids:
            row = next(i for i, (x, y) in enumerate(zip(first.item_ids, other.item_ids)) if x != y)
            raise DataError(
                f"feature files disagree on the item order: dense id {row + 1} is item "
                f"{first.item_ids[row]!r} in {first.path} but {other.item_ids[row]!r} in "
                f"{other.path}; re-extract them from the same items.csv"
            )
        for what, axis in (("n_layers", 1), ("hidden", 2)):
            if other.features.shape[axis] != first.features.shape[axis]:
                raise DataError(
                    f"feature files disagree on {what}: {a} has {first.features.shape[axis]}, "
                    f"{b} has {other.features.shape[axis]} (shapes {first.features.shape[1:]} vs "
                    f"{other.features.shape[1:]}); cross-modal gating needs the same "
                    "[n_layers, hidden] in every modality"
                )
        mine, theirs = _layer_list(first.attrs), _layer_list(other.attrs)
        if mine is not None and theirs is not None and mine != theirs:
            log.warning("%s keeps layers %s but %s keeps %s: layer i of one modality is "
                        "gated with layer i of the other", a, mine, b, theirs)
    if expected_ids is not None and list(expected_ids) != first.item_ids:
        if len(expected_ids) != len(first.item_ids):
            detail = f"{len(expected_ids)} items in items.csv, {len(first.item_ids)} in the file"
        else:
            row = next(i for i, (x, y) in enumerate(zip(expected_ids, first.item_ids)) if x != y)
            detail = (f"dense id {row + 1} is {expected_ids[row]!r} in items.csv but "
                      f"{first.item_ids[row]!r} in the file")
        raise DataError(
            f"{first.path} does not match the dataset's items.csv ({detail}); the features "
            "were extracted for another item table: re-run the extraction"
        )


def standardize_states(features: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-(layer, dimension) z-scores over the valid items: ``[n + 1, L, D] -> [n + 1, L, D]``
    float32; rows with ``valid`` False (padding, unusable media) stay exactly zero.

    Why it exists: the states of the demo's randomly initialised encoders are dominated by a
    component shared by every item (the [CLS] token of a random BERT varies by ~1% of its norm
    across titles), so the per-item signal reaches the adapters' outputs at a scale Adam takes
    tens of epochs to amplify. Standardising is a fixed affine map of frozen features, computed
    once from content alone (no interactions), so it leaks nothing. A dimension constant over
    the items (e.g. layer 0 of BERT's [CLS], the same embedding for every title) becomes 0.
    """
    values = features.astype(np.float64)
    rows = np.asarray(valid, dtype=bool)
    out = np.zeros(features.shape, dtype=np.float32)
    if not rows.any():
        return out
    mean = values[rows].mean(axis=0)
    std = values[rows].std(axis=0)
    constant = std <= 1e-6 * np.maximum(1.0, np.abs(mean))
    scaled = (values[rows] - mean) / np.where(constant, 1.0, std)
    out[rows] = np.where(constant, 0.0, scaled)
    return out


def _layer_list(attrs: dict[str, Any]) -> list[int] | None:
    value = attrs.get("layers")
    return None if value is None else [int(v) for v in np.atleast_1d(value)]


def load_item_states(
    features_dir: Path,
    modalities: str,
    device: torch.device | str = "cpu",
    *,
    item_ids: Sequence[str] | None = None,
    storage_dtype: torch.dtype | None = None,
    compute_dtype: torch.dtype = torch.float32,
    standardize: bool = False,
) -> ItemStates:
    """Read ``{features_dir}/{modality}.h5`` for each requested modality onto ``device``.

    Each file is opened only here (once to check it is finished and whole, once to read
    ``features``, ``valid`` and ``item_id``); nothing reads it afterwards.

    Args:
        features_dir: ``results/{dataset}/features``.
        modalities: letters from ``TIVA`` (any order/case).
        device: where the states live for the whole run.
        item_ids: the dataset's ``items.csv`` item ids (dense ids 1..n in order); when given,
            the files must hold exactly these items in this order.
        storage_dtype: dtype of the resident tensors; default :func:`default_storage_dtype`.
        compute_dtype: dtype :meth:`ItemStates.gather` returns.
        standardize: z-score every (layer, dimension) over the items with usable media (see
            :func:`standardize_states`); the paper feeds the raw states (``False``).

    Returns:
        :class:`ItemStates` with ``states[m]: [n_items + 1, n_layers, hidden]`` and
        ``available[m]: bool [n_items + 1]``.

    Raises:
        DataError: a missing, unfinished or shard file, or files that disagree on the items,
            their order, ``n_layers`` or ``hidden`` (the message names both files).
    """
    letters = modality_letters(modalities)
    device = torch.device(device)
    storage_dtype = storage_dtype or default_storage_dtype(device)
    paths = [Path(features_dir) / f"{MODALITY_LETTERS[letter]}.h5" for letter in letters]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DataError(
            f"feature file(s) {', '.join(missing)} do not exist; run the extract step for "
            f"modalities {letters}"
        )
    files = [load_features(path) for path in paths]
    _check_agree(files, item_ids)
    states: dict[str, Tensor] = {}
    available: dict[str, Tensor] = {}
    for letter, file in zip(letters, files):
        name = MODALITY_LETTERS[letter]
        features = standardize_states(file.features, file.valid) if standardize else file.features
        states[name] = torch.from_numpy(features).to(device=device, dtype=storage_dtype)
        available[name] = torch.from_numpy(file.valid).to(device)
        available[name][0] = False  # row 0 is padding whatever the file says
        log.info("%s: %d items x %s, %d without usable media, on %s as %s", file.path.name,
                 len(file.item_ids), tuple(file.features.shape[1:]),
                 int((~file.valid[1:]).sum()), device, storage_dtype)
    return ItemStates(states, available, letters, files[0].item_ids, compute_dtype)


# ====================================================================== sequences


@dataclass(frozen=True)
class TrainSplit:
    """Padded training sequences, one row per user of ``train.parquet`` (by ``user_index``).

    Attributes:
        user_index: ``[U]`` long.
        inputs: ``[U, max_len]`` long, left-padded ``seq[:-1]`` (last ``max_len``).
        targets: ``[U, max_len]`` long, aligned ``seq[1:]``; 0 wherever ``inputs`` is 0.
        sequences: ``[U, S]`` long, the whole train sequence left-padded, ``S`` = the longest.
        n_items: number of items (ids ``1..n_items``).
    """

    user_index: Tensor
    inputs: Tensor
    targets: Tensor
    sequences: Tensor
    n_items: int

    @property
    def trainable(self) -> Tensor:
        """``bool [U]``: the user has at least one (input, target) pair."""
        return (self.targets != 0).any(dim=1)


@dataclass(frozen=True)
class EvalSplit:
    """Validation or test users, one row per user (by ``user_index``).

    Attributes:
        user_index: ``[U]`` long.
        history: ``[U, max_len]`` long, the last ``max_len`` items before the target,
            left-padded: the sequence encoder's input.
        target: ``[U]`` long, the held-out item.
        full_history: ``[U, H]`` long, every item before the target, left-padded to the
            longest: the items masked out of the full ranking.
    """

    user_index: Tensor
    history: Tensor
    target: Tensor
    full_history: Tensor

    def __len__(self) -> int:
        return self.target.shape[0]


@dataclass(frozen=True)
class SequenceData:
    """Everything Stage 2 needs from ``results/{dataset}/data``."""

    n_items: int
    max_len: int
    item_ids: list[str]  # items.csv: dense id i + 1 -> item_ids[i]
    train: TrainSplit
    valid: EvalSplit
    test: EvalSplit


def _left_pad(lists: pl.Series, width: int | None, source: Path, n_items: int) -> np.ndarray:
    """``[U, width]`` int64: each list's last ``width`` ids, right-aligned, zeros on the left.
    ``width=None``: the longest list's length (at least 1). Checks ids are in ``1..n_items``."""
    if lists.null_count():
        raise DataError(f"{source}: column {lists.name!r} has null lists")
    lengths = lists.list.len().to_numpy().astype(np.int64)
    exploded = lists.explode()
    if len(exploded) != lengths.sum():  # polars versions that explode [] into one null
        exploded = exploded.filter(pl.Series(np.repeat(lengths > 0, np.maximum(lengths, 1))))
    if exploded.null_count():
        raise DataError(f"{source}: column {lists.name!r} has null item ids")
    flat = exploded.to_numpy().astype(np.int64)
    if flat.size and (flat.min() < 1 or flat.max() > n_items):
        raise DataError(
            f"{source}: item ids must be dense ids 1..{n_items} (items.csv), found "
            f"{int(flat.min())}..{int(flat.max())}"
        )
    width = max(int(lengths.max(initial=0)), 1) if width is None else width
    out = np.zeros((len(lengths), width), dtype=np.int64)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    starts = np.cumsum(lengths) - lengths
    position = np.arange(flat.size) - starts[rows]  # index within its own list
    column = position - lengths[rows] + width  # right-aligned
    keep = column >= 0  # drop all but the last `width`
    out[rows[keep], column[keep]] = flat[keep]
    return out


def _read_split(path: Path, columns: Sequence[str]) -> pl.DataFrame:
    if not path.is_file():
        raise DataError(f"{path} does not exist; run the sequences step")
    frame = pl.read_parquet(path)
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise DataError(f"{path}: missing column(s) {absent}, has {frame.columns}")
    return frame.sort("user_index")


def _train_split(path: Path, max_len: int, n_items: int) -> TrainSplit:
    frame = _read_split(path, ("user_index", "items"))
    window = _left_pad(frame["items"], max_len + 1, path, n_items)  # [U, L + 1]
    inputs, targets = window[:, :-1], window[:, 1:].copy()
    targets[inputs == 0] = 0  # the first item is never a target: nothing precedes it
    longer = int((frame["items"].list.len() > max_len + 1).sum())
    if longer:
        log.warning("%s: %d train sequence(s) longer than max_len + 1 = %d; only their last "
                    "%d next-item pairs are trained on", path, longer, max_len + 1, max_len)
    return TrainSplit(
        user_index=torch.from_numpy(frame["user_index"].to_numpy().astype(np.int64)),
        inputs=torch.from_numpy(np.ascontiguousarray(inputs)),
        targets=torch.from_numpy(targets),
        sequences=torch.from_numpy(_left_pad(frame["items"], None, path, n_items)),
        n_items=n_items,
    )


def _eval_split(path: Path, max_len: int, n_items: int) -> EvalSplit:
    frame = _read_split(path, ("user_index", "history", "target"))
    if frame["target"].null_count():
        raise DataError(f"{path}: {frame['target'].null_count()} user(s) have no target")
    target = frame["target"].to_numpy().astype(np.int64)
    if target.size and (target.min() < 1 or target.max() > n_items):
        raise DataError(f"{path}: targets must be dense ids 1..{n_items}, found "
                        f"{int(target.min())}..{int(target.max())}")
    empty = int((frame["history"].list.len() == 0).sum())
    if empty:
        raise DataError(f"{path}: {empty} user(s) have an empty history (nothing to encode); "
                        "Stage 1 keeps users with at least 3 items")
    return EvalSplit(
        user_index=torch.from_numpy(frame["user_index"].to_numpy().astype(np.int64)),
        history=torch.from_numpy(_left_pad(frame["history"], max_len, path, n_items)),
        target=torch.from_numpy(target),
        full_history=torch.from_numpy(_left_pad(frame["history"], None, path, n_items)),
    )


def load_sequences(data_dir: Path, max_len: int = training_default("max_len")) -> SequenceData:
    """Read ``items.csv`` and the ``train``/``valid``/``test`` parquet files of ``data_dir``
    into left-padded CPU tensors (see the module docstring for the exact layout).

    Raises:
        DataError: a missing file or column, null or out-of-range item ids, or an empty
            validation/test history.
    """
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    data_dir = Path(data_dir)
    item_ids = read_item_table(data_dir / "items.csv").item_ids
    n_items = len(item_ids)
    return SequenceData(
        n_items=n_items,
        max_len=max_len,
        item_ids=item_ids,
        train=_train_split(data_dir / "train.parquet", max_len, n_items),
        valid=_eval_split(data_dir / "valid.parquet", max_len, n_items),
        test=_eval_split(data_dir / "test.parquet", max_len, n_items),
    )


def item_popularity_counts(train: TrainSplit | SequenceData) -> Tensor:
    """``[n_items + 1]`` long: how often each item occurs in the training split, i.e. in
    every user's whole ``train.parquet`` ``items`` list (the inputs and targets of training,
    plus the items of one-item train sequences and of any positions cut by ``max_len``).
    Index 0 (padding) is 0. Validation and test targets are not counted."""
    split = train.train if isinstance(train, SequenceData) else train
    ids = split.sequences.reshape(-1)
    counts = torch.bincount(ids[ids != 0], minlength=split.n_items + 1)
    return counts


# ====================================================================== batches


@dataclass(frozen=True)
class TrainBatch:
    """One training batch of ``B`` users.

    Attributes:
        user_index: ``[B]`` long.
        inputs: ``[B, L]`` long item ids (0 = padding).
        targets: ``[B, L]`` long next-item ids (0 = no target).
        sequences: ``[B, S]`` long, each user's whole train sequence (for the loss's
            same-user masking).
        unique_items: ``[K]`` long, sorted distinct non-zero ids of ``inputs`` and ``targets``.
        inputs_local: ``[B, L]`` long in ``0..K``: 0 = padding, ``j`` = ``unique_items[j-1]``.
        targets_local: ``[B, L]`` long, same for ``targets``.
    """

    user_index: Tensor
    inputs: Tensor
    targets: Tensor
    sequences: Tensor
    unique_items: Tensor
    inputs_local: Tensor
    targets_local: Tensor

    @property
    def valid(self) -> Tensor:
        """``bool [B, L]``: non-padding input positions (the sequence encoder's mask)."""
        return self.inputs != 0

    @property
    def window(self) -> Tensor:
        """``[B, L + 1]``: ``inputs`` followed by the last target, i.e. each user's last
        ``L + 1`` training items, left-padded; ``window[:, 1:]`` equals ``targets`` wherever a
        target exists. The loss's candidate window (:mod:`crossan.train.loss`)."""
        return torch.cat([self.inputs, self.targets[:, -1:]], dim=1)

    @property
    def padded_unique_items(self) -> Tensor:
        """``[K + 1]``: ``[0, *unique_items]``, so ``padded_unique_items[inputs_local] == inputs``."""
        return torch.cat([self.unique_items.new_zeros(1), self.unique_items])

    def lookup(self, item_embeddings: Tensor) -> tuple[Tensor, Tensor]:
        """Spread the ``[K, d]`` embeddings of ``unique_items`` over the positions.

        Returns:
            ``(input_embeddings [B, L, d], target_embeddings [B, L, d])``, zeros at padding.
        """
        if item_embeddings.shape[0] != self.unique_items.shape[0]:
            raise ValueError(f"expected [K={self.unique_items.shape[0]}, d] embeddings, "
                             f"got {tuple(item_embeddings.shape)}")
        table = torch.cat([item_embeddings.new_zeros(1, *item_embeddings.shape[1:]), item_embeddings])
        return table[self.inputs_local], table[self.targets_local]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> TrainBatch:
        """The same batch on ``device``."""
        return replace(self, **{f.name: getattr(self, f.name).to(device, non_blocking=non_blocking)
                                for f in fields(self)})


def make_batch(split: TrainSplit, rows: Tensor) -> TrainBatch:
    """The :class:`TrainBatch` of ``split``'s rows ``rows`` (``[B]`` long, CPU)."""
    inputs, targets = split.inputs[rows], split.targets[rows]
    batch, length = inputs.shape
    ids = torch.cat([inputs.new_zeros(1), inputs.reshape(-1), targets.reshape(-1)])
    # The leading 0 makes padding local 0 even when the batch has no padding at all.
    unique, local = torch.unique(ids, sorted=True, return_inverse=True)
    local = local[1:]
    return TrainBatch(
        user_index=split.user_index[rows],
        inputs=inputs,
        targets=targets,
        sequences=split.sequences[rows],
        unique_items=unique[1:],
        inputs_local=local[: batch * length].reshape(batch, length),
        targets_local=local[batch * length :].reshape(batch, length),
    )


def train_batches(
    data: SequenceData | TrainSplit,
    batch_size: int,
    generator: torch.Generator,
    *,
    device: torch.device | str | None = None,
    drop_last: bool = False,
) -> Iterator[TrainBatch]:
    """One epoch of shuffled training batches.

    Users without any training pair (:attr:`TrainSplit.trainable` False) are skipped. The
    order is ``torch.randperm`` under ``generator`` (a CPU generator), so the same seed gives
    the same batches. The last batch is smaller unless ``drop_last``.

    Yields:
        :class:`TrainBatch` with ``B <= batch_size`` users, on ``device`` (default CPU).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    split = data.train if isinstance(data, SequenceData) else data
    users = split.trainable.nonzero(as_tuple=True)[0]
    if users.numel() == 0:
        raise DataError("no user has a training pair (every train sequence has < 2 items)")
    order = users[torch.randperm(users.numel(), generator=generator)]
    for start in range(0, order.numel(), batch_size):
        rows = order[start : start + batch_size]
        if drop_last and rows.numel() < batch_size:
            return
        batch = make_batch(split, rows)
        yield batch if device is None else batch.to(device)


def batches_per_epoch(data: SequenceData | TrainSplit, batch_size: int) -> int:
    """How many batches :func:`train_batches` yields per epoch (the last one may be smaller)."""
    split = data.train if isinstance(data, SequenceData) else data
    return math.ceil(int(split.trainable.sum()) / batch_size)


def eval_batches(
    split: EvalSplit, batch_size: int, device: torch.device | str | None = None
) -> Iterator[EvalSplit]:
    """``split`` in order, ``batch_size`` users at a time (the last batch may be smaller)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, len(split), batch_size):
        part = {f.name: getattr(split, f.name)[start : start + batch_size] for f in fields(split)}
        if device is not None:
            part = {name: value.to(device) for name, value in part.items()}
        yield EvalSplit(**part)
