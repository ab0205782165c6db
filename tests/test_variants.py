"""Folders that keep settings apart (crossan/runs/variants.py): what --config changes lands
beside the config files' own outputs, named by a digest of the changed settings."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from crossan.config import load_config
from crossan.machine import cores_warning
from crossan.runs.identity import settings_digest
from crossan.runs.variants import FOLDERS, dataset_folders

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def files() -> dict:
    return load_config(REPO / "config.yaml")


def changed(files: dict, edit) -> dict:
    config = copy.deepcopy(files)
    edit(config)
    return config


def test_the_config_files_own_settings_keep_the_plain_folders(files: dict) -> None:
    folders = dataset_folders(files, files, "demo")
    assert dict(folders.names) == {stage: stage for stage in FOLDERS} and folders.is_default
    assert folders.describe() == ""


def test_a_training_setting_gives_new_table_folders_only(files: dict) -> None:
    folders = dataset_folders(changed(files, lambda c: c["training"].update(max_epochs=3)), files, "demo")
    suffix = "-x" + settings_digest({"training.max_epochs": 3})
    assert {stage: folders[stage] for stage in FOLDERS} == {
        "media": "media", "features": "features", "graph": "graph", "runs": "runs",  # run names carry it
        "tables": f"tables{suffix}", "figures": f"figures{suffix}", "beyond": f"beyond{suffix}",
        "efficiency": f"efficiency{suffix}",
    }
    assert folders.describe().splitlines()[0] == f"results/demo/tables{suffix}/ (training.max_epochs=3)"


def test_media_and_encoder_settings_give_new_folders_to_what_they_change(files: dict) -> None:
    media = dataset_folders(changed(files, lambda c: c["media"].update(frames=8)), files, "demo")
    digest = settings_digest({"media.frames": 8})
    assert {stage: media[stage] for stage in FOLDERS} == {stage: f"{stage}-x{digest}" for stage in FOLDERS}

    def bigger_text(config: dict) -> None:
        config["catalog"]["demo"]["encoders"]["text"]["layers"] = [0, 6]

    encoder = dataset_folders(changed(files, bigger_text), files, "demo")
    assert encoder["media"] == "media"  # sampled media stay: no media setting changed
    assert encoder["features"] == "features-x" + settings_digest({"encoders.text.layers": [0, 6]})
    assert encoder.suffix("features") == encoder.suffix("graph") == encoder.suffix("runs") == encoder.suffix("tables")


def test_settings_that_change_no_output_change_no_folder(files: dict) -> None:
    def resources(config: dict) -> None:
        config["media"]["workers"] = 7
        config["training"]["gpu"] = 0
        config["encoders"]["video"]["batch_size"] = 1

    assert dataset_folders(changed(files, resources), files, "demo").is_default


def test_two_values_give_two_folders_and_going_back_gives_the_first(files: dict) -> None:
    names = {value: dataset_folders(changed(files, lambda c: c["training"].update(inter_tower=value)), files,
                                    "demo")["tables"] for value in ("convex", "residual")}
    assert names["residual"] == "tables" and names["convex"].startswith("tables-x")


def test_too_many_cores_are_warned_about() -> None:
    assert cores_warning(2, 2) == "" and cores_warning(None, 2) == ""
    warning = cores_warning(8, 2)
    assert warning.startswith("--cores 8 is more than this machine's 2 cores") and "--cores 2" in warning


def test_the_folders_the_readme_quotes(files: dict) -> None:
    """README "Changing a setting, and comparing two" names these folders."""
    frozen = dataset_folders(changed(files, lambda c: c["training"].update(layer0_previous="frozen")), files, "demo")
    assert frozen["tables"] == "tables-xc4b05fef" and frozen["runs"] == "runs"
    frames = dataset_folders(changed(files, lambda c: c["media"].update(frames=8)), files, "demo")
    assert frames["media"] == frames["features"].replace("features", "media") == "media-x9b1f9a92"
