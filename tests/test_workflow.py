"""The Snakemake workflow itself: lint, dry run, config errors, and a small demo end to end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import h5py
import numpy as np
import polars as pl
import yaml

from crossan.data.demo import generate_demo
from crossan.machine import machine_cores
from crossan.runs.identity import parse_run_name, settings_digest

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]


def snakemake(workdir: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SNAKEMAKE, "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"), *args],
        capture_output=True, text=True, timeout=timeout,
    )


def small_demo_config(workdir: Path, **demo: object) -> None:
    config = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    config["catalog"]["demo"].update({"users": 60, "items": 30, "topics": 4, **demo})
    config["catalog"]["demo"]["media"] = {"video_size": 64, "image_size": 64}  # the tiny encoders' input
    config["media"].update({"workers": 1, "chunk_items": 8})
    config["catalog"]["demo"]["runs"] = SMALL_RUNS
    config["catalog"]["demo"]["training"] = {"standardize_states": True, "max_epochs": 2, "patience": 1,
                                             "batch_size": 16, "graph_max_epochs": 2, "graph_patience": 1,
                                             "graph_batch_size": 64, "graph_k": 3,
                                             "graph_grid": {"freedom": {"edge_dropout": [0.8, 0.9]}}}
    config["catalog"]["demo"]["experiments"] = SMALL_EXPERIMENTS
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))


SMALL_RUNS = [{"method": "crossan", "modalities": "TIV", "hidden": 8, "lr": 1.0e-3}]  # an extra run
# Every table and figure, from 24 tiny runs (two seeds for Table 1: mean ± std; 3 for the tables
# beyond the paper: CROSSAN+CMSA on T+I and T+I+V+A, CROSSAN-MoDA).
SMALL_EXPERIMENTS = {
    "settings": {method: {"hidden": 8, "lr": 1.0e-3} for method in ("crossan", "indsan", "iisan", "id-sasrec")}
    | {"iisan-e": {"hidden": 16, "lr": 1.0e-3}} | {m: {"hidden": 8, "lr": 1.0e-2} for m in ("bm3", "freedom", "mgcn")},
    "table1": {"seeds": [0, 1]},
    "table3": {"modalities": ["TI", "TIVA"]},
    "table5": {"fusions": ["momef", "concat"]},
    "table7": {"topk": [2, 1]},
    "figure3": {"hidden": [8, 16]},
    "figure5": {"hidden": [8], "lr": [1.0e-3, 3.0e-3]},
    "table8": {"models": ["bm3", "freedom", "mgcn"]},
    "tableB3": {"models": ["bm3", "freedom", "mgcn"]},
}
# The digest in the names of the small demo's runs: the settings of its training block that the
# sequential models use and that are not the defaults; popularity uses none of them.
SEQUENTIAL = "-x" + settings_digest({"batch_size": 16, "max_epochs": 2, "patience": 1, "standardize_states": True})
CROSSAN_RUN = f"demo__crossan-TIVA-momef-k2-h8-lr1e-03-s0{SEQUENTIAL}"
POPULARITY_RUN = "demo__popularity"
TABLES = ("table1", "table3", "table4", "table5", "table6", "table7", "table8")
FIGURES = ("figure3", "figure4", "figure5")
BEYOND_TABLES = ("tableB1", "tableB2", "tableB3")


def test_lint_is_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr, result.stdout


def test_dry_run_lists_the_stage_1a_jobs(tmp_path: Path) -> None:
    small_demo_config(tmp_path)
    result = snakemake(tmp_path, "-n", "all", "--cores", "2")
    assert result.returncode == 0, result.stderr
    for job in (
        "demo_data", "dataset_manifest", "sequences", "sample_media",
        "tiny_encoders", "extract_features", "merge_features",
    ):
        assert job in result.stdout


def test_shards_scatter_into_jobs_and_gather(tmp_path: Path) -> None:
    small_demo_config(tmp_path)
    config = yaml.safe_load((tmp_path / "config.yaml").read_text(encoding="utf-8"))
    config["features"]["shards"] = 3
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n", "all", "--cores", "2")
    assert result.returncode == 0, result.stderr
    shards = set(re.findall(r"results/demo/features/shards/(\w+)-(\d)-of-3\.h5", result.stdout))
    assert shards == {(m, str(k)) for m in ("text", "image", "video", "audio") for k in range(3)}
    assert re.search(r"extract_features\s+12\b", result.stdout)
    assert re.search(r"merge_features\s+4\b", result.stdout)
    assert "gpu=1" in result.stdout  # each shard job asks the scheduler for one GPU


def test_one_run_by_its_path(tmp_path: Path) -> None:
    small_demo_config(tmp_path)
    name = f"demo__iisan-TI-concat-h16-lr1e-03-s2{SEQUENTIAL}"  # not configured
    printed = subprocess.run([sys.executable, "-m", "crossan.cli", "run-name", "--config", str(tmp_path / "config.yaml"),
                              "--method", "iisan", "--modalities", "TI", "--hidden", "16", "--lr", "1e-3",
                              "--seed", "2"], capture_output=True, text=True, timeout=120)
    assert printed.stdout.strip() == name, printed.stderr  # crossan run-name spells it out
    result = snakemake(tmp_path, "-n", "--cores", "2", f"results/demo/runs/{name}/metrics.json")
    assert result.returncode == 0, result.stderr
    assert re.search(r"train_run\s+1\b", result.stdout)
    assert f"--run {name}" in result.stdout
    assert "results/demo/features/text.h5" in result.stdout and "features/audio.h5" not in result.stdout

    # the same run with the default settings is not what this config trains: named, not guessed
    other = snakemake(tmp_path, "-n", "--cores", "2", f"results/demo/runs/{name.removesuffix(SEQUENTIAL)}/metrics.json")
    assert other.returncode != 0
    assert (f"does not match the training settings of dataset 'demo' in config.yaml (those of its method other than "
            f"the defaults: batch_size=16, max_epochs=2, patience=1, standardize_states=true): with them this run "
            f"is named {name}.") in other.stdout + other.stderr

    foreign = snakemake(tmp_path, "-n", "--cores", "2",
                        "results/demo/runs/other__crossan-TI-momef-k2-h16-lr1e-03-s0/metrics.json")
    assert foreign.returncode != 0
    assert "belongs to dataset 'other', not 'demo'" in foreign.stdout + foreign.stderr


def test_a_named_table_asks_for_its_runs_only(tmp_path: Path) -> None:
    small_demo_config(tmp_path)
    result = snakemake(tmp_path, "-n", "--cores", "2", "table5")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^table\s+1$", result.stdout, flags=re.M) and "figure" not in result.stdout
    runs = set(re.findall(r"--run (\S+)", result.stdout))
    assert runs == {CROSSAN_RUN, f"demo__crossan-TIVA-concat-h8-lr1e-03-s0{SEQUENTIAL}"}
    assert "--plan" in result.stdout and "results/demo/tables/table5.html" in result.stdout


def test_bad_run_specs_are_config_errors(tmp_path: Path) -> None:
    small_demo_config(tmp_path)
    config = yaml.safe_load((tmp_path / "config.yaml").read_text(encoding="utf-8"))
    config["catalog"]["demo"]["runs"] = [{"method": "iisan", "modalities": "TIVA"}]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n", "--cores", "2", "all")
    assert result.returncode != 0
    assert "runs of dataset 'demo', entry 1" in result.stdout + result.stderr
    assert "iisan is the text+image method" in result.stdout + result.stderr

    config["catalog"]["demo"]["runs"] = [{"method": "crossan", "lr": "1e-4"}]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n", "--cores", "2", "all")
    assert "key 'catalog.demo.runs.0.lr': '1e-4' is not of type 'number'" in result.stdout + result.stderr


def test_a_bad_config_stops_before_any_job(tmp_path: Path) -> None:
    small_demo_config(tmp_path, users="many")
    result = snakemake(tmp_path, "--cores", "2", "all")
    assert result.returncode != 0
    assert "key 'catalog.demo.users': 'many' is not of type 'integer'" in result.stderr + result.stdout
    assert not (tmp_path / "resources").exists()


def test_a_kept_layer_beyond_the_model_or_a_missing_model_folder_stops_the_dry_run(tmp_path: Path) -> None:
    small_demo_config(tmp_path)
    config = yaml.safe_load((tmp_path / "config.yaml").read_text(encoding="utf-8"))
    config["catalog"]["demo"]["encoders"]["text"]["layers"] = [0, 20]
    config["catalog"]["demo"]["encoders"]["image"]["model"] = "./checkpoints/vit"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n", "--cores", "2", "all")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert ("key 'catalog.demo.encoders.text.layers' (dataset 'demo', text encoder 'resources/models/tiny-demo/bert'): "
            "hidden-state indices [20] out of range; the model has num_hidden_layers=6, so indices 0..6 exist") in output
    assert ("key 'catalog.demo.encoders.image.model' (dataset 'demo', image encoder './checkpoints/vit'): "
            "model folder './checkpoints/vit' does not exist") in output
    assert "Traceback" not in output and not (tmp_path / "resources").exists()


def test_demo_end_to_end_then_nothing_to_do(tmp_path: Path) -> None:
    small_demo_config(tmp_path)
    result = snakemake(tmp_path, "--cores", "2", "all")
    assert result.returncode == 0, result.stderr[-3000:]

    stats = json.loads((tmp_path / "results/demo/data/stats.json").read_text(encoding="utf-8"))
    assert stats["users"] == 60
    assert stats["repeat_target_users"] == {"valid": 0, "test": 0}  # demo users never repeat an item
    assert 0 < stats["items"] <= 30
    defects = json.loads((tmp_path / "resources/demo/demo/demo_truth.json").read_text(encoding="utf-8"))["defects"]
    expected_invalid = {
        "video": {str(i): "corrupt" for i in defects["corrupt_video"]},
        "audio": {
            **{str(i): "no audio track" for i in defects["no_audio"]},
            **{str(i): "corrupt" for i in defects["corrupt_video"]},
        },
        "image": {str(i): "missing file" for i in defects["missing_cover"]},
    }
    for modality, expected in expected_invalid.items():
        with h5py.File(tmp_path / f"results/demo/media/{modality}.h5") as store:
            valid = store["valid"][1:]
            ids = [x.decode() for x in store["item_id"][1:]]
            reasons = [x.decode() for x in store["reason"][1:]]
        invalid = {ids[row]: reasons[row] for row in range(len(ids)) if not valid[row]}
        assert sorted(invalid) == sorted(expected), modality
        for item, reason in invalid.items():
            assert reason.startswith(expected[item]), (modality, item, reason)
    for run in (CROSSAN_RUN, POPULARITY_RUN):  # the configured runs, each in its named folder
        metrics = json.loads((tmp_path / f"results/demo/runs/{run}/metrics.json").read_text(encoding="utf-8"))
        assert metrics["run_name"] == run and metrics["n_users"]["test"] == 60
        # the dataset's training block, to the runs whose method uses it (popularity reads no states)
        assert metrics["config"]["standardize_states"] is (run == CROSSAN_RUN)
        settings = json.loads((tmp_path / f"results/demo/runs/{run}/settings.json").read_text(encoding="utf-8"))
        assert settings["changed"] == ({"batch_size": 16, "max_epochs": 2, "patience": 1, "standardize_states": True}
                                       if run == CROSSAN_RUN else {})
        assert (tmp_path / f"results/demo/logs/train/{run}.log").is_file()
    assert json.loads((tmp_path / f"results/demo/runs/{CROSSAN_RUN}/metrics.json").read_text(encoding="utf-8"))["epochs_run"] <= 2
    with h5py.File(tmp_path / "results/demo/media/video.h5") as video:
        assert video["frames"].attrs["item_shape"].tolist() == [16, 64, 64, 3]  # JPEG, decoded
    items = (tmp_path / "results/demo/data/items.csv").read_text(encoding="utf-8")
    assert f'{defects["empty_title"][0]},""' in items  # the empty title survives as empty

    n_items = stats["items"]
    for modality in ("text", "image", "video", "audio"):
        with h5py.File(tmp_path / f"results/demo/features/{modality}.h5") as store:
            assert store["features"].shape == (n_items + 1, 7, 32)
            assert store["features"].dtype == "float16"
            assert not store["features"][0].any()  # padding row
            valid = store["valid"][:]
        if modality == "text":
            assert valid[1:].all()  # an empty title is still a valid input
        else:
            with h5py.File(tmp_path / f"results/demo/media/{modality}.h5") as media:
                assert (valid == media["valid"][:]).all()  # the media mask carries over

    # every table and figure, read from the runs named in its CSV
    for table in TABLES:
        frame = pl.read_csv(tmp_path / f"results/demo/tables/{table}.csv")
        for runs in frame["runs"].drop_nulls():
            for run in filter(None, runs.split(";")):
                assert (tmp_path / f"results/demo/runs/{run}/metrics.json").is_file(), (table, run)
        assert (tmp_path / f"results/demo/tables/{table}.md").read_text(encoding="utf-8").startswith(f"**Table {table[5:]}** (demo)")
    table3 = pl.read_csv(tmp_path / "results/demo/tables/table3.csv")
    crossan_row = table3.filter(pl.col("row") == "CROSSAN (T+I+V+A) (ours)").row(0, named=True)
    crossan_metrics = json.loads((tmp_path / f"results/demo/runs/{CROSSAN_RUN}/metrics.json").read_text(encoding="utf-8"))
    assert crossan_row["runs"] == CROSSAN_RUN and crossan_row["HR@10"] == crossan_metrics["test"]["HR@10"]
    lora_row = table3.filter(pl.col("row") == "LoRA (T+I)").row(0, named=True)
    assert lora_row["runs"].startswith("demo__lora-h")  # end to end: covers and checkpoints, no features
    lora = json.loads((tmp_path / f"results/demo/runs/{lora_row['runs']}/metrics.json").read_text(encoding="utf-8"))
    assert lora_row["HR@10"] == lora["test"]["HR@10"] and lora["config"]["batch_size"] == 32  # e2e_batch_size
    assert lora["inputs"]["masked_covers"] == len(defects["missing_cover"])  # masked as in stage 1
    assert lora["inputs"]["empty_titles"] == len(defects["empty_title"])
    table8 = pl.read_csv(tmp_path / "results/demo/tables/table8.csv")
    assert table8["row"].to_list() == ["BM3", "FREEDOM", "MGCN", "IISAN (T+I)", "CROSSAN (T+I+V+A) (ours)"]
    freedom_run = table8.filter(pl.col("row") == "FREEDOM")["runs"].item()
    freedom = json.loads((tmp_path / f"results/demo/runs/{freedom_run}/metrics.json").read_text(encoding="utf-8"))
    assert freedom_run == "demo__freedom-TIVA-h8-lr1e-02-s0-x" + settings_digest(  # MMRec's loop, not SASRec's
        {"graph_batch_size": 64, "graph_max_epochs": 2, "graph_patience": 1, "graph_k": 3, "standardize_states": True,
         "graph_grid": {"edge_dropout": [0.8, 0.9]}})
    assert freedom["config"]["batch_size"] == 64
    assert [point["params"] for point in freedom["grid"]] == [{"edge_dropout": 0.8}, {"edge_dropout": 0.9}]
    assert freedom["graph"] == {"file": "results/demo/graph/graph.h5", "layer": 6, "training_pairs":
                                freedom["graph"]["training_pairs"], "k": 3}
    table1 = pl.read_csv(tmp_path / "results/demo/tables/table1.csv")
    assert table1["row"].to_list()[-1] == "Mutual Information" and table1["CROSSAN_n"].to_list() == [2] * 5
    for figure in FIGURES:
        png = tmp_path / f"results/demo/figures/{figure}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (png.with_suffix(".svg")).is_file()
    # beyond the paper: their own folder, read from the runs named in their CSVs
    for table in BEYOND_TABLES:
        for run in filter(None, ";".join(pl.read_csv(tmp_path / f"results/demo/beyond/{table}.csv")["runs"]
                                         .drop_nulls()).split(";")):
            assert (tmp_path / f"results/demo/runs/{run}/metrics.json").is_file(), (table, run)
        assert (tmp_path / f"results/demo/beyond/{table}.md").read_text(encoding="utf-8").startswith(
            f"**Table {table[5:]}** (demo): Beyond the paper:")
    assert (tmp_path / "results/demo/beyond/figureB1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tableB3 = pl.read_csv(tmp_path / "results/demo/beyond/tableB3.csv")  # one seed: the run's own numbers
    crossan_row = tableB3.filter(pl.col("row").str.starts_with("CROSSAN"))
    crossan_run = json.loads((tmp_path / f"results/demo/runs/{crossan_row['runs'].item()}/metrics.json")
                             .read_text(encoding="utf-8"))
    for bucket in ("head", "torso", "tail"):
        assert crossan_row[f"{bucket.capitalize()} HR@10"].item() == crossan_run["test_by_popularity"][bucket]["HR@10"]

    report = snakemake(tmp_path, "--report", "results/report.html")
    assert report.returncode == 0, report.stderr[-3000:]
    html = (tmp_path / "results/report.html").read_text(encoding="utf-8")
    for name in [*TABLES, *FIGURES, *BEYOND_TABLES, "figureB1"]:
        assert name in html
    # the report's category (the captions say "Beyond the paper:" too, so look at the category index)
    assert '"Beyond the paper": {"demo": ["results/demo/beyond/figureB1.png", "results/demo/beyond/tableB1.csv"' in html
    assert "Top-K experts of CROSSAN" in html and "learned gates per tower" in html  # captions

    again = snakemake(tmp_path, "--cores", "2", "-n", "all")
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr

    # A named table asks for its runs only; here they exist, so only the table is redone.
    (tmp_path / "results/demo/tables/table5.csv").unlink()
    one = snakemake(tmp_path, "--cores", "2", "-n", "table5")
    assert re.search(r"^table\s+1$", one.stdout, flags=re.M) and "train_run" not in one.stdout, one.stdout

    # A convention reruns exactly the runs whose results it changes: the IISAN inter tower,
    # only the IISAN and IISAN-E runs (and the tables and figures built from them).
    config = yaml.safe_load((tmp_path / "config.yaml").read_text(encoding="utf-8"))
    config["catalog"]["demo"]["training"]["inter_tower"] = "convex"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    changed = snakemake(tmp_path, "--cores", "2", "-n", "all")
    assert changed.returncode == 0, changed.stderr
    planned = re.findall(r"^rule (\w+):\n(?:.*\n)*?\s+output: ([^\s,]+)", changed.stdout, flags=re.M)
    retrained = {out.split("/")[3] for rule, out in planned if rule == "train_run"}
    assert {parse_run_name(run)["method"] for run in retrained} == {"iisan", "iisan-e"}
    # (and Table 4's measurement, which times the IISAN-E runs again)
    assert {rule for rule, _ in planned} == {"train_run", "efficiency", "table", "figure", "beyond_table",
                                             "beyond_figure"}
    del config["catalog"]["demo"]["training"]["inter_tower"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))

    # Changing one encoder's kept layers reruns exactly that modality, the runs that read audio
    # and the tables and figures built from those runs.
    config = yaml.safe_load((tmp_path / "config.yaml").read_text(encoding="utf-8"))
    config["catalog"]["demo"]["encoders"]["audio"]["layers"] = [0, 3, 6]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    changed = snakemake(tmp_path, "--cores", "2", "-n", "all")
    assert changed.returncode == 0, changed.stderr
    planned = re.findall(r"^rule (\w+):\n(?:.*\n)*?\s+output: ([^\s,]+)", changed.stdout, flags=re.M)
    stage1 = [(rule, out) for rule, out in planned if rule in ("extract_features", "merge_features")]
    assert sorted(stage1) == [("extract_features", "results/demo/features/shards/audio-0-of-1.h5"),
                              ("merge_features", "results/demo/features/audio.h5")]
    retrained = {out.split("/")[3] for rule, out in planned if rule == "train_run"}
    assert CROSSAN_RUN in retrained
    assert all(parse_run_name(run)["modalities"].endswith("A") for run in retrained)  # only runs reading audio
    # the graph file reads every modality's states, so the graph recommenders rerun too
    assert ("build_graph", "results/demo/graph/graph.h5") in planned
    assert {rule for rule, _ in planned} == {"extract_features", "merge_features", "build_graph", "train_run",
                                             "efficiency", "table", "figure", "beyond_table", "beyond_figure"}


# A user's own dataset (kind local), made by the demo generator: 3 runs that read different
# modalities, so each raw change shows which runs it reaches.
LOCAL_RUNS = [{"method": "id-sasrec"}, {"method": "crossan", "modalities": "TI"},
              {"method": "crossan", "modalities": "VA"}]
ID_RUN, TI_RUN, VA_RUN = ("mine__id-sasrec-lr1e-04-s0", "mine__crossan-TI-momef-k2-h512-lr1e-04-s0",
                          "mine__crossan-VA-momef-k2-h512-lr1e-04-s0")


def local_dataset_config(workdir: Path) -> Path:
    """A `local` dataset `mine` in `workdir/raw` (relative data_dir) and a config for it alone."""
    generate_demo(workdir / "raw", n_users=60, n_items=30, n_topics=4)
    config = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    config["datasets"] = ["mine"]
    config["catalog"]["mine"] = {"kind": "local", "data_dir": "raw", "runs": LOCAL_RUNS,
                                 "experiments": {"targets": []}}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return workdir / "raw"


def planned_jobs(result: subprocess.CompletedProcess) -> set[tuple[str, str]]:
    """(rule, main output) of every job a dry run plans: a run's metrics.json (written last,
    whatever the order the rule lists its outputs in), else the job's first output."""
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = set()
    for rule, outputs in re.findall(r"^rule (\w+):\n(?:.*\n)*?\s+output: (.+)$", result.stdout, flags=re.M):
        files = outputs.split(", ")
        jobs.add((rule, next((f for f in files if f.endswith("/metrics.json")), files[0])))
    return jobs


