"""Where a run computes, and what that costs: the device, CPU determinism, peak memory."""

from __future__ import annotations

import contextlib
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


def reset_peak_memory(device: torch.device) -> None:
    """A fresh CUDA peak-memory counter (Table 4's GM is this run's alone)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> tuple[float, str]:
    """``(MiB, kind)``: CUDA max allocated on a GPU, else the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return (rss / 2**20 if sys.platform == "darwin" else rss / 1024), "cpu_peak_rss"


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
