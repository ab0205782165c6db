"""Cheap fingerprints of a user's raw dataset, so the workflow sees when its files change.

A dataset read from ``data_dir:`` (kind ``local``, or ``microlens`` with a copy of its own)
is not produced by any rule, so Snakemake cannot know when a file in it changes. Each time
the workflow builds its job graph it calls :func:`write_raw_state` for the parts the graph
needs, and the state files it writes are the inputs of exactly the rules that read that part:

=========  ============================  ==================================================
part       what is fingerprinted          rules that take ``raw-state/{part}.json``
=========  ============================  ==================================================
layout     the name each part resolves   ``dataset_manifest`` (where the files are)
           to (``pairs.csv`` or
           ``MicroLens-100k_pairs.csv``...)
pairs      the interaction file          ``sequences``
titles     the title file                ``item_titles``
covers     every file of the covers      ``sample_media`` (image)
           folder
videos     every file of the videos      ``sample_media`` (video, audio)
           folder
=========  ============================  ==================================================

A fingerprint is the name, size and modification time (ns) of each regular file, hashed in
name order; the contents are not read. A state file is rewritten only when its text changes,
so its modification time moves exactly when the part changed, and Snakemake reruns what reads
that part, and what depends on that, and nothing else. Writing a file back with the same
size and an older modification time (``cp -p``) is a change too: every time stamp counts.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from crossan.data.layout import PARTS, locate_part

def _entries(path: Path) -> list[tuple[str, int, int]]:
    """``(name, size, mtime_ns)`` of ``path`` itself (a file) or of each regular file directly
    in it (a folder), in name order; a file that vanishes while listed is left out."""
    if not path.is_dir():
        stat = path.stat()
        return [(path.name, stat.st_size, stat.st_mtime_ns)]
    entries = []
    with os.scandir(path) as listing:
        for entry in listing:
            try:
                if entry.is_file():
                    stat = entry.stat()
                    entries.append((entry.name, stat.st_size, stat.st_mtime_ns))
            except FileNotFoundError:
                continue
    return sorted(entries)


def part_state(root: str | Path, part: str) -> dict[str, Any]:
    """The fingerprint of ``part`` (``"layout"`` or one of :data:`crossan.data.layout.PARTS`) of
    the raw tree at ``root``.

    ``layout``: the file or folder name each part resolves to (None when absent). A data
    part: its name, file count, total bytes and the SHA-256 of its sorted
    ``name, size, mtime_ns`` lines; ``{"path": None}`` when the part is absent (the
    ``dataset_manifest`` job then says what is missing).
    """
    if part == "layout":
        found = {name: locate_part(root, name) for name in PARTS}
        return {"part": part, "parts": {name: path and path.name for name, path in found.items()}}
    location = locate_part(root, part)
    if location is None:
        return {"part": part, "path": None}
    entries = _entries(location)
    digest = hashlib.sha256()
    for name, size, mtime_ns in entries:
        digest.update(f"{name}\t{size}\t{mtime_ns}\n".encode())
    return {
        "part": part,
        "path": location.name,
        "files": len(entries),
        "bytes": sum(size for _, size, _ in entries),
        "sha256": digest.hexdigest(),
    }


def write_raw_state(root: str | Path, part: str, state_dir: str | Path) -> Path:
    """Write ``state_dir/{part}.json`` with :func:`part_state` unless it already holds exactly
    that, and return its path. Concurrent writers (cluster jobs) each rename a file of their
    own into place."""
    path = Path(state_dir) / f"{part}.json"
    text = json.dumps(part_state(root, part), indent=1) + "\n"
    try:
        if path.read_text(encoding="utf-8") == text:
            return path
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, prefix=f".{part}.",
                                     suffix=".tmp", delete=False) as handle:
        handle.write(text)
    os.replace(handle.name, path)
    return path
