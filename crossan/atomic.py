"""Write-then-rename helpers, so an interrupted job never leaves a whole-looking output."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path


def partial_path(final: Path) -> Path:
    """The temporary name an output lives under until it is complete: ``name.partial``."""
    return final.with_name(final.name + ".partial")


@contextlib.contextmanager
def atomic_output(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it to ``final`` only on success.

    On an exception the temporary file is removed and ``final`` is left untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(final)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(final: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``final`` via a temporary name and an atomic rename."""
    with atomic_output(final) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def atomic_directory(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty ``final.partial`` folder to build in; on success it replaces ``final``
    whole (a previous ``final`` is moved aside first, so ``final`` is never half-written);
    on an exception it is removed and ``final`` is left as it was. A ``.partial`` left over
    from a killed run is removed first."""
    final = Path(final)
    if final.exists() and not final.is_dir():
        raise NotADirectoryError(f"{final} exists and is not a directory")
    final.parent.mkdir(parents=True, exist_ok=True)
    building = partial_path(final)
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir()
    try:
        yield building
        old = final.with_name(final.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)
        os.replace(building, final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
