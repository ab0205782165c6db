# crossan: the CROSSAN pipeline, from raw data to the paper's tables.
#   snakemake --cores 2 all          everything configured in config.yaml (default: the demo)
#   snakemake --cores 2 results/demo/data/stats.json   one output by its path
#   snakemake --cores 2 results/demo/runs/demo__crossan-TIVA-momef-k2-h512-lr1e-03-s0-x59096742/metrics.json
#                                    one training run: its name is its configuration
#                                    (`crossan run-name --method crossan` prints it)
#   snakemake --cores 2 table5       one of the paper's tables or figures (table1, table3..table8,
#                                    figure3..figure5, figures, tableB1..tableB3, figureB1, beyond)
#   snakemake --cores 2 all --config 'training={max_epochs: 3}'   a setting changed for one call:
#                                    what it changes lands in -x{digest} folders beside the defaults
#   snakemake --report results/report.html   every table and figure, with captions
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

from crossan.config import config_sources, files_config, missing_config_message, validate_config
from crossan.data.layout import check_declared_parts
from crossan.encoders.load import check_encoder_models
from crossan.machine import cores_warning, machine_cores
from crossan.results.plan import dropped_targets
from crossan.runs.cost import estimate_cost, format_estimate
from crossan.runs.variants import SUFFIX_PATTERN

min_version("9.0")

SCHEMA = Path(workflow.basedir) / "workflow/schemas/config.schema.yaml"
CONFIG_FILES = ["config.yaml", *workflow.config_settings.configfiles]
if _missing := missing_config_message(CONFIG_FILES, Path.cwd(), Path(workflow.basedir)):
    raise WorkflowError(_missing)


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


# Sources name where a bad value came from; --config values are typed by the schema
# (`--config 'training={max_epochs: 3}'` arrives as text). What --config changes lands in
# folders beside the config files' own (crossan/runs/variants.py): FILES_CONFIG is those.
_sources = config_sources(CONFIG_FILES, workflow.config_settings.config)
validate_config(config, schema_path=SCHEMA, sources=_sources)
FILES_CONFIG = files_config(_sources, schema_path=SCHEMA)
# Local model folders and kept layers: a wrong one fails here, not in extraction after hours of media sampling.
check_encoder_models(config)
# A declared modality's folder (covers/, videos/) or titles.csv missing from a data_dir: named here.
check_declared_parts(config)
for _name in config["datasets"]:
    for _target, _why in dropped_targets(config, _name).items():
        logger.warning(f"{_name}: {_target} is left out: {_why}")
# What the plan costs, per stage, before it starts (crossan/runs/cost.py; `crossan cost` prints it too).
if workflow.is_main_process:  # not again in every job of a cluster
    for _name in config["datasets"]:
        logger.info(format_estimate(estimate_cost(config, _name)))


wildcard_constraints:
    dataset=r"[A-Za-z0-9][A-Za-z0-9_-]*",
    # "" or -x{digest}: a folder of settings given with --config (crossan/runs/variants.py)
    media_x=SUFFIX_PATTERN,
    features_x=SUFFIX_PATTERN,
    graph_x=SUFFIX_PATTERN,
    runs_x=SUFFIX_PATTERN,
    tables_x=SUFFIX_PATTERN,
    figures_x=SUFFIX_PATTERN,
    beyond_x=SUFFIX_PATTERN,
    efficiency_x=SUFFIX_PATTERN,


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/media.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/graph.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/efficiency.smk"
include: "workflow/rules/results.smk"


# Settings given with --config: which folders they write to, beside the config files' own.
for _name in config["datasets"]:
    if _changed := folders(_name).describe():
        logger.info(f"{_name}: --config changes what these folders hold, written beside the defaults:\n{_changed}")
if _warning := cores_warning(workflow.resource_settings.cores, machine_cores()):
    logger.warning(_warning)


rule all:
    input:
        all_outputs,
    default_target: True
