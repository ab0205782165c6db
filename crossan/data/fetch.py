"""One file over HTTP: streamed to ``name.partial``, resumed, retried, checked, then renamed.

How a file is known to be whole (``Fetched.check``):

* ``size``: the server stated the size (``Content-Length`` or the total of ``Content-Range``)
  and the file on disk has exactly that size.
* ``content``: the server stated no size (a body delimited by closing the connection). The
  client then asks for the bytes after the end (``Range: bytes=<size>-``): a ``416`` naming
  the same total confirms the size, a ``206`` is the rest of a cut body. A server that cannot
  answer that leaves the structural check of :mod:`crossan.data.content_checks` (zip, MP4).
* ``unverified``: no size from the server and no structural check for the kind of file
  (a CSV). The caller records and reports it; it is never taken for checked.

What is stored is the file itself, never something else the server sent with status 200:

* The request asks for ``Accept-Encoding: identity``; a response with any other
  ``Content-Encoding`` (or a ``Transfer-Encoding`` other than ``chunked``) is refused, never
  stored: its bytes are not the file's bytes.
* A ``Content-Type`` of a web page (``text/html``) is refused for a CSV, zip or MP4, and so is
  a body whose leading bytes contradict the kind of file (:func:`body_problem`, judged by the
  local name's suffix): an HTML page or gzip data for any of them; a zip must start with
  ``PK\\x03\\x04``, an MP4 with an ISO-BMFF box (``ftyp`` or another top-level box type at
  byte 4), a CSV must be UTF-8 text without NUL bytes. Such a refusal is not retried.

Resuming sends ``If-Range`` with the first response's strong ``ETag`` (else its
``Last-Modified``), kept beside the partial file in ``name.partial.validator``. Every ``206``
is compared with what was kept (the ``ETag`` and the ``Last-Modified``, each when kept): a
difference throws the partial file away and the file starts over, so a file is never stitched
from two versions even when the server ignores ``If-Range``. A partial file left by an earlier
run is resumed only when such a validator was kept with it; without one (the server sent
neither header) it is deleted and the file starts over. Within one run a cut transfer is
resumed even without a validator.

A write that fails because the disk is full, the quota is exceeded or the file system is
read-only ends the download with one :class:`DiskWriteError` naming the folder, the bytes the
file still needs and whether a rerun resumes it; the partial file is kept.

An attempt also ends (and is retried, resuming) when the transfer is slower than
``min_bytes_per_s`` over ``stall_window_s``, or runs longer than ``deadline_s``; a socket
silent for ``timeout_s`` ends it too.
"""

from __future__ import annotations

import codecs
import errno
import http.client
import json
import logging
import os
import random
import re
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from crossan.atomic import partial_path, write_text_atomic
from crossan.data.content_checks import ContentCheck
from crossan.errors import DownloadError

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 16
MAX_BACKOFF_S = 60.0
JITTER = 0.1  # up to +10% on each backoff, so parallel workers do not retry in lockstep
RETRYABLE_STATUS = frozenset({408, 425, 429})
USER_AGENT = "crossan-download/0.1 (python-urllib)"
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")

# Write errors that end the download with a DiskWriteError (errno -> what happened).
WRITE_ERRNOS: dict[int, str] = {
    errno.ENOSPC: "the disk is full",
    errno.EROFS: "the file system is read-only",
}
if hasattr(errno, "EDQUOT"):
    WRITE_ERRNOS[errno.EDQUOT] = "the disk quota is exceeded"

# What a file must look like, by the suffix of its local name (see body_problem).
KINDS = {".csv": "csv", ".zip": "zip", ".mp4": "mp4"}
_KIND_NAMES = {"csv": "a CSV file", "zip": "a zip archive", "mp4": "an MP4 video"}
HEAD_BYTES = 1024
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_HTML_START = re.compile(
    rb"\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*(?:<!doctype\s+html|<html[\s>]|<head[\s>]|<body[\s>])",
    re.IGNORECASE | re.DOTALL,
)
_MP4_TOP_BOXES = frozenset(
    {b"ftyp", b"styp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pdin", b"uuid", b"moof", b"sidx", b"meta"}
)

