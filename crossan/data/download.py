"""Download MicroLens from its official site: resumable, retried, size-checked and recorded.

``download_microlens(base_url, out_dir)`` fetches, in this order::

    {base}/MicroLens-{v}_pairs.csv         -> out_dir/pairs.csv
    {base}/MicroLens-{v}_title_en.csv      -> out_dir/titles.csv
    {base}/MicroLens-{v}_covers.zip        -> out_dir/covers.zip, extracted to out_dir/covers/{id}.jpg
    {base}/MicroLens-{v}_videos/{id}.mp4   -> out_dir/videos/{id}.mp4   (items of pairs.csv)

and records every file (url, local path, size, sha256) in ``out_dir/manifest.json``. The remote
names were seen in public scripts and are not guaranteed: every one is a field of
:class:`RemoteLayout`.

Failure policy
--------------
* One download at a time per folder: ``out_dir/.download.lock`` is held (``flock``) for the
  whole run, and a second run into the same folder stops at once, saying which process holds it.
* Every file goes through :func:`crossan.data.fetch.fetch_file`: streamed to ``name.partial``,
  resumed with ``Range`` + ``If-Range`` (across runs only with an ``ETag`` or ``Last-Modified``
  kept with the partial file and repeated by the ``206``; otherwise the file starts over),
  retried on 5xx (and 408/425/429), refused or reset connections, timeouts, stalls
  (``min_bytes_per_s`` over ``stall_window_s``), the per-attempt ``deadline_s``, short bodies
  and size mismatches; renamed only once its size on disk is what the server stated and its
  bytes are of the file's kind (no encoded body, no HTML page; a zip, MP4 or UTF-8 CSV by its
  leading bytes). Other 4xx (404 above all) and bodies that are not the file are not retried.
  Either way, when it gives up -> ``DownloadError`` naming the URL.
* A full disk, an exceeded quota or a read-only folder ends the run with one
  ``DownloadError`` naming the folder, the space the file still needs and what a rerun does
  (it resumes); every complete file is kept.
* A file whose size the server never states is checked by its structure where it has one
  (zip, MP4); a CSV cannot be, so it is recorded with ``"check": "unverified"``, listed in a
  warning at the end of the run and downloaded again by the next run.
* pairs, titles and the covers zip are needed by everything after them: their failure stops
  the download at once. A failed video does not: the others are finished first, the progress
  is written to ``out_dir/manifest.incomplete.json`` and one ``DownloadError`` lists the
  failed URLs. ``manifest.json`` (the workflow's completion marker) is written only when
  every file is complete.
* On a rerun, files recorded in an earlier manifest (complete or incomplete) with the same URL
  and the same size on disk are skipped. Files under their final name that no manifest records
  (a run killed before it wrote one) are adopted and hashed: a final name only ever appears
  after the checks above passed. Every reused or adopted file is checked again by kind
  (:func:`crossan.data.fetch.body_problem`), and ``pairs.csv`` is read whole; a file that fails
  is moved aside to ``NAME.rejected-<time>`` (kept for inspection), so the next run downloads
  it again, and the message says so.
* Item ids are taken as the local readers take them (:mod:`crossan.data.readers`): integers
  are ordered numerically, any other ids (ASINs, UUIDs) as text.

The ``verify-data`` subcommand (see :func:`run_verify`) checks any raw tree, downloaded or the
user's own: it always reads the interaction and title files through the readers (a malformed
or empty file fails with its line), with ``--report`` also lists the items lacking a title,
cover or video (:func:`crossan.data.layout.verify_layout`), and writes the dataset manifest.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path


from crossan.atomic import write_text_atomic
from crossan.data import layout as layout_mod
from crossan.data import readers
from crossan.data.content_checks import content_check_for
from crossan.data.covers import extract_covers
from crossan.data.fetch import (
    CHECKED_BY_SIZE,
    UNVERIFIED,
    WRITE_ERRNOS,
    FetchError,
    RetryPolicy,
    body_problem,
    disk_write_error,
    fetch_file,
    kind_of,
)
from crossan.errors import ConfigError, DataError, DownloadError
from crossan.progress import Progress, log_progress

log = logging.getLogger(__name__)

VARIANTS = layout_mod.MICROLENS_VARIANTS
DEFAULT_BASE_URL = "https://recsys.westlake.edu.cn/MicroLens-{v}-Dataset/"

# Local names (the canonical layout of crossan.data.layout).
PAIRS_FILE = "pairs.csv"
TITLES_FILE = "titles.csv"
COVERS_ZIP = "covers.zip"
COVERS_DIR = "covers"
VIDEOS_DIR = "videos"
MANIFEST_FILE = "manifest.json"
INCOMPLETE_FILE = "manifest.incomplete.json"

LOCK_FILE = ".download.lock"
MAX_LISTED_FAILURES = 50  # in the error message; the incomplete manifest lists all


def default_base_url(variant: str) -> str:
    """The official download folder of a MicroLens variant."""
    _check_variant(variant)
    return DEFAULT_BASE_URL.format(v=variant)


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ConfigError(
            f"unknown MicroLens variant {variant!r}: expected one of {', '.join(VARIANTS)}"
        )


@dataclass(frozen=True)
class RemoteLayout:
    """File names relative to the base URL; ``video_pattern`` has an ``{id}`` field."""

    pairs: str
    titles: str
    covers_zip: str
    video_pattern: str

    @classmethod
    def for_variant(cls, variant: str = "100k") -> RemoteLayout:
        """The names of the official release of ``variant`` (``100k`` or ``50k``)."""
        _check_variant(variant)
        prefix = f"MicroLens-{variant}"
        return cls(
            pairs=f"{prefix}_pairs.csv",
            titles=f"{prefix}_title_en.csv",
            covers_zip=f"{prefix}_covers.zip",
            video_pattern=f"{prefix}_videos/{{id}}.mp4",
        )

    def video(self, item_id: str) -> str:
        return self.video_pattern.format(id=item_id)


@dataclass(frozen=True)
class FileRecord:
    """One downloaded file: where it came from, where it lies (relative to ``out_dir``)."""

    url: str
    path: str
    size: int
    sha256: str
    check: str = CHECKED_BY_SIZE  # how it is known to be whole: see crossan.data.fetch


@dataclass
class DownloadManifest:
    """What a download produced; ``failed`` holds the URLs that could not be fetched."""

    base_url: str
    variant: str
    remote: RemoteLayout
    max_items: int | None
    n_items: int
    n_covers: int
    files: list[FileRecord] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.failed

    @property
    def unverified(self) -> list[FileRecord]:
        return [r for r in self.files if r.check == UNVERIFIED]

    @property
    def counts(self) -> dict[str, int]:
        videos = [r for r in self.files if r.path.startswith(f"{VIDEOS_DIR}/")]
        return {
            "files": len(self.files),
            "bytes": sum(r.size for r in self.files),
            "items": self.n_items,
            "videos": len(videos),
            "covers": self.n_covers,
            "failed": len(self.failed),
            "unverified": len(self.unverified),
        }

    def to_json(self) -> str:
        record = {
            "base_url": self.base_url,
            "variant": self.variant,
            "remote": asdict(self.remote),
            "max_items": self.max_items,
            "complete": self.complete,
            "counts": self.counts,
            "files": [asdict(r) for r in sorted(self.files, key=lambda r: r.path)],
            "failed": sorted(self.failed),
        }
        return json.dumps(record, indent=2) + "\n"


def load_file_records(path: Path) -> dict[str, FileRecord]:
    """``{local path: record}`` from a manifest written by :func:`download_microlens`;
    empty when the file is absent or unreadable (a fresh start, not an error)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return {f["path"]: FileRecord(**f) for f in record["files"]}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as error:
        log.warning("ignoring unreadable manifest %s (%s): files will be re-checked", path, error)
        return {}


