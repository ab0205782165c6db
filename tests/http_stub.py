"""A loopback HTTP server for download tests: in-memory files, Range support, injected faults.

``StubServer(files)`` serves ``{url path: bytes}`` on 127.0.0.1 (a free port) from a thread and
records every request. Per path, a :class:`Fault` can make it answer with an error status on
the first k requests (or always), cut the body after N bytes on the first k requests (the full
Content-Length is announced, then the socket is closed), ignore ``Range``, stall before the
body, send no Content-Length (the body ends when the socket closes), or trickle the body a few
bytes at a time, send no ``ETag`` or no ``Last-Modified``, compress the body (``Content-Encoding``)
or label it with another ``Content-Type``. Every file has a strong ``ETag`` (a hash of its bytes)
and a ``Last-Modified`` (one second later for each :meth:`StubServer.set_file` of its path);
``If-Range`` is honoured (against either) unless the fault says otherwise, so replacing a file
between two requests is a file that changed on the server.
``max_in_flight`` is the largest number of requests handled at the same time.

:func:`microlens_tree` builds a small MicroLens-shaped release to serve.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import random
import re
import threading
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")
_ENCODERS = {"gzip": lambda data: gzip.compress(data, mtime=0), "deflate": zlib.compress}


def etag_of(data: bytes) -> str:
    """The strong ETag the stub sends for a file's bytes."""
    return '"' + hashlib.sha256(data).hexdigest()[:16] + '"'


def last_modified_of(version: int) -> str:
    """The Last-Modified the stub sends for the ``version``-th :meth:`StubServer.set_file`."""
    return f"Sun, 01 Nov 2026 00:00:{version:02d} GMT"


@dataclass
class Fault:
    """Misbehaviour for one path; request counts are per path and 0-based."""

    status: int | None = None  # answer with this status ...
    status_times: int | None = None  # ... on the first k requests (None: always)
    cut_after: int | None = None  # send only this many body bytes, then close ...
    cut_times: int = 1  # ... on the first k requests
    ignore_range: bool = False  # answer 200 with the whole file despite a Range header
    delay_s: float = 0.0  # wait before answering (overlap transfers, or outlast a timeout) ...
    delay_times: int | None = None  # ... on the first k requests (None: always)
    no_length: bool = False  # no Content-Length: the body ends when the connection closes
    trickle: tuple[int, float] | None = None  # send (n bytes, then sleep s), repeatedly ...
    trickle_times: int | None = None  # ... on the first k requests (None: always)
    ignore_if_range: bool = False  # honour Range even when If-Range no longer matches
    etag: bool = True  # send an ETag
    last_modified: bool = True  # send a Last-Modified
    content_encoding: str | None = None  # "gzip" or "deflate": the body (and its ranges) compressed
    content_type: str = "application/octet-stream"


@dataclass(frozen=True)
class RequestRecord:
    path: str
    range: str | None
    time: float
    if_range: str | None = None