CHECKED_BY_SIZE = "size"
CHECKED_BY_CONTENT = "content"
UNVERIFIED = "unverified"


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try and how long to wait.

    ``retries`` after the first attempt, exponential backoff from ``backoff_s`` (capped at
    ``MAX_BACKOFF_S``); per attempt: ``timeout_s`` per socket operation, at least
    ``min_bytes_per_s`` over every ``stall_window_s``, at most ``deadline_s`` in all.
    """

    retries: int = 5
    backoff_s: float = 1.0
    timeout_s: float = 60.0
    min_bytes_per_s: float = 1024.0
    stall_window_s: float = 60.0
    deadline_s: float = 7200.0

    def delay(self, retry: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        base = min(self.backoff_s * 2 ** (retry - 1), MAX_BACKOFF_S)
        return base * (1.0 + JITTER * rng.random())


@dataclass(frozen=True)
class Fetched:
    """A file now under its final name: its size on disk and how it was checked."""

    size: int
    check: str


class FetchError(DownloadError):
    """A file that could not be downloaded; ``reason`` is the short cause."""

    def __init__(self, url: str, reason: str, hint: str) -> None:
        super().__init__(f"{url}: {reason}. {hint}")
        self.url = url
        self.reason = reason


class DiskWriteError(DownloadError):
    """A write into the download folder failed (disk full, quota, read-only): not retried."""


class _Transient(Exception):
    """A failed attempt worth retrying."""


@dataclass(frozen=True)
class _Attempt:
    """What one request left in the partial file: its size, and whether the server stated
    the full size (and the file matches it)."""

    size: int
    size_stated: bool


def _permanent_hint() -> str:
    return (
        "Not retried. Check `url:` and `variant:` of this dataset in config.yaml "
        "(the remote file names follow from the variant)."
    )


def validator_path(part: Path) -> Path:
    """Where the partial file's ``If-Range`` validator is kept."""
    return part.with_name(part.name + ".validator")


def discard_partial(part: Path) -> None:
    """Remove a partial file and its validator."""
    part.unlink(missing_ok=True)
    validator_path(part).unlink(missing_ok=True)


def kind_of(dest: Path) -> str | None:
    """The kind of file ``dest`` must be (``csv``, ``zip``, ``mp4``) by its suffix, or None."""
    return KINDS.get(dest.suffix.lower())


def _quote_head(head: bytes) -> str:
    return repr(head[:60]) + ("..." if len(head) > 60 else "")


def _looks_like_html(head: bytes) -> bool:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16: keep the ASCII letters
        head = head.decode("utf-16", errors="ignore").encode("ascii", errors="ignore")
    return _HTML_START.match(head.removeprefix(b"\xef\xbb\xbf")) is not None


def body_problem(path: Path, kind: str | None) -> str | None:
    """Why the file at ``path`` cannot be a file of ``kind`` (see :func:`kind_of`), or None.

    Judged by its leading bytes (an HTML page or gzip data is never the file; a zip starts
    with ``PK\\x03\\x04``; an MP4 with an ISO-BMFF box) and, for a CSV, by decoding it whole
    as UTF-8 text without NUL bytes."""
    if kind is None:
        return None
    with path.open("rb") as source:
        head = source.read(HEAD_BYTES)
    what = _KIND_NAMES[kind]
    if _looks_like_html(head):
        return f"it is an HTML page, not {what} (it starts {_quote_head(head)})"
    if head.startswith(b"\x1f\x8b"):
        return f"it is gzip-compressed data, not {what} (it starts {_quote_head(head)})"
    if kind == "zip" and not head.startswith(b"PK\x03\x04"):
        return f"it is not {what}: it does not start with PK\\x03\\x04 (it starts {_quote_head(head)})"
    if kind == "mp4":
        if len(head) < 8:
            return f"it is not {what}: {len(head)} bytes, too short for an ISO-BMFF box"
        size, box = int.from_bytes(head[:4], "big"), head[4:8]
        if box not in _MP4_TOP_BOXES or size in range(2, 8):
            return (f"it is not {what}: no ISO-BMFF box at byte 0 (expected a box type such as "
                    f"b'ftyp' at byte 4; it starts {_quote_head(head)})")
    if kind == "csv":
        return _text_problem(path)
    return None


