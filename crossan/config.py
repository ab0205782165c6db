"""Load and validate ``config.yaml`` against ``workflow/schemas/config.schema.yaml``.

Validation happens once, when the Snakefile starts, before any job: every problem is
reported with the dotted key that holds it (``catalog.demo.users``). After validation the
schema's defaults are filled in, so the rest of the code reads plain dictionaries.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from crossan.errors import ConfigError
from crossan.runs.vocabulary import MODALITIES

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"


def _with_defaults(validator_class: type[jsonschema.protocols.Validator]) -> type:
    """A validator class that also writes each property's ``default`` into the instance."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator: Any, properties: Mapping, instance: Any, schema: Mapping) -> Iterator:
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if isinstance(subschema, dict) and "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path) or "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    """One line per problem: the dotted key, then what is wrong with it."""
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unexpected = sorted(set(error.instance) - set(allowed))
        where = _key_path(error)
        prefix = "" if where == "(top level)" else where + "."
        keys = ", ".join(f"'{prefix}{key}'" for key in unexpected)
        return f"unknown key {keys}; allowed here: {', '.join(allowed)}"
    return f"key '{_key_path(error)}': {error.message}"


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def validate_config(config: dict[str, Any], schema_path: Path = SCHEMA_PATH) -> dict[str, Any]:
    """Validate ``config`` in place, fill defaults, and return it.

    Raises ``ConfigError`` listing every problem with its key. Per-dataset ``media``
    blocks override the global ``media`` block key by key (see :func:`dataset_media`).
    """
    explicit = copy.deepcopy(config)
    schema = load_schema(schema_path)
    validator_class = _with_defaults(jsonschema.validators.validator_for(schema))
    errors = sorted(validator_class(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    problems = [_describe(error) for error in errors]
    catalog = config.get("catalog", {}) if isinstance(config.get("catalog"), dict) else {}
    for name in config.get("datasets", []) if isinstance(config.get("datasets"), list) else []:
        if isinstance(name, str) and name not in catalog:
            problems.append(
                f"key 'datasets': '{name}' is not defined under 'catalog' "
                f"(defined: {', '.join(sorted(catalog)) or 'none'})"
            )
    if problems:
        raise ConfigError("invalid config.yaml:\n  " + "\n  ".join(dict.fromkeys(problems)))
    # Per-dataset media, encoder and training blocks keep only what the user wrote, so that schema
    # defaults there never mask the global settings; a global encoder block the user wrote
    # partly is completed from that modality's schema default.
    for name, entry in catalog.items():
        for block in ("media", "encoders", "training"):
            entry[block] = copy.deepcopy(explicit["catalog"][name].get(block, {}))
    encoder_schema = schema["properties"]["encoders"]["properties"]
    layers_default = schema["$defs"]["encoder"]["properties"]["layers"]["default"]
    for modality, spec in encoder_schema.items():
        written = explicit.get("encoders", {}).get(modality, {})
        config["encoders"][modality] = {"layers": list(layers_default), **spec["default"], **written}
    return config


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML file and validate it."""
    with Path(path).open(encoding="utf-8") as handle:
        config = yaml.safe_load(handle) or {}
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return validate_config(config)


def encoder_spec(config: Mapping[str, Any], name: str, modality: str) -> dict[str, Any]:
    """Effective encoder settings of ``modality`` for dataset ``name``: the global block,
    then the dataset's overrides (keys ``model``, ``layers``, ``batch_size``, ``max_length``)."""
    return {**config["encoders"][modality], **config["catalog"][name]["encoders"].get(modality, {})}


def dataset_media(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Effective media settings of dataset ``name``: global ``media`` then its overrides."""
    return {**config["media"], **config["catalog"][name].get("media", {})}


def dataset_modalities(config: Mapping[str, Any], name: str) -> tuple[str, ...]:
    """The modalities dataset ``name`` declares (``catalog.{name}.modalities``), in canonical
    order (text, image, video, audio); all four when it declares none. ``all`` samples,
    extracts, trains and tabulates only these."""
    declared = config["catalog"][name].get("modalities") or MODALITIES
    return tuple(modality for modality in MODALITIES if modality in declared)


def dataset_letters(config: Mapping[str, Any], name: str) -> str:
    """:func:`dataset_modalities` as run-name letters: ``"TIVA"``, ``"T"``."""
    return "".join(modality[0].upper() for modality in dataset_modalities(config, name))
