"""Item popularity buckets for long-tail metrics (issue 17, point 3): head, torso, tail.

Definition (the one the sequences step writes into ``stats.json`` and every run recomputes
from the same training split for its ``metrics.json``):

* an item's **training count** is how often it occurs in the training split, i.e. in every
  user's whole ``train.parquet`` ``items`` list, exactly the counts the popularity baseline
  ranks by (:func:`crossan.train.inputs.item_popularity_counts`); validation and test targets
  are not counted, so an item seen only as a held-out target has count 0;
* buckets are **terciles over items** (every item ``1..n_items``, count-0 items included),
  the usual long-tail split: sort the counts ascending, ``k = max(1, n_items // 3)``;
  ``tail_max_count`` is the ``k``-th smallest count and ``head_min_count`` the ``k``-th
  largest (raised to ``tail_max_count + 1`` if they meet); an item is **tail** if its count is
  ``<= tail_max_count``, **head** if ``>= head_min_count``, else **torso**. The bucket depends
  on the count alone, so items tied with a threshold all go to the outer bucket (tail or
  head), which may then hold more than a third of the items; ``stats.json`` records how many
  items and how many test targets each bucket holds.

Terciles over items (rather than over interactions) keep the tail a large set of rarely seen
items, which is what "long-tail items" means in the papers reporting them; the per-bucket
test-user counts show how much of the test each bucket weighs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

BUCKETS: tuple[str, ...] = ("head", "torso", "tail")
BUCKET_RULE = ("item training count (occurrences in train.parquet sequences); terciles over items: "
               "tail <= tail_max_count, head >= head_min_count, torso between")


def item_training_counts(train_items: Iterable[Iterable[int]], n_items: int) -> np.ndarray:
    """``[n_items + 1]`` int64: occurrences of each dense id in the training sequences
    (index 0, padding, is 0)."""
    ids = np.concatenate([np.asarray(list(items), dtype=np.int64) for items in train_items]
                         or [np.empty(0, dtype=np.int64)])
    if ids.size and (ids.min() < 1 or ids.max() > n_items):
        raise ValueError(f"item ids must be in 1..{n_items}")
    return np.bincount(ids, minlength=n_items + 1)


def bucket_thresholds(counts: np.ndarray) -> tuple[int, int]:
    """``(head_min_count, tail_max_count)`` from ``counts`` ``[n_items + 1]`` (index 0 ignored)."""
    item_counts = np.sort(np.asarray(counts, dtype=np.int64)[1:])
    if item_counts.size == 0:
        raise ValueError("no items to bucket")
    k = max(1, item_counts.size // 3)
    tail_max = int(item_counts[k - 1])
    head_min = max(int(item_counts[-k]), tail_max + 1)
    return head_min, tail_max


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


def item_buckets(counts: np.ndarray) -> tuple[int, int, np.ndarray]:
    """``(head_min_count, tail_max_count, bucket int8 [n_items + 1])`` of items with training
    ``counts`` ``[n_items + 1]``: the thresholds and each item's bucket under them."""
    head_min, tail_max = bucket_thresholds(counts)
    return head_min, tail_max, assign_buckets(counts, head_min, tail_max)


def popularity_buckets(counts: np.ndarray, targets: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """The ``stats.json`` record: rule, thresholds, items per bucket and, for each split in
    ``targets`` (``{"test": ids}``), ``{split}_targets`` per bucket."""
    head_min, tail_max, bucket = item_buckets(counts)
    record: dict[str, Any] = {"by": BUCKET_RULE, "head_min_count": head_min, "tail_max_count": tail_max,
                              "items": bucket_sizes(bucket)}
    for split, ids in (targets or {}).items():
        record[f"{split}_targets"] = bucket_sizes(bucket, ids)
    return record
