"""The Snakemake workflow itself: lint, dry run, config errors, and a small demo end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]


def snakemake(workdir: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SNAKEMAKE, "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"), *args],
        capture_output=True, text=True, timeout=timeout,
    )


def small_demo_config(workdir: Path, **demo: object) -> None:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["catalog"]["demo"].update({"users": 60, "items": 30, "topics": 4, **demo})
    config["catalog"]["demo"]["media"] = {"video_size": 32, "image_size": 32}
    config["media"].update({"workers": 1, "chunk_items": 8})
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))


def test_lint_is_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr, result.stdout


def test_dry_run_lists_the_stage_1a_jobs(tmp_path: Path) -> None:
    small_demo_config(tmp_path)
    result = snakemake(tmp_path, "-n", "all", "--cores", "2")
    assert result.returncode == 0, result.stderr
    for job in ("demo_data", "dataset_manifest", "sequences", "sample_media"):
        assert job in result.stdout


def test_a_bad_config_stops_before_any_job(tmp_path: Path) -> None:
    small_demo_config(tmp_path, users="many")
    result = snakemake(tmp_path, "--cores", "2", "all")
    assert result.returncode != 0
    assert "key 'catalog.demo.users': 'many' is not of type 'integer'" in result.stderr + result.stdout
    assert not (tmp_path / "resources").exists()


def test_demo_end_to_end_then_nothing_to_do(tmp_path: Path) -> None:
    small_demo_config(tmp_path)
    result = snakemake(tmp_path, "--cores", "2", "all")
    assert result.returncode == 0, result.stderr[-3000:]

    stats = json.loads((tmp_path / "results/demo/data/stats.json").read_text())
    assert stats["users"] == 60
    assert 0 < stats["items"] <= 30
    truth = json.loads((tmp_path / "resources/demo/demo/demo_truth.json").read_text())
    with h5py.File(tmp_path / "results/demo/media/video.h5") as video:
        assert video["frames"].shape[1:] == (16, 32, 32, 3)
        assert int((~video["valid"][1:]).sum()) == 1  # the planted corrupt video
    with h5py.File(tmp_path / "results/demo/media/image.h5") as image:
        assert int((~image["valid"][1:]).sum()) == 1  # the planted missing cover
    with h5py.File(tmp_path / "results/demo/media/audio.h5") as audio:
        invalid = int((~audio["valid"][1:]).sum())
        assert invalid >= 2  # the audio-less videos plus the corrupt one
    assert truth  # the generator recorded its planted defects

    again = snakemake(tmp_path, "--cores", "2", "-n", "all")
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr
