"""Run identity: a run's folder name, and the digest of its settings that the name ends with.

A name spells out what the paper's tables vary, with only the fields its method uses
(:attr:`~crossan.runs.vocabulary.Method.name_fields`), then ``-x{digest}`` when a ``training``
setting the method uses differs from the schema's default::

    {dataset}__crossan-{modalities}-{fusion}[-k{topk}]-h{hidden}-lr{lr}[-{align}{weight}]-s{seed}[-x{digest}]
        (crossan, indsan, iisan, iisan-e, crossan-moda; k, MOMEF's top-k, only with fusion
        momef; -cmsa{weight} or -infonce{weight}, the auxiliary alignment loss, only when on)
    {dataset}__mmgcn-{modalities}-h{hidden}-lr{lr}-s{seed}[-x{digest}]   (graph recommenders)
    {dataset}__adapter-h{hidden}-lr{lr}-s{seed}[-x{digest}]   (adapter, lora: h = bottleneck, rank)
    {dataset}__fft-lr{lr}-s{seed}[-x{digest}]
    {dataset}__id-sasrec-lr{lr}-s{seed}[-x{digest}]
    {dataset}__popularity[-x{digest}]   (deterministic: no seed)

    demo__crossan-TIVA-momef-k2-h512-lr1e-03-s0-x59096742   (the demo: standardize_states)
    microlens-100k__iisan-e-TIVA-concat-h1024-lr1e-04-s1

What a method cannot vary is not written. ``lr`` is written in exponent form with as many
mantissa digits as it needs (``1e-04``, ``2.5e-04``), so :func:`parse_run_name` gives back
exactly the same values. The dataset is separated by ``__`` (never used by the rest), so
dataset names may contain ``-`` and ``_``.

The digest: the first 8 hex digits of the SHA-256 of the changed settings and their values
(JSON, keys sorted), by ``config.yaml`` name. Hence two values of one setting give two run
folders, side by side; changing a setting renames, and so reruns, only the runs whose method
uses it; the same suffix on two runs means the same settings, which ``settings.json`` in a
run's folder lists (:func:`settings_record`). The defaults are the schema's, not a dataset's,
so runs of two configurations never share a folder. Settings of earlier steps (``sequences``,
``media``, ``encoders``) change a run's input files instead.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from crossan.errors import ConfigError
from crossan.runs.run_config import RunConfig
from crossan.runs.settings import SETTING_FIELDS, setting_value
from crossan.runs.vocabulary import ALIGNMENTS, METHODS, NAME_DEFAULTS, NO_FUSION

SEPARATOR = "__"
SUFFIX_PREFIX = "-x"
DIGEST_LENGTH = 8
# compared and hashed as floats, so that 0 and 0.0 (or 1 and 1.0) are the same setting
_FLOAT_SETTINGS: tuple[str, ...] = ("weight_decay", "e2e_text_lr", "e2e_image_lr", "lora_alpha")
_ALIGN = "|".join(ALIGNMENTS)
_FIELD_PATTERNS: dict[str, str] = {
    "modalities": r"-(?P<modalities>[TIVA]+)",
    "fusion": r"-(?P<fusion>[a-z]+)",
    "topk": r"(?:-k(?P<topk>\d+))?",  # with fusion momef only
    "hidden": r"-h(?P<hidden>\d+)",
    "lr": r"-lr(?P<lr>\d+(?:\.\d+)?e[+-]\d+)",
    "align": rf"(?:-(?P<align>{_ALIGN})(?P<align_weight>\d+(?:\.\d+)?e[+-]\d+))?",  # only when on
    "seed": r"-s(?P<seed>\d+)",
}
_NAMES: dict[str, re.Pattern[str]] = {
    name: re.compile(
        rf"^(?P<dataset>.+?){SEPARATOR}{re.escape(name)}"
        + "".join(_FIELD_PATTERNS[field] for field in method.name_fields)
        + rf"(?:{SUFFIX_PREFIX}(?P<digest>[0-9a-f]{{{DIGEST_LENGTH}}}))?$"
    )
    for name, method in METHODS.items()
}
_CONVERT = {"modalities": str, "fusion": str, "topk": int, "hidden": int, "lr": float, "seed": int, "align": str,
            "align_weight": float}
NAME_FORMAT = ("{dataset}__{method}[-{modalities}][-{fusion}][-k{topk}][-h{hidden}][-lr{lr}][-{align}{weight}][-s{seed}]"
               "[-x{digest}], the fields the method uses")

# ------------------------------------------------------------------------- settings digest


def _normal(key: str, value: Any) -> Any:
    if key in _FLOAT_SETTINGS and value is not None:
        return float(value)
    if isinstance(value, Mapping):
        return json.loads(json.dumps(value, sort_keys=True))
    return value


def run_settings(run: RunConfig) -> dict[str, Any]:
    """The settings ``run`` was given, by ``config.yaml`` name, for the settings its method
    uses. An encoder learning rate left unset is the run's ``lr``, which it then uses."""
    values = {}
    for key in run.info.settings:
        value = getattr(run, SETTING_FIELDS.get(key, key))
        if key in ("e2e_text_lr", "e2e_image_lr") and value is None:
            value = run.lr
        values[key] = _normal(key, value)
    return values


