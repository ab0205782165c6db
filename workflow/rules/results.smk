# Stage 3: the paper's tables and figures, rebuilt from finished runs only (never training).
# Each rule gets its plan (rows and run names, from config.yaml's `experiments`) as JSON.
# Tables B1-B3 and Figure B1 go beyond the paper: same commands, written under
# results/{dataset}/beyond/ and shown in the report under their own category.

TABLE_COMMAND = (
    "crossan table --plan {params.plan:q} --runs {params.runs}"
    " --csv {output.csv} --md {output.md} --html {output.html} {params.efficiency} > {log} 2>&1"
)
FIGURE_COMMAND = (
    "crossan figure --plan {params.plan:q} --runs {params.runs}"
    " --png {output.png} --svg {output.svg} --csv {output.csv} > {log} 2>&1"
)
BEYOND = "Beyond the paper"


rule table:
    """One of the paper's Tables 1, 3-8 for one dataset: CSV (every number, std, p-values,
    runs), Markdown and HTML."""
    input:
        unpack(table_inputs),
    output:
        csv=report(
            "results/{dataset}/tables{tables_x}/{table}.csv",
            caption="../report/table_data.rst",
            category="Table data",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "table": "{table}"},
        ),
        md="results/{dataset}/tables{tables_x}/{table}.md",
        html=report(
            "results/{dataset}/tables{tables_x}/{table}.html",
            caption="../report/table.rst",
            category="Tables",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "table": "{table}"},
        ),
    wildcard_constraints:
        table="table[1345678]",
    params:
        plan=plan_param("table"),
        efficiency=efficiency_flag,
        runs=lambda wc: folder(wc.dataset, "runs"),
        caption=plan_param("table", caption=True),
    log:
        "results/{dataset}/logs/tables{tables_x}/{table}.log",
    benchmark:
        "results/{dataset}/benchmarks/tables{tables_x}/{table}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/report.yaml"
    shell:
        TABLE_COMMAND


rule figure:
    """One of the paper's Figures 3-5 for one dataset: PNG, SVG and the plotted points (CSV)."""
    input:
        unpack(figure_inputs),
    output:
        png=report(
            "results/{dataset}/figures{figures_x}/{figure}.png",
            caption="../report/figure.rst",
            category="Figures",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "{figure}"},
        ),
        svg="results/{dataset}/figures{figures_x}/{figure}.svg",
        csv="results/{dataset}/figures{figures_x}/{figure}.csv",
    wildcard_constraints:
        figure="figure[345]",
    params:
        plan=plan_param("figure"),
        runs=lambda wc: folder(wc.dataset, "runs"),
        caption=plan_param("figure", caption=True),
    log:
        "results/{dataset}/logs/figures{figures_x}/{figure}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/report.yaml"
    shell:
        FIGURE_COMMAND


rule beyond_table:
    """Tables B1-B3 (beyond the paper) for one dataset: CSV, Markdown and HTML."""
    input:
        unpack(table_inputs),
    output:
        csv=report(
            "results/{dataset}/beyond{beyond_x}/{table}.csv",
            caption="../report/table_data.rst",
            category=BEYOND,
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "target": "{table} data"},
        ),
        md="results/{dataset}/beyond{beyond_x}/{table}.md",
        html=report(
            "results/{dataset}/beyond{beyond_x}/{table}.html",
            caption="../report/beyond_table.rst",
            category=BEYOND,
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "target": "{table}"},
        ),
    wildcard_constraints:
        table="tableB[123]",
    params:
        plan=plan_param("table"),
        efficiency=efficiency_flag,
        runs=lambda wc: folder(wc.dataset, "runs"),
        caption=plan_param("table", caption=True),
    log:
        "results/{dataset}/logs/beyond{beyond_x}/{table}.log",
    benchmark:
        "results/{dataset}/benchmarks/beyond{beyond_x}/{table}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/report.yaml"
    shell:
        TABLE_COMMAND


rule beyond_figure:
    """Figure B1 (beyond the paper) for one dataset: PNG, SVG and the plotted bars (CSV)."""
    input:
        unpack(figure_inputs),
    output:
        png=report(
            "results/{dataset}/beyond{beyond_x}/{figure}.png",
            caption="../report/beyond_figure.rst",
            category=BEYOND,
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "target": "{figure}"},
        ),
        svg="results/{dataset}/beyond{beyond_x}/{figure}.svg",
        csv="results/{dataset}/beyond{beyond_x}/{figure}.csv",
    wildcard_constraints:
        figure="figureB1",
    params:
        plan=plan_param("figure"),
        runs=lambda wc: folder(wc.dataset, "runs"),
        caption=plan_param("figure", caption=True),
    log:
        "results/{dataset}/logs/beyond{beyond_x}/{figure}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/report.yaml"
    shell:
        FIGURE_COMMAND


# Named targets: `snakemake --cores 8 table5` builds Table 5 (and the runs it reads) for every
# configured dataset, `tableB1` Table B1 beyond the paper; `figures` builds the paper's three
# figures, `beyond` every table and figure beyond the paper.
for _target in (*TABLES, *FIGURES, *BEYOND_TABLES, *BEYOND_FIGURES):

    rule:
        name:
            _target
        input:
            target_outputs(_target),


rule figures:
    input:
        [path for figure in FIGURES for path in target_outputs(figure)],


rule beyond:
    input:
        [path for target in (*BEYOND_TABLES, *BEYOND_FIGURES) for path in target_outputs(target)],