def _text_problem(path: Path) -> str | None:
    """Why ``path`` is not UTF-8 text (a BOM allowed, no NUL byte), or None."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    fed = 0
    with path.open("rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            nul = block.find(b"\0")
            if nul >= 0:
                return f"it is binary data, not CSV text: a NUL byte at byte {fed + nul}"
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(block)
            except UnicodeDecodeError as error:
                at = max(fed - pending + error.start, 0)
                return (f"it is not UTF-8 text: {error.object[error.start:error.end]!r} near byte {at} "
                        f"({error.reason})")
            fed += len(block)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return f"it is not UTF-8 text: it ends inside a multi-byte character (byte {fed})"
    return None


def _refused_body_hint(dest: Path) -> str:
    return (
        f"Not retried, and nothing was stored as {dest.name}. Open the URL in a browser to see "
        "what the server sends instead (a login, quota or error page, a moved file), check `url:` "
        "and `variant:` of this dataset in config.yaml, then rerun. A correct copy fetched by "
        f"hand and put at {dest} is checked and kept by the next run."
    )


def _bytes(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit} ({n} bytes)"
    return f"{n} bytes"


def disk_write_error(
    folder: Path, error: OSError, need: int | None, resume: str,
    unknown: str = "the server did not state its size", what: str = "This file",
) -> DiskWriteError:
    """The one error a failed write (``error.errno`` in :data:`WRITE_ERRNOS`) ends in: the
    folder, what happened, the free space ``what`` still needs (``need`` bytes; None: unknown,
    because ``unknown``) and what a rerun does (``resume``)."""
    cause = WRITE_ERRNOS.get(error.errno or 0, "the write failed")
    try:
        free = f"{_bytes(shutil.disk_usage(folder).free)} free now"
    except OSError:
        free = "free space unknown"
    needed = (f"needs {_bytes(need)} more" if need is not None
              else f"needs an unknown amount more ({unknown})")
    if error.errno == errno.EROFS:
        fix = f"make {folder} writable or download into another folder (--out)"
    else:
        fix = f"free space in {folder} (or download into a folder on a disk with room, --out)"
    return DiskWriteError(
        f"{folder}: cannot write, {cause} ({error.strerror or error}). {what} {needed} "
        f"({free}), and the files after it need more. Every complete file is kept: {fix}, "
        f"then rerun the same command; {resume}."
    )


def _write_error(url: str, part: Path, total: int | None, error: OSError) -> DiskWriteError:
    have = part.stat().st_size if part.exists() else 0
    kept = _load_validator(part, url)
    if not have:
        resume = f"it downloads {part.name.removesuffix('.partial')} from the start"
    elif "etag" in kept or "last_modified" in kept:
        resume = f"it resumes {part.name} from the {_bytes(have)} kept"
    else:
        resume = (f"it starts {part.name} over (the server gave no ETag or Last-Modified to resume "
                  "it by)")
    return disk_write_error(part.parent, error, None if total is None else max(total - have, 0), resume)


def _drop_unprovable_partial(url: str, part: Path) -> None:
    """A partial file from an earlier run is resumed only with a validator kept beside it."""
    if not part.exists():
        return
    kept = _load_validator(part, url)
    if "etag" in kept or "last_modified" in kept:
        return
    log.warning(
        "%s: %d bytes kept by an earlier run, but no ETag or Last-Modified from the server was "
        "kept with them to prove the server's file unchanged since; starting it over",
        part, part.stat().st_size,
    )
    discard_partial(part)


def fetch_file(
    url: str,
    dest: Path,
    policy: RetryPolicy,
    content_check: ContentCheck | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Fetched:
    """Download ``url`` to ``dest`` through ``dest.partial`` (see the module doc).

    ``content_check`` judges the file when the server never states its size.
    Raises :class:`FetchError` on a 4xx, on a body that is not the file (a compressed body,
    an HTML page, leading bytes of another kind of file) or when retries run out, and
    :class:`DiskWriteError` when the folder cannot be written.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = partial_path(dest)
    kind = kind_of(dest)
    _drop_unprovable_partial(url, part)
    rng = random.Random(url)
    last_error = ""
    retry = 0
    probed = False
    while True:
        try:
            result = _attempt(url, part, policy, dest, kind)
            if result.size_stated or probed:
                _check_body(url, part, dest, kind)
            if result.size_stated:
                return _finish(url, part, dest, result.size, CHECKED_BY_SIZE)
            if not probed:
                probed = True  # next: ask the server for the bytes after what we have
                log.info("%s: no size stated (%d bytes so far), asking for the rest", url, result.size)
                continue
            return _finish_unstated(url, part, dest, result.size, content_check)
        except _Transient as error:
            last_error = str(error)
        retry += 1
        if retry > policy.retries:
            raise FetchError(
                url,
                f"failed after {policy.retries + 1} attempts, last: {last_error}",
                f"{_rerun_note(url, part)} "
                "Check the network and the `download:` settings and `url:` in config.yaml.",
            )
        delay = policy.delay(retry, rng)
        log.info("%s: %s; retry %d/%d in %.2fs", url, last_error, retry, policy.retries, delay)
        sleep(delay)


