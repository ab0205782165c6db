"""Run names: a run's directory name encodes everything that distinguishes it in the paper's tables::

    {dataset}__{method}-{modalities}-{fusion}-k{topk}-h{hidden}-lr{lr}-s{seed}
    demo__crossan-TIVA-momef-k2-h512-lr1e-04-s0
    microlens-100k__iisan-e-TIVA-concat-k2-h1024-lr1e-04-s1
    microlens-100k__lora-TI-concat-k2-h512-lr2e-04-s0      (end to end: h = LoRA rank)
    demo__id-sasrec-none-none-k2-h512-lr1e-03-s0      (no content: modalities "none")

``fusion`` is the resolved one (the method's default when none was given), ``lr`` is written
in exponent form with as many mantissa digits as it needs (``1e-04``, ``2.5e-04``), so
:func:`parse_run_name` gives back exactly the same values. The dataset is separated by
``__`` (two underscores, never used by the rest), so dataset names may contain ``-`` and
``_``. ``RunConfig(**parse_run_name(name), data_dir=..., features_dir=..., out_dir=...)``
rebuilds the configuration of a name; batch size, epochs, patience and device are not part
of it (they are the same for every run of an experiment, from ``config.yaml``). A field a
method does not use (``topk`` outside MOMEF, ``hidden`` of ``fft`` or ``id-sasrec``) keeps its
value from the setting, so it is still in the name.

This module imports nothing heavy: the workflow parses names while building its DAG.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from crossan.errors import ConfigError

SEPARATOR = "__"
_METHOD_PATTERN = "crossan|indsan|iisan-e|iisan|id-sasrec|popularity|fft|adapter|lora|mmgcn|grcn|bm3|freedom|mgcn|mhcr"
_NAME = re.compile(
    rf"^(?P<dataset>.+?){SEPARATOR}(?P<method>{_METHOD_PATTERN})-(?P<modalities>[TIVA]+|none)"
    r"-(?P<fusion>[a-z]+)-k(?P<topk>\d+)-h(?P<hidden>\d+)"
    r"-lr(?P<lr>\d+(?:\.\d+)?e[+-]\d+)-s(?P<seed>\d+)$"
)


def format_lr(lr: float) -> str:
    """``1e-4 -> "1e-04"``, ``2.5e-4 -> "2.5e-04"``: exponent form, shortest exact mantissa."""
    for digits in range(17):
        text = f"{lr:.{digits}e}"
        if float(text) == lr:
            return text
    return f"{lr:.16e}"


def run_name(config: Any) -> str:
    """The run directory name of a :class:`~crossan.train.trainer.RunConfig` (see the module
    docstring)."""
    dataset = config.dataset
    if not dataset or "/" in dataset or SEPARATOR in dataset or dataset.endswith("_") or dataset != dataset.strip():
        raise ConfigError(f"dataset name {dataset!r} cannot be part of a run name "
                          f"(no '/', no '{SEPARATOR}', no trailing '_' or spaces)")
    return (
        f"{dataset}{SEPARATOR}{config.method}-{config.modalities or 'none'}-{config.resolved_fusion()}"
        f"-k{config.topk}-h{config.hidden}-lr{format_lr(config.lr)}-s{config.seed}"
    )


def parse_run_name(name: str) -> dict[str, Any]:
    """Inverse of :func:`run_name`: ``{"dataset", "method", "modalities", "fusion", "topk",
    "hidden", "lr", "seed"}`` with the :class:`RunConfig` types (``modalities`` ``""`` for
    ``none``). Accepts a path: only its last component is read."""
    match = _NAME.match(Path(name).name)
    if match is None:
        raise ConfigError(
            f"{name!r} is not a run name like "
            "'demo__crossan-TIVA-momef-k2-h512-lr1e-04-s0' "
            "({dataset}__{method}-{modalities}-{fusion}-k{topk}-h{hidden}-lr{lr}-s{seed})"
        )
    parts = match.groupdict()
    return {
        "dataset": parts["dataset"],
        "method": parts["method"],
        "modalities": "" if parts["modalities"] == "none" else parts["modalities"],
        "fusion": parts["fusion"],
        "topk": int(parts["topk"]),
        "hidden": int(parts["hidden"]),
        "lr": float(parts["lr"]),
        "seed": int(parts["seed"]),
    }
