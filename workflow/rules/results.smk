# Stage 3: the paper's tables and figures, rebuilt from finished runs only (never training).
# Each rule gets its plan (rows and run names, from config.yaml's `experiments`) as JSON.


rule table:
    """One of the paper's Tables 1, 3-8 for one dataset: CSV (every number, std, p-values,
    runs), Markdown and HTML."""
    input:
        unpack(table_inputs),
    output:
        csv=report(
            "results/{dataset}/tables/{table}.csv",
            caption="../report/table_data.rst",
            category="Table data",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "table": "{table}"},
        ),
        md="results/{dataset}/tables/{table}.md",
        html=report(
            "results/{dataset}/tables/{table}.html",
            caption="../report/table.rst",
            category="Tables",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "table": "{table}"},
        ),
    wildcard_constraints:
        table="table[1345678]",
    params:
        plan=lambda wc: target_plan(config, wc.dataset, wc.table).to_json(),
        runs=lambda wc: f"results/{wc.dataset}/runs",
        caption=lambda wc: target_plan(config, wc.dataset, wc.table).title,
    log:
        "results/{dataset}/logs/tables/{table}.log",
    benchmark:
        "results/{dataset}/benchmarks/tables/{table}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/report.yaml"
    shell:
        "crossan table --plan {params.plan:q} --runs {params.runs}"
        " --csv {output.csv} --md {output.md} --html {output.html} > {log} 2>&1"


rule figure:
    """One of the paper's Figures 3-5 for one dataset: PNG, SVG and the plotted points (CSV)."""
    input:
        unpack(figure_inputs),
    output:
        png=report(
            "results/{dataset}/figures/{figure}.png",
            caption="../report/figure.rst",
            category="Figures",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "{figure}"},
        ),
        svg="results/{dataset}/figures/{figure}.svg",
        csv="results/{dataset}/figures/{figure}.csv",
    wildcard_constraints:
        figure="figure[345]",
    params:
        plan=lambda wc: target_plan(config, wc.dataset, wc.figure).to_json(),
        runs=lambda wc: f"results/{wc.dataset}/runs",
        caption=lambda wc: target_plan(config, wc.dataset, wc.figure).title,
    log:
        "results/{dataset}/logs/figures/{figure}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/report.yaml"
    shell:
        "crossan figure --plan {params.plan:q} --runs {params.runs}"
        " --png {output.png} --svg {output.svg} --csv {output.csv} > {log} 2>&1"


# Named targets: `snakemake --cores 8 table5` builds Table 5 (and the runs it reads) for every
# configured dataset; `figures` builds all three figures.
for _target in TABLES:

    rule:
        name:
            _target
        input:
            target_outputs(_target),


rule figures:
    input:
        [path for figure in FIGURES for path in target_outputs(figure)],
