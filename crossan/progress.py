"""Progress lines of long jobs: in the job's log and, when a console is attached, on it too.

The workflow's rules send everything a job writes to its log file (``> {log} 2>&1``), so a
training run or a feature extraction says nothing on the terminal that runs Snakemake for
as long as it lasts. Progress lines go to their own logger, ``crossan.progress``
(:data:`PROGRESS_LOGGER`):

* like every record they propagate to the root handler (``crossan``'s stderr, the log file);
* :func:`attach_console` adds one handler that writes them, and only them, to another file
  descriptor as well: the console's stderr, which a rule hands the job as fd 3
  (``crossan ... --progress-fd 3 3>&2 > {log} 2>&1``).

A line is ``[label] text`` (:func:`log_progress`); the label names the job (``crossan train
<run name>``, ``crossan sample-media <dataset> <modality>``, ...) because the console mixes the
lines of every job running at once. Each console line is written with one ``write`` call
(under ``PIPE_BUF``, 4096 bytes, for a pipe: never torn by another job's line).

:class:`Progress` reports counted work (items, batches, files): a line at most every
``every_s`` seconds while it runs (done, rate, ETA) and one when it ends.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from types import TracebackType

PROGRESS_LOGGER = "crossan.progress"
EVERY_S = 30.0  # default seconds between two lines of one Progress
MAX_LINE_BYTES = 4000  # a console line is cut to this (one atomic write to a pipe: < PIPE_BUF)

log = logging.getLogger(PROGRESS_LOGGER)
console_log = logging.getLogger("crossan.console")  # about the console itself: the log file only


def log_progress(label: str, text: str) -> None:
    """Log the progress line ``[label] text`` (INFO, logger ``crossan.progress``)."""
    log.info("[%s] %s", label, text)


# ---------------------------------------------------------------- the console


class ConsoleHandler(logging.Handler):
    """Writes each record's message as one line to file descriptor ``fd``, which it does not
    own (never closes). A console that went away (closed pipe, hang-up) turns the handler off:
    the log file still gets every line, and the job goes on."""

    def __init__(self, fd: int) -> None:
        super().__init__(logging.INFO)
        self.fd = fd
        self.broken = False
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if self.broken:
            return
        try:
            text = " ".join(self.format(record).split("\n"))
            cut = text.encode("utf-8", "replace")[:MAX_LINE_BYTES].decode("utf-8", "ignore")  # whole characters
            data = cut.encode("utf-8") + b"\n"
            while data:
                data = data[os.write(self.fd, data):]
        except BlockingIOError:
            pass  # a non-blocking console that is full: this line only is lost
        except OSError:
            self.broken = True
        except Exception:  # a record that does not format: logging's usual report
            self.handleError(record)


def attach_console(fd: int | None) -> None:
    """Also write every progress line to file descriptor ``fd`` (the console's stderr, passed
    to the job as fd 3 by ``3>&2``); ``None``: nothing to do. Attaching again replaces the
    previous console, so no line is written twice. The progress logger is set to INFO if it
    would drop INFO records. An ``fd`` that is not open is a warning in the log, not an error
    (a job run by hand with ``--progress-fd 3`` but no ``3>&2`` still runs)."""
    if fd is None:
        return
    try:
        os.fstat(fd)
    except OSError as error:
        console_log.warning("no console for progress lines: file descriptor %d is not open (%s)", fd, error.strerror)
        return
    detach_console()
    log.addHandler(ConsoleHandler(fd))
    if log.getEffectiveLevel() > logging.INFO:
        log.setLevel(logging.INFO)


def detach_console() -> None:
    """Stop writing progress lines to the console (the file descriptor stays open)."""
    for handler in [h for h in log.handlers if isinstance(h, ConsoleHandler)]:
        log.removeHandler(handler)
        handler.close()


# ---------------------------------------------------------------- counted work


def format_duration(seconds: float) -> str:
    """``4.2s``, ``42s``, ``3m05s``, ``2h07m``."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def format_rate(per_second: float) -> str:
    """Three significant digits, no exponent: ``0.0512``, ``4``, ``45.7``, ``1234``."""
    return f"{per_second:.0f}" if per_second >= 100 else f"{per_second:.3g}"


class Progress:
    """Progress over ``total`` counted ``unit`` (``"items"``, ``"batches"``, ``"videos"``),
    logged as ``[label] ...`` lines (:func:`log_progress`):

    * :meth:`update` logs ``[label] {step: }done/total unit (p%), rate unit/s, ETA 3m05s``
      when ``every_s`` seconds have passed since the start or the last line, and not when
      ``total`` is reached (the closing line says it);
    * :meth:`close` (or leaving a ``with`` block) logs ``[label] {step: }done/total unit in
      2m05s (rate unit/s)``, or ``stopped at done/total unit after 2m05s`` when short of
      ``total``; once.

    ``step``: what the count is of, in front of the numbers (``"epoch 3/50"``). ``summary``
    False: no closing line (for a part of a job whose caller logs its own line after it; such
    a part is then seen only when it takes longer than ``every_s``). ``enabled`` False: no line
    at all. ``clock``: seconds, monotonic (tests pass a fake one).
    """

    def __init__(self, label: str, total: int, unit: str, every_s: float = EVERY_S, *, step: str = "",
                 summary: bool = True, enabled: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if every_s < 0 or total < 0:
            raise ValueError(f"need every_s >= 0 and total >= 0, got {every_s} and {total}")
        self.label, self.total, self.unit, self.every_s = label, total, unit, every_s
        self.step, self.summary, self.enabled, self.clock = step, summary, enabled, clock
        self.done = 0
        self.started = self.last_line = clock()
        self.closed = False

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units done; log a line if ``every_s`` has passed since the last."""
        self.done += n
        if not self.enabled or self.done >= self.total:
            return
        now = self.clock()
        if now - self.last_line >= self.every_s:
            self.last_line = now
            log_progress(self.label, self.running_text(now - self.started))

    def close(self) -> None:
        """Log the closing line (unless ``summary`` is off); later calls do nothing."""
        if self.closed:
            return
        self.closed = True
        if self.enabled and self.summary:
            log_progress(self.label, self.closing_text(self.clock() - self.started))

    def running_text(self, elapsed: float) -> str:
        """``{step: }done/total unit (p%), rate unit/s, ETA ...`` after ``elapsed`` seconds."""
        percent = 100 * self.done // max(self.total, 1)
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = format_duration((self.total - self.done) / rate) if rate > 0 else "?"
        return (f"{self._prefix()}{self.done}/{self.total} {self.unit} ({percent}%), "
                f"{format_rate(rate)} {self.unit}/s, ETA {eta}")

    def closing_text(self, elapsed: float) -> str:
        """``{step: }done/total unit in ... (rate unit/s)``, or ``stopped at ... after ...``."""
        rate = f" ({format_rate(self.done / elapsed)} {self.unit}/s)" if elapsed > 0 and self.done else ""
        if self.done < self.total:
            return (f"{self._prefix()}stopped at {self.done}/{self.total} {self.unit} "
                    f"after {format_duration(elapsed)}{rate}")
        return f"{self._prefix()}{self.done}/{self.total} {self.unit} in {format_duration(elapsed)}{rate}"

    def _prefix(self) -> str:
        return f"{self.step}: " if self.step else ""

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
