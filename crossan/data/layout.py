"""Where a dataset's raw files live: the MicroLens layout and the manifest that records it.

Every dataset kind (demo, microlens, local) ends in one JSON manifest,
``resources/{dataset}/dataset.json``, which later stages read to find the raw files:

    {"name": ..., "kind": ..., "pairs": ..., "titles": ..., "covers": ..., "videos": ...}

A raw tree has an interaction file (``user,item,timestamp``), a title file (no header,
``id,title``), a folder of covers ``{id}.jpg`` and a folder of videos ``{id}.mp4``. Both our
canonical names and MicroLens' own file names are recognised.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from crossan.atomic import write_text_atomic

# (canonical name, then the MicroLens release's names with {v} = 100k | 50k)
PAIRS_NAMES = ("pairs.csv", "MicroLens-{v}_pairs.csv")
TITLES_NAMES = ("titles.csv", "MicroLens-{v}_title_en.csv")
COVERS_NAMES = ("covers", "MicroLens-{v}_covers")
VIDEOS_NAMES = ("videos", "MicroLens-{v}_videos")
MICROLENS_VARIANTS = ("100k", "50k")


@dataclass(frozen=True)
class DatasetLayout:
    """Paths of one dataset's raw files."""

    name: str
    kind: str
    pairs: Path
    titles: Path
    covers: Path
    videos: Path

    def cover_path(self, item_id: str) -> Path:
        return self.covers / f"{item_id}.jpg"

    def video_path(self, item_id: str) -> Path:
        return self.videos / f"{item_id}.mp4"

    def to_json(self) -> str:
        record = {k: str(v) for k, v in asdict(self).items()}
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


def find_layout(root: str | Path, name: str, kind: str) -> DatasetLayout:
    """Locate the raw files under ``root``; raise ``FileNotFoundError`` listing every name
    that was looked for when a part is missing."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset '{name}': data directory {root} does not exist")
    found = {
        "pairs": _first_existing(root, PAIRS_NAMES, want_dir=False),
        "titles": _first_existing(root, TITLES_NAMES, want_dir=False),
        "covers": _first_existing(root, COVERS_NAMES, want_dir=True),
        "videos": _first_existing(root, VIDEOS_NAMES, want_dir=True),
    }
    tables = {"pairs": PAIRS_NAMES, "titles": TITLES_NAMES, "covers": COVERS_NAMES, "videos": VIDEOS_NAMES}
    missing = [
        f"  {part}: none of {', '.join(_candidates(tables[part]))}"
        for part, path in found.items()
        if path is None
    ]
    if missing:
        raise FileNotFoundError(
            f"dataset '{name}': {root} is not in the MicroLens layout; missing:\n"
            + "\n".join(missing)
        )
    return DatasetLayout(name=name, kind=kind, **found)  # type: ignore[arg-type]


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
    )