@functools.cache
def _method_defaults(method: str) -> dict[str, Any]:
    values = {}
    for key in METHODS[method].settings:
        value = setting_value({}, key, method)
        values[key] = _normal(key, {} if value is None and key == "graph_grid" else value)
    return values


def changed_settings(run: RunConfig) -> dict[str, Any]:
    """The settings of ``run`` that differ from the schema's defaults: the digest's input."""
    defaults = _method_defaults(run.method)
    return {key: value for key, value in run_settings(run).items() if value != defaults[key]}


def settings_digest(changed: Mapping[str, Any]) -> str:
    """8 hex digits of the SHA-256 of ``changed`` as JSON (keys sorted); ``""`` when empty."""
    if not changed:
        return ""
    text = json.dumps(dict(changed), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:DIGEST_LENGTH]


def settings_record(run: RunConfig) -> dict[str, Any]:
    """``settings.json``'s content: the run's name, the digest, its input (``changed``) and
    every setting the run's method uses (``settings``), by ``config.yaml`` name."""
    changed = changed_settings(run)
    return {"run_name": run_name(run), "digest": settings_digest(changed), "changed": changed,
            "settings": run_settings(run)}


def describe_changed(changed: Mapping[str, Any]) -> str:
    """``"max_epochs=100, standardize_states=true"`` (JSON values, keys sorted)."""
    return ", ".join(f"{key}={json.dumps(changed[key], sort_keys=True)}" for key in sorted(changed))


# ------------------------------------------------------------------------- names


def format_lr(lr: float) -> str:
    """``1e-4 -> "1e-04"``, ``2.5e-4 -> "2.5e-04"``: exponent form, shortest exact mantissa."""
    for digits in range(17):
        text = f"{lr:.{digits}e}"
        if float(text) == lr:
            return text
    return f"{lr:.16e}"


def run_name(run: RunConfig) -> str:
    """The run's folder name (see the module docstring)."""
    dataset = run.dataset
    if not dataset or "/" in dataset or SEPARATOR in dataset or dataset.endswith("_") or dataset != dataset.strip():
        raise ConfigError(f"dataset name {dataset!r} cannot be part of a run name "
                          f"(no '/', no '{SEPARATOR}', no trailing '_' or spaces)")
    fusion = run.resolved_fusion()
    text = {
        "modalities": f"-{run.modalities}",
        "fusion": f"-{fusion}",
        "topk": f"-k{run.topk}" if fusion == "momef" else "",
        "hidden": f"-h{run.hidden}",
        "lr": f"-lr{format_lr(run.lr)}",
        "align": f"-{run.align}{format_lr(run.align_weight)}" if run.align_weight > 0 else "",
        "seed": f"-s{run.seed}",
    }
    digest = settings_digest(changed_settings(run))
    suffix = f"{SUFFIX_PREFIX}{digest}" if digest else ""
    return f"{dataset}{SEPARATOR}{run.method}{''.join(text[field] for field in run.info.name_fields)}{suffix}"


def _match(name: str) -> tuple[str, dict[str, str | None]]:
    """``(method, groups)`` of the method's pattern that matches ``name``'s last component."""
    base = Path(name).name
    for method, pattern in _NAMES.items():
        match = pattern.match(base)
        # k is written with MOMEF only, and an alignment weight of 0 as no field at all: a name
        # with k and another fusion (or MOMEF without k) is not one run_name writes
        if (match and (match.groupdict().get("topk") is not None) == (match.groupdict().get("fusion") == "momef")
                and float(match.groupdict().get("align_weight") or 1) > 0):
            return method, match.groupdict()
    raise ConfigError(f"{name!r} is not a run name like 'demo__crossan-TIVA-momef-k2-h512-lr1e-04-s0' "
                      f"or 'demo__popularity' ({NAME_FORMAT})")


def parse_run_name(name: str) -> dict[str, Any]:
    """Inverse of :func:`run_name`: ``{"dataset", "method", "modalities", "fusion", "topk",
    "hidden", "lr", "seed", "align", "align_weight"}``; a field the method's name leaves out
    is the value the method always uses or, if it ignores it, the default. The settings digest
    is :func:`name_digest`. Accepts a path: only its last component is read."""
    method, parts = _match(name)
    fields: dict[str, Any] = {"dataset": parts["dataset"], "method": method, **NAME_DEFAULTS,
                              "modalities": "", "fusion": NO_FUSION, **METHODS[method].fixed}
    for field, convert in _CONVERT.items():
        if parts.get(field) is not None:
            fields[field] = convert(parts[field])
    return fields


def name_digest(name: str) -> str:
    """The settings digest a run name ends with (``-x{digest}``), ``""`` when it has none."""
    return _match(name)[1]["digest"] or ""