def _rerun_note(url: str, part: Path) -> str:
    if not part.exists():
        return "A rerun tries this file again."
    kept = _load_validator(part, url)
    if "etag" in kept or "last_modified" in kept:
        return f"{part.name} is kept, so a rerun resumes it."
    return (f"{part.name} is kept, but a rerun starts it over: the server gave no ETag or "
            "Last-Modified to prove its file unchanged.")


def _check_body(url: str, part: Path, dest: Path, kind: str | None) -> None:
    problem = body_problem(part, kind)
    if problem is not None:
        discard_partial(part)
        raise FetchError(url, f"the body is not {dest.name}: {problem}", _refused_body_hint(dest))


def _finish_unstated(
    url: str, part: Path, dest: Path, size: int, content_check: ContentCheck | None
) -> Fetched:
    if content_check is None:
        log.warning("%s: the server stated no size and %s has no structural check: unverified", url, dest.name)
        return _finish(url, part, dest, size, UNVERIFIED)
    problem = content_check(part)
    if problem is not None:
        discard_partial(part)
        raise _Transient(f"the server stated no size and the {size} bytes received are not whole: {problem}")
    return _finish(url, part, dest, size, CHECKED_BY_CONTENT)


def _finish(url: str, part: Path, dest: Path, size: int, check: str) -> Fetched:
    """Rename the partial file and check the size of what now lies under the final name."""
    try:
        os.replace(part, dest)
    except FileNotFoundError as error:
        raise FetchError(
            url,
            f"{part} vanished before it could be renamed",
            "Another process is writing into the same folder; run one download at a time.",
        ) from error
    validator_path(part).unlink(missing_ok=True)
    on_disk = dest.stat().st_size
    if on_disk != size:
        dest.unlink(missing_ok=True)
        raise _Transient(f"{dest} holds {on_disk} bytes after the rename, expected {size}")
    return Fetched(size=size, check=check)


