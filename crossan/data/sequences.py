"""Interactions to user sequences: parse, clean, filter, truncate, map ids, split.

The MicroLens convention (``method-facts.md``, "Data and evaluation"):

1. each user's interactions sorted by timestamp (ties keep file order);
2. exact duplicate ``(user, item, timestamp)`` rows dropped and counted;
3. users with fewer than ``min_interactions`` (5) interactions dropped;
4. item ids mapped densely to ``1..n_items`` in order of first appearance in the sorted,
   filtered interactions, i.e. read user by user (users in ascending id order: numeric for
   integer ids, else text order; not by time) and within a user in time order, ties in file
   order (``window``: in each user's last ``max_items`` of them; 0 is padding); users get
   their 0-based ``user_index`` in the same id order; which items get one is ``catalogue``
   (``sequences.catalogue`` in ``config.yaml``): ``history`` (the default) numbers every item
   of a kept user's full history, so ``stats.json`` counts match the paper's Table 2
   (MicroLens-100K: 19,738 items, the dataset's own count) and every item is rankable;
   ``window`` numbers only items in some kept user's last ``max_items``, as IISAN
   ``Code_Cached/data_utils/preprocess.py`` (``read_behaviors`` keeps the items whose count
   over the truncated sequences is non-zero), so items seen only earlier are never ranked;
5. each user keeps the last ``max_items`` (13 = max_seq_len + 3) items;
6. leave-one-out: last item = test target, second-to-last = validation target, the rest
   is the training sequence.

Outputs in ``results/{dataset}/data/``, from the interactions alone (:func:`write_sequences`):
``item_ids.csv`` (``dense_id,item_id``), ``user_ids.csv`` (``user_index,user_id``: the
0-based user index of the splits and per-user metrics, and the id in the interaction file;
users sorted numerically when their ids are integers, else as text), ``sequences.parquet`` (per user, the kept
chronological dense ids), ``train.parquet``, ``valid.parquet``, ``test.parquet`` and
``stats.json``; then, with the titles (:func:`write_item_titles`), ``items.csv``
(``dense_id,item_id,title``) and ``titles.json`` (items without a title row, empty titles).
Two steps, so that a corrected title reruns what reads titles and not the media sampling,
which reads only ``item_ids.csv``.

Users may re-interact with an item, so a validation or test target can also occur earlier
in the user's history. IISAN's evaluation (our default, ``training.repeat_targets: miss``)
masks the whole history, so such a target is always a miss; ``stats.json`` counts these
users per split (``repeat_target_users``), which bounds how much that choice can matter.

``stats.json`` also records the long-tail buckets (``popularity_buckets``, see
:mod:`crossan.data.buckets`): items split into head / torso / tail by their training count,
the head and the tail each the fewest items holding a third of the training interactions
(equal counts in one bucket), the two thresholds, how many items, training interactions and
validation / test targets fall in each, and the buckets left empty (``empty_buckets``, logged
as a warning: fewer than three distinct training counts).
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl

from crossan.atomic import atomic_output, write_text_atomic
from crossan.data.buckets import item_training_counts, popularity_buckets
from crossan.data.layout import load_manifest
from crossan.data.options import CATALOGUES
from crossan.data.readers import (
    COLUMNS,
    MAX_REPORTED_ROWS,
    canonical_integers,
    read_interactions,
    read_item_ids,
    read_titles,
)
from crossan.errors import DataError

log = logging.getLogger(__name__)

ITEM_IDS = "item_ids.csv"
USER_IDS = "user_ids.csv"


@dataclass(frozen=True)
class SequenceStats:
    """What ``stats.json`` records. ``users``/``items``/``interactions`` are after duplicate
    removal and the minimum-length filter, before truncation (the paper's Table 2 counts)."""

    users: int
    items: int
    interactions: int
    interactions_kept: int
    raw_rows: int
    duplicate_rows_dropped: int
    users_dropped_short: int
    min_interactions: int
    max_items: int
    catalogue: str
    mean_sequence_length: float
    repeat_target_users: dict[str, int]  # split -> users whose target occurs in their history
    # head/torso/tail thresholds over item training counts (:mod:`crossan.data.buckets`)
    popularity_buckets: dict[str, Any]


@dataclass(frozen=True)
class TitleStats:
    """What ``titles.json`` records: items with no row in the title file (their title is
    empty) and items whose title is empty."""

    items: int
    items_without_title: int
    empty_titles: int


def build_sequences(
    interactions: pl.DataFrame, min_interactions: int = 5, max_items: int = 13, catalogue: str = CATALOGUES[0]
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, int]]:
    """Clean, filter, map and truncate interactions.

    Args:
        interactions: columns ``user``, ``item``, ``timestamp`` (integers) and ``line``.
        catalogue: ``history`` (every item of a kept user's full history gets an id) or
            ``window`` (only items in some kept user's last ``max_items``; module docstring).
    Returns:
        ``(sequences, items, counts)``: ``sequences`` has one row per kept user with
        ``user_index`` (0-based), ``user`` and ``items`` (list of dense ids, chronological,
        at most ``max_items``); ``items`` maps ``dense_id`` (1-based) to ``item``;
        ``counts`` holds duplicates dropped, users dropped, and interaction totals.
    """
    if catalogue not in CATALOGUES:
        raise ValueError(f"catalogue must be one of {', '.join(CATALOGUES)}, got {catalogue!r}")
    deduplicated = interactions.unique(subset=list(COLUMNS), keep="first", maintain_order=True)
    ordered = deduplicated.sort(["user", "timestamp", "line"])
    lengths = ordered.group_by("user").len()
    kept_users = lengths.filter(pl.col("len") >= min_interactions)["user"]
    kept = ordered.filter(pl.col("user").is_in(kept_users.implode()))
    numbered = kept
    if catalogue == "window":  # the rows of each user's last max_items, in the same order
        numbered = kept.filter(pl.int_range(pl.len()).over("user") >= pl.len().over("user") - max_items)
    items = (
        numbered.select("item")
        .unique(maintain_order=True)
        .with_row_index("dense_id", offset=1)
        .with_columns(pl.col("dense_id").cast(pl.Int64))
    )
    sequences = (
        kept.join(items, on="item", how="left", maintain_order="left")
        .group_by("user", maintain_order=True)
        .agg(pl.col("dense_id").tail(max_items).alias("items"))
        .with_row_index("user_index")
        .select("user_index", "user", "items")
    )
    counts = {
        "duplicate_rows_dropped": interactions.height - deduplicated.height,
        "users_dropped_short": lengths.height - kept_users.len(),
        "interactions": kept.height,
        "interactions_kept": int(sequences["items"].list.len().sum()),
    }
    return sequences, items, counts


