# Table 4's time per epoch and peak memory, measured side by side in one job that takes every
# core (crossan efficiency): each training run times its own epochs too, but the runs are separate
# jobs, and those that ran at once shared the machine. What the job reads and passes:
# crossan/runs/efficiency_job.py.
import json
from types import SimpleNamespace

from crossan.runs.efficiency_job import has_end_to_end, measure_flags, merged_inputs, plan_input_flags, plan_training

EFFICIENCY_TARGET = "table4"
# CPUs the job asks for where the invocation has no --cores (a cluster executor): the
# measurement is then its own allocation, one thread per CPU of it.
EFFICIENCY_CLUSTER_THREADS = 8


rule efficiency:
    """Measure the time per epoch and peak memory of every Table 4 run side by side: each built as
    its training job builds it, in a fresh process, the runs in rotating order over two rounds;
    seconds per epoch = batches per epoch x the median seconds of 20 timed training batches (10
    for fft, adapter, lora). Table 4 reads TT and GM here, TP from the runs. Reads what the runs'
    training jobs read (run_inputs), not the runs: it builds and trains each model again."""
    input:
        lambda wc: merged_inputs(
            run_inputs(SimpleNamespace(dataset=wc.dataset, run=name))
            for name in cached_plan(wc.dataset, EFFICIENCY_TARGET).runs()
        ),
        folder=suffix("efficiency"),
    output:
        json="results/{dataset}/efficiency{efficiency_x}/table4.json",
    params:
        plan=lambda wc: cached_plan(wc.dataset, EFFICIENCY_TARGET).to_json(),
        # the training settings the plan's methods use (JSON), and where their runs read items
        training=lambda wc: json.dumps(
            plan_training(config, wc.dataset, cached_plan(wc.dataset, EFFICIENCY_TARGET)),
            sort_keys=True, separators=(",", ":"),
        ),
        inputs=lambda wc: plan_input_flags(
            config, wc.dataset, cached_plan(wc.dataset, EFFICIENCY_TARGET), folders(wc.dataset).names
        ),
        device=config["device"],
        measure=lambda wc: measure_flags(config, wc.dataset),  # experiments.table4.measure
    log:
        "results/{dataset}/logs/efficiency{efficiency_x}/table4.log",
    benchmark:
        "results/{dataset}/benchmarks/efficiency{efficiency_x}/table4.tsv"
    # Every core of the invocation (--cores): no other job runs beside the measurement.
    threads: lambda wc: workflow.resource_settings.cores or EFFICIENCY_CLUSTER_THREADS
    # One run at a time, as large as the largest training job (rule train_run): the end-to-end
    # runs' covers and checkpoints on MicroLens. Each run is built once per round and trains 22
    # batches (12 end-to-end: ~2 s each on an A6000, after loading the covers).
    resources:
        mem_mb=by_dataset(
            3000, lambda wc: 32000 if has_end_to_end(cached_plan(wc.dataset, EFFICIENCY_TARGET)) else 16000
        ),
        runtime=by_dataset(30, 2 * 60),
        gpu=lambda wc: training_settings(config, wc.dataset)["gpu"],
    conda:
        "../../envs/models.yaml"
    shell:
        "crossan --progress-fd 3 efficiency --plan {params.plan:q} --training {params.training:q} {params.inputs}"
        " --out {output.json} --device {params.device} --threads {threads} {params.measure} 3>&2 > {log} 2>&1"
