"""Where a dataset's raw files live: the MicroLens layout and the manifest that records it.

Every dataset kind (demo, microlens, local) ends in one JSON manifest,
``resources/{dataset}/dataset.json``, which later stages read to find the raw files:

    {"name": ..., "kind": ..., "pairs": ..., "titles": ..., "covers": ..., "videos": ...}

A raw tree has an interaction file (``user,item,timestamp``), a title file (no header,
``id,title``), a folder of covers ``{id}.jpg`` and a folder of videos ``{id}.mp4``. Both our
canonical names and MicroLens' own file names are recognised.

A dataset of kind ``local`` needs only the interaction file: the title file, covers and videos
may be absent, and the manifest then lists them under ``"absent"`` (each path is where the
part would be). Which of them a dataset must have depends on the modalities it declares
(``catalog.{name}.modalities``: text needs titles, image covers, video and audio videos):
:func:`check_declared_parts` names a missing one before any job runs.

:func:`verify_layout` checks a located tree item by item: every item of the interaction file
should have a non-empty title, a cover and a video. Structural absence (no interaction file;
for the demo and MicroLens also no covers folder, ...) is fatal (:func:`require_layout` raises
``DataError``); items without a title row, with an empty title (a row ``id,`` or a title of
spaces only), without a cover or without a video are only counted and listed in a
:class:`LayoutReport`, because later stages mask those items (an item without a title row
gets an empty title, and an empty title is encoded as ``[CLS] [SEP]``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from crossan.atomic import write_text_atomic
from crossan.config import dataset_modalities
from crossan.data.options import MICROLENS_VARIANTS
from crossan.data.readers import item_ids, read_titles
from crossan.errors import ConfigError, DataError

log = logging.getLogger(__name__)

# (canonical name, then the MicroLens release's names with {v} = 100k | 50k)
PAIRS_NAMES = ("pairs.csv", "MicroLens-{v}_pairs.csv")
TITLES_NAMES = ("titles.csv", "MicroLens-{v}_title_en.csv")
COVERS_NAMES = ("covers", "MicroLens-{v}_covers")
VIDEOS_NAMES = ("videos", "MicroLens-{v}_videos")


# The raw part each modality is read from.
MODALITY_PARTS: dict[str, str] = {"text": "titles", "image": "covers", "video": "videos", "audio": "videos"}
# Parts a local dataset may lack (for the modalities it does not declare).
OPTIONAL_PARTS: tuple[str, ...] = ("titles", "covers", "videos")


@dataclass(frozen=True)
class DatasetLayout:
    """Paths of one dataset's raw files; ``absent``: the parts it does not have (their paths
    are where they would be)."""

    name: str
    kind: str
    pairs: Path
    titles: Path
    covers: Path
    videos: Path
    absent: tuple[str, ...] = ()

    def cover_path(self, item_id: str) -> Path:
        return self.covers / f"{item_id}.jpg"

    def video_path(self, item_id: str) -> Path:
        return self.videos / f"{item_id}.mp4"

    def require(self, part: str, modality: str) -> None:
        """Raise ``DataError`` naming the folder when ``part``, which ``modality`` reads, is absent."""
        if part in self.absent:
            raise DataError(
                f"dataset '{self.name}': {getattr(self, part)} does not exist, so its {modality} cannot be "
                f"read; add it, or leave {modality} out of catalog.{self.name}.modalities in config.yaml"
            )

    def to_json(self) -> str:
        record: dict[str, object] = {k: str(v) for k, v in asdict(self).items() if k != "absent"}
        if self.absent:  # written only when some part is absent: other manifests stay as they were
            record["absent"] = list(self.absent)
        return json.dumps(record, indent=2) + "\n"


def _candidates(names: tuple[str, ...]) -> list[str]:
    out = [names[0]]
    for variant in MICROLENS_VARIANTS:
        out += [n.format(v=variant) for n in names[1:]]
    return out


def _first_existing(root: Path, names: tuple[str, ...], want_dir: bool) -> Path | None:
    for candidate in _candidates(names):
        path = root / candidate
        if (path.is_dir() if want_dir else path.is_file()):
            return path
    return None


# part -> (its names, whether it is a folder)
PARTS: dict[str, tuple[tuple[str, ...], bool]] = {
    "pairs": (PAIRS_NAMES, False),
    "titles": (TITLES_NAMES, False),
    "covers": (COVERS_NAMES, True),
    "videos": (VIDEOS_NAMES, True),
}


def locate_part(root: str | Path, part: str) -> Path | None:
    """Where ``part`` (a key of :data:`PARTS`) of the raw tree under ``root`` is, or None."""
    names, is_dir = PARTS[part]
    return _first_existing(Path(root), names, want_dir=is_dir)


def find_layout(root: str | Path, name: str, kind: str) -> DatasetLayout:
    """Locate the raw files under ``root``; raise ``FileNotFoundError`` listing every name
    that was looked for when a part is missing (for kind ``local``, only the interaction
    file is required; a missing title file, covers or videos folder is recorded as absent)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset '{name}': data directory {root} does not exist")
    found = {part: locate_part(root, part) for part in PARTS}
    optional = OPTIONAL_PARTS if kind == "local" else ()
    missing = [
        f"  {part}: none of {', '.join(_candidates(PARTS[part][0]))}"
        for part, path in found.items()
        if path is None and part not in optional
    ]
    if missing:
        raise FileNotFoundError(
            f"dataset '{name}': {root} is not in the MicroLens layout; missing:\n"
            + "\n".join(missing)
        )
    absent = tuple(part for part in PARTS if found[part] is None)
    paths = {part: path if path is not None else root / PARTS[part][0][0] for part, path in found.items()}
    return DatasetLayout(name=name, kind=kind, absent=absent, **paths)