def move_aside(path: Path) -> Path:
    """Rename a stored file that failed its check to ``NAME.rejected-<time>`` beside it (kept
    for inspection, and no longer under a name any step reads); return the new path."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.rejected-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.rejected-{stamp}-{n}")
    os.replace(path, target)
    return target


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- a whole download ---------------------------------------------------------------------------
class _Session:
    """Fetches remote files into ``out_dir``, skipping those already complete."""

    def __init__(self, base_url: str, out_dir: Path, policy: RetryPolicy) -> None:
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.out_dir = out_dir
        self.policy = policy
        self.previous = load_file_records(out_dir / INCOMPLETE_FILE)
        self.previous.update(load_file_records(out_dir / MANIFEST_FILE))
        self._adopted = 0
        self._lock = threading.Lock()

    def url(self, remote_name: str) -> str:
        return self.base_url + urllib.parse.quote(remote_name)

    def fetch(self, remote_name: str, local: str) -> tuple[FileRecord, bool]:
        """Return the record of ``local`` and whether it was downloaded now."""
        url = self.url(remote_name)
        dest = self.out_dir / local
        reused = self._reuse(url, local, dest)
        if reused is not None:
            return reused, False
        log.debug("fetching %s -> %s", url, dest)
        fetched = fetch_file(url, dest, self.policy, content_check_for(local))
        record = FileRecord(url=url, path=local, size=fetched.size, sha256=sha256_of(dest), check=fetched.check)
        return record, True

    def _reuse(self, url: str, local: str, dest: Path) -> FileRecord | None:
        if not dest.is_file():
            return None
        problem = body_problem(dest, kind_of(dest))
        if problem is not None:
            moved = move_aside(dest)
            log.warning("%s: %s; moved aside to %s, downloading it again", dest, problem, moved.name)
            return None
        size = dest.stat().st_size
        known = self.previous.get(local)
        if known is None:
            with self._lock:
                self._adopted += 1
            return FileRecord(url=url, path=local, size=size, sha256=sha256_of(dest))
        if known.check == UNVERIFIED:
            log.info("%s: unverified by the last run (no size from the server), downloading again", dest)
            return None
        if known.url == url and known.size == size:
            return known
        log.info("%s: differs from the manifest (url or size on disk), downloading again", dest)
        return None

    @property
    def adopted(self) -> int:
        return self._adopted


def select_items(item_ids: list[str], max_items: int | None) -> list[str]:
    """The first ``max_items`` ids (all when ``None``) in the local readers' order: numeric
    when every id is an integer in canonical form, else text order (ASINs, UUIDs)."""
    if readers.canonical_integers(item_ids):
        ordered = sorted(item_ids, key=int)
    else:
        ordered = sorted(item_ids)
    return ordered if max_items is None else ordered[:max_items]


def download_microlens(
    base_url: str,
    out_dir: Path,
    *,
    variant: str = "100k",
    remote: RemoteLayout | None = None,
    workers: int = 8,
    max_items: int | None = None,
    policy: RetryPolicy | None = None,
) -> DownloadManifest:
    """Download MicroLens into ``out_dir`` in the canonical layout (see the module doc).

    Args:
        base_url: folder URL the remote names are relative to.
        variant: ``100k`` or ``50k``; picks the default :class:`RemoteLayout`.
        remote: explicit remote names (overrides ``variant``'s).
        workers: videos downloaded at the same time.
        max_items: only the videos of the first N item ids (numeric order), for a partial run.
        policy: retries, backoff, timeouts, stall limit and deadline per file.
    Returns:
        The manifest, also written to ``out_dir/manifest.json``.
    Raises:
        DownloadError: a file could not be fetched (all failed videos in one error), or
            another download holds the folder.
        DataError: an unreadable pairs file or covers zip.
    """
    policy = policy or RetryPolicy()
    if workers < 1 or policy.retries < 0 or (max_items is not None and max_items < 1):
        raise ConfigError(
            f"download: need workers >= 1, retries >= 0 and max_items >= 1 or unset "
            f"(got {workers}, {policy.retries}, {max_items})"
        )
    remote = remote or RemoteLayout.for_variant(variant)
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with folder_lock(out_dir):
            return _download(base_url, out_dir, variant, remote, workers, max_items, policy)
    except OSError as error:  # a write outside a file transfer: covers, manifests, the lock
        if error.errno not in WRITE_ERRNOS:
            raise
        where = Path(error.filename).parent if error.filename else out_dir
        raise disk_write_error(
            where, error, None, "it resumes the download", unknown="not a file transfer",
            what="This step",
        ) from error


@contextlib.contextmanager
def folder_lock(out_dir: Path) -> Iterator[None]:
    """Hold ``out_dir/.download.lock`` for the whole download; a second download into the
    same folder (another terminal, another Snakemake) stops at once with who holds it.
    The lock is the kernel's (``flock``): it goes away with the process, however it ends."""
    path = out_dir / LOCK_FILE
    with path.open("a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise DownloadError(
                f"{out_dir}: another download into this folder is running ({holder}). "
                "Wait for it to finish (or stop it), then run this command again; "
                "two downloads into one folder would corrupt each other's files."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {os.uname().nodename}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _download(
    base_url: str,
    out_dir: Path,
    variant: str,
    remote: RemoteLayout,
    workers: int,
    max_items: int | None,
    policy: RetryPolicy,
) -> DownloadManifest:
    session = _Session(base_url, out_dir, policy)
    label = progress_label(out_dir)
    records = [_fetch_logged(session, remote.pairs, PAIRS_FILE, label)[0],
               _fetch_logged(session, remote.titles, TITLES_FILE, label)[0]]
    items = select_items(_downloaded_item_ids(out_dir / PAIRS_FILE, records[0].url), max_items)
    covers_record, fresh = _fetch_logged(session, remote.covers_zip, COVERS_ZIP, label)
    records.append(covers_record)
    covers_dir = out_dir / COVERS_DIR
    if fresh or not covers_dir.is_dir():
        n_covers = extract_covers(out_dir / COVERS_ZIP, covers_dir)
    else:
        n_covers = sum(1 for _ in covers_dir.glob("*.jpg"))
    video_records, failures = _fetch_videos(session, remote, items, workers, label)
    manifest = DownloadManifest(
        base_url=session.base_url,
        variant=variant,
        remote=remote,
        max_items=max_items,
        n_items=len(items),
        n_covers=n_covers,
        files=sorted(records + video_records, key=lambda r: r.path),
        failed=[failure.url for failure in failures],
    )
    if session.adopted:
        log.info("adopted %d complete file(s) found under their final names", session.adopted)
    _write_manifest(manifest, out_dir)
    if failures:
        raise _video_failures_error(failures, len(items), out_dir / INCOMPLETE_FILE)
    if manifest.unverified:
        log.warning(_unverified_warning(manifest.unverified, out_dir / MANIFEST_FILE))
    log.info("download complete: %s", manifest.counts)
    return manifest


def _downloaded_item_ids(pairs: Path, url: str) -> list[str]:
    """The items of the downloaded interaction file; a file the readers refuse is moved aside
    (so the next run downloads it again) and the error says so."""
    try:
        return readers.item_ids(pairs)
    except DataError as error:
        moved = move_aside(pairs)
        raise DataError(
            f"{error}\nThe downloaded {pairs.name} was moved aside to {moved}, so the next run "
            f"downloads it again from {url}. If it fails the same way again, the server's file "
            "itself is malformed: fix a copy by hand and use it as a dataset of kind `local` "
            "(`data_dir:` in config.yaml)."
        ) from error


def _unverified_warning(records: list[FileRecord], manifest_path: Path) -> str:
    names = ", ".join(r.path for r in records[:MAX_LISTED_FAILURES])
    more = f" and {len(records) - MAX_LISTED_FAILURES} more" if len(records) > MAX_LISTED_FAILURES else ""
    return (
        f"{len(records)} file(s) could not be verified: the server did not state their size and "
        f"they have no structure to check ({names}{more}). They are marked "
        f'"check": "unverified" in {manifest_path} with their size and sha256: compare them with '
        "the official release, or rerun `crossan download` (unverified files are fetched again)."
    )


def progress_label(out_dir: Path) -> str:
    """The label of a download's progress lines (:mod:`crossan.progress`)."""
    return f"crossan download {out_dir}"


def _fetch_logged(session: _Session, remote_name: str, local: str, label: str) -> tuple[FileRecord, bool]:
    """:meth:`_Session.fetch`, then a progress line saying what it did."""
    record, fresh = session.fetch(remote_name, local)
    log_progress(label, f"{local}: {record.size / 1e6:.1f} MB {'downloaded' if fresh else 'already here'}")
    return record, fresh


def _fetch_videos(
    session: _Session, remote: RemoteLayout, items: list[str], workers: int, label: str
) -> tuple[list[FileRecord], list[FetchError]]:
    """Fetch the videos with at most ``workers`` in flight; collect failures, don't stop.
    Progress lines (``label``): videos done (fetched, found complete or failed) every 30 s and
    at the end."""
    (session.out_dir / VIDEOS_DIR).mkdir(exist_ok=True)
    records: list[FileRecord] = []
    failures: list[FetchError] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="download") as pool:
        futures: list[Future[tuple[FileRecord, bool]]] = [
            pool.submit(session.fetch, remote.video(item), f"{VIDEOS_DIR}/{item}.mp4") for item in items
        ]
        try:
            with Progress(label, len(futures), "videos") as progress:
                for future in as_completed(futures):
                    try:
                        records.append(future.result()[0])
                    except FetchError as error:
                        failures.append(error)
                    progress.update()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # local failure (disk full, Ctrl-C)
            raise
    return records, failures


def _write_manifest(manifest: DownloadManifest, out_dir: Path) -> None:
    if manifest.complete:
        write_text_atomic(out_dir / MANIFEST_FILE, manifest.to_json())
        (out_dir / INCOMPLETE_FILE).unlink(missing_ok=True)
    else:
        # Not manifest.json: the workflow takes that file to mean "download finished".
        (out_dir / MANIFEST_FILE).unlink(missing_ok=True)
        write_text_atomic(out_dir / INCOMPLETE_FILE, manifest.to_json())


def _video_failures_error(failures: list[FetchError], n_videos: int, progress: Path) -> DownloadError:
    failures = sorted(failures, key=lambda f: f.url)
    lines = [f"  {f.url}: {f.reason}" for f in failures[:MAX_LISTED_FAILURES]]
    if len(failures) > MAX_LISTED_FAILURES:
        lines.append(f"  ... and {len(failures) - MAX_LISTED_FAILURES} more, all listed in {progress}")
    return DownloadError(
        f"{len(failures)} of {n_videos} video(s) could not be downloaded:\n"
        + "\n".join(lines)
        + f"\nEvery other file is complete and recorded in {progress}; rerunning fetches only "
        "the missing ones. If every video fails, check `url:` and `variant:` in config.yaml."
    )


# --- command line -------------------------------------------------------------------------------


def run_download(args: argparse.Namespace) -> int:
    """Run ``download`` from parsed arguments; returns the exit status."""
    manifest = download_microlens(
        args.base_url or default_base_url(args.variant),
        args.out,
        variant=args.variant,
        workers=args.workers,
        max_items=args.max_items,
        policy=RetryPolicy(
            retries=args.retries,
            timeout_s=args.timeout,
            min_bytes_per_s=args.min_bytes_per_s,
            stall_window_s=args.stall_window,
            deadline_s=args.deadline,
        ),
    )
    if args.dataset_json is not None:
        name = args.name or f"microlens-{args.variant}"
        layout = layout_mod.require_layout(args.out, name, "microlens")
        layout_mod.write_manifest(layout, args.dataset_json)
    log.info("wrote %s (%d files)", args.out / MANIFEST_FILE, manifest.counts["files"])
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """Run ``verify-data``: structural problems fail, and so does malformed content (the
    interaction and title files are always read through the readers); with ``--report``,
    missing items are also listed (that check stats every media file, so it runs only when
    its report is asked for: the workflow's ``layout_report`` job). Prints a one-line
    summary on success."""
    name = args.name or args.data_dir.name
    layout = layout_mod.require_layout(args.data_dir, name, args.kind)
    if args.report is not None:
        report = layout_mod.verify_layout(layout)
        report.write(args.report)
        counts = report.counts
        summary = (
            f"{counts['items']} items; missing {counts['missing_titles']} title(s), "
            f"{counts['missing_covers']} cover(s), {counts['missing_videos']} video(s); "
            f"{counts['empty_titles']} empty title(s); listed in {args.report}"
        )
    else:
        summary = check_content(layout) + "; media files not checked (--report lists the items without one)"
    if args.dataset_json is not None:
        layout_mod.write_manifest(layout, args.dataset_json)
    absent = f"; absent: {', '.join(layout.absent)}" if layout.absent else ""
    print(f"verify-data: dataset '{name}' ({args.kind}) in {args.data_dir}: content checked: {summary}{absent}")
    return 0


def check_content(layout: layout_mod.DatasetLayout) -> str:
    """Read the interaction file and (when present) the title file through the readers,
    which raise ``DataError`` with the file and line of malformed content; return what was read."""
    frame, _ = readers.read_interactions(layout.pairs)
    items = [str(item) for item in frame["item"].unique().to_list()]
    summary = f"{frame.height} interactions of {len(items)} items in {layout.pairs.name}"
    if "titles" not in layout.absent:
        titles = readers.read_titles(layout.titles, items)
        summary += f", {len(titles)} titles in {layout.titles.name}"
    return summary

