"""Load and validate ``config.yaml`` against ``workflow/schemas/config.schema.yaml``.

Validation happens once, when the Snakefile starts, before any job: every problem is
reported with the dotted key that holds it (``catalog.demo.users``). After validation the
schema's defaults are filled in, so the rest of the code reads plain dictionaries.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from crossan.errors import ConfigError
from crossan.runs.vocabulary import MODALITIES

COMMAND_LINE = "--config"  # the label of the values given on the command line
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


@dataclass(frozen=True)
class ConfigSource:
    """Where part of the configuration came from: ``label`` (``config.yaml``, another
    ``--configfile``, or ``--config``) and the mapping it gave, as read."""

    label: str
    values: Mapping[str, Any]


def _holds(tree: Any, path: Sequence[Any]) -> bool:
    """Whether ``tree`` has a value at ``path`` (keys of mappings, indices of lists)."""
    for part in path:
        if isinstance(tree, Mapping) and part in tree:
            tree = tree[part]
        elif isinstance(tree, list) and isinstance(part, int) and part < len(tree):
            tree = tree[part]
        else:
            return False
    return True


def _origin(path: Sequence[Any], sources: Sequence[ConfigSource]) -> str:
    """The label of the source that gave the value at ``path``: the last one holding it (later
    sources override earlier ones, as Snakemake merges them)."""
    for source in reversed(sources):
        if _holds(source.values, path):
            return source.label
    return "the schema's default" if sources else ""


def _error_path(error: jsonschema.ValidationError) -> list[Any]:
    """The path of the offending value; for an unknown key, the key itself."""
    path = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        allowed = error.schema.get("properties", {})
        path += sorted(key for key in error.instance if key not in allowed)[:1]
    return path


def _number_hint(error: jsonschema.ValidationError, origin: str) -> str:
    """For a number a config file gives as text (``1e-4``: YAML 1.1 wants a dot before the
    exponent; or a quoted number), how to write it. Command-line values are typed already."""
    if origin == COMMAND_LINE:
        return ""
    wanted = error.validator_value if error.validator == "type" else None
    wanted = {wanted} if isinstance(wanted, str) else set(wanted or ())
    if not isinstance(error.instance, str) or not wanted & {"number", "integer"}:
        return ""
    try:
        number = float(error.instance)
    except ValueError:
        return ""
    mantissa, _, exponent = error.instance.lower().partition("e")
    spelled = f"{float(mantissa):.1f}e{int(exponent)}" if exponent else repr(number)
    if not exponent:
        return f" (write it without quotes: {spelled})"
    return f" (YAML reads {error.instance} as text: write {spelled}, a dot in the mantissa and a signed exponent)"


def _describe(error: jsonschema.ValidationError, sources: Sequence[ConfigSource] = ()) -> str:
    """One line per problem: the dotted key, then what is wrong with it, where it came from."""
    origin = _origin(_error_path(error), sources)
    where_from = f" [from {origin}]" if origin else ""
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unexpected = sorted(set(error.instance) - set(allowed))
        where = _key_path(error)
        prefix = "" if where == "(top level)" else where + "."
        keys = ", ".join(f"'{prefix}{key}'" for key in unexpected)
        return f"unknown key {keys}{where_from}; allowed here: {', '.join(allowed)}"
    return f"key '{_key_path(error)}': {error.message}{_number_hint(error, origin)}{where_from}"


def _typed(text: str) -> Any:
    """A command-line value as YAML 1.2 would read it: ``3`` -> 3, ``1e-4`` -> 0.0001, ``true``."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return text
    return value


def _set(tree: Any, path: Sequence[Any], value: Any) -> None:
    for part in path[:-1]:
        tree = tree[part]
    tree[path[-1]] = value


