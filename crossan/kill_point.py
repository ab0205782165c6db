"""Test hook: hold a process still after its N-th committed chunk.

A test that SIGKILLs a run mid-way waits for the N-th "committed" log line; if the run went
on working while the test was descheduled, the kill would land at a machine-dependent
point. With the hook's variable set to N, the run sleeps after its N-th commit instead, so
the kill always finds exactly N chunks on disk.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

# Long enough for any test to notice the pause and kill; a forgotten variable still ends.
PAUSE_SECONDS = 300.0


def pause_after(variable: str) -> Callable[[int], None]:
    """``after(committed)``: call with the number of chunks committed so far; sleeps once
    that number equals the integer in environment ``variable`` (unset or 0: never)."""
    limit = int(os.environ.get(variable, "0") or 0)

    def after(committed: int) -> None:
        if limit and committed == limit:
            log.warning("test hook %s: pausing after %d committed chunk(s)", variable, committed)
            time.sleep(PAUSE_SECONDS)

    return after