def mark_all_done(workdir: Path, create: bool = False) -> None:
    """Every output of `all` up to date without running a job: `--touch` in job order (which
    also records Snakemake's metadata), after creating them empty when ``create``."""
    if create:
        planned = snakemake(workdir, "-n", "--cores", "1", "all")
        assert planned.returncode == 0, planned.stderr[-3000:]
        for outputs in re.findall(r"^\s+output: (.+)$", planned.stdout, flags=re.M):
            for output in outputs.split(", "):
                (workdir / output).parent.mkdir(parents=True, exist_ok=True)
                (workdir / output).touch()
    touched = snakemake(workdir, "--touch", "--cores", "1", "all")
    assert touched.returncode == 0, touched.stderr[-3000:]


def later(path: Path) -> None:
    """Move ``path``'s modification time one second on (a coarse file system still sees it)."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_a_local_datasets_raw_changes_rerun_what_reads_them(tmp_path: Path) -> None:
    raw = local_dataset_config(tmp_path)
    mark_all_done(tmp_path, create=True)
    assert "Nothing to be done" in snakemake(tmp_path, "-n", "--cores", "1", "all").stdout

    def replanned() -> set[tuple[str, str]]:
        jobs = planned_jobs(snakemake(tmp_path, "-n", "--cores", "1", "all"))
        assert ("layout_report", "results/mine/data/layout_report.json") in jobs  # any change
        return jobs - {("layout_report", "results/mine/data/layout_report.json")}

    def stage1(modality: str) -> set[tuple[str, str]]:
        return {("extract_features", f"results/mine/features/shards/{modality}-0-of-1.h5"),
                ("merge_features", f"results/mine/features/{modality}.h5")}

    def runs(*names: str) -> set[tuple[str, str]]:
        return {("train_run", f"results/mine/runs/{name}/metrics.json") for name in names}

    # a new cover: image sampling and features, and the run that reads images
    cover = next(iter(sorted((raw / "covers").iterdir())))
    cover.write_bytes(cover.read_bytes() + b"\0")
    later(cover)
    assert replanned() == {("sample_media", "results/mine/media/image.h5"), *stage1("image"), *runs(TI_RUN)}
    mark_all_done(tmp_path)

    # a corrected title: the text features and the run that reads text, no media sampling
    titles = raw / "titles.csv"
    titles.write_text(titles.read_text(encoding="utf-8").replace(",", ",new ", 1), encoding="utf-8")
    later(titles)
    assert replanned() == {("item_titles", "results/mine/data/items.csv"), *stage1("text"), *runs(TI_RUN)}
    mark_all_done(tmp_path)

    # a re-encoded video: its frames and its audio track
    video = next(iter(sorted((raw / "videos").iterdir())))
    later(video)
    assert replanned() == {("sample_media", "results/mine/media/video.h5"),
                           ("sample_media", "results/mine/media/audio.h5"), *stage1("video"), *stage1("audio"),
                           *runs(VA_RUN)}
    mark_all_done(tmp_path)

    # an appended user: the sequences and everything built on them
    pairs = raw / "pairs.csv"
    item = pairs.read_text(encoding="utf-8").splitlines()[1].split(",")[1]
    with pairs.open("a", encoding="utf-8") as handle:
        handle.writelines(f"999999,{item},{t}\n" for t in range(5))
    jobs = replanned()
    assert {rule for rule, _ in jobs} == {"sequences", "item_titles", "sample_media", "extract_features",
                                          "merge_features", "train_run"}
    assert runs(ID_RUN, TI_RUN, VA_RUN) <= jobs and len([1 for rule, _ in jobs if rule == "sample_media"]) == 3


def test_a_training_setting_reruns_only_the_runs_that_use_it_and_both_stay(tmp_path: Path) -> None:
    """max_epochs: new folders for the runs that use it (ID-SASRec, CROSSAN), none for popularity
    or a graph recommender (graph_max_epochs); the earlier folders stay, so going back to the
    earlier value has nothing to do."""
    local_dataset_config(tmp_path)
    config = yaml.safe_load((tmp_path / "config.yaml").read_text(encoding="utf-8"))
    config["catalog"]["mine"]["runs"] = [*LOCAL_RUNS[:2], {"method": "popularity"}, {"method": "freedom"}]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    mark_all_done(tmp_path, create=True)
    before = {path.name for path in (tmp_path / "results/mine/runs").iterdir()}
    assert before == {ID_RUN, TI_RUN, "mine__popularity", "mine__freedom-TIVA-h512-lr1e-04-s0"}  # the defaults

    config["training"]["max_epochs"] = 60
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    jobs = planned_jobs(snakemake(tmp_path, "-n", "--cores", "1", "all"))
    suffix = "-x" + settings_digest({"max_epochs": 60})
    assert jobs == {("train_run", f"results/mine/runs/{run}{suffix}/metrics.json") for run in (ID_RUN, TI_RUN)}

    config["training"]["max_epochs"] = 50  # back to the default: those runs are there
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    assert "Nothing to be done" in snakemake(tmp_path, "-n", "--cores", "1", "all").stdout


# A dataset of one's own with titles only: ASIN-like item ids (one an ISBN with a leading zero,
# which must stay text), UUID user ids, no covers/ or videos/ folder, `modalities: [text]`.
TOPIC_WORDS = (("ember", "forge", "anvil", "spark"), ("tide", "harbor", "anchor", "reef"),
               ("orbit", "comet", "nebula", "rocket"), ("maple", "acorn", "grove", "fern"))


def title_only_dataset(root: Path, n_users: int = 240, n_items: int = 48, seed: int = 0) -> list[str]:
    """pairs.csv (string ids; each user mostly follows one topic) and titles.csv under ``root``;
    returns the item ids."""
    rng = np.random.default_rng(seed)
    alphabet = np.array(list("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"))
    items = ["0439023483", *("B0" + "".join(rng.choice(alphabet, 8)) for _ in range(n_items - 1))]
    topic = {item: i % len(TOPIC_WORDS) for i, item in enumerate(items)}
    by_topic = [[item for item in items if topic[item] == t] for t in range(len(TOPIC_WORDS))]
    root.mkdir(parents=True)
    rows = ["user_id,item_id,timestamp"]
    for _ in range(n_users):
        user, likes = str(uuid.UUID(bytes=rng.bytes(16))), int(rng.integers(len(TOPIC_WORDS)))
        for step in range(int(rng.integers(5, 9))):
            pool = by_topic[likes] if rng.random() < 0.8 else items
            rows.append(f"{user},{pool[int(rng.integers(len(pool)))]},{1_600_000_000 + 60 * step}")
    (root / "pairs.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    titles = [f'{item},"{" ".join(rng.choice(TOPIC_WORDS[topic[item]], 3))}, vol. {i}"' for i, item in enumerate(items)]
    (root / "titles.csv").write_text("\n".join(titles) + "\n", encoding="utf-8")
    return items


def test_a_title_only_dataset_with_string_ids_runs_only_text(tmp_path: Path) -> None:
    items = title_only_dataset(tmp_path / "raw")
    config = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    config["datasets"] = ["shop"]
    config["catalog"]["shop"] = {
        "kind": "local", "data_dir": "raw", "modalities": ["text"],
        "encoders": {"text": {"model": "resources/models/tiny-shop/bert", "layers": [0, 2, 4, 6], "max_length": 16}},
        "training": {"standardize_states": True, "max_epochs": 2, "patience": 1, "batch_size": 32,
                     "graph_max_epochs": 2, "graph_patience": 1, "graph_batch_size": 256, "graph_k": 3},
        "experiments": {"targets": ["table1", "table3", "table6", "table7", "table8"],
                        "settings": {m: {"hidden": 8, "lr": 1.0e-3} for m in ("crossan", "iisan-e", "id-sasrec")}
                        | {"bm3": {"hidden": 8, "lr": 1.0e-2}},
                        "table8": {"models": ["bm3"]}},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "--cores", "2", "all")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]

    ran = set(re.findall(r"^(?:local)?rule (\w+):", output, flags=re.M))
    assert ran == {"dataset_manifest", "layout_report", "sequences", "item_titles", "tiny_encoders",
                   "extract_features", "merge_features", "build_graph", "train_run", "table", "all"}  # no sample_media
    assert re.findall(r"extract_features\s+(\d+)", output)[0] == "1"  # text only
    assert sorted(p.name for p in (tmp_path / "results/shop/features").glob("*.h5")) == ["text.h5"]
    assert not (tmp_path / "results/shop/media").exists()
    assert "shop: table1 is left out: Table 1 compares two towers' outputs (mutual information)" in output

    data = tmp_path / "results/shop/data"  # the id mappings, next to items.csv
    item_ids = pl.read_csv(data / "item_ids.csv", schema_overrides={"item_id": pl.String})
    assert sorted(item_ids["item_id"]) == sorted(items)  # every item occurs; "0439023483" kept as written
    users = pl.read_csv(data / "user_ids.csv")
    assert users["user_index"].to_list() == list(range(240)) and users["user_id"].str.len_chars().unique().to_list() == [36]
    titled = pl.read_csv(data / "items.csv", schema_overrides={"item_id": pl.String})
    assert titled.filter(pl.col("item_id") == "0439023483")["title"].item().endswith(", vol. 0")
    report = json.loads((tmp_path / "results/shop/data/layout_report.json").read_text(encoding="utf-8"))
    assert report["absent"] == ["covers", "videos"] and report["counts"]["missing_titles"] == 0

    assert sorted(p.name for p in (tmp_path / "results/shop/tables").glob("*.csv")) == [
        "table3.csv", "table6.csv", "table7.csv", "table8.csv"]
    table3 = pl.read_csv(tmp_path / "results/shop/tables/table3.csv")
    assert table3["row"].to_list() == [
        "Popularity", "SASRec (item IDs)", "Full Finetuning (T+I)", "Adapter (T+I)", "LoRA (T+I)", "IISAN-E (T)",
        "CROSSAN (T) (ours)", "Text"]
    assert table3.filter(pl.col("row") == "LoRA (T+I)")["note"].item() == (
        "not run: LoRA needs text and image, and dataset 'shop' declares text")
    for run in filter(None, ";".join(table3["runs"].drop_nulls()).split(";")):
        assert parse_run_name(run)["modalities"] in ("", "T"), run
    markdown = (tmp_path / "results/shop/tables/table3.md").read_text(encoding="utf-8")
    assert markdown.startswith("**Table 3** (shop): Performance comparison of CROSSAN with raw modalities "
                               "(T: text) against IISAN and its extension IISAN-E.\n")
    assert "- Modalities restricted to the dataset's (text, catalog.shop.modalities): T+I -> T" in markdown
    table6 = (tmp_path / "results/shop/tables/table6.md").read_text(encoding="utf-8")
    assert "- Independent: INDSAN and CROSSAN coincide with one modality (text)" in table6
    assert "Modalities: T: text (the dataset's own)." in table6.splitlines()[0]
    assert pl.read_csv(tmp_path / "results/shop/tables/table7.csv")["row"].to_list() == [1]
    table8 = pl.read_csv(tmp_path / "results/shop/tables/table8.csv")
    assert table8["row"].to_list() == ["BM3", "IISAN (T+I)", "CROSSAN (T) (ours)"]
    assert table8["HR@10"].to_list()[0] is not None and table8["HR@10"].to_list()[1] is None


def test_two_settings_tables_land_side_by_side(tmp_path: Path) -> None:
    """A training setting given with --config trains the runs it renames and writes every table
    and figure into tables-x…/, figures-x…/, beyond-x…/ (Table 4's measurement into
    efficiency-x…/): nothing of the default folders is planned again, so both settings' tables
    stay to compare."""
    small_demo_config(tmp_path)
    mark_all_done(tmp_path, create=True)
    result = snakemake(tmp_path, "-n", "--cores", "1", "all", "--config", "training={weight_decay: 1e-4}")
    jobs = planned_jobs(result)
    suffix = "-x" + settings_digest({"training.weight_decay": 1.0e-4})
    assert f"results/demo/tables{suffix}/ (training.weight_decay=0.0001)" in result.stdout + result.stderr
    targets = {output for rule, output in jobs if rule != "train_run"}
    assert {Path(output).parent.name for output in targets} == {f"tables{suffix}", f"figures{suffix}",
                                                               f"beyond{suffix}", f"efficiency{suffix}"}
    assert {rule for rule, _ in jobs} == {"train_run", "efficiency", "table", "figure", "beyond_table",
                                          "beyond_figure"}
    assert all("-x" in Path(output).parent.name for rule, output in jobs if rule == "train_run")
    assert not any(output.startswith(("results/demo/tables/", "results/demo/figures/")) for _, output in jobs)
    assert "Nothing to be done" in snakemake(tmp_path, "-n", "--cores", "1", "all").stdout  # defaults intact


def test_more_cores_than_the_machine_has_are_warned_about(tmp_path: Path) -> None:
    small_demo_config(tmp_path)
    result = snakemake(tmp_path, "-n", "--cores", str(machine_cores() + 1), "figure3")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"--cores {machine_cores() + 1} is more than this machine's {machine_cores()} cores" in result.stdout + result.stderr
    assert "results/demo/figures/figure3.png" in result.stdout  # figure3 is a target of its own


def test_started_outside_the_repository_it_suggests_the_directory(tmp_path: Path) -> None:
    result = subprocess.run([*SNAKEMAKE, "-n", "--cores", "1"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode != 0
    assert f"no config.yaml in {tmp_path}: run from the repository ({REPO}) or pass --directory {REPO}" in \
        result.stdout + result.stderr
