"""Test helper: run a command and SIGKILL it once its log shows N finished chunks."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Mapping, Sequence


def kill_after_marks(command: Sequence[str], env: Mapping[str, str], mark: str, count: int) -> None:
    """Start ``command``, read its stderr, and SIGKILL it right after the ``count``-th line
    containing ``mark``. Asserts it really was killed there (not finished on its own)."""
    process = subprocess.Popen(
        list(command), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=dict(env)
    )
    seen = 0
    assert process.stderr is not None
    for line in process.stderr:
        seen += mark in line
        if seen == count:
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=30)
    assert seen == count and process.returncode == -signal.SIGKILL, (seen, process.returncode)
