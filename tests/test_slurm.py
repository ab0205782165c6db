"""A slice of the demo through a real SLURM scheduler with profiles/slurm: stage 1 in two shards
per modality and a few training runs go through sbatch, a scancel mid-extraction leaves no
output that looks whole, the rerun finishes, and the outputs equal a local run's.

Needs a cluster: ``sudo .ci/slurm-cluster up`` (``.ci/run`` brings one up, so CI always runs
this test; there a missing cluster is a failure, not a skip).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from test_workflow import REPO, SEQUENTIAL, small_demo_config

from crossan.encoders.extract import PAUSE_ENV


def slurm_is_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    result = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, check=False)
    return result.returncode == 0 and any(s.startswith(("idle", "mix", "alloc")) for s in result.stdout.split())


pytestmark = pytest.mark.skipif(
    not slurm_is_up() and not os.environ.get("CI"),
    reason="no SLURM cluster here: bring one up with `sudo .ci/slurm-cluster up` (CI's .ci/run does)",
)

FEATURES = ("text", "image")
RUNS = ("demo__popularity", f"demo__crossan-TI-momef-k2-h8-lr1e-03-s0{SEQUENTIAL}",
        f"demo__iisan-TI-concat-h8-lr1e-03-s0{SEQUENTIAL}")
TARGETS = [f"results/demo/features/{m}.h5" for m in FEATURES] + [f"results/demo/runs/{r}/metrics.json" for r in RUNS]
TIMING = {"seconds_per_epoch", "eval_seconds", "peak_memory_mib", "config", "versions", "device"}


def slice_config(workdir: Path) -> None:
    """The small demo, two shards per modality, 4-title batches (4 chunks per shard), no GPU
    (the test node has none)."""
    small_demo_config(workdir)
    config = yaml.safe_load((workdir / "config.yaml").read_text(encoding="utf-8"))
    config["features"].update({"shards": 2, "chunk_batches": 1, "gpu": 0})
    config["catalog"]["demo"]["encoders"]["text"]["batch_size"] = 4
    config["catalog"]["demo"]["encoders"]["image"] = {**config["catalog"]["demo"]["encoders"]["image"], "batch_size": 4}
    config["catalog"]["demo"]["training"]["gpu"] = 0
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))


def snakemake(workdir: Path, *args: str, env: dict | None = None, background: bool = False):
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
               str(workdir), "--configfile", str(workdir / "config.yaml"), *args, *TARGETS]
    if background:  # output to a file: a full pipe would block Snakemake
        with (workdir / "snakemake.out").open("w", encoding="utf-8") as out:
            return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, text=True,
                                    env={**os.environ, **(env or {})})
    return subprocess.run(command, capture_output=True, text=True, timeout=900, env={**os.environ, **(env or {})},
                          check=False)


def through_slurm(workdir: Path, **kw):
    return snakemake(workdir, "--workflow-profile", str(REPO / "profiles/slurm"), **kw)


def slurm_job_ids(workdir: Path) -> dict[str, set[str]]:
    """Rule -> SLURM job ids, from the executor's kept job logs (``.../rule_{name}/.../{id}.log``)."""
    jobs: dict[str, set[str]] = {}
    for log in (workdir / ".snakemake/slurm_logs").rglob("*.log"):
        rule = next(part for part in log.parts if part.startswith("rule_"))[5:]
        jobs.setdefault(rule, set()).add(log.stem)
    return jobs


def scheduler_history() -> set[str]:
    """Job ids the controller still lists (finished ones stay MinJobAge = 600 s)."""
    out = subprocess.run(["squeue", "--states=all", "-h", "-o", "%i"], capture_output=True, text=True, check=False).stdout
    return set(out.split())


def feature_arrays(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as file:
        return {name: file[name][:] for name in ("features", "valid", "item_id")}


def comparable_metrics(path: Path) -> dict:
    metrics = json.loads(path.read_text(encoding="utf-8"))
    return {k: v for k, v in metrics.items() if k not in TIMING}


@pytest.mark.timeout(1500)
def test_a_demo_slice_through_slurm_equals_a_local_run(tmp_path: Path) -> None:
    assert slurm_is_up(), "CI must run this test on a SLURM cluster: .ci/run starts one with .ci/slurm-cluster up"
    local, cluster = tmp_path / "local", tmp_path / "cluster"
    for folder in (local, cluster):
        folder.mkdir()
        slice_config(folder)
    done = snakemake(local, "--cores", "2")
    assert done.returncode == 0, done.stderr[-3000:]

    # 1. Every extraction job pauses after its first committed chunk; cancel them there.
    run = through_slurm(cluster, env={PAUSE_ENV: "1"}, background=True)
    shard_logs = [cluster / f"results/demo/logs/extract_{m}_{s}-of-2.log" for m in FEATURES for s in (0, 1)]
    deadline = time.time() + 600
    while time.time() < deadline and not any(
            log.is_file() and "pausing after" in log.read_text(encoding="utf-8", errors="replace") for log in shard_logs):
        time.sleep(2)
    cancelled: set[str] = set()
    while run.poll() is None:  # cancel every extraction job (running or queued) until Snakemake gives up
        queued = subprocess.run(["squeue", "-h", "-o", "%i %k"], capture_output=True, text=True, check=False).stdout
        extraction = {line.split()[0] for line in queued.splitlines() if "extract_features" in line}
        if extraction - cancelled:
            subprocess.run(["scancel", *(extraction - cancelled)], check=True)
            cancelled |= extraction
        time.sleep(2)
    output = (cluster / "snakemake.out").read_text(encoding="utf-8")
    assert cancelled and run.returncode != 0, output[-3000:]
    for modality in FEATURES:  # nothing that looks whole: no merged file, no finished shard
        assert not (cluster / f"results/demo/features/{modality}.h5").exists()
        assert not list((cluster / "results/demo/features/shards").glob(f"{modality}-*.h5"))

    # 2. The same command again finishes the work (resuming the cancelled shards).
    rerun = through_slurm(cluster)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    jobs = slurm_job_ids(cluster)
    assert {"sample_media", "extract_features", "merge_features", "train_run"} <= set(jobs), jobs
    assert len(jobs["extract_features"] - cancelled) >= 1 and len(jobs["train_run"]) == len(RUNS)
    submitted = set().union(*jobs.values()) | cancelled
    assert submitted <= scheduler_history()  # the controller saw every one of them
    print(f"SLURM job ids: {sorted(submitted, key=int)} (cancelled {sorted(cancelled, key=int)})")

    # 3. Same outputs as the local run.
    for modality in FEATURES:
        a = feature_arrays(local / f"results/demo/features/{modality}.h5")
        b = feature_arrays(cluster / f"results/demo/features/{modality}.h5")
        for name in a:
            assert np.array_equal(a[name], b[name]), (modality, name)
    for name in RUNS:
        path = f"results/demo/runs/{name}/metrics.json"
        assert comparable_metrics(local / path) == comparable_metrics(cluster / path), name
    resumed = "\n".join(log.read_text(encoding="utf-8", errors="replace") for log in shard_logs)
    assert re.search(r"resum", resumed), resumed[-2000:]