# --- one request ----------------------------------------------------------------------------------
def _load_validator(part: Path, url: str) -> dict[str, str]:
    try:
        kept = json.loads(validator_path(part).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return kept if isinstance(kept, dict) and kept.get("url") == url else {}


def _validator_of(headers: http.client.HTTPMessage, url: str) -> dict[str, str]:
    """The response's ``If-Range`` candidates: a strong ETag (a weak one may not be used
    with If-Range) and Last-Modified."""
    found = {"url": url}
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        found["etag"] = etag
    modified = headers.get("Last-Modified")
    if modified:
        found["last_modified"] = modified
    return found


def _attempt(url: str, part: Path, policy: RetryPolicy, dest: Path, kind: str | None) -> _Attempt:
    """One request: append to (206) or restart (200) ``part``."""
    started = time.monotonic()
    have = part.stat().st_size if part.exists() else 0
    kept = _load_validator(part, url) if have else {}
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
        if_range = kept.get("etag") or kept.get("last_modified")
        if if_range:
            headers["If-Range"] = if_range
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=policy.timeout_s)
    except urllib.error.HTTPError as error:
        with error:
            return _on_http_error(error, url, part, have, kept)
    except (OSError, http.client.HTTPException) as error:  # refused, reset, timeout, bad status
        raise _Transient(f"{type(error).__name__}: {error}") from error
    total: int | None = None
    try:
        with response:
            _refuse_foreign_body(response, url, dest, kind)
            offset, total = _body_plan(response, url, part, have, kept)
            size = _stream(response, part, offset, policy, started)
    except OSError as error:
        if error.errno not in WRITE_ERRNOS:
            raise
        raise _write_error(url, part, total, error) from error
    if total is not None and size != total:
        if size > total:
            discard_partial(part)
        # http.client ends a short body silently on EOF; this is where a cut transfer shows.
        raise _Transient(f"incomplete: {size} of {total} bytes")
    return _Attempt(size=size, size_stated=total is not None)


def _refuse_foreign_body(
    response: http.client.HTTPResponse, url: str, dest: Path, kind: str | None
) -> None:
    """Refuse, before anything is written, a body that is not the file's bytes: a content or
    transfer coding other than identity (or chunked), or a web page for a CSV, zip or MP4."""
    coding = response.headers.get("Content-Encoding", "")
    codings = [c.strip().lower() for c in coding.split(",") if c.strip()]
    transfer = response.headers.get("Transfer-Encoding", "")
    transfers = [c.strip().lower() for c in transfer.split(",") if c.strip()]
    if any(c != "identity" for c in codings) or any(c not in ("identity", "chunked") for c in transfers):
        header = f"Content-Encoding: {coding}" if codings else f"Transfer-Encoding: {transfer}"
        raise FetchError(
            url,
            f"the server sent {dest.name} encoded ({header}) although the request asked for "
            "the bytes as they are (Accept-Encoding: identity); an encoded body is not the file",
            f"Not retried, and nothing was stored as {dest.name}. A proxy or server that "
            "compresses is in the way: download through another network or proxy, or fetch "
            f"the file by hand (e.g. curl --compressed -o {dest} URL): a correct copy put at "
            f"{dest} is checked and kept by the next run.",
        )
    media_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if kind is not None and media_type in _HTML_TYPES:
        raise FetchError(
            url,
            f"the server answered with a web page (Content-Type: {media_type}), not "
            f"{_KIND_NAMES[kind]}",
            _refused_body_hint(dest),
        )


def _changed(kept: dict[str, str], now: dict[str, str], only_stated: bool = False) -> str | None:
    """How the response's validators differ from those kept with the partial file (each
    kept one must be repeated unchanged; ``only_stated``: ignore those the response lacks)."""
    for key, label in (("etag", "ETag"), ("last_modified", "Last-Modified")):
        if key in kept and now.get(key) != kept[key] and not (only_stated and key not in now):
            return f"{label} {kept[key]} -> {now.get(key, 'none')}"
    return None


