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
Every item has a latent topic ``t`` in ``[0, n_topics)``, factored into bits ``b_k = (t >> k) & 1``
(3 bits for up to 8 topics, a 4th for up to 16). Each modality reveals a *different* pair of
binary attributes derived from those bits, and every attribute is independently flipped with
probability ``p_flip`` (0.1) per item, so no modality pins the topic down on its own (at best two
candidate topics), while all four together nearly do:

=========  =====================================  =============================================
modality   attribute (clean value)                how it shows
=========  =====================================  =============================================
title      word group ``b0 + 2*b1 (+ 4*b3)``      1-3 words from the group's vocabulary among
                                                  generic filler words (sometimes one decoy word
                                                  from another group); 3-9 words
cover      ``cool = b1``, ``angular = b2``        background hue warm (15-45 deg) / cool
           (``dark = b3``)                        (190-230 deg); a neutral round (disc/ellipse) or
                                                  angular (rotated square) shape; (dark = low value)
video      ``fast = b0``, ``vertical = b2``       a disc (radius 7-10 px) moving over a blocky
                                                  textured background (it wraps around the edges),
                                                  14-22 px/s (slow) or 55-75 px/s (fast),
                                                  horizontally or vertically, from frame 0 on
audio      ``high = b0 xor b1``, ``rich = b2``    a tone at 180-260 Hz (low) or 520-680 Hz (high),
                                                  pure sine or with harmonics 2-4 (weaker than the
                                                  fundamental), pulsing envelope, white noise
=========  =====================================  =============================================