def type_command_line(config: dict[str, Any], command_line: Mapping[str, Any], schema: Mapping[str, Any]) -> None:
    """Give the values ``--config`` set the types the schema asks for, in place.

    Snakemake reads ``--config 'training={max_epochs: 3}'`` with YAML's base loader, so every
    nested value arrives as text (``'3'``). A text value from the command line where the
    schema wants something else is read as YAML (a number, a boolean, ``null``); it is kept
    only if the schema then accepts it there. Values from config files are left as written.
    """
    validator = jsonschema.validators.validator_for(schema)(schema)
    for _ in range(16):  # a value typed may reveal another (an item of a list now checked)
        typed_any = False
        for error in validator.iter_errors(config):
            path = list(error.absolute_path)
            if not isinstance(error.instance, str) or not _holds(command_line, path):
                continue
            value = _typed(error.instance)
            if value != error.instance and validator.evolve(schema=error.schema).is_valid(value):
                _set(config, path, value)
                typed_any = True
        if not typed_any:
            return


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def validate_config(config: dict[str, Any], schema_path: Path = SCHEMA_PATH,
                    sources: Sequence[ConfigSource] = ()) -> dict[str, Any]:
    """Validate ``config`` in place, fill defaults, and return it.

    ``sources``, in the order they were merged (``config.yaml``, each ``--configfile``, then
    ``--config``), name where each bad value came from; values of a source labelled
    ``--config`` are first typed by the schema (:func:`type_command_line`). Raises
    ``ConfigError`` listing every problem with its key. Per-dataset ``media`` blocks override
    the global ``media`` block key by key (see :func:`dataset_media`).
    """
    schema = load_schema(schema_path)
    for source in sources:
        if source.label == COMMAND_LINE:
            type_command_line(config, source.values, schema)
    explicit = copy.deepcopy(config)
    validator_class = _with_defaults(jsonschema.validators.validator_for(schema))
    errors = sorted(validator_class(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    problems = [_describe(error, sources) for error in errors]
    catalog = config.get("catalog", {}) if isinstance(config.get("catalog"), dict) else {}
    for name in config.get("datasets", []) if isinstance(config.get("datasets"), list) else []:
        if isinstance(name, str) and name not in catalog:
            problems.append(
                f"key 'datasets': '{name}' is not defined under 'catalog' "
                f"(defined: {', '.join(sorted(catalog)) or 'none'})"
            )
    if problems:
        labels = " + ".join(source.label for source in sources) or "config.yaml"
        raise ConfigError(f"invalid configuration ({labels}):\n  " + "\n  ".join(dict.fromkeys(problems)))
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


def read_config_file(path: str | Path) -> dict[str, Any]:
    """One YAML config file as written (not validated); a clear error when it is missing."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file (pass --config PATH, or run from the repository root, "
                          f"where config.yaml is)")
    with path.open(encoding="utf-8") as handle:
        try:
            config = yaml.safe_load(handle) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return config


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML file and validate it."""
    config = read_config_file(path)
    return validate_config(config, sources=[ConfigSource(str(path), copy.deepcopy(config))])


def _merged(into: dict[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` merged into ``into`` mapping by mapping, as Snakemake merges config files."""
    for key, value in values.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merged(into[key], value)
        else:
            into[key] = copy.deepcopy(value)
    return into


def config_sources(files: Sequence[str | Path], command_line: Mapping[str, Any]) -> list[ConfigSource]:
    """The config files, in order, then ``--config``'s values (when any), as sources."""
    sources = [ConfigSource(str(path), read_config_file(path)) for path in files if Path(path).is_file()]
    if command_line:
        sources.append(ConfigSource(COMMAND_LINE, copy.deepcopy(dict(command_line))))
    return sources


def files_config(sources: Sequence[ConfigSource], schema_path: Path = SCHEMA_PATH) -> dict[str, Any]:
    """The configuration the config files give, without ``--config``, validated: the defaults
    that :mod:`crossan.runs.variants` keeps command-line settings apart from."""
    files = [source for source in sources if source.label != COMMAND_LINE]
    merged: dict[str, Any] = {}
    for source in files:
        _merged(merged, source.values)
    return validate_config(merged, schema_path, files)


def missing_config_message(files: Sequence[str | Path], directory: Path, snakefile_dir: Path) -> str:
    """Why the workflow cannot start when none of ``files`` exists here, and what to do."""
    if any(Path(path).is_file() for path in files):
        return ""
    hint = (f"run from the repository ({snakefile_dir}) or pass --directory {snakefile_dir}"
            if directory.resolve() != snakefile_dir.resolve() else "restore config.yaml (git checkout config.yaml)")
    return f"no config.yaml in {directory}: {hint}, or name a config file with --configfile"


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
