"""Does a downloaded file look whole? Used only when the server never stated its size.

Each check reads the file's own structure, never a decoder, so its answer does not depend on
the machine: a zip's central directory and member CRCs, an MP4's chain of top-level boxes
(ISO/IEC 14496-12: every box starts with its 32-bit size, or 1 and a 64-bit size, or 0 for
"to the end of the file"). A cut transfer leaves a zip without its central directory and an
MP4 whose last box runs past the end of the file.

A check returns ``None`` for a whole-looking file, else the reason in a few words.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

ContentCheck = Callable[[Path], "str | None"]

_BOX_HEADER = struct.Struct(">I4s")
_LARGE_SIZE = struct.Struct(">Q")


def check_zip(path: Path) -> str | None:
    """A zip whose central directory reads and whose members all match their CRCs."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as error:
        return f"not a readable zip ({error})"
    return None if bad is None else f"zip member {bad!r} fails its CRC"


def check_mp4(path: Path) -> str | None:
    """An MP4 that starts with an ``ftyp`` box, whose top-level boxes end exactly at the end
    of the file, and that has a ``moov`` box (without it nothing can be decoded)."""
    size = path.stat().st_size
    kinds: list[bytes] = []
    with path.open("rb") as source:
        position = 0
        while position < size:
            header = source.read(_BOX_HEADER.size)
            if len(header) < _BOX_HEADER.size:
                return f"a box header is cut at byte {position}"
            length, kind = _BOX_HEADER.unpack(header)
            if length == 1:
                large = source.read(_LARGE_SIZE.size)
                if len(large) < _LARGE_SIZE.size:
                    return f"a box header is cut at byte {position}"
                (length,) = _LARGE_SIZE.unpack(large)
            elif length == 0:
                length = size - position
            if length < _BOX_HEADER.size:
                return f"box {kind!r} at byte {position} has an impossible size {length}"
            if position + length > size:
                return f"box {kind!r} at byte {position} ends at {position + length}, past the end ({size})"
            kinds.append(kind)
            position += length
            source.seek(position)
    if not kinds or kinds[0] != b"ftyp":
        return "does not start with an ftyp box"
    if b"moov" not in kinds:
        return "has no moov box"
    return None


def content_check_for(local_path: str) -> ContentCheck | None:
    """The check for a file by its local name; ``None`` where no structural check exists
    (a CSV cut at a line end is still a valid CSV)."""
    suffix = Path(local_path).suffix.lower()
    return {".zip": check_zip, ".mp4": check_mp4}.get(suffix)