@dataclass
class _State:
    files: dict[str, bytes]
    faults: dict[str, Fault]
    requests: list[RequestRecord] = field(default_factory=list)
    per_path: dict[str, int] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)  # set_file count per path
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        state = self.server.state
        path = self.path.split("?", 1)[0]
        with state.lock:
            index = state.per_path.get(path, 0)
            state.per_path[path] = index + 1
            state.requests.append(RequestRecord(path, self.headers.get("Range"), time.monotonic(), self.headers.get("If-Range")))
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
            fault = state.faults.get(path, Fault())
            data = state.files.get(path)
            version = state.versions.get(path, 0)
        self._released = False
        try:
            self._answer(path, index, fault, data, version)
        finally:
            self._release()

    def _release(self) -> None:
        # Called before the last byte goes out, so a client can never start its next request
        # while this one still counts as in flight.
        if not self._released:
            self._released = True
            with self.server.state.lock:
                self.server.state.in_flight -= 1

    def _answer(self, path: str, index: int, fault: Fault, data: bytes | None, version: int) -> None:
        if fault.status is not None and (fault.status_times is None or index < fault.status_times):
            self._send(fault.status, f"injected {fault.status} for {path}\n".encode())
            return
        if data is None:
            self._send(404, f"no such file: {path}\n".encode())
            return
        if fault.delay_s and (fault.delay_times is None or index < fault.delay_times):
            time.sleep(fault.delay_s)
        status, body, headers = self._select(data, fault, version)
        cut = fault.cut_after if (fault.cut_after is not None and index < fault.cut_times) else None
        trickles = fault.trickle_times is None or index < fault.trickle_times
        trickle = fault.trickle if trickles else None
        self._send(status, body, headers, cut=cut, no_length=fault.no_length, trickle=trickle,
                   content_type=fault.content_type)

    def _select(self, data: bytes, fault: Fault, version: int) -> tuple[int, bytes, dict[str, str]]:
        headers = {}
        if fault.etag:
            headers["ETag"] = etag_of(data)
        if fault.last_modified:
            headers["Last-Modified"] = last_modified_of(version)
        if fault.content_encoding is not None:
            data = _ENCODERS[fault.content_encoding](data)
            headers["Content-Encoding"] = fault.content_encoding
        header = self.headers.get("Range")
        match = _RANGE.match(header.strip()) if header and not fault.ignore_range else None
        if_range = self.headers.get("If-Range")
        current = {headers.get("ETag"), headers.get("Last-Modified")} - {None}
        if if_range is not None and if_range not in current and not fault.ignore_if_range:
            match = None  # RFC 9110: a validator that no longer matches -> the whole file
        if match is None or match.groups() == ("", ""):
            return 200, data, headers
        first, last = match.groups()
        if first == "":  # suffix range: the last N bytes
            start, end = max(len(data) - int(last), 0), len(data) - 1
        else:
            start = int(first)
            end = min(int(last), len(data) - 1) if last else len(data) - 1
        if start >= len(data) or start > end:
            return 416, b"range not satisfiable\n", {"Content-Range": f"bytes */{len(data)}"}
        return 206, data[start : end + 1], {"Content-Range": f"bytes {start}-{end}/{len(data)}", **headers}

    def _send(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        cut: int | None = None,
        no_length: bool = False,
        trickle: tuple[int, float] | None = None,
        content_type: str = "application/octet-stream",
    ) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", content_type)
        if not no_length:
            self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if cut is not None:
            self._write(body[:cut], trickle)
            self._release()  # the socket is closed after this handler returns
            return
        self._write(body[:-1], trickle)
        self._release()
        self.wfile.write(body[-1:])

    def _write(self, body: bytes, trickle: tuple[int, float] | None) -> None:
        if trickle is None:
            self.wfile.write(body)
            return
        step, pause = trickle
        for start in range(0, len(body), step):
            self.wfile.write(body[start : start + step])
            self.wfile.flush()
            time.sleep(pause)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a stalled handler must not hold up the end of a test
    state: _State

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hangs up early is part of the tests, not an error


class StubServer:
    """Serve ``files`` (URL path -> bytes) on 127.0.0.1; a context manager that always stops."""

    def __init__(self, files: dict[str, bytes], faults: dict[str, Fault] | None = None) -> None:
        self.state = _State(files=dict(files), faults=dict(faults or {}))
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> StubServer:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = self.state
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        assert self._server is not None, "use StubServer as a context manager"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def set_fault(self, path: str, fault: Fault | None) -> None:
        with self.state.lock:
            if fault is None:
                self.state.faults.pop(path, None)
            else:
                self.state.faults[path] = fault

    def set_file(self, path: str, data: bytes | None) -> None:
        """Replace (or remove) a file: a new version, with a new ETag and Last-Modified."""
        with self.state.lock:
            self.state.versions[path] = self.state.versions.get(path, 0) + 1
            if data is None:
                self.state.files.pop(path, None)
            else:
                self.state.files[path] = data

    def reset_log(self) -> None:
        """Forget recorded requests, per-path counts and the concurrency peak."""
        with self.state.lock:
            self.state.requests.clear()
            self.state.per_path.clear()
            self.state.max_in_flight = 0

    @property
    def requests(self) -> list[RequestRecord]:
        with self.state.lock:
            return list(self.state.requests)

    def requests_for(self, path: str) -> list[RequestRecord]:
        return [r for r in self.requests if r.path == path]

    @property
    def max_in_flight(self) -> int:
        return self.state.max_in_flight


