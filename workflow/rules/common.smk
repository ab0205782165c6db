# Helpers shared by the workflow: what each dataset needs and where its raw files come from.
import functools
import json
import shlex

from crossan.config import dataset_letters, dataset_media, dataset_modalities, encoder_spec
from crossan.data.layout import MODALITY_PARTS
from crossan.data.raw_state import write_raw_state
from crossan.encoders.options import built_model_root
from crossan.results.plan import (
    BEYOND_FIGURES,
    BEYOND_TABLES,
    FIGURES,
    TABLES,
    check_run_modalities,
    experiment_runs,
    planned_targets,
    target_plan,
)
from crossan.runs.folder import GATES_FILE, METRICS_FILE, PER_USER_FILES, RUN_FILES, SETTINGS_FILE, TOWERS_FILE
from crossan.runs.settings import training_settings
from crossan.runs.specs import (
    graph_build_flags,
    input_fields,
    input_flags,
    method_training,
    planned_run_names,
    run_by_name,
    run_input_files,
)
from crossan.runs.variants import dataset_folders
from crossan.runs.vocabulary import END_TO_END, POPULARITY_FAMILY

MEDIA_MODALITIES = ["video", "audio", "image"]


def media_modalities(dataset):
    """The media the dataset's declared modalities sample (catalog.{name}.modalities)."""
    return [m for m in MEDIA_MODALITIES if m in dataset_modalities(config, dataset)]


def feature_modalities(dataset):
    """The encoders the dataset's declared modalities run, in canonical order."""
    return list(dataset_modalities(config, dataset))


@functools.cache
def folders(dataset):
    """The folder of each stage of ``dataset`` in this invocation (crossan/runs/variants.py):
    ``media``, ``runs``, ... under the config files' settings; ``media-x1a2b3c4``, ... for
    what --config changes."""
    return dataset_folders(config, FILES_CONFIG, dataset)


def folder(dataset, stage):
    """results/{dataset}/{stage's folder}."""
    return folders(dataset).path(stage)


def suffix(stage):
    """An input function that checks the requested folder's suffix (wildcard ``{stage}_x``)
    against this invocation's settings and needs no file: a folder of other settings cannot
    be built from these."""

    def check(wildcards):
        wanted, configured = wildcards[f"{stage}_x"], folders(wildcards.dataset).suffix(stage)
        if wanted != configured:
            given = folders(wildcards.dataset).describe() or "the config files' own settings"
            raise WorkflowError(
                f"results/{wildcards.dataset}/{stage}{wanted}/ was made with other settings than this "
                f"invocation's ({given}): its folder is results/{wildcards.dataset}/{stage}{configured}/. "
                f"Rerun with the --config that made it, or ask for the folder these settings give."
            )
        return []

    return check


def dataset_entry(wildcards):
    return config["catalog"][wildcards.dataset]


def by_dataset(demo, other):
    """A resource sized to the dataset: ``demo`` for the embedded demo (1,000 users, a few
    hundred MB at most), ``other`` (a number or a function of the wildcards) for MicroLens and
    users' data. A cluster then runs demo jobs side by side instead of queueing them."""

    def size(wildcards):
        if dataset_entry(wildcards)["kind"] == "demo":
            return demo
        return other(wildcards) if callable(other) else other

    return size


def raw_dir(wildcards):
    """The raw MicroLens-layout folder of a dataset: generated, downloaded or the user's."""
    entry = dataset_entry(wildcards)
    if entry["kind"] == "demo":
        return f"resources/{wildcards.dataset}/demo"
    if entry.get("data_dir"):
        return entry["data_dir"]
    return f"resources/{wildcards.dataset}/download"


def raw_dir_input(wildcards):
    """Input of dataset_manifest: the demo folder, the manifest of a finished download, or
    for a user's own copy the state of its layout (which file each part resolves to)."""
    entry = dataset_entry(wildcards)
    if entry["kind"] == "demo":
        return raw_dir(wildcards)
    if entry.get("data_dir"):
        return raw_state(wildcards.dataset, "layout")
    return f"resources/{wildcards.dataset}/download/manifest.json"


@functools.cache  # once per part and Snakemake process: a MicroLens folder has 100k files
def raw_state(dataset, part):
    """resources/{dataset}/raw-state/{part}.json, rewritten now if the part of the dataset's
    data_dir changed (crossan/data/raw_state.py): its time stamp moves only on a change."""
    data_dir = config["catalog"][dataset]["data_dir"]
    return str(write_raw_state(data_dir, part, f"resources/{dataset}/raw-state"))


