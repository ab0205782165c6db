"""MicroLens download against a loopback server: resume, retries, 404s, reruns, concurrency."""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from http_stub import Fault, MicroLensTree, StubServer, etag_of, last_modified_of, make_zip, microlens_tree, mp4_like

from crossan.cli import build_parser, handler_of
from crossan.data import download as dl
from crossan.data.covers import extract_covers
from crossan.data import fetch as fetch_mod
from crossan.data.fetch import RetryPolicy, validator_path
from crossan.data.layout import find_layout, load_manifest
from crossan.errors import ConfigError, DataError, DownloadError

pytestmark = pytest.mark.timeout(60)

PREFIX = "/MicroLens-100k-Dataset"
PAIRS = f"{PREFIX}/MicroLens-100k_pairs.csv"
TITLES = f"{PREFIX}/MicroLens-100k_title_en.csv"
COVERS = f"{PREFIX}/MicroLens-100k_covers.zip"


def video_path(item: str) -> str:
    return f"{PREFIX}/MicroLens-100k_videos/{item}.mp4"


@pytest.fixture(autouse=True)
def no_proxy_for_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy from the environment must never see the loopback test traffic."""
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def tree() -> MicroLensTree:
    return microlens_tree(seed=7)


@pytest.fixture
def server(tree: MicroLensTree) -> Iterator[StubServer]:
    with StubServer(tree.served(PREFIX)) as stub:
        yield stub


def policy(**options: float) -> RetryPolicy:
    settings: dict[str, float] = {"retries": 3, "backoff_s": 0.01, "timeout_s": 5.0}
    settings.update(options)
    return RetryPolicy(**settings)  # type: ignore[arg-type]


def fetch(
    server: StubServer, out: Path, workers: int = 3, max_items: int | None = None, **options: float
) -> dl.DownloadManifest:
    return dl.download_microlens(
        server.url + PREFIX + "/", out, workers=workers, max_items=max_items, policy=policy(**options)
    )


def keep_validator(part: Path, url: str, data: bytes) -> None:
    """Write the validator a run that was killed leaves beside ``part`` (the stub's headers)."""
    kept = {"url": url, "last_modified": last_modified_of(0), "etag": etag_of(data)}
    validator_path(part).write_text(json.dumps(kept), encoding="utf-8")


def partials(root: Path) -> list[Path]:
    return sorted(root.rglob("*.partial"))


def assert_identical(tree: MicroLensTree, out: Path, items: tuple[str, ...] | None = None) -> None:
    items = tree.item_ids if items is None else items
    assert (out / "pairs.csv").read_bytes() == tree.files["MicroLens-100k_pairs.csv"]
    assert (out / "titles.csv").read_bytes() == tree.files["MicroLens-100k_title_en.csv"]
    assert {p.name: p.read_bytes() for p in (out / "covers").iterdir()} == tree.covers
    videos = {p.stem: p.read_bytes() for p in (out / "videos").iterdir() if ".rejected-" not in p.name}
    assert videos == {i: tree.videos[i] for i in items}


# --- clean runs ---------------------------------------------------------------------------------
def test_clean_download_is_byte_identical_and_recorded(
    tree: MicroLensTree, server: StubServer, tmp_path: Path
) -> None:
    out = tmp_path / "download"
    manifest = fetch(server, out)

    assert_identical(tree, out)
    assert partials(tmp_path) == []
    record = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert record["complete"] is True and record["failed"] == []
    assert record["counts"] == {
        "files": 3 + 12, "bytes": sum(len(b) for b in tree.files.values()),
        "items": 12, "videos": 12, "covers": 12, "failed": 0, "unverified": 0,
    }
    expected_paths = {"pairs.csv", "titles.csv", "covers.zip"}
    expected_paths |= {f"videos/{i}.mp4" for i in tree.item_ids}
    assert {f["path"] for f in record["files"]} == expected_paths
    remote_of = {"pairs.csv": PAIRS, "titles.csv": TITLES, "covers.zip": COVERS}
    for entry in record["files"]:
        path = remote_of.get(entry["path"]) or video_path(Path(entry["path"]).stem)
        served = server.state.files[path]
        assert entry["url"] == server.url + path
        assert entry["size"] == len(served) == (out / entry["path"]).stat().st_size
        assert entry["sha256"] == hashlib.sha256(served).hexdigest()
        assert entry["check"] == "size"
    assert manifest.counts == record["counts"]
    assert not (out / "manifest.incomplete.json").exists()
    assert len(server.requests) == 15  # one request per file, no retries


def test_cli_download_writes_a_dataset_manifest(
    tree: MicroLensTree, server: StubServer, tmp_path: Path
) -> None:
    out, dataset_json = tmp_path / "dl", tmp_path / "resources" / "dataset.json"
    args = parse([
        "download", "--base-url", server.url + PREFIX, "--variant", "100k", "--out", str(out),
        "--dataset-json", str(dataset_json), "--name", "ml", "--workers", "2", "--retries", "1",
    ])
    assert handler_of(args)(args) == 0

    layout = load_manifest(dataset_json)
    assert (layout.name, layout.kind) == ("ml", "microlens")
    assert (layout.pairs, layout.titles) == (out / "pairs.csv", out / "titles.csv")
    assert (layout.covers, layout.videos) == (out / "covers", out / "videos")
    assert find_layout(out, "ml", "microlens") == layout
    assert layout.video_path(tree.item_ids[0]).read_bytes() == tree.videos[tree.item_ids[0]]


def test_complete_rerun_requests_nothing_and_adopts_unrecorded_files(
    server: StubServer, tmp_path: Path
) -> None:
    out = tmp_path / "dl"
    first = fetch(server, out)
    server.reset_log()
    assert fetch(server, out).files == first.files
    assert server.requests == []

    (out / "manifest.json").unlink()  # a run killed before it wrote its manifest
    third = fetch(server, out)
    assert server.requests == []
    assert sorted(third.files, key=lambda r: r.path) == sorted(first.files, key=lambda r: r.path)


def test_max_items_fetches_the_first_ids_in_numeric_order(
    tree: MicroLensTree, server: StubServer, tmp_path: Path
) -> None:
    out = tmp_path / "dl"
    manifest = fetch(server, out, max_items=4)

    first_four = tuple(sorted(tree.item_ids, key=int)[:4])
    assert_identical(tree, out, items=first_four)
    assert manifest.counts["videos"] == 4 and manifest.n_items == 4
    requested = {r.path for r in server.requests if "_videos/" in r.path}
    assert requested == {video_path(i) for i in first_four}


def test_remote_names_are_parameters(tree: MicroLensTree, tmp_path: Path) -> None:
    remote = dl.RemoteLayout(
        pairs="p.csv", titles="t.csv", covers_zip="img/c.zip", video_pattern="v/{id}"
    )
    files = {
        "/x/p.csv": tree.files["MicroLens-100k_pairs.csv"],
        "/x/t.csv": tree.files["MicroLens-100k_title_en.csv"],
        "/x/img/c.zip": tree.files["MicroLens-100k_covers.zip"],
        **{f"/x/v/{i}": data for i, data in tree.videos.items()},
    }
    with StubServer(files) as stub:
        dl.download_microlens(stub.url + "/x", tmp_path, remote=remote, workers=2, policy=policy())
    assert_identical(tree, tmp_path)


def test_variant_names() -> None:
    assert dl.RemoteLayout.for_variant("50k") == dl.RemoteLayout(
        pairs="MicroLens-50k_pairs.csv",
        titles="MicroLens-50k_title_en.csv",
        covers_zip="MicroLens-50k_covers.zip",
        video_pattern="MicroLens-50k_videos/{id}.mp4",
    )
    assert dl.RemoteLayout.for_variant("100k").video("42") == "MicroLens-100k_videos/42.mp4"
    assert dl.default_base_url("50k") == "https://recsys.westlake.edu.cn/MicroLens-50k-Dataset/"
    with pytest.raises(ConfigError, match="1m"):
        dl.RemoteLayout.for_variant("1m")


# --- resume and retries -------------------------------------------------------------------------
def test_cut_transfers_resume_from_the_bytes_on_disk(
    tree: MicroLensTree, server: StubServer, tmp_path: Path
) -> None:
    item = tree.item_ids[3]
    server.set_fault(video_path(item), Fault(cut_after=7000, cut_times=2))
    server.set_fault(PAIRS, Fault(cut_after=100))
    out = tmp_path / "dl"
    fetch(server, out)

    ranges = [r.range for r in server.requests_for(video_path(item))]
    assert ranges == [None, "bytes=7000-", "bytes=14000-"]
    assert [r.range for r in server.requests_for(PAIRS)] == [None, "bytes=100-"]
    assert_identical(tree, out)
    assert partials(tmp_path) == []


def test_503_is_retried_with_exponential_backoff(
    tree: MicroLensTree, server: StubServer, tmp_path: Path
) -> None:
    server.set_fault(TITLES, Fault(status=503, status_times=2))
    out = tmp_path / "dl"
    fetch(server, out, backoff_s=0.05)

    times = [r.time for r in server.requests_for(TITLES)]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.05 and times[2] - times[1] >= 0.10
    assert_identical(tree, out)


def test_server_ignoring_range_restarts_from_zero(
    tree: MicroLensTree, server: StubServer, tmp_path: Path
) -> None:
    item = tree.item_ids[0]
    server.set_fault(video_path(item), Fault(cut_after=5000, ignore_range=True))
    out = tmp_path / "dl"
    fetch(server, out)

    assert [r.range for r in server.requests_for(video_path(item))] == [None, "bytes=5000-"]
    assert_identical(tree, out)


def test_complete_partial_left_by_a_kill_is_renamed_on_416(
    tree: MicroLensTree, server: StubServer, tmp_path: Path
) -> None:
    out = tmp_path / "dl"
    item, other = tree.item_ids[1], tree.item_ids[2]
    (out / "videos").mkdir(parents=True)
    (out / "videos" / f"{item}.mp4.partial").write_bytes(tree.videos[item])
    (out / "videos" / f"{other}.mp4.partial").write_bytes(tree.videos[other] + b"stale tail")
    for name in (item, other):  # the validator a killed run left beside its partial file
        keep_validator(out / "videos" / f"{name}.mp4.partial", server.url + video_path(name), tree.videos[name])
    fetch(server, out)

    ranges = [r.range for r in server.requests_for(video_path(item))]
    assert ranges == [f"bytes={len(tree.videos[item])}-"]
    # larger than the remote file: 416 with another total -> thrown away, fetched again whole
    assert [r.range for r in server.requests_for(video_path(other))] == [
        f"bytes={len(tree.videos[other]) + 10}-", None,
    ]
    assert_identical(tree, out)


def test_persistent_503_exhausts_retries_and_stops_at_once(server: StubServer, tmp_path: Path) -> None:
    server.set_fault(PAIRS, Fault(status=503))
    with pytest.raises(DownloadError) as caught:
        fetch(server, tmp_path / "dl", retries=2)

    assert server.url + PAIRS in str(caught.value)
    assert "after 3 attempts" in str(caught.value) and "HTTP 503" in str(caught.value)
    assert len(server.requests_for(PAIRS)) == 3
    assert server.requests_for(TITLES) == []  # nothing after a failed interaction file
    assert not (tmp_path / "dl" / "pairs.csv").exists()


def test_persistent_truncation_fails_and_never_looks_whole(
    tree: MicroLensTree, server: StubServer, tmp_path: Path
) -> None:
    item = tree.item_ids[5]
    server.set_fault(video_path(item), Fault(cut_after=1000, cut_times=99))
    out = tmp_path / "dl"
    with pytest.raises(DownloadError, match="incomplete: 3000 of") as caught:
        fetch(server, out, retries=2)

    assert server.url + video_path(item) in str(caught.value)
    assert not (out / "videos" / f"{item}.mp4").exists()
    assert (out / "videos" / f"{item}.mp4.partial").read_bytes() == tree.videos[item][:3000]


def test_a_stalled_server_times_out_and_is_retried(
    tree: MicroLensTree, server: StubServer, tmp_path: Path
) -> None:
    # The timeout applies to every file of the fetch, so it must outlast any stall of a
    # loaded machine; the stall outlasts it many times over.
    server.set_fault(TITLES, Fault(delay_s=6.0, delay_times=1))
    out = tmp_path / "dl"
    fetch(server, out, timeout_s=1.5)

    assert len(server.requests_for(TITLES)) == 2
    assert_identical(tree, out)


def test_refused_connections_are_retried_then_reported(tmp_path: Path) -> None:
    with StubServer({}) as stub:
        closed_url = stub.url  # nothing listens here once the server has stopped
    with pytest.raises(DownloadError, match="after 2 attempts") as caught:
        dl.download_microlens(closed_url + PREFIX, tmp_path, policy=policy(retries=1, timeout_s=2))
    assert closed_url + PAIRS in str(caught.value)
    assert "Connection" in str(caught.value) or "refused" in str(caught.value)


# --- 404s and reruns ----------------------------------------------------------------------------
def test_404_video_fails_after_the_others_and_a_rerun_fetches_only_it(
    tree: MicroLensTree, server: StubServer, tmp_path: Path
) -> None:
    item = tree.item_ids[4]
    server.set_file(video_path(item), None)
    out = tmp_path / "dl"
    with pytest.raises(DownloadError) as caught:
        fetch(server, out)

    message = str(caught.value)
    assert server.url + video_path(item) in message and "HTTP 404" in message
    assert "1 of 12 video(s)" in message and "config.yaml" in message
    assert len(server.requests_for(video_path(item))) == 1  # a 404 is not retried
    others = tuple(i for i in tree.item_ids if i != item)
    videos = {p.stem: p.read_bytes() for p in (out / "videos").glob("*.mp4")}
    assert videos == {i: tree.videos[i] for i in others}
    assert not (out / "videos" / f"{item}.mp4").exists()
    assert partials(out) == []
    assert not (out / "manifest.json").exists()  # the workflow's "finished" marker
    progress = json.loads((out / "manifest.incomplete.json").read_text(encoding="utf-8"))
    assert progress["complete"] is False
    assert progress["failed"] == [server.url + video_path(item)]
    assert len(progress["files"]) == 3 + 11

    server.set_file(video_path(item), tree.videos[item])
    server.reset_log()
    manifest = fetch(server, out)
    assert [r.path for r in server.requests] == [video_path(item)]
    assert manifest.complete and manifest.counts["videos"] == 12
    assert_identical(tree, out)
    assert not (out / "manifest.incomplete.json").exists()


def test_404_on_the_interaction_file_names_the_url_and_the_config(
    server: StubServer, tmp_path: Path
) -> None:
    server.set_file(PAIRS, None)
    with pytest.raises(DownloadError, match="HTTP 404") as caught:
        fetch(server, tmp_path / "dl")
    assert server.url + PAIRS in str(caught.value)
    assert "`url:`" in str(caught.value) and "variant" in str(caught.value)
    assert len(server.requests) == 1


# --- parallelism --------------------------------------------------------------------------------
def test_video_downloads_never_exceed_the_worker_count(
    tree: MicroLensTree, server: StubServer, tmp_path: Path
) -> None:
    for item in tree.item_ids:
        server.set_fault(video_path(item), Fault(delay_s=0.05))
    fetch(server, tmp_path / "dl", workers=3)

    assert 2 <= server.max_in_flight <= 3
    assert len(server.requests) == 15


# --- covers zip ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "member", ["../evil.jpg", "covers/../../evil.jpg", "/tmp/evil.jpg", "C:/evil.jpg", "..\\evil.jpg"]
)
def test_zip_with_an_escaping_member_is_rejected(member: str, tmp_path: Path) -> None:
    archive = tmp_path / "in" / "covers.zip"
    archive.parent.mkdir()
    archive.write_bytes(make_zip({"covers/1.jpg": b"ok", member: b"evil"}))
    dest = tmp_path / "out" / "covers"
    with pytest.raises(DataError, match="refusing to extract"):
        extract_covers(archive, dest)
    assert not dest.exists() and not (tmp_path / "out" / "covers.partial").exists()
    assert not list(tmp_path.rglob("evil.jpg"))