def _on_http_error(
    error: urllib.error.HTTPError, url: str, part: Path, have: int, kept: dict[str, str]
) -> _Attempt:
    status = error.code
    if status == 416 and have:
        match = _UNSATISFIED_RANGE.match(error.headers.get("Content-Range", ""))
        changed = _changed(kept, _validator_of(error.headers, url), only_stated=True)
        if changed:
            discard_partial(part)
            raise _Transient(f"HTTP 416 and the file changed on the server ({changed}), restarting")
        if match and int(match.group(1)) == have:
            return _Attempt(size=have, size_stated=True)  # the partial file was already complete
        discard_partial(part)
        raise _Transient(f"HTTP 416 for bytes={have}- (partial file larger than the remote), restarting")
    if status >= 500 or status in RETRYABLE_STATUS:
        raise _Transient(f"HTTP {status} {error.reason}")
    raise FetchError(url, f"HTTP {status} {error.reason}", _permanent_hint())


def _body_plan(
    response: http.client.HTTPResponse, url: str, part: Path, have: int, kept: dict[str, str]
) -> tuple[int, int | None]:
    """Where the body starts in the file and the full size the server states (if any).
    A fresh start records the response's validator for later resumes."""
    now = _validator_of(response.headers, url)
    if response.status == 206:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if not match or int(match.group(1)) != have:
            discard_partial(part)
            raise _Transient(
                f"206 with Content-Range {response.headers.get('Content-Range')!r} "
                f"for bytes={have}-, restarting"
            )
        changed = _changed(kept, now)
        if changed:
            discard_partial(part)
            raise _Transient(f"the file changed on the server ({changed}), restarting")
        start, end, total = match.groups()
        length = response.headers.get("Content-Length")
        if length is not None and int(length) != int(end) - int(start) + 1:
            raise _Transient(f"Content-Length {length} disagrees with Content-Range {start}-{end}")
        return have, None if total == "*" else int(total)
    if response.status != 200:
        raise _Transient(f"unexpected HTTP {response.status}")
    if have:
        sent_if_range = "etag" in kept or "last_modified" in kept
        why = "the file changed on the server (If-Range)" if sent_if_range else "the server ignored Range"
        log.info("%s: %s, restarting from byte 0", url, why)
    validator_path(part).unlink(missing_ok=True)
    if len(now) > 1:
        write_text_atomic(validator_path(part), json.dumps(now))
    length = response.headers.get("Content-Length")
    return 0, None if length is None else int(length)


def _stream(
    response: http.client.HTTPResponse, part: Path, offset: int, policy: RetryPolicy, started: float
) -> int:
    """Append the body to ``part`` from ``offset``; return the file's size on disk.

    ``read1`` returns whatever has arrived, so a trickling server is measured as it trickles
    instead of blocking a 64 KiB read for hours."""
    window_start, window_bytes = time.monotonic(), 0
    with part.open("ab" if offset else "wb") as sink:
        while True:
            try:
                chunk = response.read1(CHUNK_BYTES)
            except (OSError, http.client.HTTPException) as error:
                raise _Transient(f"transfer broken after {sink.tell()} bytes: {error}") from error
            if not chunk:
                break
            sink.write(chunk)
            now = time.monotonic()
            if now - started > policy.deadline_s:
                raise _Transient(
                    f"still transferring after {policy.deadline_s:g} s (download.deadline_s) "
                    f"with {sink.tell()} bytes, resuming"
                )
            window_bytes += len(chunk)
            if now - window_start >= policy.stall_window_s:
                rate = window_bytes / (now - window_start)
                if rate < policy.min_bytes_per_s:
                    raise _Transient(
                        f"stalled at {rate:.0f} B/s over {now - window_start:.1f} s, below "
                        f"download.min_bytes_per_s = {policy.min_bytes_per_s:g}"
                    )
                window_start, window_bytes = now, 0
    return part.stat().st_size
