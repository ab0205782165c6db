"""The demo dataset: a small, deterministic, offline MicroLens look-alike with planted structure.

``generate_demo(out_dir)`` writes real files in the canonical raw layout
(see :mod:`crossan.data.layout`)::

    out_dir/pairs.csv          user,item,timestamp   (header; timestamps in epoch milliseconds)
    out_dir/titles.csv         id,title              (no header, csv-module quoting)
    out_dir/covers/{id}.jpg    160x120 JPEG covers
    out_dir/videos/{id}.mp4    128x96 H.264, 25 fps, 4 s, AAC mono 16 kHz audio
    out_dir/demo_truth.json    ground truth for tests and analysis (the pipeline never reads it)

Planted structure
-----------------
Every item has a latent topic; each modality (title, cover, video, audio) reveals a different,
noisy pair of attributes derived from it, so no modality pins the topic down on its own while
all four together nearly do (:mod:`crossan.data.demo_structure`; how each attribute shows in
the media: :mod:`crossan.data.demo_media`). Users prefer one or two topics and drift between
them; 15% of the items are *new releases* that occur only as a user's validation or test item,
never in training (item cold start: an item-ID model cannot learn them, their content is as
informative as any other item's). So the last item is predicted far better by "the user's
recent topic" than by global popularity (:func:`crossan.data.demo_structure.oracle_vs_popularity`,
reported in :class:`DemoSummary`).

Defects, on purpose (ids in ``demo_truth.json`` and :class:`DemoSummary`, all distinct items that
do occur in interactions): ``n_no_audio`` (5) videos without an audio track, one corrupt video
(a real MP4 truncated to 40% of its bytes, so its ``moov`` index is gone and decoders refuse
to open it), one missing cover, one empty title.

Determinism: the behaviour is drawn from ``numpy.random.default_rng(seed)`` in a fixed order;
each item's media from its own generator seeded with ``(seed, item_id, modality)``. Files are
written in sorted id order with fixed encoders (JPEG quality 90, single-threaded x264), so the
same seed gives byte-identical CSVs and identical decoded pixels and samples.

The whole tree is built under ``out_dir.partial`` and renamed into place at the end.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from crossan.atomic import atomic_directory
from crossan.data.demo_media import (
    MediaOptions,
    make_title,
    render_cover,
    render_frames,
    synth_audio,
)
from crossan.data.demo_structure import (
    MAX_LEN,
    MAX_TOPICS,
    P_FLIP,
    Interactions,
    n_topic_bits,
    observe_attributes,
    oracle_vs_popularity,
    simulate_interactions,
)
from crossan.errors import ConfigError
from crossan.media.encode import write_mp4

log = logging.getLogger(__name__)

ITEM_ID_MAX = 99_999
USER_ID_MAX = 999_999
CORRUPT_KEEP = 0.4  # share of the corrupt MP4's bytes that are kept
JPEG_QUALITY = 90

# Modality codes that separate each item's media random streams.
_TITLE, _COVER, _VIDEO, _AUDIO = 1, 2, 3, 4


@dataclass(frozen=True)
class DemoSummary:
    """What :func:`generate_demo` wrote, with the planted-structure check and the defect ids."""

    out_dir: Path
    seed: int
    n_users: int
    n_items: int
    n_topics: int
    n_interactions: int
    mean_sequence_length: float
    oracle_hr10: float  # HR@10 of "popular items of the user's recent topic" on last items
    popularity_hr10: float  # HR@10 of global popularity on the same last items
    no_audio_items: tuple[int, ...]
    corrupt_video_item: int
    missing_cover_item: int
    empty_title_item: int
    seconds: float  # wall time of the generation

    def describe(self) -> str:
        """One human-readable line for the log."""
        return (
            f"demo dataset in {self.out_dir}: {self.n_users} users, {self.n_items} items, "
            f"{self.n_topics} topics, {self.n_interactions} interactions "
            f"(mean {self.mean_sequence_length:.2f} per user), seed {self.seed}; "
            f"last-item HR@10 topic oracle {self.oracle_hr10:.3f} vs popularity "
            f"{self.popularity_hr10:.3f}; defects: no audio {list(self.no_audio_items)}, "
            f"corrupt video {self.corrupt_video_item}, missing cover {self.missing_cover_item}, "
            f"empty title {self.empty_title_item}; {self.seconds:.1f} s"
        )


# --- planning and writing ---------------------------------------------------------------------


def _media_rng(seed: int, item_id: int, modality: int) -> np.random.Generator:
    """Generator private to one item's one modality, independent of generation order."""
    return np.random.default_rng([seed, item_id, modality])