def raw_part(part):
    """Input function: the state of one raw part (pairs, titles, covers, videos) for a dataset
    read from data_dir. The demo's and a download's files are outputs of their own rules,
    upstream of the dataset manifest, so they need none."""

    def state(wildcards):
        entry = dataset_entry(wildcards)
        if entry["kind"] == "demo" or not entry.get("data_dir"):
            return []
        return raw_state(wildcards.dataset, part)

    return state


def raw_parts(wildcards):
    """The state of the interactions and of every part a declared modality reads (the layout
    report reads them all); a part the dataset does not declare may be absent."""
    parts = dict.fromkeys(["pairs", *(MODALITY_PARTS[m] for m in dataset_modalities(config, wildcards.dataset))])
    return [state for part in parts if (state := raw_part(part)(wildcards))]


def media_part(wildcards):
    """The raw part a media file is sampled from: covers for images, videos for frames and audio."""
    return raw_part("covers" if wildcards.modality == "image" else "videos")(wildcards)


def media_setting(key):
    return lambda wildcards: dataset_media(config, wildcards.dataset)[key]


def encoder_setting(key):
    return lambda wildcards: encoder_spec(config, wildcards.dataset, wildcards.modality)[key]


def media_input(wildcards):
    """The media file an encoder reads; titles come from items.csv."""
    if wildcards.modality == "text":
        return []
    return f"{folder(wildcards.dataset, 'media')}/{wildcards.modality}.h5"


def item_table(wildcards, titles=False):
    """items.csv, for a job that reads its titles; for one that reads only its ids, the same
    file marked ancient (still built first, but its time stamp ignored): the ids change only
    when the sequences job reruns, which reruns such a job anyway through its other inputs
    (the splits of a training run or the graph, the media file of an extraction), while a
    corrected title must not rerun it."""
    path = f"results/{wildcards.dataset}/data/items.csv"
    return path if titles else ancient(path)


def encoder_item_table(wildcards):
    return item_table(wildcards, titles=wildcards.modality == "text")


def built_model_dir(dataset, modality):
    """A model the workflow builds (resources/models/NAME/...) is an input: its folder NAME.
    A Hugging Face id or a user's own folder is not tracked ([])."""
    root = built_model_root(encoder_spec(config, dataset, modality)["model"])
    return str(root) if root else []


def encoder_model_input(wildcards):
    return built_model_dir(wildcards.dataset, wildcards.modality)


def feature_shards(wildcards):
    count = config["features"]["shards"]
    return expand(
        "{features}/shards/{modality}-{shard}-of-{num_shards}.h5",
        features=folder(wildcards.dataset, "features"), modality=wildcards.modality, shard=range(count),
        num_shards=count,
    )


@functools.cache
def configured_run(dataset, name):
    return run_by_name(config, dataset, name)


def parsed_run(wildcards):
    """The RunConfig a run directory name stands for under its dataset's training settings
    (crossan.runs.specs.run_by_name): a name of another dataset, or whose settings digest is
    not the configured settings', stops the workflow naming the right one."""
    return configured_run(wildcards.dataset, wildcards.run)


def run_is_end_to_end(wildcards):
    return parsed_run(wildcards).family == END_TO_END


def run_path(key):
    """A training rule's output: the run folder's file ``key`` (crossan.runs.folder.RUN_FILES)."""
    return f"results/{{dataset}}/runs{{runs_x}}/{{run}}/{RUN_FILES[key]}"


def run_training(wildcards):
    """The training settings a run's method uses, as JSON (crossan.runs.specs.method_training):
    what `crossan train --training` rebuilds the run from, with its name."""
    method = parsed_run(wildcards).method
    return json.dumps(method_training(config, wildcards.dataset, method), sort_keys=True, separators=(",", ":"))


def run_input_flags(wildcards):
    """``crossan train`` flags naming where a run reads its items (crossan.runs.specs.input_fields)."""
    inputs = input_fields(config, wildcards.dataset, parsed_run(wildcards).method, folders(wildcards.dataset).names)
    return " ".join(f"{flag} {shlex.quote(str(value))}" for flag, value in input_flags(inputs))