Bits b0 and b1 are each seen by title and one more modality plus the audio parity; b2 by cover,
video and audio. With 8 topics and ``p_flip = 0.1`` a maximum-likelihood decoder gets the topic
right for about 40% of the items from any single modality and for about 90% from all four.
(With fewer than 8 topics some bit patterns go unused and one modality may suffice; with 9-16
topics ``b3`` shows in the title group and the cover's darkness.) Colours of the video
background and disc, positions, shape rotation, filler words etc. are random nuisance.

Behaviour: every user has a first favourite topic; 60% also get a second one and *drift*
towards it: at position ``i`` of a length-``L`` sequence the favourite-2 share is ``i / (L-1)``.
With probability 0.1 an interaction is noise (any topic). Within a topic, item popularity is
Zipf-like (``rank^-0.6``; topics get equal total mass), and no item repeats within a user.
Sequence lengths are ``5 + min(Geometric(0.25) - 1, 15)`` (5..20, mean about 8); timestamps
increase per user (gaps of 1 min + Exp(4 h)), starting in 2022-01..2023-06. Items nobody drew are
swapped into some earlier position of a same-topic history, so every item has an interaction.

Item cold start: 15% of the items (``new_items`` in the truth file) are *new releases* that a
user can only reach at the last two positions of the sequence, i.e. as the validation or the
test item. They never occur in the training split, as in any catalogue that grows over time:
an item-ID model has nothing to learn their embeddings from, while their content is as
informative as any other item's. This is the case content-based recommenders exist for, and
without it the dense demo (about 19 interactions per item) lets item IDs alone come close to
the topic oracle.

Consequently the last item is predicted far better by "the user's recent topic" than by global
popularity: :func:`oracle_vs_popularity` measures both (HR@10; default size, seed 0: 0.301 for
the topic oracle vs 0.082 for popularity).

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
import colorsys
import csv
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from crossan.atomic import atomic_directory
from crossan.errors import ConfigError
from crossan.media.encode import write_mp4

log = logging.getLogger(__name__)

# --- planted-structure parameters -------------------------------------------------------------
P_FLIP = 0.1  # chance that one observed attribute of one item contradicts its topic
NOISE_RATE = 0.1  # share of interactions drawn from global popularity, ignoring preferences
DRIFT_SHARE = 0.6  # share of users with a second favourite topic they drift towards
ZIPF_ALPHA = 0.6  # within-topic popularity ~ rank^-alpha
NEW_ITEM_SHARE = 0.15  # share of items released late: reachable only at the last two positions
RELEASE_POSITIONS = 2  # how many of a sequence's last positions can hold a new release
MIN_LEN, MAX_LEN = 5, 20
GEOMETRIC_P = 0.25  # extra length beyond MIN_LEN ~ Geometric(p) - 1, mean 3
MAX_TOPICS = 16
ITEM_ID_MAX = 99_999
USER_ID_MAX = 999_999
START_MS = 1_640_995_200_000  # 2022-01-01T00:00:00Z
START_SPAN_MS = 546 * 86_400_000  # users start before 2023-07-01
MIN_GAP_MS = 60_000
MEAN_GAP_MS = 4 * 3_600_000
ORACLE_WINDOW = 3  # recent history items the oracle looks at
CORRUPT_KEEP = 0.4  # share of the corrupt MP4's bytes that are kept
JPEG_QUALITY = 90

# Modality codes that separate each item's media random streams.
_TITLE, _COVER, _VIDEO, _AUDIO = 1, 2, 3, 4

TOPIC_WORDS: tuple[tuple[str, ...], ...] = (
    ("recipe", "noodles", "dumplings", "spicy", "kitchen", "baking", "ramen", "dessert",
     "chef", "grill", "soup", "hotpot"),
    ("puppy", "kitten", "cat", "dog", "hamster", "parrot", "paws", "fluffy", "zoo", "bunny",
     "rescue", "corgi"),
    ("mountain", "beach", "sunset", "hiking", "island", "roadtrip", "lake", "camping",
     "waterfall", "desert", "village", "skyline"),
    ("gameplay", "speedrun", "console", "bossfight", "gadget", "unboxing", "keyboard", "pixel",
     "arcade", "esports", "robot", "headset"),
    ("guitar", "piano", "drums", "dance", "choir", "beat", "violin", "concert", "remix",
     "melody", "rap", "ukulele"),
    ("workout", "football", "basketball", "yoga", "marathon", "skateboard", "goal", "gym",
     "swimming", "boxing", "cycling", "tennis"),
    ("makeup", "outfit", "hairstyle", "skincare", "runway", "dress", "sneakers", "nails",
     "lipstick", "styling", "vintage", "jewelry"),
    ("experiment", "chemistry", "rocket", "magnet", "crafts", "woodworking", "origami",
     "circuit", "telescope", "slime", "volcano", "microscope"),
)
OPENERS: tuple[str, ...] = (
    "my", "our", "the", "best", "first", "new", "quick", "easy", "ultimate", "amazing", "tiny",
    "weekend", "daily", "secret", "real", "funny", "crazy", "simple", "cozy", "epic",
)
TAILS: tuple[str, ...] = (
    "today", "at home", "with friends", "part 2", "you need to see", "in 60 seconds",
    "for beginners", "vlog", "challenge", "gone wrong", "again", "every day", "tips",
    "compilation", "with my family", "at night", "in the rain", "live", "tutorial",
    "that changed everything", "on a budget", "before and after",
)


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


@dataclass(frozen=True)
class Interactions:
    """Simulated behaviour; ``user``, ``item`` and ``timestamp`` are aligned ``[N]`` int64
    arrays of user index, item index and epoch milliseconds, grouped by user in time order."""

    user: np.ndarray
    item: np.ndarray
    timestamp: np.ndarray
    favourites: np.ndarray  # [n_users, 2] topics; both equal for users without drift
    is_new: np.ndarray  # [n_items] bool: released late (see the module docstring)


@dataclass(frozen=True)
class MediaOptions:
    """Sizes of the synthetic media."""

    cover_height: int = 120
    cover_width: int = 160
    video_height: int = 96
    video_width: int = 128
    fps: int = 25
    video_seconds: float = 4.0
    sample_rate: int = 16_000

    @property
    def n_frames(self) -> int:
        return int(round(self.fps * self.video_seconds))

    @property
    def n_samples(self) -> int:
        return int(round(self.sample_rate * self.video_seconds))


# --- topics and attributes --------------------------------------------------------------------


def n_topic_bits(n_topics: int) -> int:
    """Bits used to factor topics: 3 up to 8 topics, 4 up to 16."""
    return max(3, int(np.ceil(np.log2(n_topics))))


def planted_attributes(topics: np.ndarray, n_topics: int) -> dict[str, np.ndarray]:
    """Clean per-modality attributes of items with ``topics`` (``[N]`` int).

    Returns ``{name: [N] int64}`` for ``title_group``, ``cover_cool``, ``cover_angular``,
    ``cover_dark``, ``video_fast``, ``video_vertical``, ``audio_high``, ``audio_rich``.
    """
    topics = np.asarray(topics, dtype=np.int64)
    bits = [(topics >> k) & 1 for k in range(n_topic_bits(n_topics))]
    b3 = bits[3] if len(bits) > 3 else np.zeros_like(topics)
    return {
        "title_group": bits[0] + 2 * bits[1] + 4 * b3,
        "cover_cool": bits[1],
        "cover_angular": bits[2],
        "cover_dark": b3,
        "video_fast": bits[0],
        "video_vertical": bits[2],
        "audio_high": bits[0] ^ bits[1],
        "audio_rich": bits[2],
    }


def observe_attributes(
    rng: np.random.Generator, topics: np.ndarray, n_topics: int, p_flip: float = P_FLIP
) -> dict[str, np.ndarray]:
    """:func:`planted_attributes` with every binary attribute (each bit of ``title_group``)
    flipped independently with probability ``p_flip``; same keys, ``[N]`` int64 arrays."""
    clean = planted_attributes(topics, n_topics)
    observed: dict[str, np.ndarray] = {}
    for name, values in clean.items():  # insertion order is fixed, so draws are reproducible
        n_bits = 3 if name == "title_group" else 1
        flips = (rng.random((n_bits, len(values))) < p_flip).astype(np.int64)
        mask = (flips << np.arange(n_bits)[:, None]).sum(axis=0)
        observed[name] = values ^ mask
    if n_topic_bits(n_topics) < 4:  # no b3: keep the unused attributes clean
        observed["title_group"] &= 3
        observed["cover_dark"][:] = 0
    return observed


# --- behaviour ------------------------------------------------------------------------------


def item_popularity(rng: np.random.Generator, item_topic: np.ndarray, n_topics: int) -> np.ndarray:
    """Zipf-like weights ``[n_items]``: within each topic ``rank^-alpha`` over a random order of
    its items, normalised so that each topic's weights sum to 1."""
    weights = np.zeros(len(item_topic))
    for topic in range(n_topics):
        members = np.flatnonzero(item_topic == topic)
        ranks = rng.permutation(len(members)) + 1
        raw = ranks.astype(np.float64) ** -ZIPF_ALPHA
        weights[members] = raw / raw.sum()
    return weights


def _draw(rng: np.random.Generator, weights: np.ndarray) -> int:
    """One index drawn with probability proportional to ``weights`` (``[n]``, not all zero)."""
    cumulative = np.cumsum(weights)
    index = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
    return min(index, len(weights) - 1)


def _user_sequence(
    rng: np.random.Generator,
    length: int,
    favourites: tuple[int, int],
    weights: np.ndarray,
    item_topic: np.ndarray,
    is_new: np.ndarray,
) -> list[int]:
    """Item indices of one user's sequence (no repeats), drifting from favourite 1 to 2; new
    releases (``is_new``) only in the last :data:`RELEASE_POSITIONS` positions."""
    seen = np.zeros(len(weights), dtype=bool)
    sequence: list[int] = []
    for position in range(length):
        drift = position / (length - 1)
        noise, pick_second = rng.random(2)
        released = is_new & (position < length - RELEASE_POSITIONS)  # not yet out
        available = np.where(seen | released, 0.0, weights)
        if noise >= NOISE_RATE:
            topic = favourites[1] if pick_second < drift else favourites[0]
            in_topic = np.where(item_topic == topic, available, 0.0)
            if in_topic.sum() > 0:  # a small topic can run out for long sequences
                available = in_topic
        item = _draw(rng, available)
        seen[item] = True
        sequence.append(item)
    return sequence


def _cover_every_item(
    rng: np.random.Generator, sequences: list[list[int]], item_topic: np.ndarray, is_new: np.ndarray
) -> None:
    """Swap each never-drawn item into a random earlier (non-last) position of some history
    (a new release: only into the second-to-last), preferring to replace a same-topic item that
    occurs more than once; modifies ``sequences``."""
    counts = np.bincount(np.concatenate(sequences), minlength=len(item_topic))
    for item in np.flatnonzero(counts == 0):
        slots = [
            (u, p)
            for u, seq in enumerate(sequences)
            if item not in seq
            for p, other in enumerate(seq[:-1])
            if counts[other] > 1 and (not is_new[item] or p == len(seq) - RELEASE_POSITIONS)
        ]
        same_topic = [(u, p) for u, p in slots if item_topic[sequences[u][p]] == item_topic[item]]
        slots = same_topic or slots
        if not slots:
            continue
        u, p = slots[int(rng.integers(len(slots)))]
        counts[sequences[u][p]] -= 1
        sequences[u][p] = int(item)
        counts[item] += 1


def simulate_interactions(
    rng: np.random.Generator, item_topic: np.ndarray, n_users: int, n_topics: int
) -> Interactions:
    """Draw every user's sequence and timestamps (see the module docstring).

    ``item_topic``: ``[n_items]`` int topic per item index. Needs ``n_items >= MAX_LEN``.
    """
    weights = item_popularity(rng, item_topic, n_topics)
    is_new = np.zeros(len(item_topic), dtype=bool)
    is_new[rng.choice(len(item_topic), size=round(NEW_ITEM_SHARE * len(item_topic)), replace=False)] = True
    lengths = MIN_LEN + np.minimum(rng.geometric(GEOMETRIC_P, n_users) - 1, MAX_LEN - MIN_LEN)
    first = rng.integers(n_topics, size=n_users)
    drifts = rng.random(n_users) < DRIFT_SHARE
    second = np.where(drifts, (first + rng.integers(1, n_topics, size=n_users)) % n_topics, first)
    sequences = [
        _user_sequence(
            rng, int(lengths[u]), (int(first[u]), int(second[u])), weights, item_topic, is_new
        )
        for u in range(n_users)
    ]
    _cover_every_item(rng, sequences, item_topic, is_new)
    starts = START_MS + rng.integers(0, START_SPAN_MS, size=n_users)
    gaps = MIN_GAP_MS + np.floor(rng.exponential(MEAN_GAP_MS, size=int(lengths.sum())))
    user = np.repeat(np.arange(n_users), lengths)
    offsets = np.cumsum(gaps.astype(np.int64))
    group_start = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    before_group = np.concatenate([[0], offsets])[group_start]  # offsets of earlier users
    timestamp = starts[user] + offsets - before_group[user]
    return Interactions(
        user=user.astype(np.int64),
        item=np.concatenate(sequences).astype(np.int64),
        timestamp=timestamp.astype(np.int64),
        favourites=np.stack([first, second], axis=1),
        is_new=is_new,
    )


def oracle_vs_popularity(
    user: np.ndarray,
    item: np.ndarray,
    timestamp: np.ndarray,
    item_topic: dict[int, int] | np.ndarray,
    k: int = 10,
    window: int = ORACLE_WINDOW,
) -> tuple[float, float]:
    """HR@k on every user's last item for two rankers that both see only the earlier items.

    ``user``, ``item``, ``timestamp``: aligned ``[N]`` arrays (any ids, any row order);
    ``item_topic`` maps item (id or index) to topic. Popularity counts exclude last items;
    the user's own history is never recommended. The oracle takes the most frequent topic among
    the user's last ``window`` history items (ties: the most recent) and ranks that topic's items
    by popularity; the baseline ranks all items by popularity. Returns ``(oracle, popularity)``.
    """
    user, item, timestamp = (np.asarray(a, dtype=np.int64) for a in (user, item, timestamp))
    order = np.lexsort((timestamp, user))
    user, item = user[order], item[order]
    is_last = np.append(user[1:] != user[:-1], True)
    items = np.unique(item)
    topic_of = {int(i): int(item_topic[int(i)]) for i in items}
    counts = dict(zip(*np.unique(item[~is_last], return_counts=True), strict=True))
    popularity = np.array([counts.get(i, 0) for i in items])
    by_popularity = items[np.argsort(-popularity, kind="stable")]
    topic_array = np.array([topic_of[int(i)] for i in by_popularity])

    starts = np.flatnonzero(np.append(True, user[1:] != user[:-1]))
    ends = np.append(starts[1:], len(user))
    oracle_hits = popularity_hits = 0
    for start, end in zip(starts, ends, strict=True):
        history, target = item[start : end - 1], int(item[end - 1])
        fresh = ~np.isin(by_popularity, history)
        popularity_hits += target in by_popularity[fresh][:k]
        recent = [topic_of[int(i)] for i in history[-window:]]
        topic = max(reversed(recent), key=recent.count) if recent else topic_array[0]
        oracle_hits += target in by_popularity[fresh & (topic_array == topic)][:k]
    return oracle_hits / len(starts), popularity_hits / len(starts)


# --- media ------------------------------------------------------------------------------------


def make_title(rng: np.random.Generator, group: int, n_groups: int) -> str:
    """An English-like title of 3-9 words with 1-3 words of vocabulary ``group`` (and with
    probability 0.2 one decoy word of another of the ``n_groups`` groups in use); sometimes
    with a comma or quotes."""
    n_words = int(rng.integers(3, 10))
    n_topic = 1 + (n_words >= 5) + (n_words >= 8)
    core = [str(w) for w in rng.choice(TOPIC_WORDS[group], size=n_topic, replace=False)]
    if rng.random() < 0.2:
        other = (group + int(rng.integers(1, n_groups))) % n_groups
        core.insert(int(rng.integers(len(core) + 1)), str(rng.choice(TOPIC_WORDS[other])))
    if rng.random() < 0.05:
        core[0] = f'"{core[0]}"'
    budget = max(0, n_words - len(core))
    head: list[str] = []
    tail: list[str] = []
    while budget > 0:
        if not head and rng.random() < 0.6:
            head.append(str(rng.choice(OPENERS)))
            budget -= 1
        else:  # single-word tails exist, so some chunk always fits
            fits = [c for c in TAILS if len(c.split()) <= budget and c not in tail]
            chunk = str(rng.choice(fits))
            tail.append(chunk)
            budget -= len(chunk.split())
    separator = ", " if tail and rng.random() < 0.15 else " "
    text = " ".join(head + core)
    if tail:
        text += separator + " ".join(tail)
    first = next(i for i, ch in enumerate(text) if ch.isalpha())
    return text[:first] + text[first].upper() + text[first + 1 :]


def _hsv_to_rgb(hue_deg: float, saturation: float, value: float) -> np.ndarray:
    """``[3]`` float RGB in 0..255 for one HSV colour."""
    return np.array(colorsys.hsv_to_rgb(hue_deg / 360.0, saturation, value)) * 255.0


def render_cover(
    rng: np.random.Generator, cool: int, angular: int, dark: int, height: int, width: int
) -> np.ndarray:
    """A cover, uint8 ``[height, width, 3]``: warm/cool hued gradient background with grain and
    one neutral (near-white or near-black) round or angular shape."""
    hue = rng.uniform(190, 230) if cool else rng.uniform(15, 45)
    value = rng.uniform(0.35, 0.5) if dark else rng.uniform(0.7, 0.95)
    base = _hsv_to_rgb(hue, rng.uniform(0.55, 0.9), value)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * xx / width + np.sin(angle) * yy / height  # [H, W] gradient
    image = base * (1.0 + 0.15 * ramp)[..., None] + rng.normal(0, 5, (height, width, 3))
    cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
    size = rng.uniform(0.15, 0.3) * height
    dy, dx = yy - cy, xx - cx
    if angular:  # rotated square: max-norm in a rotated frame
        theta = rng.uniform(0, np.pi / 2)
        u = np.cos(theta) * dx + np.sin(theta) * dy
        v = -np.sin(theta) * dx + np.cos(theta) * dy
        mask = np.maximum(np.abs(u), np.abs(v)) <= size
    else:  # disc or mild ellipse
        aspect = rng.uniform(0.85, 1.2)
        mask = (dx / aspect) ** 2 + dy**2 <= size**2
    grey = rng.uniform(225, 245) if rng.random() < 0.5 else rng.uniform(15, 35)
    image[mask] = grey + rng.normal(0, 3, (int(mask.sum()), 1))
    return _to_uint8(image)


def render_frames(
    rng: np.random.Generator, fast: int, vertical: int, options: MediaOptions
) -> np.ndarray:
    """Video frames, uint8 ``[T, H, W, 3]``: a disc moving at constant velocity (wrapping
    around the edges) over a static blocky texture with grain. Speed 14-22 px/s (slow) or
    55-75 px/s (fast); direction horizontal or vertical, sign random."""
    height, width, n_frames = options.video_height, options.video_width, options.n_frames
    block = 8
    base = rng.uniform(50, 200, 3)
    coarse = base + rng.normal(0, 25, (-(-height // block), -(-width // block), 3))
    texture = np.kron(coarse, np.ones((block, block, 1)))[:height, :width]
    background = texture + rng.normal(0, 6, (height, width, 3))  # [H, W, 3]
    colour = _hsv_to_rgb(rng.uniform(0, 360), rng.uniform(0.7, 1.0), 1.0)
    radius = rng.uniform(7, 10)
    speed = rng.uniform(55, 75) if fast else rng.uniform(14, 22)
    sign = 1.0 if rng.random() < 0.5 else -1.0
    start = rng.uniform(0, 1, 2) * (height, width)
    seconds = np.arange(n_frames) / options.fps  # [T]
    cy = start[0] + (sign * speed * seconds if vertical else 0.0)
    cx = start[1] + (0.0 if vertical else sign * speed * seconds)
    cy, cx = np.broadcast_to(cy, seconds.shape), np.broadcast_to(cx, seconds.shape)
    # toroidal offsets, so the disc re-enters on the other side instead of vanishing
    dy = (np.arange(height)[None, :, None] - cy[:, None, None] + height / 2) % height - height / 2
    dx = (np.arange(width)[None, None, :] - cx[:, None, None] + width / 2) % width - width / 2
    mask = dy**2 + dx**2 <= radius**2  # [T, H, W]
    frames = np.repeat(_to_uint8(background)[None], n_frames, axis=0)
    frames[mask] = _to_uint8(colour)
    return frames


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """Round and clip to uint8 (any shape)."""
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def synth_audio(
    rng: np.random.Generator, high: int, rich: int, options: MediaOptions
) -> np.ndarray:
    """Mono audio, float32 ``[S]`` in [-0.5, 0.5]: a tone of 180-260 Hz (low) or 520-680 Hz
    (high) with light vibrato, either a pure sine or with weaker harmonics 2-4, under a pulsing
    envelope (never silent) plus white noise."""
    f0 = rng.uniform(520, 680) if high else rng.uniform(180, 260)
    seconds = np.arange(options.n_samples) / options.sample_rate  # [S]
    phase = 2 * np.pi * f0 * seconds + 0.3 * np.sin(2 * np.pi * rng.uniform(4, 6) * seconds)
    partials = (1.0, 0.5, 0.35, 0.25) if rich else (1.0,)
    tone = sum(a * np.sin((n + 1) * phase) for n, a in enumerate(partials))
    rate, offset = rng.uniform(1.5, 3), rng.uniform(0, np.pi)
    pulse = 0.55 + 0.45 * np.abs(np.sin(np.pi * rate * seconds + offset))
    signal = tone * pulse
    signal = signal / np.max(np.abs(signal)) + rng.normal(0, 0.04, len(seconds))
    return (0.5 * signal / np.max(np.abs(signal))).astype(np.float32)


def _media_rng(seed: int, item_id: int, modality: int) -> np.random.Generator:
    """Generator private to one item's one modality, independent of generation order."""
    return np.random.default_rng([seed, item_id, modality])


# --- planning and writing ---------------------------------------------------------------------


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


def register_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``crossan demo-data --out DIR [--users N] [--items N] [--topics N] [--seed N]``."""
    parser = subparsers.add_parser(
        "demo-data",
        help="generate the embedded demo dataset (deterministic, offline)",
        description="Generate the demo dataset in the MicroLens raw layout.",
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory (replaced)")
    parser.add_argument("--users", type=int, default=1000, help="number of users (default 1000)")
    parser.add_argument("--items", type=int, default=400, help="number of items (default 400)")
    parser.add_argument("--topics", type=int, default=8, help="number of latent topics (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    """Run ``demo-data`` from parsed arguments; returns the exit status."""
    summary = generate_demo(
        args.out, n_users=args.users, n_items=args.items, n_topics=args.topics, seed=args.seed
    )
    log.info("%s", summary.describe())
    return 0
