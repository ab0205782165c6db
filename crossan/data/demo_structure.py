"""The demo dataset's planted structure: item topics, the attributes each modality reveals,
and the simulated users' behaviour (see :mod:`crossan.data.demo` for the files it ends up in).

Topics and attributes
---------------------
Every item has a latent topic ``t`` in ``[0, n_topics)``, factored into bits ``b_k = (t >> k) & 1``
(3 bits for up to 8 topics, a 4th for up to 16). Each modality reveals a *different* pair of
binary attributes derived from those bits, and every attribute is independently flipped with
probability ``p_flip`` (0.1) per item, so no modality pins the topic down on its own (at best two
candidate topics), while all four together nearly do:

=========  =====================================
modality   attribute (clean value)
=========  =====================================
title      word group ``b0 + 2*b1 (+ 4*b3)``
cover      ``cool = b1``, ``angular = b2`` (``dark = b3``)
video      ``fast = b0``, ``vertical = b2``
audio      ``high = b0 xor b1``, ``rich = b2``
=========  =====================================

(How each attribute shows in the media: :mod:`crossan.data.demo_media`.) Bits b0 and b1 are
each seen by title and one more modality plus the audio parity; b2 by cover, video and audio.
With 8 topics and ``p_flip = 0.1`` a maximum-likelihood decoder gets the topic right for about
40% of the items from any single modality and for about 90% from all four. (With fewer than 8
topics some bit patterns go unused and one modality may suffice; with 9-16 topics ``b3`` shows
in the title group and the cover's darkness.)

Behaviour
---------
Every user has a first favourite topic; 60% also get a second one and *drift*
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

Determinism: everything here draws from the caller's ``numpy.random.Generator`` in a fixed order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
START_MS = 1_640_995_200_000  # 2022-01-01T00:00:00Z
START_SPAN_MS = 546 * 86_400_000  # users start before 2023-07-01
MIN_GAP_MS = 60_000
MEAN_GAP_MS = 4 * 3_600_000
ORACLE_WINDOW = 3  # recent history items the oracle looks at


@dataclass(frozen=True)
class Interactions:
    """Simulated behaviour; ``user``, ``item`` and ``timestamp`` are aligned ``[N]`` int64
    arrays of user index, item index and epoch milliseconds, grouped by user in time order."""

    user: np.ndarray
    item: np.ndarray
    timestamp: np.ndarray
    favourites: np.ndarray  # [n_users, 2] topics; both equal for users without drift
    is_new: np.ndarray  # [n_items] bool: released late (see the module docstring)


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
