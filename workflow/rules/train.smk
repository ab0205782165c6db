# Stage 2: one job per training run; the output path names the run's configuration.


rule train_run:
    """Train, early-stop and evaluate one configuration on the cached states."""
    input:
        unpack(run_inputs),
    output:
        metrics="results/{dataset}/runs/{run}/metrics.json",
        per_user_valid="results/{dataset}/runs/{run}/per_user_valid.parquet",
        per_user_test="results/{dataset}/runs/{run}/per_user_test.parquet",
        gates="results/{dataset}/runs/{run}/gates.json",
        towers="results/{dataset}/runs/{run}/item_towers.h5",
        train_log="results/{dataset}/runs/{run}/train_log.csv",
    wildcard_constraints:
        run=r"[^/]+__[^/]+",
    params:
        data=lambda wc: f"results/{wc.dataset}/data",
        features=lambda wc: f"--features results/{wc.dataset}/features" if run_uses_content(wc) else "",
        out=lambda wc: f"results/{wc.dataset}/runs/{wc.run}",
        # training settings and conventions as flags: changing one reruns the runs it affects
        settings=lambda wc: setting_flags(training_settings(config, wc.dataset), parsed_run(wc)["method"]),
        device=config["device"],
    log:
        "results/{dataset}/logs/train/{run}.log",
    benchmark:
        "results/{dataset}/benchmarks/train/{run}.tsv"
    # One thread per run: small matrices gain little from a second thread (13.8 s vs 13.1 s for
    # 6 demo epochs), two runs side by side gain 2x, and a fixed count keeps results bit-identical.
    threads: 1
    resources:
        mem_mb=16000,
        runtime=12 * 60,
        gpu=lambda wc: (
            training_settings(config, wc.dataset)["gpu"] if parsed_run(wc)["method"] != "popularity" else 0
        ),
    conda:
        "../../envs/models.yaml"
    shell:
        "crossan train --run {wildcards.run} --data {params.data} {params.features}"
        " --out {params.out} {params.settings} --device {params.device} --threads {threads} > {log} 2>&1"
