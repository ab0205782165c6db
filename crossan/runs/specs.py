"""From ``config.yaml`` to runs: the configured run specs, and the run a folder name stands for.

``runs`` is a list of run specs; each gives ``method`` and optionally the name fields
(``modalities``, ``fusion``, ``topk``, ``hidden``, ``lr``, ``align``/``align_weight``) and
``seeds`` (one run per seed). A dataset's own ``runs`` list replaces the global one; its
``training`` block overrides the global settings key by key. :func:`planned_run_names` turns
the specs into run folder names (:mod:`crossan.runs.identity`), so the workflow asks for
``results/{dataset}/runs/{name}/metrics.json`` and the name alone says what a run is.

The settings of ``training`` are the same for every run of a dataset; those a method uses
(:attr:`~crossan.runs.vocabulary.Method.settings`) that differ from the schema's defaults are
digested into its runs' names, so changing one gives new folders for exactly the runs it
affects. :func:`run_from_name` rebuilds a run from its name and those settings, and refuses a
name that another digest (other settings) or another spelling would give; the training rule
launches every run that way (:func:`method_training`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from crossan.config import dataset_letters, encoder_spec
from crossan.encoders.options import built_model_root
from crossan.errors import ConfigError
from crossan.runs.identity import changed_settings, describe_changed, name_digest, parse_run_name, run_name
from crossan.runs.run_config import RunConfig
from crossan.runs.settings import PER_METHOD_SETTINGS, default_training, run_fields, setting_value, training_settings
from crossan.runs.vocabulary import END_TO_END, GRAPH, METHODS, MODALITY_LETTERS, NAME_DEFAULTS

_SPEC_DEFAULTS: Mapping[str, Any] = {**{key: value for key, value in NAME_DEFAULTS.items() if key != "seed"},
                                     "seeds": [NAME_DEFAULTS["seed"]]}


def run_specs(config: Mapping[str, Any], dataset: str) -> list[dict[str, Any]]:
    """The dataset's run specs (its own ``runs`` or the global ones), defaults filled in: a
    spec without ``modalities`` reads every modality the dataset declares (and MOMEF's
    ``topk`` is at most their number); a method with fixed modalities has them."""
    entry = config["catalog"][dataset]
    specs = entry["runs"] if entry.get("runs") is not None else config.get("runs", [])
    letters = dataset_letters(config, dataset)
    dataset_defaults = {"modalities": letters, "topk": min(NAME_DEFAULTS["topk"], len(letters))}
    return [{**_SPEC_DEFAULTS, **dataset_defaults, **_fixed(spec.get("method")), **spec} for spec in specs]


def _fixed(method: str | None) -> dict[str, Any]:
    return {"modalities": METHODS[method].fixed["modalities"]} if method in METHODS and METHODS[method].fixed else {}


def configured_run(config: Mapping[str, Any], dataset: str, method: str, **name_fields: Any) -> RunConfig:
    """The run of ``method`` with ``name_fields`` (modalities, fusion, topk, hidden, lr, seed,
    align, align_weight) under ``dataset``'s training settings: what its name says, plus the
    settings its digest stands for. Paths are left empty."""
    return RunConfig(data_dir="", features_dir="", out_dir="", dataset=dataset, method=method, **name_fields,
                     **run_fields(training_settings(config, dataset), method))


def planned_run_names(config: Mapping[str, Any], dataset: str) -> list[str]:
    """Every configured run of ``dataset`` as a run folder name, in config order, once.

    Raises :class:`ConfigError` naming the spec when it is not a valid run (unknown method,
    ``iisan`` with modalities other than TI, ...).
    """
    names: list[str] = []
    for index, spec in enumerate(run_specs(config, dataset)):
        for seed in spec["seeds"]:
            try:
                run = configured_run(config, dataset, spec["method"], modalities=spec["modalities"],
                                     fusion=spec["fusion"], topk=spec["topk"], hidden=spec["hidden"],
                                     lr=float(spec["lr"]), seed=seed, align=spec["align"],
                                     align_weight=float(spec["align_weight"]))
            except ConfigError as error:
                raise ConfigError(f"runs of dataset {dataset!r}, entry {index + 1} ({spec}): {error}") from error
            name = run_name(run)
            if name not in names:
                names.append(name)
    return names


def method_training(config: Mapping[str, Any], dataset: str, method: str) -> dict[str, Any]:
    """The ``training`` settings of ``dataset`` that ``method`` uses, by ``config.yaml`` name,
    a per-method block (``e2e_text_lr``, ``graph_grid``) reduced to its entry: all a run of it
    needs from the configuration besides its name (the training rule hands them to
    ``crossan train --training``), so a setting it does not use changes nothing of its job."""
    settings = training_settings(config, dataset)
    training = {}
    for key in METHODS[method].settings:
        value = setting_value(settings, key, method)
        training[key] = ({} if value is None else {method: value}) if key in PER_METHOD_SETTINGS else value
    return training


def methods_training(config: Mapping[str, Any], dataset: str, methods: Iterable[str]) -> dict[str, Any]:
    """The ``training`` settings of ``dataset`` that any of ``methods`` uses, as
    :func:`method_training` gives each, a per-method block holding the entries of those methods:
    what ``crossan efficiency --training`` rebuilds a table's runs from."""
    training: dict[str, Any] = {}
    for method in dict.fromkeys(methods):
        for key, value in method_training(config, dataset, method).items():
            training[key] = {**training.get(key, {}), **value} if key in PER_METHOD_SETTINGS else value
    return training