def run_inputs(wildcards):
    """What a run's training job reads (crossan.runs.specs.run_input_files): sequences, and the
    feature file of each modality it reads, or the covers and checkpoints (fft, adapter, lora),
    and the graph file (graph recommenders); items.csv by its time stamp only for a run that
    reads titles (item_table)."""
    run = parsed_run(wildcards)  # a name of other settings stops here, naming the right one
    files = run_input_files(config, wildcards.dataset, wildcards.run, folders(wildcards.dataset).names)
    files["item_table"] = item_table(wildcards, titles=run.family == END_TO_END)
    return files


def run_outputs(dataset):
    """The metrics.json of every run the dataset's tables and figures read, and of its extra runs
    (which may read only the dataset's declared modalities)."""
    extra = planned_run_names(config, dataset)
    check_run_modalities(config, dataset, extra)
    names = dict.fromkeys(experiment_runs(config, dataset) + extra)
    return [f"{folder(dataset, 'runs')}/{name}/{METRICS_FILE}" for name in names]


def run_files(dataset, names, files):
    return [f"{folder(dataset, 'runs')}/{name}/{file}" for name in names for file in files]


@functools.cache
def cached_plan(dataset, target):
    """target_plan of the workflow's config, built once per target: a table or figure job asks
    for it for its inputs, its plan and its caption (TargetPlan is frozen)."""
    return target_plan(config, dataset, target)


def check_target_folder(wildcards):
    """The suffix check of a table's or figure's folder (tables, figures or beyond)."""
    for stage in ("tables", "figures", "beyond"):
        if hasattr(wildcards, f"{stage}_x"):
            suffix(stage)(wildcards)


def table_inputs(wildcards):
    """What a table reads of each run of its plan: metrics, per-user test metrics (t-tests),
    settings.json (the notes on non-default settings, Table B2's experts) and, for Tables 1
    and B1, the tower outputs (mutual information)."""
    check_target_folder(wildcards)
    files = [METRICS_FILE, PER_USER_FILES["test"], SETTINGS_FILE]
    if wildcards.table in ("table1", "tableB1"):
        files.append(TOWERS_FILE)
    inputs = run_files(wildcards.dataset, cached_plan(wildcards.dataset, wildcards.table).runs(), files)
    if wildcards.table == "table4":  # TT and GM, measured side by side (rule efficiency)
        inputs.append(efficiency_file(wildcards.dataset))
    return inputs


def efficiency_file(dataset):
    """Table 4's time and memory measured side by side (rule efficiency, workflow/rules/efficiency.smk)."""
    return f"{folder(dataset, 'efficiency')}/table4.json"


def efficiency_flag(wildcards):
    """`crossan table`'s --efficiency: the measurement for Table 4, nothing for the other tables."""
    return f"--efficiency {efficiency_file(wildcards.dataset)}" if wildcards.table == "table4" else ""


def figure_inputs(wildcards):
    check_target_folder(wildcards)
    files = [GATES_FILE] if wildcards.figure == "figure4" else [METRICS_FILE]
    return run_files(wildcards.dataset, cached_plan(wildcards.dataset, wildcards.figure).runs(), files)


def plan_param(key, caption=False):
    """A table or figure rule's param: the plan (as JSON) of the target in wildcard ``key``, or
    its caption."""

    def param(wildcards):
        plan = cached_plan(wildcards.dataset, wildcards[key])
        return plan.title if caption else plan.to_json()

    return param


def target_files(dataset, target):
    """The files of one table or figure of one dataset; those beyond the paper under beyond/."""
    stage = "beyond" if target in BEYOND_TABLES + BEYOND_FIGURES else "tables" if target in TABLES else "figures"
    extensions = ("csv", "md", "html") if target in TABLES + BEYOND_TABLES else ("png", "svg", "csv")
    return [f"{folder(dataset, stage)}/{target}.{ext}" for ext in extensions]


def target_outputs(target):
    """``target``'s files for every configured dataset that plans it."""
    return [path for name in config["datasets"] if target in planned_targets(config, name)
            for path in target_files(name, target)]


def all_outputs(wildcards):
    outputs = []
    for name in config["datasets"]:
        outputs += [f"results/{name}/data/stats.json", f"results/{name}/data/layout_report.json"]
        outputs += expand("{media}/{modality}.h5", media=folder(name, "media"), modality=media_modalities(name))
        outputs += expand("{features}/{modality}.h5", features=folder(name, "features"),
                          modality=feature_modalities(name))
        outputs += run_outputs(name)
        for target in planned_targets(config, name):
            outputs += target_files(name, target)
    return outputs