@dataclass(frozen=True)
class DemoSpec:
    """Everything the generated dataset depends on."""

    n_users: int = 1000
    n_items: int = 400
    n_topics: int = 8
    seed: int = 0
    n_no_audio: int = 5
    media: MediaOptions = MediaOptions()

    def validate(self) -> None:
        """Raise :class:`ConfigError` for sizes the generator cannot honour."""
        problems = []
        if not 2 <= self.n_users <= USER_ID_MAX:
            problems.append(f"users must be in 2..{USER_ID_MAX}, got {self.n_users}")
        if not 2 <= self.n_topics <= MAX_TOPICS:
            problems.append(f"topics must be in 2..{MAX_TOPICS}, got {self.n_topics}")
        low = max(MAX_LEN + 4, 2 * self.n_topics, self.n_no_audio + 3)
        if not low <= self.n_items <= ITEM_ID_MAX:
            problems.append(
                f"items must be in {low}..{ITEM_ID_MAX} for {self.n_topics} topics, "
                f"got {self.n_items}"
            )
        if self.seed < 0:
            problems.append(f"seed must be >= 0, got {self.seed}")
        if self.n_no_audio < 0:
            problems.append(f"n_no_audio must be >= 0, got {self.n_no_audio}")
        media = self.media
        if media.video_seconds < 3.0 or media.fps < 1:
            problems.append("videos need at least 3 s (the sampled window) and fps >= 1")
        if media.video_height % 2 or media.video_width % 2:
            problems.append("video height and width must be even (yuv420p)")
        if problems:
            raise ConfigError("demo dataset: " + "; ".join(problems))


@dataclass(frozen=True)
class Defects:
    """Item ids with planted defects."""

    no_audio: tuple[int, ...]
    corrupt_video: int
    missing_cover: int
    empty_title: int


@dataclass(frozen=True)
class _Plan:
    """The drawn dataset before any file is written; arrays are indexed by user/item index."""

    user_ids: np.ndarray  # [n_users] int64, sorted
    item_ids: np.ndarray  # [n_items] int64, sorted, non-contiguous
    item_topic: np.ndarray  # [n_items] int64
    attributes: dict[str, np.ndarray]  # observed attributes, each [n_items] int64
    interactions: Interactions
    defects: Defects
    hit_rates: tuple[float, float]  # (oracle, popularity) HR@10


def _pick_defects(rng: np.random.Generator, candidates: np.ndarray, n_no_audio: int) -> Defects:
    """Distinct defect items drawn from ``candidates`` (``[M]`` item ids)."""
    if len(candidates) < n_no_audio + 3:
        raise ConfigError(
            f"demo dataset: only {len(candidates)} items have interactions, too few for "
            f"{n_no_audio + 3} defect items; use more users"
        )
    chosen = [int(i) for i in rng.choice(candidates, size=n_no_audio + 3, replace=False)]
    return Defects(
        no_audio=tuple(sorted(chosen[:n_no_audio])),
        corrupt_video=chosen[n_no_audio],
        missing_cover=chosen[n_no_audio + 1],
        empty_title=chosen[n_no_audio + 2],
    )