def run_from_name(name: str, training: Mapping[str, Any], source: str = "config.yaml", **inputs: Any) -> RunConfig:
    """The run folder ``name`` stands for under the ``training`` settings (a dataset's, or
    :func:`method_training`'s), with ``inputs`` (``data_dir``, ``out_dir``, ...). ``source``
    says where the settings came from, for the messages.

    :class:`ConfigError` for a key that is no ``training`` setting, and when ``name`` is not
    the name :func:`~crossan.runs.identity.run_name` gives that run under these settings
    (another settings digest, or a spelling of its own such as ``lr1.0e-03``), naming the
    right one."""
    if unknown := sorted(set(training) - set(default_training())):
        raise ConfigError(f"{source}: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not training "
                          f"setting(s); known: {', '.join(sorted(default_training()))}")
    fields = parse_run_name(name)
    run = RunConfig(**{"data_dir": "", "features_dir": "", "out_dir": "", **inputs}, **fields,
                    **run_fields(training, fields["method"]))
    expected = run_name(run)
    if expected == name:
        return run
    if name_digest(name) != name_digest(expected):
        changed = describe_changed(changed_settings(run)) or "none"
        raise ConfigError(
            f"run {name} does not match the training settings of dataset {fields['dataset']!r} in {source} "
            f"(those of its method other than the defaults: {changed}): with them this run is named "
            f"{expected}. A name's -x suffix digests its settings (settings.json in a run's folder lists "
            f"them); to train other settings, set them in {source}")
    raise ConfigError(f"run {name} is not canonical: the same run is named {expected}")


def run_by_name(config: Mapping[str, Any], dataset: str, name: str, **inputs: Any) -> RunConfig:
    """The run a folder name under ``results/{dataset}/runs/`` stands for, with the dataset's
    training settings (:func:`run_from_name`); a name of another dataset is refused."""
    owner = parse_run_name(name)["dataset"]
    if owner != dataset:
        raise ConfigError(f"run {name} belongs to dataset {owner!r}, not {dataset!r}: "
                          f"ask for results/{owner}/runs/{name}/metrics.json")
    return run_from_name(name, training_settings(config, dataset), **inputs)


# ``crossan train`` input flag -> the RunConfig field it fills (the workflow writes them, run.py reads them)
INPUT_FLAGS: Mapping[str, str] = {
    "--data": "data_dir", "--features": "features_dir", "--graph": "graph_file", "--media": "media_dir",
    "--text-model": "text_model", "--image-model": "image_model", "--text-max-length": "text_max_length",
}


