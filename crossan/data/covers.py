"""Extracting the MicroLens covers zip: its ``.jpg`` members flat into one folder, safely.

A zip with an absolute, ``..`` or symbolic-link member is rejected as a whole; a corrupt zip is
deleted so a rerun fetches it again; a full disk ends in the download's one write error
(:func:`crossan.data.fetch.disk_write_error`), and nothing half-extracted is left under the
final name (the folder is staged).
"""

from __future__ import annotations

import logging
import shutil
import zipfile
from pathlib import Path, PurePosixPath

from crossan.atomic import atomic_directory
from crossan.data.fetch import CHUNK_BYTES, WRITE_ERRNOS, disk_write_error
from crossan.errors import DataError

log = logging.getLogger(__name__)


def _unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    name = info.filename.replace("\\", "/")
    path = PurePosixPath(name)
    if path.is_absolute() or (path.parts and ":" in path.parts[0]):
        return "absolute path"
    if ".." in path.parts:
        return "path traversal"
    if (info.external_attr >> 16) & 0o170000 == 0o120000:
        return "symbolic link"
    return None


def _cover_members(archive: zipfile.ZipFile, zip_path: Path) -> list[tuple[zipfile.ZipInfo, str]]:
    """The ``.jpg`` members and their flat file names; reject the whole zip on an unsafe name."""
    members: list[tuple[zipfile.ZipInfo, str]] = []
    seen: set[str] = set()
    for info in archive.infolist():
        reason = _unsafe_reason(info)
        if reason:
            raise DataError(f"{zip_path}: refusing to extract, member {info.filename!r} is a {reason}")
        parts = PurePosixPath(info.filename.replace("\\", "/")).parts
        if info.is_dir() or not parts or parts[0] == "__MACOSX" or parts[-1].startswith("._"):
            continue
        if not parts[-1].lower().endswith(".jpg"):
            continue
        name = parts[-1][: -len(".jpg")] + ".jpg"
        if name in seen:
            raise DataError(f"{zip_path}: two members are named {name} (in different folders)")
        seen.add(name)
        members.append((info, name))
    return members


def extract_covers(zip_path: Path, dest: Path) -> int:
    """Extract the ``.jpg`` members of ``zip_path`` flat into ``dest`` (any top folder is
    dropped) via ``dest.partial``; return how many. A zip with an absolute, ``..`` or
    symlink member is rejected as a whole; a corrupt zip is deleted so a rerun re-fetches it."""
    with atomic_directory(dest) as staging:
        try:
            with zipfile.ZipFile(zip_path) as archive:
                members = _cover_members(archive, zip_path)
                total = sum(info.file_size for info, _ in members)  # the staging folder goes on error
                for info, name in members:
                    try:
                        with archive.open(info) as source, (staging / name).open("wb") as sink:
                            shutil.copyfileobj(source, sink, CHUNK_BYTES)
                    except OSError as error:
                        if error.errno not in WRITE_ERRNOS:
                            raise
                        raise disk_write_error(
                            dest.parent, error, total, f"it extracts the covers again from {zip_path.name}",
                            what="Extracting the covers",
                        ) from error
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as error:
            zip_path.unlink(missing_ok=True)
            raise DataError(
                f"{zip_path}: corrupt zip ({error}); it was deleted, rerun to download it again"
            ) from error
        if not members:
            raise DataError(
                f"{zip_path}: contains no .jpg covers; check the covers file name for this variant"
            )
    log.info("extracted %d covers into %s", len(members), dest)
    return len(members)