def _plan(spec: DemoSpec) -> _Plan:
    """Draw ids, topics, attributes, behaviour and defects from ``spec.seed`` in a fixed order."""
    rng = np.random.default_rng(spec.seed)
    item_ids = np.sort(rng.choice(ITEM_ID_MAX, size=spec.n_items, replace=False) + 1)
    user_ids = np.sort(rng.choice(USER_ID_MAX, size=spec.n_users, replace=False) + 1)
    item_topic = rng.permutation(np.arange(spec.n_items) % spec.n_topics)
    attributes = observe_attributes(rng, item_topic, spec.n_topics)
    inter = simulate_interactions(rng, item_topic, spec.n_users, spec.n_topics)
    used = np.bincount(inter.item, minlength=spec.n_items) > 0
    return _Plan(
        user_ids=user_ids.astype(np.int64),
        item_ids=item_ids.astype(np.int64),
        item_topic=item_topic.astype(np.int64),
        attributes=attributes,
        interactions=inter,
        defects=_pick_defects(rng, item_ids[used], spec.n_no_audio),
        hit_rates=oracle_vs_popularity(inter.user, inter.item, inter.timestamp, item_topic),
    )


def _write_pairs(path: Path, plan: _Plan) -> None:
    """``user,item,timestamp`` rows ordered by time like an export (ties: user, item)."""
    inter = plan.interactions
    users, items = plan.user_ids[inter.user], plan.item_ids[inter.item]
    order = np.lexsort((items, users, inter.timestamp))
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["user", "item", "timestamp"])
        writer.writerows(
            (int(u), int(i), int(t))
            for u, i, t in zip(users[order], items[order], inter.timestamp[order], strict=True)
        )


def _write_titles(path: Path, titles: dict[int, str]) -> None:
    """``id,title`` rows in id order, no header."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerows((item_id, titles[item_id]) for item_id in sorted(titles))


def _corrupt(path: Path) -> None:
    """Truncate an MP4 so that its trailing ``moov`` index is lost (as in broken downloads)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * CORRUPT_KEEP)])


def _write_item(
    root: Path, spec: DemoSpec, item_id: int, attr: dict[str, int], defects: Defects
) -> str:
    """Write one item's cover and video under ``root``; return its title."""
    seed, media = spec.seed, spec.media
    if item_id != defects.missing_cover:
        cover = render_cover(
            _media_rng(seed, item_id, _COVER),
            attr["cover_cool"], attr["cover_angular"], attr["cover_dark"],
            media.cover_height, media.cover_width,
        )
        Image.fromarray(cover).save(root / "covers" / f"{item_id}.jpg", quality=JPEG_QUALITY)
    video_rng = _media_rng(seed, item_id, _VIDEO)
    frames = render_frames(video_rng, attr["video_fast"], attr["video_vertical"], media)
    audio = None
    if item_id not in defects.no_audio:
        audio_rng = _media_rng(seed, item_id, _AUDIO)
        audio = synth_audio(audio_rng, attr["audio_high"], attr["audio_rich"], media)
    video_path = root / "videos" / f"{item_id}.mp4"
    write_mp4(video_path, frames, media.fps, audio, sample_rate=media.sample_rate)
    if item_id == defects.corrupt_video:
        _corrupt(video_path)
    if item_id == defects.empty_title:
        return ""
    n_groups = 2 ** (n_topic_bits(spec.n_topics) - 1)  # the title shows every bit but b2
    return make_title(_media_rng(seed, item_id, _TITLE), attr["title_group"], n_groups)


def _write_media(root: Path, spec: DemoSpec, plan: _Plan) -> dict[int, str]:
    """Covers and videos for every item under ``root``; returns the titles by item id."""
    (root / "covers").mkdir()
    (root / "videos").mkdir()
    titles: dict[int, str] = {}
    for index, item_id in enumerate(int(i) for i in plan.item_ids):
        attr = {name: int(values[index]) for name, values in plan.attributes.items()}
        titles[item_id] = _write_item(root, spec, item_id, attr, plan.defects)
        if (index + 1) % 100 == 0:
            log.debug("demo media: %d/%d items", index + 1, len(plan.item_ids))
    return titles