def check_declared_parts(config: Mapping[str, Any]) -> None:
    """Before any job: every dataset of ``config["datasets"]`` read from ``data_dir:`` has the
    part each declared modality reads (:data:`MODALITY_PARTS`). Raises ``ConfigError`` naming
    each missing folder or file and the key that declares the modality."""
    problems = []
    for name in config["datasets"]:
        data_dir = config["catalog"][name].get("data_dir")
        if not data_dir:
            continue  # generated or downloaded: every part comes from a rule
        root = Path(data_dir)
        if not root.is_dir():
            problems.append(f"key 'catalog.{name}.data_dir': folder {root} does not exist")
            continue
        for modality in dataset_modalities(config, name):
            part = MODALITY_PARTS[modality]
            if locate_part(root, part) is None:
                names, is_dir = PARTS[part]
                problems.append(
                    f"dataset '{name}' declares {modality} (key 'catalog.{name}.modalities'), but "
                    f"{'folder' if is_dir else 'file'} {root / names[0]} does not exist (nor any of "
                    f"{', '.join(_candidates(names)[1:])}); add it, or leave {modality} out of "
                    f"catalog.{name}.modalities"
                )
    if problems:
        raise ConfigError("invalid config.yaml:\n  " + "\n  ".join(dict.fromkeys(problems)))


def write_manifest(layout: DatasetLayout, path: str | Path) -> None:
    """Record ``layout`` as the dataset manifest at ``path`` (atomically)."""
    write_text_atomic(path, layout.to_json())


def load_manifest(path: str | Path) -> DatasetLayout:
    """Read a dataset manifest written by :func:`write_manifest`."""
    record = json.loads(Path(path).read_text(encoding="utf-8"))
    return DatasetLayout(
        name=record["name"],
        kind=record["kind"],
        pairs=Path(record["pairs"]),
        titles=Path(record["titles"]),
        covers=Path(record["covers"]),
        videos=Path(record["videos"]),
        absent=tuple(record.get("absent", ())),
    )


# --- verification of a local copy ---------------------------------------------------------------
SHOWN_IDS = 5  # ids quoted in a log line; the JSON report lists all of them


def require_layout(root: str | Path, name: str, kind: str) -> DatasetLayout:
    """:func:`find_layout`, with a missing directory or part reported as ``DataError``."""
    try:
        return find_layout(root, name, kind)
    except FileNotFoundError as error:
        raise DataError(
            f"{error}\nPoint `data_dir:` of dataset '{name}' in config.yaml at a folder in this "
            "layout, or use kind `microlens` without `data_dir:` to download it."
        ) from error


def _file_stems(folder: Path, suffix: str) -> set[str]:
    """Stems of the non-empty regular files ``{stem}{suffix}`` directly in ``folder``."""
    stems: set[str] = set()
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.endswith(suffix) and entry.is_file() and entry.stat().st_size > 0:
                    stems.add(entry.name[: -len(suffix)])
    except OSError as error:
        raise DataError(f"cannot list {folder}: {error}") from error
    return stems


