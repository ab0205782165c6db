"""The installed environment: a CPU-usable torch, no torchvision, no broken torchaudio.

PyPI's torchaudio wheels need a CUDA torch and replace the CPU one; transformers 5 would
silently switch to torchvision-based processors if torchvision were importable.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys


def test_torchvision_is_not_installed() -> None:
    assert importlib.util.find_spec("torchvision") is None, (
        "torchvision got pulled in; crossan uses the PIL processors. Remove it: pip uninstall torchvision"
    )


def test_torchaudio_is_absent_or_works_with_this_torch() -> None:
    if importlib.util.find_spec("torchaudio") is None:
        return
    probe = subprocess.run(
        [sys.executable, "-c", "import torch, torchaudio; print(torch.__version__, torchaudio.__version__)"],
        capture_output=True, text=True, timeout=120,
    )
    assert probe.returncode == 0, f"torchaudio is installed but broken: {probe.stderr[-500:]}"


def test_torch_is_the_pinned_release() -> None:
    assert importlib.metadata.version("torch").split("+")[0] == "2.13.0"


def test_decord_comes_from_decord2() -> None:
    assert importlib.util.find_spec("decord") is not None
    assert importlib.metadata.version("decord2") == "3.4.0"