def input_flags(fields: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """``(flag, value)`` of each input field in ``fields`` (:func:`input_fields`), in
    :data:`INPUT_FLAGS` order."""
    return [(flag, fields[field]) for flag, field in INPUT_FLAGS.items() if field in fields]


def input_fields(config: Mapping[str, Any], dataset: str, method: str,
                 folders: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Where a run of ``method`` on ``dataset`` reads its items, as
    :class:`~crossan.runs.run_config.RunConfig` fields: the sequences, and the feature folder
    (side adapters), the graph file too (graph recommenders), or the covers, both checkpoints
    and the title length of stage 1 (end-to-end runs); nothing more for ID-SASRec and
    popularity. The paths are the workflow's (``results/{dataset}/...``), in ``folders``
    (stage -> folder name, :class:`crossan.runs.variants.DatasetFolders`; default the plain
    ``media``, ``features``, ``graph``)."""
    folder = {"media": "media", "features": "features", "graph": "graph", **(folders or {})}
    info = METHODS[method]
    inputs: dict[str, Any] = {"data_dir": f"results/{dataset}/data"}
    if info.family == END_TO_END:
        text, image = encoder_spec(config, dataset, "text"), encoder_spec(config, dataset, "image")
        return inputs | {"media_dir": f"results/{dataset}/{folder['media']}", "text_model": str(text["model"]),
                         "image_model": str(image["model"]), "text_max_length": int(text["max_length"])}
    if info.reads_content:
        inputs["features_dir"] = f"results/{dataset}/{folder['features']}"
    if info.family == GRAPH:
        inputs["graph_file"] = f"results/{dataset}/{folder['graph']}/graph.h5"
    return inputs


def run_input_files(config: Mapping[str, Any], dataset: str, name: str, folders: Mapping[str, str] | None = None,
                    results: str = "results") -> dict[str, str]:
    """The files the training job of run ``name`` reads, by role (the workflow's ``run_inputs``,
    which marks ``item_table`` ancient unless the run reads titles): the three splits and the
    item table; then the covers and the text and image checkpoints the workflow builds
    (``resources/models/NAME``) for an end-to-end run (fft, adapter, lora), or the feature file
    of each modality the run reads, and the graph file for a graph recommender. Under
    ``results`` and in ``folders`` (stage -> folder name, as :func:`input_fields`)."""
    folder = {"media": "media", "features": "features", "graph": "graph", **(folders or {})}
    fields = parse_run_name(name)
    family = METHODS[fields["method"]].family
    root = f"{results}/{dataset}"
    files = {split: f"{root}/data/{split}.parquet" for split in ("train", "valid", "test")}
    files["item_table"] = f"{root}/data/items.csv"
    if family == END_TO_END:
        files["covers"] = f"{root}/{folder['media']}/image.h5"
        for modality in ("text", "image"):
            if model := built_model_root(str(encoder_spec(config, dataset, modality)["model"])):
                files[f"{modality}_model"] = str(model)
        return files
    for letter in fields.get("modalities") or "":
        files[MODALITY_LETTERS[letter]] = f"{root}/{folder['features']}/{MODALITY_LETTERS[letter]}.h5"
    if family == GRAPH:
        files["graph"] = f"{root}/{folder['graph']}/graph.h5"
    return files


def graph_build_flags(settings: Mapping[str, Any]) -> str:
    """``crossan graph`` flags from a dataset's training settings: the kept layer and k of the
    graph recommenders' runs, the sequential models' ``max_len`` (the training window) and the
    z-scoring of the states, all part of those runs' identity."""
    flags = [f"--layer {setting_value(settings, 'graph_layer', '')}", f"--k {setting_value(settings, 'graph_k', '')}",
             f"--max-len {setting_value(settings, 'max_len', '')}"]
    if setting_value(settings, "standardize_states", ""):
        flags.append("--standardize-states")
    return " ".join(flags)