@dataclass(frozen=True)
class LayoutReport:
    """What a raw tree lacks, item by item (ids in numeric order, or text order when they are
    not integers); an absent part's items are not listed (the part is in ``absent``).
    ``missing_titles``: items without a row in the title file; ``empty_titles``: items whose
    row gives an empty title."""

    name: str
    kind: str
    n_items: int
    missing_titles: tuple[str, ...] = field(default=())
    missing_covers: tuple[str, ...] = field(default=())
    missing_videos: tuple[str, ...] = field(default=())
    absent: tuple[str, ...] = field(default=())  # parts the dataset does not have at all
    empty_titles: tuple[str, ...] = field(default=())

    @property
    def counts(self) -> dict[str, int]:
        return {
            "items": self.n_items,
            "missing_titles": len(self.missing_titles),
            "empty_titles": len(self.empty_titles),
            "missing_covers": len(self.missing_covers),
            "missing_videos": len(self.missing_videos),
        }

    @property
    def complete(self) -> bool:
        """Whether every item has a non-empty title, a cover and a video."""
        return not (self.missing_titles or self.empty_titles or self.missing_covers or self.missing_videos)

    def to_json(self) -> str:
        record = {
            "name": self.name,
            "kind": self.kind,
            "complete": self.complete,
            "counts": self.counts,
            "missing": {
                "titles": list(self.missing_titles),
                "covers": list(self.missing_covers),
                "videos": list(self.missing_videos),
            },
            "empty": {"titles": list(self.empty_titles)},
        }
        if self.absent:
            record["absent"] = list(self.absent)
        return json.dumps(record, indent=2) + "\n"

    def write(self, path: str | Path) -> None:
        """Write the report as JSON (atomically)."""
        write_text_atomic(path, self.to_json())


def verify_layout(layout: DatasetLayout) -> LayoutReport:
    """List every item of ``layout.pairs`` with no title row, an empty title, no cover or no video.

    A cover or video counts as present when ``{id}.jpg`` / ``{id}.mp4`` is a non-empty file.
    Missing entries are logged (count and the first few ids) but not fatal; a part the layout
    records as absent is skipped; an unreadable or vanished interaction/title file or media
    folder raises ``DataError``.
    """
    items = item_ids(layout.pairs)
    present = {part: part not in layout.absent for part in OPTIONAL_PARTS}
    titles = read_titles(layout.titles, items) if present["titles"] else None
    covers = _file_stems(layout.covers, ".jpg") if present["covers"] else None
    videos = _file_stems(layout.videos, ".mp4") if present["videos"] else None
    report = LayoutReport(
        name=layout.name,
        kind=layout.kind,
        n_items=len(items),
        missing_titles=_absent(items, None if titles is None else set(titles)),
        missing_covers=_absent(items, covers),
        missing_videos=_absent(items, videos),
        absent=layout.absent,
        empty_titles=_empty_titles(items, titles),
    )
    _log_missing(report, layout)
    return report


def _absent(items: Iterable[str], present: set[str] | None) -> tuple[str, ...]:
    """The items not in ``present``; none when the whole part is absent (``None``)."""
    if present is None:
        return ()
    return tuple(item for item in items if item not in present)


def _empty_titles(items: Iterable[str], titles: Mapping[str, str] | None) -> tuple[str, ...]:
    """The items whose row in ``titles`` (:func:`read_titles`: stripped) is empty; an item
    without a row is missing, not empty; none when the title file is absent (``None``)."""
    if titles is None:
        return ()
    return tuple(item for item in items if titles.get(item) == "")


def _log_missing(report: LayoutReport, layout: DatasetLayout) -> None:
    where = {"titles": layout.titles, "covers": layout.covers, "videos": layout.videos}
    missing = {
        "titles": report.missing_titles,
        "covers": report.missing_covers,
        "videos": report.missing_videos,
    }
    for kind, ids in missing.items():
        if ids:
            log.warning(
                "dataset '%s': %d of %d item(s) have no %s in %s (those items are masked "
                "later), e.g. %s",
                report.name, len(ids), report.n_items, kind[:-1], where[kind],
                ", ".join(ids[:SHOWN_IDS]),
            )
    if report.empty_titles:
        log.warning("dataset '%s': %d of %d item(s) have an empty title in %s (encoded as an empty "
                    "text), e.g. %s", report.name, len(report.empty_titles), report.n_items, layout.titles,
                    ", ".join(report.empty_titles[:SHOWN_IDS]))
    for part in report.absent:
        log.info("dataset '%s' has no %s (%s): the modalities that read it are not available",
                 report.name, part, getattr(layout, part))
    if report.complete and not report.absent:
        log.info(
            "dataset '%s': all %d items have a non-empty title, a cover and a video", report.name, report.n_items
        )