# --- a MicroLens-shaped release -----------------------------------------------------------------
@dataclass(frozen=True)
class MicroLensTree:
    """Remote files by name relative to the base URL, plus what they contain."""

    files: dict[str, bytes]
    item_ids: tuple[str, ...]  # items of the pairs file, in the readers' order (numeric for integers)
    covers: dict[str, bytes]  # file name in covers/ -> bytes
    videos: dict[str, bytes]  # item id -> bytes

    def served(self, prefix: str) -> dict[str, bytes]:
        """``files`` keyed by URL path under ``prefix`` (e.g. ``/MicroLens-100k-Dataset``)."""
        return {f"{prefix}/{name}": data for name, data in self.files.items()}


def mp4_like(payload: bytes) -> bytes:
    """Bytes with an MP4's top-level box structure (ftyp, moov, mdat); not decodable."""

    def box(kind: bytes, body: bytes) -> bytes:
        return (8 + len(body)).to_bytes(4, "big") + kind + body

    return box(b"ftyp", b"isom\0\0\2\0isomiso2") + box(b"moov", b"\0" * 40) + box(b"mdat", payload)


def make_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def microlens_tree(
    variant: str = "100k", n_items: int = 12, n_rows: int = 30, seed: int = 0, id_prefix: str = ""
) -> MicroLensTree:
    """A release with ``n_items`` items (ids not contiguous; integers, or text ids
    ``{id_prefix}{n}`` ordered as text), ``n_rows`` interactions, one title per item (one with
    a comma), covers zipped under a top folder (with a macOS resource-fork entry to ignore)
    and MP4-shaped videos of 20-40 KB (random bytes in an ``mdat`` box)."""
    rng = random.Random(seed)
    numbers = sorted(rng.sample(range(1, 5000), n_items))
    ids = sorted(f"{id_prefix}{n}" for n in numbers) if id_prefix else numbers
    rows = [(1000 + i % 8, ids[i % n_items], 1_600_000_000 + i) for i in range(n_rows)]
    rng.shuffle(rows)
    pairs = "user,item,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows)
    titles = io.StringIO()
    writer = csv.writer(titles, lineterminator="\n")
    for n, item in enumerate(ids):
        writer.writerow([item, f"video {item}, part {n}" if n == 0 else f"video {item}"])
    covers = {f"{item}.jpg": b"\xff\xd8\xff\xe0" + rng.randbytes(rng.randint(200, 600)) for item in ids}
    zipped = {f"MicroLens-{variant}_covers/{name}": data for name, data in covers.items()}
    zipped[f"__MACOSX/MicroLens-{variant}_covers/._x.jpg"] = b"resource fork"
    videos = {str(item): mp4_like(rng.randbytes(rng.randint(20_000, 40_000))) for item in ids}
    prefix = f"MicroLens-{variant}"
    files = {
        f"{prefix}_pairs.csv": pairs.encode(),
        f"{prefix}_title_en.csv": titles.getvalue().encode(),
        f"{prefix}_covers.zip": make_zip(zipped),
        **{f"{prefix}_videos/{item}.mp4": data for item, data in videos.items()},
    }
    return MicroLensTree(files=files, item_ids=tuple(str(i) for i in ids), covers=covers, videos=videos)