def test_zip_with_a_symlink_member_is_rejected(tmp_path: Path) -> None:
    info = zipfile.ZipInfo("covers/2.jpg")
    info.external_attr = (0o120777 << 16)
    archive = tmp_path / "covers.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("covers/1.jpg", b"ok")
        handle.writestr(info, "/etc/passwd")
    with pytest.raises(DataError, match="symbolic link"):
        extract_covers(archive, tmp_path / "covers")


def test_download_rejects_a_traversal_zip(
    tree: MicroLensTree, server: StubServer, tmp_path: Path
) -> None:
    server.set_file(COVERS, make_zip({"1.jpg": b"x", "../../escaped.jpg": b"evil"}))
    out = tmp_path / "a" / "dl"
    with pytest.raises(DataError, match="path traversal"):
        fetch(server, out)
    assert not list(tmp_path.rglob("escaped.jpg"))
    assert not (out / "covers").exists()
    assert [r for r in server.requests if "_videos/" in r.path] == []


def test_corrupt_zip_is_deleted_so_a_rerun_fetches_it_again(tmp_path: Path) -> None:
    archive = tmp_path / "covers.zip"
    archive.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="corrupt zip"):
        extract_covers(archive, tmp_path / "covers")
    assert not archive.exists()


# --- command line -------------------------------------------------------------------------------
def parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def test_cli_flags_and_defaults() -> None:
    args = parse(["download", "--out", "d"])
    assert (args.base_url, args.variant, args.out) == (None, "100k", Path("d"))
    assert (args.workers, args.retries) == (8, 5)
    assert (args.timeout, args.min_bytes_per_s, args.stall_window, args.deadline) == (60, 1024, 60, 7200)
    assert (args.max_items, args.dataset_json, args.name) == (None, None, None)
    assert handler_of(args) is dl.run_download
    args = parse(["download", "--out", "d", "--variant", "50k", "--max-items", "7", "--retries", "0"])
    assert (args.variant, args.max_items, args.retries) == ("50k", 7, 0)
    args = parse(["verify-data", "--data-dir", "raw", "--kind", "microlens", "--report", "r.json"])
    assert (args.data_dir, args.kind, args.report) == (Path("raw"), "microlens", Path("r.json"))
    assert handler_of(args) is dl.run_verify
    for bad in (["--workers", "0"], ["--variant", "1m"], ["--retries", "-1"], ["--deadline", "0"]):
        with pytest.raises(SystemExit):
            parse(["download", "--out", "d", *bad])


