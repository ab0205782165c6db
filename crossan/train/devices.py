"""Where a run computes, and what that costs: the device, CPU determinism, peak memory."""

from __future__ import annotations

import contextlib
import platform
import resource
import sys
from collections.abc import Iterator

import torch

from crossan.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when torch sees one), ``cpu`` or ``cuda``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but torch sees no CUDA device")
    return torch.device(name)


def sync_device(device: torch.device) -> None:
    """Wait for queued CUDA work, so that a timer reads the work's time."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    """The GPU's name (``NVIDIA H200``), or the CPU's as the platform gives it (``x86_64``)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def reset_peak_memory(device: torch.device) -> None:
    """A fresh CUDA peak-memory counter (Table 4's GM is this run's alone)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> tuple[float, str]:
    """``(MiB, kind)``: CUDA max allocated on a GPU, else the process's peak RSS (:func:`peak_rss_mib`)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    return peak_rss_mib(), "cpu_peak_rss"


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB: on Linux ``VmHWM`` of ``/proc/self/status``,
    the high-water mark of its own address space since it started; elsewhere ``ru_maxrss``.

    Why not ``ru_maxrss`` on Linux: it keeps the RSS of the process a child was forked from
    (through its ``exec``), so every process that Python's ``multiprocessing`` spawns from a
    parent holding torch (500 MB) would report at least that much, whatever it did.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:  # no procfs: macOS, Windows
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


@contextlib.contextmanager
def deterministic_on_cpu(device: torch.device) -> Iterator[None]:
    """``torch.use_deterministic_algorithms`` for CPU runs, restored afterwards.

    Bit-reproducible on the CPU: with several threads some default kernels accumulate in a
    scheduling-dependent order; the loss then differs in the 9th digit after one epoch and the
    runs drift apart (demo HR@10 0.213 vs 0.220 for the same seed). CUDA runs are not made
    deterministic (that needs CUBLAS_WORKSPACE_CONFIG and slower kernels).
    """
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(previous or device.type == "cpu")
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)
