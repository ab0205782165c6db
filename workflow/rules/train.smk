# Stage 2: one job per training run; the output path names the run's configuration, and its
# -x suffix digests the training settings it uses that differ from the defaults (a changed
# setting gives the runs it affects new folders; the others stay as they are).


rule train_run:
    """Train, early-stop and evaluate one configuration: on the cached states, or with BERT and
    ViT in the loop (fft, adapter, lora: they read the covers and checkpoints, not the features)."""
    input:
        unpack(run_inputs),
        settings=suffix("runs"),
    output:
        settings=run_path("settings"),
        per_user_valid=run_path("per_user_valid"),
        per_user_test=run_path("per_user_test"),
        gates=run_path("gates"),
        towers=run_path("towers"),
        train_log=run_path("train_log"),
        metrics=run_path("metrics"),
    wildcard_constraints:
        run=r"[^/]+__[^/]+",
    params:
        inputs=run_input_flags,
        out=lambda wc: f"results/{wc.dataset}/runs{wc.runs_x}/{wc.run}",
        # the training settings the method uses (JSON): with the name, all the run is made of
        training=run_training,
        device=config["device"],
    log:
        "results/{dataset}/logs/train{runs_x}/{run}.log",
    benchmark:
        "results/{dataset}/benchmarks/train{runs_x}/{run}.tsv"
    # One thread per run: small matrices gain little from a second thread (13.8 s vs 13.1 s for
    # 6 demo epochs), two runs side by side gain 2x, and a fixed count keeps results bit-identical.
    threads: 1
    # End-to-end runs (fft, adapter, lora) on MicroLens-100K: the paper's Table 4 gives 2,856-3,278 s
    # per epoch on an A6000 plus ~2 min to encode every item for validation, for up to 50 epochs
    # (early stopping usually ends them after 10-20): 36 h; host memory holds the covers as uint8
    # (3 GB) and both checkpoints. Cached-state runs take minutes; 12 h is their bound, and the
    # graph recommenders' (MicroLens-100K: up to 4 grid points x early-stopped epochs of 293
    # batches; bench/graph.py gives their seconds per epoch).
    resources:
        mem_mb=by_dataset(3000, lambda wc: 32000 if run_is_end_to_end(wc) else 16000),
        runtime=by_dataset(60, lambda wc: 36 * 60 if run_is_end_to_end(wc) else 12 * 60),
        gpu=lambda wc: (
            training_settings(config, wc.dataset)["gpu"] if parsed_run(wc).family != POPULARITY_FAMILY else 0
        ),
    conda:
        "../../envs/models.yaml"
    shell:
        "crossan --progress-fd 3 train --run {wildcards.run} --training {params.training:q} {params.inputs}"
        " --out {params.out} --device {params.device} --threads {threads} 3>&2 > {log} 2>&1"
