"""What this machine offers the workflow, and a warning when a run asks for more.

Training jobs time their epochs and read their peak memory (Table 4, Table B2). Snakemake runs
as many jobs side by side as ``--cores`` allows; more than the machine has means they share
cores, and a job's time then describes the scheduler, not the method.
"""

from __future__ import annotations

import os


def machine_cores() -> int:
    """The cores this process may use (its CPU affinity where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def cores_warning(requested: int | None, available: int) -> str:
    """The warning when ``--cores`` asks for more cores than the machine has, else ``""``."""
    if requested is None or requested <= available:
        return ""
    return (f"--cores {requested} is more than this machine's {available} cores: up to {requested} one-thread "
            f"jobs will share {available} cores, so each takes longer. Results are the same, and Table 4's time "
            f"and memory are measured in one job that takes every core (rule efficiency), but every other "
            f"seconds_per_epoch a run records includes the contention. Use --cores {available} (or --cores all).")