def _truth_record(spec: DemoSpec, plan: _Plan) -> dict[str, object]:
    """The JSON-ready ground truth; every mapping is built in sorted id order."""
    media, defects = spec.media, plan.defects
    return {
        "generator": "crossan.data.demo",
        "seed": spec.seed,
        "n_users": spec.n_users,
        "n_items": spec.n_items,
        "n_topics": spec.n_topics,
        "n_interactions": len(plan.interactions.item),
        "p_flip": P_FLIP,
        "media": {
            "cover_size": [media.cover_width, media.cover_height],
            "video_size": [media.video_width, media.video_height],
            "fps": media.fps,
            "video_seconds": media.video_seconds,
            "sample_rate": media.sample_rate,
        },
        "item_topic": {
            str(int(i)): int(t) for i, t in zip(plan.item_ids, plan.item_topic, strict=True)
        },
        "item_attributes": {
            str(int(item_id)): {name: int(v[index]) for name, v in plan.attributes.items()}
            for index, item_id in enumerate(plan.item_ids)
        },
        "new_items": [int(i) for i in plan.item_ids[plan.interactions.is_new]],
        "user_favourite_topics": {
            str(int(u)): [int(t) for t in favourites]
            for u, favourites in zip(plan.user_ids, plan.interactions.favourites, strict=True)
        },
        "defects": {
            "no_audio": list(defects.no_audio),
            "corrupt_video": [defects.corrupt_video],
            "missing_cover": [defects.missing_cover],
            "empty_title": [defects.empty_title],
        },
        "oracle_hr10": plan.hit_rates[0],
        "popularity_hr10": plan.hit_rates[1],
    }


def _write_all(root: Path, spec: DemoSpec, plan: _Plan) -> None:
    """Every file of the dataset, into the existing empty directory ``root``."""
    _write_pairs(root / "pairs.csv", plan)
    _write_titles(root / "titles.csv", _write_media(root, spec, plan))
    truth = json.dumps(_truth_record(spec, plan), indent=1) + "\n"
    (root / "demo_truth.json").write_text(truth, encoding="utf-8")


def generate_demo(
    out_dir: Path,
    *,
    n_users: int = 1000,
    n_items: int = 400,
    n_topics: int = 8,
    seed: int = 0,
    n_no_audio: int = 5,
    media: MediaOptions | None = None,
) -> DemoSummary:
    """Write the demo dataset to ``out_dir`` (replacing it) and return its summary.

    Deterministic in its arguments; built in ``out_dir.partial`` (a leftover one is removed
    first) and renamed at the end. Raises :class:`ConfigError` for impossible sizes.
    """
    spec = DemoSpec(n_users, n_items, n_topics, seed, n_no_audio, media or MediaOptions())
    spec.validate()
    began = time.perf_counter()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"demo dataset: {out_dir} exists and is not a directory")
    with atomic_directory(out_dir) as building:
        plan = _plan(spec)
        _write_all(building, spec, plan)
    inter, defects = plan.interactions, plan.defects
    return DemoSummary(
        out_dir=out_dir,
        seed=seed,
        n_users=n_users,
        n_items=n_items,
        n_topics=n_topics,
        n_interactions=len(inter.item),
        mean_sequence_length=len(inter.item) / n_users,
        oracle_hr10=plan.hit_rates[0],
        popularity_hr10=plan.hit_rates[1],
        no_audio_items=defects.no_audio,
        corrupt_video_item=defects.corrupt_video,
        missing_cover_item=defects.missing_cover,
        empty_title_item=defects.empty_title,
        seconds=time.perf_counter() - began,
    )


# --- command line -----------------------------------------------------------------------------


def run_cli(args: argparse.Namespace) -> int:
    """Run ``demo-data`` from parsed arguments; returns the exit status."""
    summary = generate_demo(
        args.out, n_users=args.users, n_items=args.items, n_topics=args.topics, seed=args.seed
    )
    log.info("%s", summary.describe())
    return 0
