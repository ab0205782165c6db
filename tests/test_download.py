"""MicroLens download against a loopback server: resume, retries, 404s, reruns, concurrency."""

from __future__ import annotations

import argparse
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

import pytest
from http_stub import Fault, MicroLensTree, StubServer, make_zip, microlens_tree

from crossan.data import download as dl
from crossan.data.fetch import RetryPolicy
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


def partials(root: Path) -> list[Path]:
    return sorted(root.rglob("*.partial"))


def assert_identical(tree: MicroLensTree, out: Path, items: tuple[str, ...] | None = None) -> None:
    items = tree.item_ids if items is None else items
    assert (out / "pairs.csv").read_bytes() == tree.files["MicroLens-100k_pairs.csv"]
    assert (out / "titles.csv").read_bytes() == tree.files["MicroLens-100k_title_en.csv"]
    assert {p.name: p.read_bytes() for p in (out / "covers").iterdir()} == tree.covers
    videos = {p.stem: p.read_bytes() for p in (out / "videos").iterdir()}
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
    assert args.func(args) == 0

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
        dl.extract_covers(archive, dest)
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
        dl.extract_covers(archive, tmp_path / "covers")


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
        dl.extract_covers(archive, tmp_path / "covers")
    assert not archive.exists()


# --- command line -------------------------------------------------------------------------------
def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    dl.register_cli(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_flags_and_defaults() -> None:
    args = parse(["download", "--out", "d"])
    assert (args.base_url, args.variant, args.out) == (None, "100k", Path("d"))
    assert (args.workers, args.retries) == (8, 5)
    assert (args.timeout, args.min_bytes_per_s, args.stall_window, args.deadline) == (60, 1024, 60, 7200)
    assert (args.max_items, args.dataset_json, args.name) == (None, None, None)
    assert args.func is dl.run_download
    args = parse(["download", "--out", "d", "--variant", "50k", "--max-items", "7", "--retries", "0"])
    assert (args.variant, args.max_items, args.retries) == ("50k", 7, 0)
    args = parse(["verify-data", "--data-dir", "raw", "--kind", "microlens", "--report", "r.json"])
    assert (args.data_dir, args.kind, args.report) == (Path("raw"), "microlens", Path("r.json"))
    assert args.func is dl.run_verify
    for bad in (["--workers", "0"], ["--variant", "1m"], ["--retries", "-1"], ["--deadline", "0"]):
        with pytest.raises(SystemExit):
            parse(["download", "--out", "d", *bad])


# --- servers that state no size ---------------------------------------------------------------
def mp4_like(payload: bytes) -> bytes:
    """Bytes with an MP4's top-level box structure (ftyp, moov, mdat); not decodable."""

    def box(kind: bytes, body: bytes) -> bytes:
        return (8 + len(body)).to_bytes(4, "big") + kind + body

    return box(b"ftyp", b"isom\0\0\2\0isomiso2") + box(b"moov", b"\0" * 40) + box(b"mdat", payload)


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
