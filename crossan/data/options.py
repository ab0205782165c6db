"""The choices of the data steps that the command line offers (:mod:`crossan.commands.data`)
and the steps check, without the steps' dependencies (polars, PIL, PyAV)."""

from __future__ import annotations

MICROLENS_VARIANTS: tuple[str, ...] = ("100k", "50k")
# which items get an id: every item of the kept users' full histories, or of their last max_items
CATALOGUES: tuple[str, ...] = ("history", "window")