def leave_one_out(sequences: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Split each user's sequence: the last item is the test target, the one before the
    validation target; ``train`` keeps ``items[:-2]``; ``valid``/``test`` hold the
    ``history`` before their ``target``."""
    items = pl.col("items")
    return {
        "train": sequences.select("user_index", "user", items.list.head(items.list.len() - 2)),
        "valid": sequences.select(
            "user_index",
            "user",
            items.list.head(items.list.len() - 2).alias("history"),
            items.list.get(-2).alias("target"),
        ),
        "test": sequences.select(
            "user_index",
            "user",
            items.list.head(items.list.len() - 1).alias("history"),
            items.list.get(-1).alias("target"),
        ),
    }


def count_repeat_targets(splits: dict[str, pl.DataFrame]) -> dict[str, int]:
    """``{"valid": n, "test": n}``: users whose target also occurs in their ``history``."""
    return {
        name: int(splits[name].select(pl.col("history").list.contains(pl.col("target"))).to_series().sum())
        for name in ("valid", "test")
    }


def warn_empty_buckets(record: dict[str, Any]) -> None:
    """Log a warning naming the long-tail buckets without an item (``record``: the
    ``popularity_buckets`` of ``stats.json``), which happens only with fewer than three
    distinct training counts (:mod:`crossan.data.buckets`)."""
    if record["empty_buckets"]:
        log.warning("long-tail buckets without an item: %s (the items take fewer than three distinct "
                    "training counts); Table B3 and Figure B1 show them empty",
                    ", ".join(record["empty_buckets"]))


def write_sequences(
    pairs: Path, out_dir: Path, min_interactions: int = 5, max_items: int = 13, catalogue: str = CATALOGUES[0]
) -> SequenceStats:
    """The interactions-to-splits step: ``item_ids.csv``, ``user_ids.csv``, the parquet files and
    ``stats.json`` (last: its presence means every other output is complete), each written atomically."""
    if min_interactions < 3:
        raise DataError("min_interactions must be at least 3 (train, validation and test items)")
    interactions, raw_rows = read_interactions(pairs)
    sequences, items, counts = build_sequences(interactions, min_interactions, max_items, catalogue)
    if sequences.is_empty():
        raise DataError(f"{pairs}: no user has {min_interactions} or more interactions")
    if counts["duplicate_rows_dropped"]:
        log.warning("dropped %d duplicate (user,item,timestamp) row(s) from %s",
                    counts["duplicate_rows_dropped"], pairs)
    log.info("dropped %d user(s) with fewer than %d interactions",
             counts["users_dropped_short"], min_interactions)

    splits = leave_one_out(sequences)
    repeats = count_repeat_targets(splits)
    if any(repeats.values()):
        log.info("users whose target repeats an item of their history (a miss under IISAN's "
                 "evaluation): %d validation, %d test", repeats["valid"], repeats["test"])
    stats = SequenceStats(
        users=sequences.height,
        items=items.height,
        interactions=counts["interactions"],
        interactions_kept=counts["interactions_kept"],
        raw_rows=raw_rows,
        duplicate_rows_dropped=counts["duplicate_rows_dropped"],
        users_dropped_short=counts["users_dropped_short"],
        min_interactions=min_interactions,
        max_items=max_items,
        catalogue=catalogue,
        mean_sequence_length=round(counts["interactions_kept"] / sequences.height, 4),
        repeat_target_users=repeats,
        popularity_buckets=popularity_buckets(
            item_training_counts(splits["train"]["items"].to_list(), items.height),
            {name: splits[name]["target"].to_numpy() for name in ("valid", "test")},
        ),
    )
    warn_empty_buckets(stats.popularity_buckets)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_output(out_dir / ITEM_IDS) as tmp:
        items.select("dense_id", pl.col("item").alias("item_id")).write_csv(tmp, quote_style="non_numeric")
    with atomic_output(out_dir / USER_IDS) as tmp:
        sequences.select("user_index", pl.col("user").alias("user_id")).write_csv(tmp, quote_style="non_numeric")
    frames = {"sequences": sequences, **splits}
    for name, frame in frames.items():
        with atomic_output(out_dir / f"{name}.parquet") as tmp:
            frame.write_parquet(tmp)
    write_text_atomic(out_dir / "stats.json", json.dumps(asdict(stats), indent=2) + "\n")
    log.info("%s users, %s items, %s interactions (%s kept after truncation to %s)",
             stats.users, stats.items, stats.interactions, stats.interactions_kept, max_items)
    return stats


def write_item_titles(item_ids: Path, titles: Path | None, out: Path, report: Path | None = None) -> TitleStats:
    """``items.csv`` (``dense_id,item_id,title``) from ``item_ids.csv`` and the title file, and
    the counts of missing and empty titles (``report``, JSON); an item without a title row
    gets an empty title, and so does every item when ``titles`` is None (a dataset that does
    not declare text may have no title file)."""
    ids = read_item_ids(item_ids)
    title_of = read_titles(titles, ids) if titles is not None else {}
    id_type = pl.Int64 if canonical_integers(ids) else pl.String  # integers stay unquoted, as before
    items = pl.DataFrame(
        {"dense_id": range(1, len(ids) + 1), "item_id": ids, "title": [title_of.get(item) for item in ids]},
        schema={"dense_id": pl.Int64, "item_id": pl.String, "title": pl.String},
    ).with_columns(pl.col("item_id").cast(id_type))
    without_title = items.filter(pl.col("title").is_null())["item_id"].to_list()
    empty_title = items.filter(pl.col("title") == "")["item_id"].to_list()
    if titles is None:
        log.info("no title file: all %d item titles are empty", len(ids))
    elif without_title:
        log.warning("%d item(s) have no row in %s (treated as empty titles), e.g. %s",
                    len(without_title), titles, without_title[:MAX_REPORTED_ROWS])
    if empty_title:
        log.warning("%d item(s) have an empty title in %s, e.g. %s",
                    len(empty_title), titles, empty_title[:MAX_REPORTED_ROWS])
    with atomic_output(out) as tmp:
        items.with_columns(pl.col("title").fill_null("")).write_csv(tmp, quote_style="non_numeric")
    stats = TitleStats(items=len(ids), items_without_title=len(without_title), empty_titles=len(empty_title))
    if report is not None:
        write_text_atomic(report, json.dumps(asdict(stats), indent=2) + "\n")
    return stats


def prepare_sequences(
    pairs: Path, titles: Path, out_dir: Path, min_interactions: int = 5, max_items: int = 13,
    catalogue: str = CATALOGUES[0],
) -> SequenceStats:
    """Both steps into ``out_dir``: :func:`write_sequences`, then :func:`write_item_titles`."""
    stats = write_sequences(pairs, out_dir, min_interactions, max_items, catalogue)
    write_item_titles(out_dir / ITEM_IDS, titles, out_dir / "items.csv", out_dir / "titles.json")
    return stats


def run_cli(args: argparse.Namespace) -> int:
    """Run ``crossan sequences`` (:mod:`crossan.commands.data`); returns the exit status."""
    layout = load_manifest(args.dataset_json)
    write_sequences(layout.pairs, args.out, args.min_interactions, args.max_items, args.catalogue)
    return 0


def run_titles_cli(args: argparse.Namespace) -> int:
    """Run ``crossan item-titles`` (:mod:`crossan.commands.data`); returns the exit status."""
    layout = load_manifest(args.dataset_json)
    write_item_titles(args.item_ids, None if "titles" in layout.absent else layout.titles, args.out, args.report)
    return 0
