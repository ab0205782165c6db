# crossan: the CROSSAN pipeline, from raw data to the paper's tables.
#   snakemake --cores 2 all          everything configured in config.yaml (default: the demo)
#   snakemake --cores 2 results/demo/data/stats.json   one output by its path
#   snakemake --cores 2 results/demo/runs/demo__crossan-TIVA-momef-k2-h512-lr1e-03-s0-x59096742/metrics.json
#                                    one training run: its name is its configuration
#                                    (`crossan run-name --method crossan --lr 1e-3` prints it)
#   snakemake --cores 2 table5       one of the paper's tables (table1, table3..table8, figures)
#   snakemake --report results/report.html   every table and figure, with captions
from snakemake.utils import min_version

from crossan.config import validate_config
from crossan.data.layout import check_declared_parts
from crossan.encoders.load import check_encoder_models
from crossan.results.plan import dropped_targets

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


validate_config(config, schema_path=Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")
# Local model folders and kept layers: a wrong one fails here, not in extraction after hours of media sampling.
check_encoder_models(config)
# A declared modality's folder (covers/, videos/) or titles.csv missing from a data_dir: named here.
check_declared_parts(config)
for _name in config["datasets"]:
    for _target, _why in dropped_targets(config, _name).items():
        logger.warning(f"{_name}: {_target} is left out: {_why}")


wildcard_constraints:
    dataset=r"[A-Za-z0-9][A-Za-z0-9_-]*",


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/media.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/graph.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/results.smk"


rule all:
    input:
        all_outputs,
    default_target: True
