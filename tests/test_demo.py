"""Tests for the demo dataset generator: layout, determinism, defects, planted structure,
atomicity and the CLI. Sizes are small (60 users, 40 items) to keep the suite fast."""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from crossan.cli import build_parser, handler_of
from crossan.data import demo, demo_media, demo_structure
from crossan.data.layout import find_layout
from crossan.errors import ConfigError
from crossan.media.audio import NoAudioTrack, sample_audio

N_USERS, N_ITEMS, N_TOPICS = 60, 40, 8
SAMPLE_RATE = 16_000
WINDOW = 3 * SAMPLE_RATE  # the first 3 s, as the pipeline samples them


@dataclass(frozen=True)
class Generated:
    root: Path
    summary: demo.DemoSummary
    truth: dict


def _generate(root: Path, seed: int) -> Generated:
    summary = demo.generate_demo(
        root, n_users=N_USERS, n_items=N_ITEMS, n_topics=N_TOPICS, seed=seed
    )
    truth = json.loads((root / "demo_truth.json").read_text(encoding="utf-8"))
    return Generated(root, summary, truth)


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    return _generate(tmp_path_factory.mktemp("first") / "demo", seed=0)


@pytest.fixture(scope="module")
def again(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    """Same seed, generated over a stale ``out_dir`` and a ``.partial`` left by a killed run."""
    root = tmp_path_factory.mktemp("again") / "demo"
    root.mkdir()
    (root / "stale.txt").write_text("from an older run")
    leftover = root.with_name("demo.partial")
    (leftover / "videos").mkdir(parents=True)
    (leftover / "pairs.csv").write_text("half written")
    return _generate(root, seed=0)


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    return _generate(tmp_path_factory.mktemp("other") / "demo", seed=1)


def _read_pairs(root: Path) -> tuple[list[str], np.ndarray]:
    """Header and ``[N, 3]`` int64 rows of ``pairs.csv``."""
    with (root / "pairs.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    return rows[0], np.array([[int(v) for v in row] for row in rows[1:]], dtype=np.int64)


def _read_titles(root: Path) -> dict[int, str]:
    with (root / "titles.csv").open(newline="", encoding="utf-8") as handle:
        return {int(item): title for item, title in csv.reader(handle)}


def _item_ids(gen: Generated) -> list[int]:
    return [int(i) for i in gen.truth["item_topic"]]


def _defects(gen: Generated) -> set[int]:
    return {i for ids in gen.truth["defects"].values() for i in ids}


# The generated files are checked with PyAV, which wrote them: decord's behaviour depends on
# the CPU (see crossan.media.video), and a test of the generator must not.
def _video(path: Path) -> tuple[np.ndarray, float]:
    """Every frame, uint8 ``[T, H, W, 3]``, and the stream's frame rate."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(stream)])
        return frames, float(stream.average_rate)


def _frames(path: Path, n: int = 16) -> np.ndarray:
    """``[n, H, W, 3]`` uint8 frames sampled evenly over the first 3 s."""
    frames, fps = _video(path)
    last = min(len(frames) - 1, int(3 * fps) - 1)
    return frames[np.linspace(0, last, n).round().astype(int)]


def _audio(path: Path) -> np.ndarray:
    """``[48000]`` float32: the first 3 s, mono, 16 kHz."""
    return sample_audio(path, SAMPLE_RATE, WINDOW / SAMPLE_RATE)[0]


# --- layout -----------------------------------------------------------------------------------


def test_layout_and_csv_formats(first: Generated) -> None:
    root = first.root
    layout = find_layout(root, "demo", "demo")
    assert (layout.pairs, layout.titles) == (root / "pairs.csv", root / "titles.csv")
    header, pairs = _read_pairs(root)
    assert header == ["user", "item", "timestamp"]
    assert (root / "pairs.csv").read_text(encoding="utf-8").startswith("user,item,timestamp\n")
    assert len(pairs) == first.summary.n_interactions == first.truth["n_interactions"]

    ts = pairs[:, 2]  # epoch milliseconds within 2022-2023
    assert ts.min() >= 1_640_995_200_000 and ts.max() < 1_704_067_200_000

    users, counts = np.unique(pairs[:, 0], return_counts=True)
    assert len(users) == N_USERS and counts.min() >= 5 and counts.max() <= 20
    for user in users[:10]:  # timestamps strictly increase along each user's rows
        assert np.all(np.diff(ts[pairs[:, 0] == user]) > 0)
    assert not np.all(np.diff(pairs[:, 0]) >= 0), "rows should be interleaved like an export"
    assert len(np.unique(pairs[:, :2], axis=0)) == len(pairs), "no repeated (user, item)"

    ids = _item_ids(first)
    assert ids == sorted(ids) and len(ids) == N_ITEMS
    assert ids[-1] - ids[0] + 1 > N_ITEMS, "item ids must be non-contiguous"
    assert set(np.unique(pairs[:, 1]).tolist()) == set(ids), "every item has an interaction"

    first_line = (root / "titles.csv").read_text(encoding="utf-8").splitlines()[0]
    assert first_line.split(",")[0] == str(ids[0]), "titles.csv has no header"
    titles = _read_titles(root)
    assert sorted(titles) == ids
    lengths = [len(t.split()) for i, t in titles.items() if i != first.summary.empty_title_item]
    assert min(lengths) >= 3 and max(lengths) <= 10

    covers = sorted(p.stem for p in (root / "covers").iterdir())
    videos = sorted(p.stem for p in (root / "videos").iterdir())
    assert len(videos) == N_ITEMS and len(covers) == N_ITEMS - 1
    with Image.open(layout.cover_path(str(ids[0]))) as cover:
        assert (cover.format, cover.size) == ("JPEG", (160, 120))
    frames, fps = _video(layout.video_path(str(ids[0])))
    assert (len(frames), fps, frames[0].shape) == (100, 25.0, (96, 128, 3))


# --- determinism --------------------------------------------------------------------------------


def test_same_seed_identical_files_and_media(first: Generated, again: Generated) -> None:
    for name in ("pairs.csv", "titles.csv", "demo_truth.json"):
        assert (first.root / name).read_bytes() == (again.root / name).read_bytes(), name
    assert first.summary.oracle_hr10 == again.summary.oracle_hr10
    for folder in ("covers", "videos"):  # the encoders are deterministic too
        for path in sorted((first.root / folder).iterdir()):
            assert path.read_bytes() == (again.root / folder / path.name).read_bytes(), path.name
    broken = {first.summary.corrupt_video_item}
    for item in _item_ids(first):
        cover = first.root / "covers" / f"{item}.jpg"
        if cover.exists():
            with Image.open(cover) as a, Image.open(again.root / "covers" / cover.name) as b:
                assert np.array_equal(np.asarray(a), np.asarray(b))
        if item in broken:
            continue
        a, b = (g.root / "videos" / f"{item}.mp4" for g in (first, again))
        assert np.array_equal(_frames(a), _frames(b))
        if item not in first.summary.no_audio_items:
            assert np.array_equal(_audio(a), _audio(b))


def test_other_seed_differs(first: Generated, other: Generated) -> None:
    for name in ("pairs.csv", "titles.csv"):
        assert (first.root / name).read_bytes() != (other.root / name).read_bytes()
    assert _item_ids(first) != _item_ids(other)
    a_item = next(i for i in _item_ids(first) if i not in _defects(first))
    b_item = next(i for i in _item_ids(other) if i not in _defects(other))
    a = _frames(first.root / "videos" / f"{a_item}.mp4", n=2)
    b = _frames(other.root / "videos" / f"{b_item}.mp4", n=2)
    assert not np.array_equal(a, b)


# --- defects ------------------------------------------------------------------------------------


def test_planted_defects(first: Generated) -> None:
    s, root = first.summary, first.root
    defects = first.truth["defects"]
    assert defects == {
        "no_audio": list(s.no_audio_items),
        "corrupt_video": [s.corrupt_video_item],
        "missing_cover": [s.missing_cover_item],
        "empty_title": [s.empty_title_item],
    }
    assert len(s.no_audio_items) == 5 and len(_defects(first)) == 8, "defects are distinct items"
    _, pairs = _read_pairs(root)
    assert _defects(first) <= set(pairs[:, 1].tolist()), "defect items still have interactions"

    assert not (root / "covers" / f"{s.missing_cover_item}.jpg").exists()
    assert _read_titles(root)[s.empty_title_item] == ""
    assert f"\n{s.empty_title_item},\n" in (root / "titles.csv").read_text(encoding="utf-8")
    with pytest.raises(av.error.InvalidDataError):
        av.open(str(root / "videos" / f"{s.corrupt_video_item}.mp4"))
    for item in s.no_audio_items:
        path = root / "videos" / f"{item}.mp4"
        assert _frames(path, n=2).shape == (2, 96, 128, 3)
        with pytest.raises(NoAudioTrack):
            _audio(path)
    for item in set(_item_ids(first)) - _defects(first):
        audio = _audio(root / "videos" / f"{item}.mp4")
        assert audio.shape == (WINDOW,) and np.sqrt(np.mean(audio**2)) > 0.05


# --- planted structure --------------------------------------------------------------------------


def _oracle_and_popularity(
    pairs: np.ndarray, topic: dict[int, int], k: int = 10
) -> tuple[float, float]:
    """Independent re-implementation of the check: HR@k on each user's last item of (a) the
    most popular unseen items of the user's most frequent topic among the last 3 history items
    (ties: most recent) and (b) the most popular unseen items overall."""
    by_user: dict[int, list[tuple[int, int]]] = {}
    for user, item, ts in pairs.tolist():
        by_user.setdefault(user, []).append((ts, item))
    sequences = {u: [i for _, i in sorted(rows)] for u, rows in by_user.items()}
    counts = Counter(i for seq in sequences.values() for i in seq[:-1])
    ranked = sorted(topic, key=lambda i: (-counts[i], i))
    oracle = popular = 0
    for seq in sequences.values():
        history, target = seq[:-1], seq[-1]
        recent = [topic[i] for i in history[-3:]]
        best = max(recent.count(t) for t in recent)
        favourite = next(t for t in reversed(recent) if recent.count(t) == best)
        fresh = [i for i in ranked if i not in history]
        popular += target in fresh[:k]
        oracle += target in [i for i in fresh if topic[i] == favourite][:k]
    return oracle / len(sequences), popular / len(sequences)


def test_topic_oracle_beats_popularity_at_default_size() -> None:
    rng = np.random.default_rng(0)
    item_topic = rng.permutation(np.arange(400) % 8)
    inter = demo_structure.simulate_interactions(rng, item_topic, n_users=1000, n_topics=8)
    lengths = np.bincount(inter.user)
    assert lengths.min() >= 5 and lengths.max() <= 20 and 7.0 <= lengths.mean() <= 9.0
    assert np.bincount(inter.item, minlength=400).min() >= 1
    pairs = np.stack([inter.user, inter.item, inter.timestamp], axis=1)
    oracle, popular = _oracle_and_popularity(pairs, dict(enumerate(item_topic.tolist())))
    measured = demo_structure.oracle_vs_popularity(
        inter.user, inter.item, inter.timestamp, item_topic
    )
    assert (oracle, popular) == measured
    assert oracle >= 0.25 and oracle >= 3 * popular, (oracle, popular)


def test_summary_hit_rates_match_the_files(first: Generated) -> None:
    _, pairs = _read_pairs(first.root)
    topic = {int(i): t for i, t in first.truth["item_topic"].items()}
    oracle, popular = _oracle_and_popularity(pairs, topic)
    assert (oracle, popular) == (first.summary.oracle_hr10, first.summary.popularity_hr10)
    assert oracle > popular


def test_popularity_is_skewed_within_topics() -> None:
    rng = np.random.default_rng(3)
    item_topic = rng.permutation(np.arange(400) % 8)
    weights = demo_structure.item_popularity(rng, item_topic, 8)
    for t in range(8):
        w = np.sort(weights[item_topic == t])[::-1]
        assert w.sum() == pytest.approx(1.0) and w[0] / w[-1] == pytest.approx(50**0.6)


def _decode_accuracy(
    observed: dict[str, np.ndarray], topics: np.ndarray, names: list[str]
) -> float:
    """Share of items whose maximum-likelihood topic (from the attributes ``names``) is right."""
    clean = demo_structure.planted_attributes(np.arange(N_TOPICS), N_TOPICS)
    log_p = np.zeros((len(topics), N_TOPICS))
    p_flip = demo_structure.P_FLIP
    for name in names:
        n_bits = 3 if name == "title_group" else 1
        for bit in range(n_bits):
            agree = ((observed[name][:, None] ^ clean[name][None, :]) >> bit & 1) == 0
            log_p += np.where(agree, np.log(1 - p_flip), np.log(p_flip))
    return float(np.mean(np.argmax(log_p, axis=1) == topics))


def test_no_single_modality_determines_the_topic_but_all_nearly_do() -> None:
    rng = np.random.default_rng(0)
    topics = rng.integers(0, N_TOPICS, 4000)
    observed = demo_structure.observe_attributes(rng, topics, N_TOPICS)
    modalities = {
        "title": ["title_group"],
        "cover": ["cover_cool", "cover_angular"],
        "video": ["video_fast", "video_vertical"],
        "audio": ["audio_high", "audio_rich"],
    }
    for names in modalities.values():
        assert _decode_accuracy(observed, topics, names) < 0.5
    assert _decode_accuracy(observed, topics, sum(modalities.values(), [])) > 0.85


def _attributes(gen: Generated, item: int) -> dict[str, int]:
    return gen.truth["item_attributes"][str(item)]


def test_title_words_follow_the_title_group(first: Generated) -> None:
    titles = _read_titles(first.root)
    for item, title in titles.items():
        if item == first.summary.empty_title_item:
            continue
        words = {w.strip('",').lower() for w in title.split()}
        vocabulary = set(demo_media.TOPIC_WORDS[_attributes(first, item)["title_group"]])
        assert 1 <= len(words & vocabulary) <= 3, title


def test_cover_hue_and_shape_follow_attributes(first: Generated) -> None:
    hues: dict[int, list[float]] = {0: [], 1: []}
    for item in _item_ids(first):
        path = first.root / "covers" / f"{item}.jpg"
        if not path.exists():
            continue
        attr = _attributes(first, item)
        with Image.open(path) as image:
            hsv = np.asarray(image.convert("HSV")).astype(np.float64)
            rgb = np.asarray(image.convert("RGB")).astype(np.int64)
        neutral = rgb.max(axis=-1) - rgb.min(axis=-1) < 40  # the shape is near-white or near-black
        hue = float(np.median(hsv[..., 0][~neutral])) * 360 / 255
        assert (190 <= hue <= 230) if attr["cover_cool"] else (15 <= hue <= 45), (item, hue)
        hues[attr["cover_cool"]].append(hue)
        # area / (max radius)^2 is pi for a disc (>= 2.6 for our ellipses), 2..2.3 for a square
        ys, xs = np.nonzero(neutral)
        radius = np.percentile(np.hypot(ys - ys.mean(), xs - xs.mean()), 99.5)
        compactness = len(ys) / radius**2
        angular = compactness < 2.45
        assert angular if attr["cover_angular"] else compactness > 2.5, (item, compactness)
    assert np.mean(hues[1]) - np.mean(hues[0]) > 150


def _motion(path: Path) -> tuple[bool, float]:
    """(is the disc moving vertically, its speed in px/s) from the first 3 s of a video."""
    frames = _video(path)[0][:100].astype(np.int16)  # [T, H, W, 3]
    background = np.median(frames, axis=0)
    mask = np.abs(frames - background).max(axis=-1) > 60  # [T, H, W]
    height, width = mask.shape[1:]
    ys = np.array([np.nonzero(m)[0].mean() for m in mask[:75]])
    xs = np.array([np.nonzero(m)[1].mean() for m in mask[:75]])
    vertical = bool(np.std(xs) < np.std(ys))
    coord, size = (ys, height) if vertical else (xs, width)
    step = np.abs((np.diff(coord) + size / 2) % size - size / 2)  # undo the wrap-around
    return vertical, float(np.median(step)) * 25


def test_video_motion_follows_attributes(first: Generated) -> None:
    seen = set()
    for item in _item_ids(first)[:10]:
        if item == first.summary.corrupt_video_item:
            continue
        attr = _attributes(first, item)
        vertical, speed = _motion(first.root / "videos" / f"{item}.mp4")
        assert vertical == bool(attr["video_vertical"]), item
        assert (50 <= speed <= 80) if attr["video_fast"] else (10 <= speed <= 26), (item, speed)
        seen |= {("vertical", vertical), ("fast", attr["video_fast"])}
    assert len(seen) == 4, "both directions and both speeds were checked"


def test_audio_pitch_and_timbre_follow_attributes(first: Generated) -> None:
    checked = 0
    for item in set(_item_ids(first)) - _defects(first):
        attr = _attributes(first, item)
        spectrum = np.abs(np.fft.rfft(_audio(first.root / "videos" / f"{item}.mp4")))
        hz = np.fft.rfftfreq(WINDOW, 1 / SAMPLE_RATE)
        f0 = hz[np.argmax(spectrum)]
        assert (520 <= f0 <= 680) if attr["audio_high"] else (180 <= f0 <= 260), (item, f0)
        band = lambda f: spectrum[(hz > f - 30) & (hz < f + 30)].sum()  # noqa: E731
        harmonic = band(2 * f0) / band(f0)
        assert (harmonic > 0.2) if attr["audio_rich"] else (harmonic < 0.1), (item, harmonic)
        checked += 1
    assert checked == N_ITEMS - 8


# --- atomicity ----------------------------------------------------------------------------------


def test_leftover_partial_and_old_tree_are_replaced(again: Generated) -> None:
    assert not again.root.with_name("demo.partial").exists()
    assert not again.root.with_name("demo.old").exists()
    assert not (again.root / "stale.txt").exists()
    assert sorted(p.name for p in again.root.iterdir()) == [
        "covers", "demo_truth.json", "pairs.csv", "titles.csv", "videos",
    ]


def test_failed_generation_leaves_previous_output_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "demo"
    out.mkdir()
    (out / "pairs.csv").write_text("previous\n")
    calls = []

    def failing_write(*args: object, **kwargs: object) -> None:
        calls.append(args)
        Path(args[0]).write_bytes(b"\0" * 64)  # the corrupt item's MP4 is read back and cut
        if len(calls) == 3:
            raise KeyboardInterrupt  # as if the job were killed mid-way

    monkeypatch.setattr(demo, "write_mp4", failing_write)
    with pytest.raises(KeyboardInterrupt):
        demo.generate_demo(out, n_users=30, n_items=30)
    assert (out / "pairs.csv").read_text(encoding="utf-8") == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]


def test_invalid_sizes_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="items"):
        demo.generate_demo(tmp_path / "demo", n_items=10)
    with pytest.raises(ConfigError, match="topics"):
        demo.generate_demo(tmp_path / "demo", n_topics=40)
    assert not (tmp_path / "demo").exists() and not (tmp_path / "demo.partial").exists()


# --- command line -------------------------------------------------------------------------------


def test_cli_subcommand(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    parser = build_parser()
    out = tmp_path / "cli-demo"
    args = parser.parse_args(
        ["demo-data", "--out", str(out), "--users", "25", "--items", "30"]
        + ["--topics", "4", "--seed", "7"]
    )
    assert (args.out, args.users, args.items, args.topics, args.seed) == (out, 25, 30, 4, 7)
    with caplog.at_level(logging.INFO, logger="crossan.data.demo"):
        assert handler_of(args)(args) == 0
    truth = json.loads((out / "demo_truth.json").read_text(encoding="utf-8"))
    assert (truth["seed"], truth["n_users"], truth["n_items"], truth["n_topics"]) == (7, 25, 30, 4)
    assert set(truth["item_topic"].values()) == {0, 1, 2, 3}
    assert "25 users, 30 items" in caplog.text and "oracle" in caplog.text
    defaults = parser.parse_args(["demo-data", "--out", "x"])
    assert (defaults.users, defaults.items, defaults.topics, defaults.seed) == (1000, 400, 8, 0)
    with pytest.raises(SystemExit):
        parser.parse_args(["demo-data"])  # --out is required
