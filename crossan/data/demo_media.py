"""The demo dataset's synthetic media, rendered in memory from an item's planted attributes
(:func:`crossan.data.demo_structure.planted_attributes`) and its own random generator:

=========  =====================================  =============================================
modality   attribute                              how it shows
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

Colours of the video background and disc, positions, shape rotation, filler words etc. are
random nuisance. :class:`MediaOptions` holds the sizes; writing the files (JPEG, MP4) is
:mod:`crossan.data.demo`'s job.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

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


# --- renderers --------------------------------------------------------------------------------


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
