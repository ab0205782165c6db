"""The defaults of ``crossan graph`` that the command line offers (:mod:`crossan.commands.graph`)
and :mod:`crossan.graph_file.build` uses, without torch."""

from __future__ import annotations

from crossan.runs.settings import training_default

DEFAULT_K: int = training_default("graph_k")
DEFAULT_MAX_LEN: int = training_default("max_len")
DEFAULT_BLOCK = 2048  # rows of similarities computed at once
