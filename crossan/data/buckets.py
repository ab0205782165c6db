"""Item popularity buckets for long-tail metrics (issue 17, point 3; issue 28): head, torso, tail.

Definition (the one the sequences step writes into ``stats.json`` and every run recomputes
from the same training split for its ``metrics.json``):

* an item's **training count** ``c`` is how often it occurs in the training split, i.e. in
  every user's whole ``train.parquet`` ``items`` list, exactly the counts the popularity
  baseline ranks by (:func:`crossan.train.inputs.item_popularity_counts`); validation and test
  targets are not counted, so an item seen only as a held-out target has count 0. Every item
  ``1..n_items`` is bucketed, count-0 items included; ``N`` is the sum of all counts (the
  training interactions).
* the bucket depends on the count alone: items are grouped by their count (a **tie group**
  per distinct count value), and a whole tie group always lands in one bucket. With the
  distinct values ``v_1 < v_2 < ... < v_m`` and two thresholds, an item is **head** if
  ``c >= head_min_count``, **tail** if ``c <= tail_max_count``, else **torso**.
* the thresholds split the **training interactions** into thirds, as long-tail papers do
  (head: the most popular items making up the first third of the interactions, tail: the
  least popular making up the last third):

  1. ``head_min_count`` = the largest ``v_j`` with ``3 * (interactions of items with c >= v_j)
     >= N``: the head is the smallest set of most popular tie groups that holds at least a
     third of the training interactions (the group that crosses the third is in the head);
  2. ``tail_max_count`` = the smallest ``v_i`` with ``3 * (interactions of items with c <= v_i)
     >= N``: the tail is the smallest set of least popular tie groups that holds at least a
     third (count-0 items hold none, so they are always tail, with some rarely seen items);
  3. every bucket keeps one tie group at least: ``head_min_count`` is raised to ``v_3`` when it
     is lower, then ``tail_max_count`` is lowered to the distinct value two below
     ``head_min_count`` when it is higher (the head has precedence over the tail), so the
     value just below ``head_min_count`` is torso. On skewed data a tail that needs a popular
     group to reach its third (step 2 meeting step 1) is what step 3 cuts back.

  With ``m >= 3`` distinct counts the three buckets are therefore never empty. With fewer the
  split cannot give each bucket its own tie group, and the buckets say so instead of being
  filled arbitrarily: ``m == 2``: head = the items of ``v_2``, tail = those of ``v_1``, no
  torso (``head_min_count = v_2``, ``tail_max_count = v_1``); ``m == 1`` (every item equally
  popular, e.g. no training interaction at all): every item is tail, no head or torso
  (``head_min_count = v_1 + 1``). The record lists such buckets in ``empty_buckets`` (``[]``
  otherwise), the sequences step logs a warning, Table B3's note names them, and a bucket
  without test users has ``None`` metrics (``users: 0``), shown as an empty cell.

The record (``stats.json["popularity_buckets"]`` and, with the test metrics per bucket,
``metrics.json["test_by_popularity"]``) holds the rule (``by``), both thresholds, the items
(``items``) and training interactions (``interactions``) per bucket and ``empty_buckets``;
``stats.json`` adds the validation and test targets per bucket. Thirds of interactions
(rather than terciles over items, which on sparse data make "head" mean two interactions)
keep the head the items most of the training is about and give each bucket a comparable
share of test users, whose targets follow popularity.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

BUCKETS: tuple[str, ...] = ("head", "torso", "tail")
BUCKET_RULE = ("item training count (occurrences in train.parquet sequences); thirds of the training "
               "interactions: head = the fewest most popular items holding >= 1/3 of them (count >= "
               "head_min_count), tail = the fewest least popular holding >= 1/3 (count <= tail_max_count), "
               "torso between; equal counts share a bucket; each bucket non-empty with >= 3 distinct counts")


def item_training_counts(train_items: Iterable[Iterable[int]], n_items: int) -> np.ndarray:
    """``[n_items + 1]`` int64: occurrences of each dense id in the training sequences
    (index 0, padding, is 0)."""
    ids = np.concatenate([np.asarray(list(items), dtype=np.int64) for items in train_items]
                         or [np.empty(0, dtype=np.int64)])
    if ids.size and (ids.min() < 1 or ids.max() > n_items):
        raise ValueError(f"item ids must be in 1..{n_items}")
    return np.bincount(ids, minlength=n_items + 1)


def _mass_thresholds(values: np.ndarray, mass: np.ndarray) -> tuple[int, int]:
    """``(head index, tail index)`` into the ascending distinct ``values`` (three or more) whose
    tie groups hold ``mass`` interactions each: steps 1-3 of the module docstring."""
    total = int(mass.sum())
    at_least = np.cumsum(mass[::-1])[::-1]  # interactions of the items with count >= values[j]
    at_most = np.cumsum(mass)  # interactions of the items with count <= values[i]
    head = int(np.flatnonzero(3 * at_least >= total).max())
    tail = int(np.flatnonzero(3 * at_most >= total).min())
    head = max(head, 2)
    return head, min(tail, head - 2)


def bucket_thresholds(counts: np.ndarray) -> tuple[int, int]:
    """``(head_min_count, tail_max_count)`` from ``counts`` ``[n_items + 1]`` (index 0 ignored),
    by the rule of the module docstring."""
    item_counts = np.asarray(counts, dtype=np.int64)[1:]
    if item_counts.size == 0:
        raise ValueError("no items to bucket")
    if item_counts.min() < 0:
        raise ValueError("training counts must be >= 0")
    values, items = np.unique(item_counts, return_counts=True)
    if values.size == 1:  # one tie group: every item is tail
        return int(values[0]) + 1, int(values[0])
    if values.size == 2:  # two tie groups: head and tail, no torso
        return int(values[1]), int(values[0])
    head, tail = _mass_thresholds(values, values * items)
    return int(values[head]), int(values[tail])


def assign_buckets(counts: np.ndarray, head_min_count: int, tail_max_count: int) -> np.ndarray:
    """``[n_items + 1]`` int8 bucket index into :data:`BUCKETS` per item (0 head, 1 torso,
    2 tail); index 0 (padding) gets -1."""
    counts = np.asarray(counts, dtype=np.int64)
    bucket = np.where(counts >= head_min_count, 0, np.where(counts <= tail_max_count, 2, 1)).astype(np.int8)
    bucket[0] = -1
    return bucket


def bucket_sizes(bucket: np.ndarray, ids: np.ndarray | None = None) -> dict[str, int]:
    """``{head: n, torso: n, tail: n}``: items per bucket (``ids`` given: how many of ``ids``,
    e.g. the test targets, fall in each)."""
    values = bucket[1:] if ids is None else bucket[np.asarray(ids, dtype=np.int64)]
    return {name: int((values == i).sum()) for i, name in enumerate(BUCKETS)}


def bucket_interactions(bucket: np.ndarray, counts: np.ndarray) -> dict[str, int]:
    """``{head: n, torso: n, tail: n}``: training interactions (the sum of ``counts``) of the
    items of each bucket."""
    counts = np.asarray(counts, dtype=np.int64)
    return {name: int(counts[1:][bucket[1:] == i].sum()) for i, name in enumerate(BUCKETS)}


def empty_buckets(items: dict[str, int]) -> list[str]:
    """The buckets of :data:`BUCKETS` without an item (``items``: :func:`bucket_sizes`)."""
    return [name for name in BUCKETS if items[name] == 0]


def item_buckets(counts: np.ndarray) -> tuple[int, int, np.ndarray]:
    """``(head_min_count, tail_max_count, bucket int8 [n_items + 1])`` of items with training
    ``counts`` ``[n_items + 1]``: the thresholds and each item's bucket under them."""
    head_min, tail_max = bucket_thresholds(counts)
    return head_min, tail_max, assign_buckets(counts, head_min, tail_max)


def bucket_record(counts: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    """``(record, bucket)``: the fields ``stats.json`` and ``metrics.json`` share (``by``, both
    thresholds, ``items`` and ``interactions`` per bucket, ``empty_buckets``) and each item's
    bucket (:func:`assign_buckets`)."""
    head_min, tail_max, bucket = item_buckets(counts)
    items = bucket_sizes(bucket)
    record = {"by": BUCKET_RULE, "head_min_count": head_min, "tail_max_count": tail_max, "items": items,
              "interactions": bucket_interactions(bucket, counts), "empty_buckets": empty_buckets(items)}
    return record, bucket


def popularity_buckets(counts: np.ndarray, targets: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """The ``stats.json`` record: :func:`bucket_record` and, for each split in ``targets``
    (``{"test": ids}``), ``{split}_targets`` per bucket."""
    record, bucket = bucket_record(counts)
    for split, ids in (targets or {}).items():
        record[f"{split}_targets"] = bucket_sizes(bucket, ids)
    return record
