"""Run names: a run's directory name encodes what distinguishes it in the paper's tables,
with only the fields its method uses, then a digest of its non-default training settings::

    {dataset}__crossan-{modalities}-{fusion}[-k{topk}]-h{hidden}-lr{lr}[-{align}{weight}]-s{seed}[-x{digest}]
        (crossan, indsan, iisan, iisan-e, crossan-moda; k, MOMEF's top-k, only with fusion
        momef; -cmsa{weight} or -infonce{weight}, the auxiliary alignment loss, only when on)
    {dataset}__mmgcn-{modalities}-h{hidden}-lr{lr}-s{seed}[-x{digest}]   (graph recommenders)
    {dataset}__adapter-h{hidden}-lr{lr}-s{seed}[-x{digest}]   (adapter, lora: h = bottleneck, rank)
    {dataset}__fft-lr{lr}-s{seed}[-x{digest}]
    {dataset}__id-sasrec-lr{lr}-s{seed}[-x{digest}]
    {dataset}__popularity[-x{digest}]   (deterministic: no seed)

    demo__crossan-TIVA-momef-k2-h512-lr1e-03-s0-x59096742   (the demo: standardize_states)
    demo__crossan-TI-momef-k2-h512-lr1e-03-cmsa1e-01-s0-x59096742   (+ CMSA, lambda 0.1)
    microlens-100k__iisan-e-TIVA-concat-h1024-lr1e-04-s1
    microlens-100k__lora-h512-lr2e-04-s0

The end-to-end methods (fft, adapter, lora) are text+image with concat fusion only, the graph
recommenders combine their modalities themselves, ID-SASRec and popularity read no content:
what cannot vary is not written. ``fusion`` is the resolved one (the method's default when
none was given); ``lr`` is written in exponent form with as many mantissa digits as it needs
(``1e-04``, ``2.5e-04``), so :func:`parse_run_name` gives back exactly the same values. The
dataset is separated by ``__`` (two underscores, never used by the rest), so dataset names may
contain ``-`` and ``_``. ``-x{digest}`` is :func:`crossan.train.identity.settings_suffix`:
present when a ``training`` setting the method uses (batch size, epochs, patience,
``standardize_states``, a convention, ...) differs from the schema's default, so two settings
give two folders and a setting renames only the runs it affects; ``settings.json`` in the run
folder lists them. ``RunConfig(**parse_run_name(name), data_dir=..., features_dir=...,
out_dir=..., **settings)`` rebuilds a run (fields a method does not use come back as their
defaults); :func:`run_name` of it is ``name`` again when ``settings`` are the ones the digest
was made of.

This module imports nothing heavy: the workflow parses names while building its DAG.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from crossan.errors import ConfigError
from crossan.train.identity import DIGEST_LENGTH, SUFFIX_PREFIX, settings_suffix

SEPARATOR = "__"
ADAPTER_METHODS: tuple[str, ...] = ("crossan", "indsan", "iisan-e", "iisan", "crossan-moda")
GRAPH_METHODS: tuple[str, ...] = ("mmgcn", "grcn", "bm3", "freedom", "mgcn", "mhcr")
# method -> the name fields it uses, in order (crossan.models' method lists, named here to
# keep this module light; tests/test_trainer.py checks they agree)
NAME_FIELDS: dict[str, tuple[str, ...]] = {
    **{method: ("modalities", "fusion", "topk", "hidden", "lr", "align", "seed") for method in ADAPTER_METHODS},
    **{method: ("modalities", "hidden", "lr", "seed") for method in GRAPH_METHODS},
    "adapter": ("hidden", "lr", "seed"),
    "lora": ("hidden", "lr", "seed"),
    "fft": ("lr", "seed"),
    "id-sasrec": ("lr", "seed"),
    "popularity": (),
}
# what parse_run_name gives for the fields a method's name leaves out: the values the run
# uses (fixed by the method) or, for fields it ignores, RunConfig's defaults
UNNAMED: dict[str, Any] = {"modalities": "", "fusion": "none", "topk": 2, "hidden": 512, "lr": 1e-4, "seed": 0,
                           "align": "cmsa", "align_weight": 0.0}
FIXED: dict[str, dict[str, Any]] = {
    **{method: {"modalities": "TI", "fusion": "concat"} for method in ("fft", "adapter", "lora")},
}
_FIELD_PATTERNS: dict[str, str] = {
    "modalities": r"-(?P<modalities>[TIVA]+)",
    "fusion": r"-(?P<fusion>[a-z]+)",
    "topk": r"(?:-k(?P<topk>\d+))?",  # with fusion momef only
    "hidden": r"-h(?P<hidden>\d+)",
    "lr": r"-lr(?P<lr>\d+(?:\.\d+)?e[+-]\d+)",
    "align": r"(?:-(?P<align>cmsa|infonce)(?P<align_weight>\d+(?:\.\d+)?e[+-]\d+))?",  # only when on
    "seed": r"-s(?P<seed>\d+)",
}
_NAMES: dict[str, re.Pattern[str]] = {
    method: re.compile(
        rf"^(?P<dataset>.+?){SEPARATOR}{re.escape(method)}"
        + "".join(_FIELD_PATTERNS[field] for field in fields)
        + rf"(?:{SUFFIX_PREFIX}(?P<digest>[0-9a-f]{{{DIGEST_LENGTH}}}))?$"
    )
    for method, fields in NAME_FIELDS.items()
}
NAME_FORMAT = ("{dataset}__{method}[-{modalities}][-{fusion}][-k{topk}][-h{hidden}][-lr{lr}][-cmsa{weight}][-s{seed}]"
               "[-x{digest}], "
               "the fields the method uses")


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
    fusion = config.resolved_fusion()
    text = {
        "modalities": f"-{config.modalities}",
        "fusion": f"-{fusion}",
        "topk": f"-k{config.topk}" if fusion == "momef" else "",
        "hidden": f"-h{config.hidden}",
        "lr": f"-lr{format_lr(config.lr)}",
        "align": f"-{config.align}{format_lr(config.align_weight)}" if config.align_weight > 0 else "",
        "seed": f"-s{config.seed}",
    }
    fields = "".join(text[field] for field in NAME_FIELDS[config.method])
    return f"{dataset}{SEPARATOR}{config.method}{fields}{settings_suffix(config)}"


def _match(name: str) -> tuple[str, dict[str, str | None]]:
    """``(method, groups)`` of the method's pattern that matches ``name``'s last component."""
    base = Path(name).name
    for method, pattern in _NAMES.items():
        match = pattern.match(base)
        # k is written with MOMEF only: a name with k and another fusion (or MOMEF without k)
        # is not a name run_name writes
        # (an alignment weight of 0 is written as no field at all)
        if (match and (match.groupdict().get("topk") is not None) == (match.groupdict().get("fusion") == "momef")
                and float(match.groupdict().get("align_weight") or 1) > 0):
            return method, match.groupdict()
    raise ConfigError(f"{name!r} is not a run name like 'demo__crossan-TIVA-momef-k2-h512-lr1e-04-s0' "
                      f"or 'demo__popularity' ({NAME_FORMAT})")


def parse_run_name(name: str) -> dict[str, Any]:
    """Inverse of :func:`run_name`: ``{"dataset", "method", "modalities", "fusion", "topk",
    "hidden", "lr", "seed", "align", "align_weight"}`` with the :class:`RunConfig` types; a field the method's name
    leaves out is the value the method always uses or, if it ignores it, the default
    (:data:`UNNAMED`, :data:`FIXED`). The settings digest is :func:`name_digest`. Accepts a
    path: only its last component is read."""
    method, parts = _match(name)
    fields: dict[str, Any] = {"dataset": parts["dataset"], "method": method, **UNNAMED, **FIXED.get(method, {})}
    for field, convert in (("modalities", str), ("fusion", str), ("topk", int), ("hidden", int), ("lr", float),
                           ("seed", int), ("align", str), ("align_weight", float)):
        if parts.get(field) is not None:
            fields[field] = convert(parts[field])
    return fields


def name_digest(name: str) -> str:
    """The settings digest a run name ends with (``-x{digest}``), ``""`` when it has none."""
    return _match(name)[1]["digest"] or ""
