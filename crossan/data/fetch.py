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

Resuming sends ``If-Range`` with the first response's strong ``ETag`` (else its
``Last-Modified``), kept beside the partial file in ``name.partial.validator`` so it also
holds across runs. A server whose file changed answers ``200`` with the whole new file, and
a ``206`` whose ``ETag`` differs from the kept one is thrown away: a file is never stitched
from two versions.

An attempt also ends (and is retried, resuming) when the transfer is slower than
``min_bytes_per_s`` over ``stall_window_s``, or runs longer than ``deadline_s``; a socket
silent for ``timeout_s`` ends it too.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import random
import re
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


def fetch_file(
    url: str,
    dest: Path,
    policy: RetryPolicy,
    content_check: ContentCheck | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Fetched:
    """Download ``url`` to ``dest`` through ``dest.partial`` (see the module doc).

    ``content_check`` judges the file when the server never states its size.
    Raises :class:`FetchError` on a 4xx or when retries run out.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = partial_path(dest)
    rng = random.Random(url)
    last_error = ""
    retry = 0
    probed = False
    while True:
        try:
            result = _attempt(url, part, policy)
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
                f"{part.name} is kept where present, so a rerun resumes it. "
                "Check the network and the `download:` settings and `url:` in config.yaml.",
            )
        delay = policy.delay(retry, rng)
        log.info("%s: %s; retry %d/%d in %.2fs", url, last_error, retry, policy.retries, delay)
        sleep(delay)


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


def _attempt(url: str, part: Path, policy: RetryPolicy) -> _Attempt:
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
            return _on_http_error(error, url, part, have)
    except (OSError, http.client.HTTPException) as error:  # refused, reset, timeout, bad status
        raise _Transient(f"{type(error).__name__}: {error}") from error
    with response:
        offset, total = _body_plan(response, url, part, have, kept)
        size = _stream(response, part, offset, policy, started)
    if total is not None and size != total:
        if size > total:
            discard_partial(part)
        # http.client ends a short body silently on EOF; this is where a cut transfer shows.
        raise _Transient(f"incomplete: {size} of {total} bytes")
    return _Attempt(size=size, size_stated=total is not None)


def _on_http_error(error: urllib.error.HTTPError, url: str, part: Path, have: int) -> _Attempt:
    status = error.code
    if status == 416 and have:
        match = _UNSATISFIED_RANGE.match(error.headers.get("Content-Range", ""))
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
        if "etag" in kept and "etag" in now and kept["etag"] != now["etag"]:
            discard_partial(part)
            raise _Transient(f"the file changed on the server (ETag {kept['etag']} -> {now['etag']}), restarting")
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