# --- servers that state no size ---------------------------------------------------------------
def test_a_body_without_length_cut_short_is_completed_by_asking_for_the_rest(
    tree: MicroLensTree, server: StubServer, tmp_path: Path
) -> None:
    size = len(tree.files["MicroLens-100k_pairs.csv"])
    server.set_fault(PAIRS, Fault(no_length=True, cut_after=size // 2))
    server.set_fault(TITLES, Fault(no_length=True))
    out = tmp_path / "dl"
    fetch(server, out)

    # the 200 ended cleanly at half the file; the request for the bytes after it got the rest
    assert [r.range for r in server.requests_for(PAIRS)] == [None, f"bytes={size // 2}-"]
    titles = len(tree.files["MicroLens-100k_title_en.csv"])
    assert [r.range for r in server.requests_for(TITLES)] == [None, f"bytes={titles}-"]  # 416: whole
    assert_identical(tree, out)
    checks = {f["path"]: f["check"] for f in json.loads((out / "manifest.json").read_text())["files"]}
    assert checks["pairs.csv"] == checks["titles.csv"] == "size"


def test_without_length_or_range_a_csv_is_marked_unverified_and_said_so(
    tree: MicroLensTree, server: StubServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server.set_fault(TITLES, Fault(no_length=True, ignore_range=True, cut_after=40, cut_times=99))
    out = tmp_path / "dl"
    manifest = fetch(server, out)

    assert (out / "titles.csv").read_bytes() == tree.files["MicroLens-100k_title_en.csv"][:40]
    record = json.loads((out / "manifest.json").read_text())
    assert {f["path"]: f["check"] for f in record["files"]}["titles.csv"] == "unverified"
    assert record["counts"]["unverified"] == 1 and manifest.unverified[0].path == "titles.csv"
    warning = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"][-1]
    assert warning.startswith("1 file(s) could not be verified: the server did not state their size")
    assert "(titles.csv)" in warning and '"check": "unverified"' in warning

    server.set_fault(TITLES, None)  # the next run fetches it again; now the size is stated
    server.reset_log()
    fetch(server, out)
    assert [r.range for r in server.requests_for(TITLES)] == [None]
    assert server.requests_for(PAIRS) == []
    assert_identical(tree, out)
    assert json.loads((out / "manifest.json").read_text())["counts"]["unverified"] == 0


def test_without_length_or_range_a_cut_video_fails_its_structure_check(
    tree: MicroLensTree, server: StubServer, tmp_path: Path
) -> None:
    whole, cut = tree.item_ids[0], tree.item_ids[1]
    for item in (whole, cut):
        server.set_file(video_path(item), mp4_like(tree.videos[item]))
    server.set_fault(video_path(whole), Fault(no_length=True, ignore_range=True))
    server.set_fault(video_path(cut), Fault(no_length=True, ignore_range=True, cut_after=5000, cut_times=99))
    out = tmp_path / "dl"
    with pytest.raises(DownloadError) as caught:
        fetch(server, out, retries=1)

    message = str(caught.value)
    assert "1 of 12 video(s)" in message and server.url + video_path(cut) in message
    assert "the server stated no size and the 5000 bytes received are not whole" in message
    assert "box b'mdat' at byte" in message and "past the end (5000)" in message
    assert not (out / "videos" / f"{cut}.mp4").exists()
    assert (out / "videos" / f"{whole}.mp4").read_bytes() == mp4_like(tree.videos[whole])
    checks = {f["path"]: f["check"] for f in json.loads((out / "manifest.incomplete.json").read_text())["files"]}
    assert checks[f"videos/{whole}.mp4"] == "content"


# --- two downloads into one folder ------------------------------------------------------------
def test_a_second_download_into_the_same_folder_stops_and_the_first_is_whole(
    tree: MicroLensTree, server: StubServer, tmp_path: Path
) -> None:
    server.set_fault(PAIRS, Fault(trickle=(4096, 0.05)))  # the first holds the folder a while
    out = tmp_path / "dl"
    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(fetch, server, out)
        while not server.requests_for(PAIRS):
            time.sleep(0.01)
        second = pool.submit(fetch, server, out)
        with pytest.raises(DownloadError) as caught:
            second.result()
        first.result()

    message = str(caught.value)
    assert f"{out}: another download into this folder is running (pid {os.getpid()} on " in message
    assert "Wait for it to finish (or stop it), then run this command again" in message
    assert len(server.requests_for(PAIRS)) == 1  # the second never requested anything
    assert_identical(tree, out)
    fetch(server, out)  # the lock is released with the first download


def test_a_second_process_is_refused_while_the_folder_is_locked(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from crossan.data.download import folder_lock\n"
        "with folder_lock(Path(sys.argv[1])):\n"
        "    print('locked', flush=True)\n"
        "    time.sleep(30)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(DownloadError, match=f"running \\(pid {holder.pid} on "):
            dl.download_microlens("http://127.0.0.1:9/x/", tmp_path, policy=policy(retries=0))
    finally:
        holder.kill()
        holder.wait()
    with dl.folder_lock(tmp_path):  # a killed holder leaves no lock behind
        pass


# --- trickling servers --------------------------------------------------------------------------
def test_a_trickling_server_is_cut_off_and_the_retry_resumes(
    tree: MicroLensTree, server: StubServer, tmp_path: Path
) -> None:
    server.set_fault(TITLES, Fault(trickle=(1, 0.05), trickle_times=1))
    out = tmp_path / "dl"
    fetch(server, out, min_bytes_per_s=100, stall_window_s=0.3)

    ranges = [r.range for r in server.requests_for(TITLES)]
    assert len(ranges) == 2 and ranges[0] is None and ranges[1].startswith("bytes=")
    assert int(ranges[1][len("bytes=") : -1]) > 0  # resumed, not restarted
    assert_identical(tree, out)


def test_a_server_that_never_speeds_up_ends_in_a_clear_error(server: StubServer, tmp_path: Path) -> None:
    server.set_fault(PAIRS, Fault(trickle=(1, 0.05)))
    with pytest.raises(DownloadError) as caught:
        fetch(server, tmp_path / "dl", retries=1, min_bytes_per_s=100, stall_window_s=0.3)

    message = str(caught.value)
    assert server.url + PAIRS in message and "failed after 2 attempts" in message
    assert "stalled at" in message and "below download.min_bytes_per_s = 100" in message
    assert "`download:` settings" in message


def test_the_deadline_ends_an_attempt_and_retries_resume_until_whole(
    tree: MicroLensTree, server: StubServer, tmp_path: Path
) -> None:
    item = tree.item_ids[2]
    server.set_fault(video_path(item), Fault(trickle=(2000, 0.05)))  # ~40 kB/s: not a stall
    out = tmp_path / "dl"
    fetch(server, out, retries=20, min_bytes_per_s=100, stall_window_s=5, deadline_s=0.2)

    starts = [int(r.range[len("bytes=") : -1]) if r.range else 0 for r in server.requests_for(video_path(item))]
    assert len(starts) > 2 and starts == sorted(starts) and len(set(starts)) == len(starts)
    assert_identical(tree, out)

    server.reset_log()
    with pytest.raises(DownloadError, match=r"still transferring after 0.2 s \(download.deadline_s\)"):
        fetch(server, tmp_path / "again", retries=0, deadline_s=0.2)


# --- a file that changed between attempts -------------------------------------------------------
def changed_pairs(tree: MicroLensTree) -> bytes:
    """The same interactions in another order: a new version of the file, same items."""
    header, *rows = tree.files["MicroLens-100k_pairs.csv"].decode().splitlines(keepends=True)
    return (header + "".join(reversed(rows))).encode()


@pytest.mark.parametrize("server_honours_if_range", [True, False])
def test_a_file_changed_on_the_server_is_fetched_again_not_stitched(
    server_honours_if_range: bool, tree: MicroLensTree, server: StubServer, tmp_path: Path
) -> None:
    server.set_fault(PAIRS, Fault(cut_after=100, cut_times=99))
    out = tmp_path / "dl"
    with pytest.raises(DownloadError, match="incomplete: 100 of"):
        fetch(server, out, retries=0)
    new = changed_pairs(tree)
    server.set_file(PAIRS, new)
    server.set_fault(PAIRS, Fault(ignore_if_range=not server_honours_if_range))
    server.reset_log()
    fetch(server, out)

    requests = server.requests_for(PAIRS)
    assert requests[0].range == "bytes=100-"
    assert requests[0].if_range == '"' + hashlib.sha256(tree.files["MicroLens-100k_pairs.csv"]).hexdigest()[:16] + '"'
    # honoured: one 200 with the new file; ignored: a 206 with a new ETag, thrown away
    assert [r.range for r in requests] == (["bytes=100-"] if server_honours_if_range else ["bytes=100-", None])
    assert (out / "pairs.csv").read_bytes() == new
    assert partials(out) == [] and list(out.rglob("*.validator")) == []


# --- issue 27, class 1: a body that is not the file is refused, never stored --------------------
HTML_PAGE = b"\xef\xbb\xbf\n  <!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>quota</body></html>\n"


@pytest.mark.parametrize(
    ("target", "body", "fault", "reason"),
    [
        ("titles", None, Fault(content_encoding="gzip"), "Content-Encoding: gzip"),
        ("video", None, Fault(content_encoding="gzip"), "Content-Encoding: gzip"),
        ("covers", None, Fault(content_encoding="deflate"), "Content-Encoding: deflate"),
        ("titles", HTML_PAGE, Fault(content_type="text/html; charset=utf-8"), "a web page (Content-Type: text/html)"),
        ("titles", HTML_PAGE, None, "it is an HTML page, not a CSV file"),
        ("video", b"<html lang='en'><body>Not found</body></html>", None, "it is an HTML page, not an MP4 video"),
        ("video", b"\0\0\0\x10junkjunkjunkjunk" * 50, None, "no ISO-BMFF box at byte 0"),
        ("covers", b"\x89PNG\r\n\x1a\n" + b"\0" * 100, None, "does not start with PK\\x03\\x04"),
        ("titles", b"1,caf\xe9\n", None, "it is not UTF-8 text"),
        ("titles", b"1,a\0b\n", None, "a NUL byte at byte 3"),
    ],
)
def test_a_body_that_is_not_the_file_is_refused_and_never_stored(
    target: str, body: bytes | None, fault: Fault | None, reason: str,
    tree: MicroLensTree, server: StubServer, tmp_path: Path,
) -> None:
    item = tree.item_ids[2]
    path, local = {
        "titles": (TITLES, "titles.csv"), "covers": (COVERS, "covers.zip"),
        "video": (video_path(item), f"videos/{item}.mp4"),
    }[target]
    if body is not None:
        server.set_file(path, body)
    server.set_fault(path, fault)
    out = tmp_path / "dl"
    with pytest.raises(DownloadError) as caught:
        fetch(server, out)

    message = str(caught.value)
    assert server.url + path in message and reason in message
    assert f"the body is not {Path(local).name}" in message or "encoded" in message or "web page" in message
    if target == "video":  # listed with the other failed videos; the rest are complete
        assert "1 of 12 video(s)" in message and "rerunning fetches only the missing ones" in message
    else:
        assert f"Not retried, and nothing was stored as {Path(local).name}" in message
        assert f"put at {out / local} is checked and kept by the next run" in message
    assert not (out / local).exists() and partials(out) == []
    assert len(server.requests_for(path)) == 1  # not retried: the same body would come again
    assert not (out / "manifest.json").exists()


@pytest.mark.parametrize(
    ("kind", "head", "verdict"),
    [
        ("csv", b"user,item,timestamp\n1,2,3\n", None),
        ("csv", b"\xef\xbb\xbfid,title\n1,Caf\xc3\xa9 \xe2\x82\xac\n", None),
        ("csv", b"\n\t<HTML>\n<p>moved</p>", "an HTML page"),
        ("csv", b'<?xml version="1.0"?>\n<!DOCTYPE html PUBLIC>', "an HTML page"),
        ("csv", b"\x1f\x8b\x08\0\0\0\0\0", "gzip-compressed data"),
        ("zip", make_zip({"a.jpg": b"x"}), None),
        ("zip", b"\x1f\x8b\x08\0", "gzip-compressed data"),
        ("mp4", mp4_like(b"x" * 10), None),
        ("mp4", b"\0\0\0\x08free" + b"\0" * 20, None),
        ("mp4", b"\0\0\0\x08ftyp", None),
        ("mp4", b"RIFF\0\0\0\0AVI ", "no ISO-BMFF box"),
        ("mp4", b"\0\0\0", "too short"),
    ],
)
def test_body_problem_judges_a_file_by_its_leading_bytes(
    kind: str, head: bytes, verdict: str | None, tmp_path: Path
) -> None:
    path = tmp_path / f"f.{kind}"
    path.write_bytes(head)
    problem = fetch_mod.body_problem(path, kind)
    assert problem is None if verdict is None else verdict in problem


# --- issue 27, class 2: a stored file that fails its check is moved aside ------------------------
def test_a_downloaded_file_that_fails_its_check_is_moved_aside_and_fetched_again(
    tree: MicroLensTree, server: StubServer, tmp_path: Path
) -> None:
    server.set_file(PAIRS, b"user,item,timestamp\n1,2\n")  # text, but not an interaction file
    out = tmp_path / "dl"
    with pytest.raises(DataError) as caught:
        fetch(server, out)
    rejected = list(out.glob("pairs.csv.rejected-*"))
    assert len(rejected) == 1 and rejected[0].read_bytes() == b"user,item,timestamp\n1,2\n"
    message = str(caught.value)
    assert "line 2" in message and f"moved aside to {rejected[0]}" in message
    assert f"the next run downloads it again from {server.url + PAIRS}" in message
    assert not (out / "pairs.csv").exists()

    server.set_file(PAIRS, tree.files["MicroLens-100k_pairs.csv"])
    server.reset_log()
    fetch(server, out)
    assert [r.range for r in server.requests_for(PAIRS)] == [None]
    assert_identical(tree, out)


def test_a_page_left_under_a_final_name_by_an_older_run_is_moved_aside_not_adopted(
    tree: MicroLensTree, server: StubServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "dl"
    fetch(server, out)
    (out / "manifest.json").unlink()  # as an older version left it: no record, bad bodies
    (out / "pairs.csv").write_bytes(b"\x1f\x8b\x08\0" + b"\0" * 40)
    (out / "titles.csv").write_bytes(HTML_PAGE)
    item = tree.item_ids[0]
    (out / "videos" / f"{item}.mp4").write_bytes(HTML_PAGE)
    server.reset_log()
    fetch(server, out)

    assert {r.path for r in server.requests} == {PAIRS, TITLES, video_path(item)}
    assert_identical(tree, out)
    for name in ("pairs.csv", "titles.csv", f"videos/{item}.mp4"):
        assert len(list(out.glob(f"{name}.rejected-*"))) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("titles.csv: it is an HTML page" in w and "moved aside to titles.csv.rejected-" in w for w in warnings)


# --- issue 27, class 3: a file is never stitched from two versions -------------------------------
@pytest.mark.parametrize(
    ("server_kind", "validators"),
    [("no validator", {"etag": False, "last_modified": False}),
     ("only Last-Modified, If-Range ignored", {"etag": False, "ignore_if_range": True})],
)
def test_a_partial_from_an_earlier_run_is_resumed_only_with_a_checked_validator(
    server_kind: str, validators: dict[str, bool], tree: MicroLensTree, server: StubServer, tmp_path: Path
) -> None:
    server.set_fault(PAIRS, Fault(cut_after=100, cut_times=99, **validators))
    out = tmp_path / "dl"
    with pytest.raises(DownloadError, match="incomplete: 100 of"):
        fetch(server, out, retries=0)
    assert (out / "pairs.csv.partial").stat().st_size == 100
    new = changed_pairs(tree)  # same size, other bytes from byte 100 on
    server.set_file(PAIRS, new)
    server.set_fault(PAIRS, Fault(**validators))
    server.reset_log()
    fetch(server, out)

    requests = server.requests_for(PAIRS)
    if server_kind == "no validator":  # nothing proves the 100 bytes are of this version
        assert [r.range for r in requests] == [None]
    else:  # the 206 carries another Last-Modified: thrown away, started over
        assert [(r.range, r.if_range) for r in requests] == [("bytes=100-", last_modified_of(0)), (None, None)]
    assert (out / "pairs.csv").read_bytes() == new
    assert json.loads((out / "manifest.json").read_text())["counts"]["unverified"] == 0


def test_within_a_run_a_cut_transfer_resumes_even_without_validators(
    tree: MicroLensTree, server: StubServer, tmp_path: Path
) -> None:
    server.set_fault(PAIRS, Fault(cut_after=100, etag=False, last_modified=False))
    out = tmp_path / "dl"
    fetch(server, out)
    assert [r.range for r in server.requests_for(PAIRS)] == [None, "bytes=100-"]
    assert_identical(tree, out)


# --- issue 27, class 4: a full disk ends in one clear error, and a rerun resumes -----------------
class FillingFile:
    """A file on a disk with room for ``room`` bytes: a write past them fails with ``code``
    after writing what fits, as ``write(2)`` does."""

    def __init__(self, handle: BinaryIO, room: int, code: int) -> None:
        self.handle, self.room, self.code = handle, room, code

    def write(self, data: bytes) -> int:
        free = max(self.room - self.handle.tell(), 0)
        self.handle.write(data[:free])
        if len(data) > free:
            raise OSError(self.code, os.strerror(self.code))
        return len(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)

    def __enter__(self) -> FillingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()


@pytest.mark.parametrize(
    ("code", "target", "cause"),
    [(errno.ENOSPC, "pairs", "the disk is full"),
     (errno.EDQUOT, "video", "the disk quota is exceeded"),
     (errno.EROFS, "titles", "the file system is read-only")],
)
def test_a_full_disk_ends_in_one_clear_error_and_a_rerun_resumes(
    code: int, target: str, cause: str, tree: MicroLensTree, server: StubServer,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    item = tree.item_ids[1]
    path, local = {
        "pairs": (PAIRS, "pairs.csv"), "titles": (TITLES, "titles.csv"),
        "video": (video_path(item), f"videos/{item}.mp4"),
    }[target]
    room = 100
    real_open = Path.open

    def open_on_a_filling_disk(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = real_open(self, mode, *args, **kwargs)
        writes = "b" in mode and ("a" in mode or "w" in mode)
        return FillingFile(handle, room, code) if writes and self.name == Path(local).name + ".partial" else handle

    monkeypatch.setattr(Path, "open", open_on_a_filling_disk)
    out = tmp_path / "dl"
    with pytest.raises(DownloadError) as caught:
        fetch(server, out)

    message = str(caught.value)
    size = len(server.state.files[path])
    assert message.startswith(f"{(out / local).parent}: cannot write, {cause} ({os.strerror(code)})")
    assert f"This file needs {fetch_mod._bytes(size - room)} more" in message and f"{size - room} bytes" in message
    assert f"rerun the same command; it resumes {Path(local).name}.partial from the 100 bytes kept" in message
    assert "Traceback" not in message and "video(s)" not in message
    assert (out / f"{local}.partial").stat().st_size == room

    monkeypatch.setattr(Path, "open", real_open)  # space freed
    server.reset_log()
    fetch(server, out)
    assert [r.range for r in server.requests_for(path)] == [f"bytes={room}-"]
    assert_identical(tree, out)


# --- issue 27, class 5: the MicroLens path takes the ids local data takes ------------------------
def test_text_item_ids_are_downloaded_in_the_readers_order(tmp_path: Path) -> None:
    tree = microlens_tree(seed=3, id_prefix="v")
    with StubServer(tree.served(PREFIX)) as stub:
        manifest = fetch(stub, tmp_path / "dl", max_items=4)
        first_four = tuple(sorted(tree.item_ids)[:4])  # text order, as the readers order them
        assert {r.path for r in stub.requests if "_videos/" in r.path} == {video_path(i) for i in first_four}
    assert manifest.n_items == 4
    assert_identical(tree, tmp_path / "dl", items=first_four)


def test_select_items_orders_like_the_readers() -> None:
    assert dl.select_items(["100", "9", "10"], 2) == ["9", "10"]
    assert dl.select_items(["v100", "v9", "B07XYZ", "10"], None) == ["10", "B07XYZ", "v100", "v9"]
    assert dl.select_items(["007", "10", "9"], None) == ["007", "10", "9"]  # not canonical: text


# --- issue 27, class 6: verify-data always reads the content --------------------------------------
@pytest.mark.parametrize(
    ("pairs", "fragment"),
    [(b"", "the interaction file is empty"),
     (b"user,item,timestamp\n1,2,x\n", "line 2"),
     (b"user,item,timestamp\n1,2\n", "line 2")],
)
def test_verify_data_without_report_reads_the_content(
    pairs: bytes, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from crossan.cli import main

    root = tmp_path / "raw"
    root.mkdir()
    (root / "titles.csv").write_text("1,one\n2,two\n", encoding="utf-8")
    (root / "pairs.csv").write_bytes(pairs)
    assert main(["verify-data", "--data-dir", str(root), "--kind", "local"]) == 1
    error = capsys.readouterr().err
    assert "crossan verify-data: error:" in error and str(root / "pairs.csv") in error and fragment in error

    (root / "pairs.csv").write_bytes(b"user,item,timestamp\n1,2,5\n3,2,6\n3,1,7\n")
    assert main(["verify-data", "--data-dir", str(root), "--kind", "local"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"verify-data: dataset 'raw' (local) in {root}: content checked: ")
    assert "3 interactions of 2 items in pairs.csv, 2 titles in titles.csv" in lines[0]
